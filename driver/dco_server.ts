/**
 * Server mode on the ovpn-dco-win driver (2.4.0 and newer): the multipeer half of its user API, driven in
 * the order OpenVPN 2.7 uses (src/openvpn/dco_win.c): SET_MODE(MP) → MP_START_VPN (the bound address comes
 * back) → per peer MP_NEW_PEER → NEW_KEY with the peer id → MP_SET_PEER → MP_ADD_IROUTE; rekeys are NEW_KEY
 * then MP_SWAP_KEYS; MP_DEL_PEER. One NOTIFY_EVENT is always pending and re-armed after each completion
 * (DEL_PEER with its reason, FLOAT_PEER with the new address, SWAP_KEYS). GET_PEER_STATS (2.7.0 and newer)
 * with peer id -1 returns every peer; ERROR_MORE_DATA carries the size to retry with. Control packets are
 * read and written with the peer's sockaddr in front, as the driver does in multipeer mode.
 *
 * @example
 * ```ts
 * import { DcoServerDevice } from "./dco_server.ts";
 * const srv = await DcoServerDevice.open({ ifname: "OpenVPN Data Channel Offload" }); // Windows, driver >= 2.4
 * ```
 * @module
 */
import { kernel32, ntdll, ntStatusToWin32, ntSuccess, STATUS } from "../ffi/kernel32.ts";
import { type DeviceEndReason, DeviceError } from "./device.ts";
import {
  DcoDevice,
  dcoError,
  installKey,
  ioctl,
  ioctlStatus,
  readDriverVersion,
  versionText,
} from "./dco.ts";
import { overlapped } from "./win_io.ts";
import {
  decodeNotifyEvent,
  decodePeerStats,
  decodeStats,
  driverFeatures,
  encodeMpIroute,
  encodeMpNewPeer,
  encodeMpSetPeer,
  encodeMpStartVpn,
  encodePeerId,
  encodeSetMode,
  IOCTL,
  OVPN_DEL_PEER_REASON,
  OVPN_MODE,
  OVPN_NOTIFY_CMD,
  type SetPeer,
  SIZE,
  type SockAddr,
  type Version,
  writeSockAddr,
} from "./uapi.ts";
import { parseIPv4, readSockAddr } from "./uapi.ts";
import type { KeyMaterial, KeySlotId } from "./datachannel/keyslot.ts";
import { MAX_CONTROL_LEN, MAX_PEER_ID } from "./datachannel/packet.ts";
import { parsePrefix, RouteError } from "./datachannel/routes.ts";
import { newStats, type Stats } from "./datachannel/stats.ts";
import { ControlInbox } from "./tunnel_end.ts";
import {
  type DelPeerReason,
  EventListeners,
  type PeerSettings,
  peerSettings,
  type ServerBackend,
  type ServerEvent,
  type ServerPeerSpec,
} from "./userspace/server_api.ts";

const READ_BUFFER = 2048;
const STATUS_OBJECTID_EXISTS = 0xc000022b;

const REASONS: Record<number, DelPeerReason> = {
  [OVPN_DEL_PEER_REASON.TEARDOWN]: "teardown",
  [OVPN_DEL_PEER_REASON.USERSPACE]: "userspace",
  [OVPN_DEL_PEER_REASON.EXPIRED]: "expired",
  [OVPN_DEL_PEER_REASON.TRANSPORT_ERROR]: "transport-error",
  [OVPN_DEL_PEER_REASON.TRANSPORT_DISCONNECT]: "transport-disconnect",
};

type DcoPeer = PeerSettings;

/** A Windows sockaddr of an endpoint, as the driver reads it: SOCKADDR_IN (16) or SOCKADDR_IN6 (28). */
function winSockaddr(e: SockAddr): Uint8Array {
  const b = new Uint8Array(parseIPv4(e.address) ? 16 : 28);
  const full = new Uint8Array(SIZE.SOCKADDR_UNION);
  writeSockAddr(new DataView(full.buffer), 0, e);
  b.set(full.subarray(0, b.length));
  return b;
}

/** The multipeer ovpn-dco device. */
export class DcoServerDevice implements ServerBackend {
  readonly backend = "dco";
  /** The driver's multipeer mode is UDP only. */
  readonly proto = "udp";
  readonly ifname: string;
  readonly version: Version | null;
  readonly ended: Promise<DeviceEndReason>;
  #dev: DcoDevice;
  #h: Deno.PointerValue;
  #inbox = new ControlInbox();
  #peers = new Map<number, DcoPeer>();
  #listeners = new EventListeners();
  #local: SockAddr | null = null;
  #closed = false;
  #loops: Promise<void>[] = [];
  #log: (line: string) => void;

