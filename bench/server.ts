/**
 * `deno task bench:server` (Linux, root): a server-mode instance (tun backend, AES-256-GCM over UDP) with 1, 10,
 * 100 and 1 000 peers, driven by simulated clients from one process (bench/server_load.ts: one UDP socket and
 * one data channel per client). For each count, in a fresh pair of namespaces:
 *
 * - the peers and their keys go in through the control socket (8 requests in flight): how long it took;
 * - `peer.list` and `stats --all` over the control socket: the answer's time (best of 3, no process start);
 * - resident memory of the server before and after the peers: per peer; and after the traffic, against the
 *   1-peer server's (every peer's crypto contexts made by then: the steady state);
 * - up: every client sends its equal share (round robin) of SIZE-byte packets to the server's tun for SECONDS:
 *   packets/s and Mbit/s that the server wrote to its tun, and the server's CPU seconds per GB;
 * - down: a sender in the server's namespace sprays SIZE-byte packets at every client's VPN address round robin
 *   into the server's tun: packets/s and Mbit/s the server sealed and sent.
 *
 * Each packet is looked up by peer id (rx), by its inner source (rx: the source check) and by its destination
 * (tx: the route), so the rates with 1 000 peers against 1 peer show whether those lookups stay flat.
 * Environment: BENCH_SERVER_PEERS (default "1,10,100,1000"), BENCH_SERVER_SECONDS (5), BENCH_SERVER_SIZE (512).
 * Results also go to bench-results/server.json and a chart, server.svg (BENCH_OUT overrides the directory).
 * @module
 */
import { serverChart } from "./server_chart.ts";
import { NetnsLab } from "../cmd/netns.ts";
import { cpuSeconds, rssMb } from "../tests/lab.ts";

const COUNTS = (Deno.env.get("BENCH_SERVER_PEERS") ?? "1,10,100,1000").split(",").map(Number);
const SECONDS = Number(Deno.env.get("BENCH_SERVER_SECONDS") ?? "5");
const SIZE = Number(Deno.env.get("BENCH_SERVER_SIZE") ?? "512");
const LOAD = new URL("./server_load.ts", import.meta.url).pathname;
const PREFIX = "10.91";
const IFNAME = "ovpn-srv";

interface Row {
  peers: number;
  addMs: number;
  listMs: number;
  statsAllMs: number;
  rssPerPeerKB: number;
  /** The server's resident memory once both directions ran (every peer's contexts made), KB. */
  rssAfterKB: number;
  upPps: number;
  upMbit: number;
  upCpuPerGB: number;
  /** The server's CPU per packet (µs): flat across peer counts when every lookup is O(1). */
  upUsPerPkt: number;
  downPps: number;
  downMbit: number;
  downCpuPerGB: number;
  downUsPerPkt: number;
  /** What the generators offered (packets/s): where it is close to the server's rate, the generator was the limit. */
  offeredUp: number;
  offeredDown: number;
}

const rssKB = (pid: number) => rssMb(pid) * 1024;

async function measure(n: number, index: number): Promise<Row> {
  const lab = await NetnsLab.create(index);
  try {
    const deno = [Deno.execPath(), "run", "-A", "--no-prompt", LOAD];
    const json = async (side: "a" | "b", args: string[]) => {
      const p = lab.spawn(side, [...deno, ...args]);
      const st = await p.status;
      if (!st.success) {
        throw new Error(`server_load ${args[0]}: ${p.output().trim().split("\n").slice(-3).join(" | ")}`);
      }
      return JSON.parse(p.output().trim().split("\n").pop()!);
    };
    const keys = `${lab.runDir}/keys.json`;
    const k = new Deno.Command(Deno.execPath(), { args: ["run", "-A", LOAD, "keys", keys, String(n)] });
    if (!(await k.output()).success) throw new Error("writing the keys failed");
    const server = `${lab.outer4.b}:1194`;
    const srv = lab.startTool("b", [
      ...["start", "--mode", "server", "--local", server, "--ifname", IFNAME],
      ...["--ifaddr", `${PREFIX}.255.254/16`, "--stats-interval", "0"],
    ]);
    await lab.waitFor(
      async () => (await lab.tool("b", ["peer", "list", "--ifname", IFNAME])).code === 0,
      30000,
      `the server (${srv.output()})`,
    );
    await new Promise((r) => setTimeout(r, 1000));
    const rss0 = rssKB(srv.pid);
    const setup = await json("b", ["setup", IFNAME, keys, String(n), server, lab.outer4.a, "20000", PREFIX]);
    await new Promise((r) => setTimeout(r, 1000));
    const rss1 = rssKB(srv.pid);
    const stats = async () => {
      const r = await lab.tool("b", ["stats", "--ifname", IFNAME, "--json"]);
      if (r.code !== 0) throw new Error(`stats: ${r.stderr}`);
      return JSON.parse(r.stdout);
    };
    // up: the clients to the server's tun
    let s0 = await stats(), c0 = await cpuSeconds(srv.pid), t0 = performance.now();
    const gen = await json("a", [
      ...["gen", keys, String(n), server, lab.outer4.a, "20000", PREFIX, `${PREFIX}.255.254`],
      ...[String(SIZE), String(SECONDS)],
    ]);
    let s1 = await stats(), c1 = await cpuSeconds(srv.pid);
    const dt = (performance.now() - t0) / 1000;
    const upPkts = s1.rcvdDataPkts - s0.rcvdDataPkts, upBytes = s1.tunBytesReceived - s0.tunBytesReceived;
    if (upPkts <= 0) throw new Error(`nothing reached the server's tun (${gen.sent} sent)`);
    const upCpuPerGB = (c1 - c0) / (upBytes / 1e9), c0up = c0, c1up = c1;
    // down: the server's tun to the clients
    s0 = await stats(), c0 = await cpuSeconds(srv.pid), t0 = performance.now();
    const spray = await json("b", ["spray", String(n), PREFIX, String(SIZE), String(SECONDS)]);
    s1 = await stats(), c1 = await cpuSeconds(srv.pid);
    const dt2 = (performance.now() - t0) / 1000;
    const downPkts = s1.sentDataPkts - s0.sentDataPkts, downBytes = s1.tunBytesSent - s0.tunBytesSent;
    const rssAfterKB = rssKB(srv.pid);
    // the rates over the generators' own SECONDS (the measured span includes their start)
    const span = Math.min(dt, SECONDS), span2 = Math.min(dt2, SECONDS);
    return {
      peers: n,
      addMs: setup.addMs,
      listMs: setup.listMs,
      statsAllMs: setup.statsAllMs,
      rssPerPeerKB: (rss1 - rss0) / n,
      rssAfterKB,
      upPps: upPkts / span,
      upMbit: upBytes * 8 / span / 1e6,
      upCpuPerGB,
      upUsPerPkt: (c1up - c0up) / upPkts * 1e6,
      downPps: downPkts / span2,
      downMbit: downBytes * 8 / span2 / 1e6,
      downCpuPerGB: (c1 - c0) / (downBytes / 1e9),
      downUsPerPkt: (c1 - c0) / downPkts * 1e6,
      offeredUp: gen.sent / SECONDS,
      offeredDown: spray.sent / SECONDS,
    };
  } finally {
    await lab.destroy();
  }
}

