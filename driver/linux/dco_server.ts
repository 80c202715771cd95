/**
 * Server mode on Linux's `ovpn` module: an ovpn interface in multipeer (MP) mode, one UDP socket this tool
 * binds and hands to every PEER_NEW, each peer with its VPN addresses (one IPv4 and one IPv6, which the module
 * routes by), subnets behind a peer as kernel routes via its VPN address (`route add`: the module picks the
 * peer by the route's gateway), keys per peer, the module's keepalive, and its notifications (PEER_DEL_NTF,
 * PEER_FLOAT_NTF, KEY_SWAP_NTF) as `events`. Per-peer statistics are PEER_GET's counters. The module checks
 * the inner source address of every decrypted packet against the sending peer (its reverse-path filter).
 *
 * @example
 * ```ts
 * import { LinuxDcoServer } from "./dco_server.ts";
 * const srv = await LinuxDcoServer.open({ ifname: "ovpn-srv" }); // Linux with the ovpn module, as root
 * await srv.start({ address: "0.0.0.0", port: 1194 });
 * ```
 * @module
 */
import { type DeviceEndReason, DeviceError } from "../device.ts";
import type { KeyMaterial, KeySlotId } from "../datachannel/keyslot.ts";
import type { Stats } from "../datachannel/stats.ts";
import { MAX_PEER_ID } from "../datachannel/packet.ts";
import { parsePrefix, RouteError } from "../datachannel/routes.ts";
import type { SetPeer, SockAddr } from "../uapi.ts";
import { ControlInbox } from "../tunnel_end.ts";
import { libc } from "../../ffi/libc.ts";
import { configureLink, run } from "../userspace/tun_linux.ts";
import { boundPort, udpSocket } from "../userspace/sockets_linux.ts";
import {
  EventListeners,
  type PeerSettings,
  peerSettings,
  type ServerBackend,
  type ServerEvent,
  type ServerPeerSpec,
} from "../userspace/server_api.ts";
import { kernelCipher, OvpnKernel } from "./ovpn_kernel.ts";
import type { OvpnNotification, OvpnPeer } from "./ovpn_nl.ts";
import { ControlReader } from "./transport.ts";
import { kernelStats, moduleInfo, newControlCounters } from "./dco_device.ts";

/** The multipeer ovpn interface. */
export class LinuxDcoServer implements ServerBackend {
  readonly backend = "dco";
  readonly proto = "udp";
  readonly ifname: string;
  readonly ended: Promise<DeviceEndReason>;
  #k: OvpnKernel;
  #log: (line: string) => void;
  #inbox = new ControlInbox();
  #peers = new Map<number, PeerSettings>();
  #listeners = new EventListeners();
  #local: SockAddr | null = null;
  #fd = -1;
  #reader: ControlReader | null = null;
  #ctl = newControlCounters();
  #closed = false;
  /** Peers this process is deleting (their PEER_DEL_NTF is not news). */
  #deleting = new Set<number>();

  private constructor(k: OvpnKernel, log: (line: string) => void) {
    this.#k = k;
    this.ifname = k.ifname;
    this.#log = log;
    this.ended = this.#inbox.ended;
  }

  static async open(o: { ifname: string; log?: (line: string) => void }): Promise<LinuxDcoServer> {
    const log = o.log ?? ((l: string) => console.error(l));
    const k = await OvpnKernel.create(o.ifname, "mp", { log });
    const srv = new LinuxDcoServer(k, log);
    try {
      k.listen((n) => srv.#notified(n), (e) => srv.#inbox.end({ kind: "failed", message: e.message }));
    } catch (e) {
      await k.close();
      throw e;
    }
    log(`dco: Linux's ovpn module in multipeer mode (generic netlink family ${k.family.id})`);
    return srv;
  }

  #notified(n: OvpnNotification) {
    if (n.cmd === "PEER_DEL") {
      if (this.#deleting.has(n.peerId) || !this.#peers.has(n.peerId)) return;
      this.#forget(n.peerId);
      this.#emit({ cmd: "DEL_PEER", peerId: n.peerId, reason: n.reason });
    } else if (n.cmd === "PEER_FLOAT") {
      const p = this.#peers.get(n.peerId);
      if (p) p.spec.remote = n.remote;
      this.#emit({ cmd: "FLOAT_PEER", peerId: n.peerId, address: n.remote });
    } else {
      this.#emit({ cmd: "SWAP_KEYS", peerId: n.peerId });
    }
  }

  configureInterface(o: { mtu: number; addresses: string[] }): Promise<void> {
    return configureLink(this.ifname, o);
  }

  /** Bind the UDP socket and start reading what the module passes up (control packets). */
  start(local: SockAddr): Promise<SockAddr> {
    const fd = udpSocket(local, local);
    this.#fd = fd;
    this.#local = { address: local.address, port: boundPort(fd) || local.port };
    this.#reader = new ControlReader(fd, "udp", (pkt) => {
      this.#ctl.received++;
      this.#ctl.bytesReceived += pkt.length;
      if (!this.#inbox.push(pkt)) this.#ctl.lostIn++;
    }, () => {});
    return Promise.resolve(this.#local);
  }

  #peer(peerId: number): PeerSettings {
    const p = this.#peers.get(peerId);
    if (!p) {
      throw new DeviceError(
        `no peer ${peerId} on '${this.ifname}'; peers: ${[...this.#peers.keys()].join(", ") || "none"}`,
        "state",
      );
    }
    return p;
  }