  private constructor(dev: DcoDevice, log: (line: string) => void) {
    this.#dev = dev;
    this.#h = dev.handle;
    this.ifname = dev.ifname;
    this.version = dev.version;
    this.#log = log;
    this.ended = this.#inbox.ended;
  }

  /** Open the adapter; refuses a driver without multipeer mode with one line naming its version. */
  static async open(
    o: { ifname: string; adapter?: string; log?: (line: string) => void },
  ): Promise<DcoServerDevice> {
    const version = await readDriverVersion();
    if (version && !driverFeatures(version).includes("multipeer")) {
      throw new DeviceError(
        `the ovpn-dco driver ${
          versionText(version)
        } has no multipeer (server) mode: it needs driver 2.4.0 or newer; update the driver`,
        "state",
      );
    }
    const dev = await DcoDevice.open(o);
    if (!driverFeatures(dev.version).includes("multipeer")) {
      await dev.close();
      throw new DeviceError(
        `the ovpn-dco driver ${
          versionText(dev.version)
        } has no multipeer (server) mode: it needs driver 2.4.0 or newer`,
        "state",
      );
    }
    return new DcoServerDevice(dev, o.log ?? ((l) => console.error(l)));
  }

  configureInterface(o: { mtu: number; addresses: string[] }): Promise<void> {
    return this.#dev.configureInterface(o);
  }

  /** SET_MODE(MP), then MP_START_VPN; starts the control reader and the notification loop. */
  async start(local: SockAddr): Promise<SockAddr> {
    await ioctl(this.#h, IOCTL.SET_MODE, encodeSetMode(OVPN_MODE.MP), 0);
    const out = await ioctl(
      this.#h,
      IOCTL.MP_START_VPN,
      encodeMpStartVpn({ listen: local, ipv6Only: false }),
      SIZE.MP_START_VPN,
    );
    const bound = decodeBoundAddress(out) ?? local;
    this.#local = bound;
    this.#loops.push(this.#readLoop(), this.#notifyLoop());
    return bound;
  }

  #peer(peerId: number): DcoPeer {
    const p = this.#peers.get(peerId);
    if (!p) {
      throw new DeviceError(
        `no peer ${peerId} on '${this.ifname}'; peers: ${[...this.#peers.keys()].join(", ") || "none"}`,
        "state",
      );
    }
    return p;
  }

