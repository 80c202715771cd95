/**
 * `deno task bench:tunnel` (Linux, root): throughput through this tool versus OpenVPN 2.6 in userspace,
 * same cipher, same namespace set-up, same run:
 *   - iperf3 TCP, one stream, 10 s (BENCH_TCP_SECONDS), with the CPU seconds of both tunnel processes per GB
 *   - iperf3 TCP, four streams, 10 s
 *   - iperf3 UDP with 64-byte payloads, unlimited rate, 5 s: packets/s that arrive. The receiving iperf3 gets a
 *     4 MB socket buffer (-w 4M, every row alike): with the default 208 KB its own socket dropped half of what a
 *     batching tunnel delivered (UdpRcvbufErrors in its namespace while the tunnel's counters showed nothing
 *     lost), which measured iperf3's buffer rather than the tunnel
 * Also this tool with epoch data keys (`--epoch`), and in server mode with one peer (a p2p client → `start --mode
 * server`), against p2p, and that server again while strangers flood its port with unauthenticated non-data
 * datagrams (BENCH_FLOOD_RATE per second, default 20 000 of 1 200 B), against the quiet server; the raw veth
 * (the ceiling), wireguard-go (Debian's, installed with apt when missing) and the Windows instance (wintun
 * under Wine, fake wintun.dll bridged into a tun; BENCH_WINE=0 skips it; its CPU figure adds the Wine process,
 * its wineserver and the Linux instance). Results also go to
 * bench-results/tunnel.json and tunnel.svg (BENCH_OUT overrides). BENCH_ROWS=name,name runs only the rows whose
 * names contain one of those (the others show as not selected).
 * Prints a table; the last line is `tunnel-aes-256-gcm-udp: <ratio> of openvpn` (TCP throughput ratio).
 * @module
 */
import { NetnsLab } from "../cmd/netns.ts";
import { startPair } from "../cmd/demo.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";
import { cpuSeconds, startOpenvpnPair } from "../tests/lab.ts";

const CIPHER = Deno.env.get("BENCH_CIPHER") ?? "AES-256-GCM";
const TCP_SECONDS = Number(Deno.env.get("BENCH_TCP_SECONDS") ?? "10");
const UDP_SECONDS = Number(Deno.env.get("BENCH_UDP_SECONDS") ?? "5");
/** The UDP run's socket buffers (iperf3 -w; see above). */
const UDP_WINDOW = "4M";

interface Result {
  tcpGbit: number;
  /** Four TCP streams at once. */
  tcp4Gbit: number;
  udpPps: number;
  /** CPU seconds (user + system, both tunnel processes) per GB of the one-stream TCP run; null: no processes. */
  cpuPerGB: number | null;
}

async function iperf(lab: NetnsLab, dst: string, pids: number[] = []): Promise<Result> {
  const server = lab.spawn("b", ["iperf3", "-s", "--forceflush", "-B", dst]);
  try {
    await lab.waitFor(() => server.output().includes("listening"), 10000, "the iperf3 server");
    const cpu0 = await Promise.all(pids.map(cpuSeconds));
    const tcp = JSON.parse(await lab.run("a", ["iperf3", "-c", dst, "-t", String(TCP_SECONDS), "-J"]));
    const cpu1 = await Promise.all(pids.map(cpuSeconds));
    const tcp4 = JSON.parse(
      await lab.run("a", ["iperf3", "-c", dst, "-P", "4", "-t", String(TCP_SECONDS), "-J"]),
    );
    const udp = JSON.parse(
      await lab.run("a", [
        ...[
          "iperf3",
          "-c",
          dst,
          "-u",
          "-l",
          "64",
          "-b",
          "0",
          "-w",
          UDP_WINDOW,
          "-t",
          String(UDP_SECONDS),
          "-J",
        ],
      ]),
    );
    const s = udp.end.sum;
    const cpu = cpu1.reduce((a, v) => a + v, 0) - cpu0.reduce((a, v) => a + v, 0);
    return {
      tcpGbit: tcp.end.sum_received.bits_per_second / 1e9,
      tcp4Gbit: tcp4.end.sum_received.bits_per_second / 1e9,
      udpPps: (s.packets - s.lost_packets) / s.seconds,
      cpuPerGB: pids.length ? cpu / (tcp.end.sum_received.bytes / 1e9) : null,
    };
  } finally {
    await lab.stop(server);
  }
}

