/**
 * Key files: upstream's data64.key (base64, ≥ 72 bytes: key A, key B, nonce tail) and the explicit JSON
 * format of SPEC §3.2. The format is detected from the content. Errors say what is wrong and how to fix
 * it, and never contain key bytes.
 *
 * Epoch data keys (OpenVPN 2.7): a data64.key gives the initial epoch secrets E1 as OpenVPN takes them,
 * the first 32 bytes of each direction's cipher key (key A / key B as the key direction picks them); a JSON
 * key gives them as `epochSecret` (32 bytes, hex) in `encrypt` and `decrypt`, which makes it an epoch key.
 *
 * @example
 * ```ts
 * import { parseKeyFile, toKeyMaterial } from "./keyfile.ts";
 * const kf = parseKeyFile("AAAA...", "data64.key"); // throws KeyFileError on bad input
 * const m = toKeyMaterial(kf, { keyDirection: 1 });
 * ```
 * @module
 */
import { CIPHER_NAMES, CipherAlg, cipherByName, type CipherInfo } from "../crypto/aead.ts";
import type { KeyMaterial } from "../driver/datachannel/keyslot.ts";
import { MAX_PEER_ID } from "../driver/datachannel/packet.ts";

/** A key-file problem; the message is safe to print. */
export class KeyFileError extends Error {}

/** Bytes a data64.key must hold at least. */
export const DATA64_MIN_LEN = 72;
/** Default cipher of upstream's CLI. */
export const DEFAULT_CIPHER = "AES-256-GCM";

/** One direction of the JSON format (DATA_V2 key and nonce tail, or an epoch secret, or both). */
export interface KeyDirectionData {
  key: Uint8Array;
  nonceTail: Uint8Array;
  /** Initial epoch secret E1 (32 bytes). */
  epochSecret?: Uint8Array;
}

/** A parsed key file. */
export type KeyFile =
  | { format: "data64"; raw: Uint8Array }
  | {
    format: "json";
    cipher?: CipherInfo;
    peerId?: number;
    keyId?: number;
    /**
     * First packet id to send (default 1): to take over a session whose peer saw earlier ids (epoch keys:
     * the first counter of epoch 1).
     */
    firstPacketId?: number;
    encrypt: KeyDirectionData;
    decrypt: KeyDirectionData;
  };

function decodeBase64(text: string, where: string): Uint8Array {
  const s = text.replace(/\s+/g, "");
  if (s.length === 0) {
    throw new KeyFileError(`${where}: the key file is empty; create one with 'ovpn-dco-cli genkey FILE'`);
  }
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 === 1) {
    throw new KeyFileError(
      `${where}: not valid base64 (data64.key format); create a fresh key with 'ovpn-dco-cli genkey FILE'`,
    );
  }
  const bare = s.replace(/=+$/, "");
  const padded = bare.padEnd(Math.ceil(bare.length / 4) * 4, "=");
  let bin: string;
  try {
    bin = atob(padded);
  } catch {
    throw new KeyFileError(
      `${where}: not valid base64 (data64.key format); create a fresh key with 'ovpn-dco-cli genkey FILE'`,
    );
  }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function decodeHex(v: unknown, field: string, where: string, len?: number[]): Uint8Array {
  if (typeof v !== "string") {
    throw new KeyFileError(`${where}: field '${field}' is missing or not a hex string`);
  }
  const s = v.trim();
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new KeyFileError(
      `${where}: field '${field}' is not valid hex (expected an even number of 0-9a-f digits)`,
    );
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
  if (len && !len.includes(out.length)) {
    throw new KeyFileError(
      `${where}: field '${field}' has ${out.length} bytes; it must have ${len.join(" or ")} bytes`,
    );
  }
  return out;
}

function intField(o: Record<string, unknown>, field: string, where: string, max: number): number | undefined {
  const v = o[field];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) {
    throw new KeyFileError(`${where}: field '${field}' must be an integer from 0 to ${max}`);
  }
  return v;
}

