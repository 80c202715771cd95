/**
 * The `dco` backend on Linux, point to point: the Device over Linux's own kernel data channel (the mainline
 * `ovpn` module, Linux 6.16+). The interface is an ovpn interface in P2P mode made over rtnetlink; the peer is
 * PEER_NEW with the UDP socket (or the TCP connection) this tool made; keys are KEY_NEW/KEY_SWAP/KEY_DEL;
 * keepalive is the module's own (PEER_SET), and its expiry arrives as PEER_DEL_NTF (reason `expired`) on the
 * `peers` group; statistics are PEER_GET's VPN and link counters with the interface's drop counters. The
 * module encrypts and forwards; this process only keeps the control packets the module passes up.
 *
 * Mapping onto OVPN_STATS (`getStats`): TransportBytesSent/Received = the peer's link tx/rx bytes (plus the
 * control packets this tool sent/read), TunBytesSent/Received = its VPN tx/rx bytes, SentDataPackets = link tx
 * packets, ReceivedDataPackets = VPN rx packets (decrypted and delivered), LostIn/OutDataPackets = the
 * interface's rx/tx drops (the module counts every refused packet there: bad tag, replay, unknown key), and the
 * control counters are this tool's own.
 *
 * @example
 * ```ts
 * import { LinuxDcoDevice } from "./dco_device.ts";
 * const dev = await LinuxDcoDevice.open({ ifname: "ovpn0" }); // Linux with the ovpn module, as root
 * ```
 * @module
 */
import { type Device, type DeviceEndReason, DeviceError, type PeerConfig } from "../device.ts";
import type { KeyMaterial, KeySlotId } from "../datachannel/keyslot.ts";
import { newStats, type Stats } from "../datachannel/stats.ts";
import type { SetPeer, Version } from "../uapi.ts";
import { ControlInbox } from "../tunnel_end.ts";
import { libc } from "../../ffi/libc.ts";
import { configureLink } from "../userspace/tun_linux.ts";
import { tcpAcceptNext, tcpConnect, tcpListen, udpSocket } from "../userspace/sockets_linux.ts";
import { acceptOne, connectRetrying } from "../userspace/sockets_common.ts";
import { parseSockaddr } from "../../ffi/libc.ts";
import { kernelCipher, OvpnKernel } from "./ovpn_kernel.ts";
import type { OvpnNotification, OvpnPeer } from "./ovpn_nl.ts";
import { ControlReader, sendControl, type TransportEnd } from "./transport.ts";

/** Options of the Linux kernel backend. */
export interface LinuxDcoOptions {
  ifname: string;
  log?: (line: string) => void;
}

/** Control-packet counters this tool keeps (the module does not see control packets it passes up). */
export interface ControlCounters {
  sent: number;
  received: number;
  lostIn: number;
  lostOut: number;
  bytesSent: number;
  bytesReceived: number;
}

export function newControlCounters(): ControlCounters {
  return { sent: 0, received: 0, lostIn: 0, lostOut: 0, bytesSent: 0, bytesReceived: 0 };
}

/** OVPN_STATS from a peer's counters (or none), the interface's drops and the control counters. */
export function kernelStats(
  peers: OvpnPeer[],
  drops: { rx: number; tx: number },
  c: ControlCounters,
): Stats {
  const s = newStats();
  for (const p of peers) {
    s.TransportBytesSent += p.linkTxBytes;
    s.TransportBytesReceived += p.linkRxBytes;
    s.TunBytesSent += p.vpnTxBytes;
    s.TunBytesReceived += p.vpnRxBytes;
    s.SentDataPackets += p.linkTxPackets;
    s.ReceivedDataPackets += p.vpnRxPackets;
  }
  s.TransportBytesSent += c.bytesSent;
  s.TransportBytesReceived += c.bytesReceived;
  s.LostInDataPackets = drops.rx;
  s.LostOutDataPackets = drops.tx;
  s.SentControlPackets = c.sent;
  s.ReceivedControlPackets = c.received;
  s.LostInControlPackets = c.lostIn;
  s.LostOutControlPackets = c.lostOut;
  return s;
}

