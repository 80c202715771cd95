/**
 * `demo` (Linux, root): two network namespaces joined by a veth pair, one instance of this tool in each
 * with a fresh key, pings across the tunnel over IPv4 and IPv6, an iperf3 throughput run, a summary,
 * and removal of everything it created, also when interrupted or when a step fails.
 * @module
 */
import { formatEndpoint } from "../driver/uapi.ts";
import { CliError, EXIT, usage } from "./errors.ts";
import { parseFlags, parseIntIn } from "./flags.ts";
import { have, type LabProcess, NetnsLab } from "./netns.ts";
import { CIPHER_NAMES, cipherByName } from "../crypto/aead.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";

export const DEMO_HELP = `Usage: ovpn-dco-cli demo [--proto udp|tcp] [--cipher NAME] [--time SEC]

Linux, as root: create two network namespaces joined by a veth pair, run one instance of this tool in
each with a fresh key, ping across the tunnel over IPv4 and IPv6, run iperf3 through it for SEC
seconds (default 10), print a summary with the statistics of both ends, and remove everything it
created (also on Ctrl-C or failure). Needs iproute2, ping and iperf3.

Options:
  --proto udp|tcp     transport (default udp)
  --cipher NAME       ${CIPHER_NAMES} (default AES-256-GCM)
  --time SEC          iperf3 duration (default 10)

Example:
  sudo ovpn-dco-cli demo --proto tcp --cipher CHACHA20-POLY1305
`;

/** Parse `ping` output: received count and average RTT in ms. */
export function parsePing(out: string): { received: number; avgMs: number } {
  const rec = /(\d+) (?:packets )?received/.exec(out);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(out);
  return { received: rec ? Number(rec[1]) : 0, avgMs: rtt ? Number(rtt[1]) : NaN };
}

