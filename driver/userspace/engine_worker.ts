/// <reference lib="deno.worker" />
/**
 * One direction of the userspace data path, in a Worker of its own, in a blocking loop of synchronous
 * FFI calls (no promise per packet):
 *
 * - `tx`: tun → (clamp MSS) → seal → frame → transport
 * - `rx`: transport → unframe → (control packets leave here) → open + replay check → (clamp MSS) → tun
 *
 * Buffers are allocated once. The loop waits in poll(2) on its data fd and a wake-up pipe; the main
 * thread posts a message, bumps a shared counter and writes the pipe, and the loop then yields to the
 * event loop until every posted message was handled.
 *
 * The message handling, the channels and the peer table here serve both platforms; the pumps below are the
 * Linux ones (tun fd with offloads, recvmmsg/sendmmsg with UDP GSO/GRO). With `init.win` the pumps and the
 * wait come from engine_win.ts (WinTUN, Winsock, WaitForMultipleObjects on [data event, wake event]).
 * @module
 */
import { SpanCache } from "../datachannel/views.ts";
import { wasmBytes } from "../datachannel/csum.ts";
import {
  EAGAIN,
  EINTR,
  errno,
  errnoText,
  libc,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLOUT,
} from "../../ffi/libc.ts";
import { DataChannel } from "../datachannel/channel.ts";
import {
  countSend,
  peerAddressesChanged,
  receive,
  sealForRoute,
  SendCount,
  serverReceive,
  tcpReceive,
  tick,
  viewCache,
} from "./datapath.ts";
import type { EngineInit, EnginePeer, FromEngine, ToEngine } from "./engine_protocol.ts";
import { SIGNAL } from "./engine_protocol.ts";
import { TcpDeframer } from "../datachannel/framing.ts";
import { clampMss } from "../datachannel/mss.ts";
import {
  HEADROOM,
  isDataV2,
  MAX_CONTROL_LEN,
  MAX_PLAINTEXT_LEN,
  MAX_WIRE_LEN,
} from "../datachannel/packet.ts";
import { SharedStats } from "./shared_stats.ts";
import { enableUdpGro, MsgBatch, NAME_LEN, UdpBatchTx } from "./mmsg.ts";
import {
  Coalescer,
  completeChecksum,
  GSO_NONE,
  GsoError,
  parseVnetHdr,
  splitSuperPacket,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VNET_HDR_LEN,
} from "../datachannel/gso.ts";
import { RouteTable } from "../datachannel/routes.ts";
import { type WinEngineInit, winPumps } from "./engine_win.ts";
import { TcpSendQueue, TcpServerRx } from "./tcp_server.ts";

const BATCH = 64;
/** A receive slot with UDP_GRO on: a whole train of coalesced datagrams (at most one IP datagram's payload). */
const GRO_SLOT = 65536;
const IDLE_POLL_MS = 200;

let init: EngineInit;
let ch: DataChannel; // p2p: the one peer's channel
let stats: SharedStats; // p2p: the statistics; server: the device's own (drops no peer owns)
let signal: Int32Array;
let handled = 0;
let started = false;
let mss = 0;
let pendingPing = false;
const pendingCtl: { bytes: Uint8Array; peer?: number }[] = [];

const peers = new Map<number, EnginePeer>();
const routes = new RouteTable();
const pendingPings = new Set<number>();
/** TCP server: the rx side's connections (bound and pending) and the tx side's send queues. */
let tcpRx: TcpServerRx | null = null;
let tcpTx: TcpSendQueue | null = null;

function post(m: FromEngine) {
  self.postMessage(m);
}

/** The channel a message is for: p2p's, or the server peer's. */
function chFor(peer?: number): DataChannel | undefined {
  return init.mode === "server" ? peers.get(peer ?? -1)?.ch : ch;
}

/** Publish the primary key's epoch of this worker's direction (0: not an epoch key). */
function noteEpochs(peer?: number) {
  const c = chFor(peer);
  const st = init.mode === "server" ? peers.get(peer ?? -1)?.stats : stats;
  if (!c || !st) return;
  const e = c.epochs();
  if (init.role === "tx") st.sendEpoch = e?.send ?? 0;
  else st.recvEpoch = e?.recv ?? 0;
}

function newChannel(peerId: number, st: SharedStats, peer?: number): DataChannel {
  return new DataChannel({
    peerId,
    stats: st,
    provider: init.provider,
    countDrop: (r) => st.countDrop(r),
    onPeerEpoch: init.role === "rx"
      ? (generation, epoch) => post({ t: "epoch", generation, epoch, peer })
      : undefined,
    onEpochChange: () => noteEpochs(peer),
  });
}

