/**
 * A TCP server's connections inside its engine workers, whatever does the I/O (Linux fds or Winsock SOCKETs):
 *
 * - {@linkcode TcpSendQueue} (tx): sends never wait. What a peer's connection does not take at once waits in
 *   that peer's own bounded queue, so one client that stops reading stalls nobody else; a peer whose queue
 *   moves not at all for {@linkcode TCP_STALL_MS} is disconnected (transport-error).
 * - {@linkcode TcpServerRx} (rx): a connection accepted from a peer's address is only *pending* until its first
 *   data packet that one of the peers it may belong to (those configured at that address) accepts; then it is
 *   bound to that peer, the one the packet's peer id names (replacing an older connection of the peer). Until
 *   then it holds no slot, refreshes no keepalive and moves no address, so a squatter that connects first from
 *   a peer's address cannot take the real client's place, and clients behind one NAT address each find their
 *   own peer. A pending connection with nothing authentic within {@linkcode TCP_AUTH_MS} is closed; at most
 *   {@linkcode PENDING_PER_ADDRESS} per source address and {@linkcode PENDING_MAX} in all wait (the oldest goes
 *   first).
 *
 * The main thread owns the connections: it hands each new one to rx (`mp-pending`), hears `tcp-bound` (then tells
 * tx, `mp-conn`, and closes what the peer had before) or `tcp-refused` (then closes it).
 *
 * @example
 * ```ts
 * import { TcpSendQueue } from "./tcp_server.ts";
 * // const q = new TcpSendQueue(peers, (fd, v, len) => sendNonBlocking(fd, v, len), post);
 * // if (!q.send(peer, framed, framed.length)) countLost();  ...  q.drain() on every pump
 * ```
 * @module
 */
import { TcpDeframer } from "../datachannel/framing.ts";
import { isDataV2, MAX_WIRE_LEN, peerIdOf } from "../datachannel/packet.ts";
import { admitControl, peerStreamEnded, receive, type ReceiveSinks, tcpReceive } from "./datapath.ts";
import type { EnginePeer, FromEngine } from "./engine_protocol.ts";
import type { SharedStats } from "./shared_stats.ts";

/** Bytes a TCP server peer may have waiting to be sent before more are dropped (counted as lost). */
export const TCP_QUEUE_CAP = 1 << 20;
/** How long a TCP server peer may take nothing at all before it is disconnected (transport-error). */
export const TCP_STALL_MS = 5000;
/** How long an accepted connection may go without an authentic packet before it is closed. */
export const TCP_AUTH_MS = 30_000;
/** Pending connections per source address, and in all, at most (the oldest is closed to make room). */
export const PENDING_PER_ADDRESS = 4;
export const PENDING_MAX = 64;

/** Send as much of `v[0 .. len]` as connection `fd` takes now, never waiting: the bytes sent, or -1 when it failed. */
export type SendNow = (fd: number, v: Uint8Array, len: number) => number;

/** The TCP server's sends (tx worker): non-blocking, with a bounded queue per peer. */
export class TcpSendQueue {
  readonly #queues = new Map<
    number,
    { p: EnginePeer; fd: number; chunks: Uint8Array[]; bytes: number; since: number }
  >();