  async newPeer(spec: ServerPeerSpec): Promise<void> {
    if (!this.#local) throw new DeviceError("the server is not started", "state");
    if (!Number.isInteger(spec.peerId) || spec.peerId < 0 || spec.peerId > MAX_PEER_ID) {
      throw new DeviceError(`peer id ${spec.peerId} is not a 24-bit number (0 to ${MAX_PEER_ID})`, "state");
    }
    const v4 = spec.vpnIps.filter((a) => !a.includes(":")), v6 = spec.vpnIps.filter((a) => a.includes(":"));
    if (v4.length > 1 || v6.length > 1) {
      throw new DeviceError(
        "the driver takes one IPv4 and one IPv6 VPN address per peer; add subnets with 'route add'",
        "state",
      );
    }
    try {
      await ioctl(
        this.#h,
        IOCTL.MP_NEW_PEER,
        encodeMpNewPeer({
          local: this.#local,
          remote: spec.remote,
          vpnAddr4: v4[0],
          vpnAddr6: v6[0],
          peerId: spec.peerId,
        }),
        0,
      );
    } catch (e) {
      if (e instanceof DeviceError && e.message.includes(`(${ntStatusToWin32(STATUS_OBJECTID_EXISTS)})`)) {
        throw new DeviceError(`peer id ${spec.peerId} is already in use on '${this.ifname}'`, "state");
      }
      throw e;
    }
    this.#peers.set(spec.peerId, {
      spec: { ...spec },
      keepalive: { interval: 0, timeout: 0 },
      mss: 0,
      keys: {},
      iroutes: [],
    });
  }

  async newKey(slot: KeySlotId, key: KeyMaterial, peerId: number): Promise<void> {
    const p = this.#peer(peerId);
    await installKey(this.#h, this.version, slot, key, peerId);
    if (slot === 0) p.keys.primary = key.keyId;
    else p.keys.secondary = key.keyId;
    p.keys.cipher = key.cipher.name;
  }

  async swapKeys(peerId: number): Promise<void> {
    const p = this.#peer(peerId);
    if (p.keys.secondary === undefined) {
      throw new DeviceError(
        `peer ${peerId}'s secondary slot is empty, so a swap would leave no primary key; install the next key there first ('key new ... --slot secondary')`,
        "state",
      );
    }
    await ioctl(this.#h, IOCTL.MP_SWAP_KEYS, encodePeerId(peerId), 0);
    [p.keys.primary, p.keys.secondary] = [p.keys.secondary, p.keys.primary];
  }

  delKey(_slot: KeySlotId, _peerId: number): Promise<void> {
    return this.#dev.delKey(_slot);
  }

  nextEpoch(_peerId: number): Promise<void> {
    return this.#dev.nextEpoch();
  }

  async setPeer(peerId: number, s: SetPeer): Promise<void> {
    const p = this.#peer(peerId);
    await ioctl(this.#h, IOCTL.MP_SET_PEER, encodeMpSetPeer(peerId, s), 0);
    if (s.keepaliveInterval >= 0) p.keepalive.interval = s.keepaliveInterval;
    if (s.keepaliveTimeout >= 0) p.keepalive.timeout = s.keepaliveTimeout;
    if (s.mss >= 0) p.mss = s.mss;
  }

  async delPeer(peerId: number): Promise<void> {
    this.#peer(peerId);
    await ioctl(this.#h, IOCTL.MP_DEL_PEER, encodePeerId(peerId), 0);
    this.#peers.delete(peerId);
    this.#emit({ cmd: "DEL_PEER", peerId, reason: "userspace" });
  }

  async route(peerId: number, cidr: string, add: boolean): Promise<string> {
    const p = this.#peer(peerId);
    let pre;
    try {
      pre = parsePrefix(cidr);
    } catch (e) {
      if (e instanceof RouteError) throw new DeviceError(e.message, "state");
      throw e;
    }
    const [address] = pre.text.split("/");
    await ioctl(
      this.#h,
      add ? IOCTL.MP_ADD_IROUTE : IOCTL.MP_DEL_IROUTE,
      encodeMpIroute({ address: pre.v6 ? cidr.split("/")[0] : address, netbits: pre.bits, peerId }),
      0,
    );
    if (add && !p.iroutes.includes(pre.text)) p.iroutes.push(pre.text);
    if (!add) p.iroutes = p.iroutes.filter((r) => r !== pre.text);
    return pre.text;
  }

  /** GET_PEER_STATS for one peer (driver 2.7.0 and newer): link and VPN bytes. */
  async peerStats(peerId: number): Promise<Stats> {
    this.#peer(peerId);
    const all = await this.allPeerStats(peerId);
    const s = newStats();
    const p = all.find((x) => x.peerId === peerId);
    if (p) {
      s.TransportBytesReceived = p.linkRxBytes;
      s.TransportBytesSent = p.linkTxBytes;
      s.TunBytesReceived = p.vpnRxBytes;
      s.TunBytesSent = p.vpnTxBytes;
    }
    return s;
  }

  /**
   * GET_PEER_STATS of `peerId` (-1: every peer). For -1 the first call asks with a 4-byte buffer: the driver
   * answers ERROR_MORE_DATA (STATUS_BUFFER_OVERFLOW) with the size it needs, and the second call fetches.
   */
  async allPeerStats(peerId = -1) {
    if (!driverFeatures(this.version).includes("peer-stats")) {
      throw new DeviceError(
        `the ovpn-dco driver ${
          versionText(this.version)
        } has no per-peer statistics (GET_PEER_STATS needs driver 2.7.0 or newer)`,
        "state",
      );
    }
    if (peerId !== -1) {
      return decodePeerStats(
        await ioctl(this.#h, IOCTL.GET_PEER_STATS, encodePeerId(peerId), SIZE.PEER_STATS),
      );
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      const size = await this.#statsCall(4);
      if (size.status !== STATUS.BUFFER_OVERFLOW) {
        if (!ntSuccess(size.status)) throw dcoError(ntStatusToWin32(size.status), "GET_PEER_STATS");
        return []; // no peers
      }
      const need = new DataView(size.out.buffer).getUint32(0, true);
      if (need === 0) return [];
      const full = await this.#statsCall(need);
      if (full.status === STATUS.BUFFER_OVERFLOW) continue; // a peer came in between: ask again
      if (!ntSuccess(full.status)) throw dcoError(ntStatusToWin32(full.status), "GET_PEER_STATS");
      return decodePeerStats(full.out.subarray(0, full.info));
    }
    throw new DeviceError("GET_PEER_STATS: the peer table kept growing; try again", "io");
  }

  async #statsCall(outLen: number): Promise<{ status: number; info: number; out: Uint8Array }> {
    const out = new Uint8Array(outLen);
    const r = await ioctlStatus(this.#h, IOCTL.GET_PEER_STATS, encodePeerId(-1), out, 10_000);
    return { status: r.status, info: r.info, out };
  }

  async getStats(): Promise<Stats> {
    return decodeStats(await ioctl(this.#h, IOCTL.GET_STATS, null, SIZE.STATS));
  }

  drops(): Record<string, number> {
    return {};
  }

  peerInfo(peerId: number): Record<string, unknown> {
    return { ...peerSettings(peerId, this.#peer(peerId)), epoch: null, drops: {} };
  }

  info(): Record<string, unknown> {
    return {
      backend: this.backend,
      mode: "server",
      ifname: this.ifname,
      driverVersion: versionText(this.version),
      local: this.#local,
      peers: this.peerIds(),
      drops: {},
    };
  }

  peerIds(): number[] {
    return [...this.#peers.keys()].sort((a, b) => a - b);
  }

  onEvent(fn: (e: ServerEvent) => void): () => void {
    return this.#listeners.on(fn);
  }

  #emit(e: ServerEvent) {
    this.#listeners.emit(e);
  }

  /** A control packet to a peer: its sockaddr, then the packet. */
  async writeControl(peerId: number, p: Uint8Array): Promise<void> {
    const peer = this.#peer(peerId);
    if (p.length === 0 || p.length > MAX_CONTROL_LEN) {
      throw new DeviceError(
        `a control packet must have 1 to ${MAX_CONTROL_LEN} bytes, not ${p.length}`,
        "state",
      );
    }
    const sa = winSockaddr(peer.spec.remote);
    const data = new Uint8Array(sa.length + p.length);
    data.set(sa);
    data.set(p, sa.length);
    const h = this.#h, offset = new Uint8Array(8);
    const r = await overlapped(
      h,
      (ov) => ntdll().NtWriteFile(h, ov.event, null, null, ov.buf, data, data.length, offset, null),
      [data, offset],
      "WriteFile (control packet)",
      10_000,
    );
    if (!ntSuccess(r.status)) throw dcoError(ntStatusToWin32(r.status), "WriteFile (control packet)");
  }

  readControl(): Promise<Uint8Array> {
    return this.#inbox.read();
  }

  /** Control packets: the sockaddr they came from (16 or 28 bytes by family), then the packet. */
  async #readLoop(): Promise<void> {
    const h = this.#h;
    const buf = new Uint8Array(READ_BUFFER), offset = new Uint8Array(8);
    while (!this.#closed) {
      const r = await overlapped(
        h,
        (ov) => ntdll().NtReadFile(h, ov.event, null, null, ov.buf, buf, READ_BUFFER, offset, null),
        [buf, offset],
        "ReadFile (control packets)",
        Infinity,
        () => this.#closed,
      ).catch(() => null);
      if (!r || this.#closed) return;
      if (!ntSuccess(r.status)) {
        if (r.status === STATUS.CANCELLED) return;
        this.#log(`reading control packets: NTSTATUS 0x${r.status.toString(16)}`);
        continue;
      }
      const fam = new DataView(buf.buffer).getUint16(0, true);
      const skip = fam === 23 ? 28 : 16;
      if (r.info > skip) this.#inbox.push(buf.slice(skip, r.info));
    }
  }

  /** One NOTIFY_EVENT always pending; each completion is one notification, then it is re-armed. */
  async #notifyLoop(): Promise<void> {
    const out = new Uint8Array(SIZE.NOTIFY_EVENT);
    while (!this.#closed) {
      const r = await ioctlStatus(this.#h, IOCTL.NOTIFY_EVENT, null, out, Infinity, () => this.#closed)
        .catch(() => null);
      if (!r || this.#closed) return;
      if (!ntSuccess(r.status)) {
        if (r.status === STATUS.CANCELLED) return;
        this.#inbox.end({ kind: "failed", message: `NOTIFY_EVENT: NTSTATUS 0x${r.status.toString(16)}` });
        return;
      }
      const ev = decodeNotifyEvent(out);
      if (ev.cmd === OVPN_NOTIFY_CMD.DEL_PEER) {
        this.#peers.delete(ev.peerId);
        this.#emit({ cmd: "DEL_PEER", peerId: ev.peerId, reason: REASONS[ev.delPeerReason] ?? "teardown" });
      } else if (ev.cmd === OVPN_NOTIFY_CMD.FLOAT_PEER && ev.floatAddress) {
        const p = this.#peers.get(ev.peerId);
        if (p) p.spec.remote = ev.floatAddress;
        this.#emit({ cmd: "FLOAT_PEER", peerId: ev.peerId, address: ev.floatAddress });
      } else if (ev.cmd === OVPN_NOTIFY_CMD.SWAP_KEYS) {
        this.#emit({ cmd: "SWAP_KEYS", peerId: ev.peerId });
      }
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    kernel32().CancelIoEx(this.#h, null);
    await Promise.all(this.#loops);
    await this.#dev.close();
    this.#inbox.end({ kind: "failed", message: "the device was closed" });
  }
}

/** The address MP_START_VPN bound (its output: the same struct), or null. */
function decodeBoundAddress(out: Uint8Array): SockAddr | null {
  if (out.length < SIZE.SOCKADDR_UNION) return null;
  return readSockAddr(new DataView(out.buffer, out.byteOffset, out.length), 0);
}
