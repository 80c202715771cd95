import { assert, assertEquals } from "../../tests/assert.ts";
import { opened, sealed } from "../../tests/helpers/channel_io.ts";
import { cipherByName } from "../../crypto/aead.ts";
import { DataChannel, type KeyMaterial, KeySlotId } from "./channel.ts";
import { HEADROOM, KEEPALIVE_PING, MAX_WIRE_LEN, OP_DATA_V2, writeDataV2Header } from "./packet.ts";
import { PKTID_WRAP_LIMIT } from "./pktid.ts";

const keyA = new Uint8Array(32).fill(0xa1), keyB = new Uint8Array(32).fill(0xb2);
const tailA = new Uint8Array(8).fill(3), tailB = new Uint8Array(8).fill(4);

function material(cipher: string, keyId: number, dir: 0 | 1, seed = 0): KeyMaterial {
  const c = cipherByName(cipher)!;
  const a = keyA.map((x) => x ^ seed), b = keyB.map((x) => x ^ seed);
  return {
    cipher: c,
    keyId,
    encryptKey: (dir ? b : a).slice(0, c.keyLen),
    decryptKey: (dir ? a : b).slice(0, c.keyLen),
    encryptNonceTail: dir ? tailB : tailA,
    decryptNonceTail: dir ? tailA : tailB,
  };
}

/** Two ends of one tunnel, keyed alike. */
function pair(cipher = "AES-256-GCM", peerId = 7) {
  const a = new DataChannel({ peerId, now: () => 0 });
  const b = new DataChannel({ peerId, now: () => 0 });
  a.newKey(KeySlotId.PRIMARY, material(cipher, 0, 0));
  b.newKey(KeySlotId.PRIMARY, material(cipher, 0, 1));
  return { a, b };
}

const payload = (n: number, v = 0x45) => new Uint8Array(n).fill(v);

for (const cipher of ["AES-128-GCM", "AES-192-GCM", "AES-256-GCM", "CHACHA20-POLY1305", "none"]) {
  Deno.test(`channel ${cipher}: round trip, header layout, overhead and stats`, () => {
    const { a, b } = pair(cipher);
    const p = payload(100);
    const w = sealed(a, p);
    const overhead = cipher === "none" ? 8 : 24;
    assertEquals(w.length, 100 + overhead);
    assertEquals(w[0], OP_DATA_V2 << 3);
    assertEquals([...w.subarray(1, 8)], [0, 0, 7, 0, 0, 0, 1]);
    assertEquals(opened(b, w), p);
    assertEquals(b.stats.ReceivedDataPackets, 1);
    assertEquals(b.stats.TransportBytesReceived, 100 + overhead);
    assertEquals(a.stats.TunBytesSent, 100);
    if (cipher !== "none") {
      assertEquals(opened(b, w), "drop"); // replay
      assertEquals(b.stats.LostInDataPackets, 1);
    }
  });
}

Deno.test("channel: in order, reordered, duplicate, too old and id 0 (SPEC §4 table)", () => {
  const { a, b } = pair();
  const wires = Array.from({ length: 2100 }, (_, i) => sealed(a, payload(20, i & 0xff)));
  const rows: [number, "ok" | "drop"][] = [
    [0, "ok"],
    [1, "ok"],
    [4, "ok"], // reordered: skips 2,3
    [2, "ok"],
    [3, "ok"],
    [3, "drop"], // duplicate
    [2099, "ok"], // id 2100: ids ≤ 52 are now outside the window
    [10, "drop"], // id 11: older than the window
    [1500, "ok"], // within
    [1500, "drop"],
  ];
  for (const [i, want] of rows) {
    const r = opened(b, wires[i]);
    assertEquals(r === "drop" ? "drop" : "ok", want, `wire #${i}`);
  }
  assertEquals(b.stats.LostInDataPackets, 3);
  assertEquals(b.drops.get("replay"), 2);
  assertEquals(b.drops.get("too-old"), 1);
  // id 0: build a valid packet with packet id 0 by sealing on a counter forced to 0
  const { a: a2, b: b2 } = pair();
  a2.keys.primary!.tx.seek(0);
  assertEquals(opened(b2, sealed(a2, payload(10))), "drop");
  assertEquals(b2.drops.get("zero-pktid"), 1);
});

Deno.test("channel: the sender stops at the packet-id limit and counts the loss", () => {
  const { a, b } = pair();
  a.keys.primary!.tx.seek(PKTID_WRAP_LIMIT - 1);
  assert(opened(b, sealed(a, payload(10))) instanceof Uint8Array);
  const buf = new Uint8Array(200);
  assertEquals(a.seal(buf, 10), -1);
  assertEquals(a.stats.LostOutDataPackets, 1);
  assertEquals(a.drops.get("pktid-limit"), 1);
});

Deno.test("channel: no key → lost out; unknown key id → lost in", () => {
  const a = new DataChannel({ peerId: 1 });
  assertEquals(a.seal(new Uint8Array(100), 10), -1);
  assertEquals(a.stats.LostOutDataPackets, 1);
  const { a: x, b: y } = pair("AES-256-GCM", 1);
  x.newKey(KeySlotId.PRIMARY, material("AES-256-GCM", 3, 0));
  assertEquals(opened(y, sealed(x, payload(10))), "drop");
  assertEquals(y.drops.get("unknown-key-id"), 1);
});

