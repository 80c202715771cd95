/**
 * Raw Winsock (ws2_32.dll) symbols for the WinTUN engine workers and the sockets they use, plus the
 * Windows sockaddr layout. No logic here. SOCKET is a UINT_PTR (`usize`); a failed call returns
 * SOCKET_ERROR (-1) or INVALID_SOCKET. `WSAPoll_nb` is `nonblocking: true` (it waits on a helper thread and
 * returns a promise, so the event loop keeps running while a connect or an accept is awaited).
 *
 * Layouts (x64): `sockaddr_in` 16 bytes (family u16 LE = 2, port BE, address), `sockaddr_in6` 28 bytes
 * (family = 23 on Windows, port BE, flowinfo, address at 8, scope id at 24); `WSAPOLLFD` 16 bytes (SOCKET at 0,
 * events at 8, revents at 10); `WSADATA` at most 408 bytes.
 *
 * @example
 * ```ts
 * import { winsock } from "./ws2_32.ts";
 * const ws = winsock(); // Windows only: WSAStartup done
 * ```
 * @module
 */
import { system32 } from "./kernel32.ts";
import { decodeSockaddr, encodeSockaddr } from "./sockaddr.ts";

const SYMBOLS = {
  WSAStartup: { parameters: ["u16", "buffer"], result: "i32" },
  WSAGetLastError: { parameters: [], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "usize" },
  closesocket: { parameters: ["usize"], result: "i32" },
  bind: { parameters: ["usize", "buffer", "i32"], result: "i32" },
  listen: { parameters: ["usize", "i32"], result: "i32" },
  accept: { parameters: ["usize", "buffer", "buffer"], result: "usize" },
  connect: { parameters: ["usize", "buffer", "i32"], result: "i32" },
  getsockname: { parameters: ["usize", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["usize", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["usize", "i32", "i32", "buffer", "i32"], result: "i32" },
  sendto: { parameters: ["usize", "buffer", "i32", "i32", "buffer", "i32"], result: "i32" },
  recvfrom: { parameters: ["usize", "buffer", "i32", "i32", "buffer", "buffer"], result: "i32" },
  send: { parameters: ["usize", "buffer", "i32", "i32"], result: "i32" },
  recv: { parameters: ["usize", "buffer", "i32", "i32"], result: "i32" },
  // (s, hEventObject, lNetworkEvents): the event is set on those events; the socket becomes non-blocking
  WSAEventSelect: { parameters: ["usize", "pointer", "i32"], result: "i32" },
  // (fdArray, fds, timeout ms): how many are ready; revents say which and how
  WSAPoll: { parameters: ["buffer", "u32", "i32"], result: "i32" },
  WSAPoll_nb: { name: "WSAPoll", parameters: ["buffer", "u32", "i32"], result: "i32", nonblocking: true },
  // (s, cmd, argp): FIONBIO sets (non-)blocking mode
  ioctlsocket: { parameters: ["usize", "i32", "buffer"], result: "i32" },
  getsockopt: { parameters: ["usize", "i32", "i32", "buffer", "buffer"], result: "i32" },
  // (s, dwIoControlCode, in, inLen, out, outLen, bytesReturned, overlapped, completion)
  WSAIoctl: {
    parameters: ["usize", "u32", "buffer", "u32", "pointer", "u32", "buffer", "pointer", "pointer"],
    result: "i32",
  },
  shutdown: { parameters: ["usize", "i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

export type Winsock = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

export const WS_AF_INET = 2;
export const WS_AF_INET6 = 23;
export const WS_SOCK_STREAM = 1;
export const WS_SOCK_DGRAM = 2;
export const WS_IPPROTO_TCP = 6;
export const WS_IPPROTO_UDP = 17;
export const WS_IPPROTO_IPV6 = 41;
export const WS_IPV6_V6ONLY = 27;
export const WS_SOL_SOCKET = 0xffff;
export const WS_SO_SNDBUF = 0x1001;
export const WS_SO_RCVBUF = 0x1002;
export const WS_TCP_NODELAY = 1;
export const WS_SO_ERROR = 0x1007;
export const WS_SO_REUSEADDR = 0x0004;
export const FIONBIO = 0x8004667e | 0;
export const SOCKET_ERROR = -1;
/** INVALID_SOCKET as the `usize` result type gives it. */
export const INVALID_SOCKET = 0xffff_ffff_ffff_ffffn;
export const FD_READ = 0x01;
export const FD_CLOSE = 0x20;
export const WS_POLLRDNORM = 0x0100;
export const WS_POLLWRNORM = 0x0010;
export const WS_POLLERR = 0x0001;
export const WS_POLLHUP = 0x0002;
export const WS_POLLNVAL = 0x0004;
/** Ignore ICMP port-unreachable on a UDP socket (else the next recvfrom fails with WSAECONNRESET). */
export const SIO_UDP_CONNRESET = 0x9800000c;
export const WSAEADDRINUSE = 10048;
export const WSAEACCES = 10013;
export const WSAEADDRNOTAVAIL = 10049;

let ws: Winsock | undefined;

/** ws2_32.dll (from System32), opened once, with WSAStartup(2.2) done. */
export function winsock(): Winsock {
  if (ws) return ws;
  const s = Deno.dlopen(system32("ws2_32.dll"), SYMBOLS).symbols;
  const rc = s.WSAStartup(0x0202, new Uint8Array(408));
  if (rc !== 0) throw new Error(`WSAStartup failed (${rc})`);
  ws = s;
  return s;
}

/** The Windows sockaddr of an IPv4 (4 bytes) or IPv6 (16 bytes) address and port. */
export function winSockaddr(addr: Uint8Array, port: number): Uint8Array {
  return encodeSockaddr(addr, port, WS_AF_INET, WS_AF_INET6);
}

/** The address (4 or 16 bytes) and port of a Windows sockaddr, or null for another family. */
export function parseWinSockaddr(b: Uint8Array): { addr: Uint8Array; port: number } | null {
  return decodeSockaddr(b, WS_AF_INET, WS_AF_INET6);
}
