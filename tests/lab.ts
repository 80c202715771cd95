/**
 * Shared pieces of the end-to-end suites: a verified TCP transfer through a lab tunnel, and helpers.
 * @module
 */
import { assertEquals } from "./assert.ts";
import type { Hosts, LabProcess, NetnsLab } from "../cmd/netns.ts";

const XFER = new URL("./helpers/xfer.ts", import.meta.url).pathname;

/**
 * Send `bytes` over TCP to `dst` (from a to b, or from b to a with `from: "b"`) and check that the
 * receiving side got exactly what was sent.
 */
export async function verifiedTransfer<S extends string>(
  lab: Hosts<S>,
  dst: string,
  bytes: number,
  port = 5301,
  from: S = "a" as S,
  to: S = (from === "a" ? "b" : "a") as S,
): Promise<string> {
  const sink = lab.spawn(to, [Deno.execPath(), "run", "-A", XFER, "sink", dst, String(port)]);
  await lab.waitFor(() => sink.output().includes("listening"), 15000, "the transfer sink");
  const sent =
    (await lab.run(from, [Deno.execPath(), "run", "-A", XFER, "source", dst, String(port), String(bytes)]))
      .trim().split("\n").pop()!;
  const st = await sink.status;
  assertEquals(st.code, 0, `sink failed: ${sink.output()}`);
  const got = sink.output().trim().split("\n").pop()!;
  assertEquals(got, sent, "bytes received differ from bytes sent");
  assertEquals(sent.split(" ")[0], String(bytes));
  return got;
}

/**
 * Send hostile packets from b's namespace to a's tunnel port, from b's own address and port (see
 * tests/helpers/hostile.ts); b uses key direction 1 and peer id 0. Returns how many were sent.
 */
export async function sendHostile(
  lab: NetnsLab,
  keyFile: string,
  countEach: number,
  replayBase: number,
  extra: string[] = [],
): Promise<number> {
  const hostile = new URL("./helpers/hostile.ts", import.meta.url).pathname;
  const out = await lab.run("b", [
    ...[Deno.execPath(), "run", "-A", hostile, lab.outer4.a, "1194", "1194", keyFile, "1", "0"],
    ...[String(countEach), String(replayBase), ...extra],
  ]);
  return Number(out.trim().split("\n").pop());
}

/** Parse the JSON of `stats --json`. */
export async function statsOf(
  lab: NetnsLab,
  side: "a" | "b",
): Promise<Record<string, number> & { drops: Record<string, number> }> {
  const r = await lab.tool(side, ["stats", "--ifname", `ovpn-${side}`, "--json"]);
  if (r.code !== 0) throw new Error(`stats on ${side} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

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

/**
 * The OpenVPN 2.7.6 test peer (epoch data keys; logs `Epoch E1 send/recv` at verb 9), built from the source
 * this repository carries (tests/openvpn27/build.sh, which `npm test` runs and whose path it puts in
 * `$OPENVPN_27`). A test that needs it and finds none fails with this message (it is not skipped).
 */
export const OPENVPN_27: string = (() => {
  const path = Deno.env.get("OPENVPN_27");
  if (path) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch { /* fall through */ }
  }
  return `OpenVPN 2.7.6 not found${
    path ? ` at OPENVPN_27=${path}` : ""
  }; build it with 'bash tests/openvpn27/build.sh' and set OPENVPN_27 to the path it prints (npm test does both)`;
})();

/**
 * A real OpenVPN server (in b) and client (in a) over UDP with TLS; resolves once both are up. Debian's
 * 2.6 by default; `openvpn: OPENVPN_27` for two 2.7 peers (which negotiate epoch data keys by themselves).
 */
export async function startOpenvpnPair(
  lab: NetnsLab,
  cipher: string,
  opts: { clientVerb?: number; clientLog?: string; serverVerb?: number; openvpn?: string } = {},
): Promise<{ server: LabProcess; client: LabProcess; net: string; clientLog: string; serverLog: string }> {
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
  const bin = opts.openvpn ?? "openvpn";
  if (bin.includes(" not found")) throw new Error(bin);
  const serverLog = `${d}/server.log`;
  const server = lab.spawn("b", [
    ...[bin, "--dev", "tun-srv", ...common, "--local", lab.outer4.b, "--port", "1194"],
    ...["--server", `${net}.0`, "255.255.255.0", "--topology", "subnet", "--cert", `${d}/server.crt`],
    ...["--key", `${d}/server.key`, "--dh", "none", "--keepalive", "10", "60"],
    ...["--verb", String(opts.serverVerb ?? 3), "--log", serverLog],
  ]);
  /** Wait until its log says it is up; an early exit or a timeout fails with the end of what it wrote. */
  const waitUp = async (p: LabProcess, log: string, name: string, ms: number) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const exited = await Promise.race([p.status, new Promise<null>((r) => setTimeout(() => r(null), 100))]);
      const text = await Deno.readTextFile(log).catch(() => "");
      if (text.includes("Initialization Sequence Completed")) return;
      const tail = (p.output() + text).trim().split("\n").slice(-3).join(" | ");
      if (exited) throw new Error(`${name} (${bin}) exited ${exited.code}: ${tail}`);
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${ms / 1000} s waiting for ${name}: ${tail}`);
      }
    }
  };
  await waitUp(server, serverLog, "the OpenVPN server", 20000);
  const clientLog = opts.clientLog ?? `${d}/client.log`;
  const client = lab.spawn("a", [
    ...[
      bin,
      "--client",
      "--dev",
      "tun-cli",
      ...common,
      "--remote",
      lab.outer4.b,
      "1194",
      "--lport",
      "41194",
    ],
    ...["--cert", `${d}/client.crt`, "--key", `${d}/client.key`, "--remote-cert-tls", "server"],
    ...["--verb", String(opts.clientVerb ?? 3), "--log", clientLog],
  ]);
  await waitUp(client, clientLog, "the OpenVPN client", 30000);
  return { server, client, net, clientLog, serverLog };
}

