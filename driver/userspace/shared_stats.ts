/**
 * Statistics in a SharedArrayBuffer, so that the engine's two workers (one per direction) count into
 * one set that the main thread reads at any time without messages. Each field has a single writer
 * thread (the direction it belongs to), so plain stores are enough.
 *
 * @example
 * ```ts
 * import { SharedStats } from "./shared_stats.ts";
 * const s = new SharedStats();
 * s.ReceivedDataPackets++;
 * s.snapshot().ReceivedDataPackets; // 1
 * ```
 * @module
 */
import type { DropReason } from "../datachannel/channel.ts";
import { newStats, type Stats } from "../datachannel/stats.ts";

const FIELDS = Object.keys(newStats()) as (keyof Stats)[];

/** Drop reasons, in slot order after the counters. */
export const DROP_REASONS: readonly (
  | DropReason
  | "wrong-source"
  | "queue-full"
  | "send-error"
  | "unknown-peer"
  | "no-route"
  | "bad-offload"
  | "bad-source"
  | "kernel-socket"
)[] = [
  "no-key",
  "pktid-limit",
  "too-short",
  "too-long",
  "wrong-peer",
  "unknown-key-id",
  "bad-tag",
  "replay",
  "too-old",
  "expired",
  "zero-pktid",
  "unknown-epoch",
  "wrong-source",
  "queue-full",
  "send-error",
  "unknown-peer", // server mode: a data packet for a peer id that is not there
  "no-route", // server mode: a tun packet whose destination no peer holds
  "bad-offload", // a tun super-packet (IFF_VNET_HDR) that cannot be split or checksummed
  "bad-source", // server mode: an authentic packet whose inner source address is not the sending peer's
  // Linux UDP: datagrams the kernel dropped at the transport socket (SO_MEMINFO): non-data ones longer than a
  // control packet (the socket's filter) and any that found the receive buffer full; set by the main thread
  "kernel-socket",
];
export type AnyDropReason = typeof DROP_REASONS[number];

const LAST_TX = FIELDS.length;
const LAST_RX = LAST_TX + 1;
const SEND_EPOCH = LAST_RX + 1;
const RECV_EPOCH = SEND_EPOCH + 1;
const DROPS = RECV_EPOCH + 1;
/** Tun offload: super-packets read, and the segments they were split into. */
const GSO_SUPER = DROPS + DROP_REASONS.length;
const GSO_SEGMENTS = GSO_SUPER + 1;
/** GRO: super-packets written to the tun, and the received packets joined into them. */
const GRO_SUPER = GSO_SEGMENTS + 1;
const GRO_JOINED = GRO_SUPER + 1;
/** UDP transport offload: UDP_SEGMENT sends and their datagrams; UDP_GRO trains received and theirs. */
const UDP_GSO_SENDS = GRO_JOINED + 1;
const UDP_GSO_DGRAMS = UDP_GSO_SENDS + 1;
const UDP_GRO_RECVS = UDP_GSO_DGRAMS + 1;
const UDP_GRO_DGRAMS = UDP_GRO_RECVS + 1;
const SLOTS = UDP_GRO_DGRAMS + 1;

