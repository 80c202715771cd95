import { assert, assertEquals } from "../../tests/assert.ts";
import { OffsetCache, SpanCache } from "./views.ts";

Deno.test("views: one view per buffer, start and end; a new end replaces the start's view; bounded", () => {
  const spans = new SpanCache(4);
  const a = new Uint8Array(64).map((_, i) => i), b = new Uint8Array(64);
  const v = spans.view(a, 8, 16);
  assertEquals([...v], [8, 9, 10, 11, 12, 13, 14, 15]);
  assert(spans.view(a, 8, 16) === v, "the same span gives the same view");
  assert(spans.view(b, 8, 16) !== v, "another buffer has its own");
  const w = spans.view(a, 8, 12);
  assertEquals([...w], [8, 9, 10, 11]);
  assert(spans.view(a, 8, 12) === w);
  // past its bound it starts over, and still answers right
  for (let s = 0; s < 10; s++) assertEquals(spans.view(a, s, s + 2)[0], s);
  assertEquals([...spans.view(a, 8, 16)], [8, 9, 10, 11, 12, 13, 14, 15]);
});

Deno.test("views: OffsetCache keeps one entry per buffer and offset across many offsets and buffers", () => {
  let made = 0;
  const cache = new OffsetCache(100_000, () => ({ id: made++ }));
  const a = new Uint8Array(8), b = new Uint8Array(8);
  // the offsets of 64 receive slots of 64 KB with 45 datagrams of 1452 bytes each, in two buffers
  const offsets: number[] = [];
  for (let slot = 0; slot < 64; slot++) for (let k = 0; k < 45; k++) offsets.push(slot * 65536 + k * 1452);
  const first = new Map<string, number>();
  for (const buf of [a, b]) {
    for (const off of offsets) first.set(`${buf === a}:${off}`, cache.at(buf, off).id);
  }
  assertEquals(made, 2 * offsets.length, "one entry per buffer and offset");
  for (const off of offsets.toReversed()) {
    for (const buf of [b, a]) assertEquals(cache.at(buf, off).id, first.get(`${buf === a}:${off}`));
  }
  assertEquals(made, 2 * offsets.length, "found again, none made anew");
  // bounded: past max it starts over and still answers
  const small = new OffsetCache(10, () => ({ id: made++ }));
  for (let i = 0; i < 25; i++) small.at(a, i);
  const again = small.at(a, 24).id;
  assertEquals(small.at(a, 24).id, again);
});
