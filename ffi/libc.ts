/**
 * Raw glibc symbols (Linux) for sockets, the tun device and poll, plus the smallest wrappers: errno,
 * sockaddr encoding. No logic here. The `*_nb` variants are `nonblocking: true` (they run on a helper
 * thread and return a promise), for calls that may wait on the main thread.
 *
 * @example
 * ```ts
 * import { libc } from "./libc.ts";
 * const fd = libc().symbols.socket(2, 2, 0); // AF_INET, SOCK_DGRAM
 * ```
 * @module
 */

import { decodeSockaddr, encodeSockaddr } from "./sockaddr.ts";

// read/write/send/recv return ssize_t, declared here as i32: no call in this tool moves 2 GB at once, and the low
// 32 bits of the result (with its sign: -1 stays -1) come back as a plain number, where a 64-bit result is boxed
// on every call (about 40 bytes of garbage per packet on the data path)
const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  recvfrom: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "buffer"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  poll_nb: { name: "poll", parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctl_value: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  geteuid: { parameters: [], result: "u32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
} as const satisfies Deno.ForeignLibraryInterface;

export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>;

let lib: Libc | undefined;

/** glibc, opened once per thread (each Worker opens its own). */
export function libc(): Libc {
  lib ??= Deno.dlopen("libc.so.6", SYMBOLS);
  return lib;
}

/** errno of the last failed call on this thread. */
export function errno(): number {
  const p = libc().symbols.__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = 0o2000000;
export const SOCK_RAW = 3;
/** Netlink sockets: rtnetlink and generic netlink, their socket options (level SOL_NETLINK). */
export const AF_NETLINK = 16;
export const NETLINK_ROUTE = 0;
export const NETLINK_GENERIC = 16;
export const SOL_NETLINK = 270;
export const NETLINK_ADD_MEMBERSHIP = 1;
export const NETLINK_CAP_ACK = 10;
export const NETLINK_EXT_ACK = 11;
export const SOL_SOCKET = 1;
/** Socket options of UDP (level IPPROTO_UDP): segmentation offload on send, GRO on receive. */
export const SOL_UDP = 17;
export const UDP_SEGMENT = 103;
export const UDP_GRO = 104;
export const SO_REUSEADDR = 2;
/** Receive timestamps (SO_TIMESTAMP_OLD on x86-64 and arm64). */
export const SO_TIMESTAMP = 29;
export const SO_ERROR = 4;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_RCVTIMEO = 20;
export const SO_SNDTIMEO = 21;
export const IPPROTO_TCP = 6;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;
export const TCP_NODELAY = 1;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const SHUT_RDWR = 2;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const EINTR = 4;
export const EIO = 5;
export const EAGAIN = 11;
export const ENOBUFS = 105;
export const ECONNREFUSED = 111;
export const EADDRINUSE = 98;
export const EADDRNOTAVAIL = 99;
export const EACCES = 13;
export const EPERM = 1;
export const ENOENT = 2;
export const EBUSY = 16;
export const ECONNRESET = 104;
export const ETIMEDOUT = 110;
export const EHOSTUNREACH = 113;
export const ENETUNREACH = 101;
export const EMSGSIZE = 90;
export const EINVAL = 22;
export const EEXIST = 17;
export const ENODEV = 19;
export const ENOTSUP = 95;
export const EAFNOSUPPORT = 97;
export const EPROTONOSUPPORT = 93;
export const EINPROGRESS = 115;
export const TUNSETIFF = 0x400454ca;
export const IFF_TUN = 0x0001;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;
export const TUNSETOFFLOAD = 0x400454d0;
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
/** UDP segmentation offload on a tun (Linux 6.2+). */
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

const ERRNO_TEXT: Record<number, string> = {
  [EPERM]: "operation not permitted",
  [ENOENT]: "no such file or directory",
  [EINTR]: "interrupted",
  [EAGAIN]: "try again",
  [EACCES]: "permission denied",
  [EBUSY]: "device or resource busy",
  [EINVAL]: "invalid argument",
  [EEXIST]: "already exists",
  [ENODEV]: "no such device",
  [ENOTSUP]: "not supported",
  [EMSGSIZE]: "message too long",
  [EADDRINUSE]: "address already in use",
  [EADDRNOTAVAIL]: "address not available on this host",
  [ENETUNREACH]: "network unreachable",
  [ECONNRESET]: "connection reset by peer",
  [ENOBUFS]: "no buffer space",
  [ETIMEDOUT]: "connection timed out",
  [ECONNREFUSED]: "connection refused",
  [EINPROGRESS]: "operation in progress",
  [EHOSTUNREACH]: "host unreachable",
};

/** Text of an errno value. */
export function errnoText(e: number): string {
  return ERRNO_TEXT[e] ?? `errno ${e}`;
}

/** A failed system call: `call` names it, `errno` says why. */
export class SysError extends Error {
  constructor(readonly call: string, readonly errno: number) {
    super(`${call}: ${errnoText(errno)}`);
  }
}

/** The Linux sockaddr of an IPv4 (4 bytes) or IPv6 (16 bytes) address and port. */
export function sockaddr(addr: Uint8Array, port: number): Uint8Array {
  return encodeSockaddr(addr, port, AF_INET, AF_INET6);
}

/** The address and port of a Linux sockaddr, or null for another family. */
export function parseSockaddr(b: Uint8Array): { addr: Uint8Array; port: number } | null {
  return decodeSockaddr(b, AF_INET, AF_INET6);
}

/** A struct timeval of `ms` milliseconds, for SO_RCVTIMEO / SO_SNDTIMEO. */
export function timeval(ms: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setBigInt64(0, BigInt(Math.floor(ms / 1000)), true);
  dv.setBigInt64(8, BigInt((ms % 1000) * 1000), true);
  return b;
}

/** A 4-byte int option value. */
export function intOpt(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v, true);
  return b;
}
