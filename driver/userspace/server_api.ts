/**
 * What a server backend offers `start --mode server` (the userspace servers and the ovpn-dco driver in
 * multipeer mode alike): the operations, the peer description and the notifications.
 * @module
 */
import type { DeviceEndReason } from "../device.ts";
import { formatEndpoint, type SetPeer, type SockAddr } from "../uapi.ts";
import type { KeyMaterial, KeySlotId } from "../datachannel/keyslot.ts";
import type { Stats } from "../datachannel/stats.ts";

/** Why a peer was deleted (OVPN_DEL_PEER_REASON). */
export type DelPeerReason = "teardown" | "userspace" | "expired" | "transport-error" | "transport-disconnect";

/** A notification (OVPN_NOTIFY_EVENT). */
export type ServerEvent =
  | { cmd: "DEL_PEER"; peerId: number; reason: DelPeerReason }
  | { cmd: "FLOAT_PEER"; peerId: number; address: SockAddr }
  | { cmd: "SWAP_KEYS"; peerId: number }
  /** Something about the peer the user should know (for example: it restarted with the same key). */
  | { cmd: "NOTICE"; peerId: number; text: string };

/** What `start --mode server` drives: this device, or the ovpn-dco driver in multipeer mode. */
export interface ServerBackend {
  readonly backend: string;
  /** The transport its peers use. */
  readonly proto: "udp" | "tcp";
  readonly ifname: string;
  readonly ended: Promise<DeviceEndReason>;
  configureInterface(o: { mtu: number; addresses: string[] }): Promise<void>;
  start(local: SockAddr): Promise<SockAddr>;
  newPeer(spec: ServerPeerSpec): Promise<void>;
  newKey(slot: KeySlotId, key: KeyMaterial, peerId: number): Promise<void>;
  swapKeys(peerId: number): Promise<void>;
  delKey(slot: KeySlotId, peerId: number): Promise<void>;
  nextEpoch(peerId: number): Promise<void>;
  setPeer(peerId: number, s: SetPeer): Promise<void>;
  delPeer(peerId: number): Promise<void>;
  route(peerId: number, cidr: string, add: boolean): Promise<string>;
  peerStats(peerId: number): Promise<Stats>;
  getStats(): Promise<Stats>;
  drops(): Record<string, number>;
  peerInfo(peerId: number): Record<string, unknown>;
  info(): Record<string, unknown>;
  peerIds(): number[];
  onEvent(fn: (e: ServerEvent) => void): () => void;
  readControl(): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** A notification as one line of text. */
export function eventText(e: ServerEvent): string {
  return e.cmd === "DEL_PEER"
    ? `peer ${e.peerId} deleted (${e.reason})`
    : e.cmd === "FLOAT_PEER"
    ? `peer ${e.peerId} floated to ${formatEndpoint(e.address)}`
    : e.cmd === "NOTICE"
    ? `peer ${e.peerId}: ${e.text}`
    : `peer ${e.peerId}: keys swapped`;
}

/** A peer as `peer new` gives it. */
export interface ServerPeerSpec {
  peerId: number;
  remote: SockAddr;
  /** Its VPN addresses (IPv4 and/or IPv6): routed to it as /32 and /128. */
  vpnIps: string[];
}

/** What every server backend keeps of a peer's settings. */
export interface PeerSettings {
  spec: ServerPeerSpec;
  keepalive: { interval: number; timeout: number };
  mss: number;
  keys: { primary?: number; secondary?: number; cipher?: string };
  iroutes: string[];
}

/** A peer's settings as `peer list` and `peer get` show them (the backend adds its epochs and drops). */
export function peerSettings(peerId: number, p: PeerSettings): Record<string, unknown> {
  return {
    peerId,
    remote: p.spec.remote,
    vpnIps: p.spec.vpnIps,
    iroutes: p.iroutes,
    keepaliveInterval: p.keepalive.interval,
    keepaliveTimeout: p.keepalive.timeout,
    mss: p.mss,
    cipher: p.keys.cipher ?? null,
    primaryKeyId: p.keys.primary ?? null,
    secondaryKeyId: p.keys.secondary ?? null,
  };
}

/** The subscribers of a server's notifications (`onEvent` / emit), shared by every server backend. */
export class EventListeners {
  #set = new Set<(e: ServerEvent) => void>();

  /** Subscribe; returns the unsubscribe function. */
  on(fn: (e: ServerEvent) => void): () => void {
    this.#set.add(fn);
    return () => this.#set.delete(fn);
  }

  emit(e: ServerEvent): void {
    for (const l of this.#set) l(e);
  }
}
