/**
 * Golden bytes of the netlink messages this tool sends to Linux's ovpn module and to rtnetlink, worked out
 * by hand from `ovpn.yaml` / `ovpn.h` (attribute numbers, types, byte orders) and the netlink headers, and
 * decoding of what the kernel sends back (answers, notifications, errors with their extended ACK).
 */
import { assert, assertEquals } from "../../tests/assert.ts";
import {
  Attrs,
  getFamilyRequest,
  NLM_F,
  NLMSG,
  NlMsg,
  parseError,
  parseFamily,
  parseMessages,
} from "./netlink.ts";
import {
  keyNewRequest,
  newLinkRequest,
  OVPN_A,
  OVPN_A_KEYCONF,
  OVPN_A_KEYDIR,
  OVPN_A_PEER,
  OVPN_CMD,
  OVPN_MODE,
  parseLink,
  parseNotification,
  parsePeer,
  peerNewRequest,
} from "./ovpn_nl.ts";

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => new Uint8Array(s.replace(/\s+/g, "").match(/../g)!.map((x) => parseInt(x, 16)));

Deno.test("netlink: CTRL_CMD_GETFAMILY 'ovpn' byte for byte", () => {
  assertEquals(
    hex(getFamilyRequest("ovpn", 1)),
    "20000000" + "1000" + "0500" + "01000000" + "00000000" + // nlmsghdr: len 32, GENL_ID_CTRL, REQUEST|ACK
      "03010000" + // genl: CTRL_CMD_GETFAMILY, version 1
      "0900" + "0200" + "6f76706e00" + "000000", // CTRL_ATTR_FAMILY_NAME "ovpn\0", padded
  );
});

Deno.test("rtnetlink: RTM_NEWLINK of an ovpn interface in multipeer mode byte for byte", () => {
  assertEquals(
    hex(newLinkRequest("ovpn0", OVPN_MODE.MP, 7)),
    "48000000" + "1000" + "0506" + "07000000" + "00000000" + // len 72, RTM_NEWLINK, REQUEST|ACK|EXCL|CREATE
      "00000000" + "00000000" + "00000000" + "00000000" + // ifinfomsg: AF_UNSPEC, index 0
      "0a00" + "0300" + "6f76706e3000" + "0000" + // IFLA_IFNAME "ovpn0\0"
      "1c00" + "1280" + // IFLA_LINKINFO (nested)
      "0900" + "0100" + "6f76706e00" + "000000" + //   IFLA_INFO_KIND "ovpn\0"
      "0c00" + "0280" + //   IFLA_INFO_DATA (nested)
      "0500" + "0100" + "01" + "000000", //     IFLA_OVPN_MODE = 1 (MP), u8
  );
  assertEquals(newLinkRequest("ovpn0", OVPN_MODE.P2P, 7)[68], 0);
});

Deno.test("ovpn: PEER_NEW of a UDP peer over IPv4 byte for byte", () => {
  const m = peerNewRequest(0x24, 2, 5, {
    id: 1,
    socket: 9,
    remote: { address: "192.0.2.2", port: 1194 },
    localAddress: "192.0.2.1",
  });
  assertEquals(
    hex(m),
    "48000000" + "2400" + "0500" + "02000000" + "00000000" + // len 72, family 0x24, REQUEST|ACK, seq 2
      "01010000" + // OVPN_CMD_PEER_NEW, version 1
      "0800" + "0100" + "05000000" + // OVPN_A_IFINDEX 5
      "2c00" + "0280" + // OVPN_A_PEER (nested)
      "0800" + "0100" + "01000000" + //   ID 1
      "0800" + "0600" + "09000000" + //   SOCKET 9
      "0800" + "0200" + "c0000202" + //   REMOTE_IPV4 192.0.2.2 (big endian)
      "0600" + "0500" + "04aa" + "0000" + //   REMOTE_PORT 1194 (big endian)
      "0800" + "0a00" + "c0000201", //   LOCAL_IPV4 192.0.2.1
  );
  // a wildcard local address is left out; IPv6 goes in the IPv6 attributes; multipeer VPN addresses
  const v6 = new Attrs(
    parseMessages(peerNewRequest(0x24, 3, 5, {
      id: 7,
      socket: 3,
      remote: { address: "2001:db8::2", port: 1 },
      localAddress: "::",
      vpnIpv4: "10.8.0.2",
      vpnIpv6: "fd00::2",
      keepalive: { interval: 10, timeout: 60 },
    }))[0].payload.subarray(4),
  ).nested(OVPN_A.PEER)!;
  assertEquals(hex(v6.bytes(OVPN_A_PEER.REMOTE_IPV6)!), "20010db8000000000000000000000002");
  assert(!v6.has(OVPN_A_PEER.LOCAL_IPV6) && !v6.has(OVPN_A_PEER.REMOTE_IPV4));
  assertEquals(hex(v6.bytes(OVPN_A_PEER.VPN_IPV4)!), "0a080002");
  assertEquals(v6.u32(OVPN_A_PEER.KEEPALIVE_INTERVAL), 10);
  assertEquals(v6.u32(OVPN_A_PEER.KEEPALIVE_TIMEOUT), 60);
});

