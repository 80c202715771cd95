/**
 * Winsock sockets for the WinTUN engines (Windows), the counterpart of sockets_linux.ts: a bound UDP socket
 * (ICMP port-unreachable ignored), a TCP connection made or accepted without blocking the event loop (a
 * non-blocking socket and WSAPoll on a helper thread), the Windows sockaddr of endpoints. The engine workers
 * then use the SOCKET values directly (Winsock sockets are process-wide and thread-safe).
 *
 * Error codes come from WSAGetLastError right after the failing call on the same thread (main thread only);
 * the workers never rely on it.
 *
 * @example
 * ```ts
 * import { winUdpSocket } from "./sockets_win.ts";
 * // const s = winUdpSocket({ address: "0.0.0.0", port: 1194 }); // Windows only
 * ```
 * @module
 */
import {
  FIONBIO,
  INVALID_SOCKET,
  parseWinSockaddr,
  SIO_UDP_CONNRESET,
  SOCKET_ERROR,
  winsock,
  winSockaddr,
  WS_AF_INET,
  WS_AF_INET6,
  WS_IPPROTO_IPV6,
  WS_IPPROTO_TCP,
  WS_IPPROTO_UDP,
  WS_IPV6_V6ONLY,
  WS_POLLERR,
  WS_POLLHUP,
  WS_POLLRDNORM,
  WS_POLLWRNORM,
  WS_SO_ERROR,
  WS_SO_RCVBUF,
  WS_SO_SNDBUF,
  WS_SOCK_DGRAM,
  WS_SOCK_STREAM,
  WS_SOL_SOCKET,
  WS_TCP_NODELAY,
  WSAEACCES,
  WSAEADDRINUSE,
  WSAEADDRNOTAVAIL,
} from "../../ffi/ws2_32.ts";
import { DeviceError } from "../device.ts";
import { formatEndpoint, type SockAddr } from "../uapi.ts";
import { addrBytes, bindError, ipVersionOf } from "./sockets_common.ts";

const int = (v: number) => new Uint8Array(new Int32Array([v]).buffer);

/** The Windows sockaddr of an endpoint. */
export function winEndpointSockaddr(e: SockAddr): Uint8Array {
  return winSockaddr(addrBytes(e.address), e.port);
}

export { parseWinSockaddr };

function newSocket(v: 4 | 6, type: number, proto: number): number {
  const ws = winsock();
  const s = ws.socket(v === 4 ? WS_AF_INET : WS_AF_INET6, type, proto);
  if (BigInt(s) === INVALID_SOCKET) throw new DeviceError(`socket() failed (error ${ws.WSAGetLastError()})`);
  const fd = Number(s);
  if (v === 6) ws.setsockopt(BigInt(fd), WS_IPPROTO_IPV6, WS_IPV6_V6ONLY, int(1), 4);
  ws.setsockopt(BigInt(fd), WS_SOL_SOCKET, WS_SO_RCVBUF, int(4 << 20), 4);
  ws.setsockopt(BigInt(fd), WS_SOL_SOCKET, WS_SO_SNDBUF, int(4 << 20), 4);
  return fd;
}

function bindOrThrow(s: number, local: SockAddr, proto: string): void {
  const ws = winsock();
  const sa = winEndpointSockaddr(local);
  if (ws.bind(BigInt(s), sa, sa.length) === SOCKET_ERROR) {
    const e = ws.WSAGetLastError();
    ws.closesocket(BigInt(s));
    const why = e === WSAEADDRINUSE
      ? "in-use"
      : e === WSAEADDRNOTAVAIL
      ? "not-local"
      : e === WSAEACCES
      ? "denied"
      : "other";
    throw bindError(why, local, proto, `Winsock error ${e}`);
  }
}

/** Close a socket made here. */
export function winCloseSocket(s: number): void {
  if (s >= 0) winsock().closesocket(BigInt(s));
}

/** A UDP socket bound to `local`, for talking to `remote` (whose IP version it must share). */
export function winUdpSocket(local: SockAddr, remote: SockAddr = local): number {
  const ws = winsock();
  const s = newSocket(ipVersionOf(local, remote), WS_SOCK_DGRAM, WS_IPPROTO_UDP);
  bindOrThrow(s, local, "UDP");
  // an ICMP port-unreachable must not fail the next recvfrom (WSAECONNRESET): a UDP peer may simply not be up
  ws.WSAIoctl(BigInt(s), SIO_UDP_CONNRESET, int(0), 4, null, 0, new Uint8Array(4), null, null);
  return s;
}

function setBlocking(s: number, blocking: boolean): void {
  winsock().ioctlsocket(BigInt(s), FIONBIO, int(blocking ? 0 : 1));
}

