import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import {
  Coalescer,
  completeChecksum,
  GSO_TCPV4,
  GSO_TCPV6,
  GSO_UDP_L4,
  GsoError,
  parseVnetHdr,
  splitSuperPacket,
  sum16,
  type VnetHdr,
} from "./gso.ts";

// An independent checksum: RFC 1071 over an explicit byte list (pseudo-header built as bytes).
function rfc1071(bytes: number[]): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i += 2) s += (bytes[i] << 8) + (bytes[i + 1] ?? 0);
  while (s >> 16) s = (s & 0xffff) + (s >>> 16);
  return s; // 0xffff when the data (with its checksum) verifies
}

function tcpVerifies(pkt: Uint8Array, v6: boolean, proto = 6): boolean {
  const ipLen = v6 ? 40 : (pkt[0] & 0x0f) * 4;
  const l4 = [...pkt.subarray(ipLen)];
  const pseudo = v6
    ? [...pkt.subarray(8, 40), 0, 0, l4.length >> 8, l4.length & 0xff, 0, 0, 0, proto]
    : [...pkt.subarray(12, 20), 0, proto, l4.length >> 8, l4.length & 0xff];
  return rfc1071([...pseudo, ...l4]) === 0xffff;
}

function superPacket(o: {
  v6: boolean;
  ipOptions?: number;
  tcpOptions?: number;
  payload: Uint8Array;
  seq: number;
  flags: number;
}): Uint8Array {
  const ipLen = o.v6 ? 40 : 20 + (o.ipOptions ?? 0);
  const tcpLen = 20 + (o.tcpOptions ?? 0);
  const p = new Uint8Array(ipLen + tcpLen + o.payload.length);
  const dv = new DataView(p.buffer);
  if (o.v6) {
    p[0] = 0x60;
    dv.setUint16(4, tcpLen + o.payload.length);
    p[6] = 6;
    p[7] = 64;
    p.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 8);
    p.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 24);
  } else {
    p[0] = 0x40 | (ipLen / 4);
    dv.setUint16(2, 0xffff); // what the kernel puts in a super-packet does not matter
    dv.setUint16(4, 0xfffe); // id: wraps in the split
    p[8] = 64;
    p[9] = 6;
    p.set([10, 1, 2, 3], 12);
    p.set([10, 4, 5, 6], 16);
    for (let i = 20; i < ipLen; i++) p[i] = 1; // NOP options
  }
  dv.setUint16(ipLen, 40000);
  dv.setUint16(ipLen + 2, 5201);
  dv.setUint32(ipLen + 4, o.seq);
  dv.setUint32(ipLen + 8, 777);
  p[ipLen + 12] = (tcpLen / 4) << 4;
  p[ipLen + 13] = o.flags;
  dv.setUint16(ipLen + 14, 502);
  for (let i = 20; i < tcpLen; i++) p[ipLen + i] = i === 20 ? 8 : i === 21 ? 10 : i; // a timestamp-like option
  p.set(o.payload, ipLen + tcpLen);
  return p;
}

function split(sp: Uint8Array, h: VnetHdr, at = 24) {
  const segs: Uint8Array[] = [];
  const bufs: Uint8Array[] = [];
  const n = splitSuperPacket(sp, 0, sp.length, h, (i) => {
    bufs[i] = new Uint8Array(at + 2048 + 16).fill(0xee);
    return { buf: bufs[i], at };
  }, (i, size) => segs.push(bufs[i].slice(at, at + size)));
  assertEquals(n, segs.length);
  return segs;
}

const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));

