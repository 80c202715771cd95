/**
 * The one AEAD interface of the data channel, and the table of ciphers.
 *
 * Every provider (libcrypto through FFI, `node:crypto`, the portable pure-TypeScript one) implements
 * {@linkcode Aead}: seal/open with a 12-byte nonce, additional data and a 16-byte tag, writing into
 * caller-owned buffers so that the hot path allocates nothing it does not have to.
 *
 * @example
 * ```ts
 * import { cipherByName } from "./aead.ts";
 * const info = cipherByName("AES-256-GCM"); // { name, keyLen: 32, alg: 1, ... }
 * ```
 * @module
 */

/** Length of the AEAD nonce used by OpenVPN's data channel. */
export const NONCE_LEN = 12;
/** Length of the AEAD tag. */
export const TAG_LEN = 16;

/** OVPN_CIPHER_ALG values of the driver's user API. */
export const CipherAlg = { NONE: 0, AES_GCM: 1, CHACHA20_POLY1305: 2 } as const;
export type CipherAlg = typeof CipherAlg[keyof typeof CipherAlg];

/** Names as OpenVPN spells them. */
export type CipherName = "AES-128-GCM" | "AES-192-GCM" | "AES-256-GCM" | "CHACHA20-POLY1305" | "none";

/** One row of the cipher table. */
export interface CipherInfo {
  /** OpenVPN's spelling. */
  name: CipherName;
  /** Key length in bytes (0 for none). */
  keyLen: number;
  /** OVPN_CIPHER_ALG of the driver. */
  alg: CipherAlg;
  /** openssl/node spelling, e.g. `aes-256-gcm` (empty for none). */
  lower: string;
}

/** The cipher table: one place for these facts. */
export const CIPHERS: readonly CipherInfo[] = [
  { name: "AES-128-GCM", keyLen: 16, alg: CipherAlg.AES_GCM, lower: "aes-128-gcm" },
  { name: "AES-192-GCM", keyLen: 24, alg: CipherAlg.AES_GCM, lower: "aes-192-gcm" },
  { name: "AES-256-GCM", keyLen: 32, alg: CipherAlg.AES_GCM, lower: "aes-256-gcm" },
  { name: "CHACHA20-POLY1305", keyLen: 32, alg: CipherAlg.CHACHA20_POLY1305, lower: "chacha20-poly1305" },
  { name: "none", keyLen: 0, alg: CipherAlg.NONE, lower: "" },
];

/** The AEAD ciphers (everything but none). */
export const AEAD_CIPHERS: readonly CipherInfo[] = CIPHERS.filter((c) => c.alg !== CipherAlg.NONE);

/**
 * Look a cipher up by any common spelling (case-insensitive; `AES-256-GCM`, `aes-256-gcm`,
 * `chacha20-poly1305`, `none`).
 *
 * @example
 * ```ts
 * cipherByName("aes-128-gcm")?.keyLen; // 16
 * ```
 */
export function cipherByName(name: string): CipherInfo | undefined {
  const n = name.trim().toUpperCase();
  if (n === "NONE") return CIPHERS[4];
  return CIPHERS.find((c) => c.name === n);
}

/**
 * Find the cipher the driver means by an algorithm and a key length.
 *
 * @example
 * ```ts
 * cipherFromAlg(1, 16)?.name; // "AES-128-GCM"
 * ```
 */
export function cipherFromAlg(alg: number, keyLen: number): CipherInfo | undefined {
  if (alg === CipherAlg.NONE) return CIPHERS[4];
  return CIPHERS.find((c) => c.alg === alg && c.keyLen === keyLen);
}

/** The list of valid spellings, for error messages. */
export const CIPHER_NAMES = CIPHERS.map((c) => c.name).join(", ");

/**
 * An AEAD keyed for one direction. Buffers are caller-owned; `out` may be the same memory as the input
 * only where a provider documents in-place operation, so callers pass distinct buffers.
 */
export interface Aead {
  /** Encrypt `plaintext` into `out` (same length) and write the 16-byte tag into `tag`. */
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out: Uint8Array, tag: Uint8Array): void;
  /** Decrypt `ciphertext` into `out`; returns false (and leaves `out` unspecified) when the tag is wrong. */
  open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array, out: Uint8Array): boolean;
  /** Release native resources, if any. Idempotent. */
  close(): void;
}

/** A source of AEAD instances. */
export interface AeadProvider {
  /** Short name: `libcrypto`, `node`, `portable`. */
  readonly name: string;
  /** Whether this provider can do `cipher` here. */
  supports(cipher: CipherInfo): boolean;
  /** Key an AEAD; `key.length` must equal `cipher.keyLen`. */
  create(cipher: CipherInfo, key: Uint8Array): Aead;
}
