/**
 * Subarrays of long-lived buffers, cached by buffer and span, so that the data path copies and hands packets to
 * FFI calls without making a view (about 100 bytes of garbage) per packet. The engines' buffers are few and
 * their packets sit at recurring offsets (send slots, receive slots, UDP_GRO trains of one size), so the cache
 * hits in the steady state. Bounded: past `max` spans it starts over; keyed weakly, so a dropped buffer takes
 * its views with it.
 *
 * @example
 * ```ts
 * import { SpanCache } from "./views.ts";
 * const spans = new SpanCache();
 * const buf = new Uint8Array(2048);
 * spans.view(buf, 24, 88) === spans.view(buf, 24, 88); // true
 * ```
 * @module
 */

/**
 * One `T` per buffer and offset, made by `make` on first use: the shared mechanism of the view caches here and
 * of the channel's AEAD views. Bounded (past `max` entries it starts over), weakly keyed by buffer, and the last
 * lookup is checked first (a path that keeps to one buffer and offset never reaches the maps).
 */
export class OffsetCache<T> {
  #byBuf = new WeakMap<Uint8Array, Map<number, T>>();
  #count = 0;
  #lastBuf?: Uint8Array;
  #lastOff = -1;
  #last?: T;

  constructor(readonly max: number, readonly make: () => T) {}

  at(buf: Uint8Array, off: number): T {
    if (buf === this.#lastBuf && off === this.#lastOff) return this.#last!;
    let byOff = this.#byBuf.get(buf);
    if (byOff === undefined) this.#byBuf.set(buf, byOff = new Map());
    let v = byOff.get(off);
    if (v === undefined) {
      if (++this.#count > this.max) {
        this.#byBuf = new WeakMap();
        this.#count = 1;
        this.#byBuf.set(buf, byOff = new Map());
      }
      v = this.make();
      byOff.set(off, v);
    }
    this.#lastBuf = buf;
    this.#lastOff = off;
    this.#last = v;
    return v;
  }
}

const EMPTY = new Uint8Array(0);

interface Span {
  end: number;
  view: Uint8Array;
}

export class SpanCache {
  readonly #spans: OffsetCache<Span>;

  constructor(max = 8192) {
    this.#spans = new OffsetCache(max, () => ({ end: -1, view: EMPTY }));
  }

  /** `buf.subarray(start, end)`, made once per buffer, start and end (the last end per start is kept). */
  view(buf: Uint8Array, start: number, end: number): Uint8Array {
    const s = this.#spans.at(buf, start);
    if (s.end !== end) {
      s.end = end;
      s.view = buf.subarray(start, end);
    }
    return s.view;
  }
}
