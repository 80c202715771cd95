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
 * One buffer's entries of an {@linkcode OffsetCache}: an open-addressing hash table of offsets (non-negative
 * integers) in a typed array, linear probing. A V8 Map of a few thousand number keys (the offsets of a receive
 * batch of UDP_GRO trains) cost a chained lookup through a table larger than the cache, about a tenth of the
 * receiving worker's time; this one touches one or two cache lines.
 */
class OffsetTable<T> {
  #keys: Int32Array;
  #values: (T | undefined)[];
  #mask: number;
  #shift: number;
  #count = 0;

  constructor(capacity = 64) {
    this.#keys = new Int32Array(capacity).fill(-1);
    this.#values = new Array<T | undefined>(capacity).fill(undefined);
    this.#mask = capacity - 1;
    this.#shift = 32 - Math.log2(capacity);
  }

  #slot(off: number): number {
    const keys = this.#keys, mask = this.#mask;
    // Fibonacci hashing: the product's top bits (offsets 64 KB apart differ only above the low bits)
    let i = Math.imul(off, 0x9e3779b1) >>> this.#shift;
    for (;;) {
      const k = keys[i];
      if (k === off || k === -1) return i;
      i = (i + 1) & mask;
    }
  }

  get(off: number): T | undefined {
    const i = this.#slot(off);
    return this.#keys[i] === off ? this.#values[i] : undefined;
  }

  set(off: number, v: T): void {
    if (2 * (this.#count + 1) > this.#keys.length) this.#grow();
    const i = this.#slot(off);
    if (this.#keys[i] !== off) {
      this.#keys[i] = off;
      this.#count++;
    }
    this.#values[i] = v;
  }

  #grow() {
    const keys = this.#keys, values = this.#values;
    this.#keys = new Int32Array(2 * keys.length).fill(-1);
    this.#values = new Array<T | undefined>(2 * keys.length).fill(undefined);
    this.#mask = 2 * keys.length - 1;
    this.#shift--;
    this.#count = 0;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== -1) this.set(keys[i], values[i]!);
  }
}

/**
 * One `T` per buffer and offset, made by `make` on first use: the shared mechanism of the view caches here and
 * of the channel's AEAD views. Bounded (past `max` entries it starts over), weakly keyed by buffer; the last
 * lookup is checked first (a path that keeps to one buffer and offset never reaches the tables), then the last
 * buffer's table (a path that keeps to one buffer never reaches the WeakMap).
 */
export class OffsetCache<T> {
  #byBuf = new WeakMap<Uint8Array, OffsetTable<T>>();
  #count = 0;
  #lastBuf?: Uint8Array;
  #lastTable?: OffsetTable<T>;
  #lastOff = -1;
  #last?: T;

  constructor(readonly max: number, readonly make: () => T) {}

  at(buf: Uint8Array, off: number): T {
    let table: OffsetTable<T> | undefined;
    if (buf === this.#lastBuf) {
      if (off === this.#lastOff) return this.#last!;
      table = this.#lastTable!;
    } else {
      table = this.#byBuf.get(buf);
      if (table === undefined) this.#byBuf.set(buf, table = new OffsetTable());
    }
    let v = table.get(off);
    if (v === undefined) {
      if (++this.#count > this.max) {
        this.#byBuf = new WeakMap();
        this.#count = 1;
        this.#byBuf.set(buf, table = new OffsetTable());
      }
      v = this.make();
      table.set(off, v);
    }
    this.#lastBuf = buf;
    this.#lastTable = table;
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
