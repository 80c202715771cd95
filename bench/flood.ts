/**
 * `deno task bench:flood` (Linux, root): what an unauthenticated flood costs a server's real client. A server
 * (tun backend, AES-256-GCM over UDP) with one real client (c1); a second namespace (c2), no peer's, floods.
 * Each round measures the client's TCP throughput through the server (iperf3, SECONDS each) three ways:
 *
 * - quiet: no flood;
 * - reference: the flood aimed at a port of the server's host where nothing listens — what the flood costs this
 *   machine whatever the server does (the flooding process, fragment reassembly, the veth: on a 2-core machine
 *   the flooder competes with the tunnel for the same cores, which a real attacker on another host does not);
 * - server: the same flood at the server's port (the server counts and drops every datagram in its rx worker).
 *
 * The flood is tests/helpers/flood.ts: SOCKETS sockets sending SIZE-byte non-data datagrams as fast as they can
 * (issue 17's: four senders of 60 KB). The order of the three rotates per round; the medians and the ratios
 * server/quiet and server/reference are printed, and written to bench-results/flood.json (BENCH_OUT).
 *
 * Two layouts, each in its own lab: "shared" (every process anywhere: the flooder takes CPU from the tunnel) and
 * "own core" (the flooder pinned to the last CPU, the server, the client and iperf3 to the others, for all three
 * measurements: an attacker on another host, as a real one is). The second needs at least 2 CPUs.
 * Environment: BENCH_FLOOD_ROUNDS (3), BENCH_FLOOD_SECONDS (5), BENCH_FLOOD_SIZE (61440), BENCH_FLOOD_SOCKETS (4).
 * @module
 */
import { selfCommand, StarLab } from "../cmd/netns.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";
import { starClientArgs } from "../tests/lab.ts";

const ROUNDS = Number(Deno.env.get("BENCH_FLOOD_ROUNDS") ?? "3");
const SECONDS = Number(Deno.env.get("BENCH_FLOOD_SECONDS") ?? "5");
const SIZE = Number(Deno.env.get("BENCH_FLOOD_SIZE") ?? String(60 * 1024));
const SOCKETS = Number(Deno.env.get("BENCH_FLOOD_SOCKETS") ?? "4");
const FLOOD = new URL("../tests/helpers/flood.ts", import.meta.url).pathname;
const SRV = "ovpn-srv";

type Kind = "quiet" | "reference" | "server";
type Layout = "shared" | "own core";

const CPUS = navigator.hardwareConcurrency;
/** Commands of the tunnel's side and of the flooder under a layout. */
const pin = (layout: Layout, who: "tunnel" | "flooder", cmd: string[]) =>
  layout === "shared"
    ? cmd
    : ["taskset", "-c", who === "flooder" ? String(CPUS - 1) : `0-${CPUS - 2}`, ...cmd];

