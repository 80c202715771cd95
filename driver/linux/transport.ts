/**
 * The transport sockets of the Linux kernel backend, as the `ovpn` module wants them: the tool makes the UDP
 * socket (or the connected / accepted TCP socket) and hands its fd to PEER_NEW; the module then takes every
 * DATA_V2 packet and leaves the rest (control packets) on the socket, where this reader picks them up: a UDP
 * datagram as it came, a TCP packet as one `recv` with its 2-byte length in front (the module's own queue).
 * Control packets go out the same way: `sendto` the peer over UDP, one framed `send` over TCP.
 *
 * @example
 * ```ts
 * import { ControlReader } from "./transport.ts";
 * const r = new ControlReader(fd, "udp", (pkt, from) => console.log(pkt.length, from), (why) => console.log(why));
 * await r.stop();
 * ```
 * @module
 */
import {
  errno,
  errnoText,
  libc,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  parseSockaddr,
  POLLERR,
  POLLHUP,
  POLLIN,
} from "../../ffi/libc.ts";
import { DeviceError } from "../device.ts";
import { MAX_CONTROL_LEN } from "../datachannel/packet.ts";
import { formatIP, type SockAddr } from "../uapi.ts";
import { endpointSockaddr } from "../userspace/sockets_linux.ts";

const EAGAIN = 11;

/** How a TCP transport ended, as the reader saw it. */
export type TransportEnd = { closed: true } | { closed: false; error: string };

/**
 * Reads what the module passes up on a transport socket until `stop()`. `onPacket` gets each control
 * packet (and, over UDP, where it came from); `onEnd` is called once when a TCP stream ends.
 */
export class ControlReader {
  #stopped = false;
  #done: Promise<void>;

  constructor(
    readonly fd: number,
    readonly proto: "udp" | "tcp",
    onPacket: (p: Uint8Array, from: SockAddr | null) => void,
    onEnd: (e: TransportEnd) => void,
  ) {
    this.#done = this.#loop(onPacket, onEnd);
  }

  async #loop(onPacket: (p: Uint8Array, from: SockAddr | null) => void, onEnd: (e: TransportEnd) => void) {
    const L = libc().symbols;
    const buf = new Uint8Array(65536);
    const sa = new Uint8Array(28), salen = new Uint32Array(1);
    const pfd = new Uint8Array(8);
    const dv = new DataView(pfd.buffer);
    while (!this.#stopped) {
      dv.setInt32(0, this.fd, true);
      dv.setInt16(4, POLLIN, true);
      dv.setInt16(6, 0, true);
      const r = await L.poll_nb(pfd, 1n, 250);
      if (this.#stopped) return;
      if (r <= 0) continue;
      const revents = dv.getInt16(6, true);
      for (let i = 0; i < 64 && !this.#stopped; i++) {
        let n: number;
        if (this.proto === "udp") {
          salen[0] = 28;
          n = Number(L.recvfrom(this.fd, buf, BigInt(buf.length), MSG_DONTWAIT, sa, salen));
        } else {
          n = Number(L.recv(this.fd, buf, BigInt(buf.length), MSG_DONTWAIT));
        }
        if (n < 0) {
          const e = errno();
          if (e === EAGAIN) break;
          if (this.proto === "tcp") {
            onEnd({ closed: false, error: errnoText(e) });
            return;
          }
          break; // UDP: an ICMP error queued on the socket; the next datagram comes anyway
        }
        if (this.proto === "tcp") {
          if (n === 0) {
            onEnd({ closed: true });
            return;
          }
          // one packet per recv, with its 2-byte length in front (the module keeps it)
          if (n > 2) onPacket(buf.slice(2, n), null);
          continue;
        }
        const from = parseSockaddr(sa.subarray(0, salen[0]));
        if (n > 0) onPacket(buf.slice(0, n), from ? { address: formatIP(from.addr), port: from.port } : null);
      }
      if (this.proto === "tcp" && (revents & (POLLHUP | POLLERR)) && !(revents & POLLIN)) {
        onEnd({ closed: (revents & POLLERR) === 0, error: "connection failed" });
        return;
      }
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }
}

/** Send one control packet: to `to` over UDP, or framed over TCP. */
export function sendControl(fd: number, proto: "udp" | "tcp", p: Uint8Array, to: SockAddr | null): void {
  if (p.length === 0 || p.length > MAX_CONTROL_LEN) {
    throw new DeviceError(
      `a control packet must have 1 to ${MAX_CONTROL_LEN} bytes, not ${p.length}`,
      "state",
    );
  }
  const L = libc().symbols;
  let n: number;
  if (proto === "udp") {
    if (!to) throw new DeviceError("no peer address to send the control packet to", "state");
    const sa = endpointSockaddr(to);
    n = Number(L.sendto(fd, p, BigInt(p.length), MSG_DONTWAIT, sa, sa.length));
  } else {
    const framed = new Uint8Array(p.length + 2);
    framed[0] = p.length >> 8;
    framed[1] = p.length & 0xff;
    framed.set(p, 2);
    n = Number(L.send(fd, framed, BigInt(framed.length), MSG_DONTWAIT | MSG_NOSIGNAL));
  }
  if (n < 0) throw new DeviceError(`sending a control packet: ${errnoText(errno())}`);
}
