/**
 * Windows side, under Wine: the dco backend against the fake ovpn-dco driver. Run by tests/windows_test.ts.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../assert.ts";
import { DcoDevice, readDriverVersion } from "../../driver/dco.ts";
import { kernel32 } from "../../ffi/kernel32.ts";
import { DeviceError } from "../../driver/device.ts";
import { cipherByName } from "../../crypto/aead.ts";
import { KeySlotId } from "../../driver/datachannel/keyslot.ts";
import {
  fnv,
  injectControl,
  injectExpire,
  injectTcpAbort,
  journal,
  refuseTcp,
  resetDriver,
  setDelay,
  setDriverVersion,
} from "./fake_driver.ts";
import { parseKeyFile } from "../../keys/keyfile.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const peer = (proto: "udp" | "tcp") => ({
  local: { address: "127.0.0.1", port: 1194 },
  remote: { address: "127.0.0.2", port: 1195 },
  proto,
  connectTimeoutMs: 5000,
});
const key = (cipher: string, keyId = 0) => {
  const c = cipherByName(cipher)!;
  return {
    cipher: c,
    keyId,
    encryptKey: new Uint8Array(c.keyLen).fill(0x11),
    decryptKey: new Uint8Array(c.keyLen).fill(0x22),
    encryptNonceTail: new Uint8Array(c.keyLen ? 8 : 0).fill(0x33),
    decryptNonceTail: new Uint8Array(c.keyLen ? 8 : 0).fill(0x44),
  };
};

Deno.test({
  ...opts,
  name:
    "dco: version from \\\\.\\ovpn-dco-ver, then NEW_PEER → NEW_KEY → SET_PEER → START_VPN with exact struct values",
  async fn() {
    resetDriver();
    assertEquals(await readDriverVersion(), { major: 2, minor: 7, patch: 1 });
    const d = await DcoDevice.open({ ifname: "test" });
    try {
      await d.newPeer(peer("udp"));
      await d.newKey(KeySlotId.PRIMARY, key("AES-256-GCM"), 5);
      await d.newKey(KeySlotId.SECONDARY, key("CHACHA20-POLY1305", 1), 5);
      await d.setPeer({ keepaliveInterval: 10, keepaliveTimeout: 300, mss: 1360 });
      await d.startVpn();
      await d.swapKeys();
      await d.setPeer({ keepaliveInterval: -1, keepaliveTimeout: 60, mss: -1 });
      const s = await d.getStats();
      assertEquals(s.SentControlPackets, 0);
      assertEquals(d.peerInfo().primaryKeyId, 1);
      await d.delPeer();
    } finally {
      await d.close();
    }
    const f = (b: number, n: number) => fnv(new Uint8Array(n).fill(b));
    assertEquals(
      journal().filter((l) => !l.startsWith("GET_VERSION ver")),
      [
        "OPEN adapter",
        "NEW_PEER udp AF_INET 127.0.0.1:1194 -> 127.0.0.2:1195",
        `NEW_KEY slot=0 alg=1 keyid=0 peerid=5 enclen=32 declen=32 enc=${f(0x11, 32)} dec=${
          f(0x22, 32)
        } enctail=${f(0x33, 8)} dectail=${f(0x44, 8)}`,
        `NEW_KEY slot=1 alg=2 keyid=1 peerid=5 enclen=32 declen=32 enc=${f(0x11, 32)} dec=${
          f(0x22, 32)
        } enctail=${f(0x33, 8)} dectail=${f(0x44, 8)}`,
        "SET_PEER interval=10 timeout=300 mss=1360",
        "START_VPN",
        "SWAP_KEYS",
        "SET_PEER interval=-1 timeout=60 mss=-1",
        "DEL_PEER",
        "READ ended by DEL_PEER", // as the driver: DEL_PEER completes the pending read with STATUS_CANCELLED
        "CLOSE adapter",
      ],
    );
  },
});

Deno.test({
  ...opts,
  name: "dco: IPv6 and AES-128/NONE keys are encoded as the driver expects",
  async fn() {
    resetDriver();
    const d = await DcoDevice.open({ ifname: "test" });
    try {
      await d.newPeer({
        ...peer("udp"),
        local: { address: "fd00::1", port: 1 },
        remote: { address: "fd00::2", port: 2 },
      });
      await d.newKey(KeySlotId.PRIMARY, key("AES-128-GCM"), 0);
      await d.newKey(KeySlotId.SECONDARY, key("none", 2), 0);
    } finally {
      await d.close();
    }
    const j = journal();
    assert(
      j.includes(
        "NEW_PEER udp AF_INET6 [fd000000000000000000000000000001]:1 -> [fd000000000000000000000000000002]:2",
      ),
      j.join("\n"),
    );
    assert(
      j.some((l) => l.startsWith("NEW_KEY slot=0 alg=1 keyid=0 peerid=0 enclen=16 declen=16")),
      j.join("\n"),
    );
    assert(
      j.some((l) => l.startsWith("NEW_KEY slot=1 alg=0 keyid=2 peerid=0 enclen=0 declen=0")),
      j.join("\n"),
    );
  },
});

Deno.test({
  ...opts,
  name: "dco: epoch keys go as NEW_KEY_V2 (CryptoOptions EPOCH, the 32-byte E1 in Key, KeyLen of the cipher)",
  async fn() {
    resetDriver();
    const e1 = (b: number) => new Uint8Array(32).fill(b);
    const epochKey = (cipher: string, keyId: number) => ({
      ...key(cipher, keyId),
      encryptKey: e1(0x55),
      decryptKey: e1(0x66),
      epoch: true,
    });
    const d = await DcoDevice.open({ ifname: "test" });
    try {
      await d.newPeer(peer("udp"));
      await d.newKey(KeySlotId.PRIMARY, epochKey("AES-128-GCM", 0), 9);
      await d.newKey(KeySlotId.SECONDARY, epochKey("CHACHA20-POLY1305", 1), 9);
      await d.newKey(KeySlotId.SECONDARY, key("AES-256-GCM", 2), 9); // DATA_V2 keys still use NEW_KEY
      await assertRejects(() => d.nextEpoch(), "moves to the next epoch by itself");
    } finally {
      await d.close();
    }
    const f = (b: number, n: number) => fnv(new Uint8Array(n).fill(b));
    const j = journal().filter((l) => l.startsWith("NEW_KEY"));
    assertEquals(j, [
      `NEW_KEY_V2 opts=2 slot=0 alg=1 keyid=0 peerid=9 enclen=16 declen=16 enc=${f(0x55, 32)} dec=${
        f(0x66, 32)
      } enctail=${f(0x33, 8)} dectail=${f(0x44, 8)}`,
      `NEW_KEY_V2 opts=2 slot=1 alg=2 keyid=1 peerid=9 enclen=32 declen=32 enc=${f(0x55, 32)} dec=${
        f(0x66, 32)
      } enctail=${f(0x33, 8)} dectail=${f(0x44, 8)}`,
      `NEW_KEY slot=1 alg=1 keyid=2 peerid=9 enclen=32 declen=32 enc=${f(0x11, 32)} dec=${
        f(0x22, 32)
      } enctail=${f(0x33, 8)} dectail=${f(0x44, 8)}`,
    ]);

    // a driver older than 2.4 has no NEW_KEY_V2: one clear error, and nothing reaches the driver
    resetDriver();
    setDriverVersion(2, 3, 0);
    const old = await DcoDevice.open({ ifname: "test" });
    try {
      await old.newPeer(peer("udp"));
      const e = await assertRejects(
        () => old.newKey(KeySlotId.PRIMARY, epochKey("AES-256-GCM", 0), 0),
        "the ovpn-dco driver 2.3.0 has no epoch data keys (NEW_KEY_V2 needs driver 2.4.0 or newer)",
      );
      assert(e instanceof DeviceError);
    } finally {
      await old.close();
    }
    const j2 = journal();
    resetDriver(); // back to 2.7.1 for the other tests
    assert(j2.includes("NEW_PEER udp AF_INET 127.0.0.1:1194 -> 127.0.0.2:1195"), j2.join("\n"));
    assertEquals(j2.filter((l) => l.includes("NEW_KEY")), []);
  },
});

Deno.test({
  ...opts,
  name: "dco: TCP NEW_PEER pends until connected; refused connects and wrong order give plain errors",
  async fn() {
    resetDriver();
    setDelay(200);
    const d = await DcoDevice.open({ ifname: "test" });
    try {
      const t0 = Date.now();
      await d.newPeer(peer("tcp"));
      assert(Date.now() - t0 >= 150, "TCP NEW_PEER completed at once; the fake pends it for 200 ms");
      assert(journal().includes("NEW_PEER tcp connected"));
      await assertRejects(() => d.startVpn(), "ERROR_BAD_COMMAND (22)");
      assertEquals(journal().at(-1), "REJECT START_VPN before NEW_PEER/NEW_KEY");
      await assertRejects(() => d.delKey(KeySlotId.SECONDARY), "has no call that deletes a key");
    } finally {
      await d.close();
    }
    resetDriver();
    refuseTcp(true);
    const d2 = await DcoDevice.open({ ifname: "test" });
    try {
      await assertRejects(() => d2.newPeer(peer("tcp")), "refused");
    } finally {
      refuseTcp(false);
      await d2.close();
    }
  },
});

Deno.test({
  ...opts,
  name: "dco: a missing driver (or adapter) says so and what to do",
  async fn() {
    const e = await assertRejects(
      () => DcoDevice.open({ ifname: "test", adapter: "\\\\.\\ovpn-dco-none" }),
      "driver is not installed",
    );
    assert(e instanceof DeviceError && e.kind === "missing");
    assertMatch(e.message, "--backend wintun");
    // --adapter by name goes through the device-interface enumeration (Wine has no ovpn-dco adapters)
    const byName = await assertRejects(
      () => DcoDevice.open({ ifname: "test", adapter: "My Tunnel" }),
      "no ovpn-dco adapter is named 'My Tunnel'",
    );
    assert(byName instanceof DeviceError && byName.kind === "missing");
  },
});

Deno.test({
  ...opts,
  name: "dco: the adapter is exclusive; a second user is told it is in use",
  async fn() {
    resetDriver();
    const d = await DcoDevice.open({ ifname: "test" });
    try {
      // Windows fails the second CreateFile itself; Wine 8 completes the open and the first call fails
      const e = await assertRejects(async () => {
        const d2 = await DcoDevice.open({ ifname: "test" });
        try {
          await d2.newPeer(peer("udp"));
        } finally {
          await d2.close();
        }
      }, "in use by another process");
      assert(e instanceof DeviceError && e.kind === "busy");
      await d.newPeer(peer("udp")); // the owner is unaffected
    } finally {
      await d.close();
    }
  },
});

Deno.test({
  ...opts,
  name:
    "dco: control packets through WriteFile/ReadFile with one read always pending; expiry and TCP abort end the tunnel",
  async fn() {
    resetDriver();
    const d = await DcoDevice.open({ ifname: "test" });
    try {
      await d.newPeer(peer("udp"));
      await d.writeControl(new TextEncoder().encode("hello, world!")); // the fake loops it back
      assertEquals(new TextDecoder().decode(await d.readControl()), "hello, world!");
      injectControl(new Uint8Array([0x40, 1, 2, 3]));
      assertEquals(await d.readControl(), new Uint8Array([0x40, 1, 2, 3]));
      const s = await d.getStats();
      assertEquals([s.SentControlPackets, s.ReceivedControlPackets], [1, 2]);
      await assertRejects(() => d.writeControl(new Uint8Array(1501)), "1 to 1500 bytes");
      await new Promise((r) => setTimeout(r, 100)); // the read loop re-arms its ReadFile
      injectExpire();
      const r = await d.ended;
      assertEquals(r.kind, "expired");
      assertMatch(r.message, "keepalive timeout expired");
    } finally {
      await d.close();
    }
    resetDriver();
    const d2 = await DcoDevice.open({ ifname: "test" });
    try {
      await d2.newPeer(peer("tcp"));
      await new Promise((r) => setTimeout(r, 100));
      injectTcpAbort();
      const r = await d2.ended;
      assertEquals(r.kind, "aborted");
      assertMatch(r.message, "closed by the server");
    } finally {
      await d2.close();
    }
  },
});

Deno.test({
  ...opts,
  name:
    "dco (pending fake): after peer del, a new peer's control packets, keepalive expiry and TCP abort are still read",
  async fn() {
    resetDriver();
    const d = await DcoDevice.open({ ifname: "test" });
    try {
      await d.newPeer(peer("udp"));
      await d.delPeer(); // the driver ends the pending read with STATUS_CANCELLED
      await d.newPeer(peer("udp"));
      injectControl(new Uint8Array([0x38, 9, 9]));
      const got = await Promise.race([
        d.readControl(),
        new Promise<null>((r) => setTimeout(() => r(null), 3000)),
      ]);
      assertEquals(got, new Uint8Array([0x38, 9, 9]), "the new peer's control packet was never read");
      await d.delPeer();
      await d.newPeer(peer("tcp"));
      await new Promise((r) => setTimeout(r, 100));
      injectExpire();
      const r = await Promise.race([d.ended, new Promise<null>((r) => setTimeout(() => r(null), 3000))]);
      assertEquals(r?.kind, "expired", "the keepalive expiry after a re-add was lost");
    } finally {
      await d.close();
    }
    const j = journal();
    assertEquals(j.filter((l) => l === "READ ended by DEL_PEER").length, 2, j.join("\n"));
  },
});

Deno.test({
  ...opts,
  name:
    "dco (pending fake): writes pend until sent; a write that outlives its timeout is cancelled and waited for",
  async fn() {
    resetDriver();
    const d = await DcoDevice.open({ ifname: "test", ioTimeoutMs: 400 });
    try {
      await d.newPeer(peer("udp"));
      setDelay(60);
      const t0 = Date.now();
      await d.writeControl(new Uint8Array([0x20, 1]));
      assert(Date.now() - t0 >= 40, "the write completed before the fake's send did");
      assertEquals(await d.readControl(), new Uint8Array([0x20, 1])); // looped back once sent
      setDelay(3000); // the send outlives the 400 ms timeout
      const e = await assertRejects(() => d.writeControl(new Uint8Array([0x20, 2])), "was cancelled");
      assert(e instanceof DeviceError && e.kind === "timeout");
      // the request was cancelled and completed before the call returned (its OVERLAPPED is free now)
      const j = journal();
      assertEquals(j.at(-1), "WRITE cancelled", j.join("\n"));
      setDelay(0);
      await d.writeControl(new Uint8Array([0x20, 3]));
      assertEquals(await d.readControl(), new Uint8Array([0x20, 3]));
    } finally {
      await d.close();
    }
  },
});

Deno.test({
  ...opts,
  name:
    "dco (pending fake): a TCP NEW_PEER that times out is cancelled, waited for, and its half-made peer deleted",
  async fn() {
    resetDriver();
    setDelay(3000);
    const d = await DcoDevice.open({ ifname: "test" });
    try {
      const e = await assertRejects(
        () => d.newPeer({ ...peer("tcp"), connectTimeoutMs: 300 }),
        "NEW_PEER did not complete within 0.3 s",
      );
      assert(e instanceof DeviceError && e.kind === "timeout");
      const j = journal();
      assertEquals(j.slice(-2), ["NEW_PEER cancelled", "DEL_PEER"], j.join("\n"));
      setDelay(0);
      await d.newPeer(peer("tcp")); // a second NEW_PEER is accepted: nothing was left behind
    } finally {
      await d.close();
    }
  },
});

Deno.test({
  ...opts,
  name:
    "dco (pending fake): pending is known from the NTSTATUS, never from GetLastError (here always 0, as if overwritten)",
  async fn() {
    resetDriver();
    const k = kernel32() as { GetLastError: () => number };
    const real = k.GetLastError;
    k.GetLastError = () => 0; // another FFI call in the runtime overwrote the thread's last error
    try {
      const d = await DcoDevice.open({ ifname: "test" });
      try {
        setDelay(100);
        await d.newPeer(peer("tcp")); // pends for 100 ms
        await d.writeControl(new Uint8Array([0x20, 7])); // pends until sent
        assertEquals(await d.readControl(), new Uint8Array([0x20, 7]));
        const s = await d.getStats();
        assertEquals(s.SentControlPackets, 1);
      } finally {
        await d.close();
      }
    } finally {
      k.GetLastError = real;
    }
    const j = journal();
    assert(j.includes("NEW_PEER tcp connected") && j.includes("WRITE sent"), j.join("\n"));
  },
});

const NETSH_LOG = "C:\\netsh-upstream.log";
const main = new URL("../../main.ts", import.meta.url).pathname.replace(/^\/([A-Za-z]:)/, "$1");

/**
 * Run the positional form until its first statistics block is out (or it ends), then stop it. The wait is
 * about liveness, not speed: under Wine on a busy machine the first block can take several seconds.
 */
