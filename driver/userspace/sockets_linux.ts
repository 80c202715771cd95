/**
 * Transport sockets for the userspace engine on Linux, made through libc so that the engine workers can
 * use the fds directly: a bound UDP socket, a TCP connection (connect with a timeout), or one accepted
 * TCP connection (listen for one peer). Waiting happens in non-blocking FFI calls, so the main thread
 * stays responsive.
 *
 * @example
 * ```ts
 * import { udpSocket } from "./sockets_linux.ts";
 * const s = udpSocket({ address: "127.0.0.1", port: 0 }, { address: "127.0.0.1", port: 5000 });
 * ```
 * @module
 */
import {
  AF_INET,
  AF_INET6,
  EACCES,
  EADDRINUSE,
  EADDRNOTAVAIL,
  EINPROGRESS,
  errno,
  errnoText,
  F_GETFL,
  F_SETFL,
  intOpt,
  IPPROTO_IPV6,
  IPPROTO_TCP,
  IPV6_V6ONLY,
  libc,
  O_NONBLOCK,
  parseSockaddr,
  POLLIN,
  POLLOUT,
  SO_ERROR,
  SO_RCVBUF,
  SO_REUSEADDR,
  SO_SNDBUF,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_STREAM,
  sockaddr,
  SOL_SOCKET,
  TCP_NODELAY,
} from "../../ffi/libc.ts";
import { DeviceError } from "../device.ts";
import { formatEndpoint, type SockAddr } from "../uapi.ts";
import { MAX_CONTROL_LEN, OP_DATA_V2 } from "../datachannel/packet.ts";
import { addrBytes, bindError, ipVersionOf } from "./sockets_common.ts";

export { addrBytes };

/** The Linux sockaddr of an endpoint. */
export function endpointSockaddr(e: SockAddr): Uint8Array {
  return sockaddr(addrBytes(e.address), e.port);
}

const fmt = formatEndpoint;

function familyOf(local: SockAddr, remote: SockAddr): number {
  return ipVersionOf(local, remote) === 4 ? AF_INET : AF_INET6;
}

function newSocket(family: number, type: number): number {
  const L = libc().symbols;
  const fd = L.socket(family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new DeviceError(`socket: ${errnoText(errno())}`);
  if (family === AF_INET6) L.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, intOpt(1), 4);
  return fd;
}

function bindOrThrow(fd: number, local: SockAddr, proto: string): void {
  const L = libc().symbols;
  const sa = endpointSockaddr(local);
  if (L.bind(fd, sa, sa.length) < 0) {
    const e = errno();
    L.close(fd);
    const why = e === EADDRINUSE
      ? "in-use"
      : e === EADDRNOTAVAIL
      ? "not-local"
      : e === EACCES
      ? "denied"
      : "other";
    throw bindError(why, local, proto, errnoText(e));
  }
}

function bigBuffers(fd: number): void {
  const L = libc().symbols;
  L.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, intOpt(4 << 20), 4);
  L.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, intOpt(4 << 20), 4);
}

/**
 * Whether the UDP engines may use the kernel's UDP offloads (UDP_SEGMENT, UDP_GRO): yes unless
 * `OVPN_DCO_CLI_UDP_OFFLOAD=off` (for comparison runs and as a way out should a kernel misbehave).
 */
export function udpOffloadWanted(): boolean {
  return Deno.env.get("OVPN_DCO_CLI_UDP_OFFLOAD") !== "off";
}

/** A UDP socket bound to `local`, for talking to `remote`. */
export function udpSocket(local: SockAddr, remote: SockAddr): number {
  const fd = newSocket(familyOf(local, remote), SOCK_DGRAM);
  bigBuffers(fd);
  dropOversizedNonData(fd);
  bindOrThrow(fd, local, "UDP");
  return fd;
}

const SO_ATTACH_FILTER = 26;
const SO_MEMINFO = 55;
/** Index of the socket's drop count in SO_MEMINFO's u32 array (SK_MEMINFO_DROPS). */
const SK_MEMINFO_DROPS = 8;

