/**
 * TCP stream framing of OpenVPN: each packet is prefixed by a 2-byte big-endian length. The reader
 * reassembles packets across reads; a length of 0 or larger than the buffer is a protocol error that
 * resets the connection.
 *
 * @example
 * ```ts
 * import { TcpDeframer } from "./framing.ts";
 * const d = new TcpDeframer();
 * d.writable().set([0, 2, 0xaa, 0xbb]);
 * d.commit(4, (buf, off, len) => console.log(len)); // 2
 * ```
 * @module
 */
import { MAX_WIRE_LEN } from "./packet.ts";

/** Thrown when the stream carries a length of 0 or one larger than the buffer. */
export class FramingError extends Error {}

/** Reassembles length-prefixed packets from a byte stream, in one reused buffer. */
export class TcpDeframer {
  readonly maxPacket: number;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;

  constructor(maxPacket = MAX_WIRE_LEN) {
    this.maxPacket = maxPacket;
    this.#buf = new Uint8Array(Math.max(64 * 1024, 4 * (maxPacket + 2)));
  }

  /** Free space to read into; call `commit` with the count read. */
  writable(): Uint8Array {
    if (this.#start > 0 && (this.#end === this.#start || this.#buf.length - this.#end < this.maxPacket + 2)) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    return this.#buf.subarray(this.#end);
  }

  /**
   * Account for `n` new bytes and call `onPacket(buf, off, len)` for each whole packet (the view is
   * valid only during the call). Throws FramingError on a bad length.
   */
  commit(n: number, onPacket: (buf: Uint8Array, off: number, len: number) => void): void {
    this.#end += n;
    const b = this.#buf;
    while (this.#end - this.#start >= 2) {
      const len = (b[this.#start] << 8) | b[this.#start + 1];
      if (len === 0 || len > this.maxPacket) {
        this.#start = this.#end = 0;
        throw new FramingError(`bad TCP packet length ${len} (must be 1..${this.maxPacket})`);
      }
      if (this.#end - this.#start < 2 + len) break;
      const off = this.#start + 2;
      this.#start += 2 + len;
      onPacket(b, off, len);
    }
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  /** Bytes held that do not yet form a packet. */
  get pending(): number {
    return this.#end - this.#start;
  }
}

/** Write the 2-byte length prefix for a packet of `len` bytes at `buf[off-2]`. */
export function writeLengthPrefix(buf: Uint8Array, off: number, len: number): void {
  buf[off - 2] = len >> 8;
  buf[off - 1] = len & 0xff;
}
