/**
 * The ovpn-dco-win user API: IOCTL codes, enums and byte-exact encoders/decoders of every OVPN_* struct
 * (layouts of ../shared/uapi-layout.md; little-endian, ports and addresses in network order). Pure code,
 * the single place for these facts.
 *
 * @example
 * ```ts
 * import { encodeSetPeer, IOCTL } from "./uapi.ts";
 * const bytes = encodeSetPeer({ keepaliveInterval: 10, keepaliveTimeout: 300, mss: 0 }); // 12 bytes
 * IOCTL.SET_PEER; // 0x00220014
 * ```
 * @module
 */

const ctl = (n: number) => (0x220000 | (n << 2)) >>> 0;

/** OVPN_IOCTL_* codes: CTL_CODE(FILE_DEVICE_UNKNOWN, n, METHOD_BUFFERED, FILE_ANY_ACCESS). */
export const IOCTL = {
  NEW_PEER: ctl(1),
  GET_STATS: ctl(2),
  NEW_KEY: ctl(3),
  SWAP_KEYS: ctl(4),
  SET_PEER: ctl(5),
  START_VPN: ctl(6),
  DEL_PEER: ctl(7),
  GET_VERSION: ctl(8),
  NEW_KEY_V2: ctl(9),
  SET_MODE: ctl(10),
  MP_START_VPN: ctl(11),
  MP_NEW_PEER: ctl(12),
  MP_SET_PEER: ctl(13),
  NOTIFY_EVENT: ctl(14),
  MP_DEL_PEER: ctl(15),
  MP_SWAP_KEYS: ctl(16),
  MP_ADD_IROUTE: ctl(17),
  MP_DEL_IROUTE: ctl(18),
  GET_PEER_STATS: ctl(19),
} as const;

/** Name of an IOCTL code, for messages. */
export function ioctlName(code: number): string {
  for (const [k, v] of Object.entries(IOCTL)) if (v === code) return `OVPN_IOCTL_${k}`;
  return `IOCTL 0x${code.toString(16)}`;
}

export const OVPN_PROTO = { UDP: 0, TCP: 1 } as const;
export const OVPN_KEY_SLOT = { PRIMARY: 0, SECONDARY: 1 } as const;
export const OVPN_CIPHER_ALG = { NONE: 0, AES_GCM: 1, CHACHA20_POLY1305: 2 } as const;
export const OVPN_MODE = { P2P: 0, MP: 1 } as const;
export const OVPN_NOTIFY_CMD = { DEL_PEER: 0, SWAP_KEYS: 1, FLOAT_PEER: 2 } as const;
export const OVPN_DEL_PEER_REASON = {
  TEARDOWN: 0,
  USERSPACE: 1,
  EXPIRED: 2,
  TRANSPORT_ERROR: 3,
  TRANSPORT_DISCONNECT: 4,
} as const;
/**
 * CryptoOptions flags of OVPN_CRYPTO_DATA_V2 as the newest driver reads them: bit 1 is EPOCH (the older
 * header's AEAD_TAG_END = 0x2 and 64BIT_PKTID = 0x4 are gone from it).
 */
export const CRYPTO_OPTIONS = { EPOCH: 0x2 } as const;

/** Windows address families. */
export const AF_INET = 2;
export const AF_INET6 = 23;

/** Struct sizes, from uapi-layout.md. */
export const SIZE = {
  SOCKADDR_IN: 16,
  SOCKADDR_IN6: 28,
  SOCKADDR_UNION: 28,
  NEW_PEER: 60,
  STATS: 64,
  KEY_DIRECTION: 41,
  CRYPTO_DATA: 100,
  CRYPTO_DATA_V2: 104,
  SET_PEER: 12,
  VERSION: 12,
  MP_NEW_PEER: 80,
  SET_MODE: 4,
  MP_START_VPN: 32,
  MP_SET_PEER: 16,
  NOTIFY_EVENT: 144,
  MP_DEL_PEER: 4,
  MP_SWAP_KEYS: 4,
  MP_IROUTE: 28,
  GET_PEER_STATS: 4,
  PEER_STATS: 40,
} as const;

/** A transport endpoint: IPv4 dotted quad or IPv6 text, and a port. */
export interface SockAddr {
  address: string;
  port: number;
}

