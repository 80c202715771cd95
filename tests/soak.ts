/**
 * Soak: one tunnel (two instances in two namespaces, AES-256-GCM over UDP) kept at full rate, iperf3 TCP and
 * 64-byte UDP alternating, with the resident memory of both instances sampled as it goes. The short form runs
 * in `npm test` (tests/soak_test.ts); the long form is `deno task soak` (10 minutes, RSS per minute):
 *
 *   deno run -A tests/soak.ts [--minutes N] [--phase SECONDS]
 *
 * It passes when, after the first minute (the short form: its first third), neither instance's resident memory
 * grew by 10 MB or more, and neither end dropped a packet inside the tunnel (no drop of any reason counted).
 * @module
 */
import { type LabProcess, NetnsLab } from "../cmd/netns.ts";
import { startPair } from "../cmd/demo.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";
import { rssMb, statsOf } from "./lab.ts";

export interface SoakSample {
  /** Seconds since the traffic began. */
  t: number;
  rssA: number;
  rssB: number;
}

export interface SoakResult {
  samples: SoakSample[];
  /** Bytes moved through the tunnel (iperf3's receiver), TCP and UDP phases together. */
  bytes: number;
  phases: number;
  /** Largest RSS of each instance once warm (after `warmS`), minus its RSS at `warmS`. */
  growthA: number;
  growthB: number;
  /** Drops counted by each end while the traffic ran (by reason; empty: nothing lost inside the tunnel). */
  dropsA: Record<string, number>;
  dropsB: Record<string, number>;
  warmS: number;
}

/**
 * Run the soak for `seconds` in a lab of its own (`index`), phases of `phaseS` seconds, sampling every `sampleS`;
 * `during(lab, a, b)` runs beside the traffic (the abuse of the control socket in the test). `say` gets progress.
 */
export async function soak(o: {
  seconds: number;
  phaseS: number;
  sampleS: number;
  warmS: number;
  index: number;
  say?: (line: string) => void;
  during?: (lab: NetnsLab, a: LabProcess, b: LabProcess) => Promise<void>;
}): Promise<SoakResult> {
  const lab = await NetnsLab.create(o.index);
  try {
    const keyFile = `${lab.runDir}/k.key`;
    await writeNewKeyFile(keyFile);
    const { a, b } = await startPair(lab, { proto: "udp", cipher: "AES-256-GCM", keyFile });
    const stats = async (s: "a" | "b") => (await statsOf(lab, s)).drops ?? {};
    // what either end counted while the other was still starting (a packet before its keys) is not the soak's
    const before = { a: await stats("a"), b: await stats("b") };
    const since = (now: Record<string, number>, then: Record<string, number>) =>
      Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - (then[k] ?? 0)]).filter(([, v]) => v));
    const server = lab.spawn("b", ["iperf3", "-s", "--forceflush", "-B", lab.inner4.b]);
    await lab.waitFor(() => server.output().includes("listening"), 10000, "the iperf3 server");
    const samples: SoakSample[] = [];
    const t0 = Date.now();
    const sample = () => {
      const s = { t: Math.round((Date.now() - t0) / 1000), rssA: rssMb(a.pid), rssB: rssMb(b.pid) };
      samples.push(s);
      o.say?.(`  t=${s.t}s rss a ${s.rssA.toFixed(1)} MB, b ${s.rssB.toFixed(1)} MB`);
    };
    sample();
    const timer = setInterval(sample, o.sampleS * 1000);
    // what runs beside the traffic: its failure is reported once the traffic is done
    const beside = (o.during ? o.during(lab, a, b) : Promise.resolve()).then(() => null, (e: Error) => e);
    let bytes = 0, phases = 0, retries = 0;
    try {
      while (Date.now() - t0 < o.seconds * 1000) {
        const udp = phases % 2 === 1;
        const left = Math.max(1, Math.min(o.phaseS, Math.ceil(o.seconds - (Date.now() - t0) / 1000)));
        const args = ["iperf3", "-c", lab.inner4.b, "-t", String(left), "-J"];
        if (udp) args.push("-u", "-l", "64", "-b", "0", "-w", "4M");
        // iperf3's server takes a moment between tests ("busy"): such a phase is tried again, anything else fails
        const r = JSON.parse(await lab.run("a", args, { allowFail: true }));
        if (r.error) {
          if (!/busy|connect/i.test(r.error) || ++retries > 5) throw new Error(`iperf3: ${r.error}`);
          await new Promise((res) => setTimeout(res, 500));
          continue;
        }
        bytes += udp ? r.end.sum.bytes * (1 - r.end.sum.lost_percent / 100) : r.end.sum_received.bytes;
        phases++;
      }
      const failed = await beside;
      if (failed) throw failed;
    } finally {
      clearInterval(timer);
    }
    sample();
    await lab.stop(server);
    const warm = samples.filter((s) => s.t >= o.warmS);
    const at = warm[0] ?? samples[samples.length - 1];
    return {
      samples,
      bytes,
      phases,
      growthA: Math.max(...warm.map((s) => s.rssA)) - at.rssA,
      growthB: Math.max(...warm.map((s) => s.rssB)) - at.rssB,
      dropsA: since(await stats("a"), before.a),
      dropsB: since(await stats("b"), before.b),
      warmS: o.warmS,
    };
  } finally {
    await lab.destroy();
  }
}

if (import.meta.main) {
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({
    args: Deno.args,
    options: { minutes: { type: "string" }, phase: { type: "string" } },
  });
  if (Deno.uid() !== 0) {
    console.error("soak needs root (network namespaces, tun devices)");
    Deno.exit(4);
  }
  const minutes = Number(values.minutes ?? "10"), phase = Number(values.phase ?? "10");
  console.log(
    `soak: ${minutes} min through one tunnel (AES-256-GCM over UDP), iperf3 TCP and 64-byte UDP alternating every ${phase} s`,
  );
  const r = await soak({
    seconds: minutes * 60,
    phaseS: phase,
    sampleS: 60,
    warmS: 60,
    index: 171,
    say: (l) => console.log(l),
  });
  console.log(
    `moved ${(r.bytes / 1e9).toFixed(2)} GB in ${r.phases} phases; RSS growth after the first minute: a ${
      r.growthA.toFixed(1)
    } MB, b ${r.growthB.toFixed(1)} MB; drops a ${JSON.stringify(r.dropsA)}, b ${JSON.stringify(r.dropsB)}`,
  );
  const ok = r.growthA < 10 && r.growthB < 10 && !Object.keys(r.dropsA).length &&
    !Object.keys(r.dropsB).length;
  console.log(ok ? "soak: ok" : "soak: FAILED");
  Deno.exit(ok ? 0 : 1);
}
