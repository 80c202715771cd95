/**
 * The fast AEAD provider: OpenSSL's libcrypto through Deno FFI. One EVP context per direction and key,
 * created once; five FFI calls to seal a packet and four to open one (the tag goes in with the nonce, as an
 * OSSL_PARAM of EVP_CipherInit_ex2, where libcrypto has it); no allocation per packet.
 *
 * @example
 * ```ts
 * import { libcryptoProvider } from "./libcrypto.ts";
 * import { cipherByName } from "./aead.ts";
 * const p = libcryptoProvider();
 * if (p) { const aead = p.create(cipherByName("AES-256-GCM")!, new Uint8Array(32)); aead.close(); }
 * ```
 * @module
 */
import { type Aead, type AeadProvider, CipherAlg, type CipherInfo, TAG_LEN } from "./aead.ts";
import {
  EVP_CTRL_AEAD_GET_TAG,
  EVP_CTRL_AEAD_SET_TAG,
  type Libcrypto,
  openLibcrypto,
  OSSL_PARAM_FIELD,
  OSSL_PARAM_OCTET_STRING,
  OSSL_PARAM_SIZE,
} from "../ffi/libcrypto.ts";

function evpCipher(lib: Libcrypto, c: CipherInfo): Deno.PointerValue {
  if (c.alg === CipherAlg.CHACHA20_POLY1305) return lib.symbols.EVP_chacha20_poly1305();
  switch (c.keyLen) {
    case 16:
      return lib.symbols.EVP_aes_128_gcm();
    case 24:
      return lib.symbols.EVP_aes_192_gcm();
    case 32:
      return lib.symbols.EVP_aes_256_gcm();
  }
  return null;
}

/**
 * Out-parameters of the EVP calls, shared by every AEAD of this thread (the calls are synchronous; a typed array
 * costs a few hundred bytes, and a server holds AEADs for every peer in each worker).
 */
const outl = new Int32Array(1);
const scratch = new Uint8Array(32);

/**
 * The parameter list `{ "tag": the 16 bytes at tagIn }, END` for EVP_CipherInit_ex2, and the tag's bytes, in one
 * ArrayBuffer of this thread (off V8's heap: the addresses inside it stay put). `open` copies each packet's tag
 * to tagIn: one FFI call fewer than EVP_CIPHER_CTX_ctrl(SET_TAG) after the nonce, and no parameter list built by
 * libcrypto per packet.
 */
function tagParams(): { params: Uint8Array; tagIn: Uint8Array } | null {
  if (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64") return null; // the layout is 64-bit's
  const mem = new ArrayBuffer(2 * OSSL_PARAM_SIZE + 16 + 8);
  const params = new Uint8Array(mem, 0, 2 * OSSL_PARAM_SIZE); // the END entry: all zero
  const tagIn = new Uint8Array(mem, 2 * OSSL_PARAM_SIZE, TAG_LEN);
  const name = new Uint8Array(mem, 2 * OSSL_PARAM_SIZE + 16, 8);
  name.set([0x74, 0x61, 0x67, 0]); // OSSL_CIPHER_PARAM_AEAD_TAG, "tag"
  const at = (a: Uint8Array) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(a)));
  const v = new DataView(mem);
  v.setBigUint64(OSSL_PARAM_FIELD.key, at(name), true);
  v.setUint32(OSSL_PARAM_FIELD.dataType, OSSL_PARAM_OCTET_STRING, true);
  v.setBigUint64(OSSL_PARAM_FIELD.data, at(tagIn), true);
  v.setBigUint64(OSSL_PARAM_FIELD.dataSize, BigInt(TAG_LEN), true);
  return { params, tagIn };
}
let tagParamsOfThread: ReturnType<typeof tagParams> | undefined;

class LibcryptoAead implements Aead {
  #lib: Libcrypto;
  #evp: Deno.PointerValue;
  #key: Uint8Array | null;
  // each context is made on its first use: a key slot's encrypting AEAD only seals and its decrypting one only
  // opens, and a server's tx and rx workers each use one direction (1 000 peers: 2 000 contexts, not 8 000)
  #enc: Deno.PointerValue = null;
  #dec: Deno.PointerValue = null;
  #closed = false;
  #tagParams: ReturnType<typeof tagParams>;

