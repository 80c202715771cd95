/**
 * Epoch data keys (OpenVPN 2.7's `aead-epoch` data format), pure logic: OpenVPN's HKDF-Expand-Label,
 * the derivation of a data key and implicit IV from an epoch secret, the sender's ratchet (usage
 * limits, packet-id exhaustion, following the peer) and the receiver's current / retiring / future keys
 * with a replay window per key. The algorithm of src/openvpn/crypto_epoch.c (OpenVPN) and
 * crypto_epoch.cpp (ovpn-dco-win).
 *
 * - E_{N+1} = Expand-Label(E_N, "datakey upd", 32); key_N = Expand-Label(E_N, "data_key", key length);
 *   IV_N = Expand-Label(E_N, "data_iv", 12); info = u16 length ‖ u8 len("ovpn " + label) ‖ "ovpn " +
 *   label ‖ u8 0; HMAC-SHA-256.
 * - Packet id: 64 bits big-endian, epoch in the top 16, a per-epoch counter (from 1) in the low 48.
 * - Nonce: (the 8 packet-id bytes XOR IV[0..8]) ‖ IV[8..12].
 *
 * @example
 * ```ts
 * import { ovpnExpandLabel } from "./epoch.ts";
 * const k = ovpnExpandLabel(new Uint8Array(32), "data_key", 32); // 32 bytes
 * ```
 * @module
 */
import { createHmac } from "node:crypto";
import type { Aead, CipherInfo } from "../../crypto/aead.ts";
import { CipherAlg } from "../../crypto/aead.ts";
import { ReplayWindow } from "./pktid.ts";

/** Length of an epoch secret (SHA-256 sized). */
export const EPOCH_SECRET_LEN = 32;
/** Highest per-epoch packet counter (48 bits). */
export const EPOCH_PKTID_MAX = 2 ** 48 - 1;
/** Highest epoch. */
export const EPOCH_MAX = 0xffff;
/**
 * Future receive keys kept ahead of the current one: 16, as the OpenVPN 2.7.6 release (ssl.c
 * init_epoch_keys). OpenVPN's master branch and ovpn-dco-win's crypto_epoch.h have since lowered it to 4;
 * a sender never moves more than one epoch at a time, so either peer accepts what this tool sends.
 */
export const FUTURE_EPOCH_KEYS = 16;
/** Block size of the AEAD usage limit. */
export const AEAD_LIMIT_BLOCKSIZE = 16;
/** Failed authentications on one key after which the receiver asks for a new epoch (2^35). */
export const FAIL_WARN = 2 ** 35;
/** Failed authentications on one key after which it is not used any more (2^36). */
export const FAIL_LIMIT = 2 ** 36;

/** HKDF-Expand (RFC 5869) with HMAC-SHA-256, the secret used as PRK (no extract step). */
export function hkdfExpand(secret: Uint8Array, info: Uint8Array, outLen: number): Uint8Array {
  const out = new Uint8Array(outLen);
  let prev = new Uint8Array(0);
  for (let block = 1, off = 0; off < outLen; block++) {
    const h = createHmac("sha256", secret);
    h.update(prev);
    h.update(info);
    h.update(new Uint8Array([block]));
    prev = new Uint8Array(h.digest());
    out.set(prev.subarray(0, Math.min(prev.length, outLen - off)), off);
    off += prev.length;
  }
  return out;
}

/** OpenVPN's HKDF-Expand-Label with an empty context (`ovpn_expand_label`). */
export function ovpnExpandLabel(secret: Uint8Array, label: string, outLen: number): Uint8Array {
  if (secret.length !== EPOCH_SECRET_LEN) throw new RangeError("an epoch secret has 32 bytes");
  const l = new TextEncoder().encode("ovpn " + label);
  const info = new Uint8Array(2 + 1 + l.length + 1);
  info[0] = outLen >> 8;
  info[1] = outLen & 0xff;
  info[2] = l.length;
  info.set(l, 3);
  info[3 + l.length] = 0; // context length
  return hkdfExpand(secret, info, outLen);
}

/** The next epoch secret: E_{N+1} = Expand-Label(E_N, "datakey upd", 32). */
export function nextEpochSecret(secret: Uint8Array): Uint8Array {
  return ovpnExpandLabel(secret, "datakey upd", EPOCH_SECRET_LEN);
}

