/**
 * The fast AEAD provider on Windows: CNG (bcrypt.dll) through FFI, AES-GCM and (Windows 11 / Server
 * 2022 and newer) ChaCha20-Poly1305, one key object per direction created once, one call per packet.
 *
 * @example
 * ```ts
 * import { cngProvider } from "./cng.ts";
 * const p = cngProvider(); // null off Windows
 * ```
 * @module
 */
import { type Aead, type AeadProvider, CipherAlg, type CipherInfo, TAG_LEN } from "./aead.ts";
import { AUTH_INFO, type Bcrypt, BCRYPT_SYMBOLS } from "../ffi/bcrypt.ts";
import { wstr } from "../ffi/wintun.ts";
import { system32 } from "../ffi/kernel32.ts";

const ptrValue = (b: Uint8Array) => Deno.UnsafePointer.value(Deno.UnsafePointer.of(b));

function openAlg(b: Bcrypt, c: CipherInfo): Deno.PointerValue {
  const out = new BigUint64Array(1);
  const name = c.alg === CipherAlg.CHACHA20_POLY1305 ? "CHACHA20_POLY1305" : "AES";
  if (b.BCryptOpenAlgorithmProvider(new Uint8Array(out.buffer), wstr(name), null, 0) !== 0) return null;
  const h = Deno.UnsafePointer.create(out[0]);
  if (c.alg === CipherAlg.AES_GCM) {
    const mode = wstr("ChainingModeGCM");
    if (b.BCryptSetProperty(h, wstr("ChainingMode"), mode, mode.length, 0) !== 0) {
      b.BCryptCloseAlgorithmProvider(h, 0);
      return null;
    }
  }
  return h;
}

class CngAead implements Aead {
  #b: Bcrypt;
  #key: Deno.PointerValue;
  #info = new Uint8Array(AUTH_INFO.size);
  #dv = new DataView(this.#info.buffer);
  #got = new Uint32Array(1);
  #empty = new Uint8Array(16);

  constructor(b: Bcrypt, alg: Deno.PointerValue, key: Uint8Array) {
    this.#b = b;
    const out = new BigUint64Array(1);
    if (b.BCryptGenerateSymmetricKey(alg, new Uint8Array(out.buffer), null, 0, key, key.length, 0) !== 0) {
      throw new Error("BCryptGenerateSymmetricKey failed");
    }
    this.#key = Deno.UnsafePointer.create(out[0]);
    this.#dv.setUint32(AUTH_INFO.cbSize, AUTH_INFO.size, true);
    this.#dv.setUint32(AUTH_INFO.dwInfoVersion, 1, true);
  }

  #prepare(nonce: Uint8Array, aad: Uint8Array, tag: Uint8Array) {
    const dv = this.#dv;
    dv.setBigUint64(AUTH_INFO.pbNonce, ptrValue(nonce), true);
    dv.setUint32(AUTH_INFO.cbNonce, nonce.length, true);
    dv.setBigUint64(AUTH_INFO.pbAuthData, ptrValue(aad), true);
    dv.setUint32(AUTH_INFO.cbAuthData, aad.length, true);
    dv.setBigUint64(AUTH_INFO.pbTag, ptrValue(tag), true);
    dv.setUint32(AUTH_INFO.cbTag, TAG_LEN, true);
  }

  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out: Uint8Array, tag: Uint8Array): void {
    if (this.#key === null) throw new Error("AEAD is closed");
    this.#prepare(nonce, aad, tag);
    const inp = plaintext.length ? plaintext : this.#empty.subarray(0, 0);
    const st = this.#b.BCryptEncrypt(
      this.#key,
      inp,
      plaintext.length,
      this.#info,
      null,
      0,
      out,
      out.length,
      this.#got,
      0,
    );
    if (st !== 0) throw new Error(`BCryptEncrypt failed (0x${st.toString(16)})`);
  }

  open(
    nonce: Uint8Array,
    aad: Uint8Array,
    ciphertext: Uint8Array,
    tag: Uint8Array,
    out: Uint8Array,
  ): boolean {
    if (this.#key === null) throw new Error("AEAD is closed");
    this.#prepare(nonce, aad, tag);
    return this.#b.BCryptDecrypt(
      this.#key,
      ciphertext,
      ciphertext.length,
      this.#info,
      null,
      0,
      out,
      out.length,
      this.#got,
      0,
    ) === 0;
  }

  close(): void {
    if (this.#key !== null) this.#b.BCryptDestroyKey(this.#key);
    this.#key = null;
  }
}

let cached: AeadProvider | null | undefined;

/** The CNG provider, or null off Windows (or where bcrypt.dll cannot be loaded). */
export function cngProvider(): AeadProvider | null {
  if (cached !== undefined) return cached;
  cached = null;
  if (Deno.build.os !== "windows") return null;
  let b: Bcrypt;
  try {
    b = Deno.dlopen(system32("bcrypt.dll"), BCRYPT_SYMBOLS).symbols;
  } catch {
    return null;
  }
  const algs = new Map<string, Deno.PointerValue>();
  const alg = (c: CipherInfo) => {
    const k = c.alg === CipherAlg.CHACHA20_POLY1305 ? "chacha" : "aes";
    if (!algs.has(k)) algs.set(k, openAlg(b, c));
    return algs.get(k)!;
  };
  cached = {
    name: "cng",
    supports: (c) => c.alg !== CipherAlg.NONE && alg(c) !== null,
    create: (c, key) => new CngAead(b, alg(c), key),
  };
  return cached;
}
