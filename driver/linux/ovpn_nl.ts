/**
 * Linux's `ovpn` module over netlink, pure (no I/O): the generic netlink family `ovpn` (commands,
 * attributes and enums as `include/uapi/linux/ovpn.h`, generated from `Documentation/netlink/specs/ovpn.yaml`)
 * and the rtnetlink messages that create and delete an ovpn interface (`IFLA_INFO_KIND` "ovpn" with
 * `IFLA_OVPN_MODE`). Builders return whole netlink messages; the family id comes from the controller at
 * run time (it differs between kernels).
 *
 * @example
 * ```ts
 * import { peerDelRequest } from "./ovpn_nl.ts";
 * const msg = peerDelRequest(0x24, 1, 5, 0); // PEER_DEL of peer 0 on ifindex 5
 * ```
 * @module
 */
import { Attrs, GENL_HDRLEN, NLM_F, NlMsg } from "./netlink.ts";
import { formatIP, type SockAddr } from "../uapi.ts";
import { addrBytes } from "../userspace/sockets_common.ts";

export const OVPN_FAMILY_NAME = "ovpn";
export const OVPN_FAMILY_VERSION = 1;
export const OVPN_MCGRP_PEERS = "peers";
export const OVPN_NONCE_TAIL_SIZE = 8;

export const OVPN_CIPHER_ALG = { NONE: 0, AES_GCM: 1, CHACHA20_POLY1305: 2 } as const;
export const OVPN_DEL_PEER_REASON = [
  "teardown",
  "userspace",
  "expired",
  "transport-error",
  "transport-disconnect",
] as const;
export type OvpnDelReason = typeof OVPN_DEL_PEER_REASON[number];

export const OVPN_A_PEER = {
  ID: 1,
  REMOTE_IPV4: 2,
  REMOTE_IPV6: 3,
  REMOTE_IPV6_SCOPE_ID: 4,
  REMOTE_PORT: 5,
  SOCKET: 6,
  SOCKET_NETNSID: 7,
  VPN_IPV4: 8,
  VPN_IPV6: 9,
  LOCAL_IPV4: 10,
  LOCAL_IPV6: 11,
  LOCAL_PORT: 12,
  KEEPALIVE_INTERVAL: 13,
  KEEPALIVE_TIMEOUT: 14,
  DEL_REASON: 15,
  VPN_RX_BYTES: 16,
  VPN_TX_BYTES: 17,
  VPN_RX_PACKETS: 18,
  VPN_TX_PACKETS: 19,
  LINK_RX_BYTES: 20,
  LINK_TX_BYTES: 21,
  LINK_RX_PACKETS: 22,
  LINK_TX_PACKETS: 23,
  TX_ID: 24,
} as const;

export const OVPN_A_KEYCONF = {
  PEER_ID: 1,
  SLOT: 2,
  KEY_ID: 3,
  CIPHER_ALG: 4,
  ENCRYPT_DIR: 5,
  DECRYPT_DIR: 6,
} as const;
export const OVPN_A_KEYDIR = { CIPHER_KEY: 1, NONCE_TAIL: 2 } as const;
export const OVPN_A = { IFINDEX: 1, PEER: 2, KEYCONF: 3 } as const;

export const OVPN_CMD = {
  PEER_NEW: 1,
  PEER_SET: 2,
  PEER_GET: 3,
  PEER_DEL: 4,
  PEER_DEL_NTF: 5,
  KEY_NEW: 6,
  KEY_GET: 7,
  KEY_SWAP: 8,
  KEY_SWAP_NTF: 9,
  KEY_DEL: 10,
  PEER_FLOAT_NTF: 11,
} as const;

/** The module's interface modes (IFLA_OVPN_MODE). */
export const OVPN_MODE = { P2P: 0, MP: 1 } as const;

/** rtnetlink. */
export const RTM = { NEWLINK: 16, DELLINK: 17, GETLINK: 18 } as const;
export const IFLA = { IFNAME: 3, MTU: 4, LINKINFO: 18, STATS64: 23 } as const;
export const IFLA_INFO = { KIND: 1, DATA: 2 } as const;
export const IFLA_OVPN_MODE = 1;
const AF_UNSPEC = 0;