async function measureLayout(layout: Layout, index: number) {
  const lab = await StarLab.create(index, 2);
  const results: Record<Kind, number[]> = { quiet: [], reference: [], server: [] };
  let floodSent = 0;
  try {
    const tool = (side: string, args: string[]) =>
      lab.spawn(side, pin(layout, "tunnel", [...selfCommand(), ...args]));
    const srv = tool("s", [
      ...["start", "--mode", "server", "--local", `${lab.outer4.s}:1194`, "--ifname", SRV],
      ...["--ifaddr", "10.78.0.1/24", "--stats-interval", "0"],
    ]);
    await lab.waitFor(
      async () => (await lab.tool("s", ["peer", "list", "--ifname", SRV])).code === 0,
      30000,
      `the server (${srv.output()})`,
    );
    const key = `${lab.runDir}/c1.key`;
    await writeNewKeyFile(key);
    for (
      const args of [
        ["peer", "new", "1", `${lab.outer4.s}:1194`, `${lab.outer4.c1}:1194`, "--vpn-ip", "10.78.0.2"],
        ["key", "new", "1", "AES-256-GCM", "0", key, "--slot", "primary"],
      ]
    ) {
      const r = await lab.tool("s", [...args, "--ifname", SRV]);
      if (r.code !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
    }
    tool(
      "c1",
      starClientArgs({
        local: `${lab.outer4.c1}:1194`,
        server: `${lab.outer4.s}:1194`,
        peerId: 1,
        addr4: "10.78.0.2",
        addr6: "fd78::2",
        key,
        proto: "udp",
      }),
    );
    await lab.waitFor(
      async () =>
        (await lab.run("c1", ["ping", "-c", "1", "-W", "1", "10.78.0.1"], { allowFail: true })).includes(
          " 0% packet loss",
        ),
      30000,
      "client 1 reaching the server",
    );
    const iperfSrv = lab.spawn(
      "s",
      pin(layout, "tunnel", ["iperf3", "-s", "--forceflush", "-B", "10.78.0.1"]),
    );
    await lab.waitFor(() => iperfSrv.output().includes("listening"), 10000, "the iperf3 server");
    const mbit = async () => {
      const r = JSON.parse(
        await lab.run(
          "c1",
          pin(layout, "tunnel", ["iperf3", "-c", "10.78.0.1", "-t", String(SECONDS), "-J"]),
          { allowFail: true },
        ),
      );
      return r.end?.sum_received ? r.end.sum_received.bits_per_second / 1e6 : 0;
    };
    const measure = async (kind: Kind) => {
      if (kind === "quiet") return await mbit();
      const port = kind === "server" ? "1194" : "1195";
      const flood = lab.spawn(
        "c2",
        pin(layout, "flooder", [
          ...[Deno.execPath(), "run", "-A", FLOOD, lab.outer4.s, port, String(SECONDS + 4)],
          ...[String(SOCKETS), String(SIZE), "1e9"],
        ]),
      );
      await new Promise((r) => setTimeout(r, 1500)); // the flooder running at full rate
      const m = await mbit();
      const st = await flood.status;
      if (!st.success) throw new Error(`the flooder failed: ${flood.output()}`);
      if (kind === "server") floodSent += Number(flood.output().trim().split("\n").pop());
      return m;
    };
    const kinds: Kind[] = ["quiet", "reference", "server"];
    for (let r = 0; r < ROUNDS; r++) {
      const line: string[] = [];
      for (let i = 0; i < kinds.length; i++) {
        const kind = kinds[(i + r) % kinds.length];
        const m = await measure(kind);
        results[kind].push(m);
        line.push(`${kind} ${m.toFixed(0)}`);
      }
      console.log(`${layout}, round ${r + 1}: ${line.join(", ")} Mbit/s`);
    }
    const st = JSON.parse((await lab.tool("s", ["stats", "--all", "--json", "--ifname", SRV])).stdout);
    const drops = st.device?.drops ?? {};
    const dropped = (drops["kernel-socket"] ?? 0) + (drops["wrong-source"] ?? 0);
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    const q = median(results.quiet), ref = median(results.reference), s = median(results.server);
    return {
      layout,
      mbit: results,
      median: { quiet: q, reference: ref, server: s },
      serverOfQuiet: s / q,
      serverOfReference: s / ref,
      floodSent,
      dropped,
    };
  } finally {
    await lab.destroy();
  }
}

const layouts: Layout[] = CPUS >= 2 ? ["shared", "own core"] : ["shared"];
const rows = [];
for (const [i, layout] of layouts.entries()) rows.push(await measureLayout(layout, 160 + i));
console.log(
  `\nflood: ${SOCKETS} senders of ${SIZE}-byte non-data datagrams as fast as they go; the real client's median TCP throughput (Mbit/s), ${ROUNDS} rounds of ${SECONDS} s:`,
);
console.log("layout      quiet   flood at a closed port   flood at the server   of quiet   of the reference");
for (const r of rows) {
  const m = r.median;
  console.log(
    `${r.layout.padEnd(10)}  ${m.quiet.toFixed(0).padStart(5)}   ${m.reference.toFixed(0).padStart(6)} (${
      (m.reference / m.quiet).toFixed(2)
    })            ${m.server.toFixed(0).padStart(6)}              ${
      r.serverOfQuiet.toFixed(2).padStart(5)
    }      ${
      r.serverOfReference.toFixed(2)
    }   (${r.floodSent} datagrams at the server, ${r.dropped} counted and dropped)`,
  );
}
const out = Deno.env.get("BENCH_OUT") ?? "bench-results";
await Deno.mkdir(out, { recursive: true });
await Deno.writeTextFile(
  `${out}/flood.json`,
  JSON.stringify({ rounds: ROUNDS, seconds: SECONDS, size: SIZE, sockets: SOCKETS, layouts: rows }, null, 2) +
    "\n",
);
