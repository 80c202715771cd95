/**
 * The netlink wire format, pure (no I/O): message headers (nlmsghdr, genlmsghdr), attributes (nested,
 * padded to 4 bytes), the kernel's error/ack messages with their extended ACK (the kernel's own text of
 * what was wrong), and the generic netlink controller's family lookup. Host byte order (little endian
 * on every platform this tool runs on), except where an attribute is big endian by definition.
 *
 * @example
 * ```ts
 * import { NlMsg, parseMessages } from "./netlink.ts";
 * const m = new NlMsg(0x10, 0x5, 1).genl(3, 1).str(2, "ovpn").end(); // CTRL_CMD_GETFAMILY "ovpn"
 * parseMessages(m)[0].type; // 0x10
 * ```
 * @module
 */

export const NLMSG_HDRLEN = 16;
export const GENL_HDRLEN = 4;
export const NLA_HDRLEN = 4;
export const NLMSG = { NOOP: 1, ERROR: 2, DONE: 3, OVERRUN: 4 } as const;
export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  ROOT: 0x100,
  MATCH: 0x200,
  DUMP: 0x300,
  EXCL: 0x200,
  CREATE: 0x400,
  /** In an NLMSG_ERROR: the request was not copied back (NETLINK_CAP_ACK). */
  CAPPED: 0x100,
  /** In an NLMSG_ERROR: extended ACK attributes follow (NETLINK_EXT_ACK). */
  ACK_TLVS: 0x200,
} as const;
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

/** Extended ACK attributes (NLMSGERR_ATTR_*). */
export const NLMSGERR_ATTR = { MSG: 1, OFFS: 2, COOKIE: 3, POLICY: 4, MISS_TYPE: 5, MISS_NEST: 6 } as const;

/** The generic netlink controller. */
export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR = {
  FAMILY_ID: 1,
  FAMILY_NAME: 2,
  VERSION: 3,
  HDRSIZE: 4,
  MAXATTR: 5,
  OPS: 6,
  MCAST_GROUPS: 7,
} as const;
export const CTRL_ATTR_OP = { ID: 1, FLAGS: 2 } as const;
export const CTRL_ATTR_MCAST_GRP = { NAME: 1, ID: 2 } as const;

const align4 = (n: number) => (n + 3) & ~3;
const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Builds one netlink message: the header, an optional fixed header (genl, ifinfomsg), then attributes;
 * `nest`/`endNest` bracket nested ones. `end()` fills in the lengths and returns the bytes.
 */
export class NlMsg {
  #buf = new Uint8Array(256);
  #dv = new DataView(this.#buf.buffer);
  #len = NLMSG_HDRLEN;
  #nests: number[] = [];

  constructor(type: number, flags: number, seq: number, pid = 0) {
    this.#dv.setUint16(4, type, true);
    this.#dv.setUint16(6, flags, true);
    this.#dv.setUint32(8, seq >>> 0, true);
    this.#dv.setUint32(12, pid >>> 0, true);
  }

  #room(n: number) {
    if (this.#len + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.#buf);
    this.#buf = b;
    this.#dv = new DataView(b.buffer);
  }

  /** Raw bytes at the current position (a fixed header), padded to 4. */
  raw(b: Uint8Array): this {
    const n = align4(b.length);
    this.#room(n);
    this.#buf.fill(0, this.#len, this.#len + n);
    this.#buf.set(b, this.#len);
    this.#len += n;
    return this;
  }

  /** The generic netlink header. */
  genl(cmd: number, version: number): this {
    return this.raw(new Uint8Array([cmd, version, 0, 0]));
  }

  /** One attribute with `data` as its payload. */
  attr(type: number, data: Uint8Array): this {
    const n = NLA_HDRLEN + data.length;
    this.#room(align4(n));
    this.#dv.setUint16(this.#len, n, true);
    this.#dv.setUint16(this.#len + 2, type, true);
    this.#buf.set(data, this.#len + NLA_HDRLEN);
    this.#buf.fill(0, this.#len + n, this.#len + align4(n));
    this.#len += align4(n);
    return this;
  }

