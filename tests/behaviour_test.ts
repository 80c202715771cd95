/**
 * End-to-end behaviour in network namespaces: rekey under load, keepalive expiry, hostile input,
 * the upstream positional form and `start` shutdown. Needs root.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { NetnsLab, selfCommand } from "../cmd/netns.ts";
import { parsePing, startPair } from "../cmd/demo.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";
import { sendHostile, statsOf, verifiedTransfer } from "./lab.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
let labIndex = 40;

async function withLab(fn: (lab: NetnsLab, keyFile: string) => Promise<void>) {
  const lab = await NetnsLab.create(labIndex++);
  try {
    const keyFile = `${lab.runDir}/k.key`;
    await writeNewKeyFile(keyFile);
    await fn(lab, keyFile);
  } finally {
    await lab.destroy();
  }
}

for (const proto of ["udp", "tcp"] as const) {
  Deno.test({
    ...opts,
    name:
      `rekey under load (${proto}): key new into the secondary slot and key swap on both ends mid-transfer`,
    fn: () =>
      withLab(async (lab, keyFile) => {
        await startPair(lab, { proto, cipher: "AES-256-GCM", keyFile });
        const next = `${lab.runDir}/next.key`;
        await writeNewKeyFile(next);
        let done = false;
        const transfer = verifiedTransfer(lab, lab.inner4.b, 400 * 1024 * 1024, 5310).finally(
          () => (done = true),
        );
        await new Promise((r) => setTimeout(r, 700));
        for (const [side, dir] of [["a", "0"], ["b", "1"]] as const) {
          const r = await lab.tool(side, [
            "key",
            "new",
            "0",
            "CHACHA20-POLY1305",
            dir,
            next,
            "--key-id",
            "1",
            "--ifname",
            `ovpn-${side}`,
          ]);
          assertEquals(r.code, 0, r.stderr);
        }
        for (const side of ["a", "b"] as const) {
          const r = await lab.tool(side, ["key", "swap", "--ifname", `ovpn-${side}`]);
          assertEquals(r.code, 0, r.stderr);
        }
        assert(!done, "the transfer ended before the rekey: make it longer");
        await transfer;
        const info =
          JSON.parse((await lab.tool("a", ["peer", "get", "--ifname", "ovpn-a", "--json"])).stdout).info;
        assertEquals(info.primaryKeyId, 1);
        assertEquals(info.secondaryKeyId, 0);
        assertEquals(info.cipher, "CHACHA20-POLY1305");
        // the old key can now go; traffic continues on the new one
        assertEquals(
          (await lab.tool("a", ["key", "del", "--slot", "secondary", "--ifname", "ovpn-a"])).code,
          0,
        );
        assertEquals(
          (await lab.tool("b", ["key", "del", "--slot", "secondary", "--ifname", "ovpn-b"])).code,
          0,
        );
        assertEquals(
          parsePing(await lab.run("a", ["ping", "-c", "2", "-i", "0.2", lab.inner4.b])).received,
          2,
        );
      }),
  });
}

Deno.test({
  ...opts,
  name:
    "keepalive: a frozen peer (SIGSTOP) is reported as timed out and the other side exits 6 within timeout + 2 s",
  fn: () =>
    withLab(async (lab, keyFile) => {
      const { a, b } = await startPair(lab, {
        proto: "udp",
        cipher: "AES-128-GCM",
        keyFile,
        extra: ["--keepalive", "1,3"],
      });
      const events = lab.spawn("a", [...selfCommand(), "events", "--ifname", "ovpn-a", "--json"]);
      await lab.waitFor(
        () => events.output().includes("listening for events"),
        10000,
        "the events subscriber",
      );
      await new Promise((r) => setTimeout(r, 2500)); // pings keep the idle tunnel alive past the timeout
      assertEquals(await Promise.race([a.status.then(() => "ended"), Promise.resolve("alive")]), "alive");
      b.child.kill("SIGSTOP");
      const t0 = Date.now();
      try {
        const st = await a.status;
        const took = (Date.now() - t0) / 1000;
        assertEquals(st.code, 6, a.output());
        assert(took <= 5, `took ${took} s`);
        assertMatch(a.output(), "peer timed out: keepalive timeout: nothing received from the peer for 3 s");
        // the `events` subscriber heard the expiry, then saw the instance go
        const ev = await Promise.race([
          events.status,
          new Promise<null>((r) => setTimeout(() => r(null), 3000)),
        ]);
        assertEquals(ev?.code, 0, events.output());
        assertMatch(events.output(), '"ifname":"ovpn-a","event":"DEL_PEER","peerId":0,"reason":"expired"}');
      } finally {
        b.child.kill("SIGCONT");
      }
    }),
});

Deno.test({
  ...opts,
  name:
    "hostile input: garbage, truncated, replayed, wrong-key and wrong-peer-id packets are counted as lost and dropped",
  fn: () =>
    withLab(async (lab, keyFile) => {
      const { a } = await startPair(lab, { proto: "udp", cipher: "AES-256-GCM", keyFile });
      // 'key epoch' needs an epoch key: one clear line, exit 5
      const ep = await lab.tool("a", ["key", "epoch", "--ifname", "ovpn-a"]);
      assertEquals(ep.code, 5, ep.stderr);
      assertMatch(ep.stderr, "the primary key does not use epoch data keys");
      // b → a, so that b has used many packet ids recently (with GRO, a transfer to b gets few ACKs back)
      await verifiedTransfer(lab, lab.inner4.a, 8 * 1024 * 1024, 5320, "b", "a");
      const before = await statsOf(lab, "a");
      // ids b used recently (and a accepted), well inside the replay window
      const bSent = (await statsOf(lab, "b")).sentDataPkts;
      assert(bSent > 300, `b sent only ${bSent} packets`);
      const replayBase = bSent - 250;
      const sent = await sendHostile(lab, keyFile, 200, replayBase);
      assertEquals(sent, 1000);
      await new Promise((r) => setTimeout(r, 500));
      const after = await statsOf(lab, "a");
      assertEquals(after.lostInDataPkts - before.lostInDataPkts, sent, JSON.stringify(after.drops));
      for (const reason of ["bad-tag", "wrong-peer", "too-short"]) {
        assert((after.drops[reason] ?? 0) > 0, `no ${reason} drops`);
      }
      assert((after.drops["too-old"] ?? 0) + (after.drops["replay"] ?? 0) >= 200, "replays not counted");
      // traffic continues, the process lives, and no key material was printed
      await verifiedTransfer(lab, lab.inner4.b, 1024 * 1024, 5321);
      assertEquals(
        await Promise.race([a.status.then(() => "ended"), Promise.resolve("alive")]),
        "alive",
      );
      const keyText = await Deno.readTextFile(keyFile);
      for (const line of keyText.split("\n").filter((l) => l.length > 8)) {
        assert(!a.output().includes(line.slice(0, 16)));
      }
    }),
});

Deno.test({
  ...opts,
  name:
    "upstream positional form: udp i4 with a data64.key, NONE without one, and --epoch; statistics block every second",
  fn: () =>
    withLab(async (lab, keyFile) => {
      for (const mode of ["key", "none", "epoch"] as const) {
        const withKey = mode !== "none";
        const args = (s: "a" | "b") => {
          const o = s === "a" ? "b" : "a";
          return [
            "udp",
            "i4",
            lab.outer4[s],
            "1194",
            lab.outer4[o],
            "1194",
            lab.inner4[s],
            "255.255.255.0",
            lab.inner4[s],
            ...(withKey ? [keyFile, s === "a" ? "0" : "7"] : []),
            "--ifname",
            `ovpn-${s}`,
            ...(mode === "epoch" ? ["--epoch"] : []),
          ];
        };
        const a = lab.startTool("a", args("a")), b = lab.startTool("b", args("b"));
        await lab.waitFor(
          async () =>
            parsePing(await lab.run("a", ["ping", "-c", "1", "-W", "1", lab.inner4.b], { allowFail: true }))
              .received === 1,
          20000,
          "a ping",
        );
        await new Promise((r) => setTimeout(r, 1200));
        const block =
          /lostInCtrlPkts: \d+\nlostInDataPkts: \d+\nlostOutCtrlPkts: \d+\nlostOutDataPkts: \d+\nrcvdCtrlPkts: \d+\nrcvdDataPkts: \d+\nsentCtrlPkts: \d+\nsentDataPkts: \d+\ntransportBytesSent: \d+\ntransportBytesReceived: \d+\ntunBytesSent: \d+\ntunBytesReceived: \d+\n\n/;
        assertMatch(a.output(), block);
        if (!withKey) assertMatch(a.output(), "cipher NONE");
        // upstream's setup_keepalive(5, 60, 0)
        const info =
          JSON.parse((await lab.tool("a", ["peer", "get", "--ifname", "ovpn-a", "--json"])).stdout).info;
        assertEquals([info.keepaliveInterval, info.keepaliveTimeout, info.mss], [5, 60, 0]);
        // epoch keys: the epoch block follows the statistics block
        if (mode === "epoch") {
          assertMatch(a.output(), /tunBytesReceived: \d+\n\nsendEpoch: 1\nrecvEpoch: 1\n\n/);
        } else assert(!a.output().includes("sendEpoch"));
        assertEquals((await lab.stop(a)).code, 0);
        assertEquals((await lab.stop(b)).code, 0);
        // the interface is gone after a clean shutdown
        assertMatch(
          await lab.run("a", ["ip", "link", "show", "ovpn-a"], { allowFail: true }),
          "does not exist",
        );
      }
    }),
});

Deno.test({
  ...opts,
  name:
    "control sockets are per network namespace: the same --ifname runs in two namespaces, each reached from its own",
  fn: () =>
    withLab(async (lab) => {
      const shared = `${lab.runDir}/shared-run`; // one run directory, as /run is for every namespace
      const tool = (side: "a" | "b", args: string[]) =>
        lab.run(side, ["env", `OVPN_DCO_CLI_RUNDIR=${shared}`, ...selfCommand(), ...args], {
          allowFail: true,
        });
      for (const s of ["a", "b"] as const) {
        lab.startTool(s, ["start", "--ifname", "same0", "--stats-interval", "0"], {
          OVPN_DCO_CLI_RUNDIR: shared,
        });
      }
      for (const s of ["a", "b"] as const) {
        await lab.waitFor(
          async () => (await tool(s, ["peer", "get", "--ifname", "same0", "--json"])).includes('"peer":null'),
          15000,
          `the instance in ${s}`,
        );
      }
      assertMatch(
        await tool("a", [
          "peer",
          "new",
          "0",
          `${lab.outer4.a}:1194`,
          `${lab.outer4.b}:1194`,
          "--ifname",
          "same0",
        ]),
        "peer added on same0",
      );
      assertMatch(
        await tool("a", ["peer", "get", "--ifname", "same0", "--json"]),
        `"remote":{"address":"${lab.outer4.b}"`,
      );
      assertMatch(await tool("b", ["peer", "get", "--ifname", "same0", "--json"]), '"peer":null');
      // a second instance on the same name in the same namespace: one clear line
      const again = await tool("b", ["start", "--ifname", "same0", "--stats-interval", "0"]);
      assertMatch(
        again,
        /interface 'same0' is already in use|an instance is already running on interface 'same0'/,
      );
      assert(!again.includes("internal error"), again);
    }),
});

Deno.test({
  ...opts,
  name:
    "start without a peer, then peer new and key new over the control socket; peer del keeps the interface",
  fn: () =>
    withLab(async (lab, keyFile) => {
      for (const s of ["a", "b"] as const) {
        lab.startTool(s, [
          "start",
          "--ifname",
          `ovpn-${s}`,
          "--ifaddr",
          `${lab.inner4[s]}/24`,
          "--stats-interval",
          "0",
        ]);
      }
      for (const s of ["a", "b"] as const) {
        await lab.waitFor(
          async () => (await lab.tool(s, ["peer", "get", "--ifname", `ovpn-${s}`])).code === 0,
          15000,
          `instance ${s}`,
        );
      }
      for (const [s, dir] of [["a", "0"], ["b", "1"]] as const) {
        const o = s === "a" ? "b" : "a";
        const r1 = await lab.tool(s, [
          "peer",
          "new",
          "3",
          `${lab.outer4[s]}:1194`,
          `${lab.outer4[o]}:1194`,
          "--ifname",
          `ovpn-${s}`,
        ]);
        assertEquals(r1.code, 0, r1.stderr);
        const r2 = await lab.tool(s, [
          "key",
          "new",
          "3",
          "AES-256-GCM",
          dir,
          keyFile,
          "--slot",
          "primary",
          "--ifname",
          `ovpn-${s}`,
        ]);
        assertEquals(r2.code, 0, r2.stderr);
      }
      await lab.waitFor(
        async () =>
          parsePing(await lab.run("a", ["ping", "-c", "1", "-W", "1", lab.inner4.b], { allowFail: true }))
            .received === 1,
        10000,
        "a ping",
      );
      const info =
        JSON.parse((await lab.tool("a", ["peer", "get", "--ifname", "ovpn-a", "--json"])).stdout).info;
      assertEquals(info.peer.peerId, 3);
      assertEquals((await lab.tool("a", ["peer", "del", "--ifname", "ovpn-a"])).code, 0);
      assertEquals(
        JSON.parse((await lab.tool("a", ["peer", "get", "--ifname", "ovpn-a", "--json"])).stdout).info.peer,
        null,
      );
      assertMatch(await lab.run("a", ["ip", "link", "show", "ovpn-a"]), "ovpn-a");
      assertEquals(
        parsePing(await lab.run("a", ["ping", "-c", "1", "-W", "1", lab.inner4.b], { allowFail: true }))
          .received,
        0,
      );
    }),
});

Deno.test({
  ...opts,
  name:
    "upstream positional form over TCP (i6 transport): connects to a listening start, prints 'TCP connected', exits 6 when the server closes",
  fn: () =>
    withLab(async (lab, keyFile) => {
      const b = lab.startTool("b", [
        ...["start", "--ifname", "ovpn-b", "--proto", "tcp", "--listen", "--local", `[${lab.outer6.b}]:1194`],
        ...["--remote", `[${lab.outer6.a}]:1194`, "--ifaddr", `${lab.inner4.b}/24`, "--key", keyFile],
        ...["--key-direction", "1", "--stats-interval", "0"],
      ]);
      await lab.waitFor(() => b.output().includes("waiting for a TCP connection"), 15000, "the listener");
      const a = lab.startTool("a", [
        ...[
          "tcp",
          "i6",
          lab.outer6.a,
          "1194",
          lab.outer6.b,
          "1194",
          lab.inner4.a,
          "255.255.255.0",
          lab.inner4.a,
        ],
        ...[keyFile, "0", "--ifname", "ovpn-a"],
      ]);
      await lab.waitFor(
        async () =>
          parsePing(await lab.run("a", ["ping", "-c", "1", "-W", "1", lab.inner4.b], { allowFail: true }))
            .received === 1,
        20000,
        `a ping (${a.output()})`,
      );
      assertMatch(a.output(), /^TCP connected$/m);
      const events = lab.spawn("a", [...selfCommand(), "events", "--ifname", "ovpn-a"]);
      await lab.waitFor(
        () => events.output().includes("listening for events"),
        10000,
        "the events subscriber",
      );
      // the server goes away: the client reports it and exits 6
      assertEquals((await lab.stop(b)).code, 0);
      const st = await Promise.race([a.status, new Promise<null>((r) => setTimeout(() => r(null), 5000))]);
      assertEquals(st?.code, 6, a.output());
      assertMatch(a.output(), "connection ended: the peer closed the TCP connection");
      await events.status;
      assertMatch(events.output(), "peer 0 deleted (transport-disconnect)");
    }),
});

Deno.test({
  ...opts,
  name: "MSS clamping (--mss 1200 on one end only) clamps the SYN and the SYN-ACK: both sockets use MSS 1200",
  fn: () =>
    withLab(async (lab, keyFile) => {
      await startPair(lab, {
        proto: "udp",
        cipher: "AES-128-GCM",
        keyFile,
        extraFor: { a: ["--mss", "1200"] },
      });
      const server = lab.spawn("b", ["iperf3", "-s", "-1", "--forceflush", "-B", lab.inner4.b]);
      await lab.waitFor(() => server.output().includes("listening"), 10000, "the iperf3 server");
      const client = lab.spawn("a", ["iperf3", "-c", lab.inner4.b, "-t", "3", "-b", "10M"]);
      await new Promise((r) => setTimeout(r, 1500));
      const mssOf = async (side: "a" | "b", peer: string) => {
        const out = await lab.run(side, ["ss", "-tin", "state", "established", "dst", peer]);
        return [...out.matchAll(/\bmss:(\d+)/g)].map((m) => Number(m[1]));
      };
      const ma = await mssOf("a", lab.inner4.b), mb = await mssOf("b", lab.inner4.a);
      await client.status;
      assert(ma.length > 0 && mb.length > 0, `no connections seen: a ${ma} b ${mb}`);
      // without clamping the MSS would be 1388 (tun MTU 1428 - 40)
      for (const m of [...ma, ...mb]) assert(m <= 1200, `MSS ${m} > 1200 (a: ${ma}, b: ${mb})`);
    }),
});
