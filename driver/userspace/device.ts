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
import { type Device, DeviceError, type PeerConfig } from "../device.ts";
import { formatEndpoint, type SetPeer } from "../uapi.ts";
import { EngineDeviceBase } from "./device_base.ts";
import type { FromEngine, ToEngine } from "./engine_protocol.ts";
import { SIGNAL } from "./engine_protocol.ts";
import type { KeyMaterial, KeySlotId } from "../datachannel/keyslot.ts";
import { SharedStats } from "./shared_stats.ts";
import { endpointSockaddr, peerSockaddrOf, tcpAccept, tcpConnect, udpSocket } from "./sockets_linux.ts";
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
export class UserspaceDevice extends EngineDeviceBase implements Device {
  readonly backend: string;
  readonly ifname: string;
  readonly stats = new SharedStats();
  #tun: TunHandle;
  #provider: ProviderName;
  #log: (line: string) => void;
  #signal = new Int32Array(new SharedArrayBuffer(12));
  #engines = new Map<Role, Engine>();
  #sockFd = -1;
  #nextAck = 1;
  #acks = new Map<number, () => void>();
  #generation = 0;

  constructor(tun: TunHandle, opts: UserspaceOptions = {}) {
    super();
    this.#tun = tun;
    this.ifname = tun.name;
    this.backend = opts.backend ?? "tun";
    this.#provider = opts.provider ?? "auto";
    this.#log = opts.log ?? ((l) => console.error(l));
  }

  configureInterface(o: { mtu: number; addresses: string[] }): Promise<void> {
    return this.#tun.configure(o);
  }

  async newPeer(p: PeerConfig): Promise<void> {
    this.requireNoPeer();
    const timeout = p.connectTimeoutMs ?? 30_000;
    const cancelled = () => this.closed;
    let fd: number;
    let peerSa: Uint8Array;
    if (p.proto === "udp") {
      fd = udpSocket(p.local, p.remote);
      peerSa = endpointSockaddr(p.remote);
    } else if (p.listen) {
      const where = formatEndpoint(p.local);
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
    if (this.closed) {
      libc().symbols.close(fd);
      throw new DeviceError("the device was closed while connecting", "state");
    }
    this.#sockFd = fd;
    this.peer = p;
    if (p.peerId !== undefined) this.peerId = p.peerId;
    this.startTimer();
    await Promise.all((["tx", "rx"] as Role[]).map((role) => this.#spawn(role, peerSa)));
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
          this.pushControl(m.bytes);
          break;
        case "epoch":
          this.#post("tx", { t: "follow", generation: m.generation, epoch: m.epoch });
          break;
        case "closed":
          stoppedResolve();
          this.end({ kind: "aborted", message: m.reason });
          break;
        case "fatal":
          stoppedResolve();
          readyReject(new DeviceError(m.message));
          this.end({ kind: "failed", message: `${m.role} engine: ${m.message}` });
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
      this.end({ kind: "failed", message: `${role} engine crashed: ${e.message}` });
    };
    this.#engines.set(role, { worker, wakeRead: pipe[0], wakeWrite: pipe[1], stopped });
    const init: ToEngine = {
      t: "init",
      role,
      tunFd: this.#tun.fd,
      sockFd: this.#sockFd,
      proto: this.peer!.proto,
      peerSockaddr: peerSa,
      peerId: this.peerId,
      mss: this.mss,
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

  protected sendPing(): void {
    this.#post("tx", { t: "ping" });
  }

  async newKey(slot: KeySlotId, key: KeyMaterial, peerId: number): Promise<void> {
    this.requirePeer();
    if (peerId !== this.peerId) {
      this.peerId = peerId;
      await this.#apply("both", { t: "peer", peerId });
    }
    await this.#apply("both", { t: "key", slot, material: key, generation: ++this.#generation });
    this.noteKey(slot, key);
  }

  async nextEpoch(): Promise<void> {
    this.requireEpochKey();
    const before = this.stats.sendEpoch;
    await this.#apply("tx", { t: "epoch-next" });
    if (this.stats.sendEpoch === before) {
      throw new DeviceError("the primary key is at its last epoch", "state");
    }
  }

  protected epochs(): { send: number; recv: number } | null {
    const s = this.stats;
    return s.sendEpoch ? { send: s.sendEpoch, recv: s.recvEpoch } : null;
  }

  async swapKeys(): Promise<void> {
    this.requirePeer();
    await this.#apply("both", { t: "swap" });
    this.noteSwap();
  }

  async delKey(slot: KeySlotId): Promise<void> {
    this.requirePeer();
    await this.#apply("both", { t: "delkey", slot });
    this.noteDelKey(slot);
  }

  async setPeer(p: SetPeer): Promise<void> {
    const mss = this.noteSetPeer(p);
    if (mss >= 0) await this.#apply("both", { t: "peer", mss });
  }

  async startVpn(): Promise<void> {
    this.requirePeer();
    this.started = true;
    this.stats.lastRx = Date.now();
    await this.#apply("tx", { t: "start" });
  }

  async delPeer(): Promise<void> {
    this.requirePeer();
    await this.#stopEngines();
    this.notePeerGone();
  }

  writeControl(p: Uint8Array): Promise<void> {
    try {
      this.#post("tx", { t: "ctl", bytes: this.checkControl(p) });
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async #stopEngines(): Promise<void> {
    this.stopTimer();
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
    if (this.closed) return;
    this.closed = true;
    await this.#stopEngines();
    this.#tun.close();
    this.end({ kind: "failed", message: "the device was closed" });
  }
}
