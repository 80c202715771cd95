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
 * @module
 */
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
} from "../../ffi/libc.ts";
import { DataChannel } from "../datachannel/channel.ts";
import { countSend, receive } from "./datapath.ts";
import type { EngineInit, FromEngine, ToEngine } from "./engine_protocol.ts";
import { SIGNAL } from "./engine_protocol.ts";
import { FramingError, TcpDeframer } from "../datachannel/framing.ts";
import { clampMss } from "../datachannel/mss.ts";
import {
  HEADROOM,
  isDataV2,
  MAX_CONTROL_LEN,
  MAX_PLAINTEXT_LEN,
  MAX_WIRE_LEN,
} from "../datachannel/packet.ts";
import { SharedStats } from "./shared_stats.ts";

const BATCH = 64;
const IDLE_POLL_MS = 200;

let init: EngineInit;
let ch: DataChannel;
let stats: SharedStats;
let signal: Int32Array;
let handled = 0;
let started = false;
let mss = 0;
let pendingPing = false;
const pendingCtl: Uint8Array[] = [];

function post(m: FromEngine) {
  self.postMessage(m);
}

/** Publish the primary key's epoch of this worker's direction (0: not an epoch key). */
function noteEpochs() {
  const e = ch.epochs();
  if (init.role === "tx") stats.sendEpoch = e?.send ?? 0;
  else stats.recvEpoch = e?.recv ?? 0;
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
      ch = new DataChannel({
        peerId: m.peerId,
        stats,
        provider: m.provider,
        countDrop: (r) => stats.countDrop(r),
        onPeerEpoch: m.role === "rx"
          ? (generation, epoch) => post({ t: "epoch", generation, epoch })
          : undefined,
        onEpochChange: noteEpochs,
      });
      post({ t: "ready", role: m.role });
      run().catch((err) => post({ t: "fatal", role: init.role, message: String(err?.message ?? err) }));
      break;
    case "key":
      ch.newKey(m.slot, m.material, m.generation);
      noteEpochs();
      break;
    case "swap":
      ch.keys.swap();
      noteEpochs();
      break;
    case "delkey":
      ch.keys.delete(m.slot);
      noteEpochs();
      break;
    case "follow":
      ch.followEpoch(m.generation, m.epoch);
      break;
    case "epoch-next":
      ch.nextEpoch();
      break;
    case "peer":
      if (m.peerId !== undefined) ch.peerId = m.peerId;
      if (m.mss !== undefined) mss = m.mss;
      break;
    case "start":
      started = true;
      break;
    case "ping":
      pendingPing = true;
      break;
    case "ctl":
      pendingCtl.push(m.bytes);
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
  const pump = role === "tx" ? makeTx() : makeRx();
  const idx = role === "tx" ? SIGNAL.tx : SIGNAL.rx;
  try {
    while (!stopping()) {
      const busy = (role === "rx" || started) ? pump() : 0;
      if (Atomics.load(signal, idx) !== handled) {
        await drainMessages();
        continue;
      }
      if (role === "tx" && (pendingPing || pendingCtl.length)) {
        flushTxExtras();
        continue;
      }
      if (busy >= BATCH) continue;
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
    }
  } catch (e) {
    if (e instanceof ClosedError) post({ t: "closed", role, reason: e.message });
    else post({ t: "fatal", role, message: (e as Error).message });
    return;
  } finally {
    ch.close();
  }
  post({ t: "stopped", role });
}

class ClosedError extends Error {}

let flushTxExtras = () => {};

