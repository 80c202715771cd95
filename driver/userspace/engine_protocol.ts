/**
 * Messages between the userspace device (main thread) and its two engine workers: `tx` moves packets
 * tun → transport, `rx` transport → tun. Types only.
 * @module
 */
import type { ProviderName } from "../../crypto/providers.ts";
import type { KeyMaterial, KeySlotId } from "../datachannel/keyslot.ts";
import type { DataChannel } from "../datachannel/channel.ts";
import type { TcpDeframer } from "../datachannel/framing.ts";
import type { SendCount, SourceCheck } from "./datapath.ts";
import type { SharedStats } from "./shared_stats.ts";
import type { WinEngineInit } from "./engine_win.ts";

/** Where the worker's file descriptors come from (all fds are process-wide, so workers share them). */
export interface EngineInit {
  t: "init";
  role: "tx" | "rx";
  tunFd: number;
  sockFd: number;
  proto: "udp" | "tcp";
  /** p2p: one peer (peerSockaddr, peerId); server: peers added by "mp-add", routed by destination. */
  mode: "p2p" | "server";
  /** The peer's Linux sockaddr bytes (UDP: destination, and the only accepted source). */
  peerSockaddr: Uint8Array;
  peerId: number;
  mss: number;
  /** The tun's reads and writes carry a virtio_net_hdr (offload on). */
  vnetHdr?: boolean;
  /** The kernel took the offload flags: received TCP segments are joined into super-packets (GRO). */
  gro?: boolean;
  /** The tun took USO as well: received UDP datagrams of one flow are joined too. */
  groUdp?: boolean;
  /** UDP transport: join equal-sized datagrams with UDP_SEGMENT on send and take UDP_GRO trains on receive. */
  udpOffload?: boolean;
  provider: ProviderName;
  stats: SharedArrayBuffer;
  /** Int32Array: [messages posted to tx, messages posted to rx, stop flag]. */
  signal: SharedArrayBuffer;
  /** Read end of the wake-up pipe of this worker (Linux). */
  wakeFd: number;
  /** Windows (WinTUN): the session, the events and wintun.dll; `sockFd` is then a SOCKET, `tunFd` unused. */
  win?: WinEngineInit;
}

/** Main → worker. `ack`: when set, the worker answers `{ t: "ack", ack }` once the message took effect. */
export type ToEngine =
  | EngineInit
  | (
    & { ack?: number }
    & (
      // in server mode `peer` picks the peer of the key, swap, ping, control packet...
      | { t: "key"; slot: KeySlotId; material: KeyMaterial; generation: number; peer?: number }
      // epoch keys: move the sender of key `generation` to `epoch` (the peer moved there)
      | { t: "follow"; generation: number; epoch: number; peer?: number }
      // epoch keys: move the primary key's sender to the next epoch now
      | { t: "epoch-next"; peer?: number }
      | { t: "swap"; peer?: number }
      | { t: "delkey"; slot: KeySlotId; peer?: number }
      | { t: "peer"; peerId?: number; mss?: number; peer?: number }
      | { t: "start" }
      | { t: "ping"; peer?: number }
      | { t: "ctl"; bytes: Uint8Array; peer?: number }
      // server mode: a peer (its sockaddr, its statistics, its routes), its removal, its new address
      | {
        t: "mp-add";
        peer: number;
        sockaddr: Uint8Array;
        stats: SharedArrayBuffer;
        routes: string[];
        mss: number;
      }
      | { t: "mp-del"; peer: number }
      // TCP server, to rx: a connection accepted from `from`, the address of `peers`: the one it proves to be
      | { t: "mp-pending"; fd: number; from: string; peers: number[] }
      // TCP server, to tx: the peer's connection now (an fd or SOCKET the main thread owns)
      | { t: "mp-conn"; peer: number; fd: number }
      | { t: "mp-float"; peer: number; sockaddr: Uint8Array }
      | { t: "route"; peer: number; cidr: string; add: boolean }
    )
  );

/** Worker → main. */
export type FromEngine =
  | { t: "ready"; role: "tx" | "rx" }
  | { t: "log"; line: string }
  | { t: "ack"; ack: number }
  // a control packet; in server mode with the sockaddr it came from
  | { t: "ctl"; bytes: Uint8Array; from?: Uint8Array }
  // rx: the sender of key `generation` should move to `epoch` (forwarded to tx as "follow")
  | { t: "epoch"; generation: number; epoch: number; peer?: number }
  // rx, server mode: an authentic packet of `peer` came from a new address
  | { t: "float"; peer: number; sockaddr: Uint8Array }
  // rx, TCP server: a peer's connection ended (`error`: reset or failed, else closed by the peer)
  | { t: "peer-closed"; peer: number; error: boolean; reason: string }
  // rx, TCP server: a pending connection sent an authentic packet and is now the peer's
  | { t: "tcp-bound"; peer: number; fd: number }
  // rx, TCP server: a pending connection is given up (closed by its sender, timed out, made room)
  | { t: "tcp-refused"; fd: number; reason: string }
  | { t: "closed"; role: "tx" | "rx"; reason: string; error: boolean }
  | { t: "stopped"; role: "tx" | "rx" }
  | { t: "fatal"; role: "tx" | "rx"; message: string };

/** Index of the per-worker "posted" counter and the stop flag in the signal array. */
export const SIGNAL = { tx: 0, rx: 1, stop: 2 } as const;

/** Server mode, in a worker: one entry per peer, each with its own channel, address, statistics and MSS. */
export interface EnginePeer {
  id: number;
  ch: DataChannel;
  /** The peer's sockaddr (the platform's layout). */
  sa: Uint8Array;
  stats: SharedStats;
  mss: number;
  /** TCP server: the peer's connection (fd or SOCKET; -1: none yet, or ended) and its reassembly buffer. */
  fd: number;
  deframer?: TcpDeframer;
  /** Server mode: the check that a decrypted packet's source is this peer's (its routes, its id). */
  source: SourceCheck;
  /** The UDP batch's counting on this peer's statistics (made on its first packet). */
  sendCount?: SendCount;
}