function parseJsonKey(text: string, where: string): KeyFile {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (e) {
    throw new KeyFileError(
      `${where}: not valid JSON (${(e as Error).message.split("\n")[0]}); see README 'Key files'`,
    );
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) {
    throw new KeyFileError(`${where}: a JSON key file must be an object; see README 'Key files'`);
  }
  const r = o as Record<string, unknown>;
  let cipher: CipherInfo | undefined;
  if (r.cipher !== undefined) {
    cipher = typeof r.cipher === "string" ? cipherByName(r.cipher) : undefined;
    if (!cipher) {
      throw new KeyFileError(
        `${where}: unknown cipher ${JSON.stringify(r.cipher)}; use one of ${CIPHER_NAMES}`,
      );
    }
  }
  const dir = (name: "encrypt" | "decrypt"): KeyDirectionData => {
    const d = r[name];
    if (typeof d !== "object" || d === null) throw new KeyFileError(`${where}: field '${name}' is missing`);
    const dd = d as Record<string, unknown>;
    if (dd.epochSecret !== undefined && dd.key === undefined) {
      // an epoch-only direction
      const epochSecret = decodeHex(dd.epochSecret, `${name}.epochSecret`, where, [32]);
      return { key: new Uint8Array(0), nonceTail: new Uint8Array(0), epochSecret };
    }
    const key = decodeHex(
      dd.key,
      `${name}.key`,
      where,
      cipher && cipher.keyLen ? [cipher.keyLen] : [16, 24, 32],
    );
    const nonceTail = decodeHex(dd.nonceTail, `${name}.nonceTail`, where, [8]);
    const epochSecret = dd.epochSecret !== undefined
      ? decodeHex(dd.epochSecret, `${name}.epochSecret`, where, [32])
      : undefined;
    return { key, nonceTail, ...(epochSecret ? { epochSecret } : {}) };
  };
  const encrypt = dir("encrypt");
  const decrypt = dir("decrypt");
  if (!!encrypt.epochSecret !== !!decrypt.epochSecret) {
    throw new KeyFileError(
      `${where}: only one direction has an 'epochSecret'; give 'encrypt.epochSecret' and 'decrypt.epochSecret' both`,
    );
  }
  if (encrypt.key.length !== decrypt.key.length) {
    throw new KeyFileError(`${where}: 'encrypt.key' and 'decrypt.key' must have the same length`);
  }
  return {
    format: "json",
    cipher,
    peerId: intField(r, "peerId", where, MAX_PEER_ID),
    keyId: intField(r, "keyId", where, 7),
    firstPacketId: intField(r, "firstPacketId", where, encrypt.epochSecret ? 2 ** 48 - 2 : 0xefffffff),
    encrypt,
    decrypt,
  };
}

/**
 * Parse a key file's text; `where` names the file in errors. Content starting with `{` is JSON, anything
 * else data64.
 */
export function parseKeyFile(text: string, where = "key file"): KeyFile {
  if (text.trimStart().startsWith("{")) return parseJsonKey(text, where);
  if (/-----BEGIN OpenVPN Static key V1-----/.test(text)) {
    throw new KeyFileError(
      `${where}: this is an OpenVPN static key (the --secret / --tls-auth / --tls-crypt format), not a data64.key or JSON key; create a data-channel key with 'ovpn-dco-cli genkey FILE' and give both ends the same file`,
    );
  }
  if (/-----BEGIN /.test(text)) {
    throw new KeyFileError(
      `${where}: this is a PEM file (a certificate or private key?), not a data64.key or JSON key; create one with 'ovpn-dco-cli genkey FILE'`,
    );
  }
  const raw = decodeBase64(text, where);
  if (raw.length < DATA64_MIN_LEN) {
    throw new KeyFileError(
      `${where}: decodes to ${raw.length} bytes, a data64.key needs at least ${DATA64_MIN_LEN}; create one with 'ovpn-dco-cli genkey FILE'`,
    );
  }
  return { format: "data64", raw };
}

/** Read and parse a key file; missing or unreadable files give a KeyFileError. */
export async function readKeyFile(path: string): Promise<KeyFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new KeyFileError(
        `key file '${path}' does not exist; create one with 'ovpn-dco-cli genkey ${path}'`,
      );
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new KeyFileError(`key file '${path}' is not readable; check its permissions`);
    }
    if (e instanceof TypeError || e instanceof Deno.errors.InvalidData) {
      throw new KeyFileError(`key file '${path}' is not text; use a data64.key or a JSON key file`);
    }
    throw new KeyFileError(`key file '${path}' cannot be read: ${(e as Error).message}`);
  }
  return parseKeyFile(text, `key file '${path}'`);
}

/** Choices that complete a key file into key material. */
export interface KeyChoice {
  /** Cipher name; for JSON keys the file's cipher is the default. Default AES-256-GCM. */
  cipher?: string;
  /** data64 only: 0 encrypts with key A, 1 with key B. */
  keyDirection?: number;
  /** Key id (0..7); for JSON keys the file's keyId is the default. Default 0. */
  keyId?: number;
  /**
   * Epoch data keys. data64: E1 from key A / key B. JSON: the file's epoch secrets (a JSON key with
   * `epochSecret` is an epoch key without this flag).
   */
  epoch?: boolean;
}

