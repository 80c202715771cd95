import { assertEquals, assertThrows } from "../../tests/assert.ts";
import { parsePrefix, RouteTable } from "./routes.ts";
import { parseIPv4, parseIPv6 } from "../uapi.ts";

const v4 = (dst: string) => {
  const p = new Uint8Array(20);
  p[0] = 0x45;
  p.set(parseIPv4(dst)!, 16);
  return p;
};
const v6 = (dst: string) => {
  const p = new Uint8Array(40);
  p[0] = 0x60;
  p.set(parseIPv6(dst)!, 24);
  return p;
};
const at = (t: RouteTable, p: Uint8Array) => t.lookup(p, 0, p.length);

Deno.test("routes: prefixes are parsed and normalised (host bits cleared)", () => {
  assertEquals(parsePrefix("10.8.0.77/24").text, "10.8.0.0/24");
  assertEquals(parsePrefix("10.8.0.77").text, "10.8.0.77/32");
  assertEquals(parsePrefix("fd00:8::1234/64").text, "fd00:8:0:0:0:0:0:0/64");
  assertEquals(parsePrefix("10.1.2.3/0").text, "0.0.0.0/0");
  for (const bad of ["10.8.0.1/33", "fd00::/129", "nope/8", "10.8.0/24", "10.8.0.1/x"]) {
    assertThrows(() => parsePrefix(bad), "is not ADDR/PREFIX");
  }
});

Deno.test("routes: the longest prefix wins, IPv4 and IPv6; no route is -1", () => {
  const t = new RouteTable();
  t.add("10.8.0.2/32", 2);
  t.add("10.8.0.3/32", 3);
  t.add("192.168.0.0/16", 2);
  t.add("192.168.51.0/24", 3);
  t.add("fd00:8::2/128", 2);
  t.add("fd00:51::/48", 3);
  assertEquals(at(t, v4("10.8.0.2")), 2);
  assertEquals(at(t, v4("10.8.0.3")), 3);
  assertEquals(at(t, v4("10.8.0.4")), -1);
  assertEquals(at(t, v4("192.168.51.7")), 3);
  assertEquals(at(t, v4("192.168.52.7")), 2);
  assertEquals(at(t, v6("fd00:8::2")), 2);
  assertEquals(at(t, v6("fd00:51:0:1::9")), 3);
  assertEquals(at(t, v6("fd00:52::1")), -1);
  assertEquals(t.lookup(new Uint8Array([0x45, 0, 0]), 0, 3), -1); // truncated
  assertEquals(t.lookup(new Uint8Array(40).fill(0x70, 0, 1), 0, 40), -1); // not IP
  t.add("0.0.0.0/0", 3);
  assertEquals(at(t, v4("8.8.8.8")), 3);
  assertEquals(at(t, v4("10.8.0.2")), 2);
});

Deno.test("routes: a prefix held by another peer is refused; delete one, or all of a peer", () => {
  const t = new RouteTable();
  t.add("10.9.0.0/24", 1);
  t.add("10.9.0.0/24", 1); // the same peer again: kept once
  assertThrows(() => t.add("10.9.0.9/24", 2), "the route 10.9.0.0/24 is already held by peer 1");
  assertEquals(t.of(1), ["10.9.0.0/24"]);
  assertEquals(t.del("10.9.0.0/24", 2), false);
  assertEquals(t.del("10.9.0.0/24", 1), true);
  assertEquals(at(t, v4("10.9.0.5")), -1);
  t.add("10.9.0.0/24", 2);
  t.add("fd00:9::/64", 2);
  t.delPeer(2);
  assertEquals(at(t, v4("10.9.0.5")), -1);
  assertEquals(at(t, v6("fd00:9::5")), -1);
});

Deno.test("routes: lookupSource finds the holder of a packet's source address, not its destination", () => {
  const t = new RouteTable();
  t.add("10.8.0.2/32", 1);
  t.add("192.168.10.0/24", 1);
  t.add("10.8.0.3/32", 2);
  t.add("fd00:8::3/128", 2);
  const pkt4 = (src: string, dst: string) => {
    const p = v4(dst);
    p.set(parseIPv4(src)!, 12);
    return p;
  };
  const pkt6 = (src: string, dst: string) => {
    const p = v6(dst);
    p.set(parseIPv6(src)!, 8);
    return p;
  };
  const src = (p: Uint8Array) => t.lookupSource(p, 0, p.length);
  assertEquals(src(pkt4("10.8.0.2", "10.8.0.3")), 1);
  assertEquals(src(pkt4("192.168.10.7", "10.8.0.1")), 1); // a subnet behind peer 1
  assertEquals(src(pkt4("10.8.0.3", "10.8.0.2")), 2);
  assertEquals(src(pkt4("10.8.0.9", "10.8.0.2")), -1); // nobody's
  assertEquals(at(t, pkt4("10.8.0.9", "10.8.0.2")), 1); // the destination lookup is unchanged
  assertEquals(src(pkt6("fd00:8::3", "fd00:8::1")), 2);
  assertEquals(src(pkt6("fd00:8::2", "fd00:8::3")), -1);
  assertEquals(src(new Uint8Array([0x45, 0, 0])), -1); // truncated
});

Deno.test("routes: 5 000 peers' host routes and a few subnets: every lookup finds its own holder", () => {
  const t = new RouteTable();
  for (let i = 1; i <= 5000; i++) {
    t.add(`10.${(i >> 8) & 255}.${i & 255}.1/32`, i);
    t.add(`fd00::${i.toString(16)}/128`, i);
  }
  t.add("10.0.0.0/8", 9999);
  t.add("192.168.7.0/24", 4242);
  const v4 = (a: number[]) => new Uint8Array([0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 1, 1, 1, 1, ...a]);
  const v6 = (last: number) => {
    const b = new Uint8Array(40);
    b[0] = 0x60;
    b.set([0xfd, 0], 24);
    b[38] = last >> 8;
    b[39] = last & 255;
    return b;
  };
  for (const i of [1, 255, 256, 4097, 5000]) {
    assertEquals(t.lookup(v4([10, (i >> 8) & 255, i & 255, 1]), 0, 20), i);
    assertEquals(t.lookup(v6(i), 0, 40), i);
  }
  assertEquals(t.lookup(v4([10, 200, 3, 4]), 0, 20), 9999); // no host route: the /8
  assertEquals(t.lookup(v4([192, 168, 7, 99]), 0, 20), 4242);
  assertEquals(t.lookup(v4([192, 168, 8, 99]), 0, 20), -1);
  t.delPeer(4097);
  assertEquals(t.lookup(v4([10, 16, 1, 1]), 0, 20), 9999);
  assertEquals(t.lookup(v6(4097), 0, 40), -1);
  assertEquals(t.of(5000), ["10.19.136.1/32", "fd00:0:0:0:0:0:0:1388/128"]);
});
