import { assertEquals, assertThrows } from "../tests/assert.ts";
import * as u from "./uapi.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
/** Golden bytes written by hand from uapi-layout.md: "off:hex" patches over a zeroed struct. */
function golden(size: number, patches: [number, string][]): string {
  const b = new Uint8Array(size);
  for (const [off, h] of patches) {
    for (let i = 0; i < h.length / 2; i++) b[off + i] = parseInt(h.substr(2 * i, 2), 16);
  }
  return hex(b);
}

Deno.test("uapi: IOCTL codes as in the table", () => {
  const want: [keyof typeof u.IOCTL, number][] = [
    ["NEW_PEER", 0x00220004],
    ["GET_STATS", 0x00220008],
    ["NEW_KEY", 0x0022000c],
    ["SWAP_KEYS", 0x00220010],
    ["SET_PEER", 0x00220014],
    ["START_VPN", 0x00220018],
    ["DEL_PEER", 0x0022001c],
    ["GET_VERSION", 0x00220020],
    ["NEW_KEY_V2", 0x00220024],
    ["SET_MODE", 0x00220028],
    ["MP_START_VPN", 0x0022002c],
    ["MP_NEW_PEER", 0x00220030],
    ["MP_SET_PEER", 0x00220034],
    ["NOTIFY_EVENT", 0x00220038],
    ["MP_DEL_PEER", 0x0022003c],
    ["MP_SWAP_KEYS", 0x00220040],
    ["MP_ADD_IROUTE", 0x00220044],
    ["MP_DEL_IROUTE", 0x00220048],
    ["GET_PEER_STATS", 0x0022004c],
  ];
  for (const [k, v] of want) assertEquals(u.IOCTL[k], v, k);
  assertEquals(u.IOCTL.NEW_PEER, 2228228);
  assertEquals(u.ioctlName(0x220018), "OVPN_IOCTL_START_VPN");
});

Deno.test("uapi: OVPN_NEW_PEER IPv4/UDP and IPv6/TCP", () => {
  const v4 = u.encodeNewPeer({
    local: { address: "192.168.1.2", port: 1194 },
    remote: { address: "10.0.0.1", port: 1195 },
    proto: "udp",
  });
  assertEquals(
    hex(v4),
    golden(60, [[0, "0200"], [2, "04aa"], [4, "c0a80102"], [28, "0200"], [30, "04ab"], [32, "0a000001"], [
      56,
      "00000000",
    ]]),
  );
  const v6 = u.encodeNewPeer({
    local: { address: "fd00::1", port: 443 },
    remote: { address: "2001:db8::a:b", port: 1 },
    proto: "tcp",
  });
  assertEquals(
    hex(v6),
    golden(60, [
      [0, "1700"],
      [2, "01bb"],
      [8, "fd000000000000000000000000000001"],
      [28, "1700"],
      [30, "0001"],
      [36, "20010db80000000000000000000a000b"],
      [56, "01000000"],
    ]),
  );
  assertEquals(u.decodeNewPeer(v6), {
    local: { address: "fd00::1", port: 443 },
    remote: { address: "2001:db8::a:b", port: 1 },
    proto: "tcp",
  });
  assertEquals(u.decodeNewPeer(v4).local, { address: "192.168.1.2", port: 1194 });
});

Deno.test("uapi: OVPN_CRYPTO_DATA and V2 byte layout (offsets 0/32/33, 41/73/74, 84, 88, 92, 96, 100)", () => {
  const enc = Uint8Array.from({ length: 32 }, (_, i) => i + 1),
    dec = Uint8Array.from({ length: 32 }, (_, i) => 0x80 + i);
  const c = {
    encrypt: { key: enc, nonceTail: new Uint8Array(8).fill(0xee) },
    decrypt: { key: dec, nonceTail: new Uint8Array(8).fill(0xdd) },
    keySlot: u.OVPN_KEY_SLOT.SECONDARY,
    cipherAlg: u.OVPN_CIPHER_ALG.CHACHA20_POLY1305,
    keyId: 5,
    peerId: 0x10203,
  };
  const b = u.encodeCryptoData(c);
  assertEquals(
    hex(b),
    golden(100, [
      [0, hex(enc)],
      [32, "20"],
      [33, "ee".repeat(8)],
      [41, hex(dec)],
      [73, "20"],
      [74, "dd".repeat(8)],
      [84, "01000000"],
      [88, "02000000"],
      [92, "05"],
      [96, "03020100"],
    ]),
  );
  assertEquals(u.decodeCryptoData(b), c);
  // NEW_KEY_V2 with epoch keys: CryptoOptions EPOCH (bit 1), Key = the 32-byte epoch secret, KeyLen = the cipher's
  const b2 = u.encodeCryptoData({
    ...c,
    encrypt: { ...c.encrypt, keyLen: 16 },
    decrypt: { ...c.decrypt, keyLen: 16 },
    cryptoOptions: u.CRYPTO_OPTIONS.EPOCH,
  });
  assertEquals(b2.length, 104);
  assertEquals(hex(b2.subarray(100)), "02000000");
  assertEquals(hex(b2.subarray(0, 32)), hex(enc));
  assertEquals([b2[32], b2[41 + 32]], [16, 16]);
  assertEquals(u.decodeCryptoData(b2).cryptoOptions, 2);
  // a 16-byte key: KeyLen 16, rest zero
  const short = u.encodeCryptoData({
    ...c,
    encrypt: { key: enc.slice(0, 16), nonceTail: new Uint8Array(8) },
  });
  assertEquals(short[32], 16);
  assertEquals(hex(short.subarray(16, 32)), "00".repeat(16));
});

