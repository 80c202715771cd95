/**
 * Server mode routing: which peer a packet from the tun goes to, by its destination address. Each peer owns
 * its VPN addresses (/32, /128) and its iroutes (subnets behind it); the longest prefix wins; a prefix is held
 * by one peer at most. Pure logic, no I/O.
 *
 * @example
 * ```ts
 * import { RouteTable } from "./routes.ts";
 * const t = new RouteTable();
 * t.add("10.8.0.2/32", 2);
 * t.lookup(new Uint8Array([0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 8, 0, 1, 10, 8, 0, 2]), 0, 20); // 2
 * ```
 * @module
 */
import { parseIPv4, parseIPv6 } from "../uapi.ts";

/** A route refused (bad prefix, or held by another peer); the message is for the user. */
export class RouteError extends Error {}

/** One parsed prefix. */
export interface Prefix {
  v6: boolean;
  /** Address bytes (4 or 16), host bits cleared. */
  addr: Uint8Array;
  bits: number;
  /** Normalised text, e.g. `10.8.0.0/24`. */
  text: string;
}

/** Parse `ADDR/BITS` (or a bare address: /32, /128), clearing the host bits. */
export function parsePrefix(cidr: string): Prefix {
  const [a, b] = cidr.trim().split("/");
  const v4 = parseIPv4(a);
  const v6 = v4 ? null : parseIPv6(a);
  const addr = v4 ?? v6;
  const max = v4 ? 32 : 128;
  const bits = b === undefined ? max : /^\d{1,3}$/.test(b) ? Number(b) : NaN;
  if (!addr || !(bits >= 0 && bits <= max)) {
    throw new RouteError(`'${cidr}' is not ADDR/PREFIX (e.g. 192.168.10.0/24 or fd00:10::/64)`);
  }
  const out = new Uint8Array(addr);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    out[i] &= keep === 8 ? 0xff : (0xff << (8 - keep)) & 0xff;
  }
  const text = v4
    ? `${[...out].join(".")}/${bits}`
    : `${
      Array.from({ length: 8 }, (_, i) => ((out[2 * i] << 8) | out[2 * i + 1]).toString(16)).join(":")
    }/${bits}`;
  return { v6: !v4, addr: out, bits, text };
}

/** A route as the table keeps it: its text and length (the address bytes live only in the map key). */
interface Entry {
  text: string;
  v6: boolean;
  bits: number;
  peerId: number;
}

/** MASK32[k]: a u32 with its k highest bits set (0 ≤ k ≤ 32). */
const MASK32 = Array.from({ length: 33 }, (_, k) => k === 0 ? 0 : (0xffffffff << (32 - k)) >>> 0);

/** One family's routes: per prefix length (longest first), a map from the network to its entry. */
class Family<K> {
  readonly byBits = new Map<number, Map<K, Entry>>();
  /** The prefix lengths in use, longest first (at most 33 or 129; in practice a few). */
  bits: number[] = [];

  get(bits: number, key: K): Entry | undefined {
    return this.byBits.get(bits)?.get(key);
  }

  set(bits: number, key: K, e: Entry): void {
    let m = this.byBits.get(bits);
    if (!m) {
      this.byBits.set(bits, m = new Map());
      this.bits = [...this.byBits.keys()].sort((x, y) => y - x);
    }
    m.set(key, e);
  }

  delete(bits: number, key: K): void {
    const m = this.byBits.get(bits);
    if (!m) return;
    m.delete(key);
    if (!m.size) {
      this.byBits.delete(bits);
      this.bits = [...this.byBits.keys()].sort((x, y) => y - x);
    }
  }

  *entries(): Generator<[number, K, Entry]> {
    for (const [bits, m] of this.byBits) for (const [k, e] of m) yield [bits, k, e];
  }
}

/** The mask of word `i` (0–3) of an IPv6 address under a /`bits` prefix. */
const word = (bits: number, i: number) => MASK32[Math.max(0, Math.min(32, bits - 32 * i))];

const v4Key = (addr: Uint8Array): number =>
  ((addr[0] << 24) | (addr[1] << 16) | (addr[2] << 8) | addr[3]) >>> 0;
const v6Key = (w0: number, w1: number, w2: number, w3: number) => `${w0}:${w1}:${w2}:${w3}`;