/** `ADDR:PORT`, or `[IPv6]:PORT`, as users type endpoints. */
export function formatEndpoint(e: SockAddr): string {
  return e.address.includes(":") ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

/** Parse an IPv4 address; null when invalid. */
export function parseIPv4(s: string): Uint8Array | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^\d{1,3}$/.test(parts[i])) return null;
    const n = Number(parts[i]);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

/** Parse an IPv6 address (with `::`, and an IPv4 tail); null when invalid. Zone ids are refused. */
export function parseIPv6(s: string): Uint8Array | null {
  if (s.includes("%")) return null;
  let tail: Uint8Array | null = null;
  let text = s;
  const lastColon = s.lastIndexOf(":");
  if (s.includes(".")) {
    tail = parseIPv4(s.slice(lastColon + 1));
    if (!tail) return null;
    text = s.slice(0, lastColon + 1) + "0:0";
  }
  const dbl = text.split("::");
  if (dbl.length > 2) return null;
  const group = (t: string) => (t === "" ? [] : t.split(":"));
  const head = group(dbl[0]);
  const rest = dbl.length === 2 ? group(dbl[1]) : [];
  const total = head.length + rest.length;
  if (dbl.length === 1 ? total !== 8 : total > 7) return null;
  const words = [...head, ...Array(8 - total).fill("0"), ...rest];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(words[i])) return null;
    const v = parseInt(words[i], 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  }
  if (tail) out.set(tail, 12);
  return out;
}

/** An address's bytes, an IPv4-mapped IPv6 address as its IPv4 (null: not an address). */
function canonicalIP(a: string): Uint8Array | null {
  const b = parseIPv4(a) ?? parseIPv6(a);
  const mapped = b?.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff &&
    b[11] === 0xff;
  return mapped ? b.slice(12) : b;
}

/** Whether two textual addresses name the same host (an IPv4-mapped IPv6 address and its IPv4 alike). */
export function sameIP(a: string, b: string): boolean {
  const x = canonicalIP(a), y = canonicalIP(b);
  return !!x && !!y && x.length === y.length && x.every((v, i) => v === y[i]);
}

/** An address as plain text: an IPv4-mapped IPv6 address as its IPv4. */
export function plainIP(a: string): string {
  const b = canonicalIP(a);
  return b ? formatIP(b) : a;
}

/** Address bytes (4 or 16) as text. */
export function formatIP(b: Uint8Array): string {
  return b.length === 4 ? [...b].join(".") : formatIPv6(b);
}

function formatIPv6(b: Uint8Array): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[2 * i] << 8) | b[2 * i + 1]);
  let bestS = -1, bestL = 0;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestL && j - i > 1) [bestS, bestL] = [i, j - i];
    i = j;
  }
  const hex = w.map((x) => x.toString(16));
  if (bestS < 0) return hex.join(":");
  return hex.slice(0, bestS).join(":") + "::" + hex.slice(bestS + bestL).join(":");
}

/** Encode SOCKADDR_IN or SOCKADDR_IN6 (chosen by the address) at `off` of `dv`. */
export function writeSockAddr(dv: DataView, off: number, a: SockAddr): void {
  const v4 = parseIPv4(a.address);
  if (v4) {
    dv.setUint16(off, AF_INET, true);
    dv.setUint16(off + 2, a.port, false);
    new Uint8Array(dv.buffer, dv.byteOffset + off + 4, 4).set(v4);
    return;
  }
  const v6 = parseIPv6(a.address);
  if (!v6) throw new Error(`'${a.address}' is not an IPv4 or IPv6 address`);
  dv.setUint16(off, AF_INET6, true);
  dv.setUint16(off + 2, a.port, false);
  new Uint8Array(dv.buffer, dv.byteOffset + off + 8, 16).set(v6);
}

/** Decode a SOCKADDR_IN/SOCKADDR_IN6 at `off`; null for family 0. */
export function readSockAddr(dv: DataView, off: number): SockAddr | null {
  const fam = dv.getUint16(off, true);
  const port = dv.getUint16(off + 2, false);
  const bytes = new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength);
  if (fam === AF_INET) return { address: Array.from(bytes.subarray(off + 4, off + 8)).join("."), port };
  if (fam === AF_INET6) return { address: formatIPv6(bytes.subarray(off + 8, off + 24)), port };
  if (fam === 0) return null;
  throw new Error(`unknown address family ${fam}`);
}

function alloc(n: number): [Uint8Array, DataView] {
  const b = new Uint8Array(n);
  return [b, new DataView(b.buffer)];
}