self.onmessage = (e: MessageEvent<ToEngine>) => {
  const m = e.data;
  if (m.t !== "init") handled++;
  switch (m.t) {
    case "init":
      init = m;
      stats = new SharedStats(m.stats);
      signal = new Int32Array(m.signal);
      mss = m.mss;
      if (m.mode === "p2p") ch = newChannel(m.peerId, stats);
      post({ t: "ready", role: m.role });
      run().catch((err) => post({ t: "fatal", role: init.role, message: String(err?.message ?? err) }));
      break;
    case "key":
      chFor(m.peer)?.newKey(m.slot, m.material, m.generation);
      noteEpochs(m.peer);
      break;
    case "swap":
      chFor(m.peer)?.keys.swap();
      noteEpochs(m.peer);
      break;
    case "delkey":
      chFor(m.peer)?.keys.delete(m.slot);
      noteEpochs(m.peer);
      break;
    case "follow":
      chFor(m.peer)?.followEpoch(m.generation, m.epoch);
      break;
    case "epoch-next":
      chFor(m.peer)?.nextEpoch();
      break;
    case "peer": {
      if (init.mode === "server") {
        const p = peers.get(m.peer ?? -1);
        if (p && m.mss !== undefined) p.mss = m.mss;
        break;
      }
      if (m.peerId !== undefined) ch.peerId = m.peerId;
      if (m.mss !== undefined) mss = m.mss;
      break;
    }
    case "start":
      started = true;
      break;
    case "ping":
      if (init.mode === "server") pendingPings.add(m.peer ?? -1);
      else pendingPing = true;
      break;
    case "ctl":
      pendingCtl.push({ bytes: m.bytes, peer: m.peer });
      break;
    case "mp-add": {
      peerAddressesChanged(peers);
      const st = new SharedStats(m.stats);
      peers.set(m.peer, {
        id: m.peer,
        ch: newChannel(m.peer, st, m.peer),
        sa: m.sockaddr,
        stats: st,
        mss: m.mss,
        fd: -1,
        source: { routes, peer: m.peer },
      });
      // tx routes by destination, rx checks sources: both keep the table
      for (const r of m.routes) routes.add(r, m.peer);
      break;
    }
    case "mp-del":
      tcpRx?.dropPeer(m.peer);
      peerAddressesChanged(peers);
      peers.get(m.peer)?.ch.close();
      peers.delete(m.peer);
      routes.delPeer(m.peer);
      break;
    case "mp-pending":
      tcpRx?.addPending(m.fd, m.from, m.peers);
      break;
    case "mp-conn": {
      // tx: the peer's connection now (rx bound it itself)
      const p = peers.get(m.peer);
      if (p) p.fd = m.fd;
      break;
    }
    case "mp-float": {
      peerAddressesChanged(peers);
      const p = peers.get(m.peer);
      if (p) p.sa = m.sockaddr;
      break;
    }
    case "route":
      if (m.add) routes.add(m.cidr, m.peer);
      else routes.del(m.cidr, m.peer);
      break;
  }
  if (m.t !== "init" && m.ack !== undefined) post({ t: "ack", ack: m.ack });
};

const yieldNow = () => new Promise((r) => setTimeout(r, 0));

/** Let queued messages in until every posted one is handled. */
async function drainMessages() {
  const idx = init.role === "tx" ? SIGNAL.tx : SIGNAL.rx;
  while (Atomics.load(signal, idx) !== handled && Atomics.load(signal, SIGNAL.stop) === 0) await yieldNow();
}

const stopping = () => Atomics.load(signal, SIGNAL.stop) !== 0;

async function run() {
  const role = init.role;
  const idx = role === "tx" ? SIGNAL.tx : SIGNAL.rx;
  const { pump, idle } = init.win ? windowsEngine() : linuxEngine();
  try {
    while (!stopping()) {
      tick();
      const busy = (role === "rx" || started) ? pump() : 0;
      if (Atomics.load(signal, idx) !== handled) {
        await drainMessages();
        continue;
      }
      if (role === "tx" && (pendingPing || pendingCtl.length || pendingPings.size)) {
        flushTxExtras();
        continue;
      }
      if (busy >= BATCH) continue;
      idle();
    }
  } catch (e) {
    if (e instanceof ClosedError) post({ t: "closed", role, reason: e.message, error: e.error });
    else post({ t: "fatal", role, message: (e as Error).message });
    return;
  } finally {
    ch?.close();
    for (const p of peers.values()) p.ch.close();
  }
  post({ t: "stopped", role });
}

/** The WinTUN pumps (engine_win.ts) and their wait on [data event, wake event]. */
function windowsEngine(): { pump: () => number; idle: () => void } {
  const w = winPumps({
    init: init as EngineInit & { win: WinEngineInit },
    stats,
    ch: () => ch,
    mss: () => mss,
    peers,
    routes,
    post,
    stopping,
    closed: (reason, error) => new ClosedError(reason, error),
  });
  tcpRx = w.tcpRx ?? null;
  tcpTx = w.tcpTx ?? null;
  flushTxExtras = () => {
    const pending = { ping: pendingPing, ctl: pendingCtl, pings: pendingPings };
    pendingPing = false;
    w.extras(pending);
  };
  return { pump: w.pump, idle: () => w.idle(IDLE_POLL_MS, init.role === "rx" || started) };
}

