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
import { type ProviderName, providerProblem } from "../../crypto/providers.ts";
import { DeviceError } from "../device.ts";
import { formatEndpoint, formatIP, plainIP, type SockAddr } from "../uapi.ts";
import type { KeyMaterial, KeySlotId } from "../datachannel/keyslot.ts";
import { EngineHost, type Role } from "./engine_host.ts";
import { type PeerState, ServerBase } from "./server_base.ts";
import type { TunHandle } from "./tun_linux.ts";
import type { EngineIo } from "./engine_io.ts";
import { linuxIo } from "./io_linux.ts";

/** How often a line about unbound TCP connections that were closed may be logged at most. */
const CONN_LOG_MS = 5000;

/** The server device on a Linux tun or a WinTUN adapter: the engine workers in server mode. */
export class ServerDevice extends ServerBase {
  readonly backend: string;
  #io: EngineIo;
  #provider: ProviderName;
  #host: EngineHost;
  #sockFd = -1;
  #listenFd = -1;
  /** TCP: each peer's connection, and the connections not yet proven to be a peer's (with their source). */
  #fds = new Map<number, number>();
  #pending = new Map<number, SockAddr>();
  #accepting: Promise<void> | null = null;
  /** TCP: connections closed unbound, logged at most once per CONN_LOG_MS (with a count). */
  #refusedLog = { at: 0, held: 0 };

