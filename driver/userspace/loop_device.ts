/**
 * A userspace Device that runs the data channel on the main event loop, over any `PacketTun` (WinTUN
 * on Windows) and Deno's own sockets (node:dgram for UDP, Deno.connect/listen for TCP). It is the
 * portable sibling of the Linux `UserspaceDevice` (whose workers call libc directly): same data channel,
 * same counters and semantics, one promise per UDP datagram instead of batched system calls.
 *
 * @example
 * ```ts
 * import { LoopDevice } from "./loop_device.ts";
 * // const dev = new LoopDevice(WintunTun.open("ovpn"), { backend: "wintun" });
 * ```
 * @module
 */
import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import type { ProviderName } from "../../crypto/providers.ts";
import { type Device, DeviceError, type PeerConfig } from "../device.ts";
import { formatEndpoint, sameIP, type SetPeer, type SockAddr } from "../uapi.ts";
import { DataChannel } from "../datachannel/channel.ts";
import { countSend, receive } from "./datapath.ts";
import { EngineDeviceBase } from "./device_base.ts";
import { FramingError, TcpDeframer } from "../datachannel/framing.ts";
import type { KeyMaterial, KeySlotId } from "../datachannel/keyslot.ts";
import { clampMss } from "../datachannel/mss.ts";
import { HEADROOM, isDataV2, MAX_PLAINTEXT_LEN, MAX_WIRE_LEN, TAILROOM } from "../datachannel/packet.ts";
import { SharedStats } from "./shared_stats.ts";

/** A tun-like packet source and sink driven from the event loop. */
export interface PacketTun {
  readonly name: string;
  /** Hand up to `max` waiting packets to `into` (the view is valid only during the call); the count. */
  drain(into: (p: Uint8Array) => void, max: number): number;
  /** Resolve when packets may be waiting, or after `ms`. */
  wait(ms: number): Promise<void>;
  /** Deliver one packet to the OS; false when it had to be dropped (ring full). */
  write(p: Uint8Array): boolean;
  configure(o: { mtu: number; addresses: string[] }, log?: (line: string) => void): Promise<void>;
  close(): void;
}

const BATCH = 64;
const yieldToLoop = () => new Promise<void>((r) => setTimeout(r, 0));

/**
 * A UDP socket bound to `local` (IPv6: v6 only) handing each datagram to `onMessage` as a plain Uint8Array view
 * (Buffer's slice() would not copy); a port in use is one clear error.
 */
export async function bindUdp(
  local: SockAddr,
  onMessage: (msg: Uint8Array, from: { address: string; port: number }) => void,
  log: (line: string) => void,
): Promise<dgram.Socket> {
  const v6 = local.address.includes(":");
  const sock = dgram.createSocket({ type: v6 ? "udp6" : "udp4", ipv6Only: v6 });
  await new Promise<void>((resolve, reject) => {
    sock.once("error", (e: Error & { code?: string }) => {
      const where = formatEndpoint(local);
      reject(
        e.code === "EADDRINUSE"
          ? new DeviceError(`local UDP port ${where} is already in use; pick another --local port`, "busy")
          : new DeviceError(`binding UDP ${where}: ${e.message}`),
      );
    });
    sock.bind(local.port, local.address, () => resolve());
  });
  sock.on("error", (e: Error) => log(`UDP socket error: ${e.message}`));
  sock.on("message", (buf: Uint8Array, rinfo: { address: string; port: number }) => {
    onMessage(new Uint8Array(buf.buffer, buf.byteOffset, buf.length), rinfo);
  });
  return sock;
}

/** A TCP listener on `local`; a port in use is one clear error. */
export function listenTcp(local: SockAddr): Deno.Listener {
  try {
    return Deno.listen({ hostname: local.address, port: local.port });
  } catch (e) {
    const where = formatEndpoint(local);
    if (e instanceof Deno.errors.AddrInUse) {
      throw new DeviceError(`local TCP port ${where} is already in use; pick another --local port`, "busy");
    }
    throw new DeviceError(`listening on ${where}: ${(e as Error).message}`);
  }
}

/** The data channel on the main event loop. */
export class LoopDevice extends EngineDeviceBase implements Device {
  readonly backend: string;
  readonly ifname: string;
  readonly stats = new SharedStats();
  #tun: PacketTun;
  #ch: DataChannel;
  #log: (line: string) => void;
  #udp: dgram.Socket | null = null;
  #tcp: Deno.Conn | null = null;
  #tcpWrite: Promise<void> = Promise.resolve();
  #loops: Promise<void>[] = [];
  #txBuf = new Uint8Array(2 + HEADROOM + MAX_PLAINTEXT_LEN + 64).subarray(2);