async function runUpstream(args: string[], ms: number): Promise<{ stdout: string; stderr: string }> {
  const p = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", main, ...args, "--stats-interval", "1"],
    stdout: "piped",
    stderr: "piped",
    env: { OVPN_DCO_CLI_RUNDIR: Deno.makeTempDirSync(), FAKE_NETSH_LOG: NETSH_LOG },
  }).spawn();
  let stdout = "", stderr = "";
  const pump = async (st: ReadableStream<Uint8Array>, add: (t: string) => void) => {
    const dec = new TextDecoder();
    for await (const c of st) add(dec.decode(c, { stream: true }));
  };
  const pumps = Promise.all([pump(p.stdout, (t) => stdout += t), pump(p.stderr, (t) => stderr += t)]);
  let ended = false;
  p.status.then(() => ended = true);
  const deadline = Date.now() + ms;
  while (!ended && !stdout.includes("tunBytesReceived:") && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    p.kill();
  } catch { /* it ended by itself: its output says why */ }
  await p.status;
  await pumps;
  return { stdout, stderr };
}

for (const [dir, label] of [["0", "0"], ["7", "> 0 → 1"], [null, "no key file → NONE"]] as const) {
  Deno.test({
    ...opts,
    name:
      `upstream positional form under Wine (key direction ${label}): upstream's IOCTL sequence and values, statistics block`,
    async fn() {
      resetDriver();
      const raw = Uint8Array.from({ length: 256 }, (_, i) => (i * 7 + 3) & 0xff);
      const keyFile = Deno.makeTempFileSync({ suffix: ".key" });
      Deno.writeTextFileSync(keyFile, btoa(String.fromCharCode(...raw)));
      assertEquals((parseKeyFile(Deno.readTextFileSync(keyFile)) as { raw: Uint8Array }).raw.length, 256);
      const args = [
        "udp",
        "i4",
        "127.0.0.1",
        "1194",
        "127.0.0.2",
        "1195",
        "10.8.0.2",
        "255.255.255.0",
        "10.8.0.1",
      ];
      if (dir !== null) args.push(keyFile, dir);
      // Wine's loopback "lo" (index 1) stands for the adapter's interface (the fake is no PnP device)
      args.push("--ifname", "lo");
      await Deno.remove(NETSH_LOG).catch(() => {});
      const { stdout, stderr } = await runUpstream(args, 30_000);
      assertEquals(
        (await Deno.readTextFile(NETSH_LOG).catch(() => "")).split("\n").filter((l) => l),
        [
          "interface ipv4 set address name=1 source=static address=10.8.0.2 mask=255.255.255.0 store=active",
          "interface ipv4 set subinterface 1 mtu=1428 store=active",
        ],
        stderr,
      );
      const j = journal().filter((l) => !l.startsWith("GET_VERSION"));
      const A = fnv(raw.slice(0, 32)), B = fnv(raw.slice(32, 64)), tail = fnv(raw.slice(64, 72));
      const newKey = dir === null
        ? `NEW_KEY slot=0 alg=0 keyid=0 peerid=0 enclen=0 declen=0 enc=${fnv(new Uint8Array(0))} dec=${
          fnv(new Uint8Array(0))
        } enctail=${fnv(new Uint8Array(8))} dectail=${fnv(new Uint8Array(8))}`
        : `NEW_KEY slot=0 alg=1 keyid=0 peerid=0 enclen=32 declen=32 enc=${dir === "0" ? A : B} dec=${
          dir === "0" ? B : A
        } enctail=${tail} dectail=${tail}`;
      assertEquals(j.slice(0, 5), [
        "OPEN adapter",
        "NEW_PEER udp AF_INET 127.0.0.1:1194 -> 127.0.0.2:1195",
        newKey,
        "SET_PEER interval=5 timeout=60 mss=0", // upstream's setup_keepalive(5, 60, 0)
        "START_VPN",
      ], `journal:\n${j.join("\n")}\nstderr:\n${stderr}`);
      const block =
        /lostInCtrlPkts: 0\nlostInDataPkts: 0\nlostOutCtrlPkts: 0\nlostOutDataPkts: 0\nrcvdCtrlPkts: 0\nrcvdDataPkts: 0\nsentCtrlPkts: 0\nsentDataPkts: 0\ntransportBytesSent: 0\ntransportBytesReceived: 0\ntunBytesSent: 0\ntunBytesReceived: 0\n\n/;
      assertMatch(stdout, block, `stdout:\n${stdout}\nstderr:\n${stderr}`);
      assert(!stderr.includes("ovpn-dco-cli:"), stderr);
    },
  });
}

Deno.test({
  ...opts,
  name: "version prints the tool's and the driver's version",
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", main, "version"],
      stdout: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assertMatch(text, /^ovpn-dco-cli \d+\.\d+\.\d+\n/);
    assertMatch(text, "ovpn-dco driver 2.7.1 (p2p, multipeer, new-key-v2, peer-stats)");
  },
});
