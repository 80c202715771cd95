/**
 * What the engine devices (UserspaceDevice, ServerDevice) need of their platform: the tun side of the workers'
 * init, sockets made and closed, sockaddrs in the platform's layout, and how to wake a worker. Linux: a tun fd,
 * libc sockets and a pipe (io_linux.ts); Windows: a WinTUN session, Winsock sockets and events (io_win.ts).
 * @module
 */
import type { SockAddr } from "../uapi.ts";
import type { EngineInit } from "./engine_protocol.ts";
import type { Waker } from "./engine_host.ts";

export interface EngineIo {
  /** The interface name. */
  readonly name: string;
  /** The workers' init fields of the tun side. */
  tunInit(): Pick<EngineInit, "tunFd" | "vnetHdr" | "gro" | "groUdp" | "win">;
  /** Whether the UDP engines may use the kernel's UDP offloads. */
  udpOffload(): boolean;
  udpSocket(local: SockAddr, remote: SockAddr): number;
  tcpConnect(local: SockAddr, remote: SockAddr, timeoutMs: number, cancelled: () => boolean): Promise<number>;
  tcpListen(local: SockAddr): number;
  tcpAcceptNext(
    ls: number,
    timeoutMs: number,
    cancelled: () => boolean,
  ): Promise<{ fd: number; from: Uint8Array } | null>;
  peerSockaddrOf(s: number): Uint8Array;
  /** The sockaddr of an endpoint, in the platform's layout (what the workers send to and compare with). */
  sockaddr(e: SockAddr): Uint8Array;
  parseSockaddr(b: Uint8Array): { addr: Uint8Array; port: number } | null;
  /** A socket the workers will receive on (Windows: it signals their socket event from now on). */
  watch(s: number): void;
  closeSocket(s: number): void;
  /** Datagrams the kernel dropped at UDP socket `s` (Linux: its filter and a full buffer); absent elsewhere. */
  socketDrops?(s: number): number;
  /** Each worker's wake-up. */
  waker(): Waker;
  configure(o: { mtu: number; addresses: string[] }, log: (line: string) => void): Promise<void>;
  close(): void;
}
