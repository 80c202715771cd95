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
 * Environment: BENCH_FLOOD_ROUNDS (3), BENCH_FLOOD_SECONDS (5), BENCH_FLOOD_SIZE (61440), BENCH_FLOOD_SOCKETS (4).
 * @module
 */
import { StarLab } from "../cmd/netns.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";
import { starClientArgs } from "../tests/lab.ts";

const ROUNDS = Number(Deno.env.get("BENCH_FLOOD_ROUNDS") ?? "3");
const SECONDS = Number(Deno.env.get("BENCH_FLOOD_SECONDS") ?? "5");
const SIZE = Number(Deno.env.get("BENCH_FLOOD_SIZE") ?? String(60 * 1024));
const SOCKETS = Number(Deno.env.get("BENCH_FLOOD_SOCKETS") ?? "4");
const FLOOD = new URL("../tests/helpers/flood.ts", import.meta.url).pathname;
const SRV = "ovpn-srv";

type Kind = "quiet" | "reference" | "server";

const lab = await StarLab.create(160, 2);
const results: Record<Kind, number[]> = { quiet: [], reference: [], server: [] };
let floodSent = 0;
try {
  const srv = lab.startTool("s", [
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
  lab.startTool(
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
  const iperfSrv = lab.spawn("s", ["iperf3", "-s", "--forceflush", "-B", "10.78.0.1"]);
  await lab.waitFor(() => iperfSrv.output().includes("listening"), 10000, "the iperf3 server");
  const mbit = async () => {
    const r = JSON.parse(
      await lab.run("c1", ["iperf3", "-c", "10.78.0.1", "-t", String(SECONDS), "-J"], { allowFail: true }),
    );
    return r.end?.sum_received ? r.end.sum_received.bits_per_second / 1e6 : 0;
  };
  const measure = async (kind: Kind) => {
    if (kind === "quiet") return await mbit();
    const port = kind === "server" ? "1194" : "1195";
    const flood = lab.spawn("c2", [
      ...[Deno.execPath(), "run", "-A", FLOOD, lab.outer4.s, port, String(SECONDS + 4)],
      ...[String(SOCKETS), String(SIZE), "1e9"],
    ]);
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
    console.log(`round ${r + 1}: ${line.join(", ")} Mbit/s`);
  }
  const st = JSON.parse((await lab.tool("s", ["stats", "--all", "--json", "--ifname", SRV])).stdout);
  const drops = st.device?.drops ?? {};
  const dropped = (drops["kernel-socket"] ?? 0) + (drops["wrong-source"] ?? 0);
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const q = median(results.quiet), ref = median(results.reference), s = median(results.server);
  console.log(
    `\nflood: ${SOCKETS} senders of ${SIZE}-byte non-data datagrams, ${floodSent} sent at the server in its rounds, ${dropped} counted and dropped by it`,
  );
  console.log(`median TCP throughput of the real client (Mbit/s), ${ROUNDS} rounds of ${SECONDS} s:`);
  console.log(`  quiet                                   ${q.toFixed(0)}`);
  console.log(
    `  flood at a port where nothing listens   ${ref.toFixed(0)}  (${(ref / q).toFixed(2)} of quiet)`,
  );
  console.log(
    `  flood at the server                     ${s.toFixed(0)}  (${(s / q).toFixed(2)} of quiet, ${
      (s / ref).toFixed(2)
    } of the reference)`,
  );
  const out = Deno.env.get("BENCH_OUT") ?? "bench-results";
  await Deno.mkdir(out, { recursive: true });
  await Deno.writeTextFile(
    `${out}/flood.json`,
    JSON.stringify(
      {
        rounds: ROUNDS,
        seconds: SECONDS,
        size: SIZE,
        sockets: SOCKETS,
        mbit: results,
        median: { quiet: q, reference: ref, server: s },
        serverOfQuiet: s / q,
        serverOfReference: s / ref,
        floodSent,
        dropped,
      },
      null,
      2,
    ) + "\n",
  );
} finally {
  await lab.destroy();
}
