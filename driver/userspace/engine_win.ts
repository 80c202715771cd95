/**
 * The WinTUN side of an engine worker (Windows): the same data path as the Linux pumps of engine_worker.ts,
 * with blocking calls in the worker instead of promises on the main event loop:
 *
 * - tun: WintunReceivePacket / WintunReleaseReceivePacket (copied out with RtlMoveMemory), and
 *   WintunAllocateSendPacket / WintunSendPacket; an empty ring is waited for on the session's read-wait event.
 * - transport: Winsock sendto/recvfrom (UDP) and send/recv (TCP) on the SOCKET the main thread made; the socket
 *   (or, for a TCP server, every peer's connection) signals an event chosen with WSAEventSelect (FD_READ |
 *   FD_CLOSE), which also makes it non-blocking.
 * - waiting: WaitForMultipleObjects on [that event, the worker's wake event] (the main thread sets the wake event
 *   when it posts a message), at most IDLE ms.
 *
 * Up to BATCH packets move per call. A failed Winsock call is never classified through WSAGetLastError (another
 * FFI call may have changed it): a receive that fails means "nothing more now" unless WSAPoll reports the socket
 * failed or closed; a send that fails is counted lost (UDP) or waited for with WSAPoll (TCP).
 * @module
 */
import { kernel32 } from "../../ffi/kernel32.ts";
import {
  SOCKET_ERROR,
  winsock,
  WS_POLLERR,
  WS_POLLHUP,
  WS_POLLNVAL,
  WS_POLLRDNORM,
  WS_POLLWRNORM,
} from "../../ffi/ws2_32.ts";
import { ERROR_HANDLE_EOF, WINTUN_SYMBOLS } from "../../ffi/wintun.ts";
import type { DataChannel } from "../datachannel/channel.ts";
import { TcpDeframer } from "../datachannel/framing.ts";
import { clampMss } from "../datachannel/mss.ts";
import {
  HEADROOM,
  isDataV2,
  MAX_CONTROL_LEN,
  MAX_PLAINTEXT_LEN,
  MAX_WIRE_LEN,
} from "../datachannel/packet.ts";
import type { RouteTable } from "../datachannel/routes.ts";
import {
  countSend,
  receive,
  type ReceiveSinks,
  sameAddress,
  sealForRoute,
  serverReceive,
  tcpReceive,
  viewCache,
} from "./datapath.ts";
import type { EngineInit, EnginePeer, FromEngine } from "./engine_protocol.ts";
import { TcpSendQueue, TcpServerRx } from "./tcp_server.ts";
import type { SharedStats } from "./shared_stats.ts";

/** What a worker on Windows gets besides the common init: handles as numbers (they are process-wide). */
export interface WinEngineInit {
  /** wintun.dll's absolute path (loaded again in the worker; the process has it already). */
  dll: string;
  /** WINTUN_SESSION_HANDLE. */
  session: bigint;
  /** The session's read-wait event (tx waits on it). */
  readEvent: bigint;
  /** The event the transport socket (p2p, UDP server) or every peer connection (TCP server) signals. */
  sockEvent: bigint;
  /** This worker's wake event (auto-reset; the main thread sets it). */
  wakeEvent: bigint;
}

/** The worker state the pumps use (engine_worker.ts owns it). */
export interface WinEngineContext {
  init: EngineInit & { win: WinEngineInit };
  stats: SharedStats;
  /** p2p: the channel and the MSS to clamp to. */
  ch(): DataChannel;
  mss(): number;
  /** server: the peers and the routes to them. */
  peers: Map<number, EnginePeer>;
  routes: RouteTable;
  post(m: FromEngine): void;
  /** Whether the worker is asked to stop (long waits give up then). */
  stopping(): boolean;
  /** The error that ends the tunnel: the TCP connection closed by the peer, or broken (`error`). */
  closed(reason: string, error: boolean): Error;
}

