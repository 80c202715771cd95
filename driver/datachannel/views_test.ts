import { assert, assertEquals } from "../../tests/assert.ts";
import { SpanCache } from "./views.ts";

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