/** Shared counters with the OVPN_STATS field names as properties. */
export class SharedStats implements Stats {
  readonly buffer: SharedArrayBuffer;
  readonly #f: Float64Array;

  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(SLOTS * 8);
    this.#f = new Float64Array(this.buffer);
  }

  get LostInControlPackets() {
    return this.#f[0];
  }
  set LostInControlPackets(v) {
    this.#f[0] = v;
  }
  get LostOutControlPackets() {
    return this.#f[1];
  }
  set LostOutControlPackets(v) {
    this.#f[1] = v;
  }
  get LostInDataPackets() {
    return this.#f[2];
  }
  set LostInDataPackets(v) {
    this.#f[2] = v;
  }
  get LostOutDataPackets() {
    return this.#f[3];
  }
  set LostOutDataPackets(v) {
    this.#f[3] = v;
  }
  get ReceivedDataPackets() {
    return this.#f[4];
  }
  set ReceivedDataPackets(v) {
    this.#f[4] = v;
  }
  get ReceivedControlPackets() {
    return this.#f[5];
  }
  set ReceivedControlPackets(v) {
    this.#f[5] = v;
  }
  get SentControlPackets() {
    return this.#f[6];
  }
  set SentControlPackets(v) {
    this.#f[6] = v;
  }
  get SentDataPackets() {
    return this.#f[7];
  }
  set SentDataPackets(v) {
    this.#f[7] = v;
  }
  get TransportBytesSent() {
    return this.#f[8];
  }
  set TransportBytesSent(v) {
    this.#f[8] = v;
  }
  get TransportBytesReceived() {
    return this.#f[9];
  }
  set TransportBytesReceived(v) {
    this.#f[9] = v;
  }
  get TunBytesSent() {
    return this.#f[10];
  }
  set TunBytesSent(v) {
    this.#f[10] = v;
  }
  get TunBytesReceived() {
    return this.#f[11];
  }
  set TunBytesReceived(v) {
    this.#f[11] = v;
  }

  /** Milliseconds timestamp of the last packet sent on the transport. */
  get lastTx() {
    return this.#f[LAST_TX];
  }
  set lastTx(v) {
    this.#f[LAST_TX] = v;
  }
  /** Milliseconds timestamp of the last authenticated packet received. */
  get lastRx() {
    return this.#f[LAST_RX];
  }
  set lastRx(v) {
    this.#f[LAST_RX] = v;
  }

  /** Epoch keys: the primary key's send epoch (0: not an epoch key). Written by the sending side. */
  get sendEpoch() {
    return this.#f[SEND_EPOCH];
  }
  set sendEpoch(v) {
    this.#f[SEND_EPOCH] = v;
  }
  /** Epoch keys: the primary key's current receive epoch (0: not an epoch key). Written by the receiving side. */
  get recvEpoch() {
    return this.#f[RECV_EPOCH];
  }
  set recvEpoch(v) {
    this.#f[RECV_EPOCH] = v;
  }

  /** Tun offload: one super-packet split into `segments` packets. */
  countSplit(segments: number): void {
    this.#f[GSO_SUPER]++;
    this.#f[GSO_SEGMENTS] += segments;
  }

  /** GRO totals so far (written by the receive side). */
  setJoined(superPackets: number, packets: number): void {
    this.#f[GRO_SUPER] = superPackets;
    this.#f[GRO_JOINED] = packets;
  }

  /**
   * Tun offload figures (null when nothing was split or joined): super-packets read and the segments they
   * were split into; super-packets written and the received packets joined into them.
   */
  offload(): { superPackets: number; segments: number; joinedSuperPackets: number; joined: number } | null {
    const f = this.#f;
    if (!f[GSO_SUPER] && !f[GRO_SUPER]) return null;
    return {
      superPackets: f[GSO_SUPER],
      segments: f[GSO_SEGMENTS],
      joinedSuperPackets: f[GRO_SUPER],
      joined: f[GRO_JOINED],
    };
  }

  /** UDP_SEGMENT totals so far (written by the sending side). */
  setUdpGso(sends: number, datagrams: number): void {
    this.#f[UDP_GSO_SENDS] = sends;
    this.#f[UDP_GSO_DGRAMS] = datagrams;
  }

  /** One UDP_GRO train of `datagrams` received. */
  countUdpGro(datagrams: number): void {
    this.#f[UDP_GRO_RECVS]++;
    this.#f[UDP_GRO_DGRAMS] += datagrams;
  }

  /**
   * UDP transport offload figures (null when none was used): joined sends (UDP_SEGMENT) and the datagrams
   * they carried; coalesced receives (UDP_GRO) and theirs.
   */
  udpOffload(): { gsoSends: number; gsoDatagrams: number; groReceives: number; groDatagrams: number } | null {
    const f = this.#f;
    if (!f[UDP_GSO_SENDS] && !f[UDP_GRO_RECVS]) return null;
    return {
      gsoSends: f[UDP_GSO_SENDS],
      gsoDatagrams: f[UDP_GSO_DGRAMS],
      groReceives: f[UDP_GRO_RECVS],
      groDatagrams: f[UDP_GRO_DGRAMS],
    };
  }

  /** Count one drop by reason (the lost counter itself is counted by the caller). */
  countDrop(reason: AnyDropReason): void {
    this.#f[DROPS + DROP_REASONS.indexOf(reason)]++;
  }

  /** Set a drop count that another counter keeps (the kernel's socket drops), read by the main thread. */
  setDrop(reason: AnyDropReason, n: number): void {
    this.#f[DROPS + DROP_REASONS.indexOf(reason)] = n;
  }

  /** Drop counts by reason (non-zero only). */
  drops(): Record<string, number> {
    const o: Record<string, number> = {};
    DROP_REASONS.forEach((r, i) => {
      if (this.#f[DROPS + i]) o[r] = this.#f[DROPS + i];
    });
    return o;
  }

  /** A plain copy of the counters. */
  snapshot(): Stats {
    const s = newStats();
    FIELDS.forEach((k, i) => (s[k] = this.#f[i]));
    return s;
  }
}