for (const v6 of [false, true]) {
  for (const [payloadLen, mss] of [[5000, 1400], [4200, 1400], [1, 1200], [65000, 1348]]) {
    Deno.test(`gso: a TCP${v6 ? "v6" : "v4"} super-packet of ${payloadLen} bytes split at ${mss}: lengths, ids, seq, flags, checksums`, () => {
      const payload = random(payloadLen);
      const ipOptions = v6 ? 0 : 4, tcpOptions = 12;
      const seq0 = 0xffffff00; // the sequence number wraps during the split
      const sp = superPacket({
        v6,
        ipOptions,
        tcpOptions,
        payload,
        seq: seq0,
        flags: 0x10 | 0x08 | 0x01 | 0x20,
      });
      const ipLen = v6 ? 40 : 24, hdrLen = ipLen + 32;
      const before = sp.slice();
      const segs = split(sp, {
        flags: 1,
        gsoType: v6 ? GSO_TCPV6 : GSO_TCPV4,
        hdrLen: 9999, // not trusted: the TCP header's own length counts
        gsoSize: mss,
        csumStart: ipLen,
        csumOffset: 16,
      });
      assertEquals(sp, before, "the super-packet was changed");
      assertEquals(segs.length, Math.ceil(payloadLen / mss));
      const joined: number[] = [];
      segs.forEach((s, i) => {
        const dv = new DataView(s.buffer, s.byteOffset);
        const last = i === segs.length - 1;
        assertEquals(s.length, hdrLen + (last ? payloadLen - mss * i : mss));
        if (v6) assertEquals(dv.getUint16(4), s.length - 40);
        else {
          assertEquals(dv.getUint16(2), s.length);
          assertEquals(dv.getUint16(4), (0xfffe + i) & 0xffff);
          assertEquals(rfc1071([...s.subarray(0, ipLen)]), 0xffff, `IPv4 header checksum of segment ${i}`);
        }
        assertEquals(dv.getUint32(ipLen + 4), (seq0 + i * mss) >>> 0, `seq of segment ${i}`);
        const flags = s[ipLen + 13];
        assertEquals(flags & 0x10, 0x10, "ACK on every segment");
        assertEquals(flags & 0x20, 0x20, "URG kept");
        assertEquals(flags & 0x09, last ? 0x09 : 0, `FIN/PSH on the last segment only (segment ${i})`);
        assert(tcpVerifies(s, v6), `TCP checksum of segment ${i}`);
        assertEquals(s.subarray(ipLen + 20, hdrLen), sp.subarray(ipLen + 20, hdrLen), "TCP options copied");
        joined.push(...s.subarray(hdrLen));
      });
      assertEquals(new Uint8Array(joined), payload);
    });
  }
}

Deno.test("gso: a partial checksum (NEEDS_CSUM, GSO_NONE) completed for UDP and TCP, v4 and v6", () => {
  for (const v6 of [false, true]) {
    for (const proto of [17, 6]) {
      const ipLen = v6 ? 40 : 20, l4 = 8 + 333 + (proto === 6 ? 12 : 0);
      const p = new Uint8Array(ipLen + l4);
      p.set(random(p.length));
      p[0] = v6 ? 0x60 : 0x45;
      if (v6) p[6] = proto;
      else p[9] = proto;
      if (proto === 6) p[ipLen + 12] = 5 << 4;
      const at = ipLen + (proto === 17 ? 6 : 16);
      // what the kernel leaves: the folded pseudo-header sum, not inverted
      const pseudo = v6
        ? [...p.subarray(8, 40), 0, 0, l4 >> 8, l4 & 0xff, 0, 0, 0, proto]
        : [...p.subarray(12, 20), 0, proto, l4 >> 8, l4 & 0xff];
      const ps = rfc1071(pseudo);
      p[at] = ps >> 8;
      p[at + 1] = ps & 0xff;
      completeChecksum(p, 0, p.length, {
        flags: 1,
        gsoType: 0,
        hdrLen: 0,
        gsoSize: 0,
        csumStart: ipLen,
        csumOffset: at - ipLen,
      });
      assertEquals(rfc1071([...pseudo, ...p.subarray(ipLen)]), 0xffff, `v6 ${v6} proto ${proto}`);
    }
  }
});

Deno.test("gso: a UDP checksum that sums to 0 is completed as 0xffff (0 would mean none; IPv6 drops it)", () => {
  const p = udpSuperPacket(true, random(100));
  const dv = new DataView(p.buffer);
  dv.setUint16(44, 108); // UDP length
  dv.setUint16(4, 108);
  const h = udpHdr(true, 0);
  const pseudo = [...p.subarray(8, 40), 0, 0, 0, 108, 0, 0, 0, 17];
  // find the last payload word that makes the datagram's sum come out as 0
  let hit = -1;
  for (let w = 0; w < 65536 && hit < 0; w++) {
    dv.setUint16(p.length - 2, w);
    dv.setUint16(46, rfc1071(pseudo));
    completeChecksum(p, 0, p.length, h);
    if (rfc1071([...pseudo, ...p.subarray(40, 46), 0, 0, ...p.subarray(48)]) === 0xffff) hit = w;
  }
  assert(hit >= 0, "no payload word gives a zero sum");
  assertEquals(dv.getUint16(46), 0xffff);
  assert(tcpVerifies(p, true, 17));
});

