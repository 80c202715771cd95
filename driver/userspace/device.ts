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
import { type ProviderName, providerProblem } from "../../crypto/providers.ts";
import { type Device, DeviceError, type PeerConfig } from "../device.ts";
import { formatEndpoint, type SetPeer } from "../uapi.ts";
import { EngineDeviceBase } from "./device_base.ts";
import { EngineHost, type Role } from "./engine_host.ts";
import type { KeyMaterial, KeySlotId } from "../datachannel/keyslot.ts";
import { SharedStats } from "./shared_stats.ts";
import type { EngineIo } from "./engine_io.ts";
import { linuxIo } from "./io_linux.ts";
import { acceptOne, connectRetrying } from "./sockets_common.ts";
import type { TunHandle } from "./tun_linux.ts";

/** Options of a userspace device. */
export interface UserspaceOptions {
  /** Name reported as the backend (`tun` on Linux). */
  backend?: string;
  /** Crypto provider (`auto`). */
  provider?: ProviderName;
  /** Progress lines (stderr by default). */
  log?: (line: string) => void;
}

/** The data channel in TypeScript behind the Device interface. */
export class UserspaceDevice extends EngineDeviceBase implements Device {
  readonly backend: string;
  readonly ifname: string;
  readonly stats = new SharedStats();
  #io: EngineIo;
  #provider: ProviderName;
  #log: (line: string) => void;
  #host: EngineHost;
  #sockFd = -1;
  #generation = 0;
  /** Whether the peer id is settled (given with the peer, or taken from its first key). */
  #peerIdFixed = false;

  /** `tun`: a Linux tun (its EngineIo is made here) or a platform's EngineIo (WinTUN: io_win.ts). */
  constructor(tun: TunHandle | EngineIo, opts: UserspaceOptions = {}) {
    super();
    this.#io = "tunInit" in tun ? tun : linuxIo(tun);
    this.ifname = tun.name;
    this.backend = opts.backend ?? "tun";
    this.#provider = opts.provider ?? "auto";
    this.#log = opts.log ?? ((l) => console.error(l));
    this.#host = new EngineHost(
      {
        message: (m) => {
          if (m.t === "ctl") this.pushControl(m.bytes);
          else if (m.t === "epoch") {
            this.#host.post("tx", { t: "follow", generation: m.generation, epoch: m.epoch });
          }
        },
        failed: (message) => this.end({ kind: "failed", message }),
        closed: (message, error) => this.end({ kind: "aborted", message, error }),
        log: (line) => this.#log(line),
      },
      this.ended,
      () => this.#io.waker(),
    );
  }

  configureInterface(o: { mtu: number; addresses: string[] }): Promise<void> {
    return this.#io.configure(o, this.#log);
  }

  async newPeer(p: PeerConfig): Promise<void> {
    this.requireNoPeer();
    const timeout = p.connectTimeoutMs ?? 30_000;
    const cancelled = () => this.closed;
    const io = this.#io;
    let fd: number;
    let peerSa: Uint8Array;
    if (p.proto === "udp") {
      fd = io.udpSocket(p.local, p.remote);
      peerSa = io.sockaddr(p.remote);
    } else if (p.listen) {
      const where = formatEndpoint(p.local);
      const ops = {
        listen: io.tcpListen,
        acceptNext: io.tcpAcceptNext,
        parse: io.parseSockaddr,
        close: io.closeSocket,
      };
      fd = await acceptOne(
        ops,
        p.local,
        p.remote,
        timeout,
        cancelled,
        () => this.#log(`waiting for a TCP connection on ${where}`),
      );
      peerSa = io.peerSockaddrOf(fd);
    } else {
      fd = await connectRetrying(
        io.tcpConnect,
        p.local,
        p.remote,
        timeout,
        cancelled,
        () =>
          this.#log(`${formatEndpoint(p.remote)} refuses TCP connections (not listening yet?); trying again`),
      );
      peerSa = io.peerSockaddrOf(fd);
    }
    if (this.closed) {
      io.closeSocket(fd);
      throw new DeviceError("the device was closed while connecting", "state");
    }
    io.watch(fd);
    this.#sockFd = fd;
    this.peer = p;
    if (p.peerId !== undefined) this.peerId = p.peerId;
    this.#peerIdFixed = p.peerId !== undefined;
    this.startTimer();
    const init = {
      ...io.tunInit(),
      udpOffload: p.proto === "udp" && io.udpOffload(),
      sockFd: fd,
      proto: p.proto,
      mode: "p2p" as const,
      peerSockaddr: peerSa,
      peerId: this.peerId,
      mss: this.mss,
      provider: this.#provider,
      stats: this.stats.buffer,
    };
    await Promise.all((["tx", "rx"] as Role[]).map((role) => this.#host.spawn({ ...init, role })));
  }

  onNotice?: (text: string) => void;

  protected override socketDrops(): number {
    const fd = this.#sockFd, io = this.#io;
    return fd >= 0 && this.peer?.proto === "udp" && io.socketDrops ? io.socketDrops(fd) : -1;
  }

  protected note(line: string): void {
    this.#log(line);
    this.onNotice?.(line);
  }

  protected sendPing(): void {
    this.#host.post("tx", { t: "ping" });
  }

  async newKey(slot: KeySlotId, key: KeyMaterial, peerId: number): Promise<void> {
    this.requirePeer();
    const cannot = providerProblem(key.cipher, this.#provider);
    if (cannot) throw new DeviceError(cannot, "state");
    if (peerId !== this.peerId) {
      // the peer id is the tunnel's (start --peer-id, peer new); only a peer made without one takes it from its
      // first key, as the driver does
      if (this.#peerIdFixed) {
        throw new DeviceError(
          `this tunnel's peer has id ${this.peerId}, not ${peerId}; give 'key new' the peer id ${this.peerId}`,
          "state",
        );
      }
      this.peerId = peerId;
      await this.#host.apply("both", { t: "peer", peerId });
    }
    await this.#host.apply("both", { t: "key", slot, material: key, generation: ++this.#generation });
    this.#peerIdFixed = true;
    this.noteKey(slot, key);
  }

  async nextEpoch(): Promise<void> {
    this.requireEpochKey();
    const before = this.stats.sendEpoch;
    await this.#host.apply("tx", { t: "epoch-next" });
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
    this.requireKeyIn(1, "swap");
    await this.#host.apply("both", { t: "swap" });
    this.noteSwap();
  }

  async delKey(slot: KeySlotId): Promise<void> {
    this.requirePeer();
    this.requireKeyIn(slot, "delete");
    await this.#host.apply("both", { t: "delkey", slot });
    this.noteDelKey(slot);
  }

  async setPeer(p: SetPeer): Promise<void> {
    const mss = this.noteSetPeer(p);
    if (mss >= 0) await this.#host.apply("both", { t: "peer", mss });
  }

  async startVpn(): Promise<void> {
    this.requirePeer();
    this.started = true;
    this.stats.lastRx = Date.now();
    await this.#host.apply("tx", { t: "start" });
  }

  async delPeer(): Promise<void> {
    this.requirePeer();
    await this.#stopEngines();
    this.notePeerGone();
  }

  writeControl(p: Uint8Array): Promise<void> {
    try {
      this.#host.post("tx", { t: "ctl", bytes: this.checkControl(p) });
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async #stopEngines(): Promise<void> {
    this.stopTimer();
    await this.#host.stop();
    if (this.#sockFd >= 0) this.#io.closeSocket(this.#sockFd);
    this.#sockFd = -1;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.#stopEngines();
    this.#io.close();
    this.end({ kind: "failed", message: "the device was closed" });
  }
}
