/**
 * The userspace Device: the OpenVPN data channel in TypeScript over a tun fd and a UDP/TCP socket.
 * Two workers move packets (one per direction, see engine_worker.ts); this class owns the sockets, the
 * keepalive timers, the control-packet queue and the shared statistics, and mirrors the IOCTL surface.
 *
 * @example
 * ```ts
 * import { UserspaceDevice } from "./device.ts";
 * import { openTun } from "./tun_linux.ts";
 * const dev = new UserspaceDevice(openTun("ovpn0"), { backend: "tun" });
 * await dev.newPeer({ local: { address: "0.0.0.0", port: 1194 }, remote: { address: "192.0.2.1", port: 1194 }, proto: "udp" });
 * ```
 * @module
 */
import { errno, errnoText, libc, O_CLOEXEC, O_NONBLOCK } from "../../ffi/libc.ts";
import type { ProviderName } from "../../crypto/providers.ts";
import { type Device, type DeviceEndReason, DeviceError, type PeerConfig } from "../device.ts";
import type { SetPeer, Version } from "../uapi.ts";
import type { FromEngine, ToEngine } from "./engine_protocol.ts";
import { SIGNAL } from "./engine_protocol.ts";
import type { KeyMaterial, KeySlotId } from "./keyslot.ts";
import { SharedStats } from "./shared_stats.ts";
import { endpointSockaddr, peerSockaddrOf, tcpAccept, tcpConnect, udpSocket } from "./sockets_linux.ts";
import type { Stats } from "./stats.ts";
import type { TunHandle } from "./tun_linux.ts";

type Role = "tx" | "rx";

/** Options of a userspace device. */
export interface UserspaceOptions {
  /** Name reported as the backend (`tun` on Linux). */
  backend?: string;
  /** Crypto provider (`auto`). */
  provider?: ProviderName;
  /** Progress lines (stderr by default). */
  log?: (line: string) => void;
}

interface Engine {
  worker: Worker;
  wakeRead: number;
  wakeWrite: number;
  stopped: Promise<void>;
}

/** The data channel in TypeScript behind the Device interface. */
export class UserspaceDevice implements Device {
  readonly backend: string;
  readonly ifname: string;
  readonly configureAfterStart = false;
  readonly stats = new SharedStats();
  readonly ended: Promise<DeviceEndReason>;
  #endResolve!: (r: DeviceEndReason) => void;
  #endReason: DeviceEndReason | null = null;
  #tun: TunHandle;
  #provider: ProviderName;
  #log: (line: string) => void;
  #signal = new Int32Array(new SharedArrayBuffer(12));
  #engines = new Map<Role, Engine>();
  #sockFd = -1;
  #peer: PeerConfig | null = null;
  #peerId = 0;
  #keepalive = { interval: 0, timeout: 0 };
  #mss = 0;
  #started = false;
  #closed = false;
  #timer: ReturnType<typeof setInterval> | undefined;
  #ctlQueue: Uint8Array[] = [];
  #ctlWaiters: { resolve: (p: Uint8Array) => void; reject: (e: Error) => void }[] = [];
  #keyIds: { primary?: number; secondary?: number; cipher?: string } = {};
  #nextAck = 1;
  #acks = new Map<number, () => void>();

