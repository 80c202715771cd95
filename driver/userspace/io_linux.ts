/**
 * The Linux EngineIo: a tun fd (with its offload flags), libc sockets, a pipe to wake each worker.
 * @module
 */
import { libc, parseSockaddr } from "../../ffi/libc.ts";
import type { EngineIo } from "./engine_io.ts";
import { pipeWaker } from "./engine_host.ts";
import {
  endpointSockaddr,
  peerSockaddrOf,
  socketDrops,
  tcpAcceptNext,
  tcpConnect,
  tcpListen,
  udpOffloadWanted,
  udpSocket,
} from "./sockets_linux.ts";
import type { TunHandle } from "./tun_linux.ts";

export function linuxIo(tun: TunHandle): EngineIo {
  return {
    name: tun.name,
    tunInit: () => ({ tunFd: tun.fd, vnetHdr: !!tun.vnetHdr, gro: !!tun.offloaded, groUdp: !!tun.uso }),
    udpOffload: udpOffloadWanted,
    udpSocket,
    tcpConnect,
    tcpListen: (local) => tcpListen(local),
    tcpAcceptNext,
    peerSockaddrOf,
    sockaddr: endpointSockaddr,
    parseSockaddr,
    watch: () => {},
    closeSocket: (s) => void libc().symbols.close(s),
    socketDrops,
    waker: pipeWaker,
    configure: (o) => tun.configure(o),
    close: () => tun.close(),
  };
}