/** Views of the receive batches' source addresses (per slot: no garbage per datagram). */
const spans = new SpanCache(1024);

/** Lengths as the bigints the hot FFI calls take (a plain number falls to a slow path), made once per length. */
const bigLens = new Array<bigint | undefined>(65536 + 64);
const big = (n: number): bigint => (n < bigLens.length ? bigLens[n] ??= BigInt(n) : BigInt(n));

/** The Linux pumps (below) and their wait in poll(2) on [data fd, wake-up pipe]. */
function linuxEngine(): { pump: () => number; idle: () => void } {
  const L = libc().symbols;
  const wakeBuf = new Uint8Array(64);
  const pfd = new Uint8Array(16); // two struct pollfd {int fd; short events; short revents;}
  const pdv = new DataView(pfd.buffer);
  const role = init.role;
  const dataFd = role === "tx" ? init.tunFd : init.sockFd;
  pdv.setInt32(0, dataFd, true);
  pdv.setInt16(4, POLLIN, true);
  pdv.setInt32(8, init.wakeFd, true);
  pdv.setInt16(12, POLLIN, true);
  const server = init.mode === "server";
  const tcpServerRx = server && role === "rx" && init.proto === "tcp";
  const pump = role === "tx"
    ? (server ? makeServerTx() : makeTx())
    : (server ? (init.proto === "tcp" ? makeServerTcpRx() : makeServerRx()) : makeRx());
  const idle = () => {
    if (tcpServerRx) {
      // idle: wait for any peer's connection or a wake-up
      const conns = tcpRx?.fds() ?? [];
      const set = new Uint8Array(8 * (conns.length + 1));
      const sdv = new DataView(set.buffer);
      [init.wakeFd, ...conns].forEach((fd, i) => {
        sdv.setInt32(8 * i, fd, true);
        sdv.setInt16(8 * i + 4, POLLIN, true);
      });
      const r = L.poll(set, BigInt(conns.length + 1), IDLE_POLL_MS);
      if (r < 0 && errno() !== EINTR) throw new Error(`poll: ${errnoText(errno())}`);
      if (sdv.getInt16(6, true) & POLLIN) L.read(init.wakeFd, wakeBuf, BigInt(wakeBuf.length));
      return;
    }
    if (role === "tx" && server && started) {
      const waiting = tcpTx?.waiting() ?? [];
      if (waiting.length) {
        // queued sends: wait for the tun, a wake-up, or any of those connections to take more
        const set = new Uint8Array(8 * (waiting.length + 2));
        const sdv = new DataView(set.buffer);
        set.set(pfd);
        waiting.forEach((fd, i) => {
          sdv.setInt32(16 + 8 * i, fd, true);
          sdv.setInt16(16 + 8 * i + 4, POLLOUT, true);
        });
        const r = L.poll(set, BigInt(waiting.length + 2), IDLE_POLL_MS);
        if (r < 0 && errno() !== EINTR) throw new Error(`poll: ${errnoText(errno())}`);
        if (sdv.getInt16(14, true) & POLLIN) L.read(init.wakeFd, wakeBuf, BigInt(wakeBuf.length));
        return;
      }
    }
    // idle: wait for data or a wake-up (tx polls the tun only once started)
    const nfds = role === "tx" && !started ? 1 : 2;
    const fds = nfds === 2 ? pfd : pfd.subarray(8);
    const r = L.poll(fds, BigInt(nfds), IDLE_POLL_MS);
    if (r < 0 && errno() !== EINTR) throw new Error(`poll: ${errnoText(errno())}`);
    const wakeRevents = pdv.getInt16(14, true);
    if (wakeRevents & POLLIN) L.read(init.wakeFd, wakeBuf, BigInt(wakeBuf.length));
    if (nfds === 2 && pdv.getInt16(6, true) & (POLLERR | POLLHUP) && role === "tx") {
      throw new Error("the tun device went away");
    }
  };
  return { pump, idle };
}

/** The TCP connection ended: closed by the peer, or broken (`error`). */
class ClosedError extends Error {
  constructor(message: string, readonly error = true) {
    super(message);
  }
}

let flushTxExtras = () => {};

