import { assert, assertEquals } from "../../tests/assert.ts";
import { opened, sealed } from "../../tests/helpers/channel_io.ts";
import { cipherByName } from "../../crypto/aead.ts";
import { DataChannel, type KeyMaterial, KeySlotId } from "./channel.ts";
import { EPOCH_OVERHEAD, HEADROOM, OP_DATA_V2, TAILROOM } from "./packet.ts";

const e1a = new Uint8Array(32).fill(0x5a), e1b = new Uint8Array(32).fill(0xa5);

function epochKey(cipher: string, keyId: number, dir: 0 | 1): KeyMaterial {
  return {
    cipher: cipherByName(cipher)!,
    keyId,
    encryptKey: (dir ? e1b : e1a).slice(),
    decryptKey: (dir ? e1a : e1b).slice(),
    encryptNonceTail: new Uint8Array(8),
    decryptNonceTail: new Uint8Array(8),
    epoch: true,
  };
}

function pair(cipher = "AES-256-GCM", peerId = 3) {
  const a = new DataChannel({ peerId, now: () => 0 });
  const b = new DataChannel({ peerId, now: () => 0 });
  a.newKey(KeySlotId.PRIMARY, epochKey(cipher, 0, 0));
  b.newKey(KeySlotId.PRIMARY, epochKey(cipher, 0, 1));
  return { a, b };
}

const payload = (n: number, v = 0x45) => new Uint8Array(n).fill(v);
const epochOf = (w: Uint8Array) => (w[4] << 8) | w[5];
const counterOf = (w: Uint8Array) => new DataView(w.buffer, w.byteOffset).getUint32(8);

for (const cipher of ["AES-128-GCM", "AES-192-GCM", "AES-256-GCM", "CHACHA20-POLY1305"]) {
  Deno.test(`channel epoch ${cipher}: round trip, 64-bit packet id, tag at the end, keepalive`, () => {
    const { a, b } = pair(cipher);
    const w = sealed(a, payload(100));
    assertEquals(w.length, 100 + EPOCH_OVERHEAD);
    assertEquals([w[0], w[1], w[2], w[3]], [OP_DATA_V2 << 3, 0, 0, 3]);
    assertEquals([epochOf(w), w[6], w[7], counterOf(w)], [1, 0, 0, 1]);
    assertEquals(opened(b, w), payload(100));
    assertEquals(counterOf(sealed(a, payload(1))), 2);
    const ka = new Uint8Array(HEADROOM + 16 + TAILROOM);
    const s = a.sealKeepalive(ka);
    assertEquals(opened(b, ka.slice(s, a.sealEnd)), "keepalive");
    assertEquals(b.stats.ReceivedDataPackets, 2);
    assertEquals(a.epochs(), { send: 1, recv: 1 });
  });
}

Deno.test("channel epoch: a forced next epoch is followed by the peer, and the old epoch still opens while retiring", () => {
  const changes: string[] = [];
  const seen: [number, number][] = [];
  const a = new DataChannel({ peerId: 3, now: () => 0 });
  const b = new DataChannel({
    peerId: 3,
    now: () => 0,
    onPeerEpoch: (g, e) => seen.push([g, e]),
    onEpochChange: () => changes.push(JSON.stringify(b.epochs())),
  });
  a.newKey(KeySlotId.PRIMARY, epochKey("AES-256-GCM", 0, 0));
  b.newKey(KeySlotId.PRIMARY, epochKey("AES-256-GCM", 0, 1), 42);
  const late = sealed(a, payload(50)); // epoch 1, sent before the move, arrives after it
  assert(a.nextEpoch());
  assertEquals(a.epochs(), { send: 2, recv: 1 });
  const w = sealed(a, payload(50));
  assertEquals([epochOf(w), counterOf(w)], [2, 1]); // a new epoch restarts the counter
  assertEquals(opened(b, w), payload(50));
  assertEquals(b.epochs(), { send: 2, recv: 2 }); // b followed a
  assertEquals(seen, [[42, 2]]);
  assert(changes.includes(JSON.stringify({ send: 2, recv: 2 })));
  assertEquals(opened(b, late), payload(50)); // the retiring key still opens epoch 1
  assertEquals(opened(b, late), "drop"); // ... with its own replay window
  assertEquals(b.drops.get("replay"), 1);
  // b's replies are now epoch 2, which a accepts as a future key
  const r = sealed(b, payload(20));
  assertEquals(epochOf(r), 2);
  assertEquals(opened(a, r), payload(20));
  assertEquals(a.epochs(), { send: 2, recv: 2 });
  // after one more move, epoch 1 is gone
  a.nextEpoch();
  assertEquals(opened(b, sealed(a, payload(5))), payload(5));
  assertEquals(b.epochs()?.recv, 3);
  assertEquals(opened(b, late), "drop");
  assertEquals(b.drops.get("unknown-epoch"), 1);
});