Deno.test("uapi: OVPN_STATS, OVPN_SET_PEER, OVPN_VERSION", () => {
  const s: u.OvpnStats = {
    LostInControlPackets: 1,
    LostOutControlPackets: 2,
    LostInDataPackets: 3,
    LostOutDataPackets: 4,
    ReceivedDataPackets: 5,
    ReceivedControlPackets: 6,
    SentControlPackets: 7,
    SentDataPackets: 8,
    TransportBytesSent: 0x100000000 + 9,
    TransportBytesReceived: 10,
    TunBytesSent: 11,
    TunBytesReceived: 12,
  };
  const b = u.encodeStats(s);
  assertEquals(
    hex(b),
    golden(64, [
      [0, "01000000"],
      [4, "02000000"],
      [8, "03000000"],
      [12, "04000000"],
      [16, "05000000"],
      [20, "06000000"],
      [24, "07000000"],
      [28, "08000000"],
      [32, "0900000001000000"],
      [40, "0a"],
      [48, "0b"],
      [56, "0c"],
    ]),
  );
  assertEquals(u.decodeStats(b), s);
  const sp = u.encodeSetPeer({ keepaliveInterval: 10, keepaliveTimeout: 300, mss: -1 });
  assertEquals(hex(sp), "0a0000002c010000ffffffff");
  assertEquals(u.decodeSetPeer(sp), { keepaliveInterval: 10, keepaliveTimeout: 300, mss: -1 });
  const v = u.encodeVersion({ major: 2, minor: 7, patch: 1 });
  assertEquals(hex(v), "020000000700000001000000");
  assertEquals(u.decodeVersion(v), { major: 2, minor: 7, patch: 1 });
  assertEquals(u.versionAtLeast({ major: 2, minor: 4, patch: 0 }, 2, 4), true);
  assertEquals(u.versionAtLeast({ major: 2, minor: 3, patch: 9 }, 2, 4), false);
  assertEquals(u.versionAtLeast({ major: 3, minor: 0, patch: 0 }, 2, 7), true);
  assertThrows(() => u.decodeStats(new Uint8Array(63)), "needs 64 bytes");
});

