/**
 * Netlink sockets through libc (FFI): a request socket (rtnetlink or generic netlink) that sends one request
 * and collects its answer (one message, a dump, or the ACK) with the kernel's extended ACK text on failure,
 * and a notification socket that joins a multicast group and hands each message to a callback, read in
 * non-blocking FFI calls so the event loop stays free. The kernel answers a request before `send` returns,
 * so the request socket's receive is short; SO_RCVTIMEO bounds it anyway.
 *
 * @example
 * ```ts
 * import { NetlinkSocket } from "./nlsock.ts";
 * const genl = NetlinkSocket.open("generic");
 * const fam = genl.family("ovpn"); // throws DeviceError "missing" when the module is not there
 * ```
 * @module
 */
import {
  AF_NETLINK,
  EACCES,
  EAGAIN,
  EEXIST,
  EINTR,
  ENODEV,
  ENOENT,
  EPERM,
  errno,
  errnoText,
  intOpt,
  libc,
  MSG_DONTWAIT,
  NETLINK_ADD_MEMBERSHIP,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_GENERIC,
  NETLINK_ROUTE,
  POLLIN,
  SO_RCVBUF,
  SO_RCVTIMEO,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SOL_NETLINK,
  SOL_SOCKET,
  timeval,
} from "../../ffi/libc.ts";
import { DeviceError } from "../device.ts";
import {
  type GenlFamily,
  getFamilyRequest,
  type NlError,
  type NlMessage,
  NLMSG,
  parseError,
  parseFamily,
  parseMessages,
} from "./netlink.ts";

const RECV_SIZE = 64 * 1024;

/** A failed netlink request: errno and the kernel's own words. */
export class NetlinkError extends DeviceError {
  constructor(readonly what: string, readonly nl: NlError) {
    super(
      `${what}: ${nl.message ? `the kernel says '${nl.message}'` : errnoText(nl.errno)}${
        nl.message ? ` (${errnoText(nl.errno)})` : ""
      }`,
      nl.errno === EPERM || nl.errno === EACCES
        ? "privilege"
        : nl.errno === EEXIST
        ? "busy"
        : nl.errno === ENODEV
        ? "missing"
        : "io",
    );
  }
}

function openFd(protocol: number): number {
  const L = libc().symbols;
  const fd = L.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) throw new DeviceError(`netlink socket: ${errnoText(errno())}`);
  // the kernel's explanation of a refusal (extended ACK), without the request copied back
  L.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, intOpt(1), 4);
  L.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, intOpt(1), 4);
  return fd;
}

