/**
 * The portable AEAD provider: pure TypeScript/JavaScript (`@noble/ciphers`), every cipher, every
 * platform, no native code. The fallback when neither libcrypto nor `node:crypto` can do a cipher.
 *
 * @example
 * ```ts
 * import { portableProvider } from "./portable.ts";
 * import { cipherByName } from "./aead.ts";
 * portableProvider.supports(cipherByName("AES-192-GCM")!); // true
 * ```
 * @module
 */
import { gcm } from "@noble/ciphers/aes.js";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { type Aead, type AeadProvider, CipherAlg, type CipherInfo, TAG_LEN } from "./aead.ts";

type Make = (key: Uint8Array, nonce: Uint8Array, aad: Uint8Array) => {
  encrypt(p: Uint8Array): Uint8Array;
  decrypt(c: Uint8Array): Uint8Array;
};

class PortableAead implements Aead {
  #make: Make;
  #key: Uint8Array;
  constructor(cipher: CipherInfo, key: Uint8Array) {
    this.#make = cipher.alg === CipherAlg.CHACHA20_POLY1305 ? chacha20poly1305 : gcm;
    this.#key = key.slice();
  }
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out: Uint8Array, tag: Uint8Array): void {
    const sealed = this.#make(this.#key, nonce, aad).encrypt(plaintext);
    out.set(sealed.subarray(0, plaintext.length));
    tag.set(sealed.subarray(plaintext.length));
  }
  open(
    nonce: Uint8Array,
    aad: Uint8Array,
    ciphertext: Uint8Array,
    tag: Uint8Array,
    out: Uint8Array,
  ): boolean {
    const joined = new Uint8Array(ciphertext.length + TAG_LEN);
    joined.set(ciphertext);
    joined.set(tag, ciphertext.length);
    try {
      out.set(this.#make(this.#key, nonce, aad).decrypt(joined));
      return true;
    } catch {
      return false;
    }
  }
  close(): void {
    this.#key.fill(0);
  }
}

/** The portable provider. */
export const portableProvider: AeadProvider = {
  name: "portable",
  supports: (c) => c.alg !== CipherAlg.NONE,
  create: (c, key) => new PortableAead(c, key),
};
