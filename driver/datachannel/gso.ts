/**
 * Linux tun offload (IFF_VNET_HDR): the 10-byte `struct virtio_net_hdr` in front of every packet, the
 * completion of a checksum the kernel left partial (VIRTIO_NET_HDR_F_NEEDS_CSUM), and the split of a TCP
 * super-packet (GSO_TCPV4 / GSO_TCPV6, up to 64 KB) into segments of `gso_size` bytes, each with its own IP
 * length, IPv4 id and header checksum, TCP sequence number and flags (FIN and PSH on the last one only) and
 * TCP checksum — as wireguard-go's tun offload does (tun/offload_linux.go); a UDP one (GSO_UDP_L4, the tun's
 * USO) likewise into datagrams with their own UDP length and checksum. Every DATA_V2 packet then still
 * carries one IP packet no larger than the MTU, so the wire format does not change. The other way,
 * {@linkcode Coalescer} joins received TCP segments (and, with USO, UDP datagrams) of one flow into one write.
 *
 * @example
 * ```ts
 * import { parseVnetHdr, splitSuperPacket } from "./gso.ts";
 * // const h = parseVnetHdr(buf); splitSuperPacket(buf, 10, n - 10, h, (seg) => send(seg));
 * ```
 * @module
 */
import { SpanCache } from "./views.ts";
import { sumLE } from "./csum.ts";

/** sizeof(struct virtio_net_hdr). */
export const VNET_HDR_LEN = 10;
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const GSO_NONE = 0;
export const GSO_TCPV4 = 1;
export const GSO_TCPV6 = 4;
export const GSO_UDP_L4 = 5;
/** Datagrams joined into one GSO_UDP_L4 write at most (the kernel's UDP_MAX_SEGMENTS before Linux 6.9). */
const UDP_MAX_JOIN = 64;