Deno.test("gso: the virtio_net_hdr is read little-endian", () => {
  assertEquals(parseVnetHdr(new Uint8Array([1, 4, 0x4a, 0, 0x68, 0x05, 40, 0, 16, 0])), {
    flags: 1,
    gsoType: GSO_TCPV6,
    hdrLen: 0x4a,
    gsoSize: 0x568,
    csumStart: 40,
    csumOffset: 16,
  });
});

Deno.test("gso: malformed super-packets are refused with a GsoError", () => {
  const good = superPacket({ v6: false, payload: random(3000), seq: 1, flags: 0x18 });
  const h: VnetHdr = {
    flags: 1,
    gsoType: GSO_TCPV4,
    hdrLen: 40,
    gsoSize: 1000,
    csumStart: 20,
    csumOffset: 16,
  };
  const cases: [string, Uint8Array, VnetHdr][] = [
    ["UDP GSO", good, { ...h, gsoType: 3 }],
    ["v6 type on a v4 packet", good, { ...h, gsoType: GSO_TCPV6, csumStart: 40 }],
    ["csum_start short of the IP header", good, { ...h, csumStart: 16 }],
    ["csum_start not the IPv4 header length", good, { ...h, csumStart: 24 }],
    [
      "csum_start past an IPv6 header",
      superPacket({ v6: true, payload: random(3000), seq: 1, flags: 0x18 }),
      { ...h, gsoType: GSO_TCPV6, csumStart: 48 },
    ],
    ["gso_size 0", good, { ...h, gsoSize: 0 }],
    ["too short", good.subarray(0, 30), h],
    [
      "TCP data offset below 5",
      (() => {
        const b = good.slice();
        b[32] = 0x40;
        return b;
      })(),
      h,
    ],
    [
      "not TCP",
      (() => {
        const b = good.slice();
        b[9] = 17;
        return b;
      })(),
      h,
    ],
  ];
  const udpHdr6: VnetHdr = { ...h, gsoType: GSO_UDP_L4, csumStart: 40, csumOffset: 6 };
  cases.push(
    ["UDP_L4 on a TCP packet", good, { ...h, gsoType: GSO_UDP_L4, csumOffset: 6 }],
    ["UDP_L4 cut inside the UDP header", udpSuperPacket(true, random(10)).subarray(0, 44), udpHdr6],
    ["UDP_L4 on something not IP", new Uint8Array(100), { ...h, gsoType: GSO_UDP_L4 }],
    ["UDP_L4 gso_size 0", udpSuperPacket(true, random(100)), { ...udpHdr6, gsoSize: 0 }],
  );
  for (const [what, b, hh] of cases) {
    const e = assertThrows(() => split(b, hh));
    assert(e instanceof GsoError, `${what}: ${e.message}`);
  }
});

Deno.test("gso: fuzzed super-packets either fail with a GsoError or give segments that fit and verify", () => {
  let good = 0, udpGood = 0;
  for (let round = 0; round < 5000; round++) {
    const v6 = round % 2 === 1, udp = round % 4 >= 2;
    const payload = random(Math.floor(Math.random() * 6000));
    const sp = udp ? udpSuperPacket(v6, payload, Math.floor(Math.random() * 65536)) : superPacket({
      v6,
      ipOptions: v6 ? 0 : 4 * Math.floor(Math.random() * 3),
      tcpOptions: 4 * Math.floor(Math.random() * 4),
      payload,
      seq: Math.floor(Math.random() * 2 ** 32),
      flags: Math.floor(Math.random() * 256),
    });
    // corrupt a few bytes and the header fields at random
    for (let k = Math.floor(Math.random() * 3); k > 0; k--) {
      sp[Math.floor(Math.random() * Math.min(80, sp.length))] ^= 0xff;
    }
    const cut = Math.random() < 0.2 ? sp.subarray(0, Math.floor(Math.random() * sp.length)) : sp;
    const h: VnetHdr = {
      flags: 1,
      gsoType: Math.random() < 0.9
        ? (udp ? GSO_UDP_L4 : v6 ? GSO_TCPV6 : GSO_TCPV4)
        : Math.floor(Math.random() * 8),
      hdrLen: Math.floor(Math.random() * 200),
      gsoSize: Math.random() < 0.05 ? 0 : 500 + Math.floor(Math.random() * 1000),
      csumStart: Math.random() < 0.8 ? (v6 ? 40 : (sp[0] & 0x0f) * 4) : Math.floor(Math.random() * 80),
      csumOffset: 16,
    };
    try {
      const segs = split(cut, h);
      for (const s of segs) {
        assert(s.length <= h.csumStart + 60 + h.gsoSize, "a segment larger than headers + gso_size");
        const isUdp = h.gsoType === GSO_UDP_L4, isV6 = isUdp ? s[0] >> 4 === 6 : h.gsoType === GSO_TCPV6;
        assert(tcpVerifies(s, isV6, isUdp ? 17 : 6), "a segment with a wrong checksum");
        if (!isV6) assertEquals(rfc1071([...s.subarray(0, h.csumStart)]), 0xffff);
      }
      good++;
      if (udp) udpGood++;
    } catch (e) {
      if (!(e instanceof GsoError)) throw e;
    }
  }
  assert(good > 1500, `only ${good} of 5000 split`);
  assert(udpGood > 700, `only ${udpGood} UDP ones split`);
});