Deno.test("channel epoch: packets from beyond the 16 future epochs, epoch 0, forged and short ones are dropped and counted", () => {
  const { a, b } = pair();
  for (let i = 0; i < 17; i++) a.nextEpoch(); // epoch 18 = current 1 + 17
  const far = sealed(a, payload(40));
  assertEquals(epochOf(far), 18);
  assertEquals(opened(b, far), "drop");
  assertEquals(b.drops.get("unknown-epoch"), 1);
  assertEquals(b.epochs()?.recv, 1);
  const zero = far.slice();
  zero[4] = zero[5] = 0;
  assertEquals(opened(b, zero), "drop");
  assertEquals(b.drops.get("unknown-epoch"), 2);
  const { a: a2, b: b2 } = pair();
  const ok = sealed(a2, payload(40));
  const forged = ok.slice();
  forged[20] ^= 1;
  assertEquals(opened(b2, forged), "drop");
  assertEquals(b2.drops.get("bad-tag"), 1);
  assertEquals(b2.keys.primary!.epochRecv!.current.key.failed, 1);
  assertEquals(opened(b2, ok.slice(0, EPOCH_OVERHEAD)), "drop"); // no payload byte
  assertEquals(b2.drops.get("too-short"), 1);
  // a forged packet claiming a future epoch does not move anything
  const { a: a3, b: b3 } = pair();
  a3.nextEpoch();
  const f2 = sealed(a3, payload(40));
  f2[f2.length - 1] ^= 1;
  assertEquals(opened(b3, f2), "drop");
  assertEquals(b3.epochs(), { send: 1, recv: 1 });
  assertEquals(opened(b2, ok), payload(40)); // the genuine one still opens
  assertEquals(b.stats.LostInDataPackets + b2.stats.LostInDataPackets + b3.stats.LostInDataPackets, 5);
});

Deno.test("channel epoch: an epoch key and a DATA_V2 key side by side, swapped and told apart by key id", () => {
  const { a, b } = pair();
  const v2 = (dir: 0 | 1): KeyMaterial => ({
    ...epochKey("AES-128-GCM", 1, dir),
    epoch: false,
    encryptKey: new Uint8Array(16).fill(dir + 1),
    decryptKey: new Uint8Array(16).fill(2 - dir),
  });
  a.newKey(KeySlotId.SECONDARY, v2(0));
  b.newKey(KeySlotId.SECONDARY, v2(1));
  const e = sealed(a, payload(30));
  a.keys.swap();
  const d = sealed(a, payload(30));
  assertEquals(d.length, 30 + 24); // DATA_V2
  assertEquals(d[0] & 7, 1);
  assertEquals(a.epochs(), null);
  assertEquals(opened(b, d), payload(30));
  assertEquals(opened(b, e), payload(30));
});

Deno.test("channel epoch: the sender at the usage limit moves to the next epoch and the peer follows", () => {
  const { a, b } = pair("AES-128-GCM");
  a.keys.primary!.epochSend!.limit = 50; // packets + 16-byte blocks
  let last = 0;
  for (let i = 0; i < 20; i++) {
    const w = sealed(a, payload(64)); // 4 blocks each
    last = epochOf(w);
    assertEquals(opened(b, w), payload(64));
  }
  assert(last >= 2, `still at epoch ${last}`);
  assertEquals(b.epochs()?.recv, last);
  assertEquals(b.stats.LostInDataPackets, 0);
});