/** A netlink socket for requests. */
export class NetlinkSocket {
  #fd: number;
  #seq = Math.floor(Math.random() * 0x7fff_0000);
  #buf = new Uint8Array(RECV_SIZE);

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Open a request socket: rtnetlink (`route`) or generic netlink (`generic`). */
  static open(kind: "route" | "generic"): NetlinkSocket {
    const fd = openFd(kind === "route" ? NETLINK_ROUTE : NETLINK_GENERIC);
    libc().symbols.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeval(5000), 16);
    return new NetlinkSocket(fd);
  }

  /** The next sequence number for a request. */
  nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0;
    return this.#seq;
  }

  /**
   * Send one request (built with sequence number `seq`) and return the messages that answer it, up to its
   * ACK or NLMSG_DONE. A refusal throws a NetlinkError naming `what`.
   */
  request(msg: Uint8Array, seq: number, what: string): NlMessage[] {
    const L = libc().symbols;
    if (L.send(this.#fd, msg, BigInt(msg.length), 0) < 0) {
      const e = errno();
      throw new NetlinkError(what, { errno: e, seq });
    }
    const out: NlMessage[] = [];
    for (;;) {
      const n = Number(L.recv(this.#fd, this.#buf, BigInt(this.#buf.length), 0));
      if (n < 0) {
        const e = errno();
        if (e === EINTR) continue;
        throw new DeviceError(
          `${what}: no answer from the kernel (${e === EAGAIN ? "timed out" : errnoText(e)})`,
          "timeout",
        );
      }
      for (const m of parseMessages(this.#buf.subarray(0, n))) {
        if (m.seq !== seq) continue; // a late answer to an earlier request
        if (m.type === NLMSG.ERROR) {
          const err = parseError(m);
          if (err.errno !== 0) throw new NetlinkError(what, err);
          return out;
        }
        if (m.type === NLMSG.DONE) return out;
        out.push({ ...m, payload: m.payload.slice() });
      }
    }
  }

  /** Resolve a generic netlink family by name; a missing family throws DeviceError "missing". */
  family(name: string): GenlFamily {
    const seq = this.nextSeq();
    try {
      const r = this.request(
        getFamilyRequest(name, seq),
        seq,
        `looking up the generic netlink family '${name}'`,
      );
      if (!r.length) throw new DeviceError(`the kernel did not describe the family '${name}'`);
      return parseFamily(r[0].payload);
    } catch (e) {
      if (e instanceof NetlinkError && e.nl.errno === ENOENT) {
        throw new DeviceError(`the kernel has no generic netlink family '${name}'`, "missing");
      }
      throw e;
    }
  }

  close(): void {
    if (this.#fd >= 0) libc().symbols.close(this.#fd);
    this.#fd = -1;
  }
}

/**
 * A socket in a generic netlink multicast group: each message goes to `onMessage` until `close()`. Reads wait
 * in `poll` on a helper thread (a non-blocking FFI call), in 250 ms slices so that close is noticed.
 */
export class NetlinkListener {
  #fd: number;
  #closed = false;
  #done: Promise<void>;

  constructor(groupId: number, onMessage: (m: NlMessage) => void, onError: (e: Error) => void) {
    const L = libc().symbols;
    this.#fd = openFd(NETLINK_GENERIC);
    // bound (the kernel picks the port id): the kernel's broadcasts skip sockets whose port id is 0, the
    // sender's own, so an unbound socket in the group would never hear a notification
    const snl = new Uint8Array(12);
    new DataView(snl.buffer).setUint16(0, AF_NETLINK, true);
    if (L.bind(this.#fd, snl, snl.length) < 0) {
      const e = errno();
      L.close(this.#fd);
      throw new DeviceError(`binding a netlink socket: ${errnoText(e)}`);
    }
    L.setsockopt(this.#fd, SOL_SOCKET, SO_RCVBUF, intOpt(1 << 20), 4);
    if (L.setsockopt(this.#fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, intOpt(groupId), 4) < 0) {
      const e = errno();
      L.close(this.#fd);
      throw new DeviceError(`joining the netlink group ${groupId}: ${errnoText(e)}`);
    }
    this.#done = this.#loop(onMessage).catch(onError);
  }

  async #loop(onMessage: (m: NlMessage) => void): Promise<void> {
    const L = libc().symbols;
    const buf = new Uint8Array(RECV_SIZE);
    const pfd = new Uint8Array(8);
    const dv = new DataView(pfd.buffer);
    while (!this.#closed) {
      dv.setInt32(0, this.#fd, true);
      dv.setInt16(4, POLLIN, true);
      dv.setInt16(6, 0, true);
      const r = await L.poll_nb(pfd, 1n, 250);
      if (this.#closed) break;
      if (r <= 0) continue;
      for (;;) {
        const n = Number(L.recv(this.#fd, buf, BigInt(buf.length), MSG_DONTWAIT));
        if (n <= 0) break; // empty (EAGAIN), or ENOBUFS after an overrun: the next poll goes on
        for (const m of parseMessages(buf.subarray(0, n))) onMessage({ ...m, payload: m.payload.slice() });
      }
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#done;
    libc().symbols.close(this.#fd);
  }
}
