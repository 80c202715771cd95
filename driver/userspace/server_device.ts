/**
 * Server mode (Linux tun): one UDP socket serving many peers, the userspace counterpart of the driver's
 * multipeer mode. Each peer has its own key slots, replay windows, MSS, keepalive timer and statistics; a
 * packet from the tun goes to the peer holding its destination (VPN addresses and iroutes, longest prefix);
 * an authentic packet from a new address floats its peer. Notifications (a peer deleted, expired or floated)
 * go to every `events` subscriber. The two engine workers are the point-to-point ones in server mode.
 *
 * @example
 * ```ts
 * import { ServerDevice } from "./server_device.ts";
 * import { openTun } from "./tun_linux.ts";
 * const srv = new ServerDevice(openTun("ovpn-srv"));
 * await srv.start({ address: "0.0.0.0", port: 1194 });
 * ```
 * @module
 */
import { libc, parseSockaddr } from "../../ffi/libc.ts";
import type { ProviderName } from "../../crypto/providers.ts";
import { type DeviceEndReason, DeviceError } from "../device.ts";
import { formatEndpoint, formatIP, type SetPeer, type SockAddr } from "../uapi.ts";
import type { KeyMaterial, KeySlotId } from "../datachannel/keyslot.ts";
import { MAX_CONTROL_LEN, MAX_PEER_ID } from "../datachannel/packet.ts";
import { parsePrefix, RouteError, RouteTable } from "../datachannel/routes.ts";
import type { Stats } from "../datachannel/stats.ts";
import { ControlInbox } from "../tunnel_end.ts";
import { EngineHost, type Role } from "./engine_host.ts";
import { SharedStats } from "./shared_stats.ts";
import { addrBytes, endpointSockaddr, tcpAcceptNext, tcpListen, udpSocket } from "./sockets_linux.ts";
import type { TunHandle } from "./tun_linux.ts";

/** Why a peer was deleted (OVPN_DEL_PEER_REASON). */
export type DelPeerReason = "teardown" | "userspace" | "expired" | "transport-error" | "transport-disconnect";

/** A notification (OVPN_NOTIFY_EVENT). */
export type ServerEvent =
  | { cmd: "DEL_PEER"; peerId: number; reason: DelPeerReason }
  | { cmd: "FLOAT_PEER"; peerId: number; address: SockAddr }
  | { cmd: "SWAP_KEYS"; peerId: number };

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
    : `peer ${e.peerId}: keys swapped`;
}

/** A peer as `peer new` gives it. */
export interface ServerPeerSpec {
  peerId: number;
  remote: SockAddr;
  /** Its VPN addresses (IPv4 and/or IPv6): routed to it as /32 and /128. */
  vpnIps: string[];
}

interface PeerState {
  spec: ServerPeerSpec;
  stats: SharedStats;
  keepalive: { interval: number; timeout: number };
  mss: number;
  keys: { primary?: number; secondary?: number; cipher?: string; epoch?: boolean };
  iroutes: string[];
  /** TCP: the peer's connection once it came (-1 before). */
  fd: number;
}

/** The server device. */
export class ServerDevice implements ServerBackend {
  readonly backend = "tun";
  readonly mode = "server";
  readonly proto: "udp" | "tcp";
  readonly ifname: string;
  /** What no peer owns: unknown peer ids, no route, control packets. */
  readonly stats = new SharedStats();
  readonly ended: Promise<DeviceEndReason>;
  #tun: TunHandle;
  #provider: ProviderName;
  #log: (line: string) => void;
  #host: EngineHost;
  #inbox = new ControlInbox();
  #sockFd = -1;
  #local: SockAddr | null = null;
  #peers = new Map<number, PeerState>();
  #routes = new RouteTable();
  #listeners = new Set<(e: ServerEvent) => void>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #generation = 0;
  #closed = false;
  #listenFd = -1;
  #accepting: Promise<void> | null = null;

