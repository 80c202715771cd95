/**
 * The data path makes no garbage per packet: a p2p tunnel with V8's `--trace-gc` carries 400 000 64-byte UDP
 * datagrams and a 50 MB TCP transfer, and each instance's busiest isolate (its tx or rx worker) may scavenge
 * its young generation only as often as 64 bytes per packet would make it. Before, the workers made about 700
 * bytes of garbage per packet sealed and 530 per packet opened (views per send slot and receive offset, a
 * header object, closures, boxed FFI results), and spent up to a tenth of a core in scavenges. Counting
 * scavenges does not depend on the machine's speed. Needs root.
 */
import { assert } from "./assert.ts";
import { NetnsLab } from "../cmd/netns.ts";
import { startPair } from "../cmd/demo.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";
import { statsOf, verifiedTransfer } from "./lab.ts";

/** Scavenges per isolate in `out` from offset `from` on (V8's --trace-gc lines name the isolate). */
function scavenges(out: string, from: number): Map<string, number> {
  const by = new Map<string, number>();
  for (const m of out.slice(from).matchAll(/\[\d+:(0x[0-9a-f]+)\][^\n]*Scavenge/g)) {
    by.set(m[1], (by.get(m[1]) ?? 0) + 1);
  }
  return by;
}

Deno.test({
  name: "data path: no garbage per packet (64-byte UDP and TCP through a p2p tunnel, scavenges counted)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const lab = await NetnsLab.create(170);
    try {
      const keyFile = `${lab.runDir}/k.key`;
      await writeNewKeyFile(keyFile);
      const { a, b } = await startPair(lab, {
        proto: "udp",
        cipher: "AES-256-GCM",
        keyFile,
        env: { DENO_V8_FLAGS: "--trace-gc" },
      });
      const server = lab.spawn("b", ["iperf3", "-s", "--forceflush", "-B", lab.inner4.b]);
      try {
        await lab.waitFor(() => server.output().includes("listening"), 10000, "the iperf3 server");
        const cases: [string, () => Promise<unknown>][] = [
          [
            "64-byte UDP",
            () =>
              lab.run("a", [
                ...["iperf3", "-c", lab.inner4.b, "-u", "-l", "64", "-b", "0", "-n", String(64 * 400_000)],
                ...["-w", "4M", "-J"],
              ]),
          ],
          ["TCP", () => verifiedTransfer(lab, lab.inner4.b, 50 * 1024 * 1024, 5301)],
        ];
        for (const [name, run] of cases) {
          const s0 = [await statsOf(lab, "a"), await statsOf(lab, "b")];
          const from = [a.output().length, b.output().length];
          await run();
          await new Promise((r) => setTimeout(r, 1000)); // the instances' trace lines read from their pipes
          const s1 = [await statsOf(lab, "a"), await statsOf(lab, "b")];
          const sealed = s1[0].sentDataPkts - s0[0].sentDataPkts;
          const opened = s1[1].rcvdDataPkts - s0[1].rcvdDataPkts;
          assert(sealed > 20_000 && opened > 10_000, `${name}: only ${sealed} sealed, ${opened} opened`);
          for (const [side, p, i, packets] of [["a", a, 0, sealed], ["b", b, 1, opened]] as const) {
            const by = scavenges(p.output(), from[i]);
            const worst = Math.max(0, ...by.values());
            // a young generation of at least 1 MB: one scavenge per MB of garbage at most
            const allowed = Math.ceil(packets * 64 / (1 << 20)) + 2;
            console.log(
              `  ${name}, ${side}: ${packets} packets, scavenges per isolate ${
                JSON.stringify([...by.values()])
              }`,
            );
            assert(
              worst <= allowed,
              `${name}: an isolate of ${side} scavenged ${worst} times for ${packets} packets (at most ${allowed}: 64 B per packet)`,
            );
          }
        }
      } finally {
        await lab.stop(server);
      }
    } finally {
      await lab.destroy();
    }
  },
});