const req = NLM_F.REQUEST | NLM_F.ACK;

/** struct ifinfomsg (16 bytes): family, type, index, flags, change. */
function ifinfomsg(index = 0): Uint8Array {
  const b = new Uint8Array(16);
  b[0] = AF_UNSPEC;
  new DataView(b.buffer).setInt32(4, index, true);
  return b;
}

/** RTM_NEWLINK: create ovpn interface `name` in `mode` (fails if the name exists: NLM_F_EXCL). */
export function newLinkRequest(name: string, mode: number, seq: number): Uint8Array {
  return new NlMsg(RTM.NEWLINK, req | NLM_F.CREATE | NLM_F.EXCL, seq).raw(ifinfomsg())
    .str(IFLA.IFNAME, name)
    .nest(IFLA.LINKINFO).str(IFLA_INFO.KIND, "ovpn")
    .nest(IFLA_INFO.DATA).u8(IFLA_OVPN_MODE, mode).endNest()
    .endNest().end();
}

/** RTM_DELLINK of an interface by index. */
export function delLinkRequest(index: number, seq: number): Uint8Array {
  return new NlMsg(RTM.DELLINK, req, seq).raw(ifinfomsg(index)).end();
}

/** RTM_GETLINK of an interface by name. */
export function getLinkRequest(name: string, seq: number): Uint8Array {
  return new NlMsg(RTM.GETLINK, req, seq).raw(ifinfomsg()).str(IFLA.IFNAME, name).end();
}

/** What RTM_GETLINK tells of an interface. */
export interface LinkInfo {
  index: number;
  name: string;
  kind: string | null;
  /** IFLA_OVPN_MODE of an ovpn interface. */
  mode: number | null;
  mtu: number;
  /** rtnl_link_stats64: the interface's own counters (the module counts its drops here). */
  stats: {
    rxPackets: number;
    txPackets: number;
    rxBytes: number;
    txBytes: number;
    rxErrors: number;
    txErrors: number;
    rxDropped: number;
    txDropped: number;
  } | null;
}

/** Decode an RTM_NEWLINK answer (the payload after the netlink header). */
export function parseLink(payload: Uint8Array): LinkInfo {
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const a = new Attrs(payload.subarray(16));
  const li = a.nested(IFLA.LINKINFO);
  const s = a.bytes(IFLA.STATS64);
  let stats: LinkInfo["stats"] = null;
  if (s && s.length >= 64) {
    const sv = new DataView(s.buffer, s.byteOffset, s.byteLength);
    const q = (i: number) => Number(sv.getBigUint64(i * 8, true));
    stats = {
      rxPackets: q(0),
      txPackets: q(1),
      rxBytes: q(2),
      txBytes: q(3),
      rxErrors: q(4),
      txErrors: q(5),
      rxDropped: q(6),
      txDropped: q(7),
    };
  }
  return {
    index: dv.getInt32(4, true),
    name: a.str(IFLA.IFNAME) ?? "",
    kind: li?.str(IFLA_INFO.KIND) ?? null,
    mode: li?.nested(IFLA_INFO.DATA)?.u8(IFLA_OVPN_MODE) ?? null,
    mtu: a.u32(IFLA.MTU) ?? 0,
    stats,
  };
}

function ovpnMsg(family: number, cmd: number, seq: number, ifindex: number, flags = req): NlMsg {
  return new NlMsg(family, flags, seq).genl(cmd, OVPN_FAMILY_VERSION).u32(OVPN_A.IFINDEX, ifindex);
}