/** tun → transport. Returns the number of packets moved in this call. */
function makeTx(): () => number {
  const L = libc().symbols;
  const tcp = init.proto === "tcp";
  const sock = init.sockFd;
  const peer = init.peerSockaddr;
  const peerLen = peer.length;
  // [2-byte TCP length][DATA_V2 header + tag = HEADROOM][plaintext]
  const buf = wasmBytes(2 + HEADROOM + MAX_PLAINTEXT_LEN + 64); // segments' checksums summed in place
  const chBuf = buf.subarray(2);
  const readInto = chBuf.subarray(HEADROOM, HEADROOM + MAX_PLAINTEXT_LEN);
  const readMax = BigInt(readInto.length);
  const viewAt = viewCache(buf);

  /** Send the wire packet at chBuf[start .. start+len]; false on failure (counted by the caller). */
  const sendWire = (start: number, len: number): boolean => {
    if (tcp) {
      buf[start] = len >> 8;
      buf[start + 1] = len & 0xff;
      return sendAllTcp(viewAt(start), len + 2);
    }
    for (;;) {
      const n = Number(L.sendto(sock, viewAt(start + 2), big(len), 0, peer, peerLen));
      if (n >= 0) return true;
      if (errno() !== EINTR) return false;
    }
  };

  const sendAllTcp = (v: Uint8Array, len: number): boolean => {
    let off = 0;
    while (off < len) {
      const part = off === 0 ? v : v.subarray(off);
      const n = Number(L.send(sock, part, BigInt(len - off), MSG_NOSIGNAL));
      if (n < 0) {
        const e = errno();
        if (e === EINTR || e === EAGAIN) continue;
        throw new ClosedError(`TCP connection lost: ${errnoText(e)}`);
      }
      off += n;
    }
    return true;
  };

  const sendSealed = (start: number, end: number, control: boolean) => {
    const wireLen = end - start;
    const lost = countSend(stats, wireLen, control);
    if (!sendWire(start, wireLen)) lost();
  };

  flushTxExtras = () => {
    if (pendingPing) {
      pendingPing = false;
      const start = ch.sealKeepalive(chBuf);
      if (start >= 0) sendSealed(start, ch.sealEnd, false);
    }
    while (pendingCtl.length) {
      const c = pendingCtl.shift()!.bytes;
      if (c.length === 0 || c.length > MAX_CONTROL_LEN) {
        stats.LostOutControlPackets++;
        continue;
      }
      // control packets go out unchanged: place them so that they end at HEADROOM + len
      const start = HEADROOM;
      chBuf.set(c, start);
      sendSealed(start, start + c.length, true);
    }
  };

  if (!tcp) return makeUdpBatchTx();
  // TCP: the framed packets of one batch are gathered and written with one send (fewer system calls)
  const out = new Uint8Array(BATCH * (2 + MAX_WIRE_LEN));
  let used = 0;
  const flushOut = () => {
    if (used > 0) sendAllTcp(out, used); // a failure ends the connection (ClosedError)
    used = 0;
  };
  const sealAndSend = (n: number) => {
    if (mss > 0) clampMss(chBuf, HEADROOM, n, mss);
    const start = ch.seal(chBuf, n);
    if (start < 0) return; // counted as lost by the channel
    const len = ch.sealEnd - start;
    if (used + 2 + len > out.length) flushOut();
    countSend(stats, len, false);
    out[used] = len >> 8;
    out[used + 1] = len & 0xff;
    out.set(chBuf.subarray(start, start + len), used + 2);
    used += 2 + len;
  };
  const readOffload = init.vnetHdr
    ? makeOffloadReader(sealAndSend, constOut(chBuf), (p) => readInto.set(p))
    : null;
  return () => {
    const moved = readBatch(
      readOffload ?? (() => Number(L.read(init.tunFd, readInto, readMax))),
      readOffload ? null : sealAndSend,
    );
    flushOut();
    return moved;
  };
}

/**
 * Up to BATCH tun reads: `read` returns what read(2) did; `handle` takes each packet read (null: the offload
 * reader already did). Returns how many reads brought a packet.
 */
function readBatch(read: () => number, handle: ((n: number) => void) | null): number {
  let moved = 0;
  while (moved < BATCH) {
    const n = read();
    if (n <= 0) {
      if (n < 0) {
        const e = errno();
        if (e === EAGAIN || e === EINTR) break;
        throw new Error(`reading the tun device: ${errnoText(e)}`);
      }
      break;
    }
    moved++;
    handle?.(n);
  }
  return moved;
}

/** The UDP send batch of a tx worker: BATCH slots, GSO joins unless the kernel or the settings refuse it. */
function newUdpTx(): UdpBatchTx {
  return new UdpBatchTx(libc().symbols, init.sockFd, BATCH, HEADROOM + MAX_PLAINTEXT_LEN + 64, {
    gso: !!init.udpOffload,
    onGsoOff: (why) => post({ t: "log", line: `${why}; datagrams are sent one by one from now on` }),
  });
}

/**
 * UDP tun → transport in batches: up to BATCH packets read from the tun, each sealed in its own slot of `tx`
 * (`seal` returns the sealed packet's start and sets `sealed` to its length and destination, or -1), then all of
 * them sent at once ({@linkcode UdpBatchTx}: sendmmsg, runs of one size joined with UDP_SEGMENT).
 */