/** A pump moves up to BATCH packets and says how many; `extras` sends queued pings and control packets. */
export interface WinPumps {
  pump(): number;
  /** Wait at most `ms` for the wake event, and for data too when `data` (tx: only once started). */
  idle(ms: number, data: boolean): void;
  extras(pending: { ping: boolean; ctl: { bytes: Uint8Array; peer?: number }[]; pings: Set<number> }): void;
  /** TCP server: the connections of rx (bound and pending) or the send queues of tx. */
  tcpRx?: TcpServerRx;
  tcpTx?: TcpSendQueue;
}

const BATCH = 64;

/** The WinTUN session and the Winsock socket of one worker (exported for the tests under Wine). */
export class WinIo {
  readonly k = kernel32();
  readonly ws = winsock();
  readonly w: Deno.DynamicLibrary<typeof WINTUN_SYMBOLS>["symbols"];
  readonly session: Deno.PointerObject;
  readonly sock: bigint;
  readonly #size = new Uint32Array(1);
  readonly #handles = new BigUint64Array(2);
  readonly #handleBytes: Uint8Array;
  readonly #wakeOnly: Uint8Array;
  readonly #pfd = new Uint8Array(16);
  readonly #pdv = new DataView(this.#pfd.buffer);
  readonly #dataEvent: Deno.PointerValue;

  constructor(readonly init: EngineInit & { win: WinEngineInit }, dataEvent: bigint) {
    this.#dataEvent = Deno.UnsafePointer.create(dataEvent);
    this.w = Deno.dlopen(init.win.dll, WINTUN_SYMBOLS).symbols;
    this.session = Deno.UnsafePointer.create(init.win.session)!;
    this.sock = BigInt(init.sockFd);
    this.#handles[0] = dataEvent;
    this.#handles[1] = init.win.wakeEvent;
    this.#handleBytes = new Uint8Array(this.#handles.buffer);
    this.#wakeOnly = this.#handleBytes.subarray(8);
  }

