/**
 * Batches of UDP datagrams for `recvmmsg(2)` / `sendmmsg(2)` (Linux, LP64): `n` slots of `size` bytes in one
 * buffer, each with its iovec, address and `struct mmsghdr`, all allocated once. One system call then moves up
 * to `n` datagrams instead of one.
 *
 * Layouts (x86_64 and aarch64 alike): `struct msghdr` is 56 bytes — msg_name 0, msg_namelen 8, msg_iov 16,
 * msg_iovlen 24, msg_control 32, msg_controllen 40, msg_flags 48 — and `struct mmsghdr` adds msg_len at 56,
 * 64 bytes in all; `struct iovec` is 16 bytes (iov_base, iov_len); `struct cmsghdr` is cmsg_len (size_t) 0,
 * cmsg_level 8, cmsg_type 12, data from 16, and CMSG_SPACE rounds to 8 bytes.
 *
 * UDP offload (udp(7)): {@linkcode UdpBatchTx} joins runs of equal-sized datagrams to one address into one
 * message with a UDP_SEGMENT control message (one skb through the stack for up to 64 datagrams; each still
 * leaves as its own datagram on the wire); a receive batch made with `{ gro: true }` takes the kernel's coalesced
 * datagrams (UDP_GRO) and {@linkcode MsgBatch.groSize} tells where to cut them.
 *
 * @example
 * ```ts
 * import { MsgBatch } from "./mmsg.ts";
 * const rx = new MsgBatch(64, 2048);
 * // const got = rx.receive((hdrs, n) => libc().symbols.recvmmsg(fd, hdrs, n, MSG_DONTWAIT, null));
 * ```
 * @module
 */

import { wasmBytes } from "../datachannel/csum.ts";
import { EINTR, EINVAL, EIO, EMSGSIZE, errno, SOL_UDP, UDP_GRO, UDP_SEGMENT } from "../../ffi/libc.ts";

const MMSGHDR = 64;
const IOVEC = 16;
/** Room for a sockaddr_in6 (the largest address a UDP socket reports here). */
export const NAME_LEN = 28;
/** Control bytes per slot: one cmsghdr with an int (UDP_GRO) or a u16 (UDP_SEGMENT), CMSG_SPACE = 24. */
const CTL_LEN = 24;
const CTL_LEN_BIG = BigInt(CTL_LEN);
/** The kernel's limit of datagrams per UDP_SEGMENT send (UDP_MAX_SEGMENTS is 64 before Linux 6.9). */
const GSO_MAX_SEGMENTS = 64;
/** Payload bytes one UDP_SEGMENT send may carry (an IPv4 datagram's 65535 less the IP and UDP headers). */
const GSO_MAX_BYTES = 65535 - 20 - 8;

const addr = (b: Uint8Array) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));

/** `n` datagram slots with their headers. */
export class MsgBatch {
  /** Every slot's bytes: slot `i` is `data[i * size .. (i + 1) * size]`. */
  readonly data: Uint8Array;
  /** Every slot's address (NAME_LEN bytes each). */
  readonly names: Uint8Array;
  /** The `struct mmsghdr` array handed to the kernel. */
  readonly hdrs: Uint8Array;
  readonly #iovs: Uint8Array;
  readonly #hv: DataView;
  readonly #iv: DataView;
  readonly #dataBase: bigint;
  readonly #hdrViews: Uint8Array[];
  /** Control messages, CTL_LEN bytes per slot (receive with GRO; UDP_SEGMENT of send groups). */
  readonly ctl: Uint8Array;
  readonly #cv: DataView;
  readonly #gro: boolean;
  readonly #namesBase: bigint;
  readonly #iovsBase: bigint;
  /** A send changed slots' iovecs (receives need them whole again). */
  #iovsChanged = false;
  /** The slots whose address and control lengths the last recvmmsg changed (all, before the first). */
  #filled: number;

