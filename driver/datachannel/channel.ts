/**
 * The data channel engine (pure, no I/O): DATA_V2 seal/open with key slots, packet ids, replay
 * protection, peer-id check, keepalive recognition and the OVPN_STATS counters. Transport and tun code
 * feed it buffers; it never allocates per packet.
 *
 * Buffer convention: a plaintext packet sits at `buf[HEADROOM .. HEADROOM+len]`; `seal` writes the
 * header (and the DATA_V2 tag) in front of it, in place, and returns where the wire packet starts; it ends
 * at `sealEnd` (the epoch format puts its tag after the plaintext: keep TAILROOM bytes free there).
 * `open` decrypts in place and returns where the plaintext starts; it ends at `openEnd`.
 *
 * Two formats, chosen per key: DATA_V2 (32-bit packet id, tag in front) and OpenVPN 2.7's epoch format
 * (64-bit packet id with the epoch in its top 16 bits, tag at the end, data keys that ratchet forward).
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
import { AEAD_LIMIT_BLOCKSIZE, FAIL_LIMIT } from "./epoch.ts";
import {
  AEAD_OVERHEAD,
  DATA_V2_HEADER_LEN,
  EPOCH_HEADER_LEN,
  EPOCH_OVERHEAD,
  HEADROOM,
  isKeepalive,
  KEEPALIVE_PING,
  keyIdOf,
  MAX_WIRE_LEN,
  NONE_OVERHEAD,
  OP_DATA_V2,
  OPCODE_SHIFT,
  packetIdOf,
  peerIdOf,
  writeDataV2Header,
} from "./packet.ts";
import { newStats, type Stats } from "./stats.ts";
import { OffsetCache } from "./views.ts";

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
  | "zero-pktid"
  | "unknown-epoch";

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
  /**
   * Epoch keys: the receive side decided that the sender of the key installed as `generation` should be at
   * `epoch` at least (the peer moved there, or the receive key is near its limits). The channel applies it
   * to its own sender too; an engine whose sender lives elsewhere forwards it (`followEpoch`).
   */
  onPeerEpoch?: (generation: number, epoch: number) => void;
  /** Epoch keys: the send or receive epoch of a key changed. */
  onEpochChange?: () => void;
}

/** The initial value of the cached views (one shared array: a server keeps a channel per peer per worker). */
const EMPTY = new Uint8Array(0);

/** The views of one packet's parts that the AEAD calls take: header (AAD), tag, and text by its length. */
interface PartViews {
  aad: Uint8Array;
  tag: Uint8Array;
  text: Uint8Array;
  /** The packet length `text` and (epoch format) `tag` were made for; -1: none yet. */
  len: number;
}

/**
 * Packet-part views cached per buffer and offset, shared by every channel of the thread (views depend on the
 * buffer, not the key). The engines seal into 64 rotating send slots and open datagrams at varying offsets of a
 * receive batch: a cache of the last layout alone missed on nearly every packet and made three subarrays (about
 * 310 bytes of garbage) per seal and per open.
 */
const partCache = () =>
  new OffsetCache<PartViews>(MAX_PART_VIEWS, () => ({ aad: EMPTY, tag: EMPTY, text: EMPTY, len: -1 }));

/** Layouts a cache keeps (64 send slots; 64 receive slots × up to 64 datagrams of a UDP_GRO train). */
const MAX_PART_VIEWS = 8192;
const sealViews = partCache(), openViews = partCache();
const sealEpochViews = partCache(), openEpochViews = partCache();

/** One peer's data channel. */
export class DataChannel {
  readonly stats: Stats;
  readonly keys = new KeySlots();
  readonly drops = new Map<DropReason, number>();
  peerId: number;
  #now?: () => number;
  #countDrop: (reason: DropReason) => void;
  #makeAead: (c: CipherInfo, key: Uint8Array) => Aead;
  #onPeerEpoch?: (generation: number, epoch: number) => void;
  #onEpochChange?: () => void;
  #generation = 0;
  /** Where the last sealed wire packet ends. */
  sealEnd = 0;
  /** Where the last opened plaintext ends. */
  openEnd = 0;
  /**
   * Whether the last packet `open` accepted was authenticated (false for cipher NONE, which anyone can forge):
   * only an authenticated packet may move a server's peer to a new address.
   */
  openAuthentic = false;