  u8(type: number, v: number): this {
    return this.attr(type, new Uint8Array([v]));
  }

  u16(type: number, v: number): this {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, true);
    return this.attr(type, b);
  }

  /** A big-endian 16-bit value (ports). */
  be16(type: number, v: number): this {
    return this.attr(type, new Uint8Array([(v >> 8) & 0xff, v & 0xff]));
  }

  u32(type: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    return this.attr(type, b);
  }

  s32(type: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    return this.attr(type, b);
  }

  /** A NUL-terminated string. */
  str(type: number, s: string): this {
    const b = enc.encode(s);
    const z = new Uint8Array(b.length + 1);
    z.set(b);
    return this.attr(type, z);
  }

  /** Open a nested attribute (NLA_F_NESTED set, as the kernel's strict validation wants). */
  nest(type: number): this {
    this.#room(NLA_HDRLEN);
    this.#dv.setUint16(this.#len + 2, type | NLA_F_NESTED, true);
    this.#nests.push(this.#len);
    this.#len += NLA_HDRLEN;
    return this;
  }

  endNest(): this {
    const at = this.#nests.pop();
    if (at === undefined) throw new Error("endNest without nest");
    this.#dv.setUint16(at, this.#len - at, true);
    return this;
  }

  /** The finished message (lengths filled in). */
  end(): Uint8Array {
    if (this.#nests.length) throw new Error("unclosed nested attribute");
    this.#dv.setUint32(0, this.#len, true);
    return this.#buf.slice(0, this.#len);
  }
}

/** One received netlink message. */
export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** Everything after the 16-byte header. */
  payload: Uint8Array;
}

