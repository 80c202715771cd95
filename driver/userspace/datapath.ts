/**
 * The steps of the data path that every userspace engine takes the same way, whatever does its I/O:
 * the accounting of a packet handed to the transport, and what happens to a packet that arrived from it
 * (control packets leave here; data is opened, replay-checked, MSS-clamped and written to the tun).
 *
 * @example
 * ```ts
 * import { countSend, receive } from "./datapath.ts";
 * // const undo = countSend(stats, wire.length, false); if (!send(wire)) undo();
 * ```
 * @module
 */
import { type DataChannel, RX_DROP, RX_KEEPALIVE } from "../datachannel/channel.ts";
import type { RouteTable } from "../datachannel/routes.ts";
import { HEADROOM, MAX_CONTROL_LEN } from "../datachannel/packet.ts";
import { clampMss } from "../datachannel/mss.ts";
import type { SharedStats } from "./shared_stats.ts";
import { isDataV2, peerIdOf } from "../datachannel/packet.ts";
import { FramingError, type TcpDeframer } from "../datachannel/framing.ts";
import type { EnginePeer, FromEngine } from "./engine_protocol.ts";

/** The time lastTx/lastRx are stamped with: taken once per batch ({@linkcode tick}), not once per packet. */
let now = 0;

/** Read the clock for the packets of the next batch (the engines call it before each pump). */
export function tick(): void {
  now = Date.now();
}

const stamp = () => now || Date.now();

/**
 * Count a packet as sent before it leaves (so that whoever sees it arrive also sees it counted) and
 * return the function that turns it into a lost one when the send fails.
 */
export function countSend(stats: SharedStats, len: number, control: boolean): () => void {
  countSent(stats, len, control);
  return () => countLost(stats, len, control);
}

function countSent(stats: SharedStats, len: number, control: boolean): void {
  if (control) stats.SentControlPackets++;
  else stats.SentDataPackets++;
  stats.TransportBytesSent += len;
  stats.lastTx = stamp();
}

function countLost(stats: SharedStats, len: number, control: boolean): void {
  if (control) {
    stats.SentControlPackets--;
    stats.LostOutControlPackets++;
  } else {
    stats.SentDataPackets--;
    stats.LostOutDataPackets++;
  }
  stats.TransportBytesSent -= len;
  stats.countDrop("send-error");
}

/**
 * The counting of {@linkcode countSend} for data packets of one statistics object, without a closure per packet:
 * `sent(len)` before a packet leaves, `lost(len)` (a LossSink for the UDP batch) when its send failed.
 */
export class SendCount {
  constructor(readonly stats: SharedStats) {}

  sent(len: number): void {
    countSent(this.stats, len, false);
  }

  lost(len: number): void {
    countLost(this.stats, len, false);
  }
}

/** Server mode: the route table and the sending peer, whose addresses a decrypted packet must come from. */
export interface SourceCheck {
  routes: RouteTable;
  peer: number;
}

/** Where a received packet goes. */
export interface ReceiveSinks {
  /** A control packet (a copy), unchanged. */
  control(p: Uint8Array): void;
  /** Write the plaintext at `b[off .. off+len]` to the tun; false when it was dropped. */
  tun(b: Uint8Array, off: number, len: number): boolean;
}

/**
 * Handle one packet from the transport at `b[off .. off+len]` (decrypted in place). Returns true when it
 * was an authentic data packet (a keepalive included): only those may move a server's peer to a new address.
 */
export function receive(
  ch: DataChannel,
  stats: SharedStats,
  mss: number,
  b: Uint8Array,
  off: number,
  len: number,
  sinks: ReceiveSinks,
  source?: SourceCheck,
): boolean {
  if (!isDataV2(b, off, len)) {
    stats.TransportBytesReceived += len;
    stats.ReceivedControlPackets++;
    sinks.control(b.slice(off, off + len));
    return false;
  }
  const r = ch.open(b, off, len);
  if (r === RX_DROP) return false;
  stats.lastRx = stamp();
  if (r === RX_KEEPALIVE) return true;
  const plen = ch.openEnd - r;
  if (plen <= 0) return true;
  if (source && source.routes.lookupSource(b, r, plen) !== source.peer) {
    // authentic, but its inner source is not this peer's (a client spoofing another's address)
    stats.LostInDataPackets++;
    stats.countDrop("bad-source");
    return true;
  }
  if (mss > 0) clampMss(b, r, plen, mss);
  if (sinks.tun(b, r, plen)) stats.TunBytesReceived += plen;
  else {
    stats.LostInDataPackets++;
    stats.countDrop("queue-full");
  }
  return true;
}

