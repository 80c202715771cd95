/**
 * Batches of UDP datagrams for `recvmmsg(2)` / `sendmmsg(2)` (Linux, LP64): `n` slots of `size` bytes in one
 * buffer, each with its iovec, address and `struct mmsghdr`, all allocated once. One system call then moves up
 * to `n` datagrams instead of one.
 *
 * Layouts (x86_64 and aarch64 alike): `struct msghdr` is 56 bytes — msg_name 0, msg_namelen 8, msg_iov 16,
 * msg_iovlen 24, msg_control 32, msg_controllen 40, msg_flags 48 — and `struct mmsghdr` adds msg_len at 56,
 * 64 bytes in all; `struct iovec` is 16 bytes (iov_base, iov_len).
 *
 * @example
 * ```ts
 * import { MsgBatch } from "./mmsg.ts";
 * const rx = new MsgBatch(64, 2048);
 * // rx.prepareRecv(); const got = libc().symbols.recvmmsg(fd, rx.hdrs, 64, MSG_DONTWAIT, null);
 * ```
 * @module
 */

const MMSGHDR = 64;
const IOVEC = 16;
/** Room for a sockaddr_in6 (the largest address a UDP socket reports here). */
export const NAME_LEN = 28;

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

  constructor(readonly n: number, readonly size: number) {
    this.data = new Uint8Array(n * size);
    this.names = new Uint8Array(n * NAME_LEN);
    this.hdrs = new Uint8Array(n * MMSGHDR);
    this.#iovs = new Uint8Array(n * IOVEC);
    this.#hv = new DataView(this.hdrs.buffer);
    this.#iv = new DataView(this.#iovs.buffer);
    this.#dataBase = addr(this.data);
    const names = addr(this.names), iovs = addr(this.#iovs);
    for (let i = 0; i < n; i++) {
      const h = i * MMSGHDR;
      this.#hv.setBigUint64(h, names + BigInt(i * NAME_LEN), true);
      this.#hv.setUint32(h + 8, NAME_LEN, true);
      this.#hv.setBigUint64(h + 16, iovs + BigInt(i * IOVEC), true);
      this.#hv.setBigUint64(h + 24, 1n, true);
      this.#iv.setBigUint64(i * IOVEC, this.#dataBase + BigInt(i * size), true);
      this.#iv.setBigUint64(i * IOVEC + 8, BigInt(size), true);
    }
    this.#hdrViews = Array.from({ length: n }, (_, i) => this.hdrs.subarray(i * MMSGHDR));
  }

  /** Before recvmmsg: every slot takes a whole datagram and any address. */
  prepareRecv(): void {
    for (let i = 0; i < this.n; i++) {
      this.#hv.setUint32(i * MMSGHDR + 8, NAME_LEN, true);
      this.#iv.setBigUint64(i * IOVEC, this.#dataBase + BigInt(i * this.size), true);
      this.#iv.setBigUint64(i * IOVEC + 8, BigInt(this.size), true);
    }
  }

  /** After recvmmsg: the length of slot `i`'s datagram. */
  received(i: number): number {
    return this.#hv.getUint32(i * MMSGHDR + 56, true);
  }

  /** After recvmmsg: the length of slot `i`'s source address. */
  nameLen(i: number): number {
    return this.#hv.getUint32(i * MMSGHDR + 8, true);
  }

  /** Every slot sends to `to` (a sockaddr) from now on. */
  sendTo(to: Uint8Array): void {
    for (let i = 0; i < this.n; i++) {
      this.names.set(to, i * NAME_LEN);
      this.#hv.setUint32(i * MMSGHDR + 8, to.length, true);
    }
  }

  /** Slot `i` sends `len` bytes from its offset `off`. */
  setSend(i: number, off: number, len: number): void {
    this.#iv.setBigUint64(i * IOVEC, this.#dataBase + BigInt(i * this.size + off), true);
    this.#iv.setBigUint64(i * IOVEC + 8, BigInt(len), true);
  }

  /** The header array from slot `i` on (to resume after a partial sendmmsg). */
  hdrsFrom(i: number): Uint8Array {
    return this.#hdrViews[i];
  }
}