  constructor(
    tun: TunHandle,
    opts: { provider?: ProviderName; log?: (line: string) => void; proto?: "udp" | "tcp" } = {},
  ) {
    this.proto = opts.proto ?? "udp";
    this.#tun = tun;
    this.ifname = tun.name;
    this.#provider = opts.provider ?? "auto";
    this.#log = opts.log ?? ((l) => console.error(l));
    this.ended = this.#inbox.ended;
    this.#host = new EngineHost({
      message: (m) => {
        if (m.t === "ctl") {
          if (!this.#inbox.push(m.bytes)) this.stats.LostInControlPackets++;
        } else if (m.t === "epoch") {
          this.#host.post("tx", { t: "follow", generation: m.generation, epoch: m.epoch, peer: m.peer });
        } else if (m.t === "float") this.#float(m.peer, m.sockaddr);
        else if (m.t === "peer-closed") {
          this.#log(`peer ${m.peer}: ${m.reason}`);
          if (this.#peers.has(m.peer)) {
            this.delPeer(m.peer, m.error ? "transport-error" : "transport-disconnect").catch(() => {});
          }
        }
      },
      failed: (message) => this.#inbox.end({ kind: "failed", message }),
      closed: (message) => this.#inbox.end({ kind: "aborted", message }),
    }, this.ended);
  }

  configureInterface(o: { mtu: number; addresses: string[] }): Promise<void> {
    return this.#tun.configure(o);
  }

  /** MP_START_VPN: bind the UDP socket and start the engines. Returns the bound address. */
  async start(local: SockAddr): Promise<SockAddr> {
    if (this.#host.running) throw new DeviceError("the server is already started", "state");
    if (this.proto === "tcp") this.#listenFd = tcpListen(local);
    else this.#sockFd = udpSocket(local, local);
    this.#local = local;
    const init = {
      tunFd: this.#tun.fd,
      sockFd: this.#sockFd,
      proto: this.proto,
      mode: "server" as const,
      peerSockaddr: new Uint8Array(0),
      peerId: 0,
      mss: 0,
      provider: this.#provider,
      stats: this.stats.buffer,
    };
    await Promise.all((["tx", "rx"] as Role[]).map((role) => this.#host.spawn({ ...init, role })));
    await this.#host.apply("tx", { t: "start" });
    this.#timer = setInterval(() => this.#tick(), 250);
    if (this.proto === "tcp") this.#accepting = this.#acceptLoop();
    return local;
  }

  /** TCP: each connection goes to the peer whose remote address and port it comes from; others are closed. */
  async #acceptLoop(): Promise<void> {
    const L = libc().symbols;
    while (!this.#closed) {
      let c;
      try {
        c = await tcpAcceptNext(this.#listenFd, 1000, () => this.#closed);
      } catch {
        return; // closed
      }
      if (!c) continue;
      const from = parseSockaddr(c.from);
      const at = from ? { address: formatIP(from.addr), port: from.port } : null;
      const entry = [...this.#peers.entries()].find(([, p]) =>
        p.fd < 0 && at && p.spec.remote.port === at.port &&
        formatIP(addrBytes(p.spec.remote.address)) === at.address
      );
      if (!entry || this.#closed) {
        this.#log(`TCP connection from ${at ? formatEndpoint(at) : "?"} matches no peer: closed`);
        L.close(c.fd);
        continue;
      }
      const [id, p] = entry;
      p.fd = c.fd;
      p.stats.lastRx = Date.now();
      await this.#host.apply("both", { t: "mp-conn", peer: id, fd: c.fd });
      this.#log(`peer ${id}: TCP connected from ${formatEndpoint(at!)}`);
    }
  }

  #peer(peerId: number): PeerState {
    const p = this.#peers.get(peerId);
    if (!p) {
      throw new DeviceError(
        `no peer ${peerId} on '${this.ifname}'; peers: ${[...this.#peers.keys()].join(", ") || "none"}`,
        "state",
      );
    }
    return p;
  }

  /** MP_NEW_PEER. */
  async newPeer(spec: ServerPeerSpec): Promise<void> {
    if (!this.#host.running) throw new DeviceError("the server is not started", "state");
    if (!Number.isInteger(spec.peerId) || spec.peerId < 0 || spec.peerId > MAX_PEER_ID) {
      throw new DeviceError(`peer id ${spec.peerId} is not a 24-bit number (0 to ${MAX_PEER_ID})`, "state");
    }
    if (this.#peers.has(spec.peerId)) {
      throw new DeviceError(`peer id ${spec.peerId} is already in use on '${this.ifname}'`, "state");
    }
    if (spec.remote.address.includes(":") !== this.#local!.address.includes(":")) {
      throw new DeviceError(
        `peer ${spec.peerId}: ${formatEndpoint(spec.remote)} is not of the server socket's IP version (${
          formatEndpoint(this.#local!)
        })`,
        "state",
      );
    }
    const added: string[] = [];
    try {
      for (const ip of spec.vpnIps) added.push(this.#routes.add(ip, spec.peerId).text);
    } catch (e) {
      for (const r of added) this.#routes.del(r, spec.peerId);
      if (e instanceof RouteError) throw new DeviceError(`peer ${spec.peerId}: ${e.message}`, "state");
      throw e;
    }
    const stats = new SharedStats();
    stats.lastRx = stats.lastTx = Date.now();
    this.#peers.set(spec.peerId, {
      spec: { ...spec },
      stats,
      keepalive: { interval: 0, timeout: 0 },
      mss: 0,
      keys: {},
      iroutes: [],
      fd: -1,
    });
    await this.#host.apply("both", {
      t: "mp-add",
      peer: spec.peerId,
      sockaddr: endpointSockaddr(spec.remote),
      stats: stats.buffer,
      routes: added,
      mss: 0,
    });
  }

  /** NEW_KEY for a peer. */
  async newKey(slot: KeySlotId, key: KeyMaterial, peerId: number): Promise<void> {
    const p = this.#peer(peerId);
    await this.#host.apply("both", {
      t: "key",
      slot,
      material: key,
      generation: ++this.#generation,
      peer: peerId,
    });
    const epoch = !!key.epoch && key.cipher.keyLen > 0;
    if (slot === 0) [p.keys.primary, p.keys.epoch] = [key.keyId, epoch];
    else p.keys.secondary = key.keyId;
    p.keys.cipher = key.cipher.name;
  }

  /** MP_SWAP_KEYS. */
  async swapKeys(peerId: number): Promise<void> {
    const p = this.#peer(peerId);
    await this.#host.apply("both", { t: "swap", peer: peerId });
    [p.keys.primary, p.keys.secondary] = [p.keys.secondary, p.keys.primary];
  }

  /** Delete a key slot of a peer. */
  async delKey(slot: KeySlotId, peerId: number): Promise<void> {
    const p = this.#peer(peerId);
    await this.#host.apply("both", { t: "delkey", slot, peer: peerId });
    if (slot === 0) delete p.keys.primary;
    else delete p.keys.secondary;
  }

  /** Move a peer's epoch key to the next epoch. */
  async nextEpoch(peerId: number): Promise<void> {
    const p = this.#peer(peerId);
    if (!p.keys.epoch) {
      throw new DeviceError(`peer ${peerId}'s primary key does not use epoch data keys`, "state");
    }
    await this.#host.apply("tx", { t: "epoch-next", peer: peerId });
  }

  /** MP_SET_PEER: keepalive interval/timeout and MSS of a peer (-1: unchanged). */
  async setPeer(peerId: number, s: SetPeer): Promise<void> {
    const p = this.#peer(peerId);
    if (s.keepaliveInterval >= 0) p.keepalive.interval = s.keepaliveInterval;
    if (s.keepaliveTimeout >= 0) p.keepalive.timeout = s.keepaliveTimeout;
    if (s.mss >= 0) {
      p.mss = s.mss;
      await this.#host.apply("both", { t: "peer", peer: peerId, mss: s.mss });
    }
    p.stats.lastRx = Date.now();
  }

  /** MP_DEL_PEER (and expiry): the peer goes, its routes with it; subscribers hear why. */
  async delPeer(peerId: number, reason: DelPeerReason = "userspace"): Promise<void> {
    const p = this.#peer(peerId);
    this.#peers.delete(peerId);
    this.#routes.delPeer(peerId);
    await this.#host.apply("both", { t: "mp-del", peer: peerId });
    if (p.fd >= 0) libc().symbols.close(p.fd);
    this.#emit({ cmd: "DEL_PEER", peerId, reason });
  }

  /** MP_ADD_IROUTE / MP_DEL_IROUTE: a subnet behind a peer. */
  async route(peerId: number, cidr: string, add: boolean): Promise<string> {
    const p = this.#peer(peerId);
    let text: string;
    try {
      if (add) text = this.#routes.add(cidr, peerId).text;
      else {
        text = parsePrefix(cidr).text;
        if (!this.#routes.del(cidr, peerId)) throw new RouteError(`peer ${peerId} has no route ${text}`);
      }
    } catch (e) {
      if (e instanceof RouteError) throw new DeviceError(e.message, "state");
      throw e;
    }
    await this.#host.apply("tx", { t: "route", peer: peerId, cidr: text, add });
    if (add && !p.iroutes.includes(text)) p.iroutes.push(text);
    if (!add) p.iroutes = p.iroutes.filter((r) => r !== text);
    return text;
  }

  /** Send one control packet to a peer. */
  writeControl(peerId: number, p: Uint8Array): void {
    this.#peer(peerId);
    if (p.length === 0 || p.length > MAX_CONTROL_LEN) {
      throw new DeviceError(
        `a control packet must have 1 to ${MAX_CONTROL_LEN} bytes, not ${p.length}`,
        "state",
      );
    }
    this.#host.post("tx", { t: "ctl", bytes: p.slice(), peer: peerId });
  }

  readControl(): Promise<Uint8Array> {
    return this.#inbox.read();
  }

  /** GET_PEER_STATS of one peer. */
  peerStats(peerId: number): Promise<Stats> {
    try {
      return Promise.resolve(this.#peer(peerId).stats.snapshot());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The device's statistics: what no peer owns plus every peer's. */
  getStats(): Promise<Stats> {
    const total = this.stats.snapshot();
    for (const p of this.#peers.values()) {
      const s = p.stats.snapshot();
      for (const k of Object.keys(total) as (keyof Stats)[]) total[k] += s[k];
    }
    return Promise.resolve(total);
  }

  /** Drops by reason, the device's and every peer's together. */
  drops(): Record<string, number> {
    const d = this.stats.drops();
    for (const p of this.#peers.values()) {
      for (const [k, v] of Object.entries(p.stats.drops())) d[k] = (d[k] ?? 0) + v;
    }
    return d;
  }

  /** One peer's settings, keys, routes, epochs and drops. */
  peerInfo(peerId: number): Record<string, unknown> {
    const p = this.#peer(peerId);
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
      epoch: p.stats.sendEpoch ? { send: p.stats.sendEpoch, recv: p.stats.recvEpoch } : null,
      drops: p.stats.drops(),
    };
  }

  /** The device's own settings. */
  info(): Record<string, unknown> {
    return {
      backend: this.backend,
      mode: this.mode,
      proto: this.proto,
      ifname: this.ifname,
      local: this.#local,
      peers: [...this.#peers.keys()],
      drops: this.drops(),
    };
  }

  /** Every peer id. */
  peerIds(): number[] {
    return [...this.#peers.keys()].sort((a, b) => a - b);
  }

  /** Subscribe to notifications; returns the unsubscribe function. */
  onEvent(fn: (e: ServerEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #emit(e: ServerEvent) {
    this.#log(eventText(e));
    for (const l of this.#listeners) l(e);
  }

  #float(peerId: number, sa: Uint8Array) {
    const p = this.#peers.get(peerId);
    const a = parseSockaddr(sa);
    if (!p || !a) return;
    this.#host.post("tx", { t: "mp-float", peer: peerId, sockaddr: sa });
    p.spec.remote = { address: formatIP(a.addr), port: a.port };
    this.#emit({ cmd: "FLOAT_PEER", peerId, address: p.spec.remote });
  }

  #tick() {
    const now = Date.now();
    for (const [id, p] of this.#peers) {
      const { interval, timeout } = p.keepalive;
      if (interval > 0 && now - p.stats.lastTx >= interval * 1000) {
        p.stats.lastTx = now; // refreshed again when the ping leaves
        this.#host.post("tx", { t: "ping", peer: id });
      }
      if (timeout > 0 && now - p.stats.lastRx >= timeout * 1000) {
        this.delPeer(id, "expired").catch((e) => this.#log(`deleting expired peer ${id}: ${e.message}`));
      }
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const id of [...this.#peers.keys()]) this.#emit({ cmd: "DEL_PEER", peerId: id, reason: "teardown" });
    await this.#host.stop();
    await this.#accepting;
    const L = libc().symbols;
    for (const p of this.#peers.values()) if (p.fd >= 0) L.close(p.fd);
    this.#peers.clear();
    if (this.#listenFd >= 0) L.close(this.#listenFd);
    if (this.#sockFd >= 0) L.close(this.#sockFd);
    this.#tun.close();
    this.#inbox.end({ kind: "failed", message: "the device was closed" });
  }
}