/**
 * The classic BPF program of a UDP transport socket (it sees the datagram from its UDP header on): a datagram
 * longer than any control packet (MAX_CONTROL_LEN) whose opcode is not DATA_V2 is dropped by the kernel before
 * it is queued. The workers would count and drop it anyway (too long, or no peer's); in the kernel a flood of
 * large datagrams costs this process no copy and no wake-up. A UDP_GRO train of data packets opens with DATA_V2
 * and passes whole.
 */
const FILTER: readonly (readonly [number, number, number, number])[] = [
  [0x80, 0, 0, 0], // ld len (UDP header included)
  [0x25, 0, 4, 8 + MAX_CONTROL_LEN], // jgt: longer than a control packet → on, else accept
  [0x30, 0, 0, 8], // ldb [8]: the first payload byte, opcode << 3 | key id
  [0x74, 0, 0, 3], // rsh #3
  [0x15, 1, 0, OP_DATA_V2], // jeq DATA_V2 → accept
  [0x06, 0, 0, 0], // ret 0: drop
  [0x06, 0, 0, 0xffffffff], // ret: accept all of it
];

/**
 * Attach FILTER to a UDP transport socket. False where the kernel refuses it (the workers then drop those
 * datagrams themselves, as before).
 */
export function dropOversizedNonData(fd: number): boolean {
  const prog = new Uint8Array(FILTER.length * 8);
  const pv = new DataView(prog.buffer);
  FILTER.forEach(([code, jt, jf, k], i) => {
    pv.setUint16(i * 8, code, true);
    pv.setUint8(i * 8 + 2, jt);
    pv.setUint8(i * 8 + 3, jf);
    pv.setUint32(i * 8 + 4, k, true);
  });
  // struct sock_fprog { unsigned short len; struct sock_filter *filter; } (LP64: the pointer at 8)
  const fprog = new Uint8Array(16);
  const fv = new DataView(fprog.buffer);
  fv.setUint16(0, FILTER.length, true);
  fv.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(prog))), true);
  return libc().symbols.setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, fprog, 16) === 0;
}

const meminfo = new Uint32Array(9), meminfoLen = new Uint32Array([36]);
/**
 * Datagrams the kernel dropped at socket `fd` (SO_MEMINFO's drop count): those the filter refused and those
 * that found the receive buffer full. -1 where the kernel does not say.
 */
export function socketDrops(fd: number): number {
  meminfoLen[0] = 36;
  const b = new Uint8Array(meminfo.buffer);
  if (libc().symbols.getsockopt(fd, SOL_SOCKET, SO_MEMINFO, b, new Uint8Array(meminfoLen.buffer)) < 0) {
    return -1;
  }
  return meminfoLen[0] > SK_MEMINFO_DROPS * 4 ? meminfo[SK_MEMINFO_DROPS] : -1;
}

/** The port an fd is bound to. */
export function boundPort(fd: number): number {
  const b = new Uint8Array(28), len = new Uint32Array([28]);
  if (libc().symbols.getsockname(fd, b, len) < 0) return 0;
  return parseSockaddr(b)?.port ?? 0;
}

function setBlocking(fd: number, blocking: boolean): void {
  const L = libc().symbols;
  const fl = L.fcntl(fd, F_GETFL, 0);
  L.fcntl(fd, F_SETFL, blocking ? fl & ~O_NONBLOCK : fl | O_NONBLOCK);
}

/** Wait until `fd` is ready for `events`, in slices so that `cancelled()` is noticed; false on timeout. */
async function waitFd(
  fd: number,
  events: number,
  timeoutMs: number,
  cancelled: () => boolean,
): Promise<boolean> {
  const L = libc().symbols;
  const pfd = new Uint8Array(8);
  const dv = new DataView(pfd.buffer);
  const deadline = Date.now() + timeoutMs;
  while (!cancelled()) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    dv.setInt32(0, fd, true);
    dv.setInt16(4, events, true);
    dv.setInt16(6, 0, true);
    const r = await L.poll_nb(pfd, 1n, Math.min(left, 250));
    // errno of a nonblocking call belongs to another thread: a failed poll is simply retried
    if (r > 0) return true;
  }
  throw new DeviceError("cancelled", "state");
}