function makeUdpBatchReader(
  tx: UdpBatchTx,
  seal: (
    b: Uint8Array,
    n: number,
  ) => { start: number; len: number; to: Uint8Array; count: SendCount } | null,
): () => number {
  const L = libc().symbols;
  const reads = tx.bufs.map((b) => b.subarray(HEADROOM, HEADROOM + MAX_PLAINTEXT_LEN));
  const readMax = BigInt(MAX_PLAINTEXT_LEN);
  /** Seal the plaintext of `n` bytes at HEADROOM of the current slot and queue it; flush a full batch. */
  const queue = (n: number) => {
    const s = seal(tx.bufs[tx.filled], n);
    if (s === null) return; // counted by the channel, or as no route
    s.count.sent(s.len);
    if (tx.add(s.start, s.len, s.to, s.count)) tx.flush();
  };
  const slot = { buf: tx.bufs[0], at: HEADROOM }; // one object, pointed at the current slot (no garbage)
  const slotOut = () => {
    slot.buf = tx.bufs[tx.filled];
    return slot;
  };
  const readOffload = init.vnetHdr ? makeOffloadReader(queue, slotOut, (p) => reads[tx.filled].set(p)) : null;
  const readPlain = () => Number(L.read(init.tunFd, reads[tx.filled], readMax));
  return () => {
    const moved = readBatch(readOffload ?? readPlain, readOffload ? null : queue);
    tx.flush();
    stats.setUdpGso(tx.gsoSends, tx.gsoDatagrams);
    return moved;
  };
}

/** p2p UDP tun → transport: every packet sealed with the one channel, to the one peer. */
function makeUdpBatchTx(): () => number {
  const to = init.peerSockaddr;
  const sealed = { start: 0, len: 0, to, count: new SendCount(stats) };
  return makeUdpBatchReader(newUdpTx(), (b, n) => {
    if (mss > 0) clampMss(b, HEADROOM, n, mss);
    const start = ch.seal(b, n);
    if (start < 0) return null;
    sealed.start = start;
    sealed.len = ch.sealEnd - start;
    return sealed;
  });
}

/** The `out` of {@linkcode makeOffloadReader} for one fixed buffer: the same object every time. */
function constOut(buf: Uint8Array): () => { buf: Uint8Array; at: number } {
  const o = { buf, at: HEADROOM };
  return () => o;
}

/**
 * A tun read with its virtio_net_hdr (offload on): a plain packet (its partial checksum completed) is copied to
 * `copy` and queued; a TCP super-packet is split into segments written where `out` says and each queued. Returns
 * what read(2) returned (≤ 0: nothing was read, errno tells why); a malformed one is counted and dropped.
 */
function makeOffloadReader(
  queue: (n: number) => void,
  out: () => { buf: Uint8Array; at: number },
  copy: (p: Uint8Array) => void,
): () => number {
  const L = libc().symbols;
  const sup = wasmBytes(VNET_HDR_LEN + 65536);
  const max = BigInt(sup.length);
  const hdr = parseVnetHdr(sup); // parsed into this one object per read (no garbage per packet)
  // a plain packet's view of `sup` by its read length, made once per length (the copy into the send slot)
  const plainViews = new Array<Uint8Array | undefined>(VNET_HDR_LEN + MAX_PLAINTEXT_LEN + 1);
  return () => {
    const r = Number(L.read(init.tunFd, sup, max));
    if (r <= 0) return r;
    const n = r - VNET_HDR_LEN;
    try {
      if (n <= 0) throw new GsoError("no packet after the virtio_net_hdr");
      const h = parseVnetHdr(sup, 0, hdr);
      if (h.gsoType === GSO_NONE) {
        if (n > MAX_PLAINTEXT_LEN) throw new GsoError(`a ${n}-byte packet without GSO`);
        if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) completeChecksum(sup, VNET_HDR_LEN, n, h);
        copy(plainViews[r] ??= sup.subarray(VNET_HDR_LEN, r));
        queue(n);
      } else {
        stats.countSplit(splitSuperPacket(sup, VNET_HDR_LEN, n, h, out, (_i, size) => queue(size)));
      }
    } catch (e) {
      if (!(e instanceof GsoError)) throw e;
      stats.LostOutDataPackets++;
      stats.countDrop("bad-offload");
    }
    return r;
  };
}

