/**
 * Careless users against a running point-to-point tunnel (two namespaces): each mistake gets one clear line and
 * changes nothing, and the tool's output never kills the tunnel. Each check here failed before its fix (issue 17):
 * `key swap` with an empty secondary slot said "keys swapped" and stopped all traffic; `key del` of an empty slot
 * said "deleted"; `key new 5 ...` silently changed the tunnel's peer id; `peer get` showed the last installed key's
 * cipher and raw JSON; `peer set --keepalive -1,40` failed in the parser; `stats --watch` exited 130 on Ctrl-C;
 * `stats | head` printed "internal error"; `start ... | head` died of a broken pipe.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { NetnsLab, selfCommand } from "../cmd/netns.ts";
import { parsePing, startPair } from "../cmd/demo.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";

Deno.test({
  name:
    "careless users: empty-slot swap/del and a foreign peer id refused, peer get plain and right, -1 keepalive, stats --watch and closed pipes",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const lab = await NetnsLab.create(140);
    try {
      const key = `${lab.runDir}/k.key`, next = `${lab.runDir}/n.key`;
      await writeNewKeyFile(key);
      await writeNewKeyFile(next);
      // a runs the node provider (no AES-192-GCM there): a key it cannot do is refused, not installed
      await startPair(lab, {
        proto: "udp",
        cipher: "AES-256-GCM",
        keyFile: key,
        extraFor: { a: ["--crypto", "node"] },
      });
      const tool = (args: string[]) => lab.tool("a", [...args, "--ifname", "ovpn-a"]);
      const pings = async () =>
        parsePing(
          await lab.run("a", ["ping", "-c", "2", "-i", "0.2", "-W", "2", lab.inner4.b], { allowFail: true }),
        )
          .received;
      const refused = async (args: string[], fragment: string) => {
        const r = await tool(args);
        assertEquals(r.code, 5, `${args.join(" ")}: ${r.stderr}`);
        assertMatch(r.stderr, fragment);
        assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
        assertEquals(await pings(), 2, `the tunnel after '${args.join(" ")}'`);
      };
      await refused(["key", "swap"], "secondary slot is empty");
      await refused(["key", "del", "--slot", "secondary"], "secondary slot is empty; nothing to delete");
      await refused(["key", "new", "5", "AES-256-GCM", "0", next, "--key-id", "1"], "peer has id 0, not 5");
      await refused(
        ["key", "new", "0", "AES-192-GCM", "0", next, "--key-id", "1"],
        "'node' cannot do AES-192-GCM",
      );
      // a local client that sends key.new with a short key or non-hex bytes straight to the control socket gets
      // one error each and the tunnel keeps its keys (a short key used to end the tunnel at the next packet)
      const control = new URL("../driver/control.ts", import.meta.url).pathname;
      for (const [k, want] of [["00", "must have 32"], ["zz", "is not hex"]]) {
        const script = `import { controlRequest } from "${control}";
          const r = await controlRequest("ovpn-a", { cmd: "key.new", slot: 0, peerId: 0, key: { cipher: "AES-256-GCM",
            keyId: 0, encryptKey: "${k}", encryptNonceTail: "0011223344556677", decryptKey: "${k}",
            decryptNonceTail: "0011223344556677" } });
          console.log(JSON.stringify(r));`;
        const out = await lab.run("a", [
          "env",
          `OVPN_DCO_CLI_RUNDIR=${lab.runDir}/a`,
          Deno.execPath(),
          "eval",
          script,
        ]);
        const r = JSON.parse(out.trim().split("\n").pop()!);
        assertEquals(r.ok, false, out);
        assertMatch(r.error, want);
        assertEquals(await pings(), 2, "the tunnel after a bad key.new");
      }
      // a secondary key of another cipher: peer get still shows the primary's, as plain lines
      const nk = await tool(["key", "new", "0", "CHACHA20-POLY1305", "0", next, "--key-id", "1"]);
      assertEquals(nk.code, 0, nk.stderr);
      const get = await tool(["peer", "get"]);
      assertEquals(get.code, 0, get.stderr);
      assertMatch(get.stdout, /^cipher: AES-256-GCM$/m);
      assertMatch(get.stdout, /^secondaryKeyId: 1$/m);
      assertMatch(
        get.stdout,
        new RegExp(`^peer\\.remote: ${lab.outer4.b.replaceAll(".", "\\.")}:1194$`, "m"),
      );
      assert(!/[{}]/.test(get.stdout), `raw JSON in peer get:\n${get.stdout}`);
      // -1 leaves a value unchanged, typed as documented (no '=')
      const set = await tool(["peer", "set", "--keepalive", "-1,40"]);
      assertEquals(set.code, 0, set.stderr);
      const after = JSON.parse((await tool(["peer", "get", "--json"])).stdout).info;
      assertEquals([after.keepaliveInterval, after.keepaliveTimeout], [10, 40]);
      // stats --watch ends with exit 0 on Ctrl-C, as events does
      const watch = lab.spawn("a", [...selfCommand(), "stats", "--watch", "--ifname", "ovpn-a"], {
        OVPN_DCO_CLI_RUNDIR: `${lab.runDir}/a`,
      });
      await lab.waitFor(() => watch.output().includes("rcvdDataPkts"), 20000, "stats --watch output");
      watch.child.kill("SIGINT");
      assertEquals((await watch.status).code, 0, watch.output().slice(-300));
      // stats | head: the reader goes away; no "internal error", exit 0
      const rd = `OVPN_DCO_CLI_RUNDIR=${lab.runDir}/a`;
      const head = await lab.run("a", [
        "bash",
        "-c",
        `env ${rd} ${selfCommand().join(" ")} stats --ifname ovpn-a | head -n 1; exit \${PIPESTATUS[0]}`,
      ], { allowFail: true });
      assert(!/internal error|BrokenPipe|at /.test(head), head);
      // a tunnel whose stdout is closed keeps running (and says once that it stopped printing)
      const c = lab.spawn("b", [
        "bash",
        "-c",
        `${
          selfCommand().join(" ")
        } start --ifname ovpn-c --local ${lab.outer4.b}:1195 --remote ${lab.outer4.a}:1195 --ifaddr 10.199.0.2/30 --key ${key} --key-direction 1 --stats-interval 1 | head -n 2`,
      ], { OVPN_DCO_CLI_RUNDIR: `${lab.runDir}/b` });
      const d = lab.startTool("a", [
        ...[
          "start",
          "--ifname",
          "ovpn-d",
          "--local",
          `${lab.outer4.a}:1195`,
          "--remote",
          `${lab.outer4.b}:1195`,
        ],
        ...["--ifaddr", "10.199.0.1/30", "--key", key, "--key-direction", "0", "--stats-interval", "0"],
      ]);
      await lab.waitFor(
        () => c.output().includes("stdout closed"),
        20000,
        `the pipe to close: ${c.output()}`,
      );
      await new Promise((r) => setTimeout(r, 2500)); // more ticks with nowhere to print
      const p = parsePing(
        await lab.run("a", ["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.199.0.2"], { allowFail: true }),
      );
      assertEquals(p.received, 2, `the tunnel with a closed stdout: ${c.output().slice(-400)}`);
      assert(!/BrokenPipe|internal error|\n\s+at /.test(c.output()), c.output());
      await lab.stop(d);
    } finally {
      await lab.destroy();
    }
  },
});

Deno.test("careless users: start --help names \\\\.\\ovpn-dco correctly", async () => {
  const out = await new Deno.Command(selfCommand()[0], {
    args: [...selfCommand().slice(1), "start", "--help"],
    stdout: "piped",
  }).output();
  assertMatch(new TextDecoder().decode(out.stdout), /\\\\\.\\ovpn-dco, the first adapter/);
});

Deno.test("careless users: the ./ovpn-dco-cli launcher runs the tool from a checkout, also through a symlink", async () => {
  const launcher = new URL("../ovpn-dco-cli", import.meta.url).pathname;
  const dir = await Deno.makeTempDir();
  try {
    await Deno.symlink(launcher, `${dir}/ovpn-dco-cli`);
    for (const cmd of [launcher, `${dir}/ovpn-dco-cli`]) {
      const out = await new Deno.Command(cmd, { args: ["--version"], stdout: "piped", cwd: dir }).output();
      assertEquals(out.code, 0);
      assertMatch(new TextDecoder().decode(out.stdout), /^ovpn-dco-cli \d+\.\d+\.\d+/);
    }
    const k = await new Deno.Command(`${dir}/ovpn-dco-cli`, {
      args: ["genkey", `${dir}/k.key`],
      stderr: "piped",
    })
      .output();
    assertEquals(k.code, 0);
    assert((await Deno.stat(`${dir}/k.key`)).size >= 96); // 72 bytes, base64
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "careless users: a wrong key direction is named within seconds, and the keepalive timeout says so too",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const lab = await NetnsLab.create(141);
    try {
      const key = `${lab.runDir}/k.key`;
      await writeNewKeyFile(key);
      const inst = (s: "a" | "b", extra: string[]) =>
        lab.startTool(s, [
          ...["start", "--ifname", `ovpn-${s}`, "--local", `${lab.outer4[s]}:1194`],
          ...["--remote", `${lab.outer4[s === "a" ? "b" : "a"]}:1194`, "--ifaddr", `${lab.inner4[s]}/24`],
          ...["--key", key, "--key-direction", "0", "--stats-interval", "0", ...extra], // both 0: wrong
        ]);
      const a = inst("a", ["--keepalive", "1,8"]);
      inst("b", ["--keepalive", "1,60"]);
      await lab.waitFor(
        () => a.output().includes("nothing from the peer gets through"),
        20000,
        `the diagnosis: ${a.output()}`,
      );
      assertMatch(a.output(), /packets fail authentication.*opposite --key-direction/);
      const st = await a.status;
      assertEquals(st.code, 6, a.output());
      assertMatch(
        a.output(),
        /peer timed out: .*nothing authentic received.*while \d+ of its packets fail authentication/,
      );
      assert(!a.output().includes("check that the peer runs"), a.output());
    } finally {
      await lab.destroy();
    }
  },
});

Deno.test({
  name:
    "careless users: a TCP client started before its listener connects once the listener is up (within --connect-timeout)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const lab = await NetnsLab.create(142);
    try {
      const key = `${lab.runDir}/k.key`;
      await writeNewKeyFile(key);
      const inst = (s: "a" | "b", extra: string[]) =>
        lab.startTool(s, [
          ...[
            "start",
            "--proto",
            "tcp",
            "--ifname",
            `ovpn-${s}`,
            "--local",
            `${lab.outer4[s]}:${s === "a" ? 0 : 1194}`,
          ],
          ...["--remote", `${lab.outer4[s === "a" ? "b" : "a"]}:${s === "a" ? 1194 : 0}`],
          ...["--ifaddr", `${lab.inner4[s]}/24`, "--key", key, "--key-direction", s === "a" ? "0" : "1"],
          ...["--stats-interval", "0", ...extra],
        ]);
      const a = inst("a", ["--connect-timeout", "30"]); // the client first: nothing listens yet
      await lab.waitFor(
        () => a.output().includes("refuses TCP connections"),
        20000,
        `the retry: ${a.output()}`,
      );
      inst("b", ["--listen"]);
      await lab.waitFor(() => a.output().includes("TCP connected"), 30000, `the connection: ${a.output()}`);
      await lab.waitFor(
        async () => {
          const p = parsePing(
            await lab.run("a", ["ping", "-c", "1", "-W", "1", lab.inner4.b], { allowFail: true }),
          );
          return p.received === 1;
        },
        20000,
        "a ping through the tunnel",
      );
    } finally {
      await lab.destroy();
    }
  },
});

Deno.test({
  name: "careless users: out of file descriptors, the control socket keeps serving; idle clients are closed",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const run = await Deno.makeTempDir();
    const env = { OVPN_DCO_CLI_RUNDIR: run };
    // an instance with few file descriptors (96, set once it runs: Deno's own start, loading modules in
    // parallel, may need more on a busy machine), no peer: its control socket is all there is
    const inst = new Deno.Command(selfCommand()[0], {
      args: [...selfCommand().slice(1), "start", "--ifname", "ovt-fd", "--stats-interval", "0"],
      env,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const conns: Deno.Conn[] = [];
    try {
      const sock = `${run}/net-${Deno.statSync("/proc/self/ns/net").ino}/ovt-fd.sock`;
      let ended: Deno.CommandStatus | null = null;
      inst.status.then((st) => (ended = st));
      for (let i = 0; i < 300 && !(await Deno.stat(sock).catch(() => null)); i++) {
        if (ended) {
          const o = await inst.output();
          throw new Error(
            `the instance ended at start (exit ${o.code}): ${new TextDecoder().decode(o.stderr)}`,
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      const lim = await new Deno.Command("prlimit", { args: ["--pid", String(inst.pid), "--nofile=96:96"] })
        .output();
      assert(lim.success, `prlimit: ${new TextDecoder().decode(lim.stderr)}`);
      // 120 idle connections: more than the instance has descriptors for
      for (let i = 0; i < 120; i++) {
        conns.push(await Deno.connect({ transport: "unix", path: sock }));
      }
      await new Promise((r) => setTimeout(r, 11_000)); // the idle timeout (10 s) closes them
      const st = await new Deno.Command(selfCommand()[0], {
        args: [...selfCommand().slice(1), "stats", "--ifname", "ovt-fd", "--json"],
        env,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const alive = await Promise.race([
        inst.status.then(() => false),
        new Promise((r) => setTimeout(() => r(true), 10)),
      ]);
      if (!alive) {
        const o = await inst.output();
        throw new Error(
          `the instance ended (exit ${o.code}): ${new TextDecoder().decode(o.stderr).slice(-1500)}`,
        );
      }
      assertEquals(st.code, 0, new TextDecoder().decode(st.stderr));
      assert(JSON.parse(new TextDecoder().decode(st.stdout)).ifname === "ovt-fd");
    } finally {
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed by the instance */ }
      }
      try {
        inst.kill("SIGTERM");
      } catch { /* it ended by itself: the error above says why */ }
      const out = await inst.output();
      const err = new TextDecoder().decode(out.stderr);
      console.log(
        `  instance log: ${err.split("\n").filter((l) => l.includes("accept failed")).join(" | ")}`,
      );
      assert(err.split("\n").filter((l) => l.includes("accept failed")).length <= 1, err);
      await Deno.remove(run, { recursive: true });
    }
  },
});