/** The remote (and local) endpoint of a peer as PEER_NEW/PEER_SET attributes. */
function putEndpoint(m: NlMsg, remote: SockAddr, localAddress?: string): void {
  const r = addrBytes(remote.address);
  if (r.length === 4) {
    m.attr(OVPN_A_PEER.REMOTE_IPV4, r);
  } else {
    m.attr(OVPN_A_PEER.REMOTE_IPV6, r);
  }
  m.be16(OVPN_A_PEER.REMOTE_PORT, remote.port);
  if (localAddress && !/^(0\.0\.0\.0|::)$/.test(localAddress)) {
    const l = addrBytes(localAddress);
    if (l.length === r.length) m.attr(l.length === 4 ? OVPN_A_PEER.LOCAL_IPV4 : OVPN_A_PEER.LOCAL_IPV6, l);
  }
}

/** What PEER_NEW takes. */
export interface OvpnPeerNew {
  id: number;
  /** The UDP or TCP socket's fd (in this process). */
  socket: number;
  /** UDP only (a TCP socket is connected already). */
  remote?: SockAddr;
  /** UDP only: the local address to send from (not 0.0.0.0 / ::). */
  localAddress?: string;
  /** Multipeer mode: the peer's VPN addresses (one IPv4, one IPv6 at most). */
  vpnIpv4?: string;
  vpnIpv6?: string;
  keepalive?: { interval: number; timeout: number };
}

/** OVPN_CMD_PEER_NEW. */
export function peerNewRequest(family: number, seq: number, ifindex: number, p: OvpnPeerNew): Uint8Array {
  const m = ovpnMsg(family, OVPN_CMD.PEER_NEW, seq, ifindex).nest(OVPN_A.PEER)
    .u32(OVPN_A_PEER.ID, p.id).u32(OVPN_A_PEER.SOCKET, p.socket);
  if (p.remote) putEndpoint(m, p.remote, p.localAddress);
  if (p.vpnIpv4) m.attr(OVPN_A_PEER.VPN_IPV4, addrBytes(p.vpnIpv4));
  if (p.vpnIpv6) m.attr(OVPN_A_PEER.VPN_IPV6, addrBytes(p.vpnIpv6));
  if (p.keepalive) {
    m.u32(OVPN_A_PEER.KEEPALIVE_INTERVAL, p.keepalive.interval)
      .u32(OVPN_A_PEER.KEEPALIVE_TIMEOUT, p.keepalive.timeout);
  }
  return m.endNest().end();
}

/** What PEER_SET changes (absent: unchanged). */
export interface OvpnPeerSet {
  id: number;
  remote?: SockAddr;
  keepalive?: { interval: number; timeout: number };
}

/** OVPN_CMD_PEER_SET. */
export function peerSetRequest(family: number, seq: number, ifindex: number, p: OvpnPeerSet): Uint8Array {
  const m = ovpnMsg(family, OVPN_CMD.PEER_SET, seq, ifindex).nest(OVPN_A.PEER).u32(OVPN_A_PEER.ID, p.id);
  if (p.remote) putEndpoint(m, p.remote);
  if (p.keepalive) {
    m.u32(OVPN_A_PEER.KEEPALIVE_INTERVAL, p.keepalive.interval)
      .u32(OVPN_A_PEER.KEEPALIVE_TIMEOUT, p.keepalive.timeout);
  }
  return m.endNest().end();
}

/** OVPN_CMD_PEER_GET of one peer, or (id undefined) a dump of every peer. */
export function peerGetRequest(family: number, seq: number, ifindex: number, id?: number): Uint8Array {
  if (id === undefined) {
    return ovpnMsg(family, OVPN_CMD.PEER_GET, seq, ifindex, NLM_F.REQUEST | NLM_F.DUMP).end();
  }
  return ovpnMsg(family, OVPN_CMD.PEER_GET, seq, ifindex).nest(OVPN_A.PEER).u32(OVPN_A_PEER.ID, id)
    .endNest().end();
}

/** OVPN_CMD_PEER_DEL. */
export function peerDelRequest(family: number, seq: number, ifindex: number, id: number): Uint8Array {
  return ovpnMsg(family, OVPN_CMD.PEER_DEL, seq, ifindex).nest(OVPN_A.PEER).u32(OVPN_A_PEER.ID, id)
    .endNest().end();
}