/** OVPN_NEW_PEER. */
export interface NewPeer {
  local: SockAddr;
  remote: SockAddr;
  proto: "udp" | "tcp";
}

export function encodeNewPeer(p: NewPeer): Uint8Array {
  const [b, dv] = alloc(SIZE.NEW_PEER);
  writeSockAddr(dv, 0, p.local);
  writeSockAddr(dv, 28, p.remote);
  dv.setUint32(56, p.proto === "tcp" ? OVPN_PROTO.TCP : OVPN_PROTO.UDP, true);
  return b;
}

export function decodeNewPeer(b: Uint8Array): NewPeer {
  const dv = view(b, SIZE.NEW_PEER, "OVPN_NEW_PEER");
  return {
    local: readSockAddr(dv, 0) ?? { address: "", port: 0 },
    remote: readSockAddr(dv, 28) ?? { address: "", port: 0 },
    proto: dv.getUint32(56, true) === OVPN_PROTO.TCP ? "tcp" : "udp",
  };
}

function view(b: Uint8Array, size: number, name: string): DataView {
  if (b.length < size) throw new Error(`${name} needs ${size} bytes, got ${b.length}`);
  return new DataView(b.buffer, b.byteOffset, b.length);
}

/** OVPN_STATS, with the driver's field names. */
export interface OvpnStats {
  LostInControlPackets: number;
  LostOutControlPackets: number;
  LostInDataPackets: number;
  LostOutDataPackets: number;
  ReceivedDataPackets: number;
  ReceivedControlPackets: number;
  SentControlPackets: number;
  SentDataPackets: number;
  TransportBytesSent: number;
  TransportBytesReceived: number;
  TunBytesSent: number;
  TunBytesReceived: number;
}

const STATS_LONGS = [
  "LostInControlPackets",
  "LostOutControlPackets",
  "LostInDataPackets",
  "LostOutDataPackets",
  "ReceivedDataPackets",
  "ReceivedControlPackets",
  "SentControlPackets",
  "SentDataPackets",
] as const;
const STATS_LONG64S = [
  "TransportBytesSent",
  "TransportBytesReceived",
  "TunBytesSent",
  "TunBytesReceived",
] as const;

export function encodeStats(s: OvpnStats): Uint8Array {
  const [b, dv] = alloc(SIZE.STATS);
  STATS_LONGS.forEach((k, i) => dv.setInt32(i * 4, s[k], true));
  STATS_LONG64S.forEach((k, i) => dv.setBigInt64(32 + i * 8, BigInt(s[k]), true));
  return b;
}

export function decodeStats(b: Uint8Array): OvpnStats {
  const dv = view(b, SIZE.STATS, "OVPN_STATS");
  const s = {} as OvpnStats;
  STATS_LONGS.forEach((k, i) => (s[k] = dv.getInt32(i * 4, true)));
  STATS_LONG64S.forEach((k, i) => (s[k] = Number(dv.getBigInt64(32 + i * 8, true))));
  return s;
}

/** One direction of OVPN_CRYPTO_DATA. */
export interface KeyDirection {
  key: Uint8Array; // up to 32 bytes
  nonceTail: Uint8Array; // 8 bytes
  /** KeyLen when it differs from key.length (epoch keys: 32 bytes of secret, KeyLen = the cipher's key length). */
  keyLen?: number;
}

/** OVPN_CRYPTO_DATA (and the V2 extension). */
export interface CryptoData {
  encrypt: KeyDirection;
  decrypt: KeyDirection;
  keySlot: number;
  cipherAlg: number;
  keyId: number;
  peerId: number;
  /** Only for OVPN_CRYPTO_DATA_V2. */
  cryptoOptions?: number;
}

function writeKeyDirection(b: Uint8Array, off: number, k: KeyDirection): void {
  if (k.key.length > 32) throw new Error("key longer than 32 bytes");
  if (k.nonceTail.length !== 8 && k.nonceTail.length !== 0) throw new Error("nonce tail must have 8 bytes");
  b.set(k.key, off);
  b[off + 32] = k.keyLen ?? k.key.length;
  b.set(k.nonceTail, off + 33);
}

function readKeyDirection(b: Uint8Array, off: number): KeyDirection {
  const len = b[off + 32];
  if (len > 32) throw new Error(`KeyLen ${len} is larger than 32`);
  return { key: b.slice(off, off + len), nonceTail: b.slice(off + 33, off + 41) };
}