  constructor(
    private readonly peers: Map<number, EnginePeer>,
    private readonly sendNow: SendNow,
    private readonly post: (m: FromEngine) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Queue or send one or more framed packets, `v[0 .. len]` (a reused buffer: copied only when it has to wait);
   * false when they are dropped (queue full or the connection failed).
   */
  send(p: EnginePeer, v: Uint8Array, len: number): boolean {
    const q = this.#queues.get(p.id);
    if (q && q.p === p && q.fd === p.fd && q.chunks.length) {
      if (q.bytes + len > TCP_QUEUE_CAP) return false;
      q.chunks.push(v.slice(0, len));
      q.bytes += len;
      return true;
    }
    const n = this.sendNow(p.fd, v, len);
    if (n < 0) return false; // the rx side sees the connection end and reports it
    if (n < len) {
      this.#queues.set(p.id, { p, fd: p.fd, chunks: [v.slice(n, len)], bytes: len - n, since: this.now() });
    }
    return true;
  }

  /** Move what waits (order kept); returns how many queued chunks went out. */
  drain(): number {
    if (!this.#queues.size) return 0;
    let moved = 0;
    const now = this.now();
    for (const [id, q] of this.#queues) {
      // a peer deleted, or connected again: what waited belongs to a connection that is gone
      if (this.peers.get(id) !== q.p || q.p.fd !== q.fd) {
        this.#queues.delete(id);
        continue;
      }
      while (q.chunks.length) {
        const head = q.chunks[0];
        const n = this.sendNow(q.fd, head, head.length);
        if (n < 0) {
          q.chunks.length = 0;
          break;
        }
        if (n > 0) q.since = now;
        q.bytes -= n;
        if (n < head.length) {
          q.chunks[0] = head.subarray(n);
          break;
        }
        q.chunks.shift();
        moved++;
      }
      if (!q.chunks.length) this.#queues.delete(id);
      else if (now - q.since > TCP_STALL_MS) {
        this.#queues.delete(id);
        peerStreamEnded(q.p, {
          error: true,
          reason: `the client took nothing for ${TCP_STALL_MS / 1000} s (its TCP connection stopped reading)`,
        }, this.post);
      }
    }
    return moved;
  }

  /** The connections that wait to become writable. */
  waiting(): number[] {
    const fds: number[] = [];
    for (const q of this.#queues.values()) if (q.fd >= 0) fds.push(q.fd);
    return fds;
  }
}

/** The I/O of the receiving side: recv into `w` (bytes; 0: closed; < 0: nothing now, or failed) and why it failed. */
export interface TcpRecvOps {
  recv(fd: number, w: Uint8Array): number;
  /** After a negative `recv`: why the connection failed, or null when nothing waits now. */
  failure(fd: number): string | null;
}

interface Pending {
  /** The source address (to cap pending connections per address) and the peers the connection may be. */
  from: string;
  peers: number[];
  fd: number;
  deframer: TcpDeframer;
  since: number;
}

/** The TCP server's receiving side (rx worker): bound connections, and pending ones until they prove themselves. */
export class TcpServerRx {
  readonly #pending: Pending[] = [];

  constructor(
    private readonly peers: Map<number, EnginePeer>,
    /** The device's own statistics (what no peer owns). */
    private readonly stats: SharedStats,
    private readonly ops: TcpRecvOps,
    private readonly sinks: ReceiveSinks,
    private readonly post: (m: FromEngine) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** A connection accepted from `from`, which may be one of `peers`: read, but no peer's until it proves itself. */
  addPending(fd: number, from: string, peers: number[]): void {
    const same = this.#pending.filter((c) => c.from === from);
    if (same.length >= PENDING_PER_ADDRESS) this.#refuse(same[0], "more connections from that address wait");
    else if (this.#pending.length >= PENDING_MAX) this.#refuse(this.#pending[0], "too many connections wait");
    this.#pending.push({ from, peers, fd, deframer: new TcpDeframer(MAX_WIRE_LEN), since: this.now() });
  }

  /** The peer is gone: pending connections that could only have been it are refused (the main thread closes them). */
  dropPeer(peer: number): void {
    for (const c of [...this.#pending]) {
      c.peers = c.peers.filter((id) => id !== peer);
      if (!c.peers.length) this.#refuse(c, "its peer was deleted");
    }
  }

  /** Every connection to read: the peers' and the pending ones. */
  fds(): number[] {
    const fds: number[] = [];
    for (const p of this.peers.values()) if (p.fd >= 0) fds.push(p.fd);
    for (const c of this.#pending) fds.push(c.fd);
    return fds;
  }

  /** One round over every connection; returns how many packets arrived. */
  round(): number {
    let packets = 0;
    for (const p of this.peers.values()) {
      if (p.fd < 0 || !p.deframer) continue;
      const fd = p.fd;
      const r = tcpReceive(
        p.deframer,
        (w) => this.ops.recv(fd, w),
        () => this.ops.failure(fd),
        (b, off, len) => receive(p.ch, p.stats, p.mss, b, off, len, this.sinks, p.source),
      );
      packets += r.packets;
      if (r.end && p.fd === fd) peerStreamEnded(p, r.end, this.post);
    }
    if (this.#pending.length) packets += this.#pendingRound();
    return packets;
  }

  #pendingRound(): number {
    let packets = 0;
    const now = this.now();
    for (const c of [...this.#pending]) {
      let bound: EnginePeer | null = null;
      const r = tcpReceive(
        c.deframer,
        (w) => this.ops.recv(c.fd, w),
        () => this.ops.failure(c.fd),
        (b, off, len) => {
          if (bound) { // bound by an earlier packet of this round
            receive(bound.ch, bound.stats, bound.mss, b, off, len, this.sinks, bound.source);
            return;
          }
          const st = this.stats;
          if (!isDataV2(b, off, len)) {
            // as from a peer's UDP address: a control packet of a sane size, at a bounded rate
            st.TransportBytesReceived += len;
            if (admitControl(st, len)) this.sinks.control(b.slice(off, off + len));
            return;
          }
          const id = len >= 4 ? peerIdOf(b, off) : -1;
          const p = c.peers.includes(id) ? this.peers.get(id) : undefined;
          if (!p) {
            // no peer this connection may be (a peer id configured elsewhere, or none at all)
            st.TransportBytesReceived += len;
            st.LostInDataPackets++;
            st.countDrop(len >= 4 ? "unknown-peer" : "too-short");
            return;
          }
          if (receive(p.ch, p.stats, p.mss, b, off, len, this.sinks, p.source)) {
            bound = p;
            this.#bind(c, p);
          }
        },
      );
      packets += r.packets;
      if (bound) continue; // its end, if any, is seen on the next round
      if (r.end) this.#refuse(c, r.end.reason);
      else if (now - c.since > TCP_AUTH_MS) {
        this.#refuse(c, `nothing authentic arrived within ${TCP_AUTH_MS / 1000} s`);
      }
    }
    return packets;
  }

  #bind(c: Pending, p: EnginePeer): void {
    this.#remove(c);
    p.fd = c.fd;
    p.deframer = c.deframer;
    this.post({ t: "tcp-bound", peer: p.id, fd: c.fd });
  }

  #refuse(c: Pending, reason: string): void {
    this.#remove(c);
    this.post({ t: "tcp-refused", fd: c.fd, reason });
  }

  #remove(c: Pending): void {
    const i = this.#pending.indexOf(c);
    if (i >= 0) this.#pending.splice(i, 1);
  }
}