  newPeer(spec: ServerPeerSpec): Promise<void> {
    if (this.#fd < 0) throw new DeviceError("the server is not started", "state");
    if (!Number.isInteger(spec.peerId) || spec.peerId < 0 || spec.peerId > MAX_PEER_ID) {
      throw new DeviceError(`peer id ${spec.peerId} is not a 24-bit number (0 to ${MAX_PEER_ID})`, "state");
    }
    if (this.#peers.has(spec.peerId)) {
      throw new DeviceError(`peer id ${spec.peerId} is already in use on '${this.ifname}'`, "state");
    }
    const v4 = spec.vpnIps.filter((a) => !a.includes(":")), v6 = spec.vpnIps.filter((a) => a.includes(":"));
    if (v4.length > 1 || v6.length > 1 || !spec.vpnIps.length) {
      throw new DeviceError(
        "Linux's ovpn module takes one IPv4 and/or one IPv6 VPN address per peer; add subnets with 'route add'",
        "state",
      );
    }
    if (spec.remote.port === 0) {
      throw new DeviceError(
        "Linux's ovpn module needs the peer's UDP port (it sends to that address and port); give ADDR:PORT",
        "state",
      );
    }
    this.#k.peerNew({
      id: spec.peerId,
      socket: this.#fd,
      remote: spec.remote,
      localAddress: this.#local?.address,
      vpnIpv4: v4[0],
      vpnIpv6: v6[0],
    });
    this.#peers.set(spec.peerId, {
      spec: { ...spec, vpnIps: [...spec.vpnIps] },
      keepalive: { interval: 0, timeout: 0 },
      mss: 0,
      keys: {},
      iroutes: [],
    });
    return Promise.resolve();
  }

  newKey(slot: KeySlotId, key: KeyMaterial, peerId: number): Promise<void> {
    const p = this.#peer(peerId);
    kernelCipher(key);
    this.#k.keyNew(slot, key, peerId);
    if (slot === 0) p.keys.primary = key.keyId;
    else p.keys.secondary = key.keyId;
    p.keys.cipher = key.cipher.name;
    return Promise.resolve();
  }

  swapKeys(peerId: number): Promise<void> {
    const p = this.#peer(peerId);
    if (p.keys.secondary === undefined) {
      throw new DeviceError(
        `peer ${peerId}'s secondary slot is empty: install the next key there first ('key new ... --slot secondary')`,
        "state",
      );
    }
    this.#k.keySwap(peerId);
    [p.keys.primary, p.keys.secondary] = [p.keys.secondary, p.keys.primary];
    return Promise.resolve();
  }

  delKey(slot: KeySlotId, peerId: number): Promise<void> {
    const p = this.#peer(peerId);
    if ((slot === 0 ? p.keys.primary : p.keys.secondary) === undefined) {
      throw new DeviceError(
        `peer ${peerId}'s ${slot === 0 ? "primary" : "secondary"} slot is empty; nothing to delete`,
        "state",
      );
    }
    this.#k.keyDel(peerId, slot);
    if (slot === 0) p.keys.primary = undefined;
    else p.keys.secondary = undefined;
    return Promise.resolve();
  }

  nextEpoch(_peerId: number): Promise<void> {
    return Promise.reject(
      new DeviceError("Linux's ovpn module has no epoch data keys; this works on the tun backend", "state"),
    );
  }

  setPeer(peerId: number, s: SetPeer): Promise<void> {
    const p = this.#peer(peerId);
    if (s.mss > 0) {
      throw new DeviceError(
        "Linux's ovpn module does not clamp the TCP MSS; leave out --mss (set the MTU instead), or use --backend tun",
        "state",
      );
    }
    const interval = s.keepaliveInterval >= 0 ? s.keepaliveInterval : p.keepalive.interval;
    const timeout = s.keepaliveTimeout >= 0 ? s.keepaliveTimeout : p.keepalive.timeout;
    this.#k.peerSet({ id: peerId, keepalive: { interval, timeout } });
    p.keepalive = { interval, timeout };
    return Promise.resolve();
  }

  #forget(peerId: number) {
    const p = this.#peers.get(peerId);
    this.#peers.delete(peerId);
    // the kernel routes via the peer's VPN address are useless without it
    for (const r of p?.iroutes ?? []) void this.#ipRoute(false, r, p!).catch(() => {});
  }

  delPeer(peerId: number): Promise<void> {
    this.#peer(peerId);
    this.#deleting.add(peerId);
    try {
      this.#k.peerDel(peerId);
    } finally {
      this.#deleting.delete(peerId);
    }
    this.#forget(peerId);
    this.#emit({ cmd: "DEL_PEER", peerId, reason: "userspace" });
    return Promise.resolve();
  }

  #ipRoute(add: boolean, cidr: string, p: PeerSettings): Promise<void> {
    const v6 = cidr.includes(":");
    const via = p.spec.vpnIps.find((a) => a.includes(":") === v6);
    if (!via) {
      throw new DeviceError(
        `peer ${p.spec.peerId} has no IPv${
          v6 ? 6 : 4
        } VPN address for the kernel to route ${cidr} through; give it one with 'peer new ... --vpn-ip'`,
        "state",
      );
    }
    return run(
      ["ip", ...(v6 ? ["-6"] : []), "route", add ? "add" : "del", cidr, "via", via, "dev", this.ifname],
      `${add ? "adding" : "deleting"} the route ${cidr} via peer ${p.spec.peerId}`,
    );
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
    if (add && p.iroutes.includes(pre.text)) return pre.text;
    if (!add && !p.iroutes.includes(pre.text)) {
      throw new DeviceError(`peer ${peerId} has no route ${pre.text}`, "state");
    }
    await this.#ipRoute(add, pre.text, p);
    if (add) p.iroutes.push(pre.text);
    else p.iroutes = p.iroutes.filter((r) => r !== pre.text);
    return pre.text;
  }

  #drops(): { rx: number; tx: number } {
    const l = this.#k.link()?.stats;
    return { rx: l?.rxDropped ?? 0, tx: l?.txDropped ?? 0 };
  }

  peerStats(peerId: number): Promise<Stats> {
    this.#peer(peerId);
    return Promise.resolve(kernelStats([this.#k.peerGet(peerId)], { rx: 0, tx: 0 }, newControlCounters()));
  }

  getStats(): Promise<Stats> {
    const peers: OvpnPeer[] = this.#peers.size ? this.#k.peerDump() : [];
    return Promise.resolve(kernelStats(peers, this.#drops(), this.#ctl));
  }

  drops(): Record<string, number> {
    const d = this.#drops();
    return { "kernel-rx-dropped": d.rx, "kernel-tx-dropped": d.tx };
  }

  peerInfo(peerId: number): Record<string, unknown> {
    const p = this.#peer(peerId);
    let k: OvpnPeer | null = null;
    try {
      k = this.#k.peerGet(peerId);
    } catch { /* just deleted */ }
    return {
      ...peerSettings(peerId, p),
      remote: k?.remote ?? p.spec.remote,
      epoch: null,
      drops: {},
    };
  }

  info(): Record<string, unknown> {
    return {
      backend: this.backend,
      mode: "server",
      ifname: this.ifname,
      ifindex: this.#k.ifindex,
      module: moduleInfo(this.#k),
      local: this.#local,
      peers: this.peerIds(),
      drops: this.drops(),
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

  readControl(): Promise<Uint8Array> {
    return this.#inbox.read();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#reader?.stop();
    await this.#k.close();
    if (this.#fd >= 0) libc().symbols.close(this.#fd);
    this.#inbox.end({ kind: "failed", message: "the device was closed" });
  }
}