/** Bring up a two-instance tunnel in `lab` and wait until it carries pings. */
export async function startPair(
  lab: NetnsLab,
  opts: {
    proto: "udp" | "tcp";
    cipher: string;
    keyFile: string;
    outer6?: boolean;
    extra?: string[];
    extraFor?: { a?: string[]; b?: string[] };
    /** Environment of both instances. */
    env?: Record<string, string>;
    /** How long the tunnel may take to come up (default 30 s; more under emulation). */
    upTimeoutMs?: number;
    /** Another --remote for an end (default: the other end's outer address, port 1194), e.g. a relay. */
    remote?: { a?: string; b?: string };
  },
): Promise<{ a: LabProcess; b: LabProcess }> {
  const o = opts.outer6 ? lab.outer6 : lab.outer4;
  const ep = (address: string, port: number) => formatEndpoint({ address, port });
  // b is the TCP server (--listen) and uses key direction 1; a connects with key direction 0
  const instance = (s: "a" | "b") => {
    const other = s === "a" ? "b" : "a";
    return lab.startTool(s, [
      ...["start", "--ifname", `ovpn-${s}`, "--local", ep(o[s], 1194)],
      ...["--remote", opts.remote?.[s] ?? ep(o[other], 1194)],
      ...["--ifaddr", `${lab.inner4[s]}/24`, "--ifaddr", `${lab.inner6[s]}/64`],
      ...[
        "--key-direction",
        s === "a" ? "0" : "1",
        ...(opts.proto === "tcp" && s === "b" ? ["--listen"] : []),
      ],
      ...["--proto", opts.proto, "--cipher", opts.cipher, "--key", opts.keyFile, "--stats-interval", "0"],
      ...(opts.extra ?? []),
      ...(opts.extraFor?.[s] ?? []),
    ], opts.env);
  };
  const b = instance("b");
  if (opts.proto === "tcp") {
    await lab.waitFor(
      () => b.output().includes("waiting for a TCP connection"),
      opts.upTimeoutMs ?? 15000,
      "the TCP listener",
    );
  }
  const a = instance("a");
  const alive = async (p: LabProcess, name: string) => {
    const s = await Promise.race([p.status, new Promise<null>((r) => setTimeout(() => r(null), 10))]);
    if (s) {
      throw new Error(
        `instance ${name} exited (${s.code}): ${p.output().trim().split("\n").slice(-2).join(" | ")}`,
      );
    }
  };
  try {
    await lab.waitFor(
      async () => {
        await alive(a, "a");
        await alive(b, "b");
        const out = await lab.run("a", ["ping", "-c", "1", "-W", "1", lab.inner4.b], { allowFail: true });
        return parsePing(out).received === 1;
      },
      opts.upTimeoutMs ?? 30000,
      "the tunnel to carry a ping",
    );
  } catch (e) {
    // what each end said last: the reason is usually there
    const tail = (p: LabProcess) =>
      p.output().split("\n").filter((l) => l.trim() && !/^\w+: \d+$|^\{"time"/.test(l)).slice(-4).join(" | ");
    throw new Error(`${(e as Error).message}; a said: ${tail(a)}; b said: ${tail(b)}`);
  }
  return { a, b };
}

export async function demo(args: string[]): Promise<number> {
  const { values: v } = parseFlags(args, {
    proto: { type: "string" },
    cipher: { type: "string" },
    time: { type: "string" },
  }, "demo");
  const proto = (v.proto ?? "udp") as "udp" | "tcp";
  if (proto !== "udp" && proto !== "tcp") throw usage(`--proto: '${v.proto}' is not udp or tcp`);
  const cipher = cipherByName(v.cipher ?? "AES-256-GCM");
  if (!cipher || cipher.keyLen === 0) {
    throw usage(`--cipher: '${v.cipher}' is not one of ${CIPHER_NAMES.replace(", none", "")}`);
  }
  const seconds = v.time ? parseIntIn(v.time, "--time", 1, 600) : 10;
  if (Deno.build.os !== "linux") {
    throw new CliError("demo runs on Linux only (it uses network namespaces)", EXIT.USAGE);
  }
  if (Deno.uid() !== 0) {
    throw new CliError(
      "demo needs root (network namespaces, tun devices); run it as root, e.g. 'sudo npm run demo'",
      EXIT.PRIVILEGE,
    );
  }
  for (const t of ["ip", "ping", "iperf3"]) {
    if (!(await have(t))) {
      throw new CliError(
        `demo needs '${t}'; install it (apt-get install ${
          t === "ip" ? "iproute2" : t === "ping" ? "iputils-ping" : t
        })`,
        EXIT.DRIVER,
      );
    }
  }
  const say = (s: string) => console.log(s);
  const lab = await NetnsLab.create(0);
  const onSignal = () => {
    console.error("interrupted: cleaning up");
    lab.destroy().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    say(`namespaces ${lab.ns.a} (${lab.outer4.a}) and ${lab.ns.b} (${lab.outer4.b}), joined by a veth pair`);
    const keyFile = `${lab.runDir}/demo.key`;
    await writeNewKeyFile(keyFile);
    say(`fresh key ${keyFile}; starting ovpn-a and ovpn-b (${proto}, ${cipher.name})`);
    const t0 = Date.now();
    await startPair(lab, { proto, cipher: cipher.name, keyFile });
    say(
      `tunnel up in ${
        ((Date.now() - t0) / 1000).toFixed(1)
      } s: ${lab.inner4.a} <-> ${lab.inner4.b}, ${lab.inner6.a} <-> ${lab.inner6.b}`,
    );
    const p4 = parsePing(
      await lab.run("a", ["ping", "-c", "5", "-i", "0.2", lab.inner4.b], { allowFail: true }),
    );
    const p6 = parsePing(
      await lab.run("a", ["ping", "-6", "-c", "5", "-i", "0.2", lab.inner6.b], { allowFail: true }),
    );
    say(
      `ping IPv4: ${p4.received}/5 replies, avg ${p4.avgMs} ms; IPv6: ${p6.received}/5 replies, avg ${p6.avgMs} ms`,
    );
    const server = lab.spawn("b", ["iperf3", "-s", "-1", "--forceflush", "-B", lab.inner4.b]);
    await lab.waitFor(() => server.output().includes("listening"), 10000, "the iperf3 server");
    say(`iperf3: ${seconds} s of TCP through the tunnel ...`);
    const json = await lab.run("a", ["iperf3", "-c", lab.inner4.b, "-t", String(seconds), "-J"], {
      allowFail: true,
    });
    let gbit = NaN;
    try {
      gbit = JSON.parse(json).end.sum_received.bits_per_second / 1e9;
    } catch { /* reported below */ }
    const statsOf = async (s: "a" | "b") => {
      const r = await lab.tool(s, ["stats", "--ifname", `ovpn-${s}`, "--json"]);
      return r.code === 0 ? JSON.parse(r.stdout) : null;
    };
    const sa = await statsOf("a"), sb = await statsOf("b");
    say("");
    say("summary");
    say(`  transport        ${proto} over IPv4, ${cipher.name}`);
    say(`  ping IPv4        ${p4.received}/5, avg ${p4.avgMs} ms`);
    say(`  ping IPv6        ${p6.received}/5, avg ${p6.avgMs} ms`);
    say(
      `  throughput       ${
        Number.isFinite(gbit)
          ? `${(gbit * 1000).toFixed(0)} Mbit/s (iperf3 TCP, ${seconds} s)`
          : "iperf3 failed"
      }`,
    );
    for (const [name, s] of [["ovpn-a", sa], ["ovpn-b", sb]] as const) {
      if (!s) continue;
      say(
        `  ${name}           sent ${s.sentDataPkts} / received ${s.rcvdDataPkts} data packets, ` +
          `lost in ${s.lostInDataPkts} / out ${s.lostOutDataPkts}, tun bytes ${s.tunBytesSent} out / ${s.tunBytesReceived} in`,
      );
    }
    const ok = p4.received === 5 && p6.received === 5 && Number.isFinite(gbit) && gbit > 0;
    say(ok ? "demo passed" : "demo FAILED: see the lines above");
    return ok ? EXIT.OK : EXIT.FAILURE;
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`demo failed: ${(e as Error).message}`, EXIT.FAILURE);
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await lab.destroy();
    say("cleaned up: instances stopped, namespaces and veth removed");
  }
}