/** What the kernel does with a coalesced write: a GSO one is split again (as the stack would resegment it). */
function kernelView(written: Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const w of written) {
    const h = parseVnetHdr(w);
    if (h.gsoType === 0) {
      assertEquals(w.subarray(0, 10), new Uint8Array(10), "a plain write has a zero header");
      out.push(w.slice(10));
      continue;
    }
    assertEquals(h.flags, 1, "NEEDS_CSUM");
    // the partial checksum completes to a valid one over the whole super-packet
    const full = w.slice(10);
    completeChecksum(full, 0, full.length, h);
    const udp = h.gsoType === GSO_UDP_L4;
    assert(
      tcpVerifies(full, udp ? full[0] >> 4 === 6 : h.gsoType === GSO_TCPV6, udp ? 17 : 6),
      "its checksum",
    );
    out.push(...split(w.subarray(10), h, 0));
  }
  return out;
}

function coalesce(pkts: Uint8Array[], udp = false) {
  const written: Uint8Array[] = [];
  const c = new Coalescer((b, len) => (written.push(b.slice(0, len)), true), () => {}, { udp });
  for (const p of pkts) c.push(p, 0, p.length);
  c.flush();
  return { written, c };
}

for (const v6 of [false, true]) {
  Deno.test(`gro: in-order TCP${v6 ? "v6" : "v4"} segments are joined into one GSO write that splits back into them`, () => {
    const sp = superPacket({ v6, tcpOptions: 12, payload: random(20000), seq: 0xfffff000, flags: 0x18 });
    const ipLen = v6 ? 40 : 20;
    const segs = split(sp, {
      flags: 1,
      gsoType: v6 ? GSO_TCPV6 : GSO_TCPV4,
      hdrLen: 0,
      gsoSize: 1376,
      csumStart: ipLen,
      csumOffset: 16,
    }, 0);
    const { written, c } = coalesce(segs);
    assertEquals(written.length, 1);
    const h = parseVnetHdr(written[0]);
    assertEquals([h.gsoType, h.gsoSize, h.csumStart, h.csumOffset, h.hdrLen], [
      v6 ? GSO_TCPV6 : GSO_TCPV4,
      1376,
      ipLen,
      16,
      ipLen + 32,
    ]);
    assertEquals(kernelView(written), segs);
    assertEquals([c.supers, c.joined], [1, segs.length]);
  });
}

Deno.test("gro: what may not be joined goes out alone, unchanged, in order", () => {
  let id = 100;
  const mk = (seq: number, flags: number, len: number, port = 5201) => {
    const p = superPacket({ v6: false, payload: random(len), seq, flags });
    new DataView(p.buffer).setUint16(20 + 2, port);
    new DataView(p.buffer).setUint16(4, id++); // consecutive ids, as a sender's segments
    // a complete, valid packet: lengths and checksums as a real one
    return split(
      p,
      { flags: 1, gsoType: GSO_TCPV4, hdrLen: 0, gsoSize: 2000, csumStart: 20, csumOffset: 16 },
      0,
    )[0];
  };
  const a1 = mk(1000, 0x10, 1000),
    a2 = mk(2000, 0x10, 1000),
    a3 = mk(3000, 0x10, 500),
    a4 = mk(3500, 0x10, 500);
  const bad = mk(4000, 0x10, 1000);
  bad[100] ^= 1; // a broken checksum
  const other = mk(5000, 0x10, 1000, 5202); // another flow
  const gap = mk(9000, 0x10, 1000, 5202); // not the next sequence number
  const syn = mk(1, 0x02, 1000, 5203);
  const fin = mk(1, 0x11, 1000, 5204);
  const pureAck = superPacket({ v6: false, payload: new Uint8Array(0), seq: 7, flags: 0x10 });
  const udp = new Uint8Array(60).fill(3);
  udp[0] = 0x45;
  udp[9] = 17;
  const input = [a1, a2, a3, a4, bad, other, gap, syn, fin, pureAck, udp];
  const { written } = coalesce(input);
  // a1+a2+a3 join (a3 is shorter: it ends the run, so a4 starts a new one); every other one alone
  assertEquals(
    written.length,
    input.length - 2,
    JSON.stringify(written.map((w) => [parseVnetHdr(w).gsoType, w.length])),
  );
  assertEquals(parseVnetHdr(written[0]).gsoType, GSO_TCPV4);
  assertEquals(kernelView(written), input);
});

