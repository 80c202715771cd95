/**
 * The server's per-datagram step (`serverReceive`) on its own: who may float a peer, whose control packets go
 * up, and which inner sources a peer may use.
 */
import { assertEquals } from "../../tests/assert.ts";
import { DataChannel, KeySlotId } from "../datachannel/channel.ts";
import { HEADROOM } from "../datachannel/packet.ts";
import { RouteTable } from "../datachannel/routes.ts";
import { cipherByName } from "../../crypto/aead.ts";
import { sockaddr } from "../../ffi/libc.ts";
import { SharedStats } from "./shared_stats.ts";
import { peerAddressesChanged, serverReceive } from "./datapath.ts";
import type { EnginePeer, FromEngine } from "./engine_protocol.ts";

const key = (cipher: string, dir: 0 | 1) => {
  const c = cipherByName(cipher)!;
  const a = new Uint8Array(c.keyLen).fill(0x11), b = new Uint8Array(c.keyLen).fill(0x22);
  const t = c.keyLen ? new Uint8Array(8).fill(0x33) : new Uint8Array(0);
  return {
    cipher: c,
    keyId: 0,
    encryptKey: dir ? b : a,
    decryptKey: dir ? a : b,
    encryptNonceTail: t,
    decryptNonceTail: t,
  };
};

/** A one-peer server (peer 1 at 192.0.2.2:1194, VPN address 10.8.0.2) and a client sealing for it. */
function setup(cipher: string) {
  const stats = new SharedStats();
  const routes = new RouteTable();
  routes.add("10.8.0.2/32", 1);
  const pst = new SharedStats();
  const ch = new DataChannel({ peerId: 1, stats: pst, countDrop: (r) => pst.countDrop(r) });
  ch.newKey(KeySlotId.PRIMARY, key(cipher, 0));
  const peers = new Map<number, EnginePeer>([[1, {
    id: 1,
    ch,
    sa: sockaddr(new Uint8Array([192, 0, 2, 2]), 1194),
    stats: pst,
    mss: 0,
    fd: -1,
    source: { routes, peer: 1 },
  }]]);
  peerAddressesChanged(peers);
  const client = new DataChannel({ peerId: 1 });
  client.newKey(KeySlotId.PRIMARY, key(cipher, 1));
  const seal = (src: string) => {
    const ip = new Uint8Array(28);
    ip[0] = 0x45;
    ip.set(src.split(".").map(Number), 12);
    ip.set([10, 8, 0, 1], 16);
    const buf = new Uint8Array(HEADROOM + ip.length + 16);
    buf.set(ip, HEADROOM);
    const start = client.seal(buf, ip.length);
    return buf.slice(start, client.sealEnd || undefined);
  };
  const posted: FromEngine[] = [];
  const written: number[] = [];
  const sinks = {
    control: () => {},
    tun: (_b: Uint8Array, _o: number, len: number) => (written.push(len), true),
  };
  const deliver = (pkt: Uint8Array, from: number[]) =>
    serverReceive(
      peers,
      stats,
      pkt,
      0,
      pkt.length,
      sockaddr(new Uint8Array(from), 1194),
      sinks,
      (m) => posted.push(m),
    );
  return { peers, stats, pst, posted, written, seal, deliver };
}

Deno.test("serverReceive: an authentic packet from a new address floats the peer; with cipher NONE it never does", () => {
  const aead = setup("AES-256-GCM");
  aead.deliver(aead.seal("10.8.0.2"), [192, 0, 2, 9]);
  assertEquals(aead.posted.map((m) => m.t), ["float"]);
  assertEquals(aead.written.length, 1);
  const none = setup("none");
  none.deliver(none.seal("10.8.0.2"), [192, 0, 2, 9]); // anyone can make this packet
  assertEquals(none.posted.length, 0, "a NONE packet floated the peer");
  assertEquals(none.written.length, 1); // still delivered, as the driver does with NONE
});

Deno.test("serverReceive: a packet with another address as its inner source is dropped as bad-source", () => {
  const s = setup("AES-256-GCM");
  s.deliver(s.seal("10.8.0.3"), [192, 0, 2, 2]);
  assertEquals(s.written.length, 0);
  assertEquals(s.pst.drops()["bad-source"], 1);
  s.deliver(s.seal("10.8.0.2"), [192, 0, 2, 2]);
  assertEquals(s.written.length, 1);
});

Deno.test("serverReceive: control packets go up only from a peer's address, never from strangers", () => {
  const s = setup("AES-256-GCM");
  const ctl = new Uint8Array([7 << 3, 1, 2, 3]);
  s.deliver(ctl, [198, 51, 100, 7]);
  assertEquals(s.posted.length, 0);
  assertEquals(s.stats.drops()["wrong-source"], 1);
  s.deliver(ctl, [192, 0, 2, 2]);
  assertEquals(s.posted.map((m) => m.t), ["ctl"]);
  s.deliver(new Uint8Array(4000).fill(7 << 3), [192, 0, 2, 2]); // larger than any control packet
  assertEquals(s.stats.drops()["too-long"], 1);
});
