/**
 * Server mode on the main event loop, over any `PacketTun` (WinTUN on Windows) and Deno's own sockets
 * (node:dgram for UDP, Deno.listen for TCP): the portable sibling of the Linux `ServerDevice`, as
 * `LoopDevice` is of the Linux point-to-point device. One channel per peer; a packet from the tun goes to the
 * peer holding its destination (VPN addresses and iroutes, longest prefix); an authentic UDP packet from a new
 * address floats its peer; a TCP peer is the connection that comes from its remote address and port, and
 * ends with it.
 *
 * @example
 * ```ts
 * import { LoopServerDevice } from "./loop_server.ts";
 * // const srv = new LoopServerDevice(WintunTun.open("ovpn-srv"), { backend: "wintun" });
 * // await srv.start({ address: "0.0.0.0", port: 1194 });
 * ```
 * @module
 */
import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import type { ProviderName } from "../../crypto/providers.ts";
import { DeviceError } from "../device.ts";
import { formatEndpoint, plainIP, sameIP, type SockAddr } from "../uapi.ts";
import { DataChannel } from "../datachannel/channel.ts";
import { FramingError, TcpDeframer } from "../datachannel/framing.ts";
import type { KeyMaterial, KeySlotId } from "../datachannel/keyslot.ts";
import { clampMss } from "../datachannel/mss.ts";
import {
  HEADROOM,
  isDataV2,
  MAX_PLAINTEXT_LEN,
  MAX_WIRE_LEN,
  peerIdOf,
  TAILROOM,
} from "../datachannel/packet.ts";
import { RouteTable } from "../datachannel/routes.ts";
import { countSend, receive } from "./datapath.ts";
import { bindUdp, listenTcp, type PacketTun } from "./loop_device.ts";
import { type PeerState, ServerBase } from "./server_base.ts";

const BATCH = 64;
const yieldToLoop = () => new Promise<void>((r) => setTimeout(r, 0));

/** A peer's data-path half. */
interface LoopPeer {
  id: number;
  state: PeerState;
  ch: DataChannel;
  /** TCP: its connection once it came, and the chain of its writes. */
  conn?: Deno.Conn;
  writes: Promise<void>;
}

/** The userspace server on the event loop. */
export class LoopServerDevice extends ServerBase {
  readonly backend: string;
  #tun: PacketTun;
  #provider: ProviderName;
  #udp: dgram.Socket | null = null;
  #listener: Deno.Listener | null = null;
  #dp = new Map<number, LoopPeer>();
  #routes = new RouteTable();
  #loops: Promise<void>[] = [];
  #txBuf = new Uint8Array(2 + HEADROOM + MAX_PLAINTEXT_LEN + 64).subarray(2);
  #pingBuf = new Uint8Array(HEADROOM + 16 + TAILROOM);

  constructor(
    tun: PacketTun,
    opts: { backend?: string; provider?: ProviderName; log?: (l: string) => void; proto?: "udp" | "tcp" } =
      {},
  ) {
    super(tun.name, opts.proto ?? "udp", opts.log ?? ((l) => console.error(l)));
    this.#tun = tun;
    this.backend = opts.backend ?? "loop";
    this.#provider = opts.provider ?? "auto";
  }

  configureInterface(o: { mtu: number; addresses: string[] }): Promise<void> {
    return this.#tun.configure(o, this.log);
  }

