/**
 * What every server-mode engine shares, whatever moves its packets (Linux workers, or the main loop over
 * WinTUN): the peer table with each peer's settings, keys, routes and statistics, the route table that
 * validates prefixes, keepalive timing (a ping after the interval, deletion after the timeout), and
 * notifications. Subclasses do the I/O through the `io*` hooks.
 * @module
 */
import { type DeviceEndReason, DeviceError } from "../device.ts";
import { formatEndpoint, plainIP, sameIP, type SetPeer, type SockAddr } from "../uapi.ts";
import type { KeyMaterial, KeySlotId } from "../datachannel/keyslot.ts";
import { MAX_CONTROL_LEN, MAX_PEER_ID } from "../datachannel/packet.ts";
import { parsePrefix, RouteError, RouteTable } from "../datachannel/routes.ts";
import type { Stats } from "../datachannel/stats.ts";
import { ControlInbox } from "../tunnel_end.ts";
import { SharedStats } from "./shared_stats.ts";
import { RefusalWatch } from "./device_base.ts";
import {
  type DelPeerReason,
  EventListeners,
  eventText,
  type PeerSettings,
  peerSettings,
  type ServerBackend,
  type ServerEvent,
  type ServerPeerSpec,
} from "./server_api.ts";

/** One peer's bookkeeping. */
export interface PeerState extends PeerSettings {
  stats: SharedStats;
  keys: { primary?: number; secondary?: number; cipher?: string; epoch?: boolean };
}

/** The shared half of the userspace servers. */
export abstract class ServerBase implements ServerBackend {
  abstract readonly backend: string;
  readonly mode = "server";
  readonly proto: "udp" | "tcp";
  readonly ifname: string;
  /** What no peer owns: unknown peer ids, no route, control packets. */
  readonly stats = new SharedStats();
  readonly ended: Promise<DeviceEndReason>;
  protected readonly peers = new Map<number, PeerState>();
  protected readonly inbox = new ControlInbox();
  protected readonly log: (line: string) => void;
  protected local: SockAddr | null = null;
  protected closed = false;
  #routes = new RouteTable();
  #listeners = new EventListeners();
  #timer: ReturnType<typeof setInterval> | undefined;
  #generation = 0;

  constructor(ifname: string, proto: "udp" | "tcp", log: (line: string) => void) {
    this.ifname = ifname;
    this.proto = proto;
    this.log = log;
    this.ended = this.inbox.ended;
  }

  abstract configureInterface(o: { mtu: number; addresses: string[] }): Promise<void>;
  abstract start(local: SockAddr): Promise<SockAddr>;

  // the I/O of a subclass
  protected abstract ioAddPeer(peerId: number, p: PeerState, routes: string[]): Promise<void>;
  protected abstract ioDelPeer(peerId: number): Promise<void>;
  protected abstract ioKey(
    slot: KeySlotId,
    key: KeyMaterial,
    generation: number,
    peerId: number,
  ): Promise<void>;
  protected abstract ioSwap(peerId: number): Promise<void>;
  protected abstract ioDelKey(slot: KeySlotId, peerId: number): Promise<void>;
  protected abstract ioEpochNext(peerId: number): Promise<void>;
  protected abstract ioMss(peerId: number, mss: number): Promise<void>;
  protected abstract ioRoute(peerId: number, cidr: string, add: boolean): Promise<void>;
  protected abstract ioPing(peerId: number): void;
  protected abstract ioControl(peerId: number, p: Uint8Array): void;
  protected abstract ioClose(): Promise<void>;

  /** Begin the keepalive timer (subclasses call it once started). */
  protected startTimer(): void {
    this.#timer = setInterval(() => this.#tick(), 250);
  }

  protected get started(): boolean {
    return this.local !== null;
  }

  protected peer(peerId: number): PeerState {
    const p = this.peers.get(peerId);
    if (!p) {
      throw new DeviceError(
        `no peer ${peerId} on '${this.ifname}'; peers: ${[...this.peers.keys()].join(", ") || "none"}`,
        "state",
      );
    }
    return p;
  }