/**
 * The `start` arguments of client `i` of a StarLab server (a point-to-point instance with peer id `i`,
 * key direction 1, keepalive 1,30), its tun `ovpn-c` addressed `addr4`/24 and `addr6`/64.
 */
export function starClientArgs(o: {
  local: string;
  server: string;
  peerId: number;
  addr4: string;
  addr6: string;
  key: string;
  proto: "udp" | "tcp";
}): string[] {
  return [
    ...["start", "--local", o.local, "--remote", o.server, "--proto", o.proto, "--ifname", "ovpn-c"],
    ...["--ifaddr", `${o.addr4}/24`, "--ifaddr", `${o.addr6}/64`, "--key", o.key, "--key-direction", "1"],
    ...["--peer-id", String(o.peerId), "--keepalive", "1,30", "--stats-interval", "0"],
  ];
}

/**
 * Send `count` datagrams of `size` bytes over UDP from `from` to `dst` on `to` (tests/helpers/udp_xfer.ts)
 * and return what the receiver saw: received (distinct, intact), corrupt, duplicates, reordered.
 */
export async function verifiedUdpTransfer<S extends string>(
  lab: Hosts<S>,
  dst: string,
  count: number,
  size: number,
  port: number,
  from: S = "a" as S,
  to: S = (from === "a" ? "b" : "a") as S,
): Promise<{ received: number; corrupt: number; duplicates: number; reordered: number }> {
  const helper = new URL("./helpers/udp_xfer.ts", import.meta.url).pathname;
  const sink = lab.spawn(to, [
    Deno.execPath(),
    "run",
    "-A",
    helper,
    "sink",
    dst,
    String(port),
    String(count),
  ]);
  await lab.waitFor(() => sink.output().includes("listening"), 15000, "the UDP sink");
  const sent = await lab.run(from, [
    ...[Deno.execPath(), "run", "-A", helper, "source", dst, String(port), String(count), String(size)],
  ]);
  assertEquals(sent.trim().split("\n").pop(), String(count), "datagrams sent");
  const st = await sink.status;
  assertEquals(st.code, 0, `UDP sink failed: ${sink.output()}`);
  return JSON.parse(sink.output().trim().split("\n").pop()!);
}

/** user + system CPU seconds of a process so far (Linux /proc, clock ticks of 1/100 s). */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // fields 14 and 15 (utime, stime)
}

/** Resident memory of a process in MB (Linux /proc). */
export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m ? Number(m[1]) / 1024 : NaN;
}
