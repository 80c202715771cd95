/**
 * The cases that run inside the VM (tests/vm/run-in-vm.sh), against Linux's real `ovpn` module: each in its
 * own pair (or star) of network namespaces, one after the other in one boot. Writes one result per case to
 * the JSON file named by the first argument ({name: {ok, error?, ms, notes}}), which `tests/kernel_vm_test.ts`
 * turns into one test each. A case that throws is a failure; nothing is skipped.
 *
 *   deno run -A tests/vm/kernel_cases.ts RESULTS.json [CASE-SUBSTRING]
 * @module
 */
import { assert, assertEquals } from "../assert.ts";
import { type LabProcess, NetnsLab, StarLab } from "../../cmd/netns.ts";
import { parsePing, startPair } from "../../cmd/demo.ts";
import { writeNewKeyFile } from "../../keys/keyfile.ts";
import { verifiedTransfer } from "../lab.ts";
import { KERNEL_CASES } from "./case_names.ts";
import { AF_INET, intOpt, libc, SO_TIMESTAMP, SOCK_DGRAM, SOL_SOCKET } from "../../ffi/libc.ts";

/**
 * Under QEMU's emulation (TCG, two vCPUs) a kernel that patches its own code while the other vCPU runs it can
 * die on a stale breakpoint. Seen once in a loaded run: "Fatal exception in interrupt" with RIP at
 * netif_rx_internal+0x1b, one byte into the patched jump of the netstamp static key (the address right after
 * a breakpoint) — the key every `ping` turns on (SO_TIMESTAMP) and off again when it exits, while the cases
 * move packets. One socket holding SO_TIMESTAMP for the whole boot keeps the key on, so it is never patched
 * during the cases. The socket sends nothing.
 */
function holdNetstampKey(): number {
  const L = libc().symbols;
  const fd = L.socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || L.setsockopt(fd, SOL_SOCKET, SO_TIMESTAMP, intOpt(1), 4) !== 0) {
    throw new Error("could not hold SO_TIMESTAMP on a socket");
  }
  return fd;
}
holdNetstampKey();

const [resultsFile, only] = Deno.args;
const results: Record<string, { ok: boolean; error?: string; ms: number; notes: string[] }> = {};
let labIndex = 60;
let notes: string[] = [];

/** The last `--json` statistics line an instance printed. */
function lastStats(p: LabProcess): Record<string, number> & { drops: Record<string, number> } {
  const lines = p.output().split("\n").filter((l) => l.startsWith("{") && l.includes('"ifname"'));
  if (!lines.length) throw new Error(`no statistics line yet: ${p.output().slice(-300)}`);
  return JSON.parse(lines[lines.length - 1]);
}

/** Wait for a statistics line printed after now. */
async function freshStats(lab: { waitFor: NetnsLab["waitFor"] }, p: LabProcess) {
  const before = p.output().length;
  await lab.waitFor(() => p.output().slice(before).includes('"ifname"'), UP / 4, "a statistics line");
  return lastStats(p);
}

async function pings(lab: NetnsLab, from: "a" | "b", count = 3) {
  const to = from === "a" ? "b" : "a";
  for (const [fam, dst] of [["4", lab.inner4[to]], ["6", lab.inner6[to]]]) {
    const p = parsePing(
      await lab.run(from, ["ping", `-${fam}`, "-c", String(count), "-i", "0.2", "-W", "2", dst], {
        allowFail: true,
      }),
    );
    assertEquals(p.received, count, `ping -${fam} ${dst} from ${from}`);
  }
}

/** The module's own counters of the peer on side `s` (PEER_GET through `peer get --json`). */
async function kernelPeer(lab: NetnsLab, s: "a" | "b") {
  const r = await lab.tool(s, ["peer", "get", "--ifname", `ovpn-${s}`, "--json"]);
  if (r.code !== 0) throw new Error(`peer get on ${s}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function runCase(name: string, fn: () => Promise<void>) {
  if (!(KERNEL_CASES as readonly string[]).includes(name)) {
    throw new Error(`case '${name}' is not in case_names.ts`);
  }
  if (only && !name.includes(only)) return;
  const t0 = Date.now();
  notes = [];
  console.log(`--- ${name}`);
  try {
    await fn();
    results[name] = { ok: true, ms: Date.now() - t0, notes };
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s) ${notes.join("; ")}`);
  } catch (e) {
    const error = (e as Error).stack ?? String(e);
    results[name] = { ok: false, error, ms: Date.now() - t0, notes };
    console.log(`FAIL ${name}: ${error}`);
  }
  await Deno.writeTextFile(resultsFile, JSON.stringify(results, null, 1));
}

