import { assert, assertEquals } from "../../tests/assert.ts";
import { type Aead, cipherByName } from "../../crypto/aead.ts";
import {
  deriveEpochDataKey,
  EPOCH_MAX,
  EPOCH_PKTID_MAX,
  EpochRecv,
  EpochSend,
  hkdfExpand,
  type MakeAead,
  ovpnExpandLabel,
} from "./epoch.ts";

const hex = (s: string) => new Uint8Array(s.replace(/\s+/g, "").match(/../g)!.map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const range = (from: number, to: number) => {
  const o = new Uint8Array(to - from + 1);
  for (let i = 0; i < o.length; i++) o[i] = from + i;
  return o;
};

// A key-less AEAD for the structural tests (upstream's own tests only look at epochs, not bytes).
const fakeAead: MakeAead = () => ({ seal() {}, open: () => true, close() {} }) satisfies Aead;
const AES128 = cipherByName("AES-128-GCM")!;
const e1 = (fill: number) => {
  const s = new Uint8Array(32);
  s[0] = fill; // upstream: { 0x23 } sets the first byte only
  return s;
};

// Vectors from OpenVPN's tests/unit_tests/openvpn/test_crypto.c.
Deno.test("epoch: HKDF-Expand, RFC 5869 A.1 (upstream crypto_test_hkdf_expand_testa1)", () => {
  const prk = hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
  const okm = hkdfExpand(prk, range(0xf0, 0xf9), 42);
  assertEquals(
    toHex(okm),
    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
  );
});

Deno.test("epoch: HKDF-Expand, RFC 5869 A.2 and A.3", () => {
  const prk2 = hex("06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244");
  assertEquals(
    toHex(hkdfExpand(prk2, range(0xb0, 0xff), 82)),
    "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09" +
      "da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
  );
  const prk3 = hex("19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04");
  assertEquals(
    toHex(hkdfExpand(prk3, new Uint8Array(0), 42)),
    "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
  );
});

Deno.test("epoch: OpenVPN label expansion (upstream hkdf_expand_test_ovpn, ovpn_label_expand)", () => {
  const secret = hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
  // the info OpenVPN builds for "unit test" with 27 bytes out
  const info = hex("001b0e6f76706e20756e69742074657374 00");
  assertEquals(toHex(hkdfExpand(secret, info, 27)), "875a8eec18556380b8d933ed323c2df8e8eccf4972e683f06a83ac");
  assertEquals(
    toHex(ovpnExpandLabel(secret, "unit test", 27)),
    "875a8eec18556380b8d933ed323c2df8e8eccf4972e683f06a83ac",
  );
  assertEquals(toHex(ovpnExpandLabel(secret, "unit test", 16)), "185eaa1c7f228ab8eb29773214d92046");
});

Deno.test("epoch: data key derivation (upstream epoch_test_derive_data_key, AES-192-GCM, epoch 17)", () => {
  const e17 = new Uint8Array(32);
  e17[0] = 19;
  e17[1] = 12;
  const { key, iv } = deriveEpochDataKey(e17, 24);
  assertEquals(toHex(key), "ed8533db1c28ace418e9006ab29c17417d60ebe6cd90bf0a");
  assertEquals(toHex(iv), "86890aabf032cb59f4cfa34e");
});

Deno.test("epoch: future keys after start and after a move (upstream crypto_test_epoch_key_generation, 16)", () => {
  const r = new EpochRecv(e1(0x27), AES128, fakeAead, { futureCount: 16 });
  assertEquals(r.future[0].epoch, 2);
  assertEquals(r.future[15].epoch, 17);
  r.moveTo(8);
  assertEquals(r.future[0].epoch, 9);
  assertEquals(r.future[15].epoch, 24);
  assertEquals(r.future.length, 16);
});

Deno.test("epoch: rotation, the sender follows a higher receive epoch (upstream crypto_test_epoch_key_rotation, 13)", () => {
  const s = new EpochSend(e1(0x23), AES128, fakeAead);
  const r = new EpochRecv(e1(0x27), AES128, fakeAead, { futureCount: 13 });
  const replace = (epoch: number) => {
    r.moveTo(epoch);
    s.followTo(epoch);
  };
  replace(9);
  assertEquals([r.epoch, s.epoch, r.retiring?.key.epoch], [9, 9, 1]);
  for (let i = 0; i < 4; i++) s.advance();
  assertEquals(s.epoch, 13);
  replace(10);
  assertEquals([r.epoch, s.epoch, r.retiring?.key.epoch], [10, 13, 9]);
  replace(12);
  assertEquals([r.epoch, s.epoch, r.retiring?.key.epoch], [12, 13, 10]);
  s.advance();
  assertEquals(s.epoch, 14);
});

Deno.test("epoch: receive key lookup (upstream crypto_test_epoch_key_receive_lookup, 13)", () => {
  const r = new EpochRecv(e1(0x27), AES128, fakeAead, { futureCount: 13 });
  const at = (e: number) => r.lookup(e)?.epoch;
  for (const e of [2000, 0xefff, 0, 15, 65535]) assertEquals(at(e), undefined, `epoch ${e}`);
  assertEquals([at(1), at(2), at(13), at(14)], [1, 2, 13, 14]);
  r.moveTo(7);
  assertEquals(r.lookup(1), r.retiring?.key);
  for (const e of [0, 2, 3, 4, 5, 6, 21, 22]) assertEquals(at(e), undefined, `epoch ${e}`);
  assertEquals([at(1), at(7), at(8), at(20)], [1, 7, 8, 20]);
  r.moveTo(8);
  for (const e of [0, 1, 2, 6, 22, 23]) assertEquals(at(e), undefined, `epoch ${e}`);
  assertEquals(r.lookup(7), r.retiring?.key);
  assertEquals([at(8), at(20), at(21)], [8, 20, 21]);
});

Deno.test("epoch: every step up to the edge of the window is accepted (upstream crypto_test_epoch_edge, 13)", () => {
  const r = new EpochRecv(e1(0x27), AES128, fakeAead, { futureCount: 13 });
  for (let i = 1; i <= 13; i++) {
    const target = r.epoch + i;
    assertEquals(r.lookup(target)?.epoch, target);
    r.moveTo(target);
    assertEquals(r.epoch, target);
  }
  assertEquals(r.lookup(r.epoch + 14), undefined);
});

Deno.test("epoch: the top of the epoch space (upstream crypto_test_epoch_key_overflow, 32)", () => {
  const r = new EpochRecv(e1(0x27), AES128, fakeAead, { futureCount: 32 });
  while (r.epoch < EPOCH_MAX - 40) r.moveTo(r.epoch + 10 > EPOCH_MAX - 40 ? EPOCH_MAX - 40 : r.epoch + 10);
  assertEquals(r.lookup(EPOCH_MAX - 34)?.epoch, EPOCH_MAX - 34);
  assertEquals(r.lookup(EPOCH_MAX - 33)?.epoch, EPOCH_MAX - 33);
  assertEquals(r.lookup(EPOCH_MAX - 32), undefined);
  assertEquals(r.lookup(EPOCH_MAX), undefined);
  r.moveTo(EPOCH_MAX - 33);
  assertEquals(r.lookup(EPOCH_MAX - 33)?.epoch, EPOCH_MAX - 33);
  assertEquals(r.lookup(EPOCH_MAX - 32), undefined);
  // the sender stops at the last epoch
  const s = new EpochSend(e1(0x23), AES128, fakeAead);
  assert(s.followTo(EPOCH_MAX));
  assertEquals(s.advance(), false);
  assertEquals(s.epoch, EPOCH_MAX);
});

Deno.test("epoch: the sender moves on when the usage limit or the 48-bit counter is used up", () => {
  const s = new EpochSend(e1(0x23), AES128, fakeAead, 100); // 100 packets + blocks
  const seen: [number, number][] = [];
  for (let i = 0; i < 12; i++) seen.push([s.epoch, s.next(144)].map(Number) as [number, number]); // 9 blocks each
  // 1..10 in epoch 1 (after 10 packets: 90 blocks + 10 > 100 is false; after 11: 99 + 11 > 100)
  assertEquals(seen.slice(0, 3), [[1, 1], [1, 2], [1, 3]]);
  assert(s.epoch === 2, `epoch ${s.epoch}`);
  const c = new EpochSend(e1(0x23), cipherByName("CHACHA20-POLY1305")!, fakeAead);
  assertEquals(c.limit, 0); // ChaCha20-Poly1305 has no usage limit in OpenVPN
  c.counter = EPOCH_PKTID_MAX - 1;
  assertEquals([c.next(10), c.epoch], [EPOCH_PKTID_MAX, 1]);
  assertEquals([c.next(10), c.epoch], [1, 2]);
  // at the last epoch nothing is left
  c.followTo(EPOCH_MAX);
  c.counter = EPOCH_PKTID_MAX;
  assertEquals(c.next(10), -1);
});

Deno.test("epoch: the retiring key keeps its own replay window", () => {
  const r = new EpochRecv(e1(0x27), AES128, fakeAead);
  assertEquals(r.accept(r.lookup(1)!, 5).verdict, "ok");
  const k2 = r.lookup(2)!;
  assertEquals(r.accept(k2, 1), { verdict: "ok", moved: true });
  assertEquals(r.accept(r.lookup(1)!, 5), { verdict: "replay", moved: false });
  assertEquals(r.accept(r.lookup(1)!, 6), { verdict: "ok", moved: false });
  assertEquals(r.accept(k2, 1), { verdict: "replay", moved: false });
  // moving again retires epoch 2 and forgets epoch 1
  r.accept(r.lookup(3)!, 1);
  assertEquals(r.lookup(1), undefined);
  assertEquals(r.lookup(2)?.epoch, 2);
});