/** Whether the sockaddr `a` (length `alen`) is the same family, port and address as `b` (either platform). */
export function sameAddress(a: Uint8Array, alen: number, b: Uint8Array): boolean {
  if (alen !== b.length || a[0] !== b[0] || a[1] !== b[1] || a[2] !== b[2] || a[3] !== b[3]) return false;
  const [from, to] = alen === 28 ? [8, 24] : [4, 8];
  for (let i = from; i < to; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Views of `buf` from an offset, cached (at most `max`, then the cache starts afresh). */
export function viewCache(buf: Uint8Array, max = 4096): (off: number) => Uint8Array {
  const views = new Map<number, Uint8Array>();
  return (off) => {
    let v = views.get(off);
    if (!v) {
      if (views.size >= max) views.clear();
      views.set(off, v = buf.subarray(off));
    }
    return v;
  };
}

/**
 * Server mode, one datagram from `src` (a sockaddr): a control packet goes up to the main thread with its
 * source; a data packet to the peer its peer id names, and once it is authentic a new source moves (floats)
 * the peer there (never with cipher NONE, which anyone can forge). Unknown peer ids are counted and dropped.
 */
export function serverReceive(
  peers: Map<number, EnginePeer>,
  stats: SharedStats,
  buf: Uint8Array,
  off: number,
  len: number,
  src: Uint8Array,
  sinks: ReceiveSinks,
  post: (m: FromEngine) => void,
): void {
  if (!isDataV2(buf, off, len)) {
    stats.TransportBytesReceived += len;
    // unauthenticated input costs nothing: only a peer's address may pass a control packet up, of a sane
    // size, at a bounded rate; everything else is counted and dropped here, in the worker
    if (!peerAt(peers, src)) {
      stats.LostInControlPackets++;
      stats.countDrop("wrong-source");
      return;
    }
    if (admitControl(stats, len)) post({ t: "ctl", bytes: buf.slice(off, off + len), from: src.slice() });
    return;
  }
  const p = len >= 4 ? peers.get(peerIdOf(buf, off)) : undefined;
  if (!p) {
    stats.TransportBytesReceived += len;
    stats.LostInDataPackets++;
    stats.countDrop(len >= 4 ? "unknown-peer" : "too-short");
    return;
  }
  if (
    receive(p.ch, p.stats, p.mss, buf, off, len, sinks, p.source) &&
    p.ch.openAuthentic && !sameAddress(src, src.length, p.sa)
  ) {
    p.sa = src.slice();
    peerAddressesChanged(peers);
    post({ t: "float", peer: p.id, sockaddr: p.sa });
  }
}

/** Control packets a server worker passes up per second at most (a flood beyond it is dropped, counted). */
export const CONTROL_RATE = 1000;
let budget = CONTROL_RATE, budgetAt = 0;

/**
 * Whether a control packet of `len` bytes that may come from a peer goes up to the main thread: of a sane size
 * and within the rate; counted either way (received, or lost as `too-long` / `queue-full`).
 */
export function admitControl(stats: SharedStats, len: number): boolean {
  if (len > MAX_CONTROL_LEN || !controlBudget()) {
    stats.LostInControlPackets++;
    stats.countDrop(len > MAX_CONTROL_LEN ? "too-long" : "queue-full");
    return false;
  }
  stats.ReceivedControlPackets++;
  return true;
}

/** Whether one more control packet may go up now (a token bucket refilled every second). */
function controlBudget(): boolean {
  const t = stamp();
  if (t - budgetAt >= 1000) [budget, budgetAt] = [CONTROL_RATE, t];
  if (budget <= 0) return false;
  budget--;
  return true;
}

/**
 * The relevant bytes of a sockaddr (family, port, address; either platform's layout) as a map key: IPv4 a
 * number (no string built per packet: a flood of strangers' datagrams asks this for each one), IPv6 a string.
 */
function addressKey(sa: Uint8Array): number | string {
  if (sa.length < 24) {
    // a 16-byte sockaddr is AF_INET on both platforms: port · IPv4 address, 48 bits, exact in a double
    return ((sa[2] << 8) | sa[3]) * 4294967296 +
      (((sa[4] << 24) | (sa[5] << 16) | (sa[6] << 8) | sa[7]) >>> 0);
  }
  let k = "";
  for (let i = 0; i < 24; i++) k += String.fromCharCode(sa[i]);
  return k;
}

const addressIndex = new WeakMap<Map<number, EnginePeer>, Map<number | string, EnginePeer>>();

/** The peer whose transport address is `sa`, through an index rebuilt after the peers changed. */
export function peerAt(peers: Map<number, EnginePeer>, sa: Uint8Array): EnginePeer | undefined {
  let ix = addressIndex.get(peers);
  if (!ix) {
    ix = new Map();
    for (const p of peers.values()) ix.set(addressKey(p.sa), p);
    addressIndex.set(peers, ix);
  }
  return ix.get(addressKey(sa));
}

/** A peer was added, deleted or moved: the address index is rebuilt on its next use. */
export function peerAddressesChanged(peers: Map<number, EnginePeer>): void {
  addressIndex.delete(peers);
}

/** How a TCP stream ended: closed by the peer, or broken (`error`). */
export interface StreamEnd {
  error: boolean;
  reason: string;
}

/** A TCP server peer's connection ended: forgotten here (the main thread closes it) and reported. */
export function peerStreamEnded(p: EnginePeer, end: StreamEnd, post: (m: FromEngine) => void): void {
  p.fd = -1;
  post({ t: "peer-closed", peer: p.id, error: end.error, reason: end.reason });
}

/**
 * Up to 8 reads of a TCP stream into its deframer, each whole packet handed to `deliver`. `recv(w)` fills `w`
 * and returns what recv returned (bytes; 0: closed; < 0: nothing more now, or failed); `failure()` tells, after a
 * negative result, why the stream failed (null: nothing waits now). Returns how many packets were delivered and,
 * when the stream ended, how.
 */
export function tcpReceive(
  d: TcpDeframer,
  recv: (w: Uint8Array) => number,
  failure: () => string | null,
  deliver: (b: Uint8Array, off: number, len: number) => void,
): { packets: number; end: StreamEnd | null } {
  let packets = 0;
  for (let round = 0; round < 8; round++) {
    const w = d.writable();
    const n = recv(w);
    if (n === 0) return { packets, end: { error: false, reason: "the peer closed the TCP connection" } };
    if (n < 0) {
      const why = failure();
      return { packets, end: why === null ? null : { error: true, reason: why } };
    }
    try {
      d.commit(n, (b, off, len) => {
        packets++;
        deliver(b, off, len);
      });
    } catch (e) {
      if (!(e instanceof FramingError)) throw e;
      return { packets, end: { error: true, reason: `TCP stream reset: ${e.message}` } };
    }
  }
  return { packets, end: null };
}

/**
 * Server mode, tun → peer: the plaintext of `n` bytes at `buf[HEADROOM]` goes to the peer that holds its
 * destination, MSS-clamped and sealed with that peer's channel. Returns the peer (the sealed packet is
 * `buf[start .. p.ch.sealEnd]`, `start` in `at.start`), or null when no peer holds the destination (counted as
 * `no-route`) or its channel refused to seal (counted by the channel).
 */
export function sealForRoute(
  peers: Map<number, EnginePeer>,
  routes: RouteTable,
  stats: SharedStats,
  buf: Uint8Array,
  n: number,
  at: { start: number },
): EnginePeer | null {
  const p = peers.get(routes.lookup(buf, HEADROOM, n));
  if (!p) {
    stats.LostOutDataPackets++;
    stats.countDrop("no-route");
    return null;
  }
  if (p.mss > 0) clampMss(buf, HEADROOM, n, p.mss);
  at.start = p.ch.seal(buf, n);
  return at.start < 0 ? null : p;
}
