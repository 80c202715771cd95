/**
 * The data channel engine (pure, no I/O): DATA_V2 seal/open with key slots, packet ids, replay
 * protection, peer-id check, keepalive recognition and the OVPN_STATS counters. Transport and tun code
 * feed it buffers; it never allocates per packet.
 *
 * Buffer convention: a plaintext packet sits at `buf[HEADROOM .. HEADROOM+len]`; `seal` writes the
 * header and tag in front of it, in place, and returns where the wire packet starts.
 *
 * @example
 * ```ts
 * import { DataChannel } from "./channel.ts";
 * import { HEADROOM } from "./packet.ts";
 * const ch = new DataChannel({ peerId: 1 });
 * // ch.newKey(KeySlotId.PRIMARY, material) ... then:
 * const buf = new Uint8Array(2048);
 * const start = ch.seal(buf, 0); // -1: no key yet, counted as lostOutDataPkts
 * ```
 * @module
 */
import type { Aead, CipherInfo } from "../../crypto/aead.ts";
import { createAead, type ProviderName } from "../../crypto/providers.ts";
import { type KeyMaterial, KeySlot, KeySlotId, KeySlots } from "./keyslot.ts";
import {
  AEAD_OVERHEAD,
  DATA_V2_HEADER_LEN,
  HEADROOM,
  isKeepalive,
  KEEPALIVE_PING,
  keyIdOf,
  MAX_WIRE_LEN,
  NONE_OVERHEAD,
  packetIdOf,
  peerIdOf,
  writeDataV2Header,
} from "./packet.ts";
import { newStats, type Stats } from "./stats.ts";

/** `open` result: the packet was dropped (and counted in LostInDataPackets). */
export const RX_DROP = -1;
/** `open` result: a keepalive ping (counted, not for the tun). */
export const RX_KEEPALIVE = -2;

/** Why packets were dropped: a diagnostic breakdown of the lost counters (never contains key bytes). */
export type DropReason =
  | "no-key"
  | "pktid-limit"
  | "too-short"
  | "too-long"
  | "wrong-peer"
  | "unknown-key-id"
  | "bad-tag"
  | "replay"
  | "too-old"
  | "expired"
  | "zero-pktid";

/** Options of a data channel. */
export interface DataChannelOptions {
  peerId?: number;
  stats?: Stats;
  /** Milliseconds clock for the replay window's expiry. */
  now?: () => number;
  /** Crypto provider name (`auto` by default). */
  provider?: ProviderName;
  /** Called for every drop with its reason (default: counted in `drops`). */
  countDrop?: (reason: DropReason) => void;
  /** Override AEAD construction (tests). */
  makeAead?: (c: CipherInfo, key: Uint8Array) => Aead;
}

/** One peer's data channel. */
export class DataChannel {
  readonly stats: Stats;
  readonly keys = new KeySlots();
  readonly drops = new Map<DropReason, number>();
  peerId: number;
  #now?: () => number;
  #countDrop: (reason: DropReason) => void;
  // Views of the last buffers used, so that the hot path creates no subarrays for repeated buffers.
  #sBuf?: Uint8Array;
  #sAad: Uint8Array = new Uint8Array(0);
  #sTag: Uint8Array = new Uint8Array(0);
  #sPt: Uint8Array = new Uint8Array(0);
  #sLen = -1;
  #oBuf?: Uint8Array;
  #oOff = -1;
  #oLen = -1;
  #oAad: Uint8Array = new Uint8Array(0);
  #oTag: Uint8Array = new Uint8Array(0);
  #oCt: Uint8Array = new Uint8Array(0);
  #makeAead: (c: CipherInfo, key: Uint8Array) => Aead;

  constructor(opts: DataChannelOptions = {}) {
    this.peerId = opts.peerId ?? 0;
    this.stats = opts.stats ?? newStats();
    this.#now = opts.now;
    this.#countDrop = opts.countDrop ?? ((r) => this.drops.set(r, (this.drops.get(r) ?? 0) + 1));
    const provider = opts.provider ?? "auto";
    this.#makeAead = opts.makeAead ?? ((c, k) => createAead(c, k, provider));
  }