Deno.test("gro: fuzzed streams (two flows, shuffled runs, retransmitted overlaps, corruption) come out exactly as they went in", () => {
  for (let round = 0; round < 600; round++) {
    const flows = [0, 1].map((f) => {
      const v6 = Math.random() < 0.5;
      const sp = superPacket({
        v6,
        tcpOptions: 4 * Math.floor(Math.random() * 4),
        payload: random(1 + Math.floor(Math.random() * 15000)),
        seq: Math.floor(Math.random() * 2 ** 32),
        flags: Math.random() < 0.5 ? 0x10 : 0x18,
      });
      new DataView(sp.buffer).setUint16((v6 ? 40 : 20) + 2, 6000 + f);
      return split(sp, {
        flags: 1,
        gsoType: v6 ? GSO_TCPV6 : GSO_TCPV4,
        hdrLen: 0,
        gsoSize: 200 + Math.floor(Math.random() * 1300),
        csumStart: v6 ? 40 : 20,
        csumOffset: 16,
      }, 0);
    });
    const input: Uint8Array[] = [];
    const [f0, f1] = [[...flows[0]], [...flows[1]]];
    while (f0.length || f1.length) {
      const from = (Math.random() < 0.5 && f0.length) || !f1.length ? f0 : f1;
      const take = from.splice(0, 1 + Math.floor(Math.random() * 4));
      if (Math.random() < 0.1 && take.length > 1) take.reverse();
      for (const p of take) {
        if (Math.random() < 0.05) p[Math.floor(Math.random() * p.length)] ^= 0x40;
        input.push(p);
        // a retransmission: a segment seen before again (its bytes overlap what was already joined)
        if (Math.random() < 0.05) input.push(input[Math.floor(Math.random() * input.length)].slice());
      }
    }
    const expect = input.map((p) => p.slice());
    const { written } = coalesce(input);
    const back = kernelView(written);
    assertEquals(back, expect, `round ${round}`);
  }
});

/** A UDP super-packet (one flow) as the kernel hands it over with USO: lengths and checksum left to the split. */
function udpSuperPacket(v6: boolean, payload: Uint8Array, id = 0xfffe, port = 5201): Uint8Array {
  const ipLen = v6 ? 40 : 20;
  const p = new Uint8Array(ipLen + 8 + payload.length);
  const dv = new DataView(p.buffer);
  if (v6) {
    p[0] = 0x60;
    p[6] = 17;
    p[7] = 64;
    p.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 8);
    p.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 24);
  } else {
    p[0] = 0x45;
    dv.setUint16(4, id);
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 17;
    p.set([10, 1, 2, 3], 12);
    p.set([10, 4, 5, 6], 16);
  }
  dv.setUint16(ipLen, 40000);
  dv.setUint16(ipLen + 2, port);
  p.set(payload, ipLen + 8);
  return p;
}

const udpHdr = (v6: boolean, gsoSize: number): VnetHdr => ({
  flags: 1,
  gsoType: GSO_UDP_L4,
  hdrLen: (v6 ? 40 : 20) + 8,
  gsoSize,
  csumStart: v6 ? 40 : 20,
  csumOffset: 6,
});

