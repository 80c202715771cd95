/**
 * A restarted peer (issue 18): one end killed with SIGKILL and started again with the same key leaves nothing
 * behind that blocks its next start (interface, control socket), and the other end, which rightly refuses its
 * packet ids that start over, says once and within seconds that the peer restarted and what to do. The refused
 * packets are never accepted.
 */
import { assert, assertMatch } from "./assert.ts";
import { NetnsLab, selfCommand } from "../cmd/netns.ts";
import { startPair } from "../cmd/demo.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";

Deno.test({
  name:
    "restart: a peer killed and started again with the same key comes up, and the other end names the restart",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const lab = await NetnsLab.create(143);
    try {
      const key = `${lab.runDir}/k.key`;
      await writeNewKeyFile(key);
      const { a, b } = await startPair(lab, {
        proto: "udp",
        cipher: "AES-256-GCM",
        keyFile: key,
        extra: ["--stats-interval", "1", "--json"],
      });
      const events = lab.spawn("a", [...selfCommand(), "events", "--ifname", "ovpn-a", "--json"]);
      await lab.waitFor(() => events.output().includes("listening"), 20000, "events");
      // b's packet ids move well past what a restart starts again with
      await lab.run("b", ["ping", "-c", "400", "-i", "0.005", "-W", "1", lab.inner4.a], { allowFail: true });
      b.child.kill("SIGKILL");
      await b.status;
      const again = lab.startTool("b", [
        ...[
          "start",
          "--ifname",
          "ovpn-b",
          "--local",
          `${lab.outer4.b}:1194`,
          "--remote",
          `${lab.outer4.a}:1194`,
        ],
        ...["--ifaddr", `${lab.inner4.b}/24`, "--ifaddr", `${lab.inner6.b}/64`, "--key-direction", "1"],
        ...["--proto", "udp", "--cipher", "AES-256-GCM", "--key", key, "--stats-interval", "0"],
      ]);
      await lab.waitFor(
        () => again.output().includes("tun: interface ovpn-b up"),
        30000,
        `the restart: ${again.output()}`,
      );
      /** The first statistics line a prints from now on. */
      const fresh = async () => {
        const from = a.output().length;
        await lab.waitFor(() => a.output().slice(from).includes('"ifname"'), 10000, "a statistics line");
        return a.output().slice(from).split("\n").filter((l) => l.startsWith("{")).pop()!;
      };
      const before = await fresh();
      // b sends again, from packet id 1: a refuses every one of them and says why, once
      await lab.run("b", ["ping", "-c", "40", "-i", "0.1", "-W", "1", lab.inner4.a], { allowFail: true });
      await lab.waitFor(
        () => a.output().includes("the peer restarted with the same key"),
        20000,
        `the diagnosis at a: ${a.output().slice(-600)}`,
      );
      assertMatch(a.output(), /Restart this end too, or move both ends to a new key/);
      // and on `events`, once
      await lab.waitFor(
        () => events.output().includes('"event":"NOTICE"'),
        10000,
        `the notice on events: ${events.output()}`,
      );
      assert(
        events.output().split("\n").filter((l) => l.includes("restarted with the same key")).length === 1,
      );
      assert(a.output().split("\n").filter((l) => l.includes("restarted with the same key")).length === 1);
      const after = JSON.parse(await fresh());
      const prior = JSON.parse(before);
      // every reused id was refused as a replay (an id that a never saw before is new, and rightly accepted)
      assert(after.drops.replay - (prior.drops.replay ?? 0) >= 30, JSON.stringify(after));
      assert(
        after.rcvdDataPkts - prior.rcvdDataPkts <= 10,
        `accepted after the restart: ${before} → ${JSON.stringify(after)}`,
      );
    } finally {
      await lab.destroy();
    }
  },
});

Deno.test({
  name: "restart: a server names a client that restarted with the same key (log and events), once",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { StarLab } = await import("../cmd/netns.ts");
    const { starClientArgs } = await import("./lab.ts");
    const lab = await StarLab.create(152, 1);
    try {
      const SRV = "ovpn-srv";
      const srv = lab.startTool("s", [
        ...["start", "--mode", "server", "--local", `${lab.outer4.s}:1194`, "--ifname", SRV],
        ...["--ifaddr", "10.81.0.1/24", "--stats-interval", "0"],
      ]);
      const t = async (args: string[]) => {
        const r = await lab.tool("s", [...args, "--ifname", SRV]);
        if (r.code !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
      };
      await lab.waitFor(
        async () => (await lab.tool("s", ["peer", "list", "--ifname", SRV])).code === 0,
        30000,
        "server",
      );
      const events = lab.spawn("s", [...selfCommand(), "events", "--ifname", SRV, "--json"]);
      const key = `${lab.runDir}/c1.key`;
      await writeNewKeyFile(key);
      await t(["peer", "new", "1", `${lab.outer4.s}:1194`, `${lab.outer4.c1}:1194`, "--vpn-ip", "10.81.0.2"]);
      await t(["key", "new", "1", "AES-256-GCM", "0", key, "--slot", "primary"]);
      const args = starClientArgs({
        local: `${lab.outer4.c1}:1194`,
        server: `${lab.outer4.s}:1194`,
        peerId: 1,
        addr4: "10.81.0.2",
        addr6: "fd81::2",
        key,
        proto: "udp",
      });
      const c = lab.startTool("c1", args);
      await lab.waitFor(
        async () => {
          const out = await lab.run("c1", ["ping", "-c", "1", "-W", "1", "10.81.0.1"], { allowFail: true });
          return out.includes(" 0% packet loss");
        },
        30000,
        "client 1",
      );
      await lab.run("c1", ["ping", "-c", "300", "-i", "0.005", "-W", "1", "10.81.0.1"], { allowFail: true });
      c.child.kill("SIGKILL");
      await c.status;
      lab.startTool("c1", args);
      await new Promise((r) => setTimeout(r, 1500));
      await lab.run("c1", ["ping", "-c", "40", "-i", "0.1", "-W", "1", "10.81.0.1"], { allowFail: true });
      await lab.waitFor(
        () => events.output().includes("the peer restarted with the same key"),
        20000,
        `the notice: ${events.output()} / ${srv.output().slice(-400)}`,
      );
      assertMatch(
        srv.output(),
        /peer 1: nothing from the peer gets through: \d+ of its packets are authentic/,
      );
      assert(
        events.output().split("\n").filter((l) => l.includes('"event":"NOTICE"')).length === 1,
        events.output(),
      );
    } finally {
      await lab.destroy();
    }
  },
});
