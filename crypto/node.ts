/**
 * AEAD provider on `node:crypto` (synchronous). Deno's `node:crypto` lacks aes-192-gcm; `supports`
 * says so and the provider table falls back to another provider for it.
 *
 * @example
 * ```ts
 * import { nodeProvider } from "./node.ts";
 * import { cipherByName } from "./aead.ts";
 * nodeProvider.supports(cipherByName("AES-256-GCM")!); // true
 * ```
 * @module
 */
import { createCipheriv, createDecipheriv, getCiphers } from "node:crypto";
import { type Aead, type AeadProvider, CipherAlg, type CipherInfo, TAG_LEN } from "./aead.ts";

let available: Set<string> | undefined;

/** The subset of node's AEAD cipher objects used here (the typings do not cover every mode). */
interface AeadCipher {
  setAAD(aad: Uint8Array, opts: { plaintextLength: number }): unknown;
  update(data: Uint8Array): Uint8Array;
  final(): Uint8Array;
  getAuthTag(): Uint8Array;
  setAuthTag(tag: Uint8Array): unknown;
}

type Factory = (algo: string, key: Uint8Array, iv: Uint8Array, opts: { authTagLength: number }) => AeadCipher;
const makeCipher = createCipheriv as unknown as Factory;
const makeDecipher = createDecipheriv as unknown as Factory;

class NodeAead implements Aead {
  #algo: string;
  #key: Uint8Array;
  constructor(cipher: CipherInfo, key: Uint8Array) {
    this.#algo = cipher.lower;
    this.#key = key.slice();
  }
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out: Uint8Array, tag: Uint8Array): void {
    const c = makeCipher(this.#algo, this.#key, nonce, { authTagLength: TAG_LEN });
    c.setAAD(aad, { plaintextLength: plaintext.length });
    const a = c.update(plaintext);
    const b = c.final();
    out.set(a, 0);
    if (b.length) out.set(b, a.length);
    tag.set(c.getAuthTag());
  }
  open(
    nonce: Uint8Array,
    aad: Uint8Array,
    ciphertext: Uint8Array,
    tag: Uint8Array,
    out: Uint8Array,
  ): boolean {
    try {
      const d = makeDecipher(this.#algo, this.#key, nonce, { authTagLength: TAG_LEN });
      d.setAuthTag(tag);
      d.setAAD(aad, { plaintextLength: ciphertext.length });
      const a = d.update(ciphertext);
      const b = d.final();
      out.set(a, 0);
      if (b.length) out.set(b, a.length);
      return true;
    } catch {
      return false;
    }
  }
  close(): void {
    this.#key.fill(0);
  }
}

/** The `node:crypto` provider. */
export const nodeProvider: AeadProvider = {
  name: "node",
  supports(c: CipherInfo): boolean {
    if (c.alg === CipherAlg.NONE) return false;
    available ??= new Set(getCiphers().map((n) => n.toLowerCase()));
    return available.has(c.lower);
  },
  create: (c, key) => new NodeAead(c, key),
};