  /** NEW_KEY: install a key into a slot; its packet ids and replay window start afresh. */
  newKey(which: KeySlotId, m: KeyMaterial): void {
    this.keys.install(which, new KeySlot(m, this.#makeAead, this.#now));
  }

  #drop(reason: DropReason, out: boolean): number {
    this.#countDrop(reason);
    if (out) this.stats.LostOutDataPackets++;
    else this.stats.LostInDataPackets++;
    return RX_DROP;
  }

  /**
   * Encrypt the plaintext at `buf[HEADROOM .. HEADROOM+len]` with the primary key. Returns the offset
   * where the wire packet starts (it ends at `HEADROOM+len`), or -1 when it cannot be sent (counted).
   */
  seal(buf: Uint8Array, len: number): number {
    this.stats.TunBytesSent += len;
    const slot = this.keys.primary;
    if (!slot) return this.#drop("no-key", true);
    const pid = slot.tx.next();
    if (pid < 0) return this.#drop("pktid-limit", true);
    const aead = slot.encrypt;
    if (aead === null) {
      const start = HEADROOM - NONE_OVERHEAD;
      writeDataV2Header(buf, start, slot.keyId, this.peerId, pid);
      return start;
    }
    writeDataV2Header(buf, 0, slot.keyId, this.peerId, pid);
    const nonce = slot.encNonce;
    nonce[0] = buf[4];
    nonce[1] = buf[5];
    nonce[2] = buf[6];
    nonce[3] = buf[7];
    if (buf !== this.#sBuf) {
      this.#sBuf = buf;
      this.#sAad = buf.subarray(0, DATA_V2_HEADER_LEN);
      this.#sTag = buf.subarray(DATA_V2_HEADER_LEN, AEAD_OVERHEAD);
      this.#sLen = -1;
    }
    if (len !== this.#sLen) {
      this.#sPt = buf.subarray(HEADROOM, HEADROOM + len);
      this.#sLen = len;
    }
    aead.seal(nonce, this.#sAad, this.#sPt, this.#sPt, this.#sTag);
    return 0;
  }

  /** Put the keepalive ping at `buf[HEADROOM..]` and seal it; same result as `seal`. */
  sealKeepalive(buf: Uint8Array): number {
    buf.set(KEEPALIVE_PING, HEADROOM);
    const r = this.seal(buf, KEEPALIVE_PING.length);
    this.stats.TunBytesSent -= KEEPALIVE_PING.length; // a ping is not tun traffic
    return r;
  }

  /**
   * Decrypt the DATA_V2 packet at `buf[off .. off+len]` in place. Returns the offset where the
   * plaintext starts (it ends at `off+len`), RX_KEEPALIVE for a ping, or RX_DROP (counted).
   * The caller has already classified the packet as DATA_V2.
   */
  open(buf: Uint8Array, off: number, len: number): number {
    this.stats.TransportBytesReceived += len;
    if (len < DATA_V2_HEADER_LEN) return this.#drop("too-short", false);
    if (len > MAX_WIRE_LEN) return this.#drop("too-long", false);
    if (peerIdOf(buf, off) !== this.peerId) return this.#drop("wrong-peer", false);
    const slot = this.keys.forKeyId(keyIdOf(buf, off));
    if (!slot) return this.#drop("unknown-key-id", false);
    const pid = packetIdOf(buf, off);
    let start: number;
    const aead = slot.decrypt;
    if (aead === null) {
      // cipher NONE: as the driver, no authentication and so no replay protection
      start = off + NONE_OVERHEAD;
    } else {
      if (len < AEAD_OVERHEAD) return this.#drop("too-short", false);
      const nonce = slot.decNonce;
      nonce[0] = buf[off + 4];
      nonce[1] = buf[off + 5];
      nonce[2] = buf[off + 6];
      nonce[3] = buf[off + 7];
      start = off + AEAD_OVERHEAD;
      if (buf !== this.#oBuf || off !== this.#oOff) {
        this.#oBuf = buf;
        this.#oOff = off;
        this.#oAad = buf.subarray(off, off + DATA_V2_HEADER_LEN);
        this.#oTag = buf.subarray(off + DATA_V2_HEADER_LEN, start);
        this.#oLen = -1;
      }
      if (len !== this.#oLen) {
        this.#oCt = buf.subarray(start, off + len);
        this.#oLen = len;
      }
      const ct = this.#oCt;
      if (!aead.open(nonce, this.#oAad, ct, this.#oTag, ct)) return this.#drop("bad-tag", false);
      const v = slot.rx.check(pid);
      if (v !== "ok") return this.#drop(v === "zero" ? "zero-pktid" : v, false);
    }
    this.stats.ReceivedDataPackets++;
    if (isKeepalive(buf, start, off + len - start)) return RX_KEEPALIVE;
    return start;
  }

  /** Drop every key. */
  close(): void {
    this.keys.clear();
  }
}

export { KeySlotId };
export type { KeyMaterial };
