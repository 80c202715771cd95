/**
 * The fast AEAD provider: OpenSSL's libcrypto through Deno FFI. One EVP context per direction and key,
 * created once; five FFI calls per packet; no allocation per packet.
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

class LibcryptoAead implements Aead {
  #lib: Libcrypto;
  #evp: Deno.PointerValue;
  #key: Uint8Array | null;
  // each context is made on its first use: a key slot's encrypting AEAD only seals and its decrypting one only
  // opens, and a server's tx and rx workers each use one direction (1 000 peers: 2 000 contexts, not 8 000)
  #enc: Deno.PointerValue = null;
  #dec: Deno.PointerValue = null;
  #closed = false;

  constructor(lib: Libcrypto, cipher: CipherInfo, key: Uint8Array) {
    this.#lib = lib;
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
    if (s.EVP_CipherInit_ex(ctx, null, null, null, nonce, -1) !== 1) return false;
    if (s.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) !== 1) return false;
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

/** The libcrypto provider, or null where libcrypto cannot be loaded. */
export function libcryptoProvider(): AeadProvider | null {
  const lib = openLibcrypto();
  if (lib === null) return null;
  return {
    name: "libcrypto",
    supports: (c) => c.alg !== CipherAlg.NONE && evpCipher(lib, c) !== null,
    create: (c, key) => new LibcryptoAead(lib, c, key),
  };
}
