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

interface Entry {
  p: Prefix;
  peerId: number;
  /** IPv4: network and mask as u32; IPv6: four u32 words of each. */
  net: Uint32Array;
  mask: Uint32Array;
}

function words(b: Uint8Array): Uint32Array {
  const w = new Uint32Array(b.length / 4);
  for (let i = 0; i < w.length; i++) {
    w[i] = ((b[4 * i] << 24) | (b[4 * i + 1] << 16) | (b[4 * i + 2] << 8) | b[4 * i + 3]) >>> 0;
  }
  return w;
}

function maskWords(bits: number, n: number): Uint32Array {
  const m = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const k = Math.max(0, Math.min(32, bits - 32 * i));
    m[i] = k === 0 ? 0 : (0xffffffff << (32 - k)) >>> 0;
  }
  return m;
}

/** The routes of every peer, IPv4 and IPv6, longest prefix first. */
export class RouteTable {
  #v4: Entry[] = [];
  #v6: Entry[] = [];
  #d = new Uint32Array(4);

  /** Add `cidr` for `peerId`; a prefix another peer holds is refused, the same peer's is kept once. */
  add(cidr: string, peerId: number): Prefix {
    const p = parsePrefix(cidr);
    const list = p.v6 ? this.#v6 : this.#v4;
    const have = list.find((e) => e.p.text === p.text);
    if (have) {
      if (have.peerId === peerId) return p;
      throw new RouteError(`the route ${p.text} is already held by peer ${have.peerId}`);
    }
    const n = p.v6 ? 4 : 1;
    list.push({ p, peerId, net: words(p.addr), mask: maskWords(p.bits, n) });
    list.sort((a, b) => b.p.bits - a.p.bits);
    return p;
  }

  /** Remove `cidr` of `peerId`; false when that peer does not hold it. */
  del(cidr: string, peerId: number): boolean {
    const p = parsePrefix(cidr);
    const list = p.v6 ? this.#v6 : this.#v4;
    const i = list.findIndex((e) => e.p.text === p.text && e.peerId === peerId);
    if (i < 0) return false;
    list.splice(i, 1);
    return true;
  }

  /** Remove every route of a peer. */
  delPeer(peerId: number): void {
    this.#v4 = this.#v4.filter((e) => e.peerId !== peerId);
    this.#v6 = this.#v6.filter((e) => e.peerId !== peerId);
  }

  /** The prefixes a peer holds. */
  of(peerId: number): string[] {
    return [...this.#v4, ...this.#v6].filter((e) => e.peerId === peerId).map((e) => e.p.text);
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
      for (const e of this.#v4) if (((d & e.mask[0]) >>> 0) === e.net[0]) return e.peerId;
      return -1;
    }
    if (ver === 6) {
      if (len < 40) return -1;
      const d = this.#d;
      for (let i = 0; i < 4; i++) {
        const o = off + at6 + 4 * i;
        d[i] = ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
      }
      for (const e of this.#v6) {
        if (
          ((d[0] & e.mask[0]) >>> 0) === e.net[0] && ((d[1] & e.mask[1]) >>> 0) === e.net[1] &&
          ((d[2] & e.mask[2]) >>> 0) === e.net[2] && ((d[3] & e.mask[3]) >>> 0) === e.net[3]
        ) return e.peerId;
      }
      return -1;
    }
    return -1;
  }
}