  constructor(
    tun: PacketTun,
    opts: { backend?: string; provider?: ProviderName; log?: (l: string) => void } = {},
  ) {
    super();
    this.#tun = tun;
    this.ifname = tun.name;
    this.backend = opts.backend ?? "loop";
    this.#log = opts.log ?? ((l) => console.error(l));
    this.#ch = new DataChannel({
      stats: this.stats,
      provider: opts.provider,
      countDrop: (r) => this.stats.countDrop(r),
    });
  }

  configureInterface(o: { mtu: number; addresses: string[] }): Promise<void> {
    return this.#tun.configure(o, this.#log);
  }

  async newPeer(p: PeerConfig): Promise<void> {
    this.requireNoPeer();
    const timeout = p.connectTimeoutMs ?? 30_000;
    if (p.proto === "udp") {
      this.#udp = await this.#bindUdp(p);
    } else {
      this.#tcp = p.listen ? await this.#accept(p, timeout) : await this.#connect(p, timeout);
    }
    this.peer = p;
    if (p.peerId !== undefined) this.peerId = this.#ch.peerId = p.peerId;
    this.startTimer();
    this.#loops.push(this.#txLoop());
    if (this.#tcp) this.#loops.push(this.#tcpRxLoop(this.#tcp));
  }

  async #bindUdp(p: PeerConfig): Promise<dgram.Socket> {
    return await bindUdp(p.local, (msg, rinfo) => {
      if (rinfo.port !== p.remote.port || !sameIP(rinfo.address, p.remote.address)) {
        if (isDataV2(msg)) this.stats.LostInDataPackets++;
        else this.stats.LostInControlPackets++;
        this.stats.countDrop("wrong-source");
        return;
      }
      this.#fromNet(msg, 0, msg.length);
    }, this.#log);
  }

  async #connect(p: PeerConfig, timeoutMs: number): Promise<Deno.Conn> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const where = formatEndpoint(p.remote);
    const attempt = Deno.connect({ hostname: p.remote.address, port: p.remote.port });
    try {
      return await Promise.race([
        attempt,
        new Promise<never>((_, rej) => {
          timer = setTimeout(
            () =>
              rej(
                new DeviceError(
                  `TCP connection to ${where} timed out after ${timeoutMs / 1000} s; is the peer listening?`,
                  "timeout",
                ),
              ),
            timeoutMs,
          );
        }),
      ]);
    } catch (e) {
      attempt.then((c) => c.close(), () => {});
      if (e instanceof DeviceError) throw e;
      throw new DeviceError(`TCP connection to ${where} failed: ${(e as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  async #accept(p: PeerConfig, timeoutMs: number): Promise<Deno.Conn> {
    const listener = listenTcp(p.local);
    this.#log(`waiting for a TCP connection on ${p.local.address}:${p.local.port}`);
    const timer = setTimeout(() => listener.close(), timeoutMs);
    try {
      for await (const conn of listener) {
        const from = (conn.remoteAddr as Deno.NetAddr).hostname;
        if (
          sameIP(from, p.remote.address) || sameIP(p.remote.address, "0.0.0.0") ||
          sameIP(p.remote.address, "::")
        ) {
          return conn;
        }
        conn.close(); // not our peer
      }
      throw new DeviceError(
        `no TCP connection from ${p.remote.address} within ${timeoutMs / 1000} s`,
        "timeout",
      );
    } finally {
      clearTimeout(timer);
      try {
        listener.close();
      } catch { /* closed by the timer */ }
    }
  }

  /** tun → seal → transport, in batches; waits on the tun when it is empty. */
  async #txLoop(): Promise<void> {
    const buf = this.#txBuf;
    const send = (p: Uint8Array) => {
      if (p.length > MAX_PLAINTEXT_LEN) {
        this.#ch.stats.LostOutDataPackets++;
        return;
      }
      buf.set(p, HEADROOM);
      if (this.mss > 0) clampMss(buf, HEADROOM, p.length, this.mss);
      const start = this.#ch.seal(buf, p.length);
      if (start >= 0) this.#sendWire(buf.subarray(start, this.#ch.sealEnd), false);
    };
    while (!this.closed && this.peer && !this.endReason) {
      if (!this.started) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      let n: number;
      try {
        n = this.#tun.drain(send, BATCH);
      } catch (e) {
        this.end({ kind: "failed", message: (e as Error).message });
        return;
      }
      if (n === 0) await this.#tun.wait(200);
      else {
        await this.#tcpWrite;
        await yieldToLoop();
      }
    }
  }

  #sendWire(wire: Uint8Array, control: boolean): void {
    const len = wire.length;
    const failed = countSend(this.stats, len, control);
    if (this.#udp) {
      const peer = this.peer!.remote;
      this.#udp.send(Buffer.from(wire), peer.port, peer.address, (err: Error | null) => err && failed());
      return;
    }
    const conn = this.#tcp;
    if (!conn) return failed();
    const framed = new Uint8Array(2 + len);
    framed[0] = len >> 8;
    framed[1] = len & 0xff;
    framed.set(wire, 2);
    this.#tcpWrite = this.#tcpWrite.then(async () => {
      let off = 0;
      while (off < framed.length) off += await conn.write(framed.subarray(off));
    }).catch((e) => {
      failed();
      this.end({ kind: "aborted", message: `TCP connection lost: ${(e as Error).message}` });
    });
  }

  async #tcpRxLoop(conn: Deno.Conn): Promise<void> {
    const d = new TcpDeframer(MAX_WIRE_LEN);
    try {
      for (;;) {
        const n = await conn.read(d.writable());
        if (n === null) throw new DeviceError("the peer closed the TCP connection");
        d.commit(n, (b, off, len) => this.#fromNet(b, off, len));
      }
    } catch (e) {
      if (this.closed || !this.peer) return;
      const msg = e instanceof FramingError ? `TCP stream reset: ${e.message}` : (e as Error).message;
      this.end({ kind: "aborted", message: msg });
    }
  }

  /** transport → (control leaves here) → open → clamp → tun. */
  #fromNet(b: Uint8Array, off: number, len: number): void {
    receive(this.#ch, this.stats, this.mss, b, off, len, this.#sinks);
  }

  #sinks = {
    control: (p: Uint8Array) => this.pushControl(p),
    tun: (b: Uint8Array, off: number, len: number) => this.#tun.write(b.subarray(off, off + len)),
  };

  protected sendPing(): void {
    const buf = new Uint8Array(HEADROOM + 16 + TAILROOM);
    const start = this.#ch.sealKeepalive(buf);
    if (start >= 0) this.#sendWire(buf.subarray(start, this.#ch.sealEnd), false);
  }

  newKey(slot: KeySlotId, key: KeyMaterial, peerId: number): Promise<void> {
    this.requirePeer();
    this.peerId = this.#ch.peerId = peerId;
    this.#ch.newKey(slot, key);
    this.noteKey(slot, key);
    return Promise.resolve();
  }

  nextEpoch(): Promise<void> {
    try {
      this.requireEpochKey();
      if (!this.#ch.nextEpoch()) throw new DeviceError("the primary key is at its last epoch", "state");
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  protected epochs(): { send: number; recv: number } | null {
    return this.#ch.epochs();
  }

  swapKeys(): Promise<void> {
    this.requirePeer();
    this.#ch.keys.swap();
    this.noteSwap();
    return Promise.resolve();
  }

  delKey(slot: KeySlotId): Promise<void> {
    this.requirePeer();
    this.#ch.keys.delete(slot);
    this.noteDelKey(slot);
    return Promise.resolve();
  }

  setPeer(p: SetPeer): Promise<void> {
    this.noteSetPeer(p);
    return Promise.resolve();
  }

  startVpn(): Promise<void> {
    this.requirePeer();
    this.started = true;
    this.stats.lastRx = Date.now();
    return Promise.resolve();
  }

  async #dropTransport(): Promise<void> {
    const udp = this.#udp, tcp = this.#tcp;
    this.#udp = this.#tcp = null;
    if (udp) await new Promise<void>((r) => udp.close(() => r()));
    try {
      tcp?.close();
    } catch { /* closed */ }
    await Promise.allSettled(this.#loops.splice(0));
  }

  async delPeer(): Promise<void> {
    this.requirePeer();
    this.notePeerGone();
    this.#ch.keys.clear();
    await this.#dropTransport();
  }

  writeControl(p: Uint8Array): Promise<void> {
    try {
      this.#sendWire(this.checkControl(p), true);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopTimer();
    await this.#dropTransport();
    this.#ch.close();
    this.#tun.close();
    this.end({ kind: "failed", message: "the device was closed" });
  }
}