if (Deno.uid() !== 0) {
  console.error("bench:server needs root (network namespaces)");
  Deno.exit(4);
}
console.log(
  `server benchmark: AES-256-GCM over UDP, ${SIZE}-byte packets, ${SECONDS} s each way, peers ${
    COUNTS.join(", ")
  }`,
);
const rows: (Row | { peers: number; error: string })[] = [];
for (const [i, n] of COUNTS.entries()) {
  try {
    rows.push(await measure(n, 180 + i));
  } catch (e) {
    const error = (e as Error).message.split("\n")[0].slice(0, 200);
    console.log(`${n} peers: not measured (${error})`);
    rows.push({ peers: n, error });
  }
}
const f = (x: number, d = 0) => x.toFixed(d);
const cols: [string, number, (r: Row) => string][] = [
  ["peers", 6, (r) => String(r.peers)],
  ["up pkt/s", 10, (r) => f(r.upPps)],
  ["offered", 9, (r) => f(r.offeredUp)],
  ["Mbit/s", 8, (r) => f(r.upMbit)],
  ["µs/pkt", 8, (r) => f(r.upUsPerPkt, 2)],
  ["down pkt/s", 11, (r) => f(r.downPps)],
  ["offered", 9, (r) => f(r.offeredDown)],
  ["Mbit/s", 8, (r) => f(r.downMbit)],
  ["µs/pkt", 8, (r) => f(r.downUsPerPkt, 2)],
  ["KB/peer", 9, (r) => f(r.rssPerPeerKB, 1)],
  ["add s", 7, (r) => f(r.addMs / 1000, 2)],
  ["list ms", 8, (r) => f(r.listMs, 1)],
  ["stats ms", 9, (r) => f(r.statsAllMs, 1)],
];
console.log(cols.map(([h, w]) => h.padStart(w)).join(""));
for (const r of rows) {
  if ("error" in r) {
    console.log(`${String(r.peers).padStart(6)}  not measured: ${r.error}`);
    continue;
  }
  console.log(cols.map(([, w, v]) => v(r).padStart(w)).join(""));
}
console.log("(µs/pkt: the server's CPU, user + system of all its threads, per packet it moved)");
const ok = rows.filter((r): r is Row => !("error" in r));
const one = ok.find((r) => r.peers === 1),
  most = ok.reduce<Row | null>((m, r) => (!m || r.peers > m.peers ? r : m), null);
if (one && most && most !== one) {
  console.log(
    `server-${most.peers}-peers: rate ${f(most.upPps / one.upPps, 2)} of 1 peer up, ${
      f(most.downPps / one.downPps, 2)
    } down; server CPU per packet ${f(most.upUsPerPkt / one.upUsPerPkt, 2)}× up, ${
      f(most.downUsPerPkt / one.downUsPerPkt, 2)
    }× down; ${f(most.rssPerPeerKB, 1)} KB per peer added (${
      f((most.rssAfterKB - one.rssAfterKB) / (most.peers - 1), 1)
    } KB per peer in steady state, against the 1-peer server after traffic); ${most.peers} peers added in ${
      f(most.addMs / 1000, 2)
    } s; peer list ${f(most.listMs, 1)} ms, stats --all ${f(most.statsAllMs, 1)} ms`,
  );
} else console.log("server scale ratio: missing (the 1-peer row or a larger one was not measured)");
const out = Deno.env.get("BENCH_OUT") ?? "bench-results";
await Deno.mkdir(out, { recursive: true });
await Deno.writeTextFile(
  `${out}/server.json`,
  JSON.stringify({ size: SIZE, seconds: SECONDS, rows }, null, 2),
);
await Deno.writeTextFile(
  `${out}/server.svg`,
  serverChart(
    ok,
    `bench:server — ${SIZE}-byte packets, ${SECONDS} s each way (${new Date().toISOString().slice(0, 10)})`,
  ),
);
console.log(`results: ${out}/server.json, ${out}/server.svg`);
