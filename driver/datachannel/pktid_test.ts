import { assertEquals } from "../../tests/assert.ts";
import {
  PacketIdCounter,
  PKTID_WRAP_LIMIT,
  REPLAY_EXPIRE_MS,
  REPLAY_WINDOW_SIZE,
  ReplayWindow,
} from "./pktid.ts";

Deno.test("pktid: counter starts at 1 and refuses at the wrap limit", () => {
  const c = new PacketIdCounter();
  assertEquals([c.next(), c.next(), c.next()], [1, 2, 3]);
  c.seek(PKTID_WRAP_LIMIT - 1);
  assertEquals(c.next(), PKTID_WRAP_LIMIT - 1);
  assertEquals(c.next(), -1);
  assertEquals(c.next(), -1);
});

// Each row: ids fed in order, and the verdicts expected.
const table: { name: string; ids: number[]; want: string[] }[] = [
  { name: "in order", ids: [1, 2, 3, 4], want: ["ok", "ok", "ok", "ok"] },
  { name: "id 0 is invalid", ids: [0, 1, 0], want: ["zero", "ok", "zero"] },
  { name: "duplicate", ids: [1, 2, 2, 1], want: ["ok", "ok", "replay", "replay"] },
  {
    name: "reordered within the window",
    ids: [1, 5, 3, 2, 4, 3],
    want: ["ok", "ok", "ok", "ok", "ok", "replay"],
  },
  { name: "jump forward then backtrack", ids: [10, 9, 1, 10], want: ["ok", "ok", "ok", "replay"] },
  {
    name: "older than the window",
    ids: [1, 1 + REPLAY_WINDOW_SIZE, 1, 2, 2],
    want: ["ok", "ok", "too-old", "ok", "replay"],
  },
  {
    name: "edge of the window",
    ids: [REPLAY_WINDOW_SIZE, 1, REPLAY_WINDOW_SIZE + 1, 1, 2],
    want: ["ok", "ok", "ok", "too-old", "ok"],
  },
  {
    name: "huge jump resets the window",
    ids: [5, 5 + 100_000, 5 + 100_000 - 1, 5],
    want: ["ok", "ok", "ok", "too-old"],
  },
  { name: "ids near 2^32", ids: [0xfffffff0, 0xffffffff, 0xfffffff5], want: ["ok", "ok", "ok"] },
];

for (const row of table) {
  Deno.test(`replay window: ${row.name}`, () => {
    const w = new ReplayWindow(() => 0);
    assertEquals(row.ids.map((id) => w.check(id)), row.want);
  });
}

Deno.test("replay window: backtracks expire after 30 s without an accepted packet", () => {
  let now = 1000;
  const w = new ReplayWindow(() => now);
  assertEquals(w.check(1), "ok");
  assertEquals(w.check(3), "ok");
  now += REPLAY_EXPIRE_MS - 1;
  assertEquals(w.check(5), "ok"); // in time: refreshes the expiry
  now += REPLAY_EXPIRE_MS;
  assertEquals(w.check(4), "expired"); // backtrack after the time window
  assertEquals(w.check(6), "ok"); // forward is always fine
  assertEquals(w.check(2), "expired");
});

Deno.test("replay window: every id of a shuffled block of 2048 is accepted exactly once", () => {
  const w = new ReplayWindow(() => 0);
  const ids = Array.from({ length: REPLAY_WINDOW_SIZE }, (_, i) => i + 1);
  let seed = 42;
  for (let i = ids.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const j = seed % (i + 1);
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  // the highest arrives first so that every other id is within the window
  ids.splice(ids.indexOf(REPLAY_WINDOW_SIZE), 1);
  assertEquals(w.check(REPLAY_WINDOW_SIZE), "ok");
  for (const id of ids) assertEquals(w.check(id), id === 0 ? "zero" : "ok", `id ${id}`);
  for (const id of ids.slice(0, 50)) assertEquals(w.check(id), "replay");
});