/** Data key and implicit IV of an epoch secret. */
export function deriveEpochDataKey(secret: Uint8Array, keyLen: number): { key: Uint8Array; iv: Uint8Array } {
  return { key: ovpnExpandLabel(secret, "data_key", keyLen), iv: ovpnExpandLabel(secret, "data_iv", 12) };
}

/** The AEAD usage limit q + s (packets + 16-byte blocks) of a cipher: 2^36 - 1 for AES-GCM, none for ChaCha20. */
export function aeadUsageLimit(cipher: CipherInfo): number {
  return cipher.alg === CipherAlg.AES_GCM ? 2 ** 36 - 1 : 0;
}

/** One derived epoch data key for one direction. */
export class EpochDataKey {
  readonly epoch: number;
  readonly aead: Aead;
  /** Implicit IV (12 bytes). */
  readonly iv: Uint8Array;
  /** Nonce buffer: bytes 8..12 hold IV[8..12]; the first 8 are filled per packet. */
  readonly nonce = new Uint8Array(12);
  /** 16-byte blocks of plaintext processed (usage limit). */
  blocks = 0;
  /** Failed authentications (receive keys). */
  failed = 0;

  constructor(epoch: number, secret: Uint8Array, cipher: CipherInfo, makeAead: MakeAead) {
    this.epoch = epoch;
    const { key, iv } = deriveEpochDataKey(secret, cipher.keyLen);
    this.aead = makeAead(cipher, key);
    key.fill(0);
    this.iv = iv;
    this.nonce.set(iv.subarray(8, 12), 8);
  }

  /** Fill the nonce from the 8 packet-id bytes at `p[off..off+8]`. */
  nonceFor(p: Uint8Array, off: number): Uint8Array {
    const n = this.nonce, iv = this.iv;
    for (let i = 0; i < 8; i++) n[i] = p[off + i] ^ iv[i];
    return n;
  }

  close(): void {
    this.aead.close();
  }
}

/** Builds an AEAD for a cipher and a key. */
export type MakeAead = (c: CipherInfo, key: Uint8Array) => Aead;

/** The sending half: the current epoch secret, its data key and the 48-bit counter. */
export class EpochSend {
  #secret: Uint8Array;
  #cipher: CipherInfo;
  #make: MakeAead;
  /** Usage limit in packets + blocks (0: none). */
  limit: number;
  key: EpochDataKey;
  /** Last packet counter used in the current epoch. */
  counter = 0;

  constructor(e1: Uint8Array, cipher: CipherInfo, makeAead: MakeAead, limit = aeadUsageLimit(cipher)) {
    this.#secret = e1.slice(0, EPOCH_SECRET_LEN);
    this.#cipher = cipher;
    this.#make = makeAead;
    this.limit = limit;
    this.key = new EpochDataKey(1, this.#secret, cipher, makeAead);
  }

  get epoch(): number {
    return this.key.epoch;
  }

  #install(epoch: number) {
    this.key.close();
    this.key = new EpochDataKey(epoch, this.#secret, this.#cipher, this.#make);
    this.counter = 0;
  }

  /** Move to the next epoch; false when the last epoch is reached. */
  advance(): boolean {
    if (this.key.epoch >= EPOCH_MAX) return false;
    const old = this.#secret;
    this.#secret = nextEpochSecret(old);
    old.fill(0);
    this.#install(this.key.epoch + 1);
    return true;
  }

  /** Move forward to `epoch` (the peer sends with it); no-op when already there or beyond. */
  followTo(epoch: number): boolean {
    if (epoch <= this.key.epoch || epoch > EPOCH_MAX) return false;
    let s = this.#secret;
    for (let e = this.key.epoch; e < epoch; e++) {
      const n = nextEpochSecret(s);
      s.fill(0);
      s = n;
    }
    this.#secret = s;
    this.#install(epoch);
    return true;
  }

  /**
   * Account one packet of `len` plaintext bytes and return its counter (from 1), moving to the next
   * epoch first when the usage limit or the counter is used up; -1 when nothing is left.
   */
  next(len: number): number {
    const k = this.key;
    if ((this.limit > 0 && k.blocks + this.counter > this.limit) || this.counter >= EPOCH_PKTID_MAX) {
      if (!this.advance()) return -1;
    }
    this.key.blocks += (len + AEAD_LIMIT_BLOCKSIZE - 1) >>> 4;
    return ++this.counter;
  }

  close(): void {
    this.key.close();
    this.#secret.fill(0);
  }
}

/** A receive key with its replay window. */
interface RecvKey {
  key: EpochDataKey;
  window: ReplayWindow;
}

/** The receiving half: current key, the retiring one, and the future keys. */
export class EpochRecv {
  /** The secret of the highest epoch generated so far. */
  #secret: Uint8Array;
  #secretEpoch = 1;
  #cipher: CipherInfo;
  #make: MakeAead;
  #now?: () => number;
  readonly futureCount: number;
  current: RecvKey;
  retiring: RecvKey | undefined;
  /** future[i] holds epoch current + 1 + i. */
  future: EpochDataKey[] = [];
  /** Usage limit (as the sender's). */
  readonly limit: number;