export function encodeCryptoData(c: CryptoData): Uint8Array {
  const v2 = c.cryptoOptions !== undefined;
  const [b, dv] = alloc(v2 ? SIZE.CRYPTO_DATA_V2 : SIZE.CRYPTO_DATA);
  writeKeyDirection(b, 0, c.encrypt);
  writeKeyDirection(b, 41, c.decrypt);
  dv.setUint32(84, c.keySlot, true);
  dv.setUint32(88, c.cipherAlg, true);
  b[92] = c.keyId;
  dv.setUint32(96, c.peerId, true);
  if (v2) dv.setUint32(100, c.cryptoOptions!, true);
  return b;
}

export function decodeCryptoData(b: Uint8Array): CryptoData {
  const dv = view(b, SIZE.CRYPTO_DATA, "OVPN_CRYPTO_DATA");
  const c: CryptoData = {
    encrypt: readKeyDirection(b, 0),
    decrypt: readKeyDirection(b, 41),
    keySlot: dv.getUint32(84, true),
    cipherAlg: dv.getUint32(88, true),
    keyId: b[92],
    peerId: dv.getUint32(96, true),
  };
  if (b.length >= SIZE.CRYPTO_DATA_V2) c.cryptoOptions = dv.getUint32(100, true);
  return c;
}

/** OVPN_SET_PEER (-1 in a field: unchanged). */
export interface SetPeer {
  keepaliveInterval: number;
  keepaliveTimeout: number;
  mss: number;
}

export function encodeSetPeer(p: SetPeer): Uint8Array {
  const [b, dv] = alloc(SIZE.SET_PEER);
  dv.setInt32(0, p.keepaliveInterval, true);
  dv.setInt32(4, p.keepaliveTimeout, true);
  dv.setInt32(8, p.mss, true);
  return b;
}

export function decodeSetPeer(b: Uint8Array): SetPeer {
  const dv = view(b, SIZE.SET_PEER, "OVPN_SET_PEER");
  return {
    keepaliveInterval: dv.getInt32(0, true),
    keepaliveTimeout: dv.getInt32(4, true),
    mss: dv.getInt32(8, true),
  };
}

/** OVPN_VERSION. */
export interface Version {
  major: number;
  minor: number;
  patch: number;
}

export function encodeVersion(v: Version): Uint8Array {
  const [b, dv] = alloc(SIZE.VERSION);
  dv.setInt32(0, v.major, true);
  dv.setInt32(4, v.minor, true);
  dv.setInt32(8, v.patch, true);
  return b;
}

export function decodeVersion(b: Uint8Array): Version {
  const dv = view(b, SIZE.VERSION, "OVPN_VERSION");
  return { major: dv.getInt32(0, true), minor: dv.getInt32(4, true), patch: dv.getInt32(8, true) };
}

/** Whether version `v` is at least `major.minor.patch`. */
export function versionAtLeast(v: Version, major: number, minor: number, patch = 0): boolean {
  if (v.major !== major) return v.major > major;
  if (v.minor !== minor) return v.minor > minor;
  return v.patch >= patch;
}

/** OVPN_SET_MODE. */
export function encodeSetMode(mode: number): Uint8Array {
  const [b, dv] = alloc(SIZE.SET_MODE);
  dv.setUint32(0, mode, true);
  return b;
}

/** OVPN_MP_START_VPN. */
export interface MpStartVpn {
  listen: SockAddr;
  ipv6Only: boolean;
}

export function encodeMpStartVpn(s: MpStartVpn): Uint8Array {
  const [b, dv] = alloc(SIZE.MP_START_VPN);
  writeSockAddr(dv, 0, s.listen);
  dv.setInt32(28, s.ipv6Only ? 1 : 0, true);
  return b;
}

/** OVPN_MP_NEW_PEER. */
export interface MpNewPeer {
  local: SockAddr;
  remote: SockAddr;
  vpnAddr4?: string;
  vpnAddr6?: string;
  peerId: number;
}

export function encodeMpNewPeer(p: MpNewPeer): Uint8Array {
  const [b, dv] = alloc(SIZE.MP_NEW_PEER);
  writeSockAddr(dv, 0, p.local);
  writeSockAddr(dv, 28, p.remote);
  if (p.vpnAddr4) b.set(mustIPv4(p.vpnAddr4), 56);
  if (p.vpnAddr6) b.set(mustIPv6(p.vpnAddr6), 60);
  dv.setUint32(76, p.peerId, true);
  return b;
}