  constructor(tun: TunHandle, opts: UserspaceOptions = {}) {
    this.#tun = tun;
    this.ifname = tun.name;
    this.backend = opts.backend ?? "tun";
    this.#provider = opts.provider ?? "auto";
    this.#log = opts.log ?? ((l) => console.error(l));
    this.ended = new Promise((r) => (this.#endResolve = r));
  }

  #end(r: DeviceEndReason) {
    if (this.#endReason) return;
    this.#endReason = r;
    this.#endResolve(r);
    for (const w of this.#ctlWaiters.splice(0)) w.reject(new DeviceError(r.message, "io"));
  }

  configureInterface(o: { mtu: number; addresses: string[] }): Promise<void> {
    return this.#tun.configure(o);
  }

  async newPeer(p: PeerConfig): Promise<void> {
    if (this.#closed) throw new DeviceError("the device is closed", "state");
    if (this.#peer) {
      throw new DeviceError("a peer is already configured; delete it first (peer del)", "state");
    }
    const timeout = p.connectTimeoutMs ?? 30_000;
    const cancelled = () => this.#closed;
    let fd: number;
    let peerSa: Uint8Array;
    if (p.proto === "udp") {
      fd = udpSocket(p.local, p.remote);
      peerSa = endpointSockaddr(p.remote);
    } else if (p.listen) {
      const where = p.local.address.includes(":")
        ? `[${p.local.address}]:${p.local.port}`
        : `${p.local.address}:${p.local.port}`;
      fd = await tcpAccept(
        p.local,
        p.remote,
        timeout,
        cancelled,
        () => this.#log(`waiting for a TCP connection on ${where}`),
      );
      peerSa = peerSockaddrOf(fd);
    } else {
      fd = await tcpConnect(p.local, p.remote, timeout, cancelled);
      peerSa = peerSockaddrOf(fd);
    }
    if (this.#closed) {
      libc().symbols.close(fd);
      throw new DeviceError("the device was closed while connecting", "state");
    }
    this.#sockFd = fd;
    this.#peer = p;
    if (p.peerId !== undefined) this.#peerId = p.peerId;
    this.stats.lastRx = Date.now();
    this.stats.lastTx = Date.now();
    await Promise.all((["tx", "rx"] as Role[]).map((role) => this.#spawn(role, peerSa)));
    this.#timer = setInterval(() => this.#tick(), 250);
  }

  async #spawn(role: Role, peerSa: Uint8Array): Promise<void> {
    const L = libc().symbols;
    const pipe = new Int32Array(2);
    if (L.pipe2(pipe, O_CLOEXEC | O_NONBLOCK) < 0) throw new DeviceError(`pipe2: ${errnoText(errno())}`);
    const worker = new Worker(new URL("./engine_worker.ts", import.meta.url).href, { type: "module" });
    let readyResolve!: () => void, readyReject!: (e: Error) => void;
    const ready = new Promise<void>((res, rej) => ((readyResolve = res), (readyReject = rej)));
    let stoppedResolve!: () => void;
    const stopped = new Promise<void>((r) => (stoppedResolve = r));
    worker.onmessage = (e: MessageEvent<FromEngine>) => {
      const m = e.data;
      switch (m.t) {
        case "ready":
          readyResolve();
          break;
        case "ack":
          this.#acks.get(m.ack)?.();
          this.#acks.delete(m.ack);
          break;
        case "ctl":
          this.#pushControl(m.bytes);
          break;
        case "closed":
          stoppedResolve();
          this.#end({ kind: "aborted", message: m.reason });
          break;
        case "fatal":
          stoppedResolve();
          readyReject(new DeviceError(m.message));
          this.#end({ kind: "failed", message: `${m.role} engine: ${m.message}` });
          break;
        case "stopped":
          stoppedResolve();
          break;
      }
    };
    worker.onerror = (e) => {
      e.preventDefault();
      stoppedResolve();
      readyReject(new DeviceError(e.message));
      this.#end({ kind: "failed", message: `${role} engine crashed: ${e.message}` });
    };
    this.#engines.set(role, { worker, wakeRead: pipe[0], wakeWrite: pipe[1], stopped });
    const init: ToEngine = {
      t: "init",
      role,
      tunFd: this.#tun.fd,
      sockFd: this.#sockFd,
      proto: this.#peer!.proto,
      peerSockaddr: peerSa,
      peerId: this.#peerId,
      mss: this.#mss,
      provider: this.#provider,
      stats: this.stats.buffer,
      signal: this.#signal.buffer as SharedArrayBuffer,
      wakeFd: pipe[0],
    };
    worker.postMessage(init);
    await ready;
  }

  #post(role: Role | "both", m: ToEngine) {
    for (const r of role === "both" ? (["tx", "rx"] as Role[]) : [role]) {
      const e = this.#engines.get(r);
      if (!e) continue;
      e.worker.postMessage(m);
      Atomics.add(this.#signal, r === "tx" ? SIGNAL.tx : SIGNAL.rx, 1);
      this.#wake(e);
    }
  }

  /** Post and wait until the workers applied it (so that, as with an IOCTL, it is in force on return). */
  async #apply(role: Role | "both", m: ToEngine & { ack?: number }): Promise<void> {
    const roles = role === "both" ? (["tx", "rx"] as Role[]) : [role];
    await Promise.all(roles.map((r) => {
      if (!this.#engines.has(r)) return Promise.resolve();
      const ack = this.#nextAck++;
      const done = new Promise<void>((resolve) => this.#acks.set(ack, resolve));
      this.#post(r, { ...m, ack } as ToEngine);
      return Promise.race([done, this.ended.then(() => {})]);
    }));
  }

  #wake(e: Engine) {
    libc().symbols.write(e.wakeWrite, new Uint8Array(1), 1n);
  }

  #requirePeer() {
    if (!this.#peer) throw new DeviceError("no peer is configured; add one first (peer new)", "state");
  }

  #tick() {
    if (!this.#peer || this.#endReason) return;
    const now = Date.now();
    const { interval, timeout } = this.#keepalive;
    if (this.#started && interval > 0 && now - this.stats.lastTx >= interval * 1000) {
      this.stats.lastTx = now; // the worker refreshes it when the ping leaves
      this.#post("tx", { t: "ping" });
    }
    if (timeout > 0 && now - this.stats.lastRx >= timeout * 1000) {
      this.#end({
        kind: "expired",
        message: `keepalive timeout: nothing received from the peer for ${timeout} s`,
      });
    }
  }

  #pushControl(p: Uint8Array) {
    const w = this.#ctlWaiters.shift();
    if (w) return w.resolve(p);
    if (this.#ctlQueue.length >= 256) {
      this.stats.LostInControlPackets++;
      this.stats.countDrop("queue-full");
      return;
    }
    this.#ctlQueue.push(p);
  }

  async newKey(slot: KeySlotId, key: KeyMaterial, peerId: number): Promise<void> {
    this.#requirePeer();
    if (peerId !== this.#peerId) {
      this.#peerId = peerId;
      await this.#apply("both", { t: "peer", peerId });
    }
    await this.#apply("both", { t: "key", slot, material: key });
    if (slot === 0) this.#keyIds.primary = key.keyId;
    else this.#keyIds.secondary = key.keyId;
    this.#keyIds.cipher = key.cipher.name;
  }

  async swapKeys(): Promise<void> {
    this.#requirePeer();
    await this.#apply("both", { t: "swap" });
    const { primary, secondary } = this.#keyIds;
    this.#keyIds.primary = secondary;
    this.#keyIds.secondary = primary;
  }

  async delKey(slot: KeySlotId): Promise<void> {
    this.#requirePeer();
    await this.#apply("both", { t: "delkey", slot });
    if (slot === 0) delete this.#keyIds.primary;
    else delete this.#keyIds.secondary;
  }

  async setPeer(p: SetPeer): Promise<void> {
    this.#requirePeer();
    if (p.keepaliveInterval >= 0) this.#keepalive.interval = p.keepaliveInterval;
    if (p.keepaliveTimeout >= 0) this.#keepalive.timeout = p.keepaliveTimeout;
    if (p.mss >= 0) {
      this.#mss = p.mss;
      await this.#apply("both", { t: "peer", mss: p.mss });
    }
  }

  async startVpn(): Promise<void> {
    this.#requirePeer();
    this.#started = true;
    this.stats.lastRx = Date.now();
    await this.#apply("tx", { t: "start" });
  }

  async delPeer(): Promise<void> {
    this.#requirePeer();
    await this.#stopEngines();
    this.#peer = null;
    this.#started = false;
    this.#keyIds = {};
  }

  getStats(): Promise<Stats> {
    return Promise.resolve(this.stats.snapshot());
  }

  getVersion(): Promise<Version | null> {
    return Promise.resolve(null);
  }

  readControl(): Promise<Uint8Array> {
    const p = this.#ctlQueue.shift();
    if (p) return Promise.resolve(p);
    if (this.#endReason) return Promise.reject(new DeviceError(this.#endReason.message));
    return new Promise((resolve, reject) => this.#ctlWaiters.push({ resolve, reject }));
  }

  writeControl(p: Uint8Array): Promise<void> {
    this.#requirePeer();
    if (p.length === 0 || p.length > 1500) {
      return Promise.reject(
        new DeviceError(`a control packet must have 1 to 1500 bytes, not ${p.length}`, "state"),
      );
    }
    this.#post("tx", { t: "ctl", bytes: p.slice() });
    return Promise.resolve();
  }

  peerInfo(): Record<string, unknown> {
    const p = this.#peer;
    return {
      backend: this.backend,
      ifname: this.ifname,
      peer: p
        ? { proto: p.proto, local: p.local, remote: p.remote, listen: !!p.listen, peerId: this.#peerId }
        : null,
      keepaliveInterval: this.#keepalive.interval,
      keepaliveTimeout: this.#keepalive.timeout,
      mss: this.#mss,
      started: this.#started,
      cipher: this.#keyIds.cipher ?? null,
      primaryKeyId: this.#keyIds.primary ?? null,
      secondaryKeyId: this.#keyIds.secondary ?? null,
      drops: this.stats.drops(),
    };
  }

  async #stopEngines(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    Atomics.store(this.#signal, SIGNAL.stop, 1);
    const engines = [...this.#engines.values()];
    for (const e of engines) this.#wake(e);
    await Promise.race([Promise.all(engines.map((e) => e.stopped)), new Promise((r) => setTimeout(r, 2000))]);
    const L = libc().symbols;
    for (const e of engines) {
      e.worker.terminate();
      L.close(e.wakeRead);
      L.close(e.wakeWrite);
    }
    this.#engines.clear();
    Atomics.store(this.#signal, SIGNAL.stop, 0);
    Atomics.store(this.#signal, SIGNAL.tx, 0);
    Atomics.store(this.#signal, SIGNAL.rx, 0);
    if (this.#sockFd >= 0) L.close(this.#sockFd);
    this.#sockFd = -1;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#stopEngines();
    this.#tun.close();
    this.#end({ kind: "failed", message: "the device was closed" });
  }
}
