import { assert, assertEquals } from "../../tests/assert.ts";
import { clampMss } from "./mss.ts";

/** Internet checksum over `b`, returning the folded 16-bit sum (0xffff or 0 means valid when included). */
function csum(parts: Uint8Array[]): number {
  let s = 0;
  for (const b of parts) {
    for (let i = 0; i < b.length; i += 2) s += (b[i] << 8) | (i + 1 < b.length ? b[i + 1] : 0);
  }
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function tcpSyn(mss: number, flags = 0x02): Uint8Array {
  const t = new Uint8Array(24);
  t[0] = 0x30, t[1] = 0x39, t[2] = 0x00, t[3] = 0x50; // ports
  t[12] = 6 << 4; // 24-byte header
  t[13] = flags;
  t[14] = 0xff, t[15] = 0xff; // window
  t.set([1, 2, 4, mss >> 8, mss & 0xff].slice(1), 19); // NOP then MSS option (kind 2, len 4)
  t[19] = 1; // NOP at 20? keep: options 20..23 = [2,4,hi,lo]
  t.set([2, 4, mss >> 8, mss & 0xff], 20);
  return t;
}

function ipv4(tcp: Uint8Array, frag = 0): Uint8Array {
  const p = new Uint8Array(20 + tcp.length);
  p[0] = 0x45, p[2] = p.length >> 8, p[3] = p.length & 0xff, p[6] = frag >> 8, p[7] = frag & 0xff;
  p[8] = 64, p[9] = 6;
  p.set([10, 0, 0, 1, 10, 0, 0, 2], 12);
  p.set(tcp, 20);
  fixTcp(p, 20, pseudo4(p));
  return p;
}

function ipv6(tcp: Uint8Array): Uint8Array {
  const p = new Uint8Array(40 + tcp.length);
  p[0] = 0x60, p[4] = tcp.length >> 8, p[5] = tcp.length & 0xff, p[6] = 6, p[7] = 64;
  p[8] = 0xfd, p[23] = 1, p[24] = 0xfd, p[39] = 2;
  p.set(tcp, 40);
  fixTcp(p, 40, pseudo6(p));
  return p;
}

function pseudo4(p: Uint8Array): Uint8Array {
  const len = p.length - 20;
  return new Uint8Array([...p.subarray(12, 20), 0, 6, len >> 8, len & 0xff]);
}
function pseudo6(p: Uint8Array): Uint8Array {
  const len = p.length - 40;
  return new Uint8Array([...p.subarray(8, 40), 0, 0, len >> 8, len & 0xff, 0, 0, 0, 6]);
}
function fixTcp(p: Uint8Array, off: number, ph: Uint8Array) {
  p[off + 16] = p[off + 17] = 0;
  const c = ~csum([ph, p.subarray(off)]) & 0xffff;
  p[off + 16] = c >> 8, p[off + 17] = c & 0xff;
}
const mssOf = (p: Uint8Array, off: number) => (p[off + 22] << 8) | p[off + 23];

Deno.test("mss: IPv4 SYN with a larger MSS is clamped and its checksum stays valid", () => {
  for (const orig of [1460, 65535, 1361, 8960]) {
    const p = ipv4(tcpSyn(orig));
    assert(clampMss(p, 0, p.length, 1360));
    assertEquals(mssOf(p, 20), 1360);
    assertEquals(csum([pseudo4(p), p.subarray(20)]), 0xffff, `checksum after clamping ${orig}`);
  }
});

Deno.test("mss: IPv6 SYN and SYN-ACK are clamped with a valid checksum", () => {
  for (const flags of [0x02, 0x12]) {
    const p = ipv6(tcpSyn(1440, flags));
    assert(clampMss(p, 0, p.length, 1300));
    assertEquals(mssOf(p, 40), 1300);
    assertEquals(csum([pseudo6(p), p.subarray(40)]), 0xffff);
  }
});

Deno.test("mss: left alone: smaller MSS, non-SYN, fragments, non-TCP, mss 0, truncated", () => {
  const cases: [string, Uint8Array, number][] = [
    ["smaller", ipv4(tcpSyn(1200)), 1360],
    ["ACK only", ipv4(tcpSyn(1460, 0x10)), 1360],
    ["fragment", ipv4(tcpSyn(1460), 0x2001), 1360],
    ["mss 0 = off", ipv4(tcpSyn(1460)), 0],
    ["truncated", ipv4(tcpSyn(1460)).slice(0, 30), 1360],
    [
      "udp",
      (() => {
        const p = ipv4(tcpSyn(1460));
        p[9] = 17;
        return p;
      })(),
      1360,
    ],
    ["garbage", new Uint8Array([0x45, 1, 2]), 1360],
    ["empty", new Uint8Array(0), 1360],
  ];
  for (const [name, p, mss] of cases) {
    const before = p.slice();
    assertEquals(clampMss(p, 0, p.length, mss), false, name);
    assertEquals(p, before, name);
  }
});