  constructor(opts: DataChannelOptions = {}) {
    this.peerId = opts.peerId ?? 0;
    this.stats = opts.stats ?? newStats();
    this.#now = opts.now;
    this.#countDrop = opts.countDrop ?? ((r) => this.drops.set(r, (this.drops.get(r) ?? 0) + 1));
    const provider = opts.provider ?? "auto";
    this.#makeAead = opts.makeAead ?? ((c, k) => createAead(c, k, provider));
    this.#onPeerEpoch = opts.onPeerEpoch;
    this.#onEpochChange = opts.onEpochChange;
  }

  /**
   * NEW_KEY: install a key into a slot; its packet ids and replay window start afresh. `generation` names
   * this installation (engines that keep one channel per direction give both the same number).
   */
  newKey(which: KeySlotId, m: KeyMaterial, generation = ++this.#generation): void {
    this.keys.install(which, new KeySlot(m, this.#makeAead, this.#now, generation));
    if (m.epoch) this.#onEpochChange?.();
  }

  /** The primary key's send and receive epoch, or null when it is not an epoch key. */
  epochs(): { send: number; recv: number } | null {
    const p = this.keys.primary;
    if (!p?.epochSend || !p.epochRecv) return null;
    return { send: p.epochSend.epoch, recv: p.epochRecv.epoch };
  }

  /** Move the primary key's sender to the next epoch now; false when it is not an epoch key or at the end. */
  nextEpoch(): boolean {
    const ok = this.keys.primary?.epochSend?.advance() ?? false;
    if (ok) this.#onEpochChange?.();
    return ok;
  }

  /** Move the sender of the key installed as `generation` forward to `epoch` (see `onPeerEpoch`). */
  followEpoch(generation: number, epoch: number): void {
    for (const slot of [this.keys.primary, this.keys.secondary]) {
      if (slot?.generation === generation && slot.epochSend?.followTo(epoch)) this.#onEpochChange?.();
    }
  }

  #follow(slot: KeySlot, epoch: number) {
    if (slot.epochSend!.followTo(epoch)) this.#onEpochChange?.();
    this.#onPeerEpoch?.(slot.generation, epoch);
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
    if (slot.epochSend) return this.#sealEpoch(slot, buf, len);
    const pid = slot.tx.next();
    if (pid < 0) return this.#drop("pktid-limit", true);
    this.sealEnd = HEADROOM + len;
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
    const v = sealViews.at(buf, 0);
    if (v.len !== len) {
      if (v.len < 0) {
        v.aad = buf.subarray(0, DATA_V2_HEADER_LEN);
        v.tag = buf.subarray(DATA_V2_HEADER_LEN, AEAD_OVERHEAD);
      }
      v.text = buf.subarray(HEADROOM, HEADROOM + len);
      v.len = len;
    }
    aead.seal(nonce, v.aad, v.text, v.text, v.tag);
    return 0;
  }

  #sealEpoch(slot: KeySlot, buf: Uint8Array, len: number): number {
    const end = HEADROOM + len;
    if (end + 16 > buf.length) return this.#drop("too-long", true);
    const es = slot.epochSend!;
    const before = es.key;
    const counter = es.next(len);
    if (counter < 0) return this.#drop("pktid-limit", true);
    const k = es.key;
    if (k !== before) this.#onEpochChange?.();
    const start = HEADROOM - EPOCH_HEADER_LEN;
    const peerId = this.peerId, epoch = k.epoch;
    const hi = Math.floor(counter / 0x100000000), lo = counter >>> 0;
    buf[start] = (OP_DATA_V2 << OPCODE_SHIFT) | (slot.keyId & 7);
    buf[start + 1] = (peerId >>> 16) & 0xff;
    buf[start + 2] = (peerId >>> 8) & 0xff;
    buf[start + 3] = peerId & 0xff;
    buf[start + 4] = epoch >>> 8;
    buf[start + 5] = epoch & 0xff;
    buf[start + 6] = hi >>> 8;
    buf[start + 7] = hi & 0xff;
    buf[start + 8] = lo >>> 24;
    buf[start + 9] = (lo >>> 16) & 0xff;
    buf[start + 10] = (lo >>> 8) & 0xff;
    buf[start + 11] = lo & 0xff;
    const v = sealEpochViews.at(buf, start);
    if (v.len !== len) {
      if (v.len < 0) v.aad = buf.subarray(start, HEADROOM);
      v.text = buf.subarray(HEADROOM, end);
      v.tag = buf.subarray(end, end + 16);
      v.len = len;
    }
    k.aead.seal(k.nonceFor(buf, start + 4), v.aad, v.text, v.text, v.tag);
    this.sealEnd = end + 16;
    return start;
  }

