/**
 * Windows side, under Wine: server (multipeer) mode on the fake ovpn-dco driver, which pends like the real
 * one (NOTIFY_EVENT stays pending until an event). Run by tests/windows_test.ts.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../assert.ts";
import { DcoServerDevice } from "../../driver/dco_server.ts";
import { cipherByName } from "../../crypto/aead.ts";
import type { ServerEvent } from "../../driver/userspace/server_api.ts";
import { encodeNotifyEvent, OVPN_DEL_PEER_REASON, OVPN_NOTIFY_CMD } from "../../driver/uapi.ts";
import { fnv, injectNotify, journal, resetDriver, setDriverVersion } from "./fake_driver.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const key = (keyId: number) => {
  const c = cipherByName("AES-256-GCM")!;
  return {
    cipher: c,
    keyId,
    encryptKey: new Uint8Array(32).fill(0x11),
    decryptKey: new Uint8Array(32).fill(0x22),
    encryptNonceTail: new Uint8Array(8).fill(0x33),
    decryptNonceTail: new Uint8Array(8).fill(0x44),
  };
};
const waitFor = async (f: () => boolean, what: string) => {
  for (let i = 0; i < 100 && !f(); i++) await new Promise((r) => setTimeout(r, 20));
  assert(f(), `timed out waiting for ${what}`);
};

Deno.test({
  ...opts,
  name:
    "dco server: SET_MODE → MP_START_VPN → MP_NEW_PEER → NEW_KEY → MP_SET_PEER → MP_ADD_IROUTE, MP_SWAP_KEYS, MP_DEL_PEER with exact bytes",
  async fn() {
    resetDriver();
    const srv = await DcoServerDevice.open({ ifname: "test", log: () => {} });
    try {
      const bound = await srv.start({ address: "0.0.0.0", port: 0 });
      assertEquals(bound, { address: "0.0.0.0", port: 1194 }); // the bound address comes back
      await srv.newPeer({
        peerId: 7,
        remote: { address: "192.0.2.7", port: 40007 },
        vpnIps: ["10.8.0.7", "fd00::7"],
      });
      await srv.newKey(0, key(0), 7);
      await srv.setPeer(7, { keepaliveInterval: 10, keepaliveTimeout: 60, mss: 1400 });
      assertEquals(await srv.route(7, "192.168.7.9/24", true), "192.168.7.0/24");
      await srv.route(7, "fd07::/48", true);
      await srv.newKey(1, key(1), 7);
      await srv.swapKeys(7);
      await assertRejects(
        () => srv.newPeer({ peerId: 7, remote: { address: "192.0.2.8", port: 1 }, vpnIps: ["10.8.0.8"] }),
        "peer id 7 is already in use",
      );
      await assertRejects(() => srv.newKey(0, key(0), 9), "no peer 9");
      await srv.route(7, "192.168.7.0/24", false);
      await srv.delPeer(7);
    } finally {
      await srv.close();
    }
    const f = (b: number, n: number) => fnv(new Uint8Array(n).fill(b));
    const keyLine = (slot: number, id: number) =>
      `NEW_KEY slot=${slot} alg=1 keyid=${id} peerid=7 enclen=32 declen=32 enc=${f(0x11, 32)} dec=${
        f(0x22, 32)
      } enctail=${f(0x33, 8)} dectail=${f(0x44, 8)}`;
    const j = journal().filter((l) =>
      !l.startsWith("GET_VERSION") && !l.startsWith("NOTIFY_EVENT") && !l.startsWith("READ")
    );
    assertEquals(j, [
      "OPEN adapter",
      "SET_MODE 1",
      "MP_START_VPN 0.0.0.0:0 ipv6only=0",
      "MP_NEW_PEER id=7 local=0.0.0.0:1194 remote=192.0.2.7:40007 vpn4=10.8.0.7 vpn6=fd000000000000000000000000000007",
      keyLine(0, 0),
      "MP_SET_PEER id=7 interval=10 timeout=60 mss=1400",
      "MP_ADD_IROUTE id=7 addr=c0a80700/24 ipv6=0",
      "MP_ADD_IROUTE id=7 addr=fd070000000000000000000000000000/48 ipv6=1",
      keyLine(1, 1),
      "MP_SWAP_KEYS id=7",
      "REJECT MP_NEW_PEER duplicate peer id",
      "MP_DEL_IROUTE id=7 addr=c0a80700/24 ipv6=0",
      "MP_DEL_PEER id=7",
      "CLOSE adapter",
    ]);
  },
});

Deno.test({
  ...opts,
  name:
    "dco server: one NOTIFY_EVENT always pending and re-armed; DEL_PEER reasons and FLOAT addresses decoded",
  async fn() {
    resetDriver();
    const srv = await DcoServerDevice.open({ ifname: "test", log: () => {} });
    const events: ServerEvent[] = [];
    srv.onEvent((e) => events.push(e));
    try {
      await srv.start({ address: "0.0.0.0", port: 1194 });
      for (const id of [1, 2]) {
        await srv.newPeer({
          peerId: id,
          remote: { address: `192.0.2.${id}`, port: 1194 },
          vpnIps: [`10.8.0.${id + 1}`],
        });
      }
      await waitFor(() => journal().includes("NOTIFY_EVENT pending"), "the pending NOTIFY_EVENT");
      injectNotify(
        encodeNotifyEvent({
          cmd: OVPN_NOTIFY_CMD.FLOAT_PEER,
          peerId: 1,
          delPeerReason: 0,
          floatAddress: { address: "198.51.100.9", port: 5555 },
        }),
      );
      injectNotify(
        encodeNotifyEvent({
          cmd: OVPN_NOTIFY_CMD.DEL_PEER,
          peerId: 2,
          delPeerReason: OVPN_DEL_PEER_REASON.EXPIRED,
          floatAddress: null,
        }),
      );
      await waitFor(() => events.length === 2, "two notifications");
      assertEquals(events, [
        { cmd: "FLOAT_PEER", peerId: 1, address: { address: "198.51.100.9", port: 5555 } },
        { cmd: "DEL_PEER", peerId: 2, reason: "expired" },
      ]);
      assertEquals(srv.peerIds(), [1]); // the expired peer is gone
      assertEquals((srv.peerInfo(1).remote as { port: number }).port, 5555);
      await waitFor(
        () => journal().filter((l) => l === "NOTIFY_EVENT pending").length >= 2,
        "the re-armed NOTIFY_EVENT",
      );
    } finally {
      await srv.close();
    }
    assert(journal().includes("NOTIFY_EVENT cancelled"), "close cancels the pending NOTIFY_EVENT");
  },
});

Deno.test({
  ...opts,
  name: "dco server: GET_PEER_STATS of every peer retries with the size ERROR_MORE_DATA gave; version gates",
  async fn() {
    resetDriver();
    const srv = await DcoServerDevice.open({ ifname: "test", log: () => {} });
    try {
      await srv.start({ address: "0.0.0.0", port: 1194 });
      assertEquals(await srv.allPeerStats(), []); // no peers: nothing to fetch
      for (const id of [3, 4]) {
        await srv.newPeer({
          peerId: id,
          remote: { address: `192.0.2.${id}`, port: 1194 },
          vpnIps: [`10.8.0.${id}`],
        });
      }
      const all = await srv.allPeerStats();
      assertEquals(all.map((s) => [s.peerId, s.linkRxBytes, s.vpnTxBytes]), [[3, 1003, 4003], [
        4,
        1004,
        4004,
      ]]);
      const one = await srv.peerStats(4);
      assertEquals([
        one.TransportBytesReceived,
        one.TransportBytesSent,
        one.TunBytesReceived,
        one.TunBytesSent,
      ], [1004, 2004, 3004, 4004]);
      const j = journal().filter((l) => l.startsWith("GET_PEER_STATS"));
      assertEquals(j.slice(0, 3), [
        "GET_PEER_STATS id=-1 need=0 given=4",
        "GET_PEER_STATS id=-1 need=80 given=4",
        "GET_PEER_STATS id=-1 need=80 given=80",
      ]);
    } finally {
      await srv.close();
    }
    // 2.5: multipeer, but no per-peer statistics
    resetDriver();
    setDriverVersion(2, 5, 0);
    const mid = await DcoServerDevice.open({ ifname: "test", log: () => {} });
    try {
      await mid.start({ address: "0.0.0.0", port: 1194 });
      await assertRejects(() => mid.allPeerStats(), "GET_PEER_STATS needs driver 2.7.0 or newer");
    } finally {
      await mid.close();
    }
    // 2.3: no multipeer at all, said before anything reaches the driver
    resetDriver();
    setDriverVersion(2, 3, 0);
    await assertRejects(
      () => DcoServerDevice.open({ ifname: "test" }),
      "the ovpn-dco driver 2.3.0 has no multipeer (server) mode: it needs driver 2.4.0 or newer",
    );
    const j = journal();
    resetDriver();
    assert(!j.some((l) => l.startsWith("SET_MODE") || l.startsWith("OPEN")), j.join("\n"));
    assertMatch(j.join("\n"), "GET_VERSION");
  },
});
