/**
 * Shared pieces of the end-to-end suites: a verified TCP transfer through a lab tunnel, and helpers.
 * @module
 */
import { assertEquals } from "./assert.ts";
import type { NetnsLab } from "../cmd/netns.ts";

const XFER = new URL("./helpers/xfer.ts", import.meta.url).pathname;

/** Send `bytes` from a to b over TCP to `dst` and check that b received exactly what a sent. */
export async function verifiedTransfer(
  lab: NetnsLab,
  dst: string,
  bytes: number,
  port = 5301,
): Promise<void> {
  const sink = lab.spawn("b", [Deno.execPath(), "run", "-A", XFER, "sink", dst, String(port)]);
  await lab.waitFor(() => sink.output().includes("listening"), 15000, "the transfer sink");
  const sent =
    (await lab.run("a", [Deno.execPath(), "run", "-A", XFER, "source", dst, String(port), String(bytes)]))
      .trim().split("\n").pop()!;
  const st = await sink.status;
  assertEquals(st.code, 0, `sink failed: ${sink.output()}`);
  const got = sink.output().trim().split("\n").pop()!;
  assertEquals(got, sent, "bytes received differ from bytes sent");
  assertEquals(sent.split(" ")[0], String(bytes));
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
