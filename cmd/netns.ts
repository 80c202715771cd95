/**
 * A two-host lab in network namespaces (Linux, root): namespaces `a` and `b` joined by a veth pair with
 * IPv4 and IPv6 addresses, helpers to run commands in them and to start instances of this tool, and a
 * clean-up that removes everything it created (also after failures). Used by `demo`, the end-to-end
 * tests and the tunnel benchmark. Traffic stays inside the namespaces it creates.
 *
 * @example
 * ```ts
 * import { NetnsLab } from "./netns.ts";
 * const lab = await NetnsLab.create(1);
 * try { await lab.run("a", ["ping", "-c", "1", lab.outer4.b]); } finally { await lab.destroy(); }
 * ```
 * @module
 */
import { CliError, EXIT } from "./errors.ts";

/**
 * The V8 flags every instance of this tool runs with (the compile tasks bake them in, the `ovpn-dco-cli`
 * launcher and {@linkcode selfCommand} pass them; a test keeps the three the same). The young generation of each
 * isolate (the main thread and the two engine workers) is capped at a 2 MB semi-space: V8 otherwise grows it
 * under a burst of control requests and keeps it, which was half of a server's memory per peer (1 000 peers
 * added: 62 KB/peer, with the cap 36; 1 MB gave 30). The cap was chosen while the data path still made a few
 * hundred bytes of garbage per packet, which 1 MB turned into twice the time in scavenges; it makes next to none
 * now (ARCHITECTURE.md, "Memory", "No garbage per packet").
 */
export const V8_FLAGS = "--max-semi-space-size=2";

/** The command that runs this tool: the compiled binary, or deno + main.ts. */
export function selfCommand(): string[] {
  const exe = Deno.execPath();
  const base = exe.split(/[\\/]/).pop()!.toLowerCase();
  if (/^deno([-.][\w.-]*)?$/.test(base)) {
    return [
      exe,
      "run",
      "-A",
      "--no-prompt",
      `--v8-flags=${V8_FLAGS}`,
      new URL("../main.ts", import.meta.url).pathname,
    ];
  }
  return [exe];
}

export type Side = "a" | "b";

/** A running process started in the lab. */
export interface LabProcess {
  child: Deno.ChildProcess;
  pid: number;
  /** Everything it printed so far (stdout and stderr, interleaved by arrival). */
  output(): string;
  /** Exit status, once it ended. */
  status: Promise<Deno.CommandStatus>;
}

/**
 * Namespaces by name (`S`), with helpers to run commands and this tool in them, and a clean-up that stops
 * what it started and deletes them.
 */
export class Hosts<S extends string> {
  readonly ns: Record<S, string>;
  readonly runDir: string;
  #procs: LabProcess[] = [];
  #destroyed = false;

  protected constructor(ns: Record<S, string>, runDir: string) {
    this.ns = ns;
    this.runDir = runDir;
  }

  /** Add the namespaces. Needs root. */
  protected async addNamespaces(): Promise<void> {
    if (Deno.uid() !== 0) {
      throw new CliError("network namespaces need root; run as root (e.g. with sudo)", EXIT.PRIVILEGE);
    }
    for (const n of Object.values(this.ns) as string[]) await sh(["ip", "netns", "add", n]);
  }