Deno.test("ovpn: KEY_NEW carries both directions' key and 8-byte nonce tail", () => {
  const ek = new Uint8Array(32).fill(0xe1), dk = new Uint8Array(32).fill(0xd1);
  const et = new Uint8Array(8).fill(0xe2), dt = new Uint8Array(8).fill(0xd2);
  const m = keyNewRequest(0x25, 4, 9, {
    peerId: 3,
    slot: 1,
    keyId: 5,
    cipherAlg: 2,
    encrypt: { key: ek, nonceTail: et },
    decrypt: { key: dk, nonceTail: dt },
  });
  const [msg] = parseMessages(m);
  assertEquals(msg.type, 0x25);
  assertEquals(msg.payload[0], OVPN_CMD.KEY_NEW);
  const top = new Attrs(msg.payload.subarray(4));
  assertEquals(top.u32(OVPN_A.IFINDEX), 9);
  const k = top.nested(OVPN_A.KEYCONF)!;
  assertEquals(
    [k.u32(OVPN_A_KEYCONF.PEER_ID), k.u32(OVPN_A_KEYCONF.SLOT), k.u32(OVPN_A_KEYCONF.KEY_ID)],
    [3, 1, 5],
  );
  assertEquals(k.u32(OVPN_A_KEYCONF.CIPHER_ALG), 2);
  const e = k.nested(OVPN_A_KEYCONF.ENCRYPT_DIR)!, d = k.nested(OVPN_A_KEYCONF.DECRYPT_DIR)!;
  assertEquals(hex(e.bytes(OVPN_A_KEYDIR.CIPHER_KEY)!), hex(ek));
  assertEquals(hex(e.bytes(OVPN_A_KEYDIR.NONCE_TAIL)!), hex(et));
  assertEquals(hex(d.bytes(OVPN_A_KEYDIR.CIPHER_KEY)!), hex(dk));
  assertEquals(hex(d.bytes(OVPN_A_KEYDIR.NONCE_TAIL)!), hex(dt));
  // the nested attributes carry NLA_F_NESTED, as the kernel's strict validation wants
  const raw = new DataView(msg.payload.buffer, msg.payload.byteOffset);
  assertEquals(raw.getUint16(4 + 8 + 2, true), 0x8000 | OVPN_A.KEYCONF);
});

Deno.test("ovpn: a PEER_GET answer decodes, with 4- and 8-byte counters", () => {
  const ans = new NlMsg(0x24, 0, 1).genl(OVPN_CMD.PEER_GET, 1).nest(OVPN_A.PEER)
    .u32(OVPN_A_PEER.ID, 2)
    .attr(OVPN_A_PEER.REMOTE_IPV4, unhex("c0000202")).be16(OVPN_A_PEER.REMOTE_PORT, 1194)
    .attr(OVPN_A_PEER.LOCAL_IPV4, unhex("c0000201")).be16(OVPN_A_PEER.LOCAL_PORT, 1195)
    .attr(OVPN_A_PEER.VPN_IPV6, unhex("fd000000000000000000000000000002"))
    .u32(OVPN_A_PEER.KEEPALIVE_INTERVAL, 10).u32(OVPN_A_PEER.KEEPALIVE_TIMEOUT, 60)
    .u32(OVPN_A_PEER.VPN_RX_BYTES, 1000)
    .attr(OVPN_A_PEER.LINK_TX_BYTES, unhex("0000000001000000")) // 2^32 as a 64-bit uint
    .endNest().end();
  const p = parsePeer(parseMessages(ans)[0].payload);
  assertEquals(p.id, 2);
  assertEquals(p.remote, { address: "192.0.2.2", port: 1194 });
  assertEquals(p.local, { address: "192.0.2.1", port: 1195 });
  assertEquals(p.vpnIpv6, "fd00::2");
  assertEquals(p.vpnIpv4, null);
  assertEquals([p.keepaliveInterval, p.keepaliveTimeout], [10, 60]);
  assertEquals(p.vpnRxBytes, 1000);
  assertEquals(p.linkTxBytes, 2 ** 32);
  assertEquals(p.linkRxPackets, 0);
});