  /** MP_NEW_PEER. */
  async newPeer(spec: ServerPeerSpec): Promise<void> {
    if (!this.local) throw new DeviceError("the server is not started", "state");
    if (!Number.isInteger(spec.peerId) || spec.peerId < 0 || spec.peerId > MAX_PEER_ID) {
      throw new DeviceError(`peer id ${spec.peerId} is not a 24-bit number (0 to ${MAX_PEER_ID})`, "state");
    }
    if (this.peers.has(spec.peerId)) {
      throw new DeviceError(`peer id ${spec.peerId} is already in use on '${this.ifname}'`, "state");
    }
    if (this.proto === "udp" && spec.remote.port === 0) {
      throw new DeviceError(
        `peer ${spec.peerId}: a UDP peer needs its port (port 0, any source port, is for TCP peers)`,
        "state",
      );
    }
    if (spec.remote.address.includes(":") !== this.local.address.includes(":")) {
      throw new DeviceError(
        `peer ${spec.peerId}: ${formatEndpoint(spec.remote)} is not of the server socket's IP version (${
          formatEndpoint(this.local)
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
    const p: PeerState = {
      spec: { ...spec },
      stats,
      keepalive: { interval: 0, timeout: 0 },
      mss: 0,
      keys: {},
      iroutes: [],
    };
    this.peers.set(spec.peerId, p);
    await this.ioAddPeer(spec.peerId, p, added);
  }

  /** NEW_KEY for a peer. */
  async newKey(slot: KeySlotId, key: KeyMaterial, peerId: number): Promise<void> {
    const p = this.peer(peerId);
    await this.ioKey(slot, key, ++this.#generation, peerId);
    const epoch = !!key.epoch && key.cipher.keyLen > 0;
    if (slot === 0) [p.keys.primary, p.keys.epoch] = [key.keyId, epoch];
    else p.keys.secondary = key.keyId;
    p.keys.cipher = key.cipher.name;
  }

  /** MP_SWAP_KEYS. */
  async swapKeys(peerId: number): Promise<void> {
    const p = this.peer(peerId);
    if (p.keys.secondary === undefined) {
      throw new DeviceError(
        `peer ${peerId}'s secondary slot is empty, so a swap would leave no primary key; install the next key there first ('key new ... --slot secondary')`,
        "state",
      );
    }
    await this.ioSwap(peerId);
    [p.keys.primary, p.keys.secondary] = [p.keys.secondary, p.keys.primary];
  }

  /** Delete a key slot of a peer. */
  async delKey(slot: KeySlotId, peerId: number): Promise<void> {
    const p = this.peer(peerId);
    if ((slot === 0 ? p.keys.primary : p.keys.secondary) === undefined) {
      throw new DeviceError(
        `peer ${peerId}'s ${slot === 0 ? "primary" : "secondary"} slot is empty; nothing to delete`,
        "state",
      );
    }
    await this.ioDelKey(slot, peerId);
    if (slot === 0) delete p.keys.primary;
    else delete p.keys.secondary;
  }

  /** Move a peer's epoch key to the next epoch. */
  async nextEpoch(peerId: number): Promise<void> {
    const p = this.peer(peerId);
    if (!p.keys.epoch) {
      throw new DeviceError(`peer ${peerId}'s primary key does not use epoch data keys`, "state");
    }
    await this.ioEpochNext(peerId);
  }

  /** MP_SET_PEER: keepalive interval/timeout and MSS of a peer (-1: unchanged). */
  async setPeer(peerId: number, s: SetPeer): Promise<void> {
    const p = this.peer(peerId);
    if (s.keepaliveInterval >= 0) p.keepalive.interval = s.keepaliveInterval;
    if (s.keepaliveTimeout >= 0) p.keepalive.timeout = s.keepaliveTimeout;
    if (s.mss >= 0) {
      p.mss = s.mss;
      await this.ioMss(peerId, s.mss);
    }
    p.stats.lastRx = Date.now();
  }

  /** MP_DEL_PEER (and expiry): the peer goes, its routes with it; subscribers hear why. */
  async delPeer(peerId: number, reason: DelPeerReason = "userspace"): Promise<void> {
    this.peer(peerId);
    this.peers.delete(peerId);
    this.#routes.delPeer(peerId);
    await this.ioDelPeer(peerId);
    this.emit({ cmd: "DEL_PEER", peerId, reason });
  }

  /** MP_ADD_IROUTE / MP_DEL_IROUTE: a subnet behind a peer. */
  async route(peerId: number, cidr: string, add: boolean): Promise<string> {
    const p = this.peer(peerId);
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
    await this.ioRoute(peerId, text, add);
    if (add && !p.iroutes.includes(text)) p.iroutes.push(text);
    if (!add) p.iroutes = p.iroutes.filter((r) => r !== text);
    return text;
  }

  /** Send one control packet to a peer. */
  writeControl(peerId: number, p: Uint8Array): void {
    this.peer(peerId);
    if (p.length === 0 || p.length > MAX_CONTROL_LEN) {
      throw new DeviceError(
        `a control packet must have 1 to ${MAX_CONTROL_LEN} bytes, not ${p.length}`,
        "state",
      );
    }
    this.ioControl(peerId, p.slice());
  }

  readControl(): Promise<Uint8Array> {
    return this.inbox.read();
  }