Deno.test("uapi: multipeer structs", () => {
  assertEquals(hex(u.encodeSetMode(u.OVPN_MODE.MP)), "01000000");
  assertEquals(
    hex(u.encodeMpStartVpn({ listen: { address: "0.0.0.0", port: 1194 }, ipv6Only: false })),
    golden(32, [[0, "0200"], [2, "04aa"]]),
  );
  assertEquals(
    hex(u.encodeMpStartVpn({ listen: { address: "::", port: 1194 }, ipv6Only: true })),
    golden(32, [[0, "1700"], [2, "04aa"], [28, "01000000"]]),
  );
  assertEquals(
    hex(u.encodeMpNewPeer({
      local: { address: "1.2.3.4", port: 1 },
      remote: { address: "5.6.7.8", port: 2 },
      vpnAddr4: "10.8.0.2",
      vpnAddr6: "fd00::2",
      peerId: 3,
    })),
    golden(80, [
      [0, "0200"],
      [2, "0001"],
      [4, "01020304"],
      [28, "0200"],
      [30, "0002"],
      [32, "05060708"],
      [56, "0a080002"],
      [60, "fd000000000000000000000000000002"],
      [76, "03000000"],
    ]),
  );
  assertEquals(
    hex(u.encodeMpSetPeer(4, { keepaliveInterval: 1, keepaliveTimeout: 2, mss: 3 })),
    "04000000010000000200000003000000",
  );
  assertEquals(hex(u.encodePeerId(-1)), "ffffffff");
  assertEquals(
    hex(u.encodeMpIroute({ address: "10.1.0.0", netbits: 16, peerId: 7 })),
    golden(28, [[0, "0a010000"], [16, "10000000"], [20, "07000000"], [24, "00000000"]]),
  );
  assertEquals(
    hex(u.encodeMpIroute({ address: "fd00:1::", netbits: 64, peerId: 7 })),
    golden(28, [[0, "fd000001000000000000000000000000"], [16, "40000000"], [20, "07000000"], [
      24,
      "01000000",
    ]]),
  );
  const ev = {
    cmd: u.OVPN_NOTIFY_CMD.FLOAT_PEER,
    peerId: 9,
    delPeerReason: u.OVPN_DEL_PEER_REASON.EXPIRED,
    floatAddress: { address: "9.9.9.9", port: 5 },
  };
  const evb = u.encodeNotifyEvent(ev);
  assertEquals(
    hex(evb),
    golden(144, [[0, "02000000"], [4, "09000000"], [8, "02000000"], [16, "0200"], [18, "0005"], [
      20,
      "09090909",
    ]]),
  );
  assertEquals(u.decodeNotifyEvent(evb), ev);
  const ps = { peerId: 1, linkRxBytes: 2, linkTxBytes: 3, vpnRxBytes: 4, vpnTxBytes: 2 ** 40 };
  const psb = u.encodePeerStats(ps);
  assertEquals(
    hex(psb),
    golden(40, [[0, "01000000"], [8, "02"], [16, "03"], [24, "04"], [32, "0000000000010000"]]),
  );
  assertEquals(u.decodePeerStats(new Uint8Array([...psb, ...psb])), [ps, ps]);
});

Deno.test("uapi: address parsing", () => {
  assertEquals(u.parseIPv4("256.1.1.1"), null);
  assertEquals(u.parseIPv4("1.2.3"), null);
  assertEquals(hex(u.parseIPv6("::ffff:1.2.3.4")!), "00000000000000000000ffff01020304");
  assertEquals(hex(u.parseIPv6("::")!), "0".repeat(32));
  assertEquals(u.parseIPv6("1::2::3"), null);
  assertEquals(u.parseIPv6("1:2:3:4:5:6:7:8:9"), null);
  assertEquals(u.parseIPv6("fe80::1%eth0"), null);
  assertThrows(
    () =>
      u.encodeNewPeer({
        local: { address: "nope", port: 1 },
        remote: { address: "1.1.1.1", port: 1 },
        proto: "udp",
      }),
    "not an IPv4 or IPv6",
  );
});

Deno.test("uapi: driver features by version", () => {
  assertEquals(u.driverFeatures(null), []);
  assertEquals(u.driverFeatures({ major: 2, minor: 3, patch: 9 }), ["p2p"]);
  assertEquals(u.driverFeatures({ major: 2, minor: 4, patch: 0 }), ["p2p", "multipeer", "new-key-v2"]);
  assertEquals(u.driverFeatures({ major: 2, minor: 7, patch: 1 }), [
    "p2p",
    "multipeer",
    "new-key-v2",
    "peer-stats",
  ]);
});

Deno.test("uapi: endpoints print as users type them", () => {
  assertEquals(u.formatEndpoint({ address: "192.0.2.1", port: 1194 }), "192.0.2.1:1194");
  assertEquals(u.formatEndpoint({ address: "fd00::1", port: 1 }), "[fd00::1]:1");
});

Deno.test("sameIP and plainIP: an IPv4-mapped IPv6 address is its IPv4; other spellings of one address match", () => {
  assertEquals(u.sameIP("::ffff:10.0.0.1", "10.0.0.1"), true);
  assertEquals(u.sameIP("::FFFF:a00:1", "10.0.0.1"), true);
  assertEquals(u.sameIP("fd00::1", "fd00:0::0:1"), true);
  assertEquals(u.sameIP("10.0.0.1", "10.0.0.2"), false);
  assertEquals(u.sameIP("::1", "0.0.0.1"), false);
  assertEquals(u.sameIP("nonsense", "nonsense"), false);
  assertEquals(u.plainIP("::ffff:192.0.2.7"), "192.0.2.7");
  assertEquals(u.plainIP("fd00::1"), "fd00::1");
});