async function measureOurs(extra: string[] = []): Promise<Result> {
  const lab = await NetnsLab.create(90);
  try {
    const keyFile = `${lab.runDir}/k.key`;
    await writeNewKeyFile(keyFile);
    const { a, b } = await startPair(lab, { proto: "udp", cipher: CIPHER, keyFile, extra });
    return await iperf(lab, lab.inner4.b, [a.pid, b.pid]);
  } finally {
    await lab.destroy();
  }
}

/** Unauthenticated non-data datagrams per second at the server's port in the flooded row (1 200 B each). */
const FLOOD_RATE = Number(Deno.env.get("BENCH_FLOOD_RATE") ?? "20000");

/**
 * The same traffic through a server-mode instance (b) with one peer: a point-to-point client (a). `flood`: while
 * it runs, four sockets of a that are no peer's send FLOOD_RATE non-data datagrams per second at the server.
 */
async function measureServer(flood = false): Promise<Result> {
  const lab = await NetnsLab.create(92);
  try {
    const keyFile = `${lab.runDir}/k.key`;
    await writeNewKeyFile(keyFile);
    const srv = lab.startTool("b", [
      ...["start", "--mode", "server", "--local", `${lab.outer4.b}:1194`, "--ifname", "ovpn-b"],
      ...["--ifaddr", `${lab.inner4.b}/24`, "--stats-interval", "0"],
    ]);
    await lab.waitFor(
      async () => (await lab.tool("b", ["peer", "list", "--ifname", "ovpn-b"])).code === 0,
      20000,
      `the server (${srv.output()})`,
    );
    for (
      const args of [
        ["peer", "new", "1", `${lab.outer4.b}:1194`, `${lab.outer4.a}:1194`, "--vpn-ip", lab.inner4.a],
        ["key", "new", "1", CIPHER, "1", keyFile, "--slot", "primary"],
      ]
    ) {
      const r = await lab.tool("b", [...args, "--ifname", "ovpn-b"]);
      if (r.code !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
    }
    const client = lab.startTool("a", [
      ...["start", "--local", `${lab.outer4.a}:1194`, "--remote", `${lab.outer4.b}:1194`, "--peer-id", "1"],
      ...["--ifname", "ovpn-a", "--ifaddr", `${lab.inner4.a}/24`, "--key", keyFile, "--key-direction", "0"],
      ...["--cipher", CIPHER, "--stats-interval", "0"],
    ]);
    await lab.waitFor(
      async () =>
        (await lab.run("a", ["ping", "-c", "1", "-W", "1", lab.inner4.b], { allowFail: true })).includes(
          " 0% packet loss",
        ),
      20000,
      "a ping through the server",
    );
    const flooder = flood
      ? lab.spawn("a", [
        ...[Deno.execPath(), "run", "-A", new URL("../tests/helpers/flood.ts", import.meta.url).pathname],
        ...[lab.outer4.b, "1194", String(2 * TCP_SECONDS + UDP_SECONDS + 30), "4", "1200", "1e9"],
        String(FLOOD_RATE),
      ])
      : null;
    try {
      return await iperf(lab, lab.inner4.b, [srv.pid, client.pid]);
    } finally {
      if (flooder) await lab.stop(flooder);
    }
  } finally {
    await lab.destroy();
  }
}

/** The ceiling: the same iperf3 runs straight over the veth, no tunnel. */
async function measureRaw(): Promise<Result> {
  const lab = await NetnsLab.create(93);
  try {
    return await iperf(lab, lab.outer4.b);
  } finally {
    await lab.destroy();
  }
}

/** Install a Debian package when its command is missing (as the test script does). */
async function ensure(cmd: string, pkg: string): Promise<void> {
  const have = await new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null" }).output();
  if (have.success) return;
  console.error(`installing ${pkg} with apt`);
  const r = await new Deno.Command("apt-get", {
    args: ["install", "-y", "-qq", "--no-install-recommends", pkg],
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdout: "null",
  }).output();
  if (!r.success) throw new Error(`apt-get install ${pkg} failed`);
}

/**
 * The current wireguard-go (a static build of upstream's tag 0.0.20250522, with the tun and UDP offloads this
 * tool has too), where one is found: `$WIREGUARD_GO`, or the team's copy beside this checkout. Null: none.
 */
function currentWireguardGo(): string | null {
  const candidates = [
    Deno.env.get("WIREGUARD_GO"),
    new URL("../../shared/tools/wireguard-go-0.0.20250522/wireguard-go", import.meta.url).pathname,
    "/work/shared/tools/wireguard-go-0.0.20250522/wireguard-go",
  ].filter((c): c is string => !!c);
  return candidates.find((c) => {
    try {
      return Deno.statSync(c).isFile;
    } catch {
      return false;
    }
  }) ?? null;
}

/** wireguard-go (Debian's, or the binary given) between the same two namespaces, one tunnel. */
async function measureWireguardGo(binary = "wireguard-go", index = 94): Promise<Result> {
  if (binary === "wireguard-go") await ensure("wireguard-go", "wireguard-go");
  await ensure("wg", "wireguard-tools");
  const lab = await NetnsLab.create(index);
  try {
    const key = async (side: "a" | "b") => {
      const priv = (await lab.run(side, ["wg", "genkey"])).trim();
      const file = `${lab.runDir}/wg-${side}.key`;
      await Deno.writeTextFile(file, priv + "\n", { mode: 0o600 });
      const pub = await new Deno.Command("wg", { args: ["pubkey"], stdin: "piped", stdout: "piped" }).spawn();
      const w = pub.stdin.getWriter();
      await w.write(new TextEncoder().encode(priv + "\n"));
      await w.close();
      return { file, pub: new TextDecoder().decode((await pub.output()).stdout).trim() };
    };
    const keys = { a: await key("a"), b: await key("b") };
    // wireguard-go's control socket is /var/run/wireguard/<ifname>.sock, shared by all namespaces: one name each
    const dev = { a: `wg${lab.index}a`, b: `wg${lab.index}b` };
    const pids: number[] = [];
    for (const side of ["a", "b"] as const) {
      const other = side === "a" ? "b" : "a";
      const proc = lab.spawn(side, [binary, "-f", dev[side]]);
      pids.push(proc.pid);
      await lab.waitFor(
        async () => {
          try {
            await Deno.stat(`/var/run/wireguard/${dev[side]}.sock`);
            return true;
          } catch {
            return false;
          }
        },
        10000,
        `wireguard-go in ${side} (${proc.output()})`,
      );
      await lab.run(side, [
        ...["wg", "set", dev[side], "private-key", keys[side].file, "listen-port", "51820"],
        ...[
          "peer",
          keys[other].pub,
          "endpoint",
          `${lab.outer4[other]}:51820`,
          "allowed-ips",
          `${lab.inner4[other]}/32`,
        ],
      ]);
      await lab.run(side, ["ip", "addr", "add", `${lab.inner4[side]}/24`, "dev", dev[side]]);
      await lab.run(side, ["ip", "link", "set", dev[side], "mtu", "1420", "up"]);
    }
    await lab.waitFor(
      async () =>
        (await lab.run("a", ["ping", "-c", "1", "-W", "1", lab.inner4.b], { allowFail: true })).includes(
          " 0% packet loss",
        ),
      20000,
      "a ping through wireguard-go",
    );
    return await iperf(lab, lab.inner4.b, pids);
  } finally {
    await lab.destroy();
  }
}

/**
 * The Windows instance (wintun backend, the Windows build of Deno under Wine, fake wintun.dll bridged into a
 * tun) in a against a Linux instance in b, as tests/windows_tunnel_test.ts sets it up.
 */
async function measureWine(): Promise<Result> {
  const { runToFiles, wineEnv } = await import("../tests/wine.ts");
  const env = await wineEnv();
  const quiet = (cmd: string[]) => runToFiles(cmd[0], cmd.slice(1), env);
  await quiet(["wineserver", "-k"]);
  const lab = await NetnsLab.create(95);
  try {
    await quiet(["ip", "netns", "exec", lab.ns.a, "wineserver", "-p"]);
    const keyFile = `${lab.runDir}/k.key`;
    await writeNewKeyFile(keyFile);
    const repo = new URL("..", import.meta.url).pathname;
    const bridge = lab.spawn("a", [
      ...[Deno.execPath(), "run", "-A", "--no-check", `${repo}tests/helpers/wintun_bridge.ts`, "wtun"],
      ...["40021", "40022", `${lab.inner4.a}/24`],
    ]);
    await lab.waitFor(() => bridge.output().includes("bridge ready"), 15000, "the wintun bridge");
    const ep = (a: string) => `${a}:1194`;
    const linux = lab.startTool("b", [
      ...["start", "--ifname", "ovpn-b", "--local", ep(lab.outer4.b), "--remote", ep(lab.outer4.a)],
      ...[
        "--ifaddr",
        `${lab.inner4.b}/24`,
        "--key",
        keyFile,
        "--key-direction",
        "1",
        "--stats-interval",
        "0",
      ],
    ]);
    const windows = lab.spawn("a", [
      ...["wine", env.DENO_WIN, "run", "-A", "--no-check", `Z:${repo}main.ts`],
      ...["start", "--backend", "wintun"],
      ...["--ifname", "wtun", "--local", ep(lab.outer4.a), "--remote", ep(lab.outer4.b)],
      ...["--key", keyFile.replace(/^\//, "Z:/"), "--key-direction", "0", "--stats-interval", "0"],
    ], {
      ...env,
      WINTUN_FAKE_PORT: "40022",
      WINTUN_FAKE_PEER_PORT: "40021",
      OVPN_DCO_CLI_RUNDIR: "C:\\ovpn-run",
    });
    await lab.waitFor(
      async () =>
        (await lab.run("a", ["ping", "-c", "1", "-W", "1", lab.inner4.b], { allowFail: true })).includes(
          " 0% packet loss",
        ),
      60000,
      "a ping from the Windows instance",
    ).catch((e) => {
      throw new Error(`${e.message}\n${windows.output()}\n${linux.output()}`);
    });
    // the Windows side's CPU: the Wine process itself and the wineserver of its namespace (Wine's sockets)
    const wineserver = (await runToFiles("pgrep", ["-n", "-x", "wineserver"])).stdout.trim();
    return await iperf(lab, lab.inner4.b, [
      linux.pid,
      windows.pid,
      ...(wineserver ? [Number(wineserver)] : []),
    ]);
  } finally {
    await lab.destroy();
    await quiet(["ip", "netns", "exec", lab.ns.a, "wineserver", "-k"]).catch(() => {});
    await quiet(["wineserver", "-k"]);
  }
}

async function measureOpenvpn(): Promise<Result> {
  const lab = await NetnsLab.create(91);
  try {
    const { net, server, client } = await startOpenvpnPair(lab, CIPHER);
    return await iperf(lab, `${net}.1`, [server.pid, client.pid]);
  } finally {
    await lab.destroy();
  }
}

if (Deno.uid() !== 0) {
  console.error("bench:tunnel needs root (network namespaces)");
  Deno.exit(4);
}
console.log(
  `tunnel benchmark: ${CIPHER} over UDP, two namespaces joined by a veth; iperf3 TCP ${TCP_SECONDS} s, UDP 64-byte ${UDP_SECONDS} s`,
);
/**
 * One row: measured, or (when its pair does not come up, or anything in it fails) retried once and then
 * reported as missing with one line saying why; the other rows still run.
 */
async function row(name: string, fn: () => Promise<Result>): Promise<[string, Result | string]> {
  for (let attempt = 1; attempt <= 2; attempt++) {
    try {
      return [name, await fn()];
    } catch (e) {
      const why = (e as Error).message.split("\n")[0].slice(0, 200);
      if (attempt === 2) {
        console.log(`${name}: not measured (${why})`);
        return [name, why];
      }
      console.error(`${name}: failed (${why}); trying once more`);
    }
  }
  throw new Error("unreachable");
}

const wgCurrent = currentWireguardGo();
/** BENCH_ROWS: only the rows whose names contain one of these (comma-separated), for a quick look. */
const only = Deno.env.get("BENCH_ROWS")?.split(",").map((s) => s.trim()).filter(Boolean);
const wanted = (name: string) => !only || only.some((o) => name.includes(o));
const rowIf = (name: string, fn: () => Promise<Result>): Promise<[string, Result | string]> =>
  wanted(name) ? row(name, fn) : Promise.resolve([name, "not selected (BENCH_ROWS)"]);
const measured: [string, Result | string][] = [
  await rowIf("raw veth (the ceiling)", measureRaw),
  await rowIf("openvpn 2.6 (userspace)", measureOpenvpn),
  await rowIf("wireguard-go (Debian)", () => measureWireguardGo()),
  wgCurrent
    ? await rowIf("wireguard-go 0.0.20250522", () => measureWireguardGo(wgCurrent, 95))
    : ["wireguard-go 0.0.20250522", "not found (set WIREGUARD_GO to its binary)"],
  await rowIf("ovpn-dco-cli (tun)", () => measureOurs()),
  await rowIf("ovpn-dco-cli (tun, --epoch)", () => measureOurs(["--epoch"])),
  await rowIf("ovpn-dco-cli server, 1 peer", () => measureServer()),
  await rowIf(`ovpn-dco-cli server, flooded`, () => measureServer(true)),
  ...(Deno.env.get("BENCH_WINE") === "0" ? [] : [await rowIf("Windows wintun (Wine) → Linux", measureWine)]),
];
const get = (name: string): Result | null => {
  const r = measured.find(([n]) => n === name)?.[1];
  return r && typeof r !== "string" ? r : null;
};
console.log(
  `${"".padEnd(30)}${"TCP".padStart(17)}${"TCP ×4".padStart(18)}${"UDP 64 B".padStart(18)}${
    "CPU s/GB".padStart(10)
  }`,
);
for (const [name, r] of measured) {
  if (typeof r === "string") {
    console.log(`${name.padEnd(30)}  not measured: ${r}`);
    continue;
  }
  console.log(
    `${name.padEnd(30)}${(r.tcpGbit * 1000).toFixed(0).padStart(10)} Mbit/s${
      (r.tcp4Gbit * 1000).toFixed(0).padStart(11)
    } Mbit/s${r.udpPps.toFixed(0).padStart(12)} pkt/s${
      (r.cpuPerGB === null ? "-" : r.cpuPerGB.toFixed(2)).padStart(10)
    }`,
  );
}
const ours = get("ovpn-dco-cli (tun)"), epoch = get("ovpn-dco-cli (tun, --epoch)");
const server = get("ovpn-dco-cli server, 1 peer"), ovpn = get("openvpn 2.6 (userspace)");
const wg = get("wireguard-go (Debian)"), wgNew = get("wireguard-go 0.0.20250522");
const wine = get("Windows wintun (Wine) → Linux");
const flooded = get("ovpn-dco-cli server, flooded");
/** a / b where both were measured, else null (and the summary names it missing). */
const ratio = (a: number | null | undefined, b: number | null | undefined) =>
  a !== null && a !== undefined && b ? a / b : null;
const ratios: Record<string, number | null> = {
  serverTcpOfP2p: ratio(server?.tcpGbit, ours?.tcpGbit),
  epochTcpOfP2p: ratio(epoch?.tcpGbit, ours?.tcpGbit),
  epochPpsOfOpenvpn: ratio(epoch?.udpPps, ovpn?.udpPps),
  serverPpsOfP2p: ratio(server?.udpPps, ours?.udpPps),
  floodedTcpOfServer: ratio(flooded?.tcpGbit, server?.tcpGbit),
  floodedPpsOfServer: ratio(flooded?.udpPps, server?.udpPps),
  tcpOfWireguardGo: ratio(ours?.tcpGbit, wg?.tcpGbit),
  tcpOfCurrentWireguardGo: ratio(ours?.tcpGbit, wgNew?.tcpGbit),
  ppsOfCurrentWireguardGo: ratio(ours?.udpPps, wgNew?.udpPps),
  ppsOfOpenvpn: ratio(ours?.udpPps, ovpn?.udpPps),
  tcp4OfOpenvpn: ratio(ours?.tcp4Gbit, ovpn?.tcp4Gbit),
  cpuPerGBOfOpenvpn: ratio(ours?.cpuPerGB, ovpn?.cpuPerGB),
  ...(wine ? { wineTcpOfLinux: ratio(wine.tcpGbit, ours?.tcpGbit) } : {}),
  tcpOfOpenvpn: ratio(ours?.tcpGbit, ovpn?.tcpGbit),
};
await writeResults(measured, ratios);
const f = (x: number | null) => x === null ? "missing" : x.toFixed(2);
console.log(
  `server-1-peer: ${f(ratios.serverTcpOfP2p)} of p2p (TCP), ${f(ratios.serverPpsOfP2p)} of p2p (64 B)`,
);
console.log(
  `server-flooded (${FLOOD_RATE} non-data datagrams/s from strangers): ${
    f(ratios.floodedTcpOfServer)
  } of the server's TCP, ${f(ratios.floodedPpsOfServer)} of its 64 B`,
);
console.log(
  `epoch-keys: ${f(ratios.epochTcpOfP2p)} of p2p (TCP), ${f(ratios.epochPpsOfOpenvpn)} of openvpn (64 B)`,
);
console.log(`tcp-of-wireguard-go: ${f(ratios.tcpOfWireguardGo)}`);
console.log(
  `tcp-of-wireguard-go-0.0.20250522: ${f(ratios.tcpOfCurrentWireguardGo)}; udp-64-pps of it: ${
    f(ratios.ppsOfCurrentWireguardGo)
  }`,
);
console.log(
  `tcp-4-streams: ${f(ratios.tcp4OfOpenvpn)} of openvpn; cpu-per-gb: ${
    f(ratios.cpuPerGBOfOpenvpn)
  } of openvpn's`,
);
console.log(`udp-64-pps: ${f(ratios.ppsOfOpenvpn)} of openvpn`);
const missing = Object.entries(ratios).filter(([, v]) => v === null).map(([k]) => k);
if (missing.length) console.log(`missing ratios (a row was not measured): ${missing.join(", ")}`);
console.log(`tunnel-${CIPHER.toLowerCase()}-udp: ${f(ratios.tcpOfOpenvpn)} of openvpn`);

/** The results as JSON and as an SVG bar chart (TCP Mbit/s and 64-byte k pkt/s), in BENCH_OUT (bench-results/). */
async function writeResults(all: [string, Result | string][], ratios: Record<string, number | null>) {
  const rows = all.map(([n, r]) =>
    [n, typeof r === "string" ? { tcpGbit: 0, tcp4Gbit: 0, udpPps: 0, cpuPerGB: null, missing: r } : r] as [
      string,
      Result & { missing?: string },
    ]
  );
  const dir = Deno.env.get("BENCH_OUT") ?? "bench-results";
  await Deno.mkdir(dir, { recursive: true });
  const when = new Date().toISOString();
  await Deno.writeTextFile(
    `${dir}/tunnel.json`,
    JSON.stringify(
      {
        when,
        cipher: CIPHER,
        tcpSeconds: TCP_SECONDS,
        udpSeconds: UDP_SECONDS,
        udpWindow: UDP_WINDOW,
        results: rows.map(([name, r]) => ({
          name,
          tcpMbit: r.tcpGbit * 1000,
          tcp4Mbit: r.tcp4Gbit * 1000,
          udp64Pps: r.udpPps,
          cpuSecondsPerGB: r.cpuPerGB,
          ...(r.missing ? { missing: r.missing } : {}),
        })),
        ratios,
      },
      null,
      2,
    ) + "\n",
  );
  const W = 720, rowH = 26, top = 40, left = 230, barW = (W - left - 90) / 2;
  const maxTcp = Math.max(1e-9, ...rows.map(([, r]) => r.tcpGbit)),
    maxPps = Math.max(1e-9, ...rows.map(([, r]) => r.udpPps));
  const esc = (t: string) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const bars = rows.map(([name, r], i) => {
    const y = top + i * rowH;
    const tw = (r.tcpGbit / maxTcp) * (barW - 10), pw = (r.udpPps / maxPps) * (barW - 10);
    if (r.missing) {
      // every row is in the chart: a missing one says why
      return `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${esc(name)}</text><text x="${left}" y="${
        y + 15
      }" fill="#a00">not measured: ${esc(r.missing.slice(0, 80))}</text>`;
    }
    return [
      `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${esc(name)}</text>`,
      `<rect x="${left}" y="${y + 3}" width="${tw.toFixed(1)}" height="16" fill="#3b7dd8"/>`,
      `<text x="${(left + tw + 4).toFixed(1)}" y="${y + 15}">${(r.tcpGbit * 1000).toFixed(0)}</text>`,
      `<rect x="${left + barW + 40}" y="${y + 3}" width="${pw.toFixed(1)}" height="16" fill="#d8823b"/>`,
      `<text x="${(left + barW + 44 + pw).toFixed(1)}" y="${y + 15}">${(r.udpPps / 1000).toFixed(1)}k</text>`,
    ].join("");
  }).join("\n");
  const H = top + rows.length * rowH + 20;
  await Deno.writeTextFile(
    `${dir}/tunnel.svg`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<text x="${left}" y="22" font-weight="bold">TCP, 1 stream (Mbit/s)</text>
<text x="${left + barW + 40}" y="22" font-weight="bold">UDP 64 B (packets/s)</text>
${bars}
<text x="8" y="${H - 6}" fill="#666">${esc(`${CIPHER} over UDP, two namespaces on one veth, ${when}`)}</text>
</svg>
`,
  );
  console.error(`results: ${dir}/tunnel.json, ${dir}/tunnel.svg`);
}