/** transport → tun. Returns the number of packets handled in this call. */
function makeRx(): () => number {
  const L = libc().symbols;
  const tcp = init.proto === "tcp";
  const sock = init.sockFd;
  const peer = init.peerSockaddr;
  const v6 = peer.length === 28;
  // UDP: the recvmmsg slots; plaintext views of them are cached per offset (TCP: the deframer's buffer)
  const gro = !tcp && !!init.udpOffload && udpGro(sock);
  // one slot more than recvmmsg fills: the work area small datagrams are opened in (see workArea)
  const mb = tcp ? null : new MsgBatch(BATCH + 1, gro ? GRO_SLOT : MAX_WIRE_LEN + 512, { gro });
  const buf = mb?.data;
  const cached = viewCache(buf ?? new Uint8Array(0));
  const viewAt = (b: Uint8Array, off: number) => b === buf ? cached(off) : b.subarray(off);
  const deframer = tcp ? new TcpDeframer(MAX_WIRE_LEN) : undefined;

  const tunSink = makeTunSink(stats, viewAt);
  const flushGro = tunSink.flush;
  const sinks = {
    control: (p: Uint8Array) => post({ t: "ctl", bytes: p }),
    tun: tunSink.tun,
  };
  const deliver = (b: Uint8Array, off: number, len: number) => receive(ch, stats, mss, b, off, len, sinks);

  if (tcp) {
    const d = deframer!;
    const recv = (w: Uint8Array) => Number(L.recv(sock, w, big(w.length), MSG_DONTWAIT));
    return () => {
      const r = tcpReceive(d, recv, tcpFailure, deliver);
      flushGro();
      if (r.end) throw new ClosedError(r.end.reason, r.end.error);
      return r.packets;
    };
  }

  // UDP: up to BATCH datagrams per recvmmsg, each checked against the peer's address, then delivered
  const rx = mb!;
  const data = rx.data, names = rx.names;
  const fromPeerAt = (i: number): boolean => {
    const o = i * NAME_LEN;
    if (rx.nameLen(i) < (v6 ? 28 : 16)) return false;
    if (
      names[o] !== peer[0] || names[o + 1] !== peer[1] || names[o + 2] !== peer[2] || names[o + 3] !== peer[3]
    ) {
      return false;
    }
    const [a, b] = v6 ? [8, 24] : [4, 8];
    for (let k = a; k < b; k++) if (names[o + k] !== peer[k]) return false;
    return true;
  };
  const recv = (hdrs: Uint8Array, max: number) => L.recvmmsg(sock, hdrs, max, MSG_DONTWAIT, null);
  let fromPeer = false;
  const slot = (i: number) => void (fromPeer = fromPeerAt(i));
  const each = (o: number, n: number) => {
    if (!fromPeer) {
      if (isDataV2(data, o, n)) stats.LostInDataPackets++;
      else stats.LostInControlPackets++;
      stats.countDrop("wrong-source");
    } else if (n > 0) deliver(data, o, n);
  };
  return () => {
    const got = rx.receive(recv, BATCH);
    if (got < 0) {
      const e = errno();
      // EAGAIN: nothing waiting; anything else (e.g. ECONNREFUSED from an ICMP error) is not fatal for UDP
      return e === EAGAIN || e === EINTR ? 0 : 1;
    }
    const datagrams = eachDatagram(rx, got, slot, each);
    flushGro();
    return datagrams;
  };
}

/**
 * Datagrams up to this long are moved to the work area of their receive batch and opened there: the views
 * the channel and the coalescer hand to FFI calls are cached per buffer and offset, and a batch of UDP_GRO
 * trains of small datagrams has thousands of offsets (64 slots × up to 64 datagrams) — more objects than
 * the caches hold well, and a lookup that missed the CPU's cache per packet. Moving 100 bytes costs less;
 * larger datagrams are opened where they are.
 */
const SMALL = 256;

/** The work area of a receive batch made with one slot more than recvmmsg is given: that last slot. */
function workArea(mb: MsgBatch): number {
  return (mb.n - 1) * mb.size;
}

/**
 * Every datagram in the `got` slots a receive filled, UDP_GRO trains cut at their segment size: `slot(i)` before
 * slot `i`'s, then `each(off, n)` per datagram, at `mb.data[off .. off+n]` — one of up to SMALL bytes after it was
 * moved to the batch's work area. Returns how many datagrams there were.
 */
function eachDatagram(
  mb: MsgBatch,
  got: number,
  slot: (i: number) => void,
  each: (off: number, n: number) => void,
): number {
  const data = mb.data, size = mb.size, work = workArea(mb);
  let datagrams = 0;
  for (let i = 0; i < got; i++) {
    const len = mb.received(i), off = i * size, end = off + len, seg = trainOf(mb, i, len);
    slot(i);
    let o = off;
    do {
      const n = Math.min(seg, end - o);
      datagrams++;
      if (n > SMALL) each(o, n);
      else {
        data.copyWithin(work, o, o + n);
        each(work, n);
      }
      o += seg;
    } while (o < end);
  }
  return datagrams;
}

/** UDP_GRO on the transport socket; where the kernel refuses it, one log line and one datagram per slot. */
function udpGro(sock: number): boolean {
  if (enableUdpGro(libc().symbols.setsockopt, sock)) return true;
  post({
    t: "log",
    line: `UDP_GRO refused by the kernel (${errnoText(errno())}): datagrams are received one by one`,
  });
  return false;
}