/**
 * Every instance's statistics as JSON each second, and a TCP connect/accept timeout as long as the cases wait
 * (UP): under emulation on a busy host the second instance's start-up alone took more than the default 30 s,
 * so the listener gave up before its peer connected and the peer then found the port closed (seen twice:
 * "no TCP connection from … within 30 s" at one end, "connection refused" at the other).
 */
const STATS = ["--stats-interval", "1", "--json", "--connect-timeout", "120"];
/**
 * Liveness budget for anything to happen in the guest: QEMU without KVM runs 5-20 times slower than the host,
 * and slower still when the host is busy; these waits are about liveness, never speed.
 */
const UP = 120_000;

async function withLab(fn: (lab: NetnsLab, key: string) => Promise<void>) {
  const lab = await NetnsLab.create(labIndex++);
  try {
    const key = `${lab.runDir}/k.key`;
    await writeNewKeyFile(key);
    await fn(lab, key);
  } finally {
    await lab.destroy();
  }
}

// 1. the kernel at one end, this tool's tun engine at the other: both ciphers, both transports, both outer
// families; inner IPv4 and IPv6 pings both ways, a verified transfer, and the module's counters
const MIXED = [
  { proto: "udp", cipher: "AES-256-GCM", outer6: false, dcoSide: "a" },
  { proto: "udp", cipher: "CHACHA20-POLY1305", outer6: true, dcoSide: "b" },
  { proto: "tcp", cipher: "AES-256-GCM", outer6: true, dcoSide: "a" }, // dco connects
  { proto: "tcp", cipher: "CHACHA20-POLY1305", outer6: false, dcoSide: "b" }, // dco listens
] as const;
for (const c of MIXED) {
  const name = `dco(${c.dcoSide}) <-> tun: ${c.proto} over IPv${c.outer6 ? 6 : 4}, ${c.cipher}`;
  await runCase(name, () =>
    withLab(async (lab, key) => {
      const tunSide: "a" | "b" = c.dcoSide === "a" ? "b" : "a";
      const { a, b } = await startPair(lab, {
        upTimeoutMs: UP,
        proto: c.proto,
        cipher: c.cipher,
        keyFile: key,
        outer6: c.outer6,
        extra: STATS,
        extraFor: { [c.dcoSide]: ["--backend", "dco"], [tunSide]: ["--backend", "tun"] },
      });
      const dco = c.dcoSide === "a" ? a : b, tunProc = c.dcoSide === "a" ? b : a;
      // packets that raced the other end's key installation at start-up are rightly dropped: count from here
      const tun0 = await freshStats(lab, tunProc);
      assert(
        dco.output().includes("dco: interface"),
        `not on the dco backend: ${dco.output().slice(0, 400)}`,
      );
      await pings(lab, "a");
      await pings(lab, "b");
      const before = await freshStats(lab, dco);
      const bytes = 2 * 1024 * 1024;
      // into the kernel end over UDP, out of it over TCP (the other direction is the ACKs)
      const into = c.proto === "udp";
      const [from, to]: ("a" | "b")[] = into ? [tunSide, c.dcoSide] : [c.dcoSide, tunSide];
      await verifiedTransfer(lab, (c.outer6 ? lab.inner6 : lab.inner4)[to], bytes, 5301, from, to);
      const after = await freshStats(lab, dco);
      const moved = into
        ? after.tunBytesReceived - before.tunBytesReceived
        : after.tunBytesSent - before.tunBytesSent;
      notes.push(
        `the module's VPN counters moved ${moved} B for a ${bytes}-byte transfer ${into ? "in" : "out"}`,
      );
      // the module's VPN counters include the IP and TCP headers of every segment
      assert(moved >= bytes && moved < bytes * 1.3, `module counted ${moved} B for a ${bytes}-byte transfer`);
      assert(after.sentDataPkts > before.sentDataPkts && after.rcvdDataPkts > before.rcvdDataPkts);
      const tun = await freshStats(lab, tunProc);
      assertEquals(
        tun.lostInDataPkts - tun0.lostInDataPkts,
        0,
        `the tun end dropped packets from the kernel: ${JSON.stringify(tun.drops)}`,
      );
    }));
}

