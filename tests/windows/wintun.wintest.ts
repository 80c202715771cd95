/**
 * Windows side, under Wine: the WinTUN packet source over the fake wintun.dll (its adapter's packets
 * travel as UDP datagrams on 127.0.0.1, ports from WINTUN_FAKE_PORT / WINTUN_FAKE_PEER_PORT).
 */
import dgram from "node:dgram";
import { assert, assertEquals, assertThrows } from "../assert.ts";
import { RING_CAPACITY, wintunPath, WintunTun } from "../../driver/wintun.ts";
import { WinIo } from "../../driver/userspace/engine_win.ts";
import { kernel32 } from "../../ffi/kernel32.ts";

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
  name:
    "wintun: a worker's WinIo receives the OS's packets after waiting on the read event and sends to the OS",
  async fn() {
    const tun = WintunTun.open("wt-test", RING_CAPACITY);
    const k = kernel32();
    const wake = k.CreateEventA(null, 0, 0, null);
    const os = dgram.createSocket("udp4"); // stands for the OS side of the adapter
    const got: Uint8Array[] = [];
    os.on("message", (m: Uint8Array) => got.push(new Uint8Array(m)));
    await new Promise<void>((r) =>
      os.bind(Number(Deno.env.get("WINTUN_FAKE_PEER_PORT")), "127.0.0.1", () => r())
    );
    const handle = (p: Deno.PointerValue) => BigInt(Deno.UnsafePointer.value(p));
    const init = {
      role: "tx",
      sockFd: -1,
      win: {
        dll: tun.dllPath,
        session: tun.sessionHandle,
        readEvent: tun.readEventHandle,
        sockEvent: 0n,
        wakeEvent: handle(wake),
      },
    } as unknown as ConstructorParameters<typeof WinIo>[0];
    const io = new WinIo(init, tun.readEventHandle);
    try {
      const buf = new Uint8Array(2048);
      assertEquals(io.tunRead(buf), 0); // empty: ERROR_NO_MORE_ITEMS
      let t0 = Date.now();
      io.wait(300); // nothing comes: the timeout
      assert(Date.now() - t0 >= 250, "the wait returned early");
      k.SetEvent(wake);
      t0 = Date.now();
      io.wait(3000, false); // the wake event alone
      assert(Date.now() - t0 < 1000, "the wake event did not end the wait");
      for (let i = 0; i < 5; i++) {
        os.send(new Uint8Array([0x45, i, 2, 3]), Number(Deno.env.get("WINTUN_FAKE_PORT")), "127.0.0.1");
      }
      await new Promise((r) => setTimeout(r, 200));
      t0 = Date.now();
      io.wait(3000);
      assert(Date.now() - t0 < 1000, "the read-wait event did not fire");
      const seen: number[] = [];
      const deadline = Date.now() + 3000;
      while (seen.length < 5 && Date.now() < deadline) {
        const n = io.tunRead(buf);
        if (n > 0) {
          assertEquals(n, 4);
          seen.push(buf[1]);
        } else {
          io.wait(100);
          await new Promise((r) => setTimeout(r, 10));
        }
      }
      // all five, each once; the order is left alone: under Wine 8 datagrams queued on a non-blocking
      // socket come back newest first (seen here), which Windows does not do
      assertEquals(seen.sort(), [0, 1, 2, 3, 4]);
      // a packet larger than the buffer is taken off the ring and reported by its (negative) length
      os.send(new Uint8Array(100).fill(7), Number(Deno.env.get("WINTUN_FAKE_PORT")), "127.0.0.1");
      await new Promise((r) => setTimeout(r, 200));
      assertEquals(io.tunRead(new Uint8Array(50)), -100);
      assertEquals(io.tunRead(buf), 0);
      for (let i = 0; i < 3; i++) assert(io.tunWrite(new Uint8Array([0x60, i, 9]), 3));
      const until = Date.now() + 3000;
      while (got.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      assertEquals(got.map((p) => [...p]).sort(), [[0x60, 0, 9], [0x60, 1, 9], [0x60, 2, 9]]);
    } finally {
      tun.close();
      os.close();
      k.CloseHandle(wake);
    }
  },
});