/** What KEY_NEW takes (the AEAD key and 8-byte nonce tail of each direction). */
export interface OvpnKeyNew {
  peerId: number;
  slot: 0 | 1;
  keyId: number;
  cipherAlg: number;
  encrypt: { key: Uint8Array; nonceTail: Uint8Array };
  decrypt: { key: Uint8Array; nonceTail: Uint8Array };
}

/** OVPN_CMD_KEY_NEW. The caller wipes the returned buffer after sending (it holds key bytes). */
export function keyNewRequest(family: number, seq: number, ifindex: number, k: OvpnKeyNew): Uint8Array {
  const m = ovpnMsg(family, OVPN_CMD.KEY_NEW, seq, ifindex).nest(OVPN_A.KEYCONF)
    .u32(OVPN_A_KEYCONF.PEER_ID, k.peerId).u32(OVPN_A_KEYCONF.SLOT, k.slot)
    .u32(OVPN_A_KEYCONF.KEY_ID, k.keyId).u32(OVPN_A_KEYCONF.CIPHER_ALG, k.cipherAlg);
  for (
    const [attr, d] of [[OVPN_A_KEYCONF.ENCRYPT_DIR, k.encrypt], [
      OVPN_A_KEYCONF.DECRYPT_DIR,
      k.decrypt,
    ]] as const
  ) {
    m.nest(attr).attr(OVPN_A_KEYDIR.CIPHER_KEY, d.key).attr(OVPN_A_KEYDIR.NONCE_TAIL, d.nonceTail).endNest();
  }
  return m.endNest().end();
}

/** OVPN_CMD_KEY_GET of a slot (what the kernel holds there: key id and cipher; never key bytes). */
export function keyGetRequest(family: number, seq: number, ifindex: number, peerId: number, slot: number) {
  return ovpnMsg(family, OVPN_CMD.KEY_GET, seq, ifindex).nest(OVPN_A.KEYCONF)
    .u32(OVPN_A_KEYCONF.PEER_ID, peerId).u32(OVPN_A_KEYCONF.SLOT, slot).endNest().end();
}

/** OVPN_CMD_KEY_SWAP. */
export function keySwapRequest(family: number, seq: number, ifindex: number, peerId: number): Uint8Array {
  return ovpnMsg(family, OVPN_CMD.KEY_SWAP, seq, ifindex).nest(OVPN_A.KEYCONF)
    .u32(OVPN_A_KEYCONF.PEER_ID, peerId).endNest().end();
}

/** OVPN_CMD_KEY_DEL. */
export function keyDelRequest(family: number, seq: number, ifindex: number, peerId: number, slot: number) {
  return ovpnMsg(family, OVPN_CMD.KEY_DEL, seq, ifindex).nest(OVPN_A.KEYCONF)
    .u32(OVPN_A_KEYCONF.PEER_ID, peerId).u32(OVPN_A_KEYCONF.SLOT, slot).endNest().end();
}

/** A peer as PEER_GET describes it. */
export interface OvpnPeer {
  id: number;
  remote: SockAddr | null;
  local: SockAddr | null;
  vpnIpv4: string | null;
  vpnIpv6: string | null;
  keepaliveInterval: number;
  keepaliveTimeout: number;
  vpnRxBytes: number;
  vpnTxBytes: number;
  vpnRxPackets: number;
  vpnTxPackets: number;
  linkRxBytes: number;
  linkTxBytes: number;
  linkRxPackets: number;
  linkTxPackets: number;
}