  /** Put the keepalive ping at `buf[HEADROOM..]` and seal it; same result as `seal` (and `sealEnd`). */
  sealKeepalive(buf: Uint8Array): number {
    buf.set(KEEPALIVE_PING, HEADROOM);
    const r = this.seal(buf, KEEPALIVE_PING.length);
    this.stats.TunBytesSent -= KEEPALIVE_PING.length; // a ping is not tun traffic
    return r;
  }

  /**
   * Decrypt the DATA_V2 packet at `buf[off .. off+len]` in place. Returns the offset where the
   * plaintext starts (it ends at `openEnd`), RX_KEEPALIVE for a ping, or RX_DROP (counted).
   * The caller has already classified the packet as DATA_V2.
   */
  open(buf: Uint8Array, off: number, len: number): number {
    this.stats.TransportBytesReceived += len;
    if (len < DATA_V2_HEADER_LEN) return this.#drop("too-short", false);
    if (len > MAX_WIRE_LEN) return this.#drop("too-long", false);
    if (peerIdOf(buf, off) !== this.peerId) return this.#drop("wrong-peer", false);
    const slot = this.keys.forKeyId(keyIdOf(buf, off));
    if (!slot) return this.#drop("unknown-key-id", false);
    if (slot.epochRecv) {
      this.openAuthentic = true;
      return this.#openEpoch(slot, buf, off, len);
    }
    const pid = packetIdOf(buf, off);
    let start: number;
    const aead = slot.decrypt;
    this.openAuthentic = aead !== null;
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
      const pv = openViews.at(buf, off);
      if (pv.len !== len) {
        if (pv.len < 0) {
          pv.aad = buf.subarray(off, off + DATA_V2_HEADER_LEN);
          pv.tag = buf.subarray(off + DATA_V2_HEADER_LEN, start);
        }
        pv.text = buf.subarray(start, off + len);
        pv.len = len;
      }
      const ct = pv.text;
      if (!aead.open(nonce, pv.aad, ct, pv.tag, ct)) return this.#drop("bad-tag", false);
      const v = slot.rx.check(pid);
      if (v !== "ok") return this.#drop(v === "zero" ? "zero-pktid" : v, false);
    }
    this.stats.ReceivedDataPackets++;
    this.openEnd = off + len;
    if (isKeepalive(buf, start, off + len - start)) return RX_KEEPALIVE;
    return start;
  }

  #openEpoch(slot: KeySlot, buf: Uint8Array, off: number, len: number): number {
    // OpenVPN wants at least one byte of payload
    if (len < EPOCH_OVERHEAD + 1) return this.#drop("too-short", false);
    const er = slot.epochRecv!;
    const epoch = (buf[off + 4] << 8) | buf[off + 5];
    const counter = ((buf[off + 6] << 8) | buf[off + 7]) * 0x100000000 +
      (((buf[off + 8] << 24) | (buf[off + 9] << 16) | (buf[off + 10] << 8) | buf[off + 11]) >>> 0);
    const k = epoch === 0 ? undefined : er.lookup(epoch);
    if (!k) return this.#drop("unknown-epoch", false);
    if (k.failed > FAIL_LIMIT) return this.#drop("bad-tag", false);
    const start = off + EPOCH_HEADER_LEN, end = off + len - 16;
    const v = openEpochViews.at(buf, off);
    if (v.len !== len) {
      if (v.len < 0) v.aad = buf.subarray(off, start);
      v.text = buf.subarray(start, end);
      v.tag = buf.subarray(end, off + len);
      v.len = len;
    }
    const ct = v.text;
    if (!k.aead.open(k.nonceFor(buf, off + 4), v.aad, ct, v.tag, ct)) {
      k.failed++;
      return this.#drop("bad-tag", false);
    }
    const { verdict, moved } = er.accept(k, counter);
    if (verdict !== "ok") return this.#drop(verdict === "zero" ? "zero-pktid" : verdict, false);
    k.blocks += (end - start + AEAD_LIMIT_BLOCKSIZE - 1) >>> 4;
    if (moved) {
      this.#onEpochChange?.();
      this.#follow(slot, er.epoch);
    } else if (er.wantsNewEpoch() && slot.epochSend!.epoch === er.epoch) {
      // near the receive key's limits: move our own send epoch to ask the peer to move too
      this.#follow(slot, er.epoch + 1);
    }
    this.stats.ReceivedDataPackets++;
    this.openEnd = end;
    if (isKeepalive(buf, start, end - start)) return RX_KEEPALIVE;
    return start;
  }

  /** Drop every key. */
  close(): void {
    this.keys.clear();
  }
}

export { KeySlotId };
export type { KeyMaterial };