for (const v6 of [false, true]) {
  Deno.test(`gso: a UDP${v6 ? "v6" : "v4"} super-packet (USO) splits into datagrams that verify`, () => {
    const payload = random(10_000);
    const segs = split(udpSuperPacket(v6, payload), udpHdr(v6, 1200));
    assertEquals(segs.length, 9);
    const ipLen = v6 ? 40 : 20;
    const got: number[] = [];
    segs.forEach((seg, i) => {
      const dv = new DataView(seg.buffer, seg.byteOffset);
      assertEquals(dv.getUint16(ipLen + 4), seg.length - ipLen, "UDP length");
      if (v6) assertEquals(dv.getUint16(4), seg.length - 40, "payload length");
      else {
        assertEquals(dv.getUint16(2), seg.length, "total length");
        assertEquals(dv.getUint16(4), (0xfffe + i) & 0xffff, "consecutive ids (wrapping)");
        assertEquals(rfc1071([...seg.subarray(0, 20)]), 0xffff, "IPv4 header checksum");
      }
      assert(tcpVerifies(seg, v6, 17), `datagram ${i}'s UDP checksum`);
      assertEquals(seg.length - ipLen - 8, i < 8 ? 1200 : 400);
      got.push(...seg.subarray(ipLen + 8));
    });
    assertEquals(new Uint8Array(got), payload);
  });

  Deno.test(`gro: UDP${v6 ? "v6" : "v4"} datagrams of one flow are joined (USO) into a write that splits back into them`, () => {
    const segs = split(udpSuperPacket(v6, random(64 * 70 + 10)), udpHdr(v6, 64));
    assertEquals(segs.length, 71);
    const { written, c } = coalesce(segs, true);
    // at most 64 per write: 64 + the remaining 7 (the last one shorter)
    assertEquals(written.map((w) => parseVnetHdr(w).gsoType), [GSO_UDP_L4, GSO_UDP_L4]);
    const h = parseVnetHdr(written[0]);
    assertEquals([h.gsoSize, h.csumStart, h.csumOffset, h.hdrLen], [64, v6 ? 40 : 20, 6, (v6 ? 40 : 20) + 8]);
    assertEquals(kernelView(written), segs);
    assertEquals([c.supers, c.joined], [2, 71]);
    // without USO nothing UDP is joined
    const plain = coalesce(segs, false);
    assertEquals(plain.written.length, segs.length);
    assertEquals(kernelView(plain.written), segs);
  });
}

Deno.test("gro: UDP datagrams that may not be joined go out alone, unchanged, in order", () => {
  let id = 500;
  const one = (len: number, port = 5201, v6 = false) =>
    split(udpSuperPacket(v6, random(len), id++, port), udpHdr(v6, 2000))[0];
  const a1 = one(100), a2 = one(100), short = one(50), after = one(100); // short ends the run
  const bigger = one(200); // larger than the run before it: a new run
  const other = one(200, 5202); // another flow
  id += 5;
  const gap = one(200, 5202); // not the next IPv4 id
  const bad = one(200, 5202);
  bad[40] ^= 1; // a broken checksum
  const noSum = one(200, 5202);
  noSum[26] = noSum[27] = 0; // IPv4 without a UDP checksum
  const v6 = one(200, 5202, true); // another family
  const input = [a1, a2, short, after, bigger, other, gap, bad, noSum, v6];
  const { written } = coalesce(input, true);
  assertEquals(
    written.map((w) => parseVnetHdr(w).gsoType),
    [GSO_UDP_L4, 0, 0, 0, 0, 0, 0, 0],
    "a1+a2+short joined; after (100 ≤ 100 but after a shorter one) and bigger start their own runs",
  );
  assertEquals(kernelView(written), input);
});

Deno.test("gso: the word-at-a-time checksum equals RFC 1071 at every alignment and length", () => {
  const buf = random(4096 + 16);
  const norm = (x: number) => {
    while (x > 0xffff) x = (x & 0xffff) + Math.floor(x / 0x10000);
    return x === 0 ? 0xffff : x;
  };
  for (let round = 0; round < 3000; round++) {
    const from = Math.floor(Math.random() * 64), len = Math.floor(Math.random() * 3000);
    const view = round % 3 === 0 ? buf.subarray(1 + (round % 7)) : buf; // views at odd byte offsets too
    const want = norm(rfc1071([...view.subarray(from, from + len)]));
    assertEquals(norm(sum16(view, from, from + len)), want, `from ${from} len ${len} at +${view.byteOffset}`);
    const initial = Math.floor(Math.random() * 0x30000);
    assertEquals(norm(sum16(view, from, from + len, initial)), norm(want + initial), "with an initial sum");
  }
});