/** Decode a PEER_GET answer (the payload after the netlink header). */
export function parsePeer(payload: Uint8Array): OvpnPeer {
  const top = new Attrs(payload.subarray(GENL_HDRLEN));
  const p = top.nested(OVPN_A.PEER) ?? new Attrs(new Uint8Array(0));
  const ip = (t: number) => {
    const b = p.bytes(t);
    return b ? formatIP(b) : null;
  };
  const port = p.be16(OVPN_A_PEER.REMOTE_PORT);
  const remoteIp = ip(OVPN_A_PEER.REMOTE_IPV4) ?? ip(OVPN_A_PEER.REMOTE_IPV6);
  const localIp = ip(OVPN_A_PEER.LOCAL_IPV4) ?? ip(OVPN_A_PEER.LOCAL_IPV6);
  const localPort = p.be16(OVPN_A_PEER.LOCAL_PORT);
  const n = (t: number) => p.uint(t) ?? 0;
  return {
    id: p.u32(OVPN_A_PEER.ID) ?? 0,
    remote: remoteIp !== null && port !== undefined ? { address: remoteIp, port } : null,
    local: localPort !== undefined ? { address: localIp ?? "0.0.0.0", port: localPort } : null,
    vpnIpv4: ip(OVPN_A_PEER.VPN_IPV4),
    vpnIpv6: ip(OVPN_A_PEER.VPN_IPV6),
    keepaliveInterval: p.u32(OVPN_A_PEER.KEEPALIVE_INTERVAL) ?? 0,
    keepaliveTimeout: p.u32(OVPN_A_PEER.KEEPALIVE_TIMEOUT) ?? 0,
    vpnRxBytes: n(OVPN_A_PEER.VPN_RX_BYTES),
    vpnTxBytes: n(OVPN_A_PEER.VPN_TX_BYTES),
    vpnRxPackets: n(OVPN_A_PEER.VPN_RX_PACKETS),
    vpnTxPackets: n(OVPN_A_PEER.VPN_TX_PACKETS),
    linkRxBytes: n(OVPN_A_PEER.LINK_RX_BYTES),
    linkTxBytes: n(OVPN_A_PEER.LINK_TX_BYTES),
    linkRxPackets: n(OVPN_A_PEER.LINK_RX_PACKETS),
    linkTxPackets: n(OVPN_A_PEER.LINK_TX_PACKETS),
  };
}

/** A notification of the `peers` multicast group. */
export type OvpnNotification =
  | { cmd: "PEER_DEL"; ifindex: number; peerId: number; reason: OvpnDelReason }
  | { cmd: "PEER_FLOAT"; ifindex: number; peerId: number; remote: SockAddr }
  | { cmd: "KEY_SWAP"; ifindex: number; peerId: number; keyId: number };

/** Decode a notification (its genl command and payload after the netlink header); null if not one. */
export function parseNotification(payload: Uint8Array): OvpnNotification | null {
  if (payload.length < GENL_HDRLEN) return null;
  const cmd = payload[0];
  const top = new Attrs(payload.subarray(GENL_HDRLEN));
  const ifindex = top.u32(OVPN_A.IFINDEX) ?? 0;
  if (cmd === OVPN_CMD.PEER_DEL_NTF || cmd === OVPN_CMD.PEER_FLOAT_NTF) {
    const p = top.nested(OVPN_A.PEER);
    if (!p) return null;
    const peerId = p.u32(OVPN_A_PEER.ID) ?? 0;
    if (cmd === OVPN_CMD.PEER_DEL_NTF) {
      const r = p.u32(OVPN_A_PEER.DEL_REASON) ?? 0;
      return { cmd: "PEER_DEL", ifindex, peerId, reason: OVPN_DEL_PEER_REASON[r] ?? "teardown" };
    }
    const b = p.bytes(OVPN_A_PEER.REMOTE_IPV4) ?? p.bytes(OVPN_A_PEER.REMOTE_IPV6);
    const port = p.be16(OVPN_A_PEER.REMOTE_PORT);
    if (!b || port === undefined) return null;
    return { cmd: "PEER_FLOAT", ifindex, peerId, remote: { address: formatIP(b), port } };
  }
  if (cmd === OVPN_CMD.KEY_SWAP_NTF) {
    const k = top.nested(OVPN_A.KEYCONF);
    if (!k) return null;
    // the kernel puts the key id as a u16 here (nla_put_u16), where KEY_NEW takes a u32
    return {
      cmd: "KEY_SWAP",
      ifindex,
      peerId: k.u32(OVPN_A_KEYCONF.PEER_ID) ?? 0,
      keyId: k.u16(OVPN_A_KEYCONF.KEY_ID) ?? 0,
    };
  }
  return null;
}