/** What the Linux backends say about the module in `peer get` / `info`. */
export function moduleInfo(k: OvpnKernel): Record<string, unknown> {
  let release = "";
  try {
    release = Deno.osRelease();
  } catch { /* not allowed: leave it out */ }
  return { name: "ovpn", familyId: k.family.id, familyVersion: k.family.version, kernel: release };
}

/** The p2p Device over the ovpn module. */
export class LinuxDcoDevice implements Device {
  readonly backend = "dco";
  readonly configureAfterStart = false;
  readonly ifname: string;
  readonly ended: Promise<DeviceEndReason>;
  #k: OvpnKernel;
  #log: (line: string) => void;
  #inbox = new ControlInbox();
  #peer: PeerConfig | null = null;
  #peerId = 0;
  #fd = -1;
  #reader: ControlReader | null = null;
  #keepalive = { interval: 0, timeout: 0 };
  #keys: { primary?: number; secondary?: number; cipher?: string; secondaryCipher?: string } = {};
  #started = false;
  #closed = false;
  #deleting = false;
  #ctl = newControlCounters();
  /** The last counters of a peer that is gone, so that `stats` does not fall back to zero. */
  #lastPeer: OvpnPeer | null = null;

  private constructor(k: OvpnKernel, o: LinuxDcoOptions) {
    this.#k = k;
    this.ifname = k.ifname;
    this.#log = o.log ?? ((l) => console.error(l));
    this.ended = this.#inbox.ended;
  }