/** A parsed virtio_net_hdr (little-endian fields). */
export interface VnetHdr {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

/** A malformed offload packet (counted and dropped by the caller). */
export class GsoError extends Error {}

export function parseVnetHdr(b: Uint8Array, off = 0, into?: VnetHdr): VnetHdr {
  const h = into ?? { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
  h.flags = b[off];
  h.gsoType = b[off + 1];
  h.hdrLen = b[off + 2] | (b[off + 3] << 8);
  h.gsoSize = b[off + 4] | (b[off + 5] << 8);
  h.csumStart = b[off + 6] | (b[off + 7] << 8);
  h.csumOffset = b[off + 8] | (b[off + 9] << 8);
  return h;
}

/** The plain byte-pair loop of {@linkcode sum16} (short ranges, and the ends of long ones). */
function sumPairs(b: Uint8Array, from: number, to: number, initial: number): number {
  let s = initial;
  let i = from;
  for (; i + 1 < to; i += 2) s += (b[i] << 8) | b[i + 1];
  if (i < to) s += b[i] << 8;
  return s;
}

const swap16 = (x: number) => ((x & 0xff) << 8) | (x >> 8);

/**
 * One's-complement sum (not folded, not inverted) of `b[from .. to]` as big-endian 16-bit words, added to
 * `initial`. Long ranges are summed by {@linkcode sumLE} (WebAssembly SIMD, in place where `b` was made by
 * `wasmBytes`) as little-endian words, whose folded sum is the byte-swapped sum of the pairs (RFC 1071 §2(B)).
 */
export function sum16(b: Uint8Array, from: number, to: number, initial = 0): number {
  if (to - from < 64) return sumPairs(b, from, to, initial);
  return initial + swap16(sumLE(b, from, to));
}

/** Fold a sum to 16 bits. */
export function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** The sum of the TCP/UDP pseudo-header of the IP packet at `p` (v4 or v6) for `l4Len` bytes of protocol `proto`. */
function pseudoSum(b: Uint8Array, p: number, v6: boolean, proto: number, l4Len: number): number {
  const s = v6 ? sum16(b, p + 8, p + 40) : sum16(b, p + 12, p + 20);
  return s + proto + l4Len;
}

/** Set the length of the IP packet at `b[at ..]` to `total` (IPv4: also its id and header checksum). */
function setIpLength(b: Uint8Array, at: number, v6: boolean, ipLen: number, total: number, id: number): void {
  if (v6) {
    const pl = total - 40;
    b[at + 4] = pl >> 8;
    b[at + 5] = pl & 0xff;
    return;
  }
  b[at + 2] = total >> 8;
  b[at + 3] = total & 0xff;
  b[at + 4] = id >> 8;
  b[at + 5] = id & 0xff;
  b[at + 10] = b[at + 11] = 0;
  const c = ~fold(sum16(b, at, at + ipLen)) & 0xffff;
  b[at + 10] = c >> 8;
  b[at + 11] = c & 0xff;
}

/**
 * Complete a partial checksum in place (GSO_NONE with NEEDS_CSUM): the field at csumStart + csumOffset holds
 * the pseudo-header sum; the checksum covers `csumStart` to the end. Offsets are relative to the IP packet at
 * `p`, `len` bytes long.
 */
export function completeChecksum(b: Uint8Array, p: number, len: number, h: VnetHdr): void {
  const at = h.csumStart + h.csumOffset;
  if (h.csumStart >= len || at + 2 > len) throw new GsoError("checksum offsets beyond the packet");
  const initial = (b[p + at] << 8) | b[p + at + 1];
  b[p + at] = b[p + at + 1] = 0;
  // as the kernel's skb_checksum_help: a sum of 0 goes out as 0xffff (for UDP, 0 would mean "no checksum")
  const c = (~fold(sum16(b, p + h.csumStart, p + len, initial)) & 0xffff) || 0xffff;
  b[p + at] = c >> 8;
  b[p + at + 1] = c & 0xff;
}

/**
 * Split the TCP (or UDP) super-packet at `b[p .. p+len]` described by `h` into segments, each written by
 * `out(i, size)` into the buffer `out` returns (the segment's IP packet starts at that buffer's offset `at`).
 * Returns the number of segments. The super-packet's own bytes are not changed.
 */
export function splitSuperPacket(
  b: Uint8Array,
  p: number,
  len: number,
  h: VnetHdr,
  out: (i: number) => { buf: Uint8Array; at: number },
  done: (i: number, size: number) => void,
): number {
  const udp = h.gsoType === GSO_UDP_L4;
  if (!udp && h.gsoType !== GSO_TCPV4 && h.gsoType !== GSO_TCPV6) throw new GsoError(`GSO type ${h.gsoType}`);
  const ver = b[p] >> 4;
  const v6 = udp ? ver === 6 : h.gsoType === GSO_TCPV6;
  if (ver !== (v6 ? 6 : 4)) {
    throw new GsoError(udp ? "not an IP packet" : "the IP version does not match the GSO type");
  }
  const ipLen = h.csumStart;
  if (ipLen < (v6 ? 40 : 20) || len < ipLen + (udp ? 8 : 20)) throw new GsoError("the packet is too short");
  if (!v6 && (b[p] & 0x0f) * 4 !== ipLen) throw new GsoError("the IPv4 header length does not match");
  if (v6 && ipLen !== 40) throw new GsoError("IPv6 extension headers are not split here");
  if (b[p + (v6 ? 6 : 9)] !== (udp ? 17 : 6)) throw new GsoError(udp ? "not UDP" : "not TCP");
  if (h.gsoSize === 0) throw new GsoError("gso_size 0");
  if (udp) {
    return eachSegment(b, p, len, ipLen + 8, ipLen, v6, h.gsoSize, out, done, (o, at, total) => {
      const u = at + ipLen, ul = total - ipLen;
      o[u + 4] = ul >> 8;
      o[u + 5] = ul & 0xff;
      o[u + 6] = o[u + 7] = 0;
      const c = (~fold(sum16(o, u, at + total, pseudoSum(o, at, v6, 17, ul))) & 0xffff) || 0xffff;
      o[u + 6] = c >> 8;
      o[u + 7] = c & 0xff;
    });
  }
  // the kernel's hdr_len may cover a whole first packet on forwarded traffic: take the TCP header's own length
  const tcpLen = (b[p + ipLen + 12] >> 4) * 4;
  if (tcpLen < 20) throw new GsoError("the TCP header is too short");
  const hdrLen = ipLen + tcpLen;
  if (hdrLen > len) throw new GsoError("the headers run past the packet");
  const seq0 =
    ((b[p + ipLen + 4] << 24) | (b[p + ipLen + 5] << 16) | (b[p + ipLen + 6] << 8) | b[p + ipLen + 7]) >>>
    0;
  return eachSegment(b, p, len, hdrLen, ipLen, v6, h.gsoSize, out, done, (o, at, total, i, last) => {
    const t = at + ipLen;
    const seq = (seq0 + i * h.gsoSize) >>> 0;
    o[t + 4] = seq >>> 24;
    o[t + 5] = (seq >> 16) & 0xff;
    o[t + 6] = (seq >> 8) & 0xff;
    o[t + 7] = seq & 0xff;
    if (!last) o[t + 13] &= ~0x09; // FIN (0x01) and PSH (0x08) only on the last segment
    o[t + 16] = o[t + 17] = 0;
    const c = ~fold(sum16(o, t, at + total, pseudoSum(o, at, v6, 6, total - ipLen))) & 0xffff;
    o[t + 16] = c >> 8;
    o[t + 17] = c & 0xff;
  });
}

/**
 * The loop both splits share: the headers and each `gsoSize` slice of the payload into `out(i)`, the IP length
 * and id set (ids run on from the super-packet's), then `l4` finishes the segment's TCP or UDP header.
 */
function eachSegment(
  b: Uint8Array,
  p: number,
  len: number,
  hdrLen: number,
  ipLen: number,
  v6: boolean,
  gsoSize: number,
  out: (i: number) => { buf: Uint8Array; at: number },
  done: (i: number, size: number) => void,
  l4: (o: Uint8Array, at: number, total: number, i: number, last: boolean) => void,
): number {
  const id0 = (b[p + 4] << 8) | b[p + 5];
  const headers = b.subarray(p, p + hdrLen);
  let data = hdrLen, i = 0;
  do {
    const end = Math.min(data + gsoSize, len), total = hdrLen + end - data;
    const { buf: o, at } = out(i);
    o.set(headers, at);
    o.set(spans.view(b, p + data, p + end), at + hdrLen);
    setIpLength(o, at, v6, ipLen, total, (id0 + i) & 0xffff);
    l4(o, at, total, i, end === len);
    done(i, total);
    data = end;
    i++;
  } while (data < len);
  return i;
}

/** The views the split and the coalescer copy from (one per thread: the buffers are the engine's). */
const spans = new SpanCache();

/** What the coalescer knows of a packet it may join: protocol (6 TCP, 17 UDP), IP version and header lengths. */
interface JoinInfo {
  proto: number;
  v6: boolean;
  ipLen: number;
  hdrLen: number;
}

/** Whether the 4 (2) bytes at `i` of the headers at a[ao ..] and b[bo ..] are the same. */
function same32(a: DataView, ao: number, b: DataView, bo: number, i: number): boolean {
  return a.getUint32(ao + i) === b.getUint32(bo + i);
}
function same16(a: DataView, ao: number, b: DataView, bo: number, i: number): boolean {
  return a.getUint16(ao + i) === b.getUint16(bo + i);
}

/**
 * Receive-side coalescing (GRO) for a tun with offload: consecutive in-order TCP segments of one flow, each with
 * a valid checksum, only ACK (PSH on the last) among their flags, the same headers otherwise and all but the
 * last of one size, are joined into one super-packet written with a GSO virtio_net_hdr (NEEDS_CSUM, the TCP
 * checksum field holding the pseudo-header sum, as the kernel expects). With `udp` (the kernel took USO4/USO6),
 * consecutive UDP datagrams of one flow with valid checksums, the same IP header but for length, id and checksum
 * (IPv4 ids consecutive) and all but the last of one size are joined alike (GSO_UDP_L4), at most 64; the
 * kernel hands them to the receiving socket one by one again. Anything else goes out alone with a zero header.
 * `write(buf, len)` gets `buf[0 .. len]` = header + IP packet; it returns false when the tun refused it.
 */
export class Coalescer {
  readonly #buf = new Uint8Array(VNET_HDR_LEN + 65535);
  readonly #hv = new DataView(this.#buf.buffer);
  // a DataView of the buffer packets last came from (a receive batch's: one for all its packets)
  #bv: DataView = this.#hv;
  #bvOf: Uint8Array = this.#buf;
  #len = 0; // IP bytes held (0: nothing)
  #count = 0;
  #bytes = 0; // the joined packets' own lengths
  #v6 = false;
  #ipLen = 0;
  #hdrLen = 0;
  #segSize = 0;
  #lastSize = 0;
  #nextSeq = 0;
  #proto = 6;
  #closed = false; // PSH seen: nothing may follow
  /** Segments written so far as parts of super-packets, and the super-packets. */
  joined = 0;
  supers = 0;

  constructor(
    readonly write: (buf: Uint8Array, len: number) => boolean,
    readonly lost: (packets: number, bytes: number) => void,
    readonly opts: { udp?: boolean } = {},
  ) {}

  /** Take the IP packet at `b[off .. off+len]` (copied or written now). */
  push(b: Uint8Array, off: number, len: number): void {
    const t = this.#info(b, off, len);
    if (t && this.#count > 0 && this.#fits(b, off, len, t)) {
      this.#append(b, off, len, t);
      return;
    }
    this.flush();
    if (t) this.#start(b, off, len, t);
    else this.#writeAlone(b, off, len);
  }

  /** Write what is held (at the end of a batch). */
  flush(): void {
    if (this.#count === 0) return;
    const n = this.#count, len = this.#len, bytes = this.#bytes, o = VNET_HDR_LEN, buf = this.#buf;
    this.#count = 0;
    this.#len = 0;
    buf.fill(0, 0, VNET_HDR_LEN);
    if (n > 1) {
      const ipLen = this.#ipLen, udp = this.#proto === 17;
      setIpLength(buf, o, this.#v6, ipLen, len, (buf[o + 4] << 8) | buf[o + 5]);
      const ps = fold(pseudoSum(buf, o, this.#v6, this.#proto, len - ipLen));
      const at = o + ipLen + (udp ? 6 : 16);
      if (udp) {
        buf[o + ipLen + 4] = (len - ipLen) >> 8;
        buf[o + ipLen + 5] = (len - ipLen) & 0xff;
      }
      buf[at] = ps >> 8;
      buf[at + 1] = ps & 0xff;
      buf[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
      buf[1] = udp ? GSO_UDP_L4 : this.#v6 ? GSO_TCPV6 : GSO_TCPV4;
      buf[2] = this.#hdrLen & 0xff;
      buf[3] = this.#hdrLen >> 8;
      buf[4] = this.#segSize & 0xff;
      buf[5] = this.#segSize >> 8;
      buf[6] = ipLen & 0xff;
      buf[7] = ipLen >> 8;
      buf[8] = udp ? 6 : 16;
      this.joined += n;
      this.supers++;
    }
    if (!this.write(buf, VNET_HDR_LEN + len)) this.lost(n, bytes);
  }

  /** The one JoinInfo of this coalescer, filled per packet (push uses it before the next). */
  #t: JoinInfo = { proto: 0, v6: false, ipLen: 0, hdrLen: 0 };
  #joinInfo(proto: number, v6: boolean, ipLen: number, hdrLen: number): JoinInfo {
    const t = this.#t;
    t.proto = proto;
    t.v6 = v6;
    t.ipLen = ipLen;
    t.hdrLen = hdrLen;
    return t;
  }

  /** A TCP segment (or UDP datagram) that may be joined: its protocol and header lengths; else null. */
  #info(b: Uint8Array, off: number, len: number): JoinInfo | null {
    const ver = b[off] >> 4;
    let ipLen: number, proto: number;
    if (ver === 4) {
      ipLen = (b[off] & 0x0f) * 4;
      proto = b[off + 9];
      if (ipLen < 20 || ((b[off + 6] & 0x3f) | b[off + 7]) !== 0) return null; // unfragmented
      if (((b[off + 2] << 8) | b[off + 3]) !== len) return null;
      if (fold(sum16(b, off, off + ipLen)) !== 0xffff) return null; // a bad header checksum stays as it came
    } else if (ver === 6) {
      ipLen = 40;
      proto = b[off + 6];
      if (((b[off + 4] << 8) | b[off + 5]) !== len - 40) return null;
    } else return null;
    if (proto === 17 && this.opts.udp) return this.#udpInfo(b, off, len, ver === 6, ipLen);
    if (proto !== 6 || len < ipLen + 20) return null;
    const hdrLen = ipLen + (b[off + ipLen + 12] >> 4) * 4;
    if (hdrLen - ipLen < 20 || hdrLen >= len) return null; // no payload: not joined
    if ((b[off + ipLen + 13] & ~0x08) !== 0x10) return null; // ACK, maybe PSH; nothing else
    // only segments whose checksum holds are joined (the kernel will trust the super-packet's)
    if (fold(sum16(b, off + ipLen, off + len, pseudoSum(b, off, ver === 6, 6, len - ipLen))) !== 0xffff) {
      return null;
    }
    return this.#joinInfo(6, ver === 6, ipLen, hdrLen);
  }

  /** A UDP datagram with a payload, its UDP length right and its checksum present and valid. */
  #udpInfo(b: Uint8Array, off: number, len: number, v6: boolean, ipLen: number): JoinInfo | null {
    const u = off + ipLen;
    if (len <= ipLen + 8 || ((b[u + 4] << 8) | b[u + 5]) !== len - ipLen) return null;
    if ((b[u + 6] | b[u + 7]) === 0) return null; // IPv4 without a checksum: written as it came
    if (fold(sum16(b, u, off + len, pseudoSum(b, off, v6, 17, len - ipLen))) !== 0xffff) return null;
    return this.#joinInfo(17, v6, ipLen, ipLen + 8);
  }

  #fits(b: Uint8Array, off: number, len: number, t: JoinInfo): boolean {
    if (
      this.#closed || t.proto !== this.#proto || t.v6 !== this.#v6 || t.ipLen !== this.#ipLen ||
      t.hdrLen !== this.#hdrLen
    ) {
      return false;
    }
    const size = len - t.hdrLen;
    if (size > this.#segSize || this.#lastSize !== this.#segSize || this.#len + size > 65535) return false;
    if (t.proto === 17 && this.#count >= UDP_MAX_JOIN) return false;
    if (b !== this.#bvOf) {
      this.#bvOf = b;
      this.#bv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    }
    // the held packet's headers at hv[h ..], the new one's at bv[off ..]; compared 4 bytes at a time
    const hv = this.#hv, bv = this.#bv, h = VNET_HDR_LEN, ip = t.ipLen;
    // the IP header: everything but the lengths, id and checksum
    if (t.v6) {
      // version, class, flow label | next header, hop limit | addresses
      if (!same32(hv, h, bv, off, 0) || !same16(hv, h, bv, off, 6)) return false;
      for (let i = 8; i < 40; i += 4) if (!same32(hv, h, bv, off, i)) return false;
    } else {
      // version, TOS | fragment field, TTL, protocol | addresses and options (ipLen: a multiple of 4)
      if (!same16(hv, h, bv, off, 0) || !same32(hv, h, bv, off, 6)) return false;
      for (let i = 12; i < ip; i += 4) if (!same32(hv, h, bv, off, i)) return false;
      // consecutive ids, as the kernel's own split of the super-packet will write them
      if (bv.getUint16(off + 4) !== ((hv.getUint16(h + 4) + this.#count) & 0xffff)) return false;
    }
    // UDP: the ports (length and checksum are per datagram)
    if (t.proto === 17) return same32(hv, h, bv, off, ip);
    // the TCP header: everything but the sequence number, PSH and the checksum — ports | ack | offset,
    // flags but PSH, window | urgent pointer | options (hdrLen - ip: a multiple of 4)
    if (!same32(hv, h, bv, off, ip) || !same32(hv, h, bv, off, ip + 8) || !same16(hv, h, bv, off, ip + 18)) {
      return false;
    }
    if ((hv.getUint32(h + ip + 12) | 0x80000) !== (bv.getUint32(off + ip + 12) | 0x80000)) return false;
    for (let i = ip + 20; i < t.hdrLen; i += 4) if (!same32(hv, h, bv, off, i)) return false;
    return bv.getUint32(off + ip + 4) === this.#nextSeq;
  }

  #start(b: Uint8Array, off: number, len: number, t: JoinInfo) {
    this.#buf.set(spans.view(b, off, off + len), VNET_HDR_LEN);
    this.#len = len;
    this.#bytes = len;
    this.#count = 1;
    this.#proto = t.proto;
    this.#v6 = t.v6;
    this.#ipLen = t.ipLen;
    this.#hdrLen = t.hdrLen;
    this.#segSize = this.#lastSize = len - t.hdrLen;
    this.#closed = false;
    if (t.proto === 17) return;
    const ip = t.ipLen;
    const seq =
      ((b[off + ip + 4] << 24) | (b[off + ip + 5] << 16) | (b[off + ip + 6] << 8) | b[off + ip + 7]) >>> 0;
    this.#nextSeq = (seq + this.#segSize) >>> 0;
    this.#closed = (b[off + ip + 13] & 0x08) !== 0;
  }

  #append(b: Uint8Array, off: number, len: number, t: JoinInfo) {
    const size = len - t.hdrLen;
    this.#buf.set(spans.view(b, off + t.hdrLen, off + len), VNET_HDR_LEN + this.#len);
    this.#len += size;
    this.#bytes += len;
    this.#count++;
    this.#lastSize = size;
    if (t.proto === 17) return;
    this.#nextSeq = (this.#nextSeq + size) >>> 0;
    if (b[off + t.ipLen + 13] & 0x08) {
      this.#buf[VNET_HDR_LEN + t.ipLen + 13] |= 0x08; // PSH ends the super-packet
      this.#closed = true;
    }
  }

  #writeAlone(b: Uint8Array, off: number, len: number) {
    this.#buf.fill(0, 0, VNET_HDR_LEN);
    this.#buf.set(spans.view(b, off, off + len), VNET_HDR_LEN);
    if (!this.write(this.#buf, VNET_HDR_LEN + len)) this.lost(1, len);
  }
}
