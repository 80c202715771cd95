import { assert, assertEquals } from "../../tests/assert.ts";
import { ECONNREFUSED, EIO, EMSGSIZE, libc, MSG_DONTWAIT } from "../../ffi/libc.ts";
import { enableUdpGro, MsgBatch, UdpBatchTx } from "./mmsg.ts";
import { boundPort, endpointSockaddr, socketDrops, udpSocket } from "./sockets_linux.ts";

const L = () => libc().symbols;
const lo = (port: number) => ({ address: "127.0.0.1", port });

/** Datagram `k` of a test: `len` bytes, each naming k and its position (so order and content are checked). */
function datagram(k: number, len: number): Uint8Array {
  return Uint8Array.from({ length: len }, (_, i) => (k * 7 + i) & 0xff);
}

/** Everything waiting on `fd` (one recvmmsg of up to 64 slots, trains cut at their UDP_GRO size). */
function drain(fd: number, gro: boolean): { dgrams: Uint8Array[]; trains: number } {
  const mb = new MsgBatch(64, 65536, { gro });
  const got = mb.receive((hdrs, n) => L().recvmmsg(fd, hdrs, n, MSG_DONTWAIT, null));
  const dgrams: Uint8Array[] = [];
  let trains = 0;
  for (let i = 0; i < Math.max(got, 0); i++) {
    const len = mb.received(i), off = i * mb.size;
    const seg = mb.groSize(i) || len;
    if (seg < len) trains++;
    for (let o = 0; o < len; o += seg) dgrams.push(mb.data.slice(off + o, off + Math.min(o + seg, len)));
  }
  return { dgrams, trains };
}

Deno.test("mmsg: runs of equal datagrams leave as UDP_SEGMENT sends and arrive as the same datagrams, in order", async () => {
  const tx = udpSocket(lo(0), lo(0));
  const rxA = udpSocket(lo(0), lo(0)), rxB = udpSocket(lo(0), lo(0));
  try {
    assert(enableUdpGro(L().setsockopt, rxB), "UDP_GRO on the second receiver");
    const toA = endpointSockaddr(lo(boundPort(rxA))), toB = endpointSockaddr(lo(boundPort(rxB)));
    const b = new UdpBatchTx(L(), tx, 64, 2048, { gso: true });
    // 40 × 100 + one of 60 (ends the run) + 10 × 200 to A; 13 × 100 to B
    const plan: [Uint8Array, number][] = [
      ...Array.from({ length: 40 }, () => [toA, 100] as [Uint8Array, number]),
      [toA, 60],
      ...Array.from({ length: 10 }, () => [toA, 200] as [Uint8Array, number]),
      ...Array.from({ length: 13 }, () => [toB, 100] as [Uint8Array, number]),
    ];
    let lost = 0;
    plan.forEach(([to, len], k) => {
      b.bufs[b.filled].set(datagram(k, len), 16);
      b.add(16, len, to, { lost: () => lost++ });
    });
    assertEquals(b.filled, 64);
    b.flush();
    assertEquals([b.gsoSends, b.gsoDatagrams, lost], [3, 64, 0]);
    await new Promise((r) => setTimeout(r, 50));
    const a = drain(rxA, false), bb = drain(rxB, true);
    // A has no UDP_GRO: the kernel cut the joined sends back into datagrams
    assertEquals(a.trains, 0);
    assertEquals(a.dgrams, plan.slice(0, 51).map(([, len], k) => datagram(k, len)));
    // B has: the 13 arrive as one train and split back exactly
    assertEquals(bb.trains, 1);
    assertEquals(bb.dgrams, plan.slice(51).map(([, len], k) => datagram(k + 51, len)));
  } finally {
    for (const fd of [tx, rxA, rxB]) L().close(fd);
  }
});

Deno.test("socket filter: a non-data datagram longer than a control packet is dropped by the kernel and counted", async () => {
  const tx = udpSocket(lo(0), lo(0)), rx = udpSocket(lo(0), lo(0));
  try {
    const to = endpointSockaddr(lo(boundPort(rx)));
    const send = (first: number, len: number) => {
      const d = datagram(len, len);
      d[0] = first;
      assertEquals(Number(L().sendto(tx, d, BigInt(len), 0, to, to.length)), len);
      return d;
    };
    assertEquals(socketDrops(rx), 0);
    const kept = [
      send(9 << 3, 1400), // DATA_V2
      send(9 << 3 | 2, 9000), // DATA_V2, key id 2, oversized: the worker's to count (too-long)
      send(7 << 3, 1500), // a control packet of the largest size
      send(0, 1), // one byte
    ];
    send(7 << 3, 1501); // control opcode, one byte too long
    send(6 << 3, 60000); // DATA_V1 (handled as control), 60 KB
    send(0, 2000);
    await new Promise((r) => setTimeout(r, 50));
    assertEquals(drain(rx, false).dgrams, kept);
    assertEquals(socketDrops(rx), 3);
  } finally {
    for (const fd of [tx, rx]) L().close(fd);
  }
});

