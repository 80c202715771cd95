/**
 * Packet ids: the sender's counter with OpenVPN's wrap limit, and the receiver's 2048-id replay window
 * with backtracking and the 30-second expiry of backtracks (the algorithm of ovpn-dco's pktid.c).
 *
 * @example
 * ```ts
 * import { ReplayWindow } from "./pktid.ts";
 * const w = new ReplayWindow();
 * w.check(1); // "ok"
 * w.check(1); // "replay"
 * ```
 * @module
 */

/** The sender refuses ids at or above this value: the key must be renewed. */
export const PKTID_WRAP_LIMIT = 0xf0000000;
/** Replay window size in packet ids. */
export const REPLAY_WINDOW_SIZE = 2048;
/** Backtracks expire after this long without an accepted packet (milliseconds). */
export const REPLAY_EXPIRE_MS = 30_000;

/** The sender's packet-id counter: ids start at 1 for each new key. */
export class PacketIdCounter {
  #next = 1;
  /** The next id, or -1 when the wrap limit is reached (the packet must be dropped and counted lost). */
  next(): number {
    if (this.#next >= PKTID_WRAP_LIMIT) return -1;
    return this.#next++;
  }
  /** For tests: continue from `id`. */
  seek(id: number): void {
    this.#next = id;
  }
}

/** Why a packet id was refused. */
export type ReplayVerdict = "ok" | "zero" | "replay" | "too-old" | "expired";

const WORDS = REPLAY_WINDOW_SIZE / 32;

/**
 * The receiver's sliding window. `check` both tests and records an id; call it only after the packet
 * authenticated, so that forged packets cannot move the window.
 */
export class ReplayWindow {
  #bits = new Uint32Array(WORDS);
  #base = 0; // bit index of the newest id
  #extent = 0; // how many ids the window covers
  #id = 0; // newest accepted id
  #floor = 0; // backtracks at or below this are refused
  #expire = 0;
  #now: () => number;

  /** `now` returns milliseconds; injected for tests. */
  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Newest accepted id. */
  get highest(): number {
    return this.#id;
  }

  #set(i: number) {
    this.#bits[i >>> 5] |= 1 << (i & 31);
  }
  #clear(i: number) {
    this.#bits[i >>> 5] &= ~(1 << (i & 31));
  }
  #test(i: number): boolean {
    return (this.#bits[i >>> 5] & (1 << (i & 31))) !== 0;
  }
  #index(delta: number): number {
    return (this.#base + delta + REPLAY_WINDOW_SIZE) & (REPLAY_WINDOW_SIZE - 1);
  }

  /** Test and record `id`. */
  check(id: number): ReplayVerdict {
    if (id === 0) return "zero";
    const now = this.#now();
    if (this.#id !== 0 && now >= this.#expire) this.#floor = this.#id;
    if (id === this.#id + 1) {
      this.#base = this.#index(-1);
      this.#set(this.#base);
      if (this.#extent < REPLAY_WINDOW_SIZE) this.#extent++;
      this.#id = id;
    } else if (id > this.#id) {
      const delta = id - this.#id;
      if (delta < REPLAY_WINDOW_SIZE) {
        this.#base = this.#index(-delta);
        this.#set(this.#base);
        this.#extent = Math.min(this.#extent + delta, REPLAY_WINDOW_SIZE);
        for (let i = 1; i < delta; i++) this.#clear(this.#index(i));
      } else {
        this.#base = 0;
        this.#extent = REPLAY_WINDOW_SIZE;
        this.#bits.fill(0);
        this.#set(0);
      }
      this.#id = id;
    } else {
      const delta = this.#id - id;
      if (delta >= this.#extent) return "too-old";
      if (id <= this.#floor) return "expired";
      const ri = this.#index(delta);
      if (this.#test(ri)) return "replay";
      this.#set(ri);
    }
    this.#expire = now + REPLAY_EXPIRE_MS;
    return "ok";
  }
}
