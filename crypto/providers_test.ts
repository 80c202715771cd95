import { assert, assertEquals, assertThrows } from "../tests/assert.ts";
import { AEAD_CIPHERS, CipherAlg, cipherByName, cipherFromAlg } from "./aead.ts";
import { availableProviders, createAead, pickProvider } from "./providers.ts";
import { libcryptoProvider } from "./libcrypto.ts";

/** Every provider here, and libcrypto's second way to open (the tag by ctrl, where EVP_CipherInit_ex2 is missing). */
function providersUnderTest() {
  const byCtrl = libcryptoProvider({ tagByCtrl: true });
  return [...availableProviders(), ...(byCtrl ? [byCtrl] : [])];
}

Deno.test("providers: libcrypto loads on Linux and auto prefers it; Windows has node and portable", () => {
  const names = availableProviders().map((p) => p.name);
  if (Deno.build.os === "linux") assertEquals(names, ["libcrypto", "node", "portable"]);
  if (Deno.build.os === "windows") assertEquals(names, ["node", "portable"]);
  for (const c of AEAD_CIPHERS) {
    if (c.name !== "AES-192-GCM" || names[0] !== "node") assertEquals(pickProvider(c).name, names[0]);
  }
});

Deno.test("providers: node lacks aes-192-gcm, so a named node provider refuses it and auto falls back", () => {
  const c192 = cipherByName("AES-192-GCM")!;
  assertThrows(() => pickProvider(c192, "node"), "cannot do AES-192-GCM");
  assert(pickProvider(c192, "auto").supports(c192));
});

Deno.test("providers: every provider agrees with every other on every cipher, and rejects a flipped bit", () => {
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const aad = crypto.getRandomValues(new Uint8Array(8));
  for (const c of AEAD_CIPHERS) {
    const key = crypto.getRandomValues(new Uint8Array(c.keyLen));
    for (const len of [0, 1, 15, 16, 17, 64, 1400]) {
      const pt = crypto.getRandomValues(new Uint8Array(len));
      const results: string[] = [];
      for (const p of providersUnderTest().filter((p) => p.supports(c))) {
        const a = p.create(c, key);
        const ct = new Uint8Array(len), tag = new Uint8Array(16);
        a.seal(nonce, aad, pt, ct, tag);
        results.push([...ct, ...tag].join(","));
        const back = new Uint8Array(len);
        assert(a.open(nonce, aad, ct, tag, back), `${p.name} ${c.name} ${len}`);
        assertEquals(back, pt);
        tag[3] ^= 1;
        assert(!a.open(nonce, aad, ct, tag, back), `${p.name} ${c.name} forged tag accepted`);
        tag[3] ^= 1;
        if (len > 0) {
          ct[len - 1] ^= 0x80;
          assert(!a.open(nonce, aad, ct, tag, back), `${p.name} ${c.name} forged ciphertext accepted`);
        }
        a.close();
      }
      // on Windows only the portable provider does AES-192-GCM (node:crypto lacks it)
      assert(
        results.length >= (Deno.build.os === "windows" && c.keyLen === 24 ? 1 : 2),
        `${c.name}: ${results.length} providers`,
      );
      assert(results.every((r) => r === results[0]), `${c.name} providers disagree at ${len}`);
    }
  }
});

Deno.test("providers: in-place seal/open (out aliases the input) works for every provider", () => {
  for (const c of AEAD_CIPHERS) {
    for (const p of providersUnderTest().filter((p) => p.supports(c))) {
      const a = p.create(c, new Uint8Array(c.keyLen).fill(1));
      const nonce = new Uint8Array(12), aad = new Uint8Array(8), tag = new Uint8Array(16);
      const buf = new Uint8Array(100).map((_, i) => i);
      a.seal(nonce, aad, buf, buf, tag);
      assert(buf[5] !== 5 || buf[6] !== 6);
      assert(a.open(nonce, aad, buf, tag, buf));
      assertEquals(buf, new Uint8Array(100).map((_, i) => i));
      a.close();
    }
  }
});

Deno.test("cipher table: names and algs", () => {
  assertEquals(cipherByName("aes-128-gcm")?.keyLen, 16);
  assertEquals(cipherByName("CHACHA20-POLY1305")?.alg, CipherAlg.CHACHA20_POLY1305);
  assertEquals(cipherByName("None")?.alg, CipherAlg.NONE);
  assertEquals(cipherByName("aes-256-cbc"), undefined);
  assertEquals(cipherFromAlg(1, 24)?.name, "AES-192-GCM");
  assertEquals(cipherFromAlg(1, 20), undefined);
  assertThrows(
    () => createAead(cipherByName("AES-256-GCM")!, new Uint8Array(32), "nope" as never),
    "not available",
  );
});

// Windows only (run under Wine by tests/windows_test.ts); not registered elsewhere, so nothing is skipped
if (Deno.build.os === "windows") {
  Deno.test({
    name: "providers: CNG (Windows, --crypto cng) reproduces the real OpenVPN AES-256-GCM packets",
    fn() {
      const c = cipherByName("AES-256-GCM")!;
      const p = pickProvider(c, "cng");
      const v = JSON.parse(
        Deno.readTextFileSync(
          new URL("../tests/fixtures/vectors/openvpn-2.6-aes-256-gcm.json", import.meta.url),
        ),
      );
      const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (h) => parseInt(h, 16));
      const a = p.create(c, hex(v.client_to_server.key));
      let n = 0;
      for (
        const pk of v.packets.filter((x: { kind: string; direction: string }) =>
          x.kind === "data" && x.direction === "client_to_server"
        )
      ) {
        const w = hex(pk.wire);
        const nonce = new Uint8Array([...w.subarray(4, 8), ...hex(v.client_to_server.nonce_tail)]);
        const out = new Uint8Array(w.length - 24);
        assert(a.open(nonce, w.subarray(0, 8), w.subarray(24), w.subarray(8, 24), out));
        assertEquals(Array.from(out, (x) => x.toString(16).padStart(2, "0")).join(""), pk.plaintext);
        const ct = new Uint8Array(out.length), tag = new Uint8Array(16);
        a.seal(nonce, w.subarray(0, 8), out, ct, tag);
        assertEquals([...tag, ...ct], [...w.subarray(8)]);
        n++;
      }
      assert(n >= 6);
      a.close();
    },
  });
}