function mustIPv4(s: string): Uint8Array {
  const a = parseIPv4(s);
  if (!a) throw new Error(`'${s}' is not an IPv4 address`);
  return a;
}

function mustIPv6(s: string): Uint8Array {
  const a = parseIPv6(s);
  if (!a) throw new Error(`'${s}' is not an IPv6 address`);
  return a;
}

/** OVPN_MP_SET_PEER. */
export function encodeMpSetPeer(peerId: number, p: SetPeer): Uint8Array {
  const [b, dv] = alloc(SIZE.MP_SET_PEER);
  dv.setInt32(0, peerId, true);
  b.set(encodeSetPeer(p), 4);
  return b;
}

/** OVPN_MP_DEL_PEER, OVPN_MP_SWAP_KEYS and OVPN_GET_PEER_STATS: a peer id (-1 = all for stats). */
export function encodePeerId(peerId: number): Uint8Array {
  const [b, dv] = alloc(4);
  dv.setInt32(0, peerId, true);
  return b;
}

/** OVPN_MP_IROUTE. */
export interface MpIroute {
  address: string;
  netbits: number;
  peerId: number;
}

export function encodeMpIroute(r: MpIroute): Uint8Array {
  const [b, dv] = alloc(SIZE.MP_IROUTE);
  const v4 = parseIPv4(r.address);
  b.set(v4 ?? mustIPv6(r.address), 0);
  dv.setInt32(16, r.netbits, true);
  dv.setInt32(20, r.peerId, true);
  dv.setInt32(24, v4 ? 0 : 1, true);
  return b;
}

/** OVPN_NOTIFY_EVENT. */
export interface NotifyEvent {
  cmd: number;
  peerId: number;
  delPeerReason: number;
  floatAddress: SockAddr | null;
}

export function encodeNotifyEvent(e: NotifyEvent): Uint8Array {
  const [b, dv] = alloc(SIZE.NOTIFY_EVENT);
  dv.setInt32(0, e.cmd, true);
  dv.setInt32(4, e.peerId, true);
  dv.setInt32(8, e.delPeerReason, true);
  if (e.floatAddress) writeSockAddr(dv, 16, e.floatAddress);
  return b;
}

export function decodeNotifyEvent(b: Uint8Array): NotifyEvent {
  const dv = view(b, SIZE.NOTIFY_EVENT, "OVPN_NOTIFY_EVENT");
  return {
    cmd: dv.getInt32(0, true),
    peerId: dv.getInt32(4, true),
    delPeerReason: dv.getInt32(8, true),
    floatAddress: readSockAddr(dv, 16),
  };
}

/** OVPN_PEER_STATS. */
export interface PeerStats {
  peerId: number;
  linkRxBytes: number;
  linkTxBytes: number;
  vpnRxBytes: number;
  vpnTxBytes: number;
}

export function encodePeerStats(s: PeerStats): Uint8Array {
  const [b, dv] = alloc(SIZE.PEER_STATS);
  dv.setInt32(0, s.peerId, true);
  dv.setBigInt64(8, BigInt(s.linkRxBytes), true);
  dv.setBigInt64(16, BigInt(s.linkTxBytes), true);
  dv.setBigInt64(24, BigInt(s.vpnRxBytes), true);
  dv.setBigInt64(32, BigInt(s.vpnTxBytes), true);
  return b;
}

/** Decode an array of OVPN_PEER_STATS (GET_PEER_STATS may return several). */
export function decodePeerStats(b: Uint8Array): PeerStats[] {
  const out: PeerStats[] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  for (let off = 0; off + SIZE.PEER_STATS <= b.length; off += SIZE.PEER_STATS) {
    out.push({
      peerId: dv.getInt32(off, true),
      linkRxBytes: Number(dv.getBigInt64(off + 8, true)),
      linkTxBytes: Number(dv.getBigInt64(off + 16, true)),
      vpnRxBytes: Number(dv.getBigInt64(off + 24, true)),
      vpnTxBytes: Number(dv.getBigInt64(off + 32, true)),
    });
  }
  return out;
}

/** Features of the driver by version: multipeer and NEW_KEY_V2 need 2.4.0, GET_PEER_STATS 2.7.0. */
export function driverFeatures(v: Version | null): string[] {
  if (!v) return [];
  const f = ["p2p"];
  if (versionAtLeast(v, 2, 4)) f.push("multipeer", "new-key-v2");
  if (versionAtLeast(v, 2, 7)) f.push("peer-stats");
  return f;
}