  /** MP_START_VPN: bind (UDP) or listen (TCP), then move packets. Returns the bound address. */
  async start(local: SockAddr): Promise<SockAddr> {
    if (this.started) throw new DeviceError("the server is already started", "state");
    if (this.proto === "udp") {
      this.#udp = await bindUdp(local, (msg, rinfo) => this.#fromUdp(msg, rinfo), this.log);
      local = { address: local.address, port: this.#udp.address().port };
    } else {
      this.#listener = listenTcp(local);
      local = { address: local.address, port: (this.#listener.addr as Deno.NetAddr).port };
      this.#loops.push(this.#acceptLoop(this.#listener));
    }
    this.local = local;
    this.startTimer();
    this.#loops.push(this.#txLoop());
    return local;
  }

  /** UDP: control packets go up; a data packet to the peer its id names, which floats when it is authentic. */
  #fromUdp(msg: Uint8Array, rinfo: { address: string; port: number }): void {
    if (!isDataV2(msg)) {
      this.stats.ReceivedControlPackets++;
      this.stats.TransportBytesReceived += msg.length;
      this.pushControl(msg.slice());
      return;
    }
    const p = msg.length >= 4 ? this.#dp.get(peerIdOf(msg, 0)) : undefined;
    if (!p) {
      this.stats.TransportBytesReceived += msg.length;
      this.stats.LostInDataPackets++;
      this.stats.countDrop(msg.length >= 4 ? "unknown-peer" : "too-short");
      return;
    }
    const s = p.state;
    if (
      receive(p.ch, s.stats, s.mss, msg, 0, msg.length, this.#sinks) &&
      (rinfo.port !== s.spec.remote.port || !sameIP(rinfo.address, s.spec.remote.address))
    ) {
      this.floated(p.id, { address: plainIP(rinfo.address), port: rinfo.port });
    }
  }

  #sinks = {
    control: (p: Uint8Array) => this.pushControl(p),
    tun: (b: Uint8Array, off: number, len: number) => this.#tun.write(b.subarray(off, off + len)),
  };

  /** TCP: each connection goes to the peer whose remote address and port it comes from; others are closed. */
  async #acceptLoop(listener: Deno.Listener): Promise<void> {
    try {
      for await (const conn of listener) {
        const from = conn.remoteAddr as Deno.NetAddr;
        const at = formatEndpoint({ address: plainIP(from.hostname), port: from.port });
        const id = this.closed
          ? undefined
          : this.claimTcpPeer({ address: from.hostname, port: from.port }, (peerId) =>
            !!this.#dp.get(peerId)?.conn);
        const p = id === undefined ? undefined : this.#dp.get(id);
        if (!p) {
          this.log(`TCP connection from ${at} matches no peer: closed`);
          conn.close();
          continue;
        }
        p.conn = conn;
        this.log(`peer ${p.id}: TCP connected from ${at}`);
        this.#loops.push(this.#tcpRxLoop(p, conn));
      }
    } catch (e) {
      if (!this.closed) this.log(`TCP listener failed: ${(e as Error).message}`);
    }
  }

  async #tcpRxLoop(p: LoopPeer, conn: Deno.Conn): Promise<void> {
    const d = new TcpDeframer(MAX_WIRE_LEN);
    const s = p.state;
    let error = false, reason: string;
    try {
      for (;;) {
        const n = await conn.read(d.writable());
        if (n === null) {
          reason = "the peer closed the TCP connection";
          break;
        }
        d.commit(n, (b, off, len) => receive(p.ch, s.stats, s.mss, b, off, len, this.#sinks));
      }
    } catch (e) {
      error = true;
      reason = e instanceof FramingError
        ? `TCP stream reset: ${e.message}`
        : `TCP connection lost: ${(e as Error).message}`;
    }
    if (this.closed || this.#dp.get(p.id) !== p) return; // deleted, or closing
    this.log(`peer ${p.id}: ${reason}`);
    await this.delPeer(p.id, error ? "transport-error" : "transport-disconnect").catch(() => {});
  }

  /** tun → the peer of the destination → seal → its transport, in batches; waits on the tun when empty. */
  async #txLoop(): Promise<void> {
    const buf = this.#txBuf;
    const send = (pkt: Uint8Array) => {
      if (pkt.length > MAX_PLAINTEXT_LEN) {
        this.stats.LostOutDataPackets++;
        return;
      }
      buf.set(pkt, HEADROOM);
      const p = this.#dp.get(this.#routes.lookup(buf, HEADROOM, pkt.length));
      if (!p) {
        this.stats.LostOutDataPackets++;
        this.stats.countDrop("no-route");
        return;
      }
      if (p.state.mss > 0) clampMss(buf, HEADROOM, pkt.length, p.state.mss);
      const start = p.ch.seal(buf, pkt.length);
      if (start >= 0) this.#sendWire(p, buf.subarray(start, p.ch.sealEnd), false);
    };
    while (!this.closed) {
      let n: number;
      try {
        n = this.#tun.drain(send, BATCH);
      } catch (e) {
        this.inbox.end({ kind: "failed", message: (e as Error).message });
        return;
      }
      if (n === 0) await this.#tun.wait(200);
      else await yieldToLoop();
    }
  }

  /** One packet (copied here: the caller's buffer is reused) to a peer's transport. */
  #sendWire(p: LoopPeer, wire: Uint8Array, control: boolean): void {
    const len = wire.length;
    const failed = countSend(p.state.stats, len, control);
    if (this.#udp) {
      const r = p.state.spec.remote;
      this.#udp.send(Buffer.from(wire), r.port, r.address, (err: Error | null) => err && failed());
      return;
    }
    const conn = p.conn;
    if (!conn) return failed();
    const framed = new Uint8Array(2 + len);
    framed[0] = len >> 8;
    framed[1] = len & 0xff;
    framed.set(wire, 2);
    p.writes = p.writes.then(async () => {
      let off = 0;
      while (off < framed.length) off += await conn.write(framed.subarray(off));
    }).catch(() => failed()); // the read side sees the connection end and reports it
  }

  protected ioAddPeer(peerId: number, state: PeerState, routes: string[]): Promise<void> {
    const ch = new DataChannel({
      peerId,
      stats: state.stats,
      provider: this.#provider,
      countDrop: (r) => state.stats.countDrop(r),
      onEpochChange: () => {
        const e = ch.epochs();
        state.stats.sendEpoch = e?.send ?? 0;
        state.stats.recvEpoch = e?.recv ?? 0;
      },
    });
    this.#dp.set(peerId, { id: peerId, state, ch, writes: Promise.resolve() });
    for (const r of routes) this.#routes.add(r, peerId);
    return Promise.resolve();
  }

  protected ioDelPeer(peerId: number): Promise<void> {
    const p = this.#dp.get(peerId);
    this.#dp.delete(peerId);
    this.#routes.delPeer(peerId);
    p?.ch.close();
    try {
      p?.conn?.close();
    } catch { /* already closed */ }
    return Promise.resolve();
  }

  #ch(peerId: number): DataChannel {
    const p = this.#dp.get(peerId);
    if (!p) throw new DeviceError(`no peer ${peerId} on '${this.ifname}'`, "state");
    return p.ch;
  }

  protected ioKey(slot: KeySlotId, key: KeyMaterial, generation: number, peerId: number): Promise<void> {
    this.#ch(peerId).newKey(slot, key, generation);
    return Promise.resolve();
  }

  protected ioSwap(peerId: number): Promise<void> {
    this.#ch(peerId).keys.swap();
    return Promise.resolve();
  }

  protected ioDelKey(slot: KeySlotId, peerId: number): Promise<void> {
    this.#ch(peerId).keys.delete(slot);
    return Promise.resolve();
  }

  protected ioEpochNext(peerId: number): Promise<void> {
    if (!this.#ch(peerId).nextEpoch()) {
      return Promise.reject(new DeviceError(`peer ${peerId}'s primary key is at its last epoch`, "state"));
    }
    return Promise.resolve();
  }

  protected ioMss(): Promise<void> {
    return Promise.resolve(); // read from the peer's state on every packet
  }

  protected ioRoute(peerId: number, cidr: string, add: boolean): Promise<void> {
    if (add) this.#routes.add(cidr, peerId);
    else this.#routes.del(cidr, peerId);
    return Promise.resolve();
  }

  protected ioPing(peerId: number): void {
    const p = this.#dp.get(peerId);
    if (!p) return;
    const start = p.ch.sealKeepalive(this.#pingBuf);
    if (start >= 0) this.#sendWire(p, this.#pingBuf.subarray(start, p.ch.sealEnd), false);
  }

  protected ioControl(peerId: number, pkt: Uint8Array): void {
    const p = this.#dp.get(peerId);
    if (p) this.#sendWire(p, pkt, true);
  }

  protected async ioClose(): Promise<void> {
    const udp = this.#udp;
    this.#udp = null;
    if (udp) await new Promise<void>((r) => udp.close(() => r()));
    try {
      this.#listener?.close();
    } catch { /* closed */ }
    for (const id of [...this.#dp.keys()]) await this.ioDelPeer(id);
    await Promise.allSettled(this.#loops.splice(0));
    this.#tun.close();
  }
}