  constructor(
    tun: TunHandle | EngineIo,
    opts: { provider?: ProviderName; log?: (line: string) => void; proto?: "udp" | "tcp"; backend?: string } =
      {},
  ) {
    super(tun.name, opts.proto ?? "udp", opts.log ?? ((l) => console.error(l)));
    this.#io = "tunInit" in tun ? tun : linuxIo(tun);
    this.backend = opts.backend ?? "tun";
    this.#provider = opts.provider ?? "auto";
    this.#host = new EngineHost(
      {
        message: (m) => {
          if (m.t === "ctl") this.pushControl(m.bytes);
          else if (m.t === "epoch") {
            this.#host.post("tx", { t: "follow", generation: m.generation, epoch: m.epoch, peer: m.peer });
          } else if (m.t === "float") {
            const a = this.#io.parseSockaddr(m.sockaddr);
            if (!a || !this.peers.has(m.peer)) return;
            this.#host.post("tx", { t: "mp-float", peer: m.peer, sockaddr: m.sockaddr });
            this.floated(m.peer, { address: formatIP(a.addr), port: a.port });
          } else if (m.t === "tcp-bound") this.#bound(m.peer, m.fd);
          else if (m.t === "tcp-refused") {
            const at = this.#pending.get(m.fd);
            this.#pending.delete(m.fd);
            this.#io.closeSocket(m.fd);
            this.#refused(`TCP connection from ${at ? formatEndpoint(at) : "?"} closed: ${m.reason}`);
          } else if (m.t === "peer-closed") {
            this.log(`peer ${m.peer}: ${m.reason}`);
            if (this.peers.has(m.peer)) {
              this.delPeer(m.peer, m.error ? "transport-error" : "transport-disconnect").catch(() => {});
            }
          }
        },
        failed: (message) => this.inbox.end({ kind: "failed", message }),
        closed: (message, error) => this.inbox.end({ kind: "aborted", message, error }),
        log: (line) => this.log(line),
      },
      this.ended,
      () => this.#io.waker(),
    );
  }

  configureInterface(o: { mtu: number; addresses: string[] }): Promise<void> {
    return this.#io.configure(o, this.log);
  }

  /** MP_START_VPN: bind the socket (UDP) or listen (TCP) and start the engines. Returns the bound address. */
  async start(local: SockAddr): Promise<SockAddr> {
    if (this.#host.running) throw new DeviceError("the server is already started", "state");
    const io = this.#io;
    if (this.proto === "tcp") this.#listenFd = io.tcpListen(local);
    else {
      this.#sockFd = io.udpSocket(local, local);
      io.watch(this.#sockFd);
    }
    const init = {
      ...io.tunInit(),
      udpOffload: this.proto === "udp" && io.udpOffload(),
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
    this.local = local;
    this.startTimer();
    if (this.proto === "tcp") this.#accepting = this.#acceptLoop();
    return local;
  }

  /**
   * TCP: a connection from a peer's address (and port, or any port where the peer has port 0) is read by rx as
   * pending until its first authentic packet names its peer; from anywhere else it is closed at once.
   */
  async #acceptLoop(): Promise<void> {
    const io = this.#io;
    while (!this.closed) {
      let c;
      try {
        c = await io.tcpAcceptNext(this.#listenFd, 1000, () => this.closed);
      } catch {
        return; // closed
      }
      if (!c) continue;
      const from = io.parseSockaddr(c.from);
      const at = from ? { address: formatIP(from.addr), port: from.port } : null;
      const peers = at && !this.closed ? this.tcpCandidates(at) : [];
      if (!peers.length) {
        this.#refused(`TCP connection from ${at ? formatEndpoint(at) : "?"} matches no peer: closed`);
        io.closeSocket(c.fd);
        continue;
      }
      io.watch(c.fd);
      this.#pending.set(c.fd, at!);
      await this.#host.apply("rx", { t: "mp-pending", fd: c.fd, from: plainIP(at!.address), peers });
    }
  }

  /** rx bound a pending connection to `peer`: tx sends on it from now, and the peer's older one is closed. */
  #bound(peer: number, fd: number): void {
    const at = this.#pending.get(fd);
    this.#pending.delete(fd);
    if (!at || !this.peers.has(peer) || this.closed) {
      this.#io.closeSocket(fd); // deleted meanwhile
      return;
    }
    const old = this.#fds.get(peer);
    this.#fds.set(peer, fd);
    this.tcpBound(peer, at);
    this.log(
      `peer ${peer}: TCP connected from ${formatEndpoint(at)}${
        old !== undefined ? " (a new connection)" : ""
      }`,
    );
    this.#host.apply("tx", { t: "mp-conn", peer, fd }).then(
      () => old !== undefined && this.#io.closeSocket(old),
      () => {},
    );
  }

  /** A line about a connection closed before it was any peer's: at most one per CONN_LOG_MS, with a count. */
  #refused(line: string): void {
    const now = Date.now(), l = this.#refusedLog;
    if (now - l.at < CONN_LOG_MS) {
      l.held++;
      return;
    }
    this.log(l.held ? `${line} (and ${l.held} more such connections closed before)` : line);
    l.at = now;
    l.held = 0;
  }

  protected async ioAddPeer(peerId: number, p: PeerState, routes: string[]): Promise<void> {
    await this.#host.apply("both", {
      t: "mp-add",
      peer: peerId,
      sockaddr: this.#io.sockaddr(p.spec.remote),
      stats: p.stats.buffer,
      routes,
      mss: 0,
    });
  }

  protected async ioDelPeer(peerId: number): Promise<void> {
    await this.#host.apply("both", { t: "mp-del", peer: peerId });
    const fd = this.#fds.get(peerId);
    if (fd !== undefined) this.#io.closeSocket(fd);
    this.#fds.delete(peerId);
  }

  protected ioKey(slot: KeySlotId, key: KeyMaterial, generation: number, peerId: number): Promise<void> {
    const cannot = providerProblem(key.cipher, this.#provider);
    if (cannot) return Promise.reject(new DeviceError(cannot, "state"));
    return this.#host.apply("both", { t: "key", slot, material: key, generation, peer: peerId });
  }

  protected ioSwap(peerId: number): Promise<void> {
    return this.#host.apply("both", { t: "swap", peer: peerId });
  }

  protected ioDelKey(slot: KeySlotId, peerId: number): Promise<void> {
    return this.#host.apply("both", { t: "delkey", slot, peer: peerId });
  }

  protected ioEpochNext(peerId: number): Promise<void> {
    return this.#host.apply("tx", { t: "epoch-next", peer: peerId });
  }

  protected ioMss(peerId: number, mss: number): Promise<void> {
    return this.#host.apply("both", { t: "peer", peer: peerId, mss });
  }

  protected ioRoute(peerId: number, cidr: string, add: boolean): Promise<void> {
    return this.#host.apply("both", { t: "route", peer: peerId, cidr, add });
  }

  protected override socketDrops(): number {
    const fd = this.#sockFd, io = this.#io;
    return fd >= 0 && io.socketDrops ? io.socketDrops(fd) : -1;
  }

  protected ioPing(peerId: number): void {
    this.#host.post("tx", { t: "ping", peer: peerId });
  }

  protected ioControl(peerId: number, p: Uint8Array): void {
    this.#host.post("tx", { t: "ctl", bytes: p, peer: peerId });
  }

  protected async ioClose(): Promise<void> {
    await this.#host.stop();
    await this.#accepting;
    const io = this.#io;
    for (const fd of [...this.#fds.values(), ...this.#pending.keys()]) io.closeSocket(fd);
    this.#fds.clear();
    this.#pending.clear();
    if (this.#listenFd >= 0) io.closeSocket(this.#listenFd);
    if (this.#sockFd >= 0) io.closeSocket(this.#sockFd);
    io.close();
  }
}
