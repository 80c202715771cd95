/**
 * Server mode end to end (Linux, root): one server instance (`start --mode server`) and three clients
 * (point-to-point instances), each client in its own network namespace around a bridge. Pings server ↔
 * client and client ↔ client over IPv4 and IPv6, three verified transfers at once, an iroute, per-peer
 * statistics that add up, and the notifications: `peer del`, keepalive expiry of a frozen client, a client
 * that comes back from a new port (float).
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { selfCommand, StarLab } from "../cmd/netns.ts";
import { parsePing } from "../cmd/demo.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";
import { starClientArgs, verifiedTransfer } from "./lab.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const SRV = "ovpn-srv";
const vpn4 = (i: number) => `10.77.0.${i + 1}`; // 0: the server
const vpn6 = (i: number) => `fd77::${i + 1}`;

for (const proto of ["udp", "tcp"] as const) {
  Deno.test({
    ...opts,
    name:
      `server mode (${proto}): three clients; pings, client to client, three transfers at once, iroute, per-peer stats, peer del, expiry and ${
        proto === "udp" ? "float" : "TCP close"
      } events`,
    async fn() {
      const lab = await StarLab.create(proto === "udp" ? 90 : 93, 3);
      const tcpAnyPort = (i: number) => proto === "tcp" && i === 3;
      const P = ["--proto", proto];
      try {
        const srv = async (args: string[]) => {
          const r = await lab.tool("s", [...args, "--ifname", SRV]);
          assertEquals(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
          return r;
        };
        const ping = async (host: string, dst: string, n = 2) =>
          parsePing(
            await lab.run(host, ["ping", "-c", String(n), "-i", "0.2", "-W", "2", dst], { allowFail: true }),
          )
            .received;
        const server = lab.startTool("s", [
          ...["start", "--mode", "server", "--local", `${lab.outer4.s}:1194`, "--ifname", SRV, ...P],
          ...["--ifaddr", `${vpn4(0)}/24`, "--ifaddr", `${vpn6(0)}/64`, "--stats-interval", "0"],
        ]);
        await lab.waitFor(
          async () => (await lab.tool("s", ["peer", "list", "--ifname", SRV])).code === 0,
          20000,
          `the server (${server.output()})`,
        );
        const events = lab.spawn("s", [...selfCommand(), "events", "--ifname", SRV, "--json"]);
        const eventLines = () =>
          events.output().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
        const keys: string[] = [];
        const clients: ReturnType<typeof lab.startTool>[] = [];
        const startClient = (i: number, port: number, key: string) =>
          lab.startTool(
            lab.clients[i - 1],
            starClientArgs({
              local: `${lab.outer4[lab.clients[i - 1]]}:${port}`,
              server: `${lab.outer4.s}:1194`,
              peerId: i,
              addr4: vpn4(i),
              addr6: vpn6(i),
              key,
              proto,
            }),
          );
        for (let i = 1; i <= 3; i++) {
          const c = lab.clients[i - 1];
          const k = `${lab.runDir}/k${i}.key`;
          await writeNewKeyFile(k);
          keys.push(k);
          await srv([
            // TCP: client 3 is named without its port (0: any source port of its address)
            ...[
              "peer",
              "new",
              String(i),
              `${lab.outer4.s}:1194`,
              `${lab.outer4[c]}:${tcpAnyPort(i) ? 0 : 1194}`,
            ],
            ...["--vpn-ip", vpn4(i), "--vpn-ip", vpn6(i), ...P],
          ]);
          await srv(["key", "new", String(i), "AES-256-GCM", "0", k, "--slot", "primary"]);
          await srv(["peer", "set", "--peer-id", String(i), "--keepalive", i === 2 ? "1,3" : "1,30"]);
          clients.push(startClient(i, 1194, k));
        }
        for (let i = 1; i <= 3; i++) {
          const c = lab.clients[i - 1];
          if (tcpAnyPort(i)) {
            // once connected, the peer shows the port it came from
            await lab.waitFor(
              async () =>
                JSON.parse((await srv(["peer", "list", "--json"])).stdout).find((p: { peerId: number }) =>
                  p.peerId === i
                ).remote.port === 1194,
              20000,
              `client ${i}'s TCP connection`,
            );
          }
          await lab.waitFor(
            async () => (await ping(c, vpn4(0), 1)) === 1,
            20000,
            `client ${i} reaching the server`,
          );
        }
        // server ↔ client and client ↔ client (through the server), IPv4 and IPv6
        assertEquals(await ping("c1", vpn6(0)), 2);
        assertEquals(await ping("s", vpn4(2)), 2);
        assertEquals(await ping("s", vpn6(3)), 2);
        assertEquals(await ping("c1", vpn4(3)), 2);
        assertEquals(await ping("c3", vpn6(2)), 2);
        // three verified 10 MB transfers at once, client → server
        await Promise.all(
          [1, 2, 3].map((i) =>
            verifiedTransfer(lab, vpn4(0), 10 * 1024 * 1024, 5400 + i, lab.clients[i - 1], "s")
          ),
        );
        // a subnet behind client 1, reached from client 2 through the server
        await lab.run("c1", ["ip", "addr", "add", "192.168.77.1/32", "dev", "lo"]);
        await srv(["route", "add", "1", "192.168.77.0/24"]);
        await lab.run("s", ["ip", "route", "add", "192.168.77.0/24", "dev", SRV]);
        await lab.run("c2", ["ip", "route", "add", "192.168.77.0/24", "dev", "ovpn-c"]);
        assertEquals(await ping("c2", "192.168.77.1"), 2);
        // client 2 sends with client 1's VPN address as its source: authentic, but not its own address, so the
        // server drops it (counted, "bad-source") instead of writing it to its tun and replying to client 1
        const drops2 = async () =>
          JSON.parse((await srv(["stats", "--peer-id", "2", "--json"])).stdout).drops?.["bad-source"] ?? 0;
        const spoof0 = await drops2();
        await lab.run("c2", ["ip", "addr", "add", `${vpn4(1)}/32`, "dev", "lo"]);
        await lab.run("c2", ["ping", "-I", vpn4(1), "-c", "3", "-i", "0.2", "-W", "1", vpn4(0)], {
          allowFail: true,
        });
        await lab.run("c2", ["ip", "addr", "del", `${vpn4(1)}/32`, "dev", "lo"]);
        assertEquals((await drops2()) - spoof0, 3, "spoofed packets from client 2 dropped at the server");
        assertEquals(await ping("c2", vpn4(0)), 2); // its own address still works
        // per-peer statistics add up to the device's
        const all = JSON.parse((await srv(["stats", "--all", "--json"])).stdout);
        for (const f of ["rcvdDataPkts", "sentDataPkts", "tunBytesReceived"]) {
          const sum = all.peers.reduce(
            (a: number, p: { stats: Record<string, number> }) => a + p.stats[f],
            0,
          );
          assertEquals(sum, all.total[f], `${f}: peers ${sum}, device ${all.total[f]}`);
        }
        assert(all.peers.every((p: { stats: Record<string, number> }) => p.stats.rcvdDataPkts > 1000));
        // the offloads worked for the server too: the clients' TCP segments were joined into the server's tun,
        // and over UDP the clients' joined sends arrived as UDP_GRO trains
        const info = all.device;
        assert(info.offload?.joinedSuperPackets > 100, `server tun joins: ${JSON.stringify(info.offload)}`);
        if (proto === "udp") {
          assert(info.udpOffload?.groReceives > 100, `server UDP_GRO: ${JSON.stringify(info.udpOffload)}`);
        }
        // peer del of client 3: its event; the others go on
        await srv(["peer", "del", "--peer-id", "3"]);
        await lab.waitFor(
          () => eventLines().some((e) => e.event === "DEL_PEER" && e.peerId === 3),
          5000,
          "the DEL_PEER event of peer 3",
        );
        assertEquals(eventLines().find((e) => e.event === "DEL_PEER" && e.peerId === 3).reason, "userspace");
        assertEquals(await ping("c1", vpn4(0)), 2);
        assertEquals(await ping("c3", vpn4(0), 2), 0);
        // client 2 frozen: expired within its timeout (3 s) + 2 s; client 1 unaffected
        clients[1].child.kill("SIGSTOP");
        const t0 = Date.now();
        try {
          await lab.waitFor(
            () => eventLines().some((e) => e.peerId === 2 && e.reason === "expired"),
            8000,
            "peer 2 to expire",
          );
          assert(Date.now() - t0 <= 5500, `expired after ${Date.now() - t0} ms`);
        } finally {
          clients[1].child.kill("SIGCONT");
        }
        assertEquals(await ping("c1", vpn4(0)), 2);
        if (proto === "tcp") {
          // a client that goes away closes its connection: DEL_PEER, transport-disconnect
          await lab.stop(clients[0]);
          await lab.waitFor(
            () => eventLines().some((e) => e.peerId === 1 && e.reason === "transport-disconnect"),
            5000,
            "the TCP close of peer 1",
          );
          assertEquals(JSON.parse((await srv(["peer", "list", "--json"])).stdout), []);
          return;
        }
        // client 1 comes back from a new port with the same keys (its packet ids go on above the old ones)
        await lab.stop(clients[0]);
        const raw = Uint8Array.from(
          atob((await Deno.readTextFile(keys[0])).replace(/\s+/g, "")),
          (c) => c.charCodeAt(0),
        );
        const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
        const json = `${lab.runDir}/k1-again.json`;
        await Deno.writeTextFile(
          json,
          JSON.stringify({
            cipher: "AES-256-GCM",
            peerId: 1,
            firstPacketId: 1_000_000,
            encrypt: { key: hex(raw.slice(32, 64)), nonceTail: hex(raw.slice(64, 72)) },
            decrypt: { key: hex(raw.slice(0, 32)), nonceTail: hex(raw.slice(64, 72)) },
          }),
        );
        clients[0] = startClient(1, 1195, json);
        await lab.waitFor(
          async () => (await ping("c1", vpn4(0), 1)) === 1,
          20000,
          "client 1 back from port 1195",
        );
        await lab.waitFor(
          () => eventLines().some((e) => e.event === "FLOAT_PEER" && e.peerId === 1),
          5000,
          "the FLOAT event",
        );
        assertMatch(eventLines().find((e) => e.event === "FLOAT_PEER").address, `${lab.outer4.c1}:1195`);
        assertEquals(await ping("s", vpn4(1)), 2); // the server now sends to the new port
        const list = JSON.parse((await srv(["peer", "list", "--json"])).stdout);
        assertEquals(list.map((p: { peerId: number }) => p.peerId), [1]);
        assertEquals(list[0].remote.port, 1195);
      } finally {
        await lab.destroy();
      }
    },
  });
}

Deno.test({
  ...opts,
  name: "server mode: bad requests get one clear line each and change nothing",
  async fn() {
    const lab = await StarLab.create(91, 1);
    try {
      lab.startTool("s", [
        "start",
        "--mode",
        "server",
        "--local",
        `${lab.outer4.s}:1194`,
        "--ifname",
        SRV,
        "--stats-interval",
        "0",
      ]);
      await lab.waitFor(
        async () => (await lab.tool("s", ["peer", "list", "--ifname", SRV])).code === 0,
        20000,
        "the server",
      );
      const key = `${lab.runDir}/k.key`;
      await writeNewKeyFile(key);
      const c = `${lab.outer4.c1}:1194`, me = `${lab.outer4.s}:1194`;
      assertEquals(
        (await lab.tool("s", ["peer", "new", "1", me, c, "--vpn-ip", "10.77.0.2", "--ifname", SRV])).code,
        0,
      );
      assertEquals(
        (await lab.tool("s", ["peer", "new", "2", me, c, "--vpn-ip", "10.77.0.3", "--ifname", SRV])).code,
        0,
      );
      assertEquals((await lab.tool("s", ["route", "add", "1", "192.168.5.0/24", "--ifname", SRV])).code, 0);
      const table: [string[], string][] = [
        [["peer", "new", "3", me, c], "peer new on a server needs --vpn-ip"],
        [["peer", "new", "1", me, c, "--vpn-ip", "10.77.0.9"], "peer id 1 is already in use"],
        [
          ["peer", "new", "3", me, c, "--vpn-ip", "10.77.0.2"],
          "the route 10.77.0.2/32 is already held by peer 1",
        ],
        [
          ["peer", "new", "3", me, "[fd00::9]:1194", "--vpn-ip", "10.77.0.9"],
          "is not of the server socket's IP version",
        ],
        [
          ["peer", "new", "3", me, c, "--vpn-ip", "10.77.0.9", "--proto", "tcp"],
          "this server serves UDP peers",
        ],
        [
          ["peer", "new", "3", me, `${lab.outer4.c1}:0`, "--vpn-ip", "10.77.0.9"],
          "a UDP peer needs its port",
        ],
        [["key", "new", "9", "AES-256-GCM", "0", key], "no peer 9"],
        [["key", "swap"], "key swap on a server needs --peer-id N"],
        [["peer", "set", "--keepalive", "5,30"], "peer set on a server needs --peer-id N"],
        [["peer", "del"], "peer del on a server needs --peer-id N"],
        [["stats", "--peer-id", "7"], "no peer 7"],
        [["route", "add", "2", "192.168.5.0/24"], "the route 192.168.5.0/24 is already held by peer 1"],
        [["route", "del", "2", "192.168.5.0/24"], "peer 2 has no route 192.168.5.0/24"],
        [["key", "epoch", "--peer-id", "1"], "peer 1's primary key does not use epoch data keys"],
      ];
      for (const [args, msg] of table) {
        const r = await lab.tool("s", [...args, "--ifname", SRV]);
        assertEquals(r.code, 5, `${args.join(" ")}: ${r.stderr}`);
        assertMatch(r.stderr, msg);
        assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
      }
      const list = JSON.parse((await lab.tool("s", ["peer", "list", "--json", "--ifname", SRV])).stdout);
      assertEquals(list.map((p: { peerId: number; iroutes: string[] }) => [p.peerId, p.iroutes]), [
        [1, ["192.168.5.0/24"]],
        [2, []],
      ]);
    } finally {
      await lab.destroy();
    }
  },
});
