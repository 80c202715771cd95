/**
 * Epoch data keys end to end, in network namespaces (root):
 * - two instances of this tool with --epoch: a verified 100 MB transfer while both ends force the next
 *   epoch over and over, without a lost packet; replays, far-future epochs and epoch 0 dropped and counted;
 * - interop with a real OpenVPN 2.7.6: two real peers negotiate aead-epoch, one is stopped and this tool
 *   takes its place with the E1 secrets from its log; pings both ways; this tool moves to the next epoch
 *   twice and the real peer follows (its log says so). As the client and as the server.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { NetnsLab } from "../cmd/netns.ts";
import { parsePing, startPair } from "../cmd/demo.ts";
import { keyFromOpenvpnLog } from "../keys/openvpn_log.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";
import { OPENVPN_27, sendHostile, startOpenvpnPair, statsOf, verifiedTransfer } from "./lab.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
let labIndex = 70;

const epochs = async (lab: NetnsLab, side: "a" | "b") => {
  const s = await statsOf(lab, side);
  return { send: s.sendEpoch, recv: s.recvEpoch };
};

for (const proto of ["udp", "tcp"] as const) {
  Deno.test({
    ...opts,
    name:
      `epoch keys (${proto}): 100 MB verified across forced epoch changes on both ends, nothing lost; hostile packets counted`,
    async fn() {
      const lab = await NetnsLab.create(labIndex++);
      try {
        const keyFile = `${lab.runDir}/k.key`;
        await writeNewKeyFile(keyFile);
        await startPair(lab, { proto, cipher: "AES-256-GCM", keyFile, extra: ["--epoch"] });
        assertEquals(await epochs(lab, "a"), { send: 1, recv: 1 });
        const before = { a: await statsOf(lab, "a"), b: await statsOf(lab, "b") };
        let done = false;
        const transfer = verifiedTransfer(lab, lab.inner4.b, 100 * 1024 * 1024, 5340).finally(
          () => (done = true),
        );
        let moves = 0;
        while (!done) {
          const side = moves % 2 ? "b" : "a";
          const r = await lab.tool(side, ["key", "epoch", "--ifname", `ovpn-${side}`]);
          assertEquals(r.code, 0, r.stderr);
          assertMatch(r.stderr, "now sends with epoch");
          moves++;
          await new Promise((r) => setTimeout(r, 150));
        }
        await transfer;
        assert(moves >= 3, `only ${moves} epoch changes happened during the transfer; make it longer`);
        const after = { a: await statsOf(lab, "a"), b: await statsOf(lab, "b") };
        for (const s of ["a", "b"] as const) {
          assertEquals(after[s].lostInDataPkts - before[s].lostInDataPkts, 0, JSON.stringify(after[s].drops));
          assertEquals(
            after[s].lostOutDataPkts - before[s].lostOutDataPkts,
            0,
            JSON.stringify(after[s].drops),
          );
        }
        // each side moved its own sender and followed the other's: after a packet each way, both end on the
        // same epoch
        assertEquals(
          parsePing(await lab.run("a", ["ping", "-c", "2", "-i", "0.2", lab.inner4.b])).received,
          2,
        );
        const ea = await epochs(lab, "a"), eb = await epochs(lab, "b");
        assert(ea.send >= 1 + Math.floor(moves / 2), JSON.stringify({ moves, ea, eb }));
        assertEquals([ea.recv, eb.recv], [eb.send, ea.send]);

        // hostile packets to a from b's address: replays in a's current epoch, far-future epochs, epoch 0
        await lab.tool("b", ["key", "epoch", "--ifname", "ovpn-b"]);
        assertEquals(
          parsePing(await lab.run("b", ["ping", "-c", "300", "-i", "0.002", "-q", lab.inner4.a])).received,
          300,
        );
        const recvEpoch = (await epochs(lab, "a")).recv;
        const pre = await statsOf(lab, "a");
        if (proto === "udp") {
          assertEquals(await sendHostile(lab, keyFile, 100, 10, ["epoch", String(recvEpoch)]), 300);
          await lab.waitFor(
            async () => (await statsOf(lab, "a")).lostInDataPkts - pre.lostInDataPkts >= 300,
            5000,
            "the hostile packets to be counted",
          );
          const post = await statsOf(lab, "a");
          assertEquals(post.lostInDataPkts - pre.lostInDataPkts, 300);
          assertEquals((post.drops.replay ?? 0) - (pre.drops.replay ?? 0), 100);
          assertEquals((post.drops["unknown-epoch"] ?? 0) - (pre.drops["unknown-epoch"] ?? 0), 200);
          assertEquals((await epochs(lab, "a")).recv, recvEpoch, "a far-future packet moved the epoch");
        }
        assertEquals(
          parsePing(await lab.run("a", ["ping", "-c", "3", "-i", "0.2", lab.inner4.b])).received,
          3,
        );

        // renegotiation keeps working with epoch keys: a new epoch key (E1 afresh) into the secondary slot,
        // swap on both ends; the new key starts again at epoch 1
        const next = `${lab.runDir}/next.key`;
        await writeNewKeyFile(next);
        for (const [side, dir] of [["a", "0"], ["b", "1"]] as const) {
          const r = await lab.tool(side, [
            ...["key", "new", "0", "CHACHA20-POLY1305", dir, next, "--key-id", "1", "--epoch"],
            ...["--ifname", `ovpn-${side}`],
          ]);
          assertEquals(r.code, 0, r.stderr);
          assertMatch(r.stderr, "epoch data keys");
        }
        for (const side of ["a", "b"] as const) {
          assertEquals((await lab.tool(side, ["key", "swap", "--ifname", `ovpn-${side}`])).code, 0);
        }
        assertEquals(
          parsePing(await lab.run("a", ["ping", "-c", "3", "-i", "0.2", lab.inner4.b])).received,
          3,
        );
        assertEquals(await epochs(lab, "a"), { send: 1, recv: 1 });
        const info =
          JSON.parse((await lab.tool("a", ["peer", "get", "--ifname", "ovpn-a", "--json"])).stdout).info;
        assertEquals([info.primaryKeyId, info.cipher], [1, "CHACHA20-POLY1305"]);
      } finally {
        await lab.destroy();
      }
    },
  });
}

for (const role of ["client", "server"] as const) {
  Deno.test({
    ...opts,
    name:
      `interop with OpenVPN 2.7.6 (epoch keys, UDP): this tool takes over the ${role} and moves epochs twice`,
    async fn() {
      const lab = await NetnsLab.create(labIndex++);
      try {
        const d = lab.runDir;
        const { server, client, net, clientLog, serverLog } = await startOpenvpnPair(lab, "AES-256-GCM", {
          clientVerb: 9,
          serverVerb: 9,
          openvpn: OPENVPN_27,
        });
        assertEquals(
          parsePing(await lab.run("a", ["ping", "-c", "2", "-i", "0.3", `${net}.1`], { allowFail: true }))
            .received,
          2,
        );
        const ours = role === "client" ? "a" : "b", theirs = role === "client" ? "b" : "a";
        const key = keyFromOpenvpnLog(await Deno.readTextFile(role === "client" ? clientLog : serverLog));
        assert("epochSecret" in key.encrypt, "the OpenVPN peers did not negotiate epoch keys");
        const keyFile = `${d}/takeover.json`;
        await Deno.writeTextFile(keyFile, JSON.stringify(key), { mode: 0o600 });
        const victim = role === "client" ? client : server;
        victim.child.kill("SIGKILL"); // no exit notification: the other side keeps the session
        await victim.status;
        const tunName = role === "client" ? "tun-cli" : "tun-srv";
        await lab.waitFor(
          async () =>
            (await lab.run(ours, ["ip", "link", "show", tunName], { allowFail: true })).includes(
              "does not exist",
            ),
          5000,
          "the killed peer's tun to go",
        );
        const [local, remote] = role === "client"
          ? [`${lab.outer4.a}:41194`, `${lab.outer4.b}:1194`]
          : [`${lab.outer4.b}:1194`, `${lab.outer4.a}:41194`];
        const myIp = role === "client" ? `${net}.2` : `${net}.1`,
          peerIp = role === "client" ? `${net}.1` : `${net}.2`;
        const tool = lab.startTool(ours, [
          ...["start", "--ifname", `ovpn-${ours}`, "--local", local, "--remote", remote],
          ...["--ifaddr", `${myIp}/24`, "--key", keyFile, "--keepalive", "10,60", "--stats-interval", "0"],
        ]);
        await lab.waitFor(
          async () =>
            parsePing(await lab.run(ours, ["ping", "-c", "1", "-W", "1", peerIp], { allowFail: true }))
              .received === 1,
          15000,
          `a ping through OpenVPN 2.7.6 (${tool.output().trim()})`,
        );
        const pings = async () => {
          assertEquals(parsePing(await lab.run(ours, ["ping", "-c", "4", "-i", "0.2", peerIp])).received, 4);
          assertEquals(parsePing(await lab.run(theirs, ["ping", "-c", "4", "-i", "0.2", myIp])).received, 4);
        };
        await pings();
        const peerLog = role === "client" ? serverLog : clientLog;
        for (const epoch of [2, 3]) {
          const r = await lab.tool(ours, ["key", "epoch", "--ifname", `ovpn-${ours}`]);
          assertEquals(r.code, 0, r.stderr);
          await pings();
          // OpenVPN saw our new epoch, moved its receive key and followed with its send key
          assertMatch(await Deno.readTextFile(peerLog), `Received data packet with new epoch ${epoch}`);
          assertEquals(await epochs(lab, ours), { send: epoch, recv: epoch });
        }
        const st = await statsOf(lab, ours);
        assertEquals(st.lostInDataPkts, 0, JSON.stringify(st.drops));
        assert(
          !(await Deno.readTextFile(peerLog)).includes("AEAD Decrypt error"),
          "OpenVPN refused our packets",
        );
      } finally {
        await lab.destroy();
      }
    },
  });
}
