/**
 * The Device interface: the IOCTL surface of ovpn-dco-win, which every backend implements (the kernel
 * driver on Windows, the TypeScript engine over WinTUN or a Linux tun), so the CLI never cares which
 * one it drives.
 *
 * @example
 * ```ts
 * import type { Device } from "./device.ts";
 * async function bringUp(d: Device) {
 *   await d.newPeer({ local: { address: "0.0.0.0", port: 1194 }, remote: { address: "10.0.0.2", port: 1194 }, proto: "udp" });
 *   await d.startVpn();
 * }
 * ```
 * @module
 */
import type { KeyMaterial, KeySlotId } from "./datachannel/keyslot.ts";
import type { Stats } from "./datachannel/stats.ts";
import type { NewPeer, SetPeer, Version } from "./uapi.ts";

/** What a device reports when the tunnel ends on its own. */
export type DeviceEndReason =
  | { kind: "expired"; message: string } // keepalive timeout (ERROR_NETNAME_DELETED)
  // the TCP connection ended (ERROR_CONNECTION_ABORTED): closed by the peer, or broken (`error`: reset, failed)
  | { kind: "aborted"; message: string; error?: boolean }
  | { kind: "failed"; message: string }; // anything else fatal

/** NEW_PEER plus what the userspace engines also need. */
export interface PeerConfig extends NewPeer {
  /** DATA_V2 peer id (the driver takes it with NEW_KEY). */
  peerId?: number;
  /** TCP: accept one connection instead of connecting. */
  listen?: boolean;
  /** TCP connect / accept timeout in milliseconds. */
  connectTimeoutMs?: number;
}

/** The device surface (mirrors OVPN_IOCTL_*). */
export interface Device {
  /** `dco`, `wintun` or `tun`. */
  readonly backend: string;
  /** Interface name as the OS shows it. */
  readonly ifname: string;
  /** Whether addresses are set after START_VPN (the driver's documented order) rather than first. */
  readonly configureAfterStart: boolean;
  /** Set the MTU and addresses (none: leave them alone) and bring the interface up. */
  configureInterface(o: { mtu: number; addresses: string[] }): Promise<void>;
  /** NEW_PEER: UDP completes at once; TCP completes when connected (or accepted). */
  newPeer(p: PeerConfig): Promise<void>;
  /** NEW_KEY into a slot. */
  newKey(slot: KeySlotId, key: KeyMaterial, peerId: number): Promise<void>;
  /**
   * Epoch keys: move the primary key's sender to the next epoch now (the peer follows). Userspace engines
   * only: the driver moves epochs by itself and has no call for it.
   */
  nextEpoch(): Promise<void>;
  /** SWAP_KEYS. */
  swapKeys(): Promise<void>;
  /** Delete a key slot (userspace only: the driver has no such call). */
  delKey(slot: KeySlotId): Promise<void>;
  /** SET_PEER: keepalive interval/timeout in seconds and MSS; -1 leaves a field unchanged. */
  setPeer(p: SetPeer): Promise<void>;
  /** START_VPN. */
  startVpn(): Promise<void>;
  /** DEL_PEER: drops the peer, keeps the device. */
  delPeer(): Promise<void>;
  /** GET_STATS. */
  getStats(): Promise<Stats>;
  /** GET_VERSION (null where the backend has no driver). */
  getVersion(): Promise<Version | null>;
  /** Next control packet from the peer (one pending read). Rejects when the tunnel ends. */
  readControl(): Promise<Uint8Array>;
  /** Send one control packet unchanged (at most 1500 bytes). */
  writeControl(p: Uint8Array): Promise<void>;
  /** Resolves once, when the tunnel ends by itself (timeout, TCP close, fatal error). */
  readonly ended: Promise<DeviceEndReason>;
  /** Current peer settings, for `peer get`. */
  peerInfo(): Record<string, unknown>;
  /** Close everything (idempotent). */
  close(): Promise<void>;
  /** Userspace backends: called with what the device noticed about its peer (also logged), for `events`. */
  onNotice?: (text: string) => void;
}

/** A failure of a device operation; the message is for the user. */
export class DeviceError extends Error {
  constructor(
    message: string,
    readonly kind: "busy" | "privilege" | "missing" | "state" | "io" | "timeout" = "io",
  ) {
    super(message);
  }
}
