/**
 * The Windows EngineIo: a WinTUN session (its handle and read-wait event go to the workers), Winsock sockets
 * that signal one event the receiving worker waits on (WSAEventSelect FD_READ | FD_CLOSE; for a TCP server,
 * every peer's connection signals the same event), and an auto-reset event to wake each worker.
 * @module
 */
import { kernel32 } from "../../ffi/kernel32.ts";
import { FD_CLOSE, FD_READ, winsock } from "../../ffi/ws2_32.ts";
import { DeviceError } from "../device.ts";
import type { WintunTun } from "../wintun.ts";
import type { EngineIo } from "./engine_io.ts";
import type { Waker } from "./engine_host.ts";
import {
  parseWinSockaddr,
  winCloseSocket,
  winEndpointSockaddr,
  winPeerSockaddrOf,
  winTcpAcceptNext,
  winTcpConnect,
  winTcpListen,
  winUdpSocket,
} from "./sockets_win.ts";

const handleValue = (p: Deno.PointerValue) => BigInt(Deno.UnsafePointer.value(p));

/** An event made with CreateEventA (manual or auto reset), or a clear error. */
function newEvent(manualReset: boolean): Deno.PointerValue {
  const e = kernel32().CreateEventA(null, manualReset ? 1 : 0, 0, null);
  if (e === null) throw new DeviceError(`CreateEvent failed (error ${kernel32().GetLastError()})`);
  return e;
}

/** Windows: an auto-reset event the worker waits on beside its data. */
export function eventWaker(): Waker {
  const ev = newEvent(false);
  return {
    give: (init) => ({ ...init, win: { ...init.win!, wakeEvent: handleValue(ev) } }),
    wake: () => void kernel32().SetEvent(ev),
    close: () => void kernel32().CloseHandle(ev),
  };
}

export function wintunIo(tun: WintunTun): EngineIo {
  const sockEvent = newEvent(true);
  return {
    name: tun.name,
    tunInit: () => ({
      tunFd: -1,
      win: {
        dll: tun.dllPath,
        session: tun.sessionHandle,
        readEvent: tun.readEventHandle,
        sockEvent: handleValue(sockEvent),
        wakeEvent: 0n,
      },
    }),
    udpOffload: () => false,
    udpSocket: winUdpSocket,
    tcpConnect: winTcpConnect,
    tcpListen: (local) => winTcpListen(local),
    tcpAcceptNext: winTcpAcceptNext,
    peerSockaddrOf: winPeerSockaddrOf,
    sockaddr: winEndpointSockaddr,
    parseSockaddr: parseWinSockaddr,
    watch(s) {
      if (winsock().WSAEventSelect(BigInt(s), sockEvent, FD_READ | FD_CLOSE) !== 0) {
        throw new DeviceError(`WSAEventSelect failed (error ${winsock().WSAGetLastError()})`);
      }
    },
    closeSocket: winCloseSocket,
    waker: eventWaker,
    configure: (o, log) => tun.configure(o, log),
    close() {
      tun.close();
      kernel32().CloseHandle(sockEvent);
    },
  };
}