// 2. kernel <-> kernel, and the upstream positional form on dco
await runCase(
  "dco <-> dco: udp over IPv4, AES-128-GCM, verified transfer",
  () =>
    withLab(async (lab, key) => {
      const { a, b } = await startPair(lab, {
        upTimeoutMs: UP,
        proto: "udp",
        cipher: "AES-128-GCM",
        keyFile: key,
        extra: [...STATS, "--backend", "dco", "--hello"],
      });
      await pings(lab, "a");
      await verifiedTransfer(lab, lab.inner4.b, 2 * 1024 * 1024, 5301);
      const pa = await freshStats(lab, a), pb = await freshStats(lab, b);
      assert(pa.sentDataPkts > 1000 && pb.rcvdDataPkts > 1000, JSON.stringify([pa, pb]));
      assert(a.output().includes("dco: interface") && b.output().includes("dco: interface"));
      // control packets ("hello, world!" every second) pass the module both ways, up to this tool
      for (const s of [pa, pb]) assert(s.sentCtrlPkts > 0 && s.rcvdCtrlPkts > 0, JSON.stringify(s));
      assert(a.output().includes("control packet received: 13 bytes"), a.output().slice(-400));
    }),
);

await runCase(
  "upstream positional form on dco (tcp i4) against a tun listener",
  () =>
    withLab(async (lab, key) => {
      const b = lab.startTool("b", [
        ...["start", "--backend", "tun", "--proto", "tcp", "--listen", "--ifname", "ovpn-b"],
        ...["--local", `${lab.outer4.b}:1194`, "--remote", `${lab.outer4.a}:0`],
        ...["--ifaddr", `${lab.inner4.b}/24`, "--key", key, "--key-direction", "1", "--keepalive", "5,60"],
        ...["--stats-interval", "0", "--hello", "--connect-timeout", "120"],
      ]);
      await lab.waitFor(() => b.output().includes("waiting for a TCP connection"), UP, "the TCP listener");
      const a = lab.startTool("a", [
        ...[
          "tcp",
          "i4",
          lab.outer4.a,
          "0",
          lab.outer4.b,
          "1194",
          lab.inner4.a,
          "255.255.255.0",
          lab.inner4.b,
        ],
        ...[key, "0", "--backend", "dco", "--ifname", "ovpn-a", "--hello"],
      ]);
      await lab.waitFor(() => a.output().includes("TCP connected"), UP, "TCP connected");
      await lab.waitFor(
        async () => {
          const p = parsePing(
            await lab.run("a", ["ping", "-c", "1", "-W", "1", lab.inner4.b], { allowFail: true }),
          );
          return p.received === 1;
        },
        UP,
        "a ping through the tunnel",
      );
      // upstream's statistics block, every second
      await lab.waitFor(() => /rcvdDataPkts: [1-9]/.test(a.output()), UP / 4, "the statistics block");
      assert(a.output().includes("transportBytesReceived:"));
      // control packets over TCP: the module passes b's up framed, and carries a's out
      await lab.waitFor(
        () => /rcvdCtrlPkts: [1-9]/.test(a.output()),
        UP / 4,
        "a control packet at the dco end",
      );
      await lab.waitFor(
        () => b.output().includes("control packet received: 13 bytes"),
        UP / 4,
        `a's control packet at the tun end: ${b.output().slice(-300)}`,
      );
      assert(a.output().includes("dco: interface ovpn-a"), a.output().slice(0, 400));
    }),
);

