import { assertEquals, assertThrows } from "../tests/assert.ts";
import { keyFromOpenvpnLog } from "./openvpn_log.ts";
import { parseKeyFile, toKeyMaterial } from "./keyfile.ts";

const LOG =
  `2026-11-26 03:37:43 us=89299 Outgoing Data Channel: Cipher 'AES-256-GCM' initialized with 256 bit key
2026-11-26 03:37:43 us=89310 Outgoing Data Channel: CIPHER KEY: 2493b85c 72963670 4f4b237e 6eecd469 872d0083 00e84cad 7338ecb5 fe33a3de
2026-11-26 03:37:43 us=89330 Incoming Data Channel: Cipher 'AES-256-GCM' initialized with 256 bit key
2026-11-26 03:37:43 us=89341 Incoming Data Channel: CIPHER KEY: 5aa778df cf4182c2 57609c91 79d09f6f d5962955 f4e2a04a 5580e0cc 3571980f
2026-11-26 03:37:43 us=89374 Data Channel: cipher 'AES-256-GCM', peer-id: 3
2026-11-26 03:37:47 us=64545 DECRYPT IV: 00000002 881a6971 1d52ee93
2026-11-26 03:37:47 us=636076 ENCRYPT IV: 00000003 d3ad4e3e 6d7dbc9b
2026-11-26 03:37:48 us=65130 ENCRYPT IV: 00000004 d3ad4e3e 6d7dbc9b
`;

Deno.test("openvpn log: keys, nonce tails, peer id and a first packet id above the log's", () => {
  const k = keyFromOpenvpnLog(LOG, 1000);
  assertEquals(k, {
    cipher: "AES-256-GCM",
    peerId: 3,
    keyId: 0,
    firstPacketId: 1004,
    encrypt: {
      key: "2493b85c729636704f4b237e6eecd469872d008300e84cad7338ecb5fe33a3de",
      nonceTail: "d3ad4e3e6d7dbc9b",
    },
    decrypt: {
      key: "5aa778dfcf4182c257609c9179d09f6fd5962955f4e2a04a5580e0cc3571980f",
      nonceTail: "881a69711d52ee93",
    },
  });
  const m = toKeyMaterial(parseKeyFile(JSON.stringify(k)));
  assertEquals(m.firstPacketId, 1004);
  assertEquals(m.cipher.name, "AES-256-GCM");
});

Deno.test("openvpn log: missing lines are named", () => {
  assertThrows(
    () => keyFromOpenvpnLog(LOG.split("\n").filter((l) => !l.includes("DECRYPT")).join("\n")),
    "no 'DECRYPT IV'",
  );
  assertThrows(() => keyFromOpenvpnLog("nothing"), "--verb 9");
});

// lines as OpenVPN 2.7.6 (../shared/tools, with its E1 log patch) writes them at verb 9
const EPOCH_LOG =
  `2026-11-26 08:36:09 us=600626 Outgoing Epoch Data key 1: Cipher 'AES-128-GCM' initialized with 128 bit key
2026-11-26 08:36:09 us=601229 Epoch E1 send: 8a98cc03 75984300 39f9bb00 aa9c3846 f67d1f62 db4e880d 35a5da82 416fe3d3
2026-11-26 08:36:09 us=601236 Epoch E1 recv: 6c1882ca d2e89023 edf55b0c 6a5c8083 46695bc4 4cc0775c 79659055 f0eb863f
2026-11-26 08:36:09 us=601254 Data Channel: cipher 'AES-128-GCM', peer-id: 2
2026-11-26 08:36:09 us=601457 ENCRYPT AD: 4a000002 00010000 00000001
2026-11-26 08:36:10 us=601457 ENCRYPT AD: 4a000002 00010000 0000002a
`;

Deno.test("openvpn log: an OpenVPN 2.7 epoch session gives an epoch key (E1 secrets, first counter)", () => {
  const k = keyFromOpenvpnLog(EPOCH_LOG, 1000);
  assertEquals(k, {
    cipher: "AES-128-GCM",
    peerId: 2,
    keyId: 0,
    firstPacketId: 42 + 1000,
    encrypt: { epochSecret: "8a98cc037598430039f9bb00aa9c3846f67d1f62db4e880d35a5da82416fe3d3" },
    decrypt: { epochSecret: "6c1882cad2e89023edf55b0c6a5c808346695bc44cc0775c79659055f0eb863f" },
  });
  const m = toKeyMaterial(parseKeyFile(JSON.stringify(k)));
  assertEquals([m.epoch, m.cipher.name, m.encryptKey.length, m.firstPacketId], [
    true,
    "AES-128-GCM",
    32,
    1042,
  ]);
  assertThrows(
    () => keyFromOpenvpnLog(EPOCH_LOG.replace("00010000 0000002a", "00030000 0000002a")),
    "already sends with epoch 3",
  );
  assertThrows(() => keyFromOpenvpnLog(EPOCH_LOG.replace(/.*ENCRYPT AD.*\n/g, "")), "'ENCRYPT AD'");
});

Deno.test("openvpn log: one client's key out of a server's log, by its address", () => {
  const server = LOG.split("\n").filter((l) => l).map((l) => l.replace(/us=\d+ /, "$&client/10.1.1.2:41194 "))
    .join("\n") + "\n" + LOG.replace(/peer-id: 3/, "peer-id: 4").split("\n").filter((l) => l)
    .map((l) => l.replace(/us=\d+ /, "$&client/10.1.1.3:41194 ")).map((l) =>
      l.replace("2493b85c", "ffffffff")
    ).join("\n");
  assertEquals(keyFromOpenvpnLog(server, 1000, "10.1.1.2:41194").peerId, 3);
  const k3 = keyFromOpenvpnLog(server, 1000, "10.1.1.3:41194");
  assertEquals([k3.peerId, (k3.encrypt as { key: string }).key.slice(0, 8)], [4, "ffffffff"]);
  assertThrows(() => keyFromOpenvpnLog(server, 1000, "10.1.1.9:41194"), "no lines of client 10.1.1.9:41194");
});

Deno.test("openvpn log: the peer id a server pushed wins over its later 'peer-id: N' status lines", () => {
  const log = LOG.replace(
    "Data Channel: cipher 'AES-256-GCM', peer-id: 3",
    "SENT CONTROL [client]: 'PUSH_REPLY,ifconfig 10.8.0.3 255.255.255.0,peer-id 1,cipher AES-256-GCM'",
  ) + "2026-11-26 03:37:49 us=1 Data Channel: cipher 'AES-256-GCM', peer-id: 0\n";
  assertEquals(keyFromOpenvpnLog(log).peerId, 1);
});