function tuneTcp(fd: number): void {
  libc().symbols.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, intOpt(1), 4);
  bigBuffers(fd);
}

/** Connect to `remote` (from `local`, when its port or address is set), within `timeoutMs`. */
export async function tcpConnect(
  local: SockAddr,
  remote: SockAddr,
  timeoutMs: number,
  cancelled: () => boolean = () => false,
): Promise<number> {
  const L = libc().symbols;
  const fd = newSocket(familyOf(local, remote), SOCK_STREAM);
  try {
    L.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, intOpt(1), 4);
    const any = /^(0\.0\.0\.0|::)$/.test(local.address);
    if (local.port !== 0 || !any) bindOrThrow(fd, local, "TCP");
    setBlocking(fd, false);
    const sa = endpointSockaddr(remote);
    const r = L.connect(fd, sa, sa.length); // non-blocking socket: returns at once
    if (r < 0) {
      const e = errno();
      if (e !== EINPROGRESS && e !== 0) {
        throw new DeviceError(`TCP connection to ${fmt(remote)} failed: ${errnoText(e)}`);
      }
    }
    if (!(await waitFd(fd, POLLOUT, timeoutMs, cancelled))) {
      throw new DeviceError(
        `TCP connection to ${fmt(remote)} timed out after ${timeoutMs / 1000} s; is the peer listening?`,
        "timeout",
      );
    }
    const err = new Int32Array(1), len = new Uint32Array([4]);
    L.getsockopt(fd, SOL_SOCKET, SO_ERROR, err, len);
    if (err[0] !== 0) throw new DeviceError(`TCP connection to ${fmt(remote)} failed: ${errnoText(err[0])}`);
    setBlocking(fd, true);
    tuneTcp(fd);
    return fd;
  } catch (e) {
    L.close(fd);
    throw e;
  }
}

/** A non-blocking TCP socket listening on `local`. */
export function tcpListen(local: SockAddr, backlog = 16): number {
  const L = libc().symbols;
  const lfd = newSocket(familyOf(local, local), SOCK_STREAM);
  L.setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, intOpt(1), 4);
  try {
    bindOrThrow(lfd, local, "TCP");
    if (L.listen(lfd, backlog) < 0) throw new DeviceError(`listen on ${fmt(local)}: ${errnoText(errno())}`);
  } catch (e) {
    L.close(lfd);
    throw e;
  }
  setBlocking(lfd, false);
  return lfd;
}

/**
 * The next connection on a listening socket, blocking and tuned, with the sockaddr it came from; null on
 * timeout. Throws when `cancelled()` turns true.
 */
export async function tcpAcceptNext(
  lfd: number,
  timeoutMs: number,
  cancelled: () => boolean,
): Promise<{ fd: number; from: Uint8Array } | null> {
  const L = libc().symbols;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!(await waitFd(lfd, POLLIN, deadline - Date.now(), cancelled))) return null;
    const sa = new Uint8Array(28), len = new Uint32Array([28]);
    const fd = L.accept(lfd, sa, len); // the listening socket is non-blocking
    if (fd < 0) continue;
    L.fcntl(fd, F_SETFL, L.fcntl(fd, F_GETFL, 0) & ~O_NONBLOCK);
    tuneTcp(fd);
    return { fd, from: sa.slice(0, len[0]) };
  }
}

/** The remote sockaddr of a connected TCP socket. */
export function peerSockaddrOf(fd: number): Uint8Array {
  const sa = new Uint8Array(28), len = new Uint32Array([28]);
  libc().symbols.getpeername(fd, sa, len);
  return sa.slice(0, len[0]);
}
