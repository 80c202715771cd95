import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "../tests/assert.ts";
import {
  generateData64,
  KeyFileError,
  parseKeyFile,
  readKeyFile,
  toKeyMaterial,
  writeNewKeyFile,
} from "./keyfile.ts";

const raw = Uint8Array.from({ length: 72 }, (_, i) => i);
const b64 = btoa(String.fromCharCode(...raw));
const hexOf = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("keys: data64 key directions as upstream (0: encrypt with A; >0: with B; same nonce tail)", () => {
  const kf = parseKeyFile(b64.slice(0, 40) + "\n" + b64.slice(40) + "\n");
  const d0 = toKeyMaterial(kf, { keyDirection: 0 });
  assertEquals(d0.cipher.name, "AES-256-GCM");
  assertEquals(d0.encryptKey, raw.slice(0, 32));
  assertEquals(d0.decryptKey, raw.slice(32, 64));
  assertEquals(d0.encryptNonceTail, raw.slice(64, 72));
  assertEquals(d0.decryptNonceTail, raw.slice(64, 72));
  const d5 = toKeyMaterial(kf, { keyDirection: 5 });
  assertEquals(d5.encryptKey, raw.slice(32, 64));
  assertEquals(d5.decryptKey, raw.slice(0, 32));
  const d128 = toKeyMaterial(kf, { cipher: "aes-128-gcm" });
  assertEquals(d128.encryptKey, raw.slice(0, 16));
  assertEquals(d128.decryptKey, raw.slice(32, 48));
  assertEquals(toKeyMaterial(kf, { cipher: "none" }).cipher.name, "none");
});

Deno.test("keys: upstream's own data64.key sample parses", () => {
  const upstream = "jRqMACN7d7/aFQNT8S7jkrBD8uwrgHbG5OQZP2eu4R1Y7tfpS2bf5RHv06Vi163CGoaIiTX99R3B\n" +
    "ia9ycAH8Wz1+9PWv51dnBLur9jbShlgZ2QHLtUc4a/gfT7zZwULXuuxdLnvR21DDeMBaTbkgbai9\n" +
    "uvAa7ne1liIgGFzbv+Bas4HDVrygxIxuAnP5Qgc3648IJkZ0QEXPF+O9f0n5+QIvGCxkAUVx+5K6\n" +
    "KIs+SoeWXnAopELmoGSjUpFtJbagXK82HfdqpuUxT2Tnuef0/14SzVE/vNleBNu2ZbyrSAaah8tE\n" +
    "BofkPJUBFY+YQcfZNM5Dgrw3i+Bpmpq/gpdg5w==\n";
  const kf = parseKeyFile(upstream);
  assert(kf.format === "data64" && kf.raw.length === 256);
});

const json = (o: Record<string, unknown>) => JSON.stringify(o);
const goodJson = {
  cipher: "CHACHA20-POLY1305",
  peerId: 9,
  keyId: 2,
  encrypt: { key: "11".repeat(32), nonceTail: "aa".repeat(8) },
  decrypt: { key: "22".repeat(32), nonceTail: "bb".repeat(8) },
};

Deno.test("keys: JSON format with its defaults; flags override; key direction does not apply", () => {
  const kf = parseKeyFile(json(goodJson));
  assert(kf.format === "json");
  assertEquals(kf.peerId, 9);
  const m = toKeyMaterial(kf, { keyDirection: 1 });
  assertEquals(m.cipher.name, "CHACHA20-POLY1305");
  assertEquals(m.keyId, 2);
  assertEquals(hexOf(m.encryptKey), "11".repeat(32));
  assertEquals(hexOf(m.decryptNonceTail), "bb".repeat(8));
  assertEquals(toKeyMaterial(kf, { keyId: 5, cipher: "AES-256-GCM" }).keyId, 5);
  const noCipher = parseKeyFile(json({ ...goodJson, cipher: undefined, peerId: undefined }));
  assertEquals(toKeyMaterial(noCipher).cipher.name, "AES-256-GCM");
});