  /** One packet from the adapter into `into`: its length; 0 when none waits; -length when it did not fit. */
  tunRead(into: Uint8Array): number {
    const p = this.w.WintunReceivePacket(this.session, this.#size);
    if (p === null) {
      if (this.k.GetLastError() === ERROR_HANDLE_EOF) throw new Error("the Wintun session ended");
      return 0; // ERROR_NO_MORE_ITEMS
    }
    const n = this.#size[0];
    if (n <= into.length) this.k.RtlMoveMemory_in(into, p, BigInt(n));
    this.w.WintunReleaseReceivePacket(this.session, p);
    return n <= into.length ? n : -n;
  }

  /** One packet to the OS (`from` starts at the packet); false when the ring is full (dropped). */
  tunWrite(from: Uint8Array, len: number): boolean {
    const out = this.w.WintunAllocateSendPacket(this.session, len);
    if (out === null) {
      if (this.k.GetLastError() === ERROR_HANDLE_EOF) throw new Error("the Wintun session ended");
      return false; // ERROR_BUFFER_OVERFLOW: the ring is full
    }
    this.k.RtlMoveMemory_out(out, from, BigInt(len));
    this.w.WintunSendPacket(this.session, out);
    return true;
  }

  /**
   * Reset the data event before a round of receives (a socket's WSAEventSelect event is manual-reset; a receive
   * that finds nothing re-enables FD_READ, so data arriving after the round sets it again).
   */
  rearm(): void {
    this.k.ResetEvent(this.#dataEvent);
  }

  /** Wait for the data event (when `data`) or the wake event, at most `ms`. */
  wait(ms: number, data = true): void {
    if (data) this.k.WaitForMultipleObjects(2, this.#handleBytes, 0, ms);
    else this.k.WaitForMultipleObjects(1, this.#wakeOnly, 0, ms);
  }

  /** The socket's state from WSAPoll (`events`, waiting at most `ms`): revents, or 0 on timeout. */
  poll(sock: bigint, events: number, ms: number): number {
    this.#pdv.setBigUint64(0, sock, true);
    this.#pdv.setInt16(8, events, true);
    this.#pdv.setInt16(10, 0, true);
    return this.ws.WSAPoll(this.#pfd, 1, ms) > 0 ? this.#pdv.getInt16(10, true) : 0;
  }

  readonly #from = new Uint8Array(28);
  readonly #from16 = this.#from.subarray(0, 16);
  readonly #fromLen = new Int32Array(1);
  readonly #fromLenBytes = new Uint8Array(this.#fromLen.buffer);

  /**
   * Up to BATCH datagrams from the UDP socket into `buf`, each handed to `each(n, from)` (`from`: the sender's
   * sockaddr, valid during the call); stops when none waits (or a transient error). Returns how many.
   */
  recvBatch(buf: Uint8Array, each: (n: number, from: Uint8Array) => void): number {
    let moved = 0;
    for (; moved < BATCH; moved++) {
      this.#fromLen[0] = 28;
      const n = this.ws.recvfrom(this.sock, buf, buf.length, 0, this.#from, this.#fromLenBytes);
      if (n < 0) break; // nothing more now (or a transient error: UDP goes on)
      const fl = this.#fromLen[0];
      each(n, fl === 28 ? this.#from : fl === 16 ? this.#from16 : this.#from.subarray(0, fl));
    }
    return moved;
  }

  /** Whether a socket failed or was closed (checked after a receive returned SOCKET_ERROR). */
  failed(sock: bigint): boolean {
    return (this.poll(sock, WS_POLLRDNORM, 0) & (WS_POLLERR | WS_POLLHUP | WS_POLLNVAL)) !== 0;
  }

  /** Send as much of `v[0 .. len]` as a (non-blocking) TCP socket takes now: the bytes sent, or -1 when it failed. */
  sendNow(sock: bigint, v: Uint8Array, len: number): number {
    let off = 0;
    while (off < len) {
      const n = this.ws.send(sock, off ? v.subarray(off) : v, len - off, 0);
      if (n > 0) {
        off += n;
        continue;
      }
      // a full send buffer (would block) or a failed connection: WSAPoll tells which
      return this.poll(sock, WS_POLLWRNORM, 0) & (WS_POLLERR | WS_POLLHUP | WS_POLLNVAL) ? -1 : off;
    }
    return off;
  }

  /** Send all of `b[0 .. len]` on a TCP socket; false when the connection failed. */
  sendAll(
    sock: bigint,
    b: Uint8Array,
    len: number,
    view: (off: number) => Uint8Array,
    stopping: () => boolean,
  ) {
    let off = 0;
    while (off < len) {
      const n = this.ws.send(sock, off === 0 ? b : view(off), len - off, 0);
      if (n > 0) {
        off += n;
        continue;
      }
      // full send buffer (non-blocking socket) or a failed connection: WSAPoll tells which
      const r = this.poll(sock, WS_POLLWRNORM, 1000);
      if (r & (WS_POLLERR | WS_POLLHUP | WS_POLLNVAL)) return false;
      if (stopping()) return false;
    }
    return true;
  }
}

/** The pumps of this worker: its role (tx: tun → transport, rx: transport → tun) in p2p or server mode. */
export function winPumps(ctx: WinEngineContext): WinPumps {
  const { init } = ctx;
  const io = new WinIo(init, init.role === "tx" ? init.win.readEvent : init.win.sockEvent);
  if (init.role === "rx") return init.mode === "server" ? serverRx(ctx, io) : p2pRx(ctx, io);
  return tx(ctx, io);
}

/** tun → seal → transport (p2p: the one peer; server: the peer that holds the destination). */
function tx(ctx: WinEngineContext, io: WinIo): WinPumps {
  const { init, stats } = ctx;
  const tcp = init.proto === "tcp", server = init.mode === "server";
  // [2-byte TCP length][header (+ tag) = HEADROOM][plaintext][tag of the epoch format]
  const outer = new Uint8Array(2 + HEADROOM + MAX_PLAINTEXT_LEN + 64);
  const buf = outer.subarray(2);
  const readInto = buf.subarray(HEADROOM, HEADROOM + MAX_PLAINTEXT_LEN);
  const view = viewCache(outer);
  // TCP: the framed packets of a batch are gathered and written with one send per connection
  const gather = tcp ? new Uint8Array(BATCH * (2 + MAX_WIRE_LEN)) : null;
  const gview = gather ? viewCache(gather) : null;
  let used = 0, gatherFor: EnginePeer | null = null;
  const p2pSock = io.sock;

  /** The gathered packets' "count it lost" functions (a server peer whose send fails loses them). */
  const gatheredLost: (() => void)[] = [];
  // a TCP server never waits for one peer: what a connection does not take waits in that peer's queue
  const queue = tcp && server
    ? new TcpSendQueue(ctx.peers, (fd, v, len) => io.sendNow(BigInt(fd), v, len), ctx.post)
    : undefined;
  const tcpFlush = () => {
    if (!gather || used === 0) return;
    const n = used;
    used = 0;
    if (!queue) {
      if (!io.sendAll(p2pSock, gather, n, gview!, ctx.stopping)) {
        throw ctx.closed("TCP connection lost", true);
      }
      return;
    }
    // server: dropped when the queue is full or the connection failed (the rx side reports that)
    if (gatherFor!.fd < 0 || !queue.send(gatherFor!, gather, n)) { for (const lost of gatheredLost) lost(); }
    gatheredLost.length = 0;
  };
  /** The sealed packet at buf[start .. end] to `p` (server) or the peer (p2p). */
  const send = (start: number, end: number, control: boolean, p: EnginePeer | null) => {
    const len = end - start;
    const lost = countSend(p ? p.stats : stats, len, control);
    if (!tcp) {
      const sa = p ? p.sa : init.peerSockaddr;
      if (io.ws.sendto(p2pSock, view(start + 2), len, 0, sa, sa.length) === SOCKET_ERROR) lost();
      return;
    }
    if (p && p.fd < 0) return lost(); // a server peer not (or no longer) connected
    if (p !== gatherFor || used + 2 + len > gather!.length) tcpFlush();
    gatherFor = p;
    if (server) gatheredLost.push(lost);
    gather![used] = len >> 8;
    gather![used + 1] = len & 0xff;
    gather!.set(buf.subarray(start, end), used + 2);
    used += 2 + len;
  };
  const at = { start: 0 };
  const seal = (n: number) => {
    if (!server) {
      const ch = ctx.ch(), mss = ctx.mss();
      if (mss > 0) clampMss(buf, HEADROOM, n, mss);
      const start = ch.seal(buf, n);
      if (start >= 0) send(start, ch.sealEnd, false, null);
      return;
    }
    const p = sealForRoute(ctx.peers, ctx.routes, stats, buf, n, at);
    if (p) send(at.start, p.ch.sealEnd, false, p);
  };
  return {
    tcpTx: queue,
    pump() {
      let moved = queue ? queue.drain() : 0;
      while (moved < BATCH) {
        const n = io.tunRead(readInto);
        if (n === 0) break;
        moved++;
        if (n < 0) {
          stats.LostOutDataPackets++;
          stats.countDrop("too-long");
        } else seal(n);
      }
      tcpFlush();
      return moved;
    },
    // queued sends: look again soon (a stalled connection is given up after TCP_STALL_MS)
    idle: (ms, data) => io.wait(queue?.waiting().length ? Math.min(ms, 5) : ms, data),
    extras(pending) {
      if (pending.ping) {
        const ch = ctx.ch();
        const start = ch.sealKeepalive(buf);
        if (start >= 0) send(start, ch.sealEnd, false, null);
      }
      for (const id of pending.pings) {
        const p = ctx.peers.get(id);
        if (!p) continue;
        const start = p.ch.sealKeepalive(buf);
        if (start >= 0) send(start, p.ch.sealEnd, false, p);
      }
      pending.pings.clear();
      while (pending.ctl.length) {
        const c = pending.ctl.shift()!;
        const p = server ? ctx.peers.get(c.peer ?? -1) : null;
        if ((server && !p) || c.bytes.length === 0 || c.bytes.length > MAX_CONTROL_LEN) {
          (p?.stats ?? stats).LostOutControlPackets++;
          continue;
        }
        // control packets go out unchanged: placed so that they end at HEADROOM + len
        buf.set(c.bytes, HEADROOM);
        send(HEADROOM, HEADROOM + c.bytes.length, true, p ?? null);
      }
      tcpFlush();
    },
  };
}

/** The sinks of received packets: control up to the main thread, data into the adapter. */
function sinksOf(ctx: WinEngineContext, io: WinIo, buf: Uint8Array): ReceiveSinks {
  const view = viewCache(buf);
  return {
    control: (p) => ctx.post({ t: "ctl", bytes: p }),
    tun: (b, off, len) => io.tunWrite(b === buf ? view(off) : b.subarray(off), len),
  };
}

/** A receive pump: the data event re-armed before each round of receives; nothing of its own to send. */
function rxPumps(io: WinIo, round: () => number): WinPumps {
  return {
    pump() {
      io.rearm();
      return round();
    },
    idle: (ms) => io.wait(ms),
    extras: () => {},
  };
}

/** p2p transport → open → adapter. */
function p2pRx(ctx: WinEngineContext, io: WinIo): WinPumps {
  const { init, stats } = ctx;
  const ws = io.ws, sock = io.sock;
  if (init.proto === "tcp") {
    const d = new TcpDeframer(MAX_WIRE_LEN);
    const sinks = sinksOf(ctx, io, new Uint8Array(0));
    const recv = (w: Uint8Array) => ws.recv(sock, w, w.length, 0);
    const failure = () => io.failed(sock) ? "TCP connection lost" : null;
    const deliver = (b: Uint8Array, off: number, len: number) =>
      receive(ctx.ch(), stats, ctx.mss(), b, off, len, sinks);
    return rxPumps(io, () => {
      const r = tcpReceive(d, recv, failure, deliver);
      if (r.end) throw ctx.closed(r.end.reason, r.end.error);
      return r.packets;
    });
  }
  const buf = new Uint8Array(MAX_WIRE_LEN + 512);
  const peer = init.peerSockaddr;
  const sinks = sinksOf(ctx, io, buf);
  const each = (n: number, from: Uint8Array) => {
    if (!sameAddress(from, from.length, peer)) {
      if (isDataV2(buf, 0, n)) stats.LostInDataPackets++;
      else stats.LostInControlPackets++;
      stats.countDrop("wrong-source");
    } else if (n > 0) receive(ctx.ch(), stats, ctx.mss(), buf, 0, n, sinks);
  };
  return rxPumps(io, () => io.recvBatch(buf, each));
}

/** Server transport → the peer of the packet → adapter (UDP: by peer id, floating; TCP: each connection). */
function serverRx(ctx: WinEngineContext, io: WinIo): WinPumps {
  const { init, stats } = ctx;
  if (init.proto === "tcp") {
    const rx = new TcpServerRx(
      ctx.peers,
      stats,
      {
        recv: (fd, w) => io.ws.recv(BigInt(fd), w, w.length, 0),
        failure: (fd) => io.failed(BigInt(fd)) ? "TCP connection lost" : null,
      },
      sinksOf(ctx, io, new Uint8Array(0)),
      ctx.post,
    );
    return { ...rxPumps(io, () => rx.round()), tcpRx: rx };
  }
  const buf = new Uint8Array(MAX_WIRE_LEN + 512);
  const sinks = sinksOf(ctx, io, buf);
  const each = (n: number, from: Uint8Array) => {
    if (n > 0) serverReceive(ctx.peers, stats, buf, 0, n, from, sinks, ctx.post);
  };
  return rxPumps(io, () => io.recvBatch(buf, each));
}
