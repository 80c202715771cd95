/**
 * The event-loop server (what runs over WinTUN) against Linux userspace clients and a hand-driven channel,
 * on loopback: routing by destination, per-peer statistics, control packets both ways, hostile packets
 * counted and dropped, iroutes, float, expiry, `peer del` and (TCP) a closed connection.
 */
import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { libc } from "../../ffi/libc.ts";
import { DataChannel } from "../datachannel/channel.ts";
import { HEADROOM, MAX_PLAINTEXT_LEN } from "../datachannel/packet.ts";
import { KeySlotId } from "../datachannel/keyslot.ts";
import { UserspaceDevice } from "./device.ts";
import { LoopServerDevice } from "./loop_server.ts";
import type { ServerEvent } from "./server_api.ts";
import { memTun } from "./tun_linux.ts";
import { freePort, material, memPacketTun, packetTo, recvWithin } from "./test_helpers.ts";

const L = libc().symbols;
const lo = "127.0.0.1";
const vpn = (i: number) => `10.9.0.${i + 1}`;

async function until(what: string, ok: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

for (const proto of ["udp", "tcp"] as const) {
  Deno.test({
    name:
      `loop server (the wintun server engine) over ${proto}: two clients routed by destination, control both ways, stats per peer, hostile packets, iroute, ${
        proto === "udp" ? "float and expiry" : "a closed connection"
      }, peer del`,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const mt = memPacketTun("srv");
      const logs: string[] = [];
      const srv = new LoopServerDevice(mt, { backend: "test", proto, log: (l) => logs.push(l) });
      const events: ServerEvent[] = [];
      srv.onEvent((e) => events.push(e));
      const clients: { dev: UserspaceDevice; tun: ReturnType<typeof memTun> }[] = [];
      const extra: dgram.Socket[] = [];
      try {
        const bound = await srv.start({ address: lo, port: 0 });
        assert(bound.port > 0);
        for (const i of [1, 2]) {
          const port = await freePort(proto);
          // TCP: client 2 is registered with port 0 (any source port of its address)
          const remotePort = proto === "tcp" && i === 2 ? 0 : port;
          await srv.newPeer({ peerId: i, remote: { address: lo, port: remotePort }, vpnIps: [vpn(i)] });
          await srv.newKey(KeySlotId.PRIMARY, material("AES-256-GCM", 0, 0, i * 10), i);
          await srv.setPeer(i, { keepaliveInterval: 1, keepaliveTimeout: 30, mss: -1 });
          const tun = memTun(`c${i}`);
          const dev = new UserspaceDevice(tun, { log: () => {} });
          clients.push({ dev, tun });
          await dev.newPeer({ local: { address: lo, port }, remote: bound, proto, connectTimeoutMs: 5000 });
          await dev.newKey(KeySlotId.PRIMARY, material("AES-256-GCM", 1, 0, i * 10), i);
          await dev.setPeer({ keepaliveInterval: 1, keepaliveTimeout: 30, mss: 0 });
          await dev.startVpn();
        }
        if (proto === "tcp") {
          await until(
            "both TCP connections",
            () => logs.filter((l) => l.includes("TCP connected")).length === 2,
          );
        }
        if (proto === "tcp") {
          assertEquals(
            (srv.peerInfo(2).remote as { port: number }).port > 0,
            true,
            "the connected port is shown",
          );
        } else {
          await assertRejects(
            () => srv.newPeer({ peerId: 9, remote: { address: lo, port: 0 }, vpnIps: [] }),
            "a UDP peer needs its port",
          );
        }
        // server → each client by destination
        for (let n = 0; n < 20; n++) {
          for (const i of [1, 2]) {
            const p = packetTo(vpn(i), 100 + n, i);
            mt.inject(p);
            assertEquals(
              await recvWithin(clients[i - 1].tun.peerFd, 2000),
              p,
              `server → client ${i}, packet ${n}`,
            );
          }
        }
        // each client → server
        for (const i of [1, 2]) {
          const q = packetTo(vpn(0), 300, 50 + i);
          L.send(clients[i - 1].tun.peerFd, q, BigInt(q.length), 0);
          await until(`client ${i}'s packet on the server's tun`, () => mt.out.some((o) => o[40] === 50 + i));
        }
        // nobody holds 10.9.0.99: counted on the device, not on a peer
        mt.inject(packetTo("10.9.0.99", 60, 1));
        await until("the no-route drop", () => (srv.drops()["no-route"] ?? 0) === 1);
        const s1 = await srv.peerStats(1), s2 = await srv.peerStats(2);
        assert(s1.SentDataPackets >= 20 && s2.SentDataPackets >= 20, JSON.stringify([s1, s2]));
        assert(s1.ReceivedDataPackets >= 1 && s2.ReceivedDataPackets >= 1);
        const total = await srv.getStats();
        assertEquals(total.SentDataPackets, s1.SentDataPackets + s2.SentDataPackets);
        // control packets both ways
        srv.writeControl(2, new Uint8Array([0x20, 1, 2, 3]));
        assertEquals(await clients[1].dev.readControl(), new Uint8Array([0x20, 1, 2, 3]));
        await clients[0].dev.writeControl(new Uint8Array([0x28, 4]));
        assertEquals(await srv.readControl(), new Uint8Array([0x28, 4]));
        // an iroute behind client 1
        assertEquals(await srv.route(1, "192.168.5.0/24", true), "192.168.5.0/24");
        const r = packetTo("192.168.5.7", 90, 77);
        mt.inject(r);
        assertEquals(await recvWithin(clients[0].tun.peerFd, 2000), r);
        await srv.route(1, "192.168.5.0/24", false);
        mt.inject(r);
        await until("the second no-route drop", () => (srv.drops()["no-route"] ?? 0) === 2);

        if (proto === "udp") {
          // hostile: an unknown peer id, and a forged packet of peer 1; both counted, nothing delivered
          const evil = dgram.createSocket("udp4");
          extra.push(evil);
          await new Promise<void>((res) => evil.bind(0, lo, () => res()));
          const send = (b: Uint8Array) => evil.send(Buffer.from(b), bound.port, lo);
          send(new Uint8Array([0x48, 0, 0, 77, 0, 0, 0, 1, ...new Array(40).fill(1)]));
          send(new Uint8Array([0x48, 0, 0, 1, 0, 0, 0, 9, ...new Array(40).fill(2)]));
          await until(
            "the hostile drops",
            () => srv.drops()["unknown-peer"] === 1 && srv.drops()["bad-tag"] === 1,
          );
          assert(!events.some((e) => e.cmd === "FLOAT_PEER"), "a forged packet floated a peer");

          // a third peer driven by hand: it floats to a new port with an authentic packet
          const portA = await freePort("udp");
          await srv.newPeer({ peerId: 3, remote: { address: lo, port: portA }, vpnIps: [vpn(3)] });
          await srv.newKey(KeySlotId.PRIMARY, material("CHACHA20-POLY1305", 0), 3);
          const ch = new DataChannel({ peerId: 3 });
          ch.newKey(KeySlotId.PRIMARY, material("CHACHA20-POLY1305", 1));
          const moved = dgram.createSocket("udp4");
          extra.push(moved);
          await new Promise<void>((res) => moved.bind(0, lo, () => res()));
          const got: Uint8Array[] = [];
          moved.on("message", (m: Uint8Array) => got.push(new Uint8Array(m)));
          const buf = new Uint8Array(HEADROOM + MAX_PLAINTEXT_LEN + 64);
          const p3 = packetTo(vpn(0), 64, 33);
          buf.set(p3, HEADROOM);
          const start = ch.seal(buf, p3.length);
          moved.send(Buffer.from(buf.subarray(start, ch.sealEnd)), bound.port, lo);
          await until(
            "the FLOAT_PEER event",
            () => events.some((e) => e.cmd === "FLOAT_PEER" && e.peerId === 3),
          );
          const fl = events.find((e) => e.cmd === "FLOAT_PEER")!;
          assertEquals(fl.cmd === "FLOAT_PEER" && fl.address, { address: lo, port: moved.address().port });
          assertEquals(mt.out.some((o) => o.length === 64 && o[40] === 33), true);
          const back = packetTo(vpn(3), 80, 44);
          mt.inject(back);
          await until("the reply at the new address", () => got.length > 0);
          const w = got[0];
          const off = ch.open(w, 0, w.length);
          assert(off >= 0, "the reply did not open");
          assertEquals(w.subarray(off, ch.openEnd), back);

          // client 2 goes silent: expired after its timeout
          await srv.setPeer(2, { keepaliveInterval: -1, keepaliveTimeout: 1, mss: -1 });
          await clients[1].dev.close();
          await until(
            "the expiry of peer 2",
            () => events.some((e) => e.cmd === "DEL_PEER" && e.peerId === 2 && e.reason === "expired"),
            4000,
          );
        } else {
          // client 2 closes its connection: its peer goes with it
          await clients[1].dev.close();
          await until(
            "the transport-disconnect of peer 2",
            () =>
              events.some((e) =>
                e.cmd === "DEL_PEER" && e.peerId === 2 && e.reason === "transport-disconnect"
              ),
          );
        }
        assertEquals(srv.peerIds().includes(2), false);
        // peer del: gone, and its address is routed nowhere
        await srv.delPeer(1);
        assertEquals(events.at(-1), { cmd: "DEL_PEER", peerId: 1, reason: "userspace" });
        const before = srv.drops()["no-route"];
        mt.inject(packetTo(vpn(1), 60, 5));
        await until("the no-route drop after peer del", () => srv.drops()["no-route"] === before + 1);
      } finally {
        for (const s of extra) s.close();
        await srv.close();
        for (const c of clients) await c.dev.close();
      }
    },
  });
}