  /** Run a command in a namespace; throws with its output when it fails. */
  async run(side: S, cmd: string[], opts: { allowFail?: boolean } = {}): Promise<string> {
    const out = await new Deno.Command("ip", {
      args: ["netns", "exec", this.ns[side], ...cmd],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    if (!out.success && !opts.allowFail) {
      throw new Error(
        `'${cmd.join(" ")}' in ${side} failed (exit ${out.code}): ${
          text.trim().split("\n").slice(-3).join(" | ")
        }`,
      );
    }
    return text;
  }

  /** Start a long-running command in a namespace. */
  spawn(side: S, cmd: string[], env: Record<string, string> = {}): LabProcess {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", this.ns[side], ...cmd],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
      env: { OVPN_DCO_CLI_RUNDIR: `${this.runDir}/${side}`, NO_COLOR: "1", ...env },
    }).spawn();
    let text = "";
    const pump = async (s: ReadableStream<Uint8Array>) => {
      const dec = new TextDecoder();
      for await (const c of s) text += dec.decode(c, { stream: true });
    };
    const done = Promise.all([pump(child.stdout), pump(child.stderr)]);
    const p: LabProcess = {
      child,
      pid: child.pid,
      output: () => text,
      // after exit, wait briefly for the rest of the output; processes that leave helpers holding the
      // pipes (wine starts its server and services) must not keep the caller waiting
      status: child.status.then(async (s) => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([done.catch(() => {}), new Promise((r) => (timer = setTimeout(r, 1000)))]);
        clearTimeout(timer);
        return s;
      }),
    };
    this.#procs.push(p);
    return p;
  }

  /** Start this tool (`start ...`) in a namespace. */
  startTool(side: S, args: string[], env: Record<string, string> = {}): LabProcess {
    return this.spawn(side, [...selfCommand(), ...args], env);
  }

  /** Run this tool to completion in a namespace (for `stats`, `key`, `peer`). */
  async tool(side: S, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const out = await new Deno.Command("ip", {
      args: ["netns", "exec", this.ns[side], ...selfCommand(), ...args],
      stdout: "piped",
      stderr: "piped",
      env: { OVPN_DCO_CLI_RUNDIR: `${this.runDir}/${side}`, NO_COLOR: "1" },
    }).output();
    return {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
  }

  /** Wait until `probe` succeeds (returns true), up to `ms`. */
  async waitFor(probe: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (await Promise.resolve().then(probe).catch(() => false)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
  }

  /** Stop a process this lab started (SIGTERM, then SIGKILL after `graceMs`). */
  async stop(p: LabProcess, graceMs = 3000): Promise<Deno.CommandStatus> {
    try {
      p.child.kill("SIGTERM");
    } catch { /* already gone */ }
    const t = setTimeout(() => {
      try {
        p.child.kill("SIGKILL");
      } catch { /* gone */ }
    }, graceMs);
    const s = await p.status;
    clearTimeout(t);
    return s;
  }

  /** Stop every process started here, delete the namespaces (and so the veth), remove the temp dir. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    await Promise.all(this.#procs.map((p) => this.stop(p, 1500).catch(() => {})));
    for (const n of Object.values(this.ns) as string[]) await sh(["ip", "netns", "del", n]).catch(() => {});
    await Deno.remove(this.runDir, { recursive: true }).catch(() => {});
  }
}

/** Two namespaces and a veth pair. */
export class NetnsLab extends Hosts<Side> {
  readonly outer4: Record<Side, string>;
  readonly outer6: Record<Side, string>;
  readonly inner4: Record<Side, string>;
  readonly inner6: Record<Side, string>;

  private constructor(readonly index: number, runDir: string) {
    const tag = `${Deno.pid % 100000}-${index}`;
    super({ a: `ovpnlab-${tag}-a`, b: `ovpnlab-${tag}-b` }, runDir);
    const n = (Deno.pid + index) % 200 + 20;
    this.outer4 = { a: `10.${n}.1.1`, b: `10.${n}.1.2` };
    this.outer6 = { a: `fd00:${n}:1::1`, b: `fd00:${n}:1::2` };
    this.inner4 = { a: `10.${n}.2.1`, b: `10.${n}.2.2` };
    this.inner6 = { a: `fd00:${n}:2::1`, b: `fd00:${n}:2::2` };
  }

  /** Create the namespaces and the veth pair. Needs root. */
  static async create(index = 0): Promise<NetnsLab> {
    const lab = new NetnsLab(index, await Deno.makeTempDir({ prefix: "ovpnlab-" }));
    try {
      await lab.addNamespaces();
      const { a, b } = lab.ns;
      await sh([
        "ip",
        "link",
        "add",
        "veth-a",
        "netns",
        a,
        "type",
        "veth",
        "peer",
        "name",
        "veth-b",
        "netns",
        b,
      ]);
      for (const s of ["a", "b"] as Side[]) {
        await lab.run(s, ["ip", "link", "set", "lo", "up"]);
        await lab.run(s, ["ip", "addr", "add", `${lab.outer4[s]}/24`, "dev", `veth-${s}`]);
        await lab.run(s, ["ip", "-6", "addr", "add", `${lab.outer6[s]}/64`, "dev", `veth-${s}`, "nodad"]);
        await lab.run(s, ["ip", "link", "set", `veth-${s}`, "up"]);
      }
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }
}

/**
 * A star of namespaces (Linux, root): a hub `s` with a bridge, and `count` hosts `c1`…`cN` each joined to it
 * by a veth pair; IPv4 and IPv6 on every link; forwarding on in the hub. For server-mode tests.
 */
export class StarLab extends Hosts<string> {
  /** Outer (transport) addresses: `s` and every `cI`. */
  readonly outer4: Record<string, string> = {};
  readonly outer6: Record<string, string> = {};
  readonly clients: string[];

  private constructor(readonly index: number, count: number, runDir: string) {
    const tag = `${Deno.pid % 100000}-${index}`;
    const ns: Record<string, string> = { s: `ovpnstar-${tag}-s` };
    const clients = Array.from({ length: count }, (_, i) => `c${i + 1}`);
    for (const c of clients) ns[c] = `ovpnstar-${tag}-${c}`;
    super(ns, runDir);
    this.clients = clients;
    const n = (Deno.pid + index) % 200 + 20;
    ["s", ...clients].forEach((h, i) => {
      this.outer4[h] = `10.${n}.9.${i + 1}`;
      this.outer6[h] = `fd00:${n}:9::${i + 1}`;
    });
  }

  static async create(index: number, count: number): Promise<StarLab> {
    const lab = new StarLab(index, count, await Deno.makeTempDir({ prefix: "ovpnstar-" }));
    try {
      await lab.addNamespaces();
      await lab.run("s", ["ip", "link", "set", "lo", "up"]);
      await lab.run("s", ["ip", "link", "add", "br0", "type", "bridge"]);
      await lab.run("s", ["ip", "addr", "add", `${lab.outer4.s}/24`, "dev", "br0"]);
      await lab.run("s", ["ip", "-6", "addr", "add", `${lab.outer6.s}/64`, "dev", "br0", "nodad"]);
      await lab.run("s", ["ip", "link", "set", "br0", "up"]);
      await lab.run("s", ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
      for (const c of lab.clients) {
        await sh([
          "ip",
          "link",
          "add",
          `v${c}`,
          "netns",
          lab.ns.s,
          "type",
          "veth",
          "peer",
          "name",
          "eth0",
          "netns",
          lab.ns[c],
        ]);
        await lab.run("s", ["ip", "link", "set", `v${c}`, "master", "br0", "up"]);
        await lab.run(c, ["ip", "link", "set", "lo", "up"]);
        await lab.run(c, ["ip", "addr", "add", `${lab.outer4[c]}/24`, "dev", "eth0"]);
        await lab.run(c, ["ip", "-6", "addr", "add", `${lab.outer6[c]}/64`, "dev", "eth0", "nodad"]);
        await lab.run(c, ["ip", "link", "set", "eth0", "up"]);
      }
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }
}

async function sh(cmd: string[]): Promise<void> {
  const out = await new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`'${cmd.join(" ")}' failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/** Whether a command exists on PATH. */
export async function have(cmd: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", `command -v ${cmd}`],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}
