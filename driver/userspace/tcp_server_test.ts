/**
 * The TCP server's connections on their own, with scripted I/O: sends that never wait (queue, cap, stall), and
 * connections that become a peer's only by an authentic packet (squatters, NAT neighbours, time-outs, caps).
 */
import { assertEquals } from "../../tests/assert.ts";
import { DataChannel, KeySlotId } from "../datachannel/channel.ts";
import { HEADROOM } from "../datachannel/packet.ts";
import { RouteTable } from "../datachannel/routes.ts";
import { material } from "./test_helpers.ts";
import { SharedStats } from "./shared_stats.ts";
import type { EnginePeer, FromEngine } from "./engine_protocol.ts";
import {
  PENDING_PER_ADDRESS,
  TCP_AUTH_MS,
  TCP_QUEUE_CAP,
  TCP_STALL_MS,
  TcpSendQueue,
  TcpServerRx,
} from "./tcp_server.ts";

const key = (seed: number, dir: 0 | 1) => material("AES-256-GCM", dir, 0, seed);

/** Server peers 1 and 2 (VPN 10.8.0.1 and .2), each with its own key, and a client channel for each. */
function setup() {
  const routes = new RouteTable();
  const peers = new Map<number, EnginePeer>();
  const clients = new Map<number, DataChannel>();
  for (const id of [1, 2]) {
    routes.add(`10.8.0.${id}/32`, id);
    const st = new SharedStats();
    const ch = new DataChannel({ peerId: id, stats: st, countDrop: (r) => st.countDrop(r) });
    ch.newKey(KeySlotId.PRIMARY, key(0x10 * id, 0));
    peers.set(id, {
      id,
      ch,
      sa: new Uint8Array(16),
      stats: st,
      mss: 0,
      fd: -1,
      source: { routes, peer: id },
    });
    const client = new DataChannel({ peerId: id });
    client.newKey(KeySlotId.PRIMARY, key(0x10 * id, 1));
    clients.set(id, client);
  }
  /** One framed packet from client `id` (a ping from its VPN address), or sealed with `as` client's key. */
  const framed = (id: number, as = id) => {
    const ip = new Uint8Array(28);
    ip[0] = 0x45;
    ip.set([10, 8, 0, id], 12);
    ip.set([10, 8, 0, 99], 16);
    const buf = new Uint8Array(HEADROOM + ip.length + 16);
    buf.set(ip, HEADROOM);
    const c = clients.get(as)!;
    c.peerId = id;
    const start = c.seal(buf, ip.length);
    const pkt = buf.slice(start, c.sealEnd);
    return new Uint8Array([pkt.length >> 8, pkt.length & 0xff, ...pkt]);
  };
  const control = (n: number) => new Uint8Array([0, n, 0x38, ...new Uint8Array(n - 1)]);
  // scripted connections: bytes waiting per fd; a closed fd reads 0
  const inbox = new Map<number, number[]>();
  const closed = new Set<number>();
  const feed = (fd: number, b: Uint8Array) => inbox.set(fd, [...(inbox.get(fd) ?? []), ...b]);
  let now = 1000;
  const posted: FromEngine[] = [];
  const written: Uint8Array[] = [];
  const ctl: Uint8Array[] = [];
  const stats = new SharedStats();
  const rx = new TcpServerRx(
    peers,
    stats,
    {
      recv: (fd, w) => {
        const q = inbox.get(fd) ?? [];
        if (!q.length) return closed.has(fd) ? 0 : -1;
        const n = Math.min(q.length, w.length);
        w.set(q.splice(0, n));
        return n;
      },
      failure: () => null,
    },
    {
      control: (p) => ctl.push(p),
      tun: (b, off, len) => (written.push(b.slice(off, off + len)), true),
    },
    (m) => posted.push(m),
    () => now,
  );
  return {
    peers,
    rx,
    framed,
    control,
    feed,
    closed,
    posted,
    written,
    ctl,
    stats,
    advance: (ms: number) => now += ms,
  };
}

const bound = (posted: FromEngine[]) => posted.filter((m) => m.t === "tcp-bound");
const refused = (posted: FromEngine[]) => posted.filter((m) => m.t === "tcp-refused");

Deno.test("tcp server rx: a connection is a peer's only from its first authentic packet, and then delivers", () => {
  const s = setup();
  s.rx.addPending(7, "192.0.2.2", [1]);
  s.feed(7, s.control(20)); // a control packet first: goes up, binds nothing
  assertEquals(s.rx.round(), 1);
  assertEquals(s.ctl.length, 1);
  assertEquals(s.peers.get(1)!.fd, -1);
  s.feed(7, s.framed(1));
  s.feed(7, s.framed(1));
  assertEquals(s.rx.round(), 2);
  assertEquals(bound(s.posted), [{ t: "tcp-bound", peer: 1, fd: 7 }]);
  assertEquals(s.peers.get(1)!.fd, 7);
  assertEquals(s.written.length, 2); // both delivered, the one after the binding packet too
  assertEquals(s.rx.fds(), [7]);
  s.feed(7, s.framed(1));
  assertEquals(s.rx.round(), 1);
  assertEquals(s.written.length, 3);
});