  /** A control packet arrived (kept for readControl; counted lost when the queue is full). */
  protected pushControl(p: Uint8Array): void {
    if (!this.inbox.push(p)) this.stats.LostInControlPackets++;
  }

  /** GET_PEER_STATS of one peer. */
  peerStats(peerId: number): Promise<Stats> {
    try {
      return Promise.resolve(this.peer(peerId).stats.snapshot());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The device's statistics: what no peer owns plus every peer's. */
  getStats(): Promise<Stats> {
    const total = this.stats.snapshot();
    for (const p of this.peers.values()) {
      const s = p.stats.snapshot();
      for (const k of Object.keys(total) as (keyof Stats)[]) total[k] += s[k];
    }
    return Promise.resolve(total);
  }

  /** Drops by reason, the device's and every peer's together. */
  drops(): Record<string, number> {
    const k = this.socketDrops();
    if (k >= 0) this.stats.setDrop("kernel-socket", k);
    const d = this.stats.drops();
    for (const p of this.peers.values()) {
      for (const [k, v] of Object.entries(p.stats.drops())) d[k] = (d[k] ?? 0) + v;
    }
    return d;
  }

  /** Datagrams the kernel dropped at the UDP transport socket, or -1 where it does not say (io_linux.ts). */
  protected socketDrops(): number {
    return -1;
  }

  /** One peer's settings, keys, routes, epochs and drops. */
  peerInfo(peerId: number): Record<string, unknown> {
    const p = this.peer(peerId);
    return {
      ...peerSettings(peerId, p),
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
      local: this.local,
      peers: [...this.peers.keys()],
      drops: this.drops(),
      offload: this.stats.offload(),
      udpOffload: this.stats.udpOffload(),
    };
  }

  /** Every peer id. */
  peerIds(): number[] {
    return [...this.peers.keys()].sort((a, b) => a - b);
  }

  /** Subscribe to notifications; returns the unsubscribe function. */
  onEvent(fn: (e: ServerEvent) => void): () => void {
    return this.#listeners.on(fn);
  }

  protected emit(e: ServerEvent): void {
    this.log(eventText(e));
    this.#listeners.emit(e);
  }

  /**
   * TCP: the peers a connection from `from` may belong to — those with that remote address and port, or that
   * address and port 0 (any source port). Which one it is, its first authentic packet tells.
   */
  protected tcpCandidates(from: SockAddr): number[] {
    const ids: number[] = [];
    for (const [id, p] of this.peers) {
      const r = p.spec.remote;
      if (sameIP(r.address, from.address) && (r.port === from.port || r.port === 0)) ids.push(id);
    }
    return ids;
  }

  /** TCP: a connection from `from` proved to be `peerId`'s: the peer shows it as its remote, heard now. */
  protected tcpBound(peerId: number, from: SockAddr): void {
    const p = this.peers.get(peerId);
    if (!p) return;
    p.spec.remote = { address: plainIP(from.address), port: from.port };
    p.stats.lastRx = Date.now();
  }

  /** An authentic packet of `peerId` came from `address`: the peer moves there (the subclass told its I/O). */
  protected floated(peerId: number, address: SockAddr): void {
    const p = this.peers.get(peerId);
    if (!p) return;
    p.spec.remote = address;
    this.emit({ cmd: "FLOAT_PEER", peerId, address });
  }

  /** Per peer: refused packets while nothing gets through (a restart with the same key, a mismatch). */
  #watches = new Map<number, RefusalWatch>();

  #tick() {
    const now = Date.now();
    for (const id of this.#watches.keys()) if (!this.peers.has(id)) this.#watches.delete(id);
    for (const [id, p] of this.peers) {
      let w = this.#watches.get(id);
      if (!w) this.#watches.set(id, w = new RefusalWatch());
      const said = w.check(now, p.stats.ReceivedDataPackets, p.stats.drops());
      if (said) this.emit({ cmd: "NOTICE", peerId: id, text: said }); // logged by emit, and on events
      const { interval, timeout } = p.keepalive;
      if (interval > 0 && now - p.stats.lastTx >= interval * 1000) {
        p.stats.lastTx = now; // refreshed again when the ping leaves
        this.ioPing(id);
      }
      if (timeout > 0 && now - p.stats.lastRx >= timeout * 1000) {
        this.delPeer(id, "expired").catch((e) => this.log(`deleting expired peer ${id}: ${e.message}`));
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.#timer);
    for (const id of [...this.peers.keys()]) this.emit({ cmd: "DEL_PEER", peerId: id, reason: "teardown" });
    await this.ioClose();
    this.peers.clear();
    this.inbox.end({ kind: "failed", message: "the device was closed" });
  }
}