  constructor(
    e1: Uint8Array,
    cipher: CipherInfo,
    makeAead: MakeAead,
    opts: { futureCount?: number; now?: () => number; limit?: number } = {},
  ) {
    this.#secret = e1.slice(0, EPOCH_SECRET_LEN);
    this.#cipher = cipher;
    this.#make = makeAead;
    this.#now = opts.now;
    this.futureCount = opts.futureCount ?? FUTURE_EPOCH_KEYS;
    this.limit = opts.limit ?? aeadUsageLimit(cipher);
    this.current = {
      key: new EpochDataKey(1, this.#secret, cipher, makeAead),
      window: new ReplayWindow(opts.now),
    };
    this.#generateFuture();
  }

  get epoch(): number {
    return this.current.key.epoch;
  }

  /** Fill `future` with the keys current+1 .. current+futureCount (epochs beyond EPOCH_MAX are left out). */
  #generateFuture() {
    const cur = this.current.key.epoch;
    const keep = this.future.filter((k) => {
      if (k.epoch > cur) return true;
      k.close();
      return false;
    });
    const want = Math.min(cur + this.futureCount, EPOCH_MAX);
    while (this.#secretEpoch < want) {
      const n = nextEpochSecret(this.#secret);
      this.#secret.fill(0);
      this.#secret = n;
      this.#secretEpoch++;
      if (this.#secretEpoch > cur) {
        keep.push(new EpochDataKey(this.#secretEpoch, n, this.#cipher, this.#make));
      }
    }
    this.future = keep;
  }

  /** The key for `epoch`, or undefined when it is not current, retiring or within the future window. */
  lookup(epoch: number): EpochDataKey | undefined {
    const cur = this.current.key.epoch;
    if (epoch === cur) return this.current.key;
    if (this.retiring && this.retiring.key.epoch === epoch) return this.retiring.key;
    if (epoch > cur && epoch <= cur + this.futureCount) {
      if (epoch > EPOCH_MAX - this.futureCount - 1) return undefined;
      return this.future[epoch - cur - 1];
    }
    return undefined;
  }

  /**
   * After `key` (from `lookup`) authenticated a packet with `counter`: the replay check in that key's
   * window; a future key becomes current (the current one retiring) first. Returns the verdict and
   * whether the current epoch moved.
   */
  accept(key: EpochDataKey, counter: number): { verdict: ReturnType<ReplayWindow["check"]>; moved: boolean } {
    let moved = false;
    let rk: RecvKey;
    if (key === this.current.key) rk = this.current;
    else if (this.retiring && key === this.retiring.key) rk = this.retiring;
    else {
      this.#promote(key);
      moved = true;
      rk = this.current;
    }
    return { verdict: rk.window.check(counter), moved };
  }

  #promote(key: EpochDataKey) {
    const i = this.future.indexOf(key);
    if (i < 0) throw new Error("epoch key is not a future key");
    this.future.splice(i, 1);
    this.retiring?.key.close();
    this.retiring = this.current;
    this.current = { key, window: new ReplayWindow(this.#now) };
    this.#generateFuture();
  }

  /** For tests (upstream's unit tests do the same): make `epoch` current as if a packet had arrived. */
  moveTo(epoch: number): void {
    const k = this.lookup(epoch);
    if (!k || k === this.current.key || k === this.retiring?.key) {
      throw new Error(`epoch ${epoch} is not a future key`);
    }
    this.#promote(k);
  }

  /** Whether the current key is near its usage or failure limit (time to ask the peer for a new epoch). */
  wantsNewEpoch(): boolean {
    const k = this.current.key;
    return (this.limit > 0 && k.blocks + this.current.window.highest > this.limit) || k.failed > FAIL_WARN;
  }

  close(): void {
    this.current.key.close();
    this.retiring?.key.close();
    for (const k of this.future) k.close();
    this.future = [];
    this.#secret.fill(0);
  }
}
