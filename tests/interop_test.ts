/**
 * Interop with real OpenVPN 2.6 (Debian's package) in network namespaces: a real OpenVPN server (b) and
 * client (a) negotiate a TLS session; the client's data-channel keys are read from its verb-9 log; the
 * client is killed and this tool takes over its data channel (same address and port, same keys, peer id
 * and nonce tails). Traffic then flows both ways through the real OpenVPN server. Needs root.
 */
import { assert, assertEquals } from "./assert.ts";
import { NetnsLab } from "../cmd/netns.ts";
import { parsePing } from "../cmd/demo.ts";
import { keyFromOpenvpnLog } from "../keys/openvpn_log.ts";
import { startOpenvpnPair, verifiedTransfer } from "./lab.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
let labIndex = 60;

for (const cipher of ["AES-256-GCM", "CHACHA20-POLY1305", "AES-128-GCM"]) {
  Deno.test({
    ...opts,
    name: `interop with OpenVPN 2.6 (${cipher}, UDP): this tool takes over a real client's data channel`,
    async fn() {
      const lab = await NetnsLab.create(labIndex++);
      try {
        const d = lab.runDir;
        const { client, net, clientLog, serverLog } = await startOpenvpnPair(lab, cipher, { clientVerb: 9 });
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
        assert(
          !(await Deno.readTextFile(serverLog)).includes("Authenticate/Decrypt packet error"),
          "OpenVPN refused our packets",
        );
      } finally {
        await lab.destroy();
      }
    },
  });
}