// 3. key rotation under traffic on the kernel end
await runCase(
  "dco: key rotation (new secondary, swap, delete) under traffic loses nothing",
  () =>
    withLab(async (lab, key) => {
      const next = `${lab.runDir}/next.key`;
      await writeNewKeyFile(next);
      const { a } = await startPair(lab, {
        upTimeoutMs: UP,
        proto: "udp",
        cipher: "AES-256-GCM",
        keyFile: key,
        extra: STATS,
        extraFor: { a: ["--backend", "dco"], b: ["--backend", "tun"] },
      });
      const a0 = await freshStats(lab, a);
      const flood = lab.spawn("a", ["ping", "-i", "0.02", "-c", "400", "-W", "2", lab.inner4.b]);
      const tool = async (s: "a" | "b", args: string[]) => {
        const r = await lab.tool(s, [...args, "--ifname", `ovpn-${s}`]);
        if (r.code !== 0) throw new Error(`${args.join(" ")} on ${s}: ${r.stderr}`);
      };
      // both ends get the new key in the secondary slot, then swap: the old key stays for late packets
      await Promise.all([
        tool("a", ["key", "new", "0", "AES-256-GCM", "0", next, "--key-id", "1", "--slot", "secondary"]),
        tool("b", ["key", "new", "0", "AES-256-GCM", "1", next, "--key-id", "1", "--slot", "secondary"]),
      ]);
      await Promise.all([tool("a", ["key", "swap"]), tool("b", ["key", "swap"])]);
      await Promise.all([
        tool("a", ["key", "del", "--slot", "secondary"]),
        tool("b", ["key", "del", "--slot", "secondary"]),
      ]);
      const st = await flood.status;
      const p = parsePing(flood.output());
      notes.push(`${p.received}/400 pings through the rotation`);
      assert(st.success && p.received === 400, `pings lost to the rotation: ${flood.output().slice(-200)}`);
      const info = await kernelPeer(lab, "a");
      assertEquals(info.info.primaryKeyId, 1);
      assertEquals(info.info.secondaryKeyId, null);
      // the module holds key id 1 in the primary slot and nothing else
      await pings(lab, "a");
      const a1 = await freshStats(lab, a);
      assertEquals(
        a1.lostInDataPkts - a0.lostInDataPkts,
        0,
        `the kernel dropped packets: ${JSON.stringify(a1.drops)}`,
      );
    }),
);

// 4. keepalive expiry: the module deletes the peer, `events` says why, the p2p instance exits 6
await runCase(
  "dco: keepalive expiry -> events DEL_PEER expired, exit 6",
  () =>
    withLab(async (lab, key) => {
      const { a, b } = await startPair(lab, {
        upTimeoutMs: UP,
        proto: "udp",
        cipher: "AES-256-GCM",
        keyFile: key,
        extraFor: { a: ["--backend", "dco"], b: ["--backend", "tun", "--keepalive", "1,60"] },
      });
      // a short keepalive only once the tunnel is up (the module counts from PEER_NEW): PEER_SET on a live peer
      const set = await lab.tool("a", ["peer", "set", "--keepalive", "1,4", "--ifname", "ovpn-a"]);
      assertEquals(set.code, 0, set.stderr);
      const ev = lab.spawn("a", [...(await selfCmd()), "events", "--ifname", "ovpn-a", "--json"]);
      await lab.waitFor(
        () => ev.output().includes("listening") || ev.output().length > 0,
        UP / 2,
        "events",
      );
      await new Promise((r) => setTimeout(r, 1000));
      await lab.stop(b);
      const st = await Promise.race([a.status, new Promise<null>((r) => setTimeout(() => r(null), UP))]);
      assert(st, "the dco instance did not end after its keepalive timeout");
      assertEquals(st.code, 6, a.output().slice(-300));
      assert(/timed out/.test(a.output()), a.output().slice(-300));
      await lab.waitFor(() => ev.output().includes("expired"), UP / 4, "DEL_PEER expired on events");
      assert(ev.output().includes("DEL_PEER"), ev.output());
      // the interface went with the instance
      const links = await lab.run("a", ["ip", "-o", "link", "show"]);
      assert(!links.includes("ovpn-a"), links);
    }),
);

async function selfCmd(): Promise<string[]> {
  const { selfCommand } = await import("../../cmd/netns.ts");
  return selfCommand();
}

// 5. hostile input at the kernel end
await runCase(
  "dco: replays, forged tags, garbage and unknown peer ids are dropped by the kernel",
  () =>
    withLab(async (lab, key) => {
      const { a } = await startPair(lab, {
        upTimeoutMs: UP,
        proto: "udp",
        cipher: "AES-256-GCM",
        keyFile: key,
        extra: STATS,
        extraFor: { a: ["--backend", "dco"], b: ["--backend", "tun"] },
      });
      // the replays repeat packet ids 1-20 of b's: make sure b has used them (and more) first
      await pings(lab, "b", 15);
      const before = await freshStats(lab, a);
      const hostile = new URL("../helpers/hostile.ts", import.meta.url).pathname;
      const out = await lab.run("b", [
        ...[Deno.execPath(), "run", "-A", hostile, lab.outer4.a, "1194", "1194", key, "1", "0", "20", "1"],
      ]);
      const sent = Number(out.trim().split("\n").pop());
      assert(sent >= 80, `hostile sent ${sent}`);
      await pings(lab, "b");
      const after = await freshStats(lab, a);
      const dropped = after.drops["kernel-rx-dropped"] - before.drops["kernel-rx-dropped"];
      const accepted = after.rcvdDataPkts - before.rcvdDataPkts;
      notes.push(`${sent} hostile packets: kernel rx-dropped +${dropped}, delivered +${accepted} (6 pings)`);
      assert(dropped >= 40, `the kernel counted only ${dropped} drops`);
      assert(accepted <= 12, `the kernel delivered ${accepted} packets: forged ones got through`);
      assert(lastStats(a).sentDataPkts > 0, "the kernel end stopped sending");
    }),
);