/** Turn a key file into the material of one NEW_KEY. */
export function toKeyMaterial(kf: KeyFile, choice: KeyChoice = {}, where = "key file"): KeyMaterial {
  let cipher: CipherInfo | undefined;
  if (choice.cipher !== undefined) {
    cipher = cipherByName(choice.cipher);
    if (!cipher) throw new KeyFileError(`unknown cipher '${choice.cipher}'; use one of ${CIPHER_NAMES}`);
  } else if (kf.format === "json" && kf.cipher) {
    cipher = kf.cipher;
  } else {
    cipher = cipherByName(DEFAULT_CIPHER)!;
  }
  const keyId = choice.keyId ?? (kf.format === "json" ? kf.keyId : undefined) ?? 0;
  if (cipher.alg === CipherAlg.NONE) {
    if (choice.epoch) {
      throw new KeyFileError(
        `epoch data keys need an AEAD cipher, not none; use one of ${CIPHER_NAMES.replace(", none", "")}`,
      );
    }
    const z = new Uint8Array(0);
    return { cipher, keyId, encryptKey: z, decryptKey: z, encryptNonceTail: z, decryptNonceTail: z };
  }
  if (kf.format === "data64") {
    const a = kf.raw.subarray(0, 32), b = kf.raw.subarray(32, 64), tail = kf.raw.subarray(64, 72);
    const dir = (choice.keyDirection ?? 0) > 0 ? 1 : 0;
    // epoch: the whole 32 bytes of each direction's key are its E1 (OpenVPN's init_epoch_keys)
    const len = choice.epoch ? 32 : cipher.keyLen;
    return {
      cipher,
      keyId,
      encryptKey: (dir ? b : a).slice(0, len),
      decryptKey: (dir ? a : b).slice(0, len),
      encryptNonceTail: tail.slice(),
      decryptNonceTail: tail.slice(),
      ...(choice.epoch ? { epoch: true } : {}),
    };
  }
  if (kf.encrypt.epochSecret && kf.decrypt.epochSecret) {
    return {
      cipher,
      keyId,
      encryptKey: kf.encrypt.epochSecret,
      decryptKey: kf.decrypt.epochSecret,
      encryptNonceTail: kf.encrypt.nonceTail.length ? kf.encrypt.nonceTail : new Uint8Array(8),
      decryptNonceTail: kf.decrypt.nonceTail.length ? kf.decrypt.nonceTail : new Uint8Array(8),
      epoch: true,
      ...(kf.firstPacketId ? { firstPacketId: kf.firstPacketId } : {}),
    };
  }
  if (choice.epoch) {
    throw new KeyFileError(
      `${where}: --epoch needs epoch secrets, and this JSON key has none; add 'epochSecret' (32 bytes, hex) to 'encrypt' and 'decrypt', or use a data64.key`,
    );
  }
  if (kf.encrypt.key.length !== cipher.keyLen) {
    throw new KeyFileError(
      `${where}: the keys have ${kf.encrypt.key.length} bytes but ${cipher.name} needs ${cipher.keyLen}; fix the file or pass the matching --cipher`,
    );
  }
  return {
    cipher,
    keyId,
    encryptKey: kf.encrypt.key,
    decryptKey: kf.decrypt.key,
    encryptNonceTail: kf.encrypt.nonceTail,
    decryptNonceTail: kf.decrypt.nonceTail,
    ...(kf.firstPacketId ? { firstPacketId: kf.firstPacketId } : {}),
  };
}

/** A fresh random data64.key text (72 bytes, base64, lines of 76 characters). */
export function generateData64(bytes = DATA64_MIN_LEN): string {
  const raw = crypto.getRandomValues(new Uint8Array(bytes));
  let bin = "";
  for (const b of raw) bin += String.fromCharCode(b);
  const b64 = btoa(bin);
  return (b64.match(/.{1,76}/g) ?? []).join("\n") + "\n";
}

/** Write a fresh data64.key readable by its owner only; refuses to overwrite. */
export async function writeNewKeyFile(path: string): Promise<void> {
  try {
    await Deno.writeTextFile(path, generateData64(), { createNew: true, mode: 0o600 });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new KeyFileError(`'${path}' already exists; choose another name or remove it first`);
    }
    throw new KeyFileError(`cannot write '${path}': ${(e as Error).message}`);
  }
  if (Deno.build.os !== "windows") await Deno.chmod(path, 0o600);
}