/** Wait (on a helper thread, in slices so that `cancelled()` is noticed) until `s` is ready; false on timeout. */
async function waitSocket(s: number, events: number, timeoutMs: number, cancelled: () => boolean) {
  const ws = winsock();
  const pfd = new Uint8Array(16);
  const dv = new DataView(pfd.buffer);
  const deadline = Date.now() + timeoutMs;
  while (!cancelled()) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    dv.setBigUint64(0, BigInt(s), true);
    dv.setInt16(8, events, true);
    dv.setInt16(10, 0, true);
    if (await ws.WSAPoll_nb(pfd, 1, Math.min(left, 250)) > 0) return true;
  }
  throw new DeviceError("cancelled", "state");
}

function tuneTcp(s: number): void {
  winsock().setsockopt(BigInt(s), WS_IPPROTO_TCP, WS_TCP_NODELAY, int(1), 4);
}

/** Connect to `remote` (from `local`, when its port or address is set), within `timeoutMs`. */
export async function winTcpConnect(
  local: SockAddr,
  remote: SockAddr,
  timeoutMs: number,
  cancelled: () => boolean = () => false,
): Promise<number> {
  const ws = winsock();
  const s = newSocket(ipVersionOf(local, remote), WS_SOCK_STREAM, WS_IPPROTO_TCP);
  const where = formatEndpoint(remote);
  try {
    if (local.port !== 0 || !/^(0\.0\.0\.0|::)$/.test(local.address)) bindOrThrow(s, local, "TCP");
    setBlocking(s, false);
    const sa = winEndpointSockaddr(remote);
    ws.connect(BigInt(s), sa, sa.length); // non-blocking: WSAEWOULDBLOCK, the outcome comes from WSAPoll
    if (!(await waitSocket(s, WS_POLLWRNORM, timeoutMs, cancelled))) {
      throw new DeviceError(
        `TCP connection to ${where} timed out after ${timeoutMs / 1000} s; is the peer listening?`,
        "timeout",
      );
    }
    const err = new Int32Array(1), len = new Int32Array([4]);
    ws.getsockopt(
      BigInt(s),
      WS_SOL_SOCKET,
      WS_SO_ERROR,
      new Uint8Array(err.buffer),
      new Uint8Array(len.buffer),
    );
    if (err[0] !== 0) throw new DeviceError(`TCP connection to ${where} failed (Winsock error ${err[0]})`);
    tuneTcp(s);
    return s;
  } catch (e) {
    ws.closesocket(BigInt(s));
    throw e;
  }
}

/** A non-blocking TCP socket listening on `local`. */
export function winTcpListen(local: SockAddr, backlog = 16): number {
  const ws = winsock();
  const s = newSocket(ipVersionOf(local, local), WS_SOCK_STREAM, WS_IPPROTO_TCP);
  bindOrThrow(s, local, "TCP");
  if (ws.listen(BigInt(s), backlog) === SOCKET_ERROR) {
    const e = ws.WSAGetLastError();
    ws.closesocket(BigInt(s));
    throw new DeviceError(`listen on ${formatEndpoint(local)} failed (Winsock error ${e})`);
  }
  setBlocking(s, false);
  return s;
}

/** The next connection on a listening socket, with the sockaddr it came from; null on timeout. */
export async function winTcpAcceptNext(
  ls: number,
  timeoutMs: number,
  cancelled: () => boolean,
): Promise<{ fd: number; from: Uint8Array } | null> {
  const ws = winsock();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!(await waitSocket(ls, WS_POLLRDNORM, deadline - Date.now(), cancelled))) return null;
    const sa = new Uint8Array(28), len = new Int32Array([28]);
    const c = ws.accept(BigInt(ls), sa, new Uint8Array(len.buffer));
    if (BigInt(c) === INVALID_SOCKET) continue;
    const fd = Number(c);
    tuneTcp(fd);
    return { fd, from: sa.slice(0, len[0]) };
  }
}

/** The remote sockaddr of a connected TCP socket. */
export function winPeerSockaddrOf(s: number): Uint8Array {
  const sa = new Uint8Array(28), len = new Int32Array([28]);
  winsock().getpeername(BigInt(s), sa, new Uint8Array(len.buffer));
  return sa.slice(0, len[0]);
}

/** Whether a socket has failed or been closed by its peer (WSAPoll, no wait). */
export function winSocketFailed(s: number): boolean {
  const pfd = new Uint8Array(16);
  const dv = new DataView(pfd.buffer);
  dv.setBigUint64(0, BigInt(s), true);
  dv.setInt16(8, WS_POLLRDNORM, true);
  if (winsock().WSAPoll(pfd, 1, 0) <= 0) return false;
  return (dv.getInt16(10, true) & (WS_POLLERR | WS_POLLHUP)) !== 0;
}
