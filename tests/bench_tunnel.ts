/**
 * `deno task bench:tunnel` (Linux, root): throughput through this tool versus OpenVPN 2.6 in userspace,
 * same cipher, same namespace set-up, same run:
 *   - iperf3 TCP, one stream, 10 s (BENCH_TCP_SECONDS)
 *   - iperf3 UDP with 64-byte payloads, unlimited rate, 5 s: packets/s that arrive
 * Also this tool in server mode with one peer (a p2p client → `start --mode server`), against p2p.
 * Prints a table; the last line is `tunnel-aes-256-gcm-udp: <ratio> of openvpn` (TCP throughput ratio).
 * @module
 */
import { NetnsLab } from "../cmd/netns.ts";
import { startPair } from "../cmd/demo.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";
import { startOpenvpnPair } from "./lab.ts";

const CIPHER = Deno.env.get("BENCH_CIPHER") ?? "AES-256-GCM";
const TCP_SECONDS = Number(Deno.env.get("BENCH_TCP_SECONDS") ?? "10");
const UDP_SECONDS = Number(Deno.env.get("BENCH_UDP_SECONDS") ?? "5");

interface Result {
  tcpGbit: number;
  udpPps: number;
}

async function iperf(lab: NetnsLab, dst: string): Promise<Result> {
  const server = lab.spawn("b", ["iperf3", "-s", "--forceflush", "-B", dst]);
  try {
    await lab.waitFor(() => server.output().includes("listening"), 10000, "the iperf3 server");
    const tcp = JSON.parse(await lab.run("a", ["iperf3", "-c", dst, "-t", String(TCP_SECONDS), "-J"]));
    const udp = JSON.parse(
      await lab.run("a", ["iperf3", "-c", dst, "-u", "-l", "64", "-b", "0", "-t", String(UDP_SECONDS), "-J"]),
    );
    const s = udp.end.sum;
    return {
      tcpGbit: tcp.end.sum_received.bits_per_second / 1e9,
      udpPps: (s.packets - s.lost_packets) / s.seconds,
    };
  } finally {
    await lab.stop(server);
  }
}

async function measureOurs(): Promise<Result> {
  const lab = await NetnsLab.create(90);
  try {
    const keyFile = `${lab.runDir}/k.key`;
    await writeNewKeyFile(keyFile);
    await startPair(lab, { proto: "udp", cipher: CIPHER, keyFile });
    return await iperf(lab, lab.inner4.b);
  } finally {
    await lab.destroy();
  }
}

/** The same traffic through a server-mode instance (b) with one peer: a point-to-point client (a). */
async function measureServer(): Promise<Result> {
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
    lab.startTool("a", [
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
    return await iperf(lab, lab.inner4.b);
  } finally {
    await lab.destroy();
  }
}

async function measureOpenvpn(): Promise<Result> {
  const lab = await NetnsLab.create(91);
  try {
    const { net } = await startOpenvpnPair(lab, CIPHER);
    return await iperf(lab, `${net}.1`);
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
const ovpn = await measureOpenvpn();
const ours = await measureOurs();
const server = await measureServer();
const row = (name: string, r: Result) =>
  console.log(
    `${name.padEnd(30)}${(r.tcpGbit * 1000).toFixed(0).padStart(10)} Mbit/s${
      r.udpPps.toFixed(0).padStart(12)
    } pkt/s`,
  );
console.log(`${"".padEnd(30)}${"TCP".padStart(17)}${"UDP 64 B".padStart(18)}`);
row("openvpn 2.6 (userspace)", ovpn);
row("ovpn-dco-cli (tun)", ours);
row("ovpn-dco-cli server, 1 peer", server);
console.log(
  `server-1-peer: ${(server.tcpGbit / ours.tcpGbit).toFixed(2)} of p2p (TCP), ${
    (server.udpPps / ours.udpPps).toFixed(2)
  } of p2p (64 B)`,
);
console.log(`udp-64-pps: ${(ours.udpPps / ovpn.udpPps).toFixed(2)} of openvpn`);
console.log(`tunnel-${CIPHER.toLowerCase()}-udp: ${(ours.tcpGbit / ovpn.tcpGbit).toFixed(2)} of openvpn`);