Deno.test("tcp server rx: a squatter from the peer's address neither takes its place nor keeps it alive", () => {
  const s = setup();
  s.rx.addPending(5, "192.0.2.2", [1]); // the squatter: connects first, sends garbage that fails authentication
  s.feed(5, s.framed(1, 2)); // peer id 1 but client 2's key: a bad tag
  s.rx.round();
  s.rx.addPending(6, "192.0.2.2", [1]); // the real client
  s.feed(6, s.framed(1));
  s.rx.round();
  assertEquals(bound(s.posted), [{ t: "tcp-bound", peer: 1, fd: 6 }]);
  assertEquals(s.peers.get(1)!.stats.drops()["bad-tag"], 1);
  assertEquals(refused(s.posted), []);
  s.advance(TCP_AUTH_MS + 1);
  s.rx.round();
  assertEquals(refused(s.posted).map((m) => m.t === "tcp-refused" && m.fd), [5]);
  assertEquals(s.rx.fds(), [6]);
});

Deno.test("tcp server rx: clients behind one address each find their own peer; a foreign peer id binds nothing", () => {
  const s = setup();
  s.rx.addPending(8, "198.51.100.1", [1, 2]);
  s.rx.addPending(9, "198.51.100.1", [1, 2]);
  s.rx.addPending(10, "203.0.113.5", [1]);
  s.feed(8, s.framed(2));
  s.feed(9, s.framed(1));
  s.feed(10, s.framed(2)); // authentic for peer 2, but this connection can only be peer 1's
  s.rx.round();
  assertEquals(bound(s.posted), [{ t: "tcp-bound", peer: 2, fd: 8 }, { t: "tcp-bound", peer: 1, fd: 9 }]);
  assertEquals(s.stats.drops()["unknown-peer"], 1);
  assertEquals(s.written.length, 2);
});

Deno.test("tcp server rx: a newer authentic connection replaces the peer's; a closed pending one is refused", () => {
  const s = setup();
  s.rx.addPending(3, "192.0.2.2", [1]);
  s.feed(3, s.framed(1));
  s.rx.round();
  s.rx.addPending(4, "192.0.2.2", [1]);
  s.feed(4, s.framed(1));
  s.rx.addPending(11, "192.0.2.2", [1]);
  s.closed.add(11);
  s.rx.round();
  assertEquals(bound(s.posted).map((m) => m.t === "tcp-bound" && m.fd), [3, 4]);
  assertEquals(s.peers.get(1)!.fd, 4);
  assertEquals(refused(s.posted).map((m) => m.t === "tcp-refused" && m.fd), [11]);
  // deleting peer 1 refuses what could only have been it
  s.rx.addPending(12, "192.0.2.2", [1]);
  s.rx.addPending(13, "192.0.2.2", [1, 2]);
  s.rx.dropPeer(1);
  assertEquals(refused(s.posted).map((m) => m.t === "tcp-refused" && m.fd), [11, 12]);
});

Deno.test("tcp server rx: pending connections per address are capped, the oldest closed first", () => {
  const s = setup();
  for (let fd = 20; fd < 20 + PENDING_PER_ADDRESS + 2; fd++) s.rx.addPending(fd, "192.0.2.2", [1]);
  assertEquals(refused(s.posted).map((m) => m.t === "tcp-refused" && m.fd), [20, 21]);
  s.rx.addPending(40, "192.0.2.77", [1]); // another address is not affected
  assertEquals(refused(s.posted).length, 2);
});

Deno.test("tcp send queue: what a connection does not take waits (capped, in order); a stalled peer is ended", () => {
  const peers = new Map<number, EnginePeer>();
  const p = { id: 1, fd: 5 } as EnginePeer;
  peers.set(1, p);
  let room = 3; // bytes the connection takes now
  const sent: number[] = [];
  const posted: FromEngine[] = [];
  let now = 0;
  const q = new TcpSendQueue(
    peers,
    (_fd, v, len) => {
      const n = Math.min(room, len);
      room -= n;
      sent.push(...v.subarray(0, n));
      return n;
    },
    (m) => posted.push(m),
    () => now,
  );
  const buf = new Uint8Array([1, 2, 3, 4, 5]);
  assertEquals(q.send(p, buf, 5), true);
  buf.fill(9); // the caller reuses its buffer: what waits was copied
  assertEquals(q.send(p, new Uint8Array([6, 7]), 2), true);
  assertEquals(q.waiting(), [5]);
  room = 100;
  assertEquals(q.drain(), 2);
  assertEquals(sent, [1, 2, 3, 4, 5, 6, 7]);
  assertEquals(q.waiting(), []);
  // cap: a full queue drops
  room = 0;
  assertEquals(q.send(p, new Uint8Array(TCP_QUEUE_CAP), TCP_QUEUE_CAP), true);
  assertEquals(q.send(p, new Uint8Array(1), 1), false);
  // nothing moves for TCP_STALL_MS: the peer is ended
  now += TCP_STALL_MS + 1;
  q.drain();
  assertEquals(posted.map((m) => m.t), ["peer-closed"]);
  assertEquals(p.fd, -1);
  // a new connection of the peer never gets the old one's leftovers
  p.fd = 6;
  room = 0;
  q.send(p, new Uint8Array([1, 2]), 2);
  p.fd = 8;
  room = 100;
  sent.length = 0;
  q.drain();
  assertEquals(sent, []);
});