Deno.test("keys: one clear error per problem, never with key bytes", () => {
  const secretHex = "c0ffee".repeat(10) + "c0ff";
  const bad: [string, string, string | RegExp][] = [
    ["empty", "", "empty"],
    ["bad base64", "@@@@not-base64@@@@", "not valid base64"],
    ["too short", btoa("short key"), "decodes to 9 bytes"],
    ["bad json", "{ nope", "not valid JSON"],
    ["json array", "[1,2]", "not valid base64"],
    ["unknown cipher", json({ ...goodJson, cipher: "AES-256-CBC" }), "unknown cipher"],
    ["missing encrypt", json({ ...goodJson, encrypt: undefined }), "field 'encrypt' is missing"],
    [
      "missing key",
      json({ ...goodJson, decrypt: { nonceTail: "bb".repeat(8) } }),
      "'decrypt.key' is missing",
    ],
    [
      "bad hex",
      json({ ...goodJson, encrypt: { key: "zz" + secretHex, nonceTail: "aa".repeat(8) } }),
      "not valid hex",
    ],
    ["odd hex", json({ ...goodJson, encrypt: { key: "abc", nonceTail: "aa".repeat(8) } }), "not valid hex"],
    [
      "wrong key length",
      json({ ...goodJson, encrypt: { key: "11".repeat(16), nonceTail: "aa".repeat(8) } }),
      "has 16 bytes; it must have 32",
    ],
    [
      "short nonce",
      json({ ...goodJson, encrypt: { key: "11".repeat(32), nonceTail: "aa" } }),
      "nonceTail' has 1 bytes",
    ],
    ["bad peerId", json({ ...goodJson, peerId: -1 }), "'peerId' must be an integer"],
    ["bad keyId", json({ ...goodJson, keyId: 8 }), "'keyId' must be an integer from 0 to 7"],
  ];
  for (const [name, text, msg] of bad) {
    const err = assertThrows(() => parseKeyFile(text, "key file 'k'"), msg);
    assert(err instanceof KeyFileError, name);
    assert(!err.message.includes("c0ffee"), `${name}: key bytes in the message`);
  }
  // a 16-byte key with no cipher in the file, used as AES-256: wrong key length for the cipher
  const k16 = parseKeyFile(
    json({
      ...goodJson,
      cipher: undefined,
      encrypt: { key: "11".repeat(16), nonceTail: "aa".repeat(8) },
      decrypt: { key: "22".repeat(16), nonceTail: "bb".repeat(8) },
    }),
  );
  assertThrows(() => toKeyMaterial(k16, { cipher: "AES-256-GCM" }), "needs 32");
  assertEquals(toKeyMaterial(k16, { cipher: "AES-128-GCM" }).encryptKey.length, 16);
  assertThrows(() => toKeyMaterial(parseKeyFile(b64), { cipher: "rot13" }), "unknown cipher 'rot13'");
});

Deno.test("keys: genkey writes a fresh 0600 data64.key that parses, and refuses to overwrite", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/k.key`;
    await writeNewKeyFile(path);
    const kf = await readKeyFile(path);
    assert(kf.format === "data64" && kf.raw.length === 72);
    if (Deno.build.os !== "windows") assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);
    await assertRejects(() => writeNewKeyFile(path), "already exists");
    await assertRejects(() => readKeyFile(`${dir}/missing.key`), "does not exist");
    assert(generateData64() !== generateData64());
    assertMatch(generateData64(), /^[A-Za-z0-9+/=\n]+$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("keys: epoch data keys from a data64.key (E1 = the whole key A / key B) and from JSON epochSecret", () => {
  const raw = new Uint8Array(72);
  for (let i = 0; i < 72; i++) raw[i] = i;
  const kf = parseKeyFile(btoa(String.fromCharCode(...raw)));
  const m0 = toKeyMaterial(kf, { cipher: "AES-128-GCM", keyDirection: 0, epoch: true });
  assertEquals([m0.epoch, m0.encryptKey, m0.decryptKey], [true, raw.slice(0, 32), raw.slice(32, 64)]);
  const m1 = toKeyMaterial(kf, { cipher: "AES-128-GCM", keyDirection: 1, epoch: true });
  assertEquals([m1.encryptKey, m1.decryptKey], [raw.slice(32, 64), raw.slice(0, 32)]);
  assertEquals(toKeyMaterial(kf, { cipher: "AES-128-GCM" }).encryptKey.length, 16); // DATA_V2 unchanged
  const secret = (b: number) => "".padEnd(64, b.toString(16));
  const json = {
    cipher: "CHACHA20-POLY1305",
    encrypt: { epochSecret: secret(1) },
    decrypt: { epochSecret: secret(2) },
  };
  const j = toKeyMaterial(parseKeyFile(JSON.stringify(json)));
  assertEquals([j.epoch, j.cipher.name, j.encryptKey[0], j.decryptKey[31]], [
    true,
    "CHACHA20-POLY1305",
    0x11,
    0x22,
  ]);
  assertThrows(
    () => parseKeyFile(JSON.stringify({ ...json, decrypt: { key: secret(3), nonceTail: "00".repeat(8) } })),
    "only one direction has an 'epochSecret'",
  );
  assertThrows(
    () => parseKeyFile(JSON.stringify({ ...json, encrypt: { epochSecret: "abcd" } })),
    "'encrypt.epochSecret' has 2 bytes; it must have 32 bytes",
  );
  const plain = {
    encrypt: { key: secret(4), nonceTail: "00".repeat(8) },
    decrypt: { key: secret(5), nonceTail: "00".repeat(8) },
  };
  assertThrows(
    () => toKeyMaterial(parseKeyFile(JSON.stringify(plain)), { epoch: true }),
    "--epoch needs epoch secrets",
  );
  assertThrows(
    () => toKeyMaterial(kf, { cipher: "none", epoch: true }),
    "epoch data keys need an AEAD cipher",
  );
});

Deno.test("keys: an OpenVPN static key or a PEM file is named as such, with what to use instead", () => {
  const staticKey = "#\n# 2048 bit OpenVPN static key\n#\n-----BEGIN OpenVPN Static key V1-----\n" +
    "00112233445566778899aabbccddeeff\n".repeat(16) + "-----END OpenVPN Static key V1-----\n";
  assertThrows(() => parseKeyFile(staticKey, "key file 's.key'"), "is an OpenVPN static key");
  assertThrows(() => parseKeyFile(staticKey), "genkey FILE");
  assertThrows(
    () => parseKeyFile("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
    "this is a PEM file",
  );
});