/** Split a datagram into its netlink messages (a truncated tail is ignored). */
export function parseMessages(b: Uint8Array): NlMessage[] {
  const out: NlMessage[] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let off = 0;
  while (off + NLMSG_HDRLEN <= b.length) {
    const len = dv.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > b.length) break;
    out.push({
      type: dv.getUint16(off + 4, true),
      flags: dv.getUint16(off + 6, true),
      seq: dv.getUint32(off + 8, true),
      pid: dv.getUint32(off + 12, true),
      payload: b.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Attributes by type (the last of a repeated type wins; `all` keeps every one in order). */
export class Attrs {
  readonly map = new Map<number, Uint8Array>();
  readonly all: { type: number; data: Uint8Array }[] = [];

  constructor(b: Uint8Array) {
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    let off = 0;
    while (off + NLA_HDRLEN <= b.length) {
      const len = dv.getUint16(off, true);
      if (len < NLA_HDRLEN || off + len > b.length) break;
      const type = dv.getUint16(off + 2, true) & NLA_TYPE_MASK;
      const data = b.subarray(off + NLA_HDRLEN, off + len);
      this.map.set(type, data);
      this.all.push({ type, data });
      off += align4(len);
    }
  }

  has(t: number): boolean {
    return this.map.has(t);
  }

  bytes(t: number): Uint8Array | undefined {
    return this.map.get(t);
  }

  nested(t: number): Attrs | undefined {
    const d = this.map.get(t);
    return d ? new Attrs(d) : undefined;
  }

  u8(t: number): number | undefined {
    const d = this.map.get(t);
    return d && d.length >= 1 ? d[0] : undefined;
  }

  u16(t: number): number | undefined {
    const d = this.map.get(t);
    return d && d.length >= 2 ? new DataView(d.buffer, d.byteOffset, 2).getUint16(0, true) : undefined;
  }

  be16(t: number): number | undefined {
    const d = this.map.get(t);
    return d && d.length >= 2 ? (d[0] << 8) | d[1] : undefined;
  }

  u32(t: number): number | undefined {
    const d = this.map.get(t);
    return d && d.length >= 4 ? new DataView(d.buffer, d.byteOffset, 4).getUint32(0, true) : undefined;
  }

  /** A netlink `uint` (4 or 8 bytes, as nla_put_uint chooses) as a number. */
  uint(t: number): number | undefined {
    const d = this.map.get(t);
    if (!d) return undefined;
    const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
    if (d.length === 8) return Number(dv.getBigUint64(0, true));
    if (d.length >= 4) return dv.getUint32(0, true);
    return undefined;
  }

  str(t: number): string | undefined {
    const d = this.map.get(t);
    return d ? dec.decode(d).replace(/\0.*$/s, "") : undefined;
  }
}

/** An NLMSG_ERROR: errno (0 = ACK) and, with NETLINK_EXT_ACK, the kernel's message. */
export interface NlError {
  /** A positive errno, 0 for an ACK. */
  errno: number;
  /** NLMSGERR_ATTR_MSG: the kernel's own words (for example "ovpn: cannot find peer with id 7"). */
  message?: string;
  /** NLMSGERR_ATTR_MISS_TYPE: the attribute the kernel wanted and did not get. */
  missingType?: number;
  /** The sequence number of the request it answers. */
  seq: number;
}

/** Decode the payload of an NLMSG_ERROR message. */
export function parseError(m: NlMessage): NlError {
  const p = m.payload;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const err = p.length >= 4 ? 0 - dv.getInt32(0, true) : 0; // (not -x: an ACK would be -0)
  const r: NlError = { errno: err, seq: m.seq };
  if (!(m.flags & NLM_F.ACK_TLVS) || p.length < 4 + NLMSG_HDRLEN) return r;
  // the request's header follows; its payload too unless the kernel capped it (NETLINK_CAP_ACK)
  const reqLen = dv.getUint32(4, true);
  const skip = 4 + (m.flags & NLM_F.CAPPED ? NLMSG_HDRLEN : align4(reqLen));
  if (skip > p.length) return r;
  const tlv = new Attrs(p.subarray(skip));
  const msg = tlv.str(NLMSGERR_ATTR.MSG);
  if (msg) r.message = msg;
  const miss = tlv.u32(NLMSGERR_ATTR.MISS_TYPE);
  if (miss !== undefined) r.missingType = miss;
  return r;
}

/** A generic netlink family as the controller describes it. */
export interface GenlFamily {
  id: number;
  name: string;
  version: number;
  /** Command ids the kernel offers. */
  ops: number[];
  /** Multicast groups by name. */
  groups: Map<string, number>;
}

/** CTRL_CMD_GETFAMILY for `name`. */
export function getFamilyRequest(name: string, seq: number): Uint8Array {
  return new NlMsg(GENL_ID_CTRL, NLM_F.REQUEST | NLM_F.ACK, seq).genl(CTRL_CMD_GETFAMILY, 1)
    .str(CTRL_ATTR.FAMILY_NAME, name).end();
}

/** Decode the controller's answer (the payload after the genl header). */
export function parseFamily(payload: Uint8Array): GenlFamily {
  const a = new Attrs(payload.subarray(GENL_HDRLEN));
  const ops: number[] = [];
  for (const op of a.nested(CTRL_ATTR.OPS)?.all ?? []) {
    const id = new Attrs(op.data).u32(CTRL_ATTR_OP.ID);
    if (id !== undefined) ops.push(id);
  }
  const groups = new Map<string, number>();
  for (const g of a.nested(CTRL_ATTR.MCAST_GROUPS)?.all ?? []) {
    const ga = new Attrs(g.data);
    const name = ga.str(CTRL_ATTR_MCAST_GRP.NAME), id = ga.u32(CTRL_ATTR_MCAST_GRP.ID);
    if (name !== undefined && id !== undefined) groups.set(name, id);
  }
  return {
    id: a.u16(CTRL_ATTR.FAMILY_ID) ?? 0,
    name: a.str(CTRL_ATTR.FAMILY_NAME) ?? "",
    version: a.u32(CTRL_ATTR.VERSION) ?? 0,
    ops,
    groups,
  };
}