/**
 * The size of the datagrams slot `i` of a receive batch holds (`len` bytes in all): the UDP_GRO segment size of
 * a coalesced train (counted in the statistics), else `len` itself (one datagram).
 */
function trainOf(mb: MsgBatch, i: number, len: number): number {
  const seg = mb.groSize(i);
  if (seg <= 0 || seg >= len) return len;
  stats.countUdpGro(Math.ceil(len / seg));
  return seg;
}

/**
 * Writing decrypted packets to the tun. Offload on: every write starts with a virtio_net_hdr — with GRO (the
 * kernel took the offload flags) TCP segments are joined into super-packets until `flush` (end of a batch);
 * otherwise a zero header goes in place over the spent packet header in front of the plaintext, or through a
 * scratch buffer. `st` gets the GRO figures and the packets a failed write lost.
 */
function makeTunSink(
  st: SharedStats,
  viewAt: (b: Uint8Array, off: number) => Uint8Array,
): { tun: (b: Uint8Array, off: number, len: number) => boolean; flush: () => void } {
  const L = libc().symbols;
  const vh = init.vnetHdr ? VNET_HDR_LEN : 0;
  const scratch = vh ? new Uint8Array(VNET_HDR_LEN + MAX_WIRE_LEN) : new Uint8Array(0);
  const gro = init.gro
    ? new Coalescer(
      (w, n) => Number(L.write(init.tunFd, w, big(n))) === n,
      (packets, bytes) => {
        st.LostInDataPackets += packets;
        // p2p: the bytes were counted on these very statistics; a server counted them on each packet's peer,
        // which the joined write no longer tells apart, so the device keeps its count (never below zero)
        if (init.mode !== "server") st.TunBytesReceived -= bytes;
        for (let i = 0; i < packets; i++) st.countDrop("queue-full");
      },
      { udp: !!init.groUdp },
    )
    : null;
  return {
    flush() {
      if (!gro) return;
      gro.flush();
      st.setJoined(gro.supers, gro.joined);
    },
    tun(b: Uint8Array, off: number, len: number): boolean {
      if (gro) {
        gro.push(b, off, len); // written at the end of this batch, or before a packet it cannot join
        return true;
      }
      if (!vh) return Number(L.write(init.tunFd, viewAt(b, off), big(len))) === len;
      if (off >= vh) {
        b.fill(0, off - vh, off);
        return Number(L.write(init.tunFd, viewAt(b, off - vh), big(len + vh))) === len + vh;
      }
      scratch.fill(0, 0, vh);
      scratch.set(b.subarray(off, off + len), vh);
      return Number(L.write(init.tunFd, scratch, big(len + vh))) === len + vh;
    },
  };
}

/** Server mode, tun → transport: each packet to the peer that holds its destination. */
function makeServerTx(): () => number {
  const L = libc().symbols;
  const sock = init.sockFd;
  // [2-byte TCP length][header (+ tag) = HEADROOM][plaintext][tag of the epoch format]
  const outer = wasmBytes(2 + HEADROOM + MAX_PLAINTEXT_LEN + 64);
  const buf = outer.subarray(2);
  const readInto = buf.subarray(HEADROOM, HEADROOM + MAX_PLAINTEXT_LEN);
  const readMax = BigInt(readInto.length);
  /** A view of `outer` from `off` (buf's offset `off - 2`). */
  const outerAt = viewCache(outer);
  const viewAt = (off: number) => outerAt(off + 2);
  const tcp = init.proto === "tcp";
  const queue = tcp ? tcpTx = new TcpSendQueue(peers, linuxSendNow, post) : null;
  const sendTo = (p: EnginePeer, start: number, end: number, control: boolean) => {
    const len = end - start;
    const lost = countSend(p.stats, len, control);
    if (tcp) {
      // [2-byte length][packet] to the peer's connection (HEADROOM leaves room in front), never waiting: what
      // the connection does not take now waits in the peer's own bounded queue, so no peer stalls another
      if (p.fd < 0) return lost();
      outer[start] = len >> 8;
      outer[start + 1] = len & 0xff;
      if (!queue!.send(p, outerAt(start), len + 2)) lost();
      return;
    }
    for (;;) {
      if (Number(L.sendto(sock, viewAt(start), big(len), 0, p.sa, p.sa.length)) >= 0) return;
      if (errno() !== EINTR) return lost();
    }
  };
  flushTxExtras = () => {
    for (const id of pendingPings) {
      const p = peers.get(id);
      if (!p) continue;
      const start = p.ch.sealKeepalive(buf);
      if (start >= 0) sendTo(p, start, p.ch.sealEnd, false);
    }
    pendingPings.clear();
    while (pendingCtl.length) {
      const c = pendingCtl.shift()!;
      const p = peers.get(c.peer ?? -1);
      if (!p || c.bytes.length === 0 || c.bytes.length > MAX_CONTROL_LEN) {
        (p?.stats ?? stats).LostOutControlPackets++;
        continue;
      }
      buf.set(c.bytes, HEADROOM);
      sendTo(p, HEADROOM, HEADROOM + c.bytes.length, true);
    }
  };
  /** The plaintext of `n` bytes at HEADROOM: to the peer of its destination. */
  const at = { start: 0 };
  const route = (n: number) => {
    const p = sealForRoute(peers, routes, stats, buf, n, at);
    if (p) sendTo(p, at.start, p.ch.sealEnd, false);
  };
  if (!tcp) {
    const sealed: { start: number; len: number; to: Uint8Array; count: SendCount } = {
      start: 0,
      len: 0,
      to: new Uint8Array(0),
      count: new SendCount(stats),
    };
    return makeUdpBatchReader(newUdpTx(), (b, n) => {
      const p = sealForRoute(peers, routes, stats, b, n, sealed);
      if (!p) return null;
      sealed.len = p.ch.sealEnd - sealed.start;
      sealed.to = p.sa;
      sealed.count = p.sendCount ??= new SendCount(p.stats);
      return sealed;
    });
  }
  const readOffload = init.vnetHdr ? makeOffloadReader(route, constOut(buf), (p) => readInto.set(p)) : null;
  return () =>
    queue!.drain() +
    readBatch(
      readOffload ?? (() => Number(L.read(init.tunFd, readInto, readMax))),
      readOffload ? null : route,
    );
}

