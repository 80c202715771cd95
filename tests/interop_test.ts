/**
 * Interop with real OpenVPN 2.6 (Debian's package) in network namespaces: a real OpenVPN server (b) and
 * client (a) negotiate a TLS session; the client's data-channel keys are read from its verb-9 log; the
 * client is killed and this tool takes over its data channel (same address and port, same keys, peer id
 * and nonce tails). Traffic then flows both ways through the real OpenVPN server. Needs root.
 */
import { assert, assertEquals } from "./assert.ts";
import { type LabProcess, NetnsLab } from "../cmd/netns.ts";
import { parsePing } from "../cmd/demo.ts";
import { keyFromOpenvpnLog } from "../keys/openvpn_log.ts";
import { verifiedTransfer } from "./lab.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
let labIndex = 60;

/** A throwaway CA with a server and a client certificate (ECDSA P-256), made with the openssl CLI. */
export async function makePki(dir: string): Promise<void> {
  const run = async (args: string[]) => {
    const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "piped", stderr: "piped" })
      .output();
    if (!out.success) throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  };
  await Deno.writeTextFile(
    `${dir}/ext_server`,
    "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyAgreement\n",
  );
  await Deno.writeTextFile(
    `${dir}/ext_client`,
    "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyAgreement\n",
  );
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-subj",
    "/CN=test-ca",
    "-days",
    "2",
  ]);
  for (const n of ["server", "client"]) {
    await run(["req", ...ec, "-keyout", `${n}.key`, "-out", `${n}.csr`, "-subj", `/CN=${n}`]);
    await run([
      "x509",
      "-req",
      "-in",
      `${n}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${n}.crt`,
      "-days",
      "2",
      "-extfile",
      `ext_${n}`,
    ]);
  }
}

for (const cipher of ["AES-256-GCM", "CHACHA20-POLY1305", "AES-128-GCM"]) {
  Deno.test({
    ...opts,
    name: `interop with OpenVPN 2.6 (${cipher}, UDP): this tool takes over a real client's data channel`,
    async fn() {
      const lab = await NetnsLab.create(labIndex++);
      try {
        const d = lab.runDir;
        await makePki(d);
        const net = lab.inner4.a.split(".").slice(0, 2).join(".") + ".3";
        const common = [
          "--dev-type",
          "tun",
          "--proto",
          "udp",
          "--ca",
          `${d}/ca.crt`,
          "--data-ciphers",
          cipher,
          "--disable-dco",
        ];
        const server = lab.spawn("b", [
          "openvpn",
          "--dev",
          "tun-srv",
          ...common,
          "--local",
          lab.outer4.b,
          "--port",
          "1194",
          "--server",
          `${net}.0`,
          "255.255.255.0",
          "--topology",
          "subnet",
          "--cert",
          `${d}/server.crt`,
          "--key",
          `${d}/server.key`,
          "--dh",
          "none",
          "--keepalive",
          "10",
          "60",
          "--verb",
          "3",
        ]);
        await lab.waitFor(
          () => server.output().includes("Initialization Sequence Completed"),
          20000,
          "the OpenVPN server",
        );
        const clientLog = `${d}/client.log`;
        const client: LabProcess = lab.spawn("a", [
          "openvpn",
          "--client",
          "--dev",
          "tun-cli",
          ...common,
          "--remote",
          lab.outer4.b,
          "1194",
          "--lport",
          "41194",
          "--cert",
          `${d}/client.crt`,
          "--key",
          `${d}/client.key`,
          "--remote-cert-tls",
          "server",
          "--verb",
          "9",
          "--log",
          clientLog,
        ]);
        await lab.waitFor(
          async () =>
            (await Deno.readTextFile(clientLog).catch(() => "")).includes(
              "Initialization Sequence Completed",
            ),
          30000,
          "the OpenVPN client",
        );
        // real traffic first, so that the log shows both directions' IVs
        assertEquals(
          parsePing(await lab.run("a", ["ping", "-c", "2", "-i", "0.3", `${net}.1`], { allowFail: true }))
            .received,
          2,
        );
        const key = keyFromOpenvpnLog(await Deno.readTextFile(clientLog));
        assertEquals(key.cipher, cipher);
        const keyFile = `${d}/takeover.json`;
        await Deno.writeTextFile(keyFile, JSON.stringify(key), { mode: 0o600 });
        client.child.kill("SIGKILL"); // no exit notification: the server keeps the session
        await client.status;
        await lab.waitFor(
          async () =>
            (await lab.run("a", ["ip", "link", "show", "tun-cli"], { allowFail: true })).includes(
              "does not exist",
            ),
          5000,
          "the client's tun to go",
        );
        const ours = lab.startTool("a", [
          "start",
          "--ifname",
          "ovpn-a",
          "--local",
          `${lab.outer4.a}:41194`,
          "--remote",
          `${lab.outer4.b}:1194`,
          "--ifaddr",
          `${net}.2/24`,
          "--key",
          keyFile,
          "--keepalive",
          "10,60",
          "--stats-interval",
          "0",
        ]);
        await lab.waitFor(
          async () =>
            parsePing(await lab.run("a", ["ping", "-c", "1", "-W", "1", `${net}.1`], { allowFail: true }))
              .received === 1,
          15000,
          `a ping through OpenVPN (${ours.output().trim()})`,
        );
        // both directions: a → server, and the server's side → a
        assertEquals(parsePing(await lab.run("a", ["ping", "-c", "5", "-i", "0.2", `${net}.1`])).received, 5);
        assertEquals(parsePing(await lab.run("b", ["ping", "-c", "5", "-i", "0.2", `${net}.2`])).received, 5);
        await verifiedTransfer(lab, `${net}.1`, 5 * 1024 * 1024, 5330);
        const st = JSON.parse((await lab.tool("a", ["stats", "--ifname", "ovpn-a", "--json"])).stdout);
        assertEquals(st.lostInDataPkts, 0, JSON.stringify(st.drops));
        assert(st.rcvdDataPkts > 1000);
        assert(!server.output().includes("Authenticate/Decrypt packet error"), "OpenVPN refused our packets");
      } finally {
        await lab.destroy();
      }
    },
  });
}
