import { assertEquals, assertMatch } from "../../tests/assert.ts";
import { RefusalWatch } from "./device_base.ts";

Deno.test("RefusalWatch: refused packets and nothing through for 2 s → one line naming the likely cause", () => {
  const w = new RefusalWatch();
  assertEquals(w.check(0, 5, {}), null); // healthy: 5 received
  assertEquals(w.check(500, 5, { "bad-tag": 2 }), null); // too few yet
  assertEquals(w.check(1000, 5, { "bad-tag": 4 }), null); // the spell starts
  assertEquals(w.check(2500, 5, { "bad-tag": 9 }), null); // not 2 s yet
  assertMatch(w.check(3100, 5, { "bad-tag": 12 })!, /12 of its packets fail authentication.*--key-direction/);
  assertEquals(w.check(4000, 5, { "bad-tag": 20 }), null); // said once
  assertEquals(w.check(4250, 6, { "bad-tag": 20 }), null); // one got through: the spell ends
  assertEquals(w.current({ "bad-tag": 20 }), null);
  w.check(5000, 6, { "bad-tag": 20, "wrong-peer": 5 });
  assertMatch(
    w.check(7100, 6, { "bad-tag": 21, "wrong-peer": 9 })!,
    /9 of its packets carry another peer id/,
  );
  assertMatch(w.current({ "unknown-key-id": 4 })!, /--key-id/);
  assertEquals(w.current({ "queue-full": 100 }), null); // not something the peer's settings cause
});

Deno.test("RefusalWatch: a run of authentic packets with used ids, nothing through → the peer restarted", () => {
  const w = new RefusalWatch();
  w.check(0, 100, { replay: 2 }); // a couple of duplicates on the path: healthy
  assertEquals(w.check(1000, 100, { replay: 6, "too-old": 1 }), null); // 5 so far
  assertEquals(w.check(3500, 100, { replay: 8, "too-old": 2 }), null); // not 10 yet
  assertEquals(w.check(3750, 100, { replay: 12, "too-old": 3 }), null); // 13: the spell starts
  assertMatch(
    w.check(5800, 100, { replay: 30, "too-old": 3 })!,
    /31 of its packets .*the peer restarted with the same key/,
  );
});