/** Send as much of `v[0 .. len]` as connection `fd` takes now (MSG_DONTWAIT): the bytes sent, or -1 when it failed. */
function linuxSendNow(fd: number, v: Uint8Array, len: number): number {
  const L = libc().symbols;
  let off = 0;
  while (off < len) {
    const n = Number(L.send(fd, off ? v.subarray(off) : v, BigInt(len - off), MSG_NOSIGNAL | MSG_DONTWAIT));
    if (n < 0) {
      const e = errno();
      if (e === EINTR) continue;
      return e === EAGAIN ? off : -1;
    }
    off += n;
  }
  return off;
}

/**
 * Server mode, transport → tun: a data packet goes to the peer its peer id names; once authentic, a new
 * source address moves (floats) the peer. Control packets go up with the address they came from.
 */
function makeServerRx(): () => number {
  const L = libc().symbols;
  const sock = init.sockFd;
  // up to BATCH datagrams (or UDP_GRO trains) per recvmmsg; plaintext views of the slots cached per offset
  const gro = !!init.udpOffload && udpGro(sock);
  const mb = new MsgBatch(BATCH + 1, gro ? GRO_SLOT : MAX_WIRE_LEN + 512, { gro }); // + the work area
  const buf = mb.data, names = mb.names;
  const viewAt = viewCache(buf);
  const tunSink = makeTunSink(stats, (b, off) => b === buf ? viewAt(off) : b.subarray(off));
  const sinks = { control: (_p: Uint8Array) => {}, tun: tunSink.tun };
  const recv = (hdrs: Uint8Array, max: number) => L.recvmmsg(sock, hdrs, max, MSG_DONTWAIT, null);
  let src = names;
  const slot = (i: number) => void (src = spans.view(names, i * NAME_LEN, i * NAME_LEN + mb.nameLen(i)));
  const each = (o: number, n: number) => {
    if (n > 0) serverReceive(peers, stats, buf, o, n, src, sinks, post);
  };
  return () => {
    const got = mb.receive(recv, BATCH);
    if (got < 0) {
      const e = errno();
      return e === EAGAIN || e === EINTR ? 0 : 1; // anything else (an ICMP error) is not fatal for UDP
    }
    const datagrams = eachDatagram(mb, got, slot, each);
    tunSink.flush();
    return datagrams;
  };
}

/** TCP server, transport → tun: each peer's connection (and the pending ones), opened with its channel. */
function makeServerTcpRx(): () => number {
  const L = libc().symbols;
  const tunSink = makeTunSink(stats, (b, off) => off === 0 ? b : b.subarray(off));
  const sinks = { control: (b: Uint8Array) => post({ t: "ctl", bytes: b }), tun: tunSink.tun };
  const rx = tcpRx = new TcpServerRx(
    peers,
    stats,
    {
      recv: (fd, w) => Number(L.recv(fd, w, big(w.length), MSG_DONTWAIT)),
      failure: tcpFailure,
    },
    sinks,
    post,
  );
  return () => {
    const n = rx.round();
    tunSink.flush();
    return n;
  };
}

/** After a failed recv(2): null when nothing waits now (EAGAIN, EINTR), else why the connection broke. */
function tcpFailure(): string | null {
  const e = errno();
  return e === EAGAIN || e === EINTR ? null : `TCP connection lost: ${errnoText(e)}`;
}