  constructor(lib: Libcrypto, cipher: CipherInfo, key: Uint8Array, tagByCtrl: boolean) {
    this.#lib = lib;
    this.#tagParams = tagByCtrl || lib.symbols.EVP_CipherInit_ex2 === null
      ? null
      : (tagParamsOfThread === undefined ? tagParamsOfThread = tagParams() : tagParamsOfThread);
    const evp = evpCipher(lib, cipher);
    if (evp === null) throw new Error(`libcrypto has no ${cipher.name}`);
    this.#evp = evp;
    this.#key = key.slice();
    // fail here, not on the first packet, when libcrypto cannot take this key (the probe is not kept)
    const s = lib.symbols, probe = s.EVP_CIPHER_CTX_new();
    if (probe === null) throw new Error("EVP_CIPHER_CTX_new failed");
    const ok = s.EVP_CipherInit_ex(probe, evp, null, this.#key, null, 1) === 1;
    s.EVP_CIPHER_CTX_free(probe);
    if (!ok) throw new Error(`EVP_CipherInit_ex failed for ${cipher.name}`);
  }

  /** The encrypting (1) or decrypting (0) context, made now if it is not yet. */
  #context(enc: 0 | 1): Deno.PointerValue {
    if (this.#closed) return null;
    const have = enc ? this.#enc : this.#dec;
    if (have !== null) return have;
    const s = this.#lib.symbols;
    const ctx = s.EVP_CIPHER_CTX_new();
    if (ctx === null) throw new Error("EVP_CIPHER_CTX_new failed");
    if (s.EVP_CipherInit_ex(ctx, this.#evp, null, this.#key!, null, enc) !== 1) {
      s.EVP_CIPHER_CTX_free(ctx);
      return null;
    }
    if (enc) this.#enc = ctx;
    else this.#dec = ctx;
    if (this.#enc !== null && this.#dec !== null) {
      this.#key!.fill(0); // both made: the key lives in libcrypto only
      this.#key = null;
    }
    return ctx;
  }

  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out: Uint8Array, tag: Uint8Array): void {
    const s = this.#lib.symbols, ctx = this.#enc ?? this.#context(1);
    if (ctx === null) throw new Error("AEAD is closed");
    let ok = s.EVP_CipherInit_ex(ctx, null, null, null, nonce, -1) === 1 &&
      s.EVP_CipherUpdate(ctx, null, outl, aad, aad.length) === 1;
    if (ok && plaintext.length > 0) {
      ok = s.EVP_CipherUpdate(ctx, out, outl, plaintext, plaintext.length) === 1;
    }
    ok = ok && s.EVP_CipherFinal_ex(ctx, scratch, outl) === 1 &&
      s.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, tag) === 1;
    if (!ok) throw new Error("libcrypto seal failed");
  }

  open(
    nonce: Uint8Array,
    aad: Uint8Array,
    ciphertext: Uint8Array,
    tag: Uint8Array,
    out: Uint8Array,
  ): boolean {
    const s = this.#lib.symbols, ctx = this.#dec ?? this.#context(0);
    if (ctx === null) throw new Error("AEAD is closed");
    const tp = this.#tagParams;
    if (tp !== null) {
      tp.tagIn.set(tag);
      if (s.EVP_CipherInit_ex2!(ctx, null, null, nonce, -1, tp.params) !== 1) return false;
    } else {
      if (s.EVP_CipherInit_ex(ctx, null, null, null, nonce, -1) !== 1) return false;
      if (s.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) !== 1) return false;
    }
    if (s.EVP_CipherUpdate(ctx, null, outl, aad, aad.length) !== 1) return false;
    if (ciphertext.length > 0 && s.EVP_CipherUpdate(ctx, out, outl, ciphertext, ciphertext.length) !== 1) {
      return false;
    }
    return s.EVP_CipherFinal_ex(ctx, scratch, outl) > 0;
  }

  close(): void {
    if (this.#enc !== null) this.#lib.symbols.EVP_CIPHER_CTX_free(this.#enc);
    if (this.#dec !== null) this.#lib.symbols.EVP_CIPHER_CTX_free(this.#dec);
    this.#enc = null;
    this.#dec = null;
    this.#key?.fill(0);
    this.#key = null;
    this.#closed = true;
  }
}

/**
 * The libcrypto provider, or null where libcrypto cannot be loaded. `tagByCtrl` opens with the tag set by
 * EVP_CIPHER_CTX_ctrl, as on a libcrypto without EVP_CipherInit_ex2 (for tests).
 */
export function libcryptoProvider(opts: { tagByCtrl?: boolean } = {}): AeadProvider | null {
  const lib = openLibcrypto();
  if (lib === null) return null;
  return {
    name: opts.tagByCtrl ? "libcrypto (tag by ctrl)" : "libcrypto",
    supports: (c) => c.alg !== CipherAlg.NONE && evpCipher(lib, c) !== null,
    create: (c, key) => new LibcryptoAead(lib, c, key, !!opts.tagByCtrl),
  };
}