  /** Create the ovpn interface (P2P) and subscribe to the module's notifications. */
  static async open(o: LinuxDcoOptions): Promise<LinuxDcoDevice> {
    const k = await OvpnKernel.create(o.ifname, "p2p", { log: o.log });
    const dev = new LinuxDcoDevice(k, o);
    try {
      k.listen((n) => dev.#notified(n), (e) => dev.#inbox.end({ kind: "failed", message: e.message }));
    } catch (e) {
      await k.close();
      throw e;
    }
    o.log?.(`dco: Linux's ovpn module (generic netlink family ${k.family.id}, version ${k.family.version})`);
    return dev;
  }

  #notified(n: OvpnNotification) {
    if (n.peerId !== this.#peerId || !this.#peer) return;
    if (n.cmd === "PEER_DEL") {
      if (n.reason === "userspace" && this.#deleting) return;
      this.#dropPeer();
      if (n.reason === "expired") {
        this.#inbox.end({ kind: "expired", message: "the kernel's keepalive timeout expired" });
      } else if (n.reason === "transport-disconnect") {
        this.#inbox.end({ kind: "aborted", message: "the TCP connection was closed by the peer" });
      } else if (n.reason === "transport-error") {
        this.#inbox.end({ kind: "aborted", message: "the TCP connection failed", error: true });
      } else {
        this.#inbox.end({ kind: "failed", message: `the kernel deleted the peer (${n.reason})` });
      }
    } else if (n.cmd === "PEER_FLOAT") {
      this.#log(`peer ${n.peerId} floated to ${n.remote.address}:${n.remote.port} (the kernel follows it)`);
      if (this.#peer) this.#peer = { ...this.#peer, remote: n.remote };
    } else if (n.cmd === "KEY_SWAP") {
      this.#log(
        `the kernel says the primary key (id ${n.keyId}) of peer ${n.peerId} is used up: install a new key ('key new' + 'key swap')`,
      );
    }
  }

  configureInterface(o: { mtu: number; addresses: string[] }): Promise<void> {
    return configureLink(this.ifname, o);
  }

  async newPeer(p: PeerConfig): Promise<void> {
    if (this.#peer) throw new DeviceError("a peer exists already; delete it first (peer del)", "state");
    const timeout = p.connectTimeoutMs ?? 30_000;
    const cancelled = () => this.#closed;
    let fd: number;
    if (p.proto === "udp") {
      fd = udpSocket(p.local, p.remote);
    } else if (p.listen) {
      const ops = {
        listen: (l: typeof p.local) => tcpListen(l),
        acceptNext: tcpAcceptNext,
        parse: parseSockaddr,
        close: (s: number) => void libc().symbols.close(s),
      };
      fd = await acceptOne(
        ops,
        p.local,
        p.remote,
        timeout,
        cancelled,
        () => this.#log(`waiting for a TCP connection on ${p.local.address}:${p.local.port}`),
      );
    } else {
      fd = await connectRetrying(
        tcpConnect,
        p.local,
        p.remote,
        timeout,
        cancelled,
        () =>
          this.#log(
            `${p.remote.address}:${p.remote.port} refuses TCP connections (not listening yet?); trying again`,
          ),
      );
    }
    const id = p.peerId ?? 0;
    try {
      this.#k.peerNew({
        id,
        socket: fd,
        remote: p.proto === "udp" ? p.remote : undefined,
        localAddress: p.proto === "udp" ? p.local.address : undefined,
      });
    } catch (e) {
      libc().symbols.close(fd);
      throw e;
    }
    this.#fd = fd;
    this.#peer = p;
    this.#peerId = id;
    this.#lastPeer = null;
    this.#reader = new ControlReader(
      fd,
      p.proto,
      (pkt, from) => this.#control(pkt, from),
      (e) => this.#tcpEnd(e),
    );
  }

  #control(pkt: Uint8Array, from: { address: string; port: number } | null) {
    const peer = this.#peer;
    if (!peer) return;
    if (
      from && peer.proto === "udp" && (from.address !== peer.remote.address || from.port !== peer.remote.port)
    ) {
      this.#ctl.lostIn++; // not from our peer
      return;
    }
    this.#ctl.received++;
    this.#ctl.bytesReceived += pkt.length;
    if (!this.#inbox.push(pkt)) this.#ctl.lostIn++;
  }

  #tcpEnd(e: TransportEnd) {
    if (this.#closed || this.#deleting) return;
    // the module's PEER_DEL_NTF usually says it first; this covers a close it does not report
    setTimeout(() => {
      if (this.#closed || !this.#peer) return;
      this.#dropPeer();
      this.#inbox.end(
        e.closed
          ? { kind: "aborted", message: "the TCP connection was closed by the peer" }
          : { kind: "aborted", message: `the TCP connection failed: ${e.error}`, error: true },
      );
    }, 500);
  }

  /** Forget the peer (the kernel has deleted it) and close its socket. */
  #dropPeer() {
    try {
      this.#lastPeer = this.#k.peerGet(this.#peerId);
    } catch { /* gone already */ }
    const r = this.#reader, fd = this.#fd;
    this.#reader = null;
    this.#fd = -1;
    this.#peer = null;
    this.#started = false;
    this.#keys = {};
    void r?.stop().then(() => {
      if (fd >= 0) libc().symbols.close(fd);
    });
  }

  #needPeer(): number {
    if (!this.#peer) {
      throw new DeviceError("no peer yet: add one with 'peer new' (or start --remote)", "state");
    }
    return this.#peerId;
  }

  newKey(slot: KeySlotId, key: KeyMaterial, peerId: number): Promise<void> {
    const id = this.#needPeer();
    if (peerId !== id) {
      return Promise.reject(
        new DeviceError(
          `this tunnel's peer has id ${id}, not ${peerId}; give 'key new' the peer id ${id}`,
          "state",
        ),
      );
    }
    kernelCipher(key);
    this.#k.keyNew(slot, key, id);
    if (slot === 0) {
      this.#keys.primary = key.keyId;
      this.#keys.cipher = key.cipher.name;
    } else {
      this.#keys.secondary = key.keyId;
      this.#keys.secondaryCipher = key.cipher.name;
    }
    return Promise.resolve();
  }

  nextEpoch(): Promise<void> {
    return Promise.reject(
      new DeviceError("Linux's ovpn module has no epoch data keys; this works on the tun backend", "state"),
    );
  }

  swapKeys(): Promise<void> {
    const id = this.#needPeer();
    if (this.#keys.secondary === undefined) {
      return Promise.reject(
        new DeviceError(
          "the secondary slot is empty: install the next key there first ('key new ... --slot secondary')",
          "state",
        ),
      );
    }
    this.#k.keySwap(id);
    const k = this.#keys;
    [k.primary, k.secondary] = [k.secondary, k.primary];
    [k.cipher, k.secondaryCipher] = [k.secondaryCipher, k.cipher];
    return Promise.resolve();
  }

  delKey(slot: KeySlotId): Promise<void> {
    const id = this.#needPeer();
    const has = slot === 0 ? this.#keys.primary : this.#keys.secondary;
    if (has === undefined) {
      return Promise.reject(
        new DeviceError(
          `the ${slot === 0 ? "primary" : "secondary"} slot is empty; nothing to delete`,
          "state",
        ),
      );
    }
    this.#k.keyDel(id, slot);
    if (slot === 0) {
      this.#keys.primary = undefined;
      this.#keys.cipher = undefined;
    } else {
      this.#keys.secondary = undefined;
      this.#keys.secondaryCipher = undefined;
    }
    return Promise.resolve();
  }

  setPeer(p: SetPeer): Promise<void> {
    if (p.mss > 0) {
      return Promise.reject(
        new DeviceError(
          "Linux's ovpn module does not clamp the TCP MSS; leave out --mss (set the MTU instead), or use --backend tun",
          "state",
        ),
      );
    }
    const interval = p.keepaliveInterval >= 0 ? p.keepaliveInterval : this.#keepalive.interval;
    const timeout = p.keepaliveTimeout >= 0 ? p.keepaliveTimeout : this.#keepalive.timeout;
    if (this.#peer && (interval !== this.#keepalive.interval || timeout !== this.#keepalive.timeout)) {
      this.#k.peerSet({ id: this.#peerId, keepalive: { interval, timeout } });
    }
    this.#keepalive = { interval, timeout };
    return Promise.resolve();
  }

  startVpn(): Promise<void> {
    this.#needPeer();
    this.#started = true; // the module forwards as soon as the peer has a primary key
    return Promise.resolve();
  }

  async delPeer(): Promise<void> {
    const id = this.#needPeer();
    this.#deleting = true;
    try {
      this.#k.peerDel(id);
    } finally {
      this.#deleting = false;
    }
    const r = this.#reader, fd = this.#fd;
    this.#reader = null;
    this.#fd = -1;
    this.#peer = null;
    this.#started = false;
    this.#keys = {};
    this.#lastPeer = null;
    await r?.stop();
    if (fd >= 0) libc().symbols.close(fd);
  }

  #drops(): { rx: number; tx: number } {
    const l = this.#k.link()?.stats;
    return { rx: l?.rxDropped ?? 0, tx: l?.txDropped ?? 0 };
  }

  getStats(): Promise<Stats> {
    let peers: OvpnPeer[] = [];
    if (this.#peer) {
      try {
        peers = [this.#k.peerGet(this.#peerId)];
      } catch { /* deleted this moment */ }
    } else if (this.#lastPeer) {
      peers = [this.#lastPeer];
    }
    return Promise.resolve(kernelStats(peers, this.#drops(), this.#ctl));
  }

  getVersion(): Promise<Version | null> {
    return Promise.resolve(null);
  }

  readControl(): Promise<Uint8Array> {
    return this.#inbox.read();
  }

  writeControl(p: Uint8Array): Promise<void> {
    const peer = this.#peer;
    if (!peer) return Promise.reject(new DeviceError("no peer to send a control packet to", "state"));
    try {
      sendControl(this.#fd, peer.proto, p, peer.remote);
      this.#ctl.sent++;
      this.#ctl.bytesSent += p.length;
      return Promise.resolve();
    } catch (e) {
      this.#ctl.lostOut++;
      return Promise.reject(e);
    }
  }

  peerInfo(): Record<string, unknown> {
    const p = this.#peer;
    const drops = this.#drops();
    return {
      backend: this.backend,
      ifname: this.ifname,
      ifindex: this.#k.ifindex,
      module: moduleInfo(this.#k),
      peer: p ? { proto: p.proto, local: p.local, remote: p.remote, peerId: this.#peerId } : null,
      keepaliveInterval: this.#keepalive.interval,
      keepaliveTimeout: this.#keepalive.timeout,
      mss: 0,
      started: this.#started,
      cipher: this.#keys.cipher ?? null,
      primaryKeyId: this.#keys.primary ?? null,
      secondaryKeyId: this.#keys.secondary ?? null,
      drops: { "kernel-rx-dropped": drops.rx, "kernel-tx-dropped": drops.tx },
      epoch: null,
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const r = this.#reader, fd = this.#fd;
    this.#reader = null;
    await r?.stop();
    await this.#k.close(); // deletes the interface and with it the peer
    if (fd >= 0) libc().symbols.close(fd);
    this.#inbox.end({ kind: "failed", message: "the device was closed" });
  }
}
