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

interface Span {
  end: number;
  view: Uint8Array;
}

export class SpanCache {
  #byBuf = new WeakMap<Uint8Array, Map<number, Span>>();
  #count = 0;

  constructor(readonly max = 8192) {}

  /** `buf.subarray(start, end)`, made once per buffer, start and end (the last end per start is kept). */
  view(buf: Uint8Array, start: number, end: number): Uint8Array {
    let byStart = this.#byBuf.get(buf);
    if (byStart === undefined) this.#byBuf.set(buf, byStart = new Map());
    const s = byStart.get(start);
    if (s !== undefined) {
      if (s.end !== end) {
        s.end = end;
        s.view = buf.subarray(start, end);
      }
      return s.view;
    }
    if (++this.#count > this.max) {
      this.#byBuf = new WeakMap();
      this.#count = 1;
      this.#byBuf.set(buf, byStart = new Map());
    }
    const view = buf.subarray(start, end);
    byStart.set(start, { end, view });
    return view;
  }
}
