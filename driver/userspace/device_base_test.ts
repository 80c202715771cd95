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
  assertEquals(w.current({ replay: 100 }), null); // not a configuration mismatch
});
