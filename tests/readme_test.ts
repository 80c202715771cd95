/**
 * The README's examples, run as written (issue 17): the point-to-point tunnel of "A portable test tunnel", the
 * commands that reach it while it runs, and the three-client server example, each host in a network namespace
 * of its own with the README's addresses (192.0.2.x, only inside these namespaces), `ovpn-dco-cli` on PATH
 * through the repository's launcher. A command that fails, or a tunnel that carries no ping, fails the test.
 */
import { assert, assertEquals } from "./assert.ts";
import { Hosts } from "../cmd/netns.ts";
import { parsePing } from "../cmd/demo.ts";

const README = new URL("../README.md", import.meta.url).pathname;
const LAUNCHER = new URL("../ovpn-dco-cli", import.meta.url).pathname;

/** The ```sh block that follows `marker` in the README, continuation lines joined, comments kept apart. */
function block(text: string, marker: string): string[] {
  const at = text.indexOf(marker);
  assert(at >= 0, `README: '${marker}' not found`);
  // the block that holds the marker, or else the first one after it
  const opened = text.lastIndexOf("```sh\n", at);
  const inside = opened >= 0 && text.indexOf("\n```", opened + 6) > at;
  const start = (inside ? opened : text.indexOf("```sh\n", at)) + 6;
  const body = text.slice(start, text.indexOf("\n```", start));
  return body.replace(/\\\n\s*/g, "").split("\n");
}

class Lab extends Hosts<string> {
  static async create(names: string[], addrs: Record<string, string>): Promise<Lab> {
    const tag = `${Deno.pid % 100000}`;
    const ns: Record<string, string> = {};
    for (const n of names) ns[n] = `ovpnreadme-${tag}-${n}`;
    const lab = new Lab(ns, await Deno.makeTempDir({ prefix: "ovpnreadme-" }));
    await lab.addNamespaces();
    await lab.run(names[0], ["ip", "link", "add", "br0", "type", "bridge"]);
    await lab.run(names[0], ["ip", "link", "set", "br0", "up"]);
    await lab.run(names[0], ["ip", "addr", "add", `${addrs[names[0]]}/24`, "dev", "br0"]);
    for (const n of names) {
      await lab.run(n, ["ip", "link", "set", "lo", "up"]);
      if (n === names[0]) continue;
      await lab.run(names[0], [
        "ip",
        "link",
        "add",
        `v${n}`,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns[n],
      ]);
      await lab.run(names[0], ["ip", "link", "set", `v${n}`, "master", "br0", "up"]);
      await lab.run(n, ["ip", "addr", "add", `${addrs[n]}/24`, "dev", "eth0"]);
      await lab.run(n, ["ip", "link", "set", "eth0", "up"]);
    }
    return lab;
  }

  /** Run README lines in host `h` through bash, in the shared work directory, with the launcher on PATH. */
  sh(h: string, lines: string, opts: { background?: boolean } = {}) {
    const script = `cd ${this.runDir}/work && export PATH=${this.runDir}/bin:$PATH && ${lines}`;
    if (opts.background) {
      return this.spawn(h, ["bash", "-c", script], { OVPN_DCO_CLI_RUNDIR: `${this.runDir}/run-${h}` });
    }
    return new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        this.ns[h],
        "env",
        `OVPN_DCO_CLI_RUNDIR=${this.runDir}/run-${h}`,
        "bash",
        "-ec",
        script,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
  }

  async prepare() {
    await Deno.mkdir(`${this.runDir}/work`);
    await Deno.mkdir(`${this.runDir}/bin`);
    await Deno.symlink(LAUNCHER, `${this.runDir}/bin/ovpn-dco-cli`);
  }
}

const text = await Deno.readTextFile(README);
const ok = async (r: Promise<Deno.CommandOutput> | unknown, what: string) => {
  const out = await (r as Promise<Deno.CommandOutput>);
  assertEquals(out.code, 0, `${what}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
};

Deno.test({
  name: "README: the point-to-point example and the commands that reach it, as written",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const lab = await Lab.create(["A", "B"], { A: "192.0.2.1", B: "192.0.2.2" });
    try {
      await lab.prepare();
      const lines = block(text, "**A portable test tunnel (Linux).**");
      const hostA = lines.indexOf(lines.find((l) => l.startsWith("# host A"))!);
      const hostB = lines.indexOf(lines.find((l) => l.startsWith("# host B"))!);
      await ok(lab.sh("A", lines.slice(0, hostA).join("\n")), "genkey");
      const a = lab.sh("A", lines.slice(hostA + 1, hostB).join("\n"), { background: true });
      lab.sh("B", lines.slice(hostB + 1).join("\n"), { background: true });
      await lab.waitFor(
        async () => {
          const p = parsePing(
            await lab.run("A", ["ping", "-c", "1", "-W", "1", "10.8.0.2"], { allowFail: true }),
          );
          return p.received === 1;
        },
        30000,
        `the README's tunnel: ${(a as { output(): string }).output()}`,
      );
      const p6 = parsePing(await lab.run("A", ["ping", "-6", "-c", "2", "fd00:8::2"], { allowFail: true }));
      assertEquals(p6.received, 2);
      // the commands of the next block, on host A, one by one
      for (const l of block(text, "While it runs, other commands reach it by interface name")) {
        if (!l.trim() || l.startsWith("#")) continue;
        await ok(lab.sh("A", l), l);
      }
    } finally {
      await lab.destroy();
    }
  },
});

Deno.test({
  name: "README: the three-client server example, as written",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const names = ["S", "C1", "C2", "C3"];
    const lab = await Lab.create(names, {
      S: "192.0.2.1",
      C1: "192.0.2.11",
      C2: "192.0.2.12",
      C3: "192.0.2.13",
    });
    try {
      await lab.prepare();
      const lines = block(text, "# server (192.0.2.1)");
      const client = lines.findIndex((l) => l.startsWith("# client i"));
      const server = lines.slice(1, client);
      // the first line runs (in the foreground, as the README means it) in its own terminal: here, in the background
      lab.sh("S", server[0], { background: true });
      await lab.waitFor(
        async () =>
          (await lab.sh("S", "ovpn-dco-cli peer list --ifname ovpn-srv") as Deno.CommandOutput).code === 0,
        30000,
        "the README's server",
      );
      for (const l of server.slice(1).join("\n").split(/\n(?=ovpn-dco-cli (?:route|events|stats))/)) {
        if (l.startsWith("ovpn-dco-cli events")) {
          lab.sh("S", l, { background: true }); // it streams until stopped
          continue;
        }
        await ok(lab.sh("S", l), l.split("\n")[0]);
      }
      for (const i of [1, 2, 3]) {
        // each client has its key (the README: "copy it to client i"): the work directory is shared here
        lab.sh(`C${i}`, `i=${i}; ${lines.slice(client + 1).join("\n")}`, { background: true });
      }
      for (const i of [1, 2, 3]) {
        await lab.waitFor(
          async () => {
            const p = parsePing(
              await lab.run(`C${i}`, ["ping", "-c", "1", "-W", "1", "10.8.0.1"], { allowFail: true }),
            );
            return p.received === 1;
          },
          30000,
          `client ${i} through the README's server`,
        );
      }
      const p = parsePing(
        await lab.run("C1", ["ping", "-c", "2", "-W", "2", "10.8.0.3"], { allowFail: true }),
      );
      assertEquals(p.received, 2, "client 1 to client 2 through the server");
    } finally {
      await lab.destroy();
    }
  },
});
