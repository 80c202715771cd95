import { assert, assertEquals } from "../tests/assert.ts";
import { serverChart } from "./server_chart.ts";

Deno.test("bench:server chart: every peer count on the x axis, a line per direction, no point where a figure is missing", () => {
  const row = (peers: number, k: number) => ({
    peers,
    upPps: 200_000 / k,
    downPps: 300_000 / k,
    upCpuPerGB: 9 * k,
    downCpuPerGB: 6 * k,
    rssPerPeerKB: 3000 / peers,
  });
  const svg = serverChart([row(1, 1), row(10, 1.2), row(100, 1.3), row(1000, 1.6)], "512-byte packets");
  for (const label of [">1<", ">10<", ">100<", ">1000<", "packets/s", "CPU-s per GB", "memory per peer"]) {
    assert(svg.includes(label), label);
  }
  assertEquals(svg.match(/<polyline/g)?.length, 5, "up and down twice, memory once");
  // the memory line has no point at 1 peer (nothing was added): 4 + 4 + 4 + 4 + 3 points
  assertEquals(svg.match(/<circle/g)?.length, 19);
  assert(!svg.includes("NaN"), "no NaN coordinates");
});