  /** `gro`: each receive slot also takes a control message (the UDP_GRO segment size). */
  constructor(readonly n: number, readonly size: number, opts: { gro?: boolean } = {}) {
    this.data = wasmBytes(n * size); // the checksums of the segments in it are summed in place
    this.names = new Uint8Array(n * NAME_LEN);
    this.hdrs = new Uint8Array(n * MMSGHDR);
    this.#iovs = new Uint8Array(n * IOVEC);
    this.ctl = new Uint8Array(n * CTL_LEN);
    this.#hv = new DataView(this.hdrs.buffer);
    this.#iv = new DataView(this.#iovs.buffer);
    this.#cv = new DataView(this.ctl.buffer);
    this.#gro = !!opts.gro;
    this.#filled = n;
    this.#dataBase = addr(this.data);
    const names = this.#namesBase = addr(this.names), iovs = this.#iovsBase = addr(this.#iovs);
    const ctl = addr(this.ctl);
    for (let i = 0; i < n; i++) {
      const h = i * MMSGHDR;
      this.#hv.setBigUint64(h, names + BigInt(i * NAME_LEN), true);
      this.#hv.setUint32(h + 8, NAME_LEN, true);
      this.#hv.setBigUint64(h + 16, iovs + BigInt(i * IOVEC), true);
      this.#hv.setBigUint64(h + 24, 1n, true);
      if (this.#gro) this.#hv.setBigUint64(h + 32, ctl + BigInt(i * CTL_LEN), true);
      this.#iv.setBigUint64(i * IOVEC, this.#dataBase + BigInt(i * size), true);
      this.#iv.setBigUint64(i * IOVEC + 8, BigInt(size), true);
    }
    this.#hdrViews = Array.from({ length: n }, (_, i) => this.hdrs.subarray(i * MMSGHDR));
  }

  /**
   * One recvmmsg(2) into the first `max` slots, made by `recvmmsg(hdrs, max)`; returns what it returned (< 0:
   * errno tells why). Every slot takes a whole datagram (or a GRO train of them) and any address: recvmmsg
   * changes only the address and control lengths of the slots it filled, so only those of the last call's are
   * set again (all of them after a failed call, and every iovec after a send changed some).
   */
  receive(recvmmsg: (hdrs: Uint8Array, max: number) => number, max = this.n): number {
    const hv = this.#hv, filled = this.#filled;
    for (let i = 0; i < filled; i++) {
      hv.setUint32(i * MMSGHDR + 8, NAME_LEN, true);
      if (this.#gro) hv.setBigUint64(i * MMSGHDR + 40, CTL_LEN_BIG, true);
    }
    if (this.#iovsChanged) {
      this.#iovsChanged = false;
      for (let i = 0; i < this.n; i++) {
        this.#iv.setBigUint64(i * IOVEC, this.#dataBase + BigInt(i * this.size), true);
        this.#iv.setBigUint64(i * IOVEC + 8, BigInt(this.size), true);
      }
    }
    const got = recvmmsg(this.hdrs, max);
    this.#filled = got < 0 ? this.n : Math.min(got, this.n);
    return got;
  }

  /**
   * After recvmmsg on a `gro` batch: the size of the datagrams slot `i` holds back to back (the UDP_GRO
   * control message; the last may be shorter), or 0 when it holds one datagram.
   */
  groSize(i: number): number {
    if (!this.#gro) return 0;
    const len = Number(this.#hv.getBigUint64(i * MMSGHDR + 40, true));
    const c = i * CTL_LEN;
    if (len < 20 || Number(this.#cv.getBigUint64(c, true)) < 18) return 0;
    if (this.#cv.getInt32(c + 8, true) !== SOL_UDP || this.#cv.getInt32(c + 12, true) !== UDP_GRO) return 0;
    return this.#cv.getInt32(c + 16, true);
  }

  /** Slot `i` sends to `to` (a sockaddr). */
  setName(i: number, to: Uint8Array): void {
    this.names.set(to, i * NAME_LEN);
    this.#hv.setUint32(i * MMSGHDR + 8, to.length, true);
  }

  /** Slot `i`'s iovec, for a message that gathers slots `i..`. */
  iovAddr(i: number): bigint {
    return this.#iovsBase + BigInt(i * IOVEC);
  }

  /** Slot `i`'s address, as the kernel reads it. */
  nameAddr(i: number): bigint {
    return this.#namesBase + BigInt(i * NAME_LEN);
  }

  /** After recvmmsg: the length of slot `i`'s datagram. */
  received(i: number): number {
    return this.#hv.getUint32(i * MMSGHDR + 56, true);
  }

  /** After recvmmsg: the length of slot `i`'s source address. */
  nameLen(i: number): number {
    return this.#hv.getUint32(i * MMSGHDR + 8, true);
  }

  /** Slot `i` sends `len` bytes from its offset `off`. */
  setSend(i: number, off: number, len: number): void {
    this.#iovsChanged = true;
    this.#iv.setBigUint64(i * IOVEC, this.#dataBase + BigInt(i * this.size + off), true);
    this.#iv.setBigUint64(i * IOVEC + 8, BigInt(len), true);
  }

  /** The header array from slot `i` on (to resume after a partial sendmmsg). */
  hdrsFrom(i: number): Uint8Array {
    return this.#hdrViews[i];
  }
}

/** Enable UDP_GRO on a UDP socket; false where the kernel does not have it. */
export function enableUdpGro(
  setsockopt: (fd: number, level: number, name: number, v: Uint8Array, len: number) => number,
  fd: number,
): boolean {
  return setsockopt(fd, SOL_UDP, UDP_GRO, new Uint8Array(new Int32Array([1]).buffer), 4) === 0;
}

/** The libc calls UdpBatchTx makes (a subset of ffi/libc.ts's symbols). */
export interface SendLib {
  sendmmsg(fd: number, hdrs: Uint8Array, n: number, flags: number): number;
}

/** Told of a queued datagram the kernel refused (with its length). */
export interface LossSink {
  lost(len: number): void;
}

/**
 * Sealed datagrams in slots, sent with one sendmmsg per batch; with `gso`, runs of datagrams of one size to
 * one address (the last of a run may be shorter) go as one message with UDP_SEGMENT. Where the kernel refuses
 * a joined message (EIO: no checksum offload on the route's device, then GSO is off for good; EINVAL/EMSGSIZE:
 * larger than the path allows, then runs of that size are no longer joined), its datagrams are sent one by one
 * instead. A datagram the kernel refuses (e.g. ECONNREFUSED after an ICMP error) is counted lost; the rest go
 * on.
 */
export class UdpBatchTx {
  readonly mb: MsgBatch;
  /** Slot `i`'s bytes (a datagram is placed anywhere inside and named with {@linkcode add}). */
  readonly bufs: Uint8Array[];
  /** Datagrams queued. */
  filled = 0;
  /** Joined sends so far, and the datagrams they carried. */
  gsoSends = 0;
  gsoDatagrams = 0;
  #gso: boolean;
  /** Runs of datagrams this large or larger are not joined (the path refused one). */
  #gsoLimit = Infinity;
  readonly #len: Int32Array;
  readonly #to: (Uint8Array | null)[];
  readonly #lost: (LossSink | null)[];
  readonly #gh: Uint8Array;
  readonly #gv: DataView;
  readonly #ghViews: Uint8Array[];
  readonly #gStart: Int32Array;
  readonly #gCount: Int32Array;
  readonly #ctlBase: bigint;
  readonly #onGsoOff?: (why: string) => void;
  readonly #errno: () => number;

  constructor(
    readonly L: SendLib,
    readonly sock: number,
    readonly n: number,
    readonly slot: number,
    opts: { gso: boolean; onGsoOff?: (why: string) => void; errno?: () => number },
  ) {
    this.#errno = opts.errno ?? errno;
    this.mb = new MsgBatch(n, slot);
    this.bufs = Array.from({ length: n }, (_, i) => this.mb.data.subarray(i * slot, (i + 1) * slot));
    this.#gso = opts.gso;
    this.#onGsoOff = opts.onGsoOff;
    this.#len = new Int32Array(n);
    this.#to = new Array(n).fill(null);
    this.#lost = new Array(n).fill(null);
    this.#gh = new Uint8Array(n * MMSGHDR);
    this.#gv = new DataView(this.#gh.buffer);
    this.#ghViews = Array.from({ length: n }, (_, i) => this.#gh.subarray(i * MMSGHDR));
    this.#gStart = new Int32Array(n);
    this.#gCount = new Int32Array(n);
    this.#ctlBase = addr(this.mb.ctl);
    const cv = new DataView(this.mb.ctl.buffer);
    for (let i = 0; i < n; i++) {
      cv.setBigUint64(i * CTL_LEN, 18n, true); // CMSG_LEN(sizeof(uint16_t))
      cv.setInt32(i * CTL_LEN + 8, SOL_UDP, true);
      cv.setInt32(i * CTL_LEN + 12, UDP_SEGMENT, true);
    }
  }

  /** Whether runs are still joined. */
  get gso(): boolean {
    return this.#gso;
  }

  /**
   * Queue the datagram at `bufs[filled][start .. start + len]` for `to` (a sockaddr; runs are joined only
   * for the same array). `lost.lost(len)` is called if the kernel refuses it (an object, so that the caller
   * makes no closure per packet). Returns true when the batch is full.
   */
  add(start: number, len: number, to: Uint8Array, lost: LossSink): boolean {
    const i = this.filled;
    if (this.#to[i] !== to) {
      this.mb.setName(i, to);
      this.#to[i] = to;
    }
    this.mb.setSend(i, start, len);
    this.#len[i] = len;
    this.#lost[i] = lost;
    return ++this.filled === this.n;
  }

  /** Send everything queued. */
  flush(): void {
    const count = this.filled;
    this.filled = 0;
    if (count === 0) return;
    if (!this.#gso) return this.#plain(0, count);
    const groups = this.#group(count);
    let g = 0;
    while (g < groups) {
      const r = this.L.sendmmsg(this.sock, this.#ghViews[g], groups - g, 0);
      if (r > 0) {
        for (let k = g; k < g + r; k++) {
          if (this.#gCount[k] > 1) {
            this.gsoSends++;
            this.gsoDatagrams += this.#gCount[k];
          }
        }
        g += r;
        continue;
      }
      const e = this.#errno();
      if (e === EINTR) continue;
      const s = this.#gStart[g], k = this.#gCount[g];
      if (k > 1 && (e === EIO || e === EINVAL || e === EMSGSIZE)) {
        if (e === EIO) {
          this.#gso = false;
          this.#onGsoOff?.("the kernel refused UDP segmentation offload (no checksum offload on the route)");
        } else this.#gsoLimit = Math.min(this.#gsoLimit, this.#len[s]);
        this.#plain(s, s + k);
      } else for (let j = s; j < s + k; j++) this.#lost[j]!.lost(this.#len[j]);
      g++;
    }
  }

  /** Slots [from, to) with one message each. */
  #plain(from: number, to: number): void {
    let i = from;
    while (i < to) {
      const r = this.L.sendmmsg(this.sock, this.mb.hdrsFrom(i), to - i, 0);
      if (r > 0) {
        i += r;
        continue;
      }
      if (r < 0 && this.#errno() === EINTR) continue;
      this.#lost[i]!.lost(this.#len[i]); // the kernel refused this one: the rest go on
      i++;
    }
  }

  /** Join slots [0, count) into runs (one message each, in #gh); returns how many. */
  #group(count: number): number {
    const gv = this.#gv, len = this.#len, to = this.#to;
    let groups = 0, i = 0;
    while (i < count) {
      const size = len[i];
      let k = 1, bytes = size;
      if (size < this.#gsoLimit) {
        while (
          i + k < count && to[i + k] === to[i] && len[i + k] <= size && k < GSO_MAX_SEGMENTS &&
          bytes + len[i + k] <= GSO_MAX_BYTES
        ) {
          bytes += len[i + k];
          k++;
          if (len[i + k - 1] < size) break; // a shorter one ends the run
        }
      }
      const h = groups * MMSGHDR;
      gv.setBigUint64(h, this.mb.nameAddr(i), true);
      gv.setUint32(h + 8, to[i]!.length, true);
      gv.setBigUint64(h + 16, this.mb.iovAddr(i), true);
      gv.setBigUint64(h + 24, BigInt(k), true);
      if (k > 1) {
        const c = groups * CTL_LEN;
        this.mb.ctl[c + 16] = size & 0xff;
        this.mb.ctl[c + 17] = size >> 8;
        gv.setBigUint64(h + 32, this.#ctlBase + BigInt(c), true);
        gv.setBigUint64(h + 40, BigInt(CTL_LEN), true);
      } else {
        gv.setBigUint64(h + 32, 0n, true);
        gv.setBigUint64(h + 40, 0n, true);
      }
      this.#gStart[groups] = i;
      this.#gCount[groups] = k;
      groups++;
      i += k;
    }
    return groups;
  }
}
