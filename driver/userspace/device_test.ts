import { assert, assertEquals, assertMatch, assertRejects } from "../../tests/assert.ts";
import { libc } from "../../ffi/libc.ts";
import { UserspaceDevice } from "./device.ts";
import { KeySlotId } from "../datachannel/keyslot.ts";
import { memTun } from "./tun_linux.ts";
import { boundPort } from "./sockets_linux.ts";
import { material, packet, recvWithin } from "./test_helpers.ts";

const L = libc().symbols;

async function pairOverLoopback(proto: "udp" | "tcp", cipher = "AES-256-GCM", v6 = false) {
  const lo = v6 ? "::1" : "127.0.0.1";
  const ta = memTun("a"), tb = memTun("b");
  const a = new UserspaceDevice(ta, { log: () => {} }), b = new UserspaceDevice(tb, { log: () => {} });
  // pick free ports: bind to 0 first via a probe socket
  const probe = (await import("./sockets_linux.ts")).udpSocket({ address: lo, port: 0 }, {
    address: lo,
    port: 1,
  });
  const pa = boundPort(probe);
  L.close(probe);
  const probe2 = (await import("./sockets_linux.ts")).udpSocket({ address: lo, port: 0 }, {
    address: lo,
    port: 1,
  });
  const pb = boundPort(probe2);
  L.close(probe2);
  const ea = { address: lo, port: pa }, eb = { address: lo, port: pb };
  if (proto === "udp") {
    await a.newPeer({ local: ea, remote: eb, proto });
    await b.newPeer({ local: eb, remote: ea, proto });
  } else {
    await Promise.all([
      a.newPeer({ local: ea, remote: eb, proto, listen: true, connectTimeoutMs: 5000 }),
      new Promise((r) => setTimeout(r, 100)).then(() =>
        b.newPeer({ local: { address: lo, port: 0 }, remote: ea, proto, connectTimeoutMs: 5000 })
      ),
    ]);
  }
  await a.newKey(KeySlotId.PRIMARY, material(cipher, 0), 3);
  await b.newKey(KeySlotId.PRIMARY, material(cipher, 1), 3);
  await a.setPeer({ keepaliveInterval: 1, keepaliveTimeout: 10, mss: 0 });
  await b.setPeer({ keepaliveInterval: 1, keepaliveTimeout: 10, mss: 0 });
  await a.startVpn();
  await b.startVpn();
  return {
    a,
    b,
    ta,
    tb,
    close: async () => {
      await a.close();
      await b.close();
    },
  };
}

for (const proto of ["udp", "tcp"] as const) {
  for (const v6 of [false, true]) {
    Deno.test(`userspace device ${proto}${v6 ? "6" : "4"}: packets cross both ways, control packets pass unchanged, stats count`, async () => {
      const t = await pairOverLoopback(proto, "AES-256-GCM", v6);
      try {
        for (let i = 0; i < 50; i++) {
          const p = packet(100 + i * 20, i);
          L.send(t.ta.peerFd, p, BigInt(p.length), 0);
          const got = await recvWithin(t.tb.peerFd, 2000);
          assertEquals(got, p, `packet ${i} a→b`);
          const q = packet(60, 200 + i);
          L.send(t.tb.peerFd, q, BigInt(q.length), 0);
          assertEquals(await recvWithin(t.ta.peerFd, 2000), q, `packet ${i} b→a`);
        }
        const ctl = new Uint8Array([0x38, 1, 2, 3, 4, 5]);
        await t.a.writeControl(ctl);
        assertEquals(await t.b.readControl(), ctl);
        const sa = await t.a.getStats(), sb = await t.b.getStats();
        assertEquals(sa.SentDataPackets >= 50, true);
        assertEquals(sb.ReceivedDataPackets >= 50, true);
        assertEquals(sb.ReceivedControlPackets, 1);
        assertEquals(sa.SentControlPackets, 1);
        assertEquals(sb.LostInDataPackets, 0);
        assert(sb.TunBytesReceived >= 50 * 100);
      } finally {
        await t.close();
      }
    });
  }
}

Deno.test("userspace device: keepalive keeps an idle tunnel alive; a silent peer expires", async () => {
  const t = await pairOverLoopback("udp", "CHACHA20-POLY1305");
  try {
    await t.a.setPeer({ keepaliveInterval: 1, keepaliveTimeout: 3, mss: -1 });
    await t.b.setPeer({ keepaliveInterval: 1, keepaliveTimeout: 3, mss: -1 });
    const first = await Promise.race([
      t.a.ended.then(() => "ended"),
      new Promise((r) => setTimeout(() => r("alive"), 4000)),
    ]);
    assertEquals(first, "alive");
    assert((await t.b.getStats()).ReceivedDataPackets >= 2, "pings were received");
    await t.b.close(); // b goes silent
    const t0 = Date.now();
    const r = await t.a.ended;
    assertEquals(r.kind, "expired");
    assert(Date.now() - t0 < 5000);
    await assertRejects(() => t.a.readControl(), "keepalive timeout");
  } finally {
    await t.close();
  }
});

Deno.test("userspace device: operations before NEW_PEER say what to do", async () => {
  const d = new UserspaceDevice(memTun(), { log: () => {} });
  try {
    await assertRejects(() => d.startVpn(), "no peer is configured");
    assertMatch(JSON.stringify(d.peerInfo()), '"peer":null');
  } finally {
    await d.close();
  }
});