// 6. server mode on the module with two tun clients
await runCase(
  "dco server (multipeer) with two tun clients: pings, client<->client, stats, route, peer del",
  async () => {
    const lab = await StarLab.create(labIndex++, 2);
    try {
      const keys: string[] = [];
      for (const i of [1, 2]) {
        keys.push(`${lab.runDir}/c${i}.key`);
        await writeNewKeyFile(keys[i - 1]);
      }
      const srv = lab.startTool("s", [
        ...["start", "--mode", "server", "--backend", "dco", "--ifname", "ovpn-srv"],
        ...["--local", `${lab.outer4.s}:1194`, "--ifaddr", "10.77.0.1/24", "--ifaddr", "fd77::1/64"],
        ...["--stats-interval", "0"],
      ]);
      await lab.waitFor(() => srv.output().includes("add peers"), UP, `the server: ${srv.output()}`);
      assert(srv.output().includes("server (dco)"), srv.output());
      const ev = lab.spawn("s", [...(await selfCmd()), "events", "--ifname", "ovpn-srv", "--json"]);
      const t = async (args: string[]) => {
        const r = await lab.tool("s", [...args, "--ifname", "ovpn-srv"]);
        if (r.code !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
        return r.stdout;
      };
      const clients: LabProcess[] = [];
      for (const i of [1, 2]) {
        const c = `c${i}`;
        await t([
          ...["peer", "new", String(i), `${lab.outer4.s}:1194`, `${lab.outer4[c]}:1194`],
          ...["--vpn-ip", `10.77.0.${i + 1}`, "--vpn-ip", `fd77::${i + 1}`],
        ]);
        await t(["key", "new", String(i), "AES-256-GCM", "0", keys[i - 1], "--slot", "primary"]);
        clients.push(lab.startTool(c, [
          ...[
            "start",
            "--backend",
            "tun",
            "--local",
            `${lab.outer4[c]}:1194`,
            "--remote",
            `${lab.outer4.s}:1194`,
          ],
          ...["--peer-id", String(i), "--key", keys[i - 1], "--key-direction", "1", "--ifname", "ovpn0"],
          ...["--ifaddr", `10.77.0.${i + 1}/24`, "--ifaddr", `fd77::${i + 1}/64`, "--stats-interval", "0"],
        ]));
      }
      // a wait that fails with what every process had said by then
      const waitOrSay = (probe: () => boolean | Promise<boolean>, what: string) =>
        lab.waitFor(probe, UP, what).catch((e) => {
          const said = [["server", srv], ["c1", clients[0]], ["c2", clients[1]], ["events", ev]]
            .map(([n, p]) => `--- ${n}:\n${(p as LabProcess).output().slice(-1500)}`);
          throw new Error([e.message, ...said].join("\n"));
        });
      for (const [i, c] of clients.entries()) {
        await waitOrSay(() => c.output().includes("interface ovpn0 up"), `client ${i + 1} up`);
      }
      const ping = (from: string, dst: string, v = "4") =>
        waitOrSay(async () => {
          const p = parsePing(
            await lab.run(from, ["ping", `-${v}`, "-c", "1", "-W", "1", dst], { allowFail: true }),
          );
          return p.received === 1;
        }, `ping ${dst} from ${from}`);
      await ping("c1", "10.77.0.1");
      await ping("c2", "10.77.0.1");
      // the keepalive only now: a client that took longer than its timeout to start (under emulation on a busy
      // host) would have been expired by the module before it sent a packet (the module's clock starts at set)
      for (const i of [1, 2]) await t(["peer", "set", "--peer-id", String(i), "--keepalive", "10,60"]);
      await ping("s", "fd77::2", "6");
      await ping("c1", "10.77.0.3"); // client to client through the server's kernel
      // a subnet behind client 2, routed by the module through its VPN address
      await lab.run("c2", ["ip", "addr", "add", "192.168.77.1/32", "dev", "lo"]);
      await t(["route", "add", "2", "192.168.77.0/24"]);
      await ping("s", "192.168.77.1");
      const all = JSON.parse(await t(["stats", "--all", "--json"]));
      notes.push(`stats --all: ${JSON.stringify(all).slice(0, 160)}`);
      const list = await t(["peer", "list"]);
      assert(list.includes("10.77.0.2") && list.includes("10.77.0.3"), list);
      const p1 = JSON.parse(await t(["stats", "--peer-id", "1", "--json"]));
      assert(p1.rcvdDataPkts > 0 && p1.sentDataPkts > 0, JSON.stringify(p1));
      await t(["peer", "del", "--peer-id", "1"]);
      await lab.waitFor(
        () => /DEL_PEER.*"peerId":1|"peerId":1.*DEL_PEER/.test(ev.output()),
        UP / 4,
        "DEL_PEER of peer 1",
      );
      const after = parsePing(
        await lab.run("c1", ["ping", "-c", "2", "-W", "1", "10.77.0.1"], { allowFail: true }),
      );
      assertEquals(after.received, 0, "peer 1 still reaches the server after peer del");
      await ping("c2", "10.77.0.1");
      // keepalive expiry of a server peer: the module deletes it and says so (PEER_DEL_NTF, expired)
      await t(["peer", "set", "--peer-id", "2", "--keepalive", "1,4"]);
      await lab.stop(clients[1]);
      await lab.waitFor(
        () => /"peerId":2[^\n]*expired|expired[^\n]*"peerId":2/.test(ev.output()),
        UP / 2,
        `DEL_PEER expired of peer 2 on events: ${ev.output()}`,
      );
      const left = await t(["peer", "list"]);
      assert(!left.includes("10.77.0.3"), left);
    } finally {
      await lab.destroy();
    }
  },
);

// 7. bad input in the guest: epoch keys on the kernel backend
await runCase(
  "dco: --epoch with --backend dco is one clear line, exit 2; auto takes tun and says why; restart after SIGKILL",
  () =>
    withLab(async (lab, key) => {
      const r = await lab.tool("a", [
        ...["start", "--backend", "dco", "--epoch", "--key", key, "--remote", `${lab.outer4.b}:1194`],
        ...["--ifname", "ovpn-a"],
      ]);
      assertEquals(r.code, 2, r.stderr);
      const lines = r.stderr.trim().split("\n");
      assertEquals(lines.length, 1, r.stderr);
      assert(/--backend dco: .*epoch/.test(lines[0]), lines[0]);
      const auto = lab.startTool("a", [
        ...["start", "--epoch", "--key", key, "--remote", `${lab.outer4.b}:1194`, "--ifname", "ovpn-a"],
        ...["--stats-interval", "0"],
      ]);
      await lab.waitFor(
        () => auto.output().includes("tun: interface"),
        UP,
        `auto on tun: ${auto.output()}`,
      );
      assert(/backend auto: .*epoch.*using tun/.test(auto.output()), auto.output());
      const ok = lab.startTool("b", [
        ...[
          "start",
          "--key",
          key,
          "--remote",
          `${lab.outer4.a}:1194`,
          "--ifname",
          "ovpn-b",
          "--key-direction",
          "1",
        ],
        ...["--stats-interval", "0"],
      ]);
      await lab.waitFor(() => ok.output().includes("dco: interface"), UP, `auto on dco: ${ok.output()}`);
      assert(ok.output().includes("backend auto: using Linux's ovpn module"), ok.output());
      // killed hard, it leaves its ovpn interface behind; the next start on that name removes it and comes up
      ok.child.kill("SIGKILL");
      await ok.status;
      assert((await lab.run("b", ["ip", "-o", "link", "show", "ovpn-b"])).includes("ovpn-b"));
      const again = lab.startTool("b", [
        ...[
          "start",
          "--backend",
          "dco",
          "--key",
          key,
          "--remote",
          `${lab.outer4.a}:1194`,
          "--ifname",
          "ovpn-b",
        ],
        ...["--key-direction", "1", "--stats-interval", "0"],
      ]);
      await lab.waitFor(() => again.output().includes("dco: interface"), UP, `restart: ${again.output()}`);
      assert(again.output().includes("left behind by an earlier run"), again.output());
    }),
);

await Deno.writeTextFile(resultsFile, JSON.stringify(results, null, 1));
const failed = Object.values(results).filter((r) => !r.ok).length;
console.log(`kernel cases: ${Object.keys(results).length - failed} passed, ${failed} failed`);
Deno.exit(failed ? 1 : 0);