Deno.test("ovpn: notifications (peer deleted, floated, key used up)", () => {
  const del = new NlMsg(0x24, 0, 0).genl(OVPN_CMD.PEER_DEL_NTF, 1).u32(OVPN_A.IFINDEX, 5)
    .nest(OVPN_A.PEER).u32(OVPN_A_PEER.DEL_REASON, 2).u32(OVPN_A_PEER.ID, 3).endNest().end();
  assertEquals(parseNotification(parseMessages(del)[0].payload), {
    cmd: "PEER_DEL",
    ifindex: 5,
    peerId: 3,
    reason: "expired",
  });
  const fl = new NlMsg(0x24, 0, 0).genl(OVPN_CMD.PEER_FLOAT_NTF, 1).u32(OVPN_A.IFINDEX, 5)
    .nest(OVPN_A.PEER).u32(OVPN_A_PEER.ID, 4).attr(
      OVPN_A_PEER.REMOTE_IPV6,
      unhex("20010db8" + "00".repeat(11) + "09"),
    )
    .u32(OVPN_A_PEER.REMOTE_IPV6_SCOPE_ID, 0).be16(OVPN_A_PEER.REMOTE_PORT, 4000).endNest().end();
  assertEquals(parseNotification(parseMessages(fl)[0].payload), {
    cmd: "PEER_FLOAT",
    ifindex: 5,
    peerId: 4,
    remote: { address: "2001:db8::9", port: 4000 },
  });
  // the kernel sends the key id of KEY_SWAP_NTF as a u16
  const sw = new NlMsg(0x24, 0, 0).genl(OVPN_CMD.KEY_SWAP_NTF, 1).u32(OVPN_A.IFINDEX, 5)
    .nest(OVPN_A.KEYCONF).u32(OVPN_A_KEYCONF.PEER_ID, 6).u16(OVPN_A_KEYCONF.KEY_ID, 7).endNest().end();
  assertEquals(parseNotification(parseMessages(sw)[0].payload), {
    cmd: "KEY_SWAP",
    ifindex: 5,
    peerId: 6,
    keyId: 7,
  });
  assertEquals(parseNotification(new Uint8Array(2)), null);
  assertEquals(parseNotification(unhex("05010000")), null); // no peer attribute
});

Deno.test("netlink: an error with the kernel's extended ACK text, and a plain ACK", () => {
  const text = new TextEncoder().encode("ovpn: cannot find peer with id 7\0");
  const tlv = new Uint8Array(4 + ((text.length + 3) & ~3));
  new DataView(tlv.buffer).setUint16(0, 4 + text.length, true);
  new DataView(tlv.buffer).setUint16(2, 1, true); // NLMSGERR_ATTR_MSG
  tlv.set(text, 4);
  const payload = new Uint8Array(4 + 16 + tlv.length);
  const dv = new DataView(payload.buffer);
  dv.setInt32(0, -2, true); // -ENOENT
  dv.setUint32(4, 40, true); // the request's length (capped: only its header is here)
  payload.set(tlv, 20);
  const m = { type: NLMSG.ERROR, flags: NLM_F.CAPPED | NLM_F.ACK_TLVS, seq: 9, pid: 0, payload };
  assertEquals(parseError(m), { errno: 2, seq: 9, message: "ovpn: cannot find peer with id 7" });
  const ack = new Uint8Array(20);
  assertEquals(parseError({ type: NLMSG.ERROR, flags: NLM_F.CAPPED, seq: 3, pid: 0, payload: ack }), {
    errno: 0,
    seq: 3,
  });
});

Deno.test("netlink: the controller's family description (id, version, commands, groups)", () => {
  const ans = new NlMsg(0x10, 0, 1).genl(1, 2).u16(1, 0x24).str(2, "ovpn").u32(3, 1)
    .nest(6).nest(1).u32(1, 1).u32(2, 0xa).endNest().nest(2).u32(1, 3).endNest().endNest()
    .nest(7).nest(1).str(1, "peers").u32(2, 0x11).endNest().endNest().end();
  const f = parseFamily(parseMessages(ans)[0].payload);
  assertEquals(f.id, 0x24);
  assertEquals(f.name, "ovpn");
  assertEquals(f.version, 1);
  assertEquals(f.ops, [1, 3]);
  assertEquals(f.groups.get("peers"), 0x11);
});

Deno.test("rtnetlink: a link answer decodes kind, mode and the drop counters", () => {
  const stats = new Uint8Array(8 * 23);
  const sv = new DataView(stats.buffer);
  sv.setBigUint64(0, 10n, true); // rx_packets
  sv.setBigUint64(6 * 8, 42n, true); // rx_dropped
  sv.setBigUint64(7 * 8, 3n, true); // tx_dropped
  const ifi = new Uint8Array(16);
  new DataView(ifi.buffer).setInt32(4, 12, true);
  const ans = new NlMsg(16, 0, 1).raw(ifi).str(3, "ovpn-srv").u32(4, 1428).attr(23, stats)
    .nest(18).str(1, "ovpn").nest(2).u8(1, 1).endNest().endNest().end();
  const l = parseLink(parseMessages(ans)[0].payload);
  assertEquals([l.index, l.name, l.kind, l.mode, l.mtu], [12, "ovpn-srv", "ovpn", 1, 1428]);
  assertEquals([l.stats!.rxPackets, l.stats!.rxDropped, l.stats!.txDropped], [10, 42, 3]);
});

Deno.test("netlink: truncated or bogus input decodes to nothing, never throws", () => {
  assertEquals(parseMessages(new Uint8Array(10)), []);
  assertEquals(parseMessages(unhex("ff000000" + "00".repeat(12))), []); // length beyond the buffer
  assertEquals(new Attrs(unhex("0200")).all.length, 0);
  assertEquals(new Attrs(unhex("ff000100aabb")).all.length, 0);
  for (let i = 0; i < 200; i++) {
    const junk = crypto.getRandomValues(new Uint8Array(64));
    for (const m of parseMessages(junk)) {
      parseNotification(m.payload);
      parsePeer(m.payload);
      parseError(m);
    }
  }
});