Deno.test("channel: secondary slot decrypts by key id, swap moves encryption to it, delete drops it", () => {
  const { a, b } = pair();
  const p = payload(50);
  a.newKey(KeySlotId.SECONDARY, material("CHACHA20-POLY1305", 1, 0, 0x55));
  b.newKey(KeySlotId.SECONDARY, material("CHACHA20-POLY1305", 1, 1, 0x55));
  const old = sealed(a, p); // primary, key id 0
  assertEquals(old[0] & 7, 0);
  a.keys.swap();
  const neu = sealed(a, p); // now key id 1, packet id 1 of that key
  assertEquals(neu[0] & 7, 1);
  assertEquals(neu[7], 1);
  assertEquals(opened(b, neu), p); // b has not swapped yet: found by key id in its secondary
  assertEquals(opened(b, old), p);
  b.keys.swap();
  assertEquals(opened(b, sealed(a, p)), p);
  b.keys.delete(KeySlotId.SECONDARY); // the old key 0
  assertEquals(opened(b, old), "drop");
  assertEquals(b.drops.get("unknown-key-id"), 1);
});

Deno.test("channel: NEW_KEY resets packet ids and the replay window of that slot", () => {
  const { a, b } = pair();
  const first = sealed(a, payload(10));
  assertEquals(opened(b, first), payload(10));
  a.newKey(KeySlotId.PRIMARY, material("AES-256-GCM", 0, 0));
  b.newKey(KeySlotId.PRIMARY, material("AES-256-GCM", 0, 1));
  const again = sealed(a, payload(10));
  assertEquals(again[7], 1);
  assertEquals(opened(b, again), payload(10)); // window reset: id 1 is new again
});

Deno.test("channel: truncated, oversized, wrong peer id and forged packets are dropped and counted", () => {
  const { a, b } = pair();
  const w = sealed(a, payload(100));
  const cases: [string, Uint8Array, string][] = [
    ["header only", w.slice(0, 8), "too-short"],
    ["half a tag", w.slice(0, 20), "too-short"],
    ["3 bytes", w.slice(0, 3), "too-short"],
    ["truncated body", w.slice(0, 60), "bad-tag"],
    ["oversized", new Uint8Array(MAX_WIRE_LEN + 1).fill(OP_DATA_V2 << 3, 0, 1), "too-long"],
    [
      "flipped tag",
      (() => {
        const x = w.slice();
        x[10] ^= 1;
        return x;
      })(),
      "bad-tag",
    ],
    [
      "flipped header (AAD)",
      (() => {
        const x = w.slice();
        x[7] ^= 2;
        return x;
      })(),
      "bad-tag",
    ],
  ];
  const wrongPeer = w.slice();
  writeDataV2Header(wrongPeer, 0, 0, 8, 1);
  cases.push(["wrong peer id", wrongPeer, "wrong-peer"]);
  for (const [name, pkt, reason] of cases) {
    const before = b.drops.get(reason as never) ?? 0;
    assertEquals(opened(b, pkt), "drop", name);
    assertEquals(b.drops.get(reason as never), before + 1, name);
  }
  assertEquals(b.stats.LostInDataPackets, cases.length);
  assertEquals(opened(b, w), payload(100)); // the genuine one still goes through afterwards
});

Deno.test("channel: keepalive ping is sealed as data, counted on receipt, not delivered", () => {
  const { a, b } = pair();
  const buf = new Uint8Array(200);
  const start = a.sealKeepalive(buf);
  assertEquals(a.stats.TunBytesSent, 0);
  const r = opened(b, buf.slice(start, HEADROOM + KEEPALIVE_PING.length));
  assertEquals(r, "keepalive");
  assertEquals(b.stats.ReceivedDataPackets, 1);
});

Deno.test("channel: NONE cipher carries plaintext after an 8-byte header and accepts the driver's id 0", () => {
  const { a, b } = pair("none");
  const w = sealed(a, payload(30, 9));
  assertEquals(w.length, 38);
  assertEquals([...w.subarray(8)], [...payload(30, 9)]);
  const fromDriver = new Uint8Array(38);
  writeDataV2Header(fromDriver, 0, 0, 7, 0);
  assertEquals(opened(b, fromDriver), new Uint8Array(30));
});

Deno.test("keyMaterialProblem: every key length, nonce tail and key id is checked before a key is installed", async () => {
  const { keyMaterialProblem } = await import("./keyslot.ts");
  const { cipherByName } = await import("../../crypto/aead.ts");
  const k = (name: string, len: number, tail = 8, extra: Record<string, unknown> = {}) => ({
    cipher: cipherByName(name)!,
    keyId: 0,
    encryptKey: new Uint8Array(len),
    decryptKey: new Uint8Array(len),
    encryptNonceTail: new Uint8Array(tail),
    decryptNonceTail: new Uint8Array(tail),
    ...extra,
  });
  assertEquals(keyMaterialProblem(k("AES-256-GCM", 32)), null);
  assertEquals(keyMaterialProblem(k("AES-128-GCM", 16)), null);
  assertEquals(keyMaterialProblem(k("none", 0, 0)), null);
  assertEquals(keyMaterialProblem(k("AES-256-GCM", 32, 0, { epoch: true })), null);
  assertEquals(
    keyMaterialProblem(k("AES-256-GCM", 0)),
    "the encrypt AES-256-GCM key has 0 bytes; it must have 32",
  );
  assertEquals(
    keyMaterialProblem(k("AES-128-GCM", 32)),
    "the encrypt AES-128-GCM key has 32 bytes; it must have 16",
  );
  assertEquals(
    keyMaterialProblem(k("CHACHA20-POLY1305", 32, 4)),
    "the encrypt nonce tail has 4 bytes; it must have 8",
  );
  assertEquals(
    keyMaterialProblem(k("AES-128-GCM", 16, 8, { epoch: true })),
    "the encrypt epoch secret has 16 bytes; it must have 32",
  );
  assertEquals(keyMaterialProblem(k("AES-256-GCM", 32, 8, { keyId: 9 })), "key id 9 is not 0-7");
});
