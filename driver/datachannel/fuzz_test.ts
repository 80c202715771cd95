import { assert, assertEquals } from "../../tests/assert.ts";
import { cipherByName } from "../../crypto/aead.ts";
import { DataChannel, KeySlotId, RX_DROP } from "./channel.ts";
import { HEADROOM, isDataV2, MAX_WIRE_LEN } from "./packet.ts";

/** xorshift32: seeded and reproducible. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

for (const cipher of ["AES-256-GCM", "CHACHA20-POLY1305"]) {
  Deno.test(`fuzz ${cipher}: 100,000 random and mutated packets are counted as lost and dropped, genuine traffic continues`, () => {
    const c = cipherByName(cipher)!;
    const k1 = new Uint8Array(32).fill(1),
      k2 = new Uint8Array(32).fill(2),
      t1 = new Uint8Array(8).fill(3),
      t2 = new Uint8Array(8).fill(4);
    const tx = new DataChannel({ peerId: 5 });
    const rx = new DataChannel({ peerId: 5 });
    tx.newKey(KeySlotId.PRIMARY, {
      cipher: c,
      keyId: 0,
      encryptKey: k1,
      encryptNonceTail: t1,
      decryptKey: k2,
      decryptNonceTail: t2,
    });
    rx.newKey(KeySlotId.PRIMARY, {
      cipher: c,
      keyId: 0,
      encryptKey: k2,
      encryptNonceTail: t2,
      decryptKey: k1,
      decryptNonceTail: t1,
    });
    const next = rng(0xc0ffee);
    const buf = new Uint8Array(MAX_WIRE_LEN + 512);
    const genuine: Uint8Array[] = [];
    const makeGenuine = () => {
      const len = 1 + (next() % 1400);
      for (let i = 0; i < len; i++) buf[HEADROOM + i] = next() & 0xff;
      const start = tx.seal(buf, len);
      return buf.slice(start, HEADROOM + len);
    };
    let fed = 0, control = 0, delivered = 0;
    const N = 100_000;
    for (let i = 0; i < N; i++) {
      let pkt: Uint8Array;
      const kind = next() % 4;
      if (kind === 0) {
        // pure random bytes of random length (sometimes over the limit)
        pkt = new Uint8Array(next() % (MAX_WIRE_LEN + 200));
        for (let j = 0; j < pkt.length; j++) pkt[j] = next() & 0xff;
        if (pkt.length && next() % 2) pkt[0] = (9 << 3) | (next() & 7); // force DATA_V2 half the time
      } else {
        if (genuine.length < 64 || next() % 8 === 0) genuine.push(makeGenuine());
        const base = genuine[next() % genuine.length];
        pkt = base.slice();
        if (kind === 1) {
          const flips = 1 + (next() % 4);
          for (let f = 0; f < flips; f++) pkt[next() % pkt.length] ^= 1 << (next() % 8);
          if (pkt.every((x, j) => x === base[j])) pkt[pkt.length - 1] ^= 0x80;
        } else if (kind === 2) {
          pkt = pkt.slice(0, next() % pkt.length); // truncated
        } else {
          const extra = new Uint8Array(1 + (next() % 64)).map(() => next() & 0xff);
          pkt = new Uint8Array([...pkt, ...extra]); // extended
        }
      }
      if (!isDataV2(pkt)) {
        control++; // handed up as control, never decrypted
        continue;
      }
      buf.set(pkt);
      const before = rx.stats.LostInDataPackets;
      const r = rx.open(buf, 0, pkt.length);
      fed++;
      assertEquals(r, RX_DROP, `packet #${i} (kind ${kind}) was accepted`);
      assertEquals(rx.stats.LostInDataPackets, before + 1);
      if (i % 1000 === 0) {
        const g = makeGenuine();
        buf.set(g);
        assert(rx.open(buf, 0, g.length) >= 0, "genuine packet refused during fuzzing");
        delivered++;
      }
    }
    assertEquals(fed + control, N);
    assert(fed > 80_000, `only ${fed} packets reached the decoder`);
    assertEquals(rx.stats.LostInDataPackets, fed);
    assertEquals(rx.stats.ReceivedDataPackets, delivered);
    tx.close();
    rx.close();
  });
}