/** A stand-in for sendmmsg that fails as told and records what each message carried (its iovec count). */
function fakeLib(fail: (call: number, iovlen: number) => number) {
  const sent: number[] = []; // iovlen of every message accepted
  let call = 0, err = 0;
  return {
    sent,
    errno: () => err,
    sendmmsg(_fd: number, hdrs: Uint8Array, n: number): number {
      const dv = new DataView(hdrs.buffer, hdrs.byteOffset);
      const iovlen = Number(dv.getBigUint64(24, true));
      err = fail(call++, iovlen);
      if (err) return -1;
      for (let i = 0; i < n; i++) sent.push(Number(dv.getBigUint64(i * 64 + 24, true)));
      return n;
    },
  };
}

function fill(b: UdpBatchTx, sizes: number[], to: Uint8Array, lost: number[]) {
  sizes.forEach((len, k) => b.add(0, len, to, { lost: () => lost.push(k) }));
}

Deno.test("mmsg: EIO (no checksum offload) turns UDP_SEGMENT off for good and the run is sent one by one", () => {
  const lib = fakeLib((call, iovlen) => call === 0 && iovlen > 1 ? EIO : 0);
  const offs: string[] = [];
  const b = new UdpBatchTx(lib, 3, 8, 256, { gso: true, errno: lib.errno, onGsoOff: (w) => offs.push(w) });
  const to = endpointSockaddr(lo(9)), lost: number[] = [];
  fill(b, [100, 100, 100, 100], to, lost);
  b.flush();
  assertEquals([b.gso, offs.length, lost], [false, 1, []]);
  assertEquals(lib.sent, [1, 1, 1, 1]);
  fill(b, [100, 100], to, lost);
  b.flush();
  assertEquals(lib.sent, [1, 1, 1, 1, 1, 1], "no joined sends any more");
  assertEquals(b.gsoSends, 0);
});

Deno.test("mmsg: EMSGSIZE stops joining runs of that size only; a refused datagram is counted lost, the rest go on", () => {
  const lib = fakeLib((call, iovlen) => call === 0 && iovlen > 1 ? EMSGSIZE : call === 1 ? ECONNREFUSED : 0);
  const b = new UdpBatchTx(lib, 3, 16, 2048, { gso: true, errno: lib.errno });
  const to = endpointSockaddr(lo(9)), lost: number[] = [];
  fill(b, [1400, 1400, 1400], to, lost);
  b.flush();
  // call 0: the joined run refused; then one message each: call 1 (the first datagram) refused, call 2 the rest
  assertEquals(lost, [0]);
  assertEquals(lib.sent, [1, 1]);
  assert(b.gso, "still on");
  lib.sent.length = 0;
  fill(b, [1400, 1400, 500, 500, 500], to, lost);
  b.flush();
  assertEquals(lib.sent, [1, 1, 3], "1400-byte runs go one by one, smaller ones are still joined");
});

Deno.test("mmsg: one receive batch reused across calls, only the slots the last call filled set again", async () => {
  const txA = udpSocket(lo(0), lo(0)), txB = udpSocket(lo(0), lo(0)), rx = udpSocket(lo(0), lo(0));
  try {
    assert(enableUdpGro(L().setsockopt, rx));
    const to = endpointSockaddr(lo(boundPort(rx)));
    const mb = new MsgBatch(8, 65536, { gro: true });
    for (let round = 0; round < 4; round++) {
      // a different number of datagrams from alternating senders each round: 5, 2, 8, 1
      const count = [5, 2, 8, 1][round];
      const sent: Uint8Array[] = [];
      for (let k = 0; k < count; k++) {
        const d = datagram(round * 10 + k, 100 + 37 * k + round);
        assertEquals(Number(L().sendto(k % 2 ? txB : txA, d, BigInt(d.length), 0, to, to.length)), d.length);
        sent.push(d);
      }
      await new Promise((r) => setTimeout(r, 30));
      const got = mb.receive((hdrs, n) => L().recvmmsg(rx, hdrs, n, MSG_DONTWAIT, null));
      assertEquals(got, count, `round ${round}`);
      for (let i = 0; i < got; i++) {
        assertEquals(
          mb.data.slice(i * mb.size, i * mb.size + mb.received(i)),
          sent[i],
          `round ${round} slot ${i}`,
        );
        assertEquals(mb.nameLen(i), 16, "the source address length is whole again");
        assertEquals(mb.groSize(i), 0, "one datagram per slot, its control message read afresh");
      }
    }
  } finally {
    for (const fd of [txA, txB, rx]) L().close(fd);
  }
});