/**
 * The routes of every peer, IPv4 and IPv6. A lookup tries each prefix length in use, longest first, with one
 * hash lookup each: its cost grows with the number of distinct prefix lengths, not with the number of routes.
 */
export class RouteTable {
  #v4 = new Family<number>();
  #v6 = new Family<string>();
  #d = new Uint32Array(4);

  #key(p: Prefix): number | string {
    if (!p.v6) return v4Key(p.addr);
    const w = [0, 1, 2, 3].map((i) => v4Key(p.addr.subarray(4 * i, 4 * i + 4)));
    return v6Key(w[0], w[1], w[2], w[3]);
  }

  #family(p: Prefix): Family<number | string> {
    return (p.v6 ? this.#v6 : this.#v4) as Family<number | string>;
  }

  /** Add `cidr` for `peerId`; a prefix another peer holds is refused, the same peer's is kept once. */
  add(cidr: string, peerId: number): Prefix {
    const p = parsePrefix(cidr);
    const f = this.#family(p), key = this.#key(p);
    const have = f.get(p.bits, key);
    if (have) {
      if (have.peerId === peerId) return p;
      throw new RouteError(`the route ${p.text} is already held by peer ${have.peerId}`);
    }
    f.set(p.bits, key, { text: p.text, v6: p.v6, bits: p.bits, peerId });
    return p;
  }

  /** Remove `cidr` of `peerId`; false when that peer does not hold it. */
  del(cidr: string, peerId: number): boolean {
    const p = parsePrefix(cidr);
    const f = this.#family(p), key = this.#key(p);
    if (f.get(p.bits, key)?.peerId !== peerId) return false;
    f.delete(p.bits, key);
    return true;
  }

  /** Remove every route of a peer. */
  delPeer(peerId: number): void {
    for (const f of [this.#v4, this.#v6] as Family<number | string>[]) {
      for (const [bits, k, e] of [...f.entries()]) if (e.peerId === peerId) f.delete(bits, k);
    }
  }

  /** The prefixes a peer holds, longest first. */
  of(peerId: number): string[] {
    const out: Entry[] = [];
    for (const f of [this.#v4, this.#v6] as Family<number | string>[]) {
      for (const [, , e] of f.entries()) if (e.peerId === peerId) out.push(e);
    }
    return out.sort((a, b) => Number(a.v6) - Number(b.v6) || b.bits - a.bits).map((e) => e.text);
  }

  /** The peer for the IP packet at `b[off .. off+len]` (its destination), or -1. */
  lookup(b: Uint8Array, off: number, len: number): number {
    return this.#find(b, off, len, 16, 24);
  }

  /**
   * The peer that holds the source address of the IP packet at `b[off .. off+len]`, or -1: a server accepts a
   * decrypted packet only from the peer that holds its source (its VPN addresses and routes).
   */
  lookupSource(b: Uint8Array, off: number, len: number): number {
    return this.#find(b, off, len, 12, 8);
  }

  /** Longest-prefix match of the address at byte `at4` (IPv4) or `at6` (IPv6) of the packet. */
  #find(b: Uint8Array, off: number, len: number, at4: number, at6: number): number {
    if (len < 1) return -1;
    const ver = b[off] >> 4;
    if (ver === 4) {
      if (len < 20) return -1;
      const a = off + at4;
      const d = ((b[a] << 24) | (b[a + 1] << 16) | (b[a + 2] << 8) | b[a + 3]) >>> 0;
      const f = this.#v4;
      for (const bits of f.bits) {
        const e = f.byBits.get(bits)!.get((d & MASK32[bits]) >>> 0);
        if (e) return e.peerId;
      }
      return -1;
    }
    if (ver === 6) {
      if (len < 40) return -1;
      const d = this.#d;
      for (let i = 0; i < 4; i++) {
        const o = off + at6 + 4 * i;
        d[i] = ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
      }
      const f = this.#v6;
      for (const bits of f.bits) {
        const e = f.byBits.get(bits)!.get(
          v6Key(
            (d[0] & word(bits, 0)) >>> 0,
            (d[1] & word(bits, 1)) >>> 0,
            (d[2] & word(bits, 2)) >>> 0,
            (d[3] & word(bits, 3)) >>> 0,
          ),
        );
        if (e) return e.peerId;
      }
      return -1;
    }
    return -1;
  }
}
