/**
 * Windows side, under Wine: the WinTUN packet source over the fake wintun.dll (its adapter's packets
 * travel as UDP datagrams on 127.0.0.1, ports from WINTUN_FAKE_PORT / WINTUN_FAKE_PEER_PORT).
 */
import dgram from "node:dgram";
import { assert, assertEquals, assertThrows } from "../assert.ts";
import { RING_CAPACITY, wintunPath, WintunTun } from "../../driver/wintun.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  ...opts,
  name: "wintun: loads wintun.dll from the executable's directory; the ring capacity is checked",
  fn() {
    assert(/[\\/]wintun\.dll$/.test(wintunPath()));
    assertThrows(() => WintunTun.open("wt-bad", 1000), "must be a power of two");
    assertThrows(() => WintunTun.open("wt-bad", 0x8000000), "must be a power of two");
  },
});

Deno.test({
  ...opts,
  name: "wintun: packets from the OS are received after waiting on the read event; sent packets reach the OS",
  async fn() {
    const tun = WintunTun.open("wt-test", RING_CAPACITY);
    const os = dgram.createSocket("udp4"); // stands for the OS side of the adapter
    const got: Uint8Array[] = [];
    os.on("message", (m: Uint8Array) => got.push(new Uint8Array(m)));
    await new Promise<void>((r) =>
      os.bind(Number(Deno.env.get("WINTUN_FAKE_PEER_PORT")), "127.0.0.1", () => r())
    );
    try {
      assertEquals(tun.drain(() => {}, 10), 0); // empty: ERROR_NO_MORE_ITEMS
      const t0 = Date.now();
      const waited = tun.wait(3000);
      for (let i = 0; i < 5; i++) {
        os.send(new Uint8Array([0x45, i, 2, 3]), Number(Deno.env.get("WINTUN_FAKE_PORT")), "127.0.0.1");
      }
      await waited;
      assert(Date.now() - t0 < 2500, "the read-wait event did not fire");
      const seen: number[] = [];
      const deadline = Date.now() + 3000;
      while (seen.length < 5 && Date.now() < deadline) {
        tun.drain((p) => seen.push(p[1]), 10);
        if (seen.length < 5) await tun.wait(100);
      }
      // all five, each once; the order is left alone: under Wine 8 datagrams queued on a non-blocking
      // socket come back newest first (seen here), which Windows does not do
      assertEquals(seen.sort(), [0, 1, 2, 3, 4]);
      for (let i = 0; i < 3; i++) assert(tun.write(new Uint8Array([0x60, i, 9])));
      const until = Date.now() + 3000;
      while (got.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      assertEquals(got.map((p) => p[1]).sort(), [0, 1, 2]);
    } finally {
      tun.close();
      os.close();
    }
    assertEquals(tun.write(new Uint8Array([1])), false); // after the session ended
  },
});