/** tun → transport. Returns the number of packets moved in this call. */
function makeTx(): () => number {
  const L = libc().symbols;
  const tcp = init.proto === "tcp";
  const sock = init.sockFd;
  const peer = init.peerSockaddr;
  const peerLen = peer.length;
  // [2-byte TCP length][DATA_V2 header + tag = HEADROOM][plaintext]
  const buf = new Uint8Array(2 + HEADROOM + MAX_PLAINTEXT_LEN + 64);
  const chBuf = buf.subarray(2);
  const readInto = chBuf.subarray(HEADROOM, HEADROOM + MAX_PLAINTEXT_LEN);
  const readMax = BigInt(readInto.length);
  const views = new Map<number, Uint8Array>();
  const viewAt = (off: number) => {
    let v = views.get(off);
    if (!v) views.set(off, v = buf.subarray(off));
    return v;
  };

  /** Send the wire packet at chBuf[start .. start+len]; false on failure (counted by the caller). */
  const sendWire = (start: number, len: number): boolean => {
    if (tcp) {
      buf[start] = len >> 8;
      buf[start + 1] = len & 0xff;
      return sendAllTcp(viewAt(start), len + 2);
    }
    for (;;) {
      const n = Number(L.sendto(sock, viewAt(start + 2), BigInt(len), 0, peer, peerLen));
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
      const c = pendingCtl.shift()!;
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

  return () => {
    let moved = 0;
    while (moved < BATCH) {
      const n = Number(L.read(init.tunFd, readInto, readMax));
      if (n <= 0) {
        if (n < 0) {
          const e = errno();
          if (e === EAGAIN || e === EINTR) break;
          throw new Error(`reading the tun device: ${errnoText(e)}`);
        }
        break;
      }
      moved++;
      if (mss > 0) clampMss(chBuf, HEADROOM, n, mss);
      const start = ch.seal(chBuf, n);
      if (start < 0) continue; // counted as lost by the channel
      sendSealed(start, ch.sealEnd, false);
    }
    return moved;
  };
}

/** transport → tun. Returns the number of packets handled in this call. */
function makeRx(): () => number {
  const L = libc().symbols;
  const tcp = init.proto === "tcp";
  const sock = init.sockFd;
  const peer = init.peerSockaddr;
  const v6 = peer.length === 28;
  const src = new Uint8Array(28);
  const srcLen = new Uint32Array(1);
  const buf = new Uint8Array(MAX_WIRE_LEN + 512);
  const recvMax = BigInt(buf.length);
  const views = new Map<number, Uint8Array>();
  const viewAt = (b: Uint8Array, off: number) => {
    if (b !== buf) return b.subarray(off);
    let v = views.get(off);
    if (!v) views.set(off, v = buf.subarray(off));
    return v;
  };
  const deframer = tcp ? new TcpDeframer(MAX_WIRE_LEN) : undefined;

  const fromPeer = (): boolean => {
    // family, port and address must match the peer's
    if (src[0] !== peer[0] || src[1] !== peer[1] || src[2] !== peer[2] || src[3] !== peer[3]) return false;
    const [a, b] = v6 ? [8, 24] : [4, 8];
    for (let i = a; i < b; i++) if (src[i] !== peer[i]) return false;
    return true;
  };

  const sinks = {
    control: (p: Uint8Array) => post({ t: "ctl", bytes: p }),
    tun: (b: Uint8Array, off: number, len: number) =>
      Number(L.write(init.tunFd, viewAt(b, off), BigInt(len))) === len,
  };
  const deliver = (b: Uint8Array, off: number, len: number) => receive(ch, stats, mss, b, off, len, sinks);

  if (tcp) {
    const d = deframer!;
    return () => {
      let handledNow = 0;
      for (let round = 0; round < 8; round++) {
        const w = d.writable();
        const n = Number(L.recv(sock, w, BigInt(w.length), MSG_DONTWAIT));
        if (n === 0) throw new ClosedError("the peer closed the TCP connection");
        if (n < 0) {
          const e = errno();
          if (e === EAGAIN || e === EINTR) break;
          throw new ClosedError(`TCP connection lost: ${errnoText(e)}`);
        }
        try {
          d.commit(n, (b, off, len) => {
            handledNow++;
            deliver(b, off, len);
          });
        } catch (e) {
          if (e instanceof FramingError) throw new ClosedError(`TCP stream reset: ${e.message}`);
          throw e;
        }
      }
      return handledNow;
    };
  }

  return () => {
    let n = 0;
    for (; n < BATCH; n++) {
      srcLen[0] = src.length;
      const len = Number(L.recvfrom(sock, buf, recvMax, MSG_DONTWAIT, src, srcLen));
      if (len < 0) {
        const e = errno();
        if (e === EAGAIN || e === EINTR) break;
        continue; // e.g. ECONNREFUSED from an ICMP error: not fatal for UDP
      }
      if (!fromPeer()) {
        if (isDataV2(buf, 0, len)) stats.LostInDataPackets++;
        else stats.LostInControlPackets++;
        stats.countDrop("wrong-source");
        continue;
      }
      if (len === 0) continue;
      deliver(buf, 0, len);
    }
    return n;
  };
}
