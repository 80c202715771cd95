/**
 * The upstream positional form, exactly as ovpn-dco-cli.exe takes it:
 *
 *   <tcp|udp> <i4|i6> <local-ip> <local-port> <remote-ip> <remote-port> <vpn-ip> <vpn-netmask> <vpn-gw> [<key-file> [<key-direction>]]
 *
 * with upstream's defaults (no key file: cipher NONE; key direction > 0 → 1; AES-256-GCM; keepalive
 * 5/60 with MSS 0, as upstream's `setup_keepalive(5, 60, 0)` since its 2022-03 "Support for mssfix" change;
 * MTU 1428; statistics block every second; `TCP connected`), and the global flags of `start`.
 * @module
 */
import { usage } from "./errors.ts";
import { netmaskToPrefix, parseFlags, parseIntIn, parsePort } from "./flags.ts";
import { commonConfig, GLOBAL_OPTIONS, loadKey, noneKey, runTunnel } from "./start.ts";
import { parseIPv4, parseIPv6 } from "../driver/uapi.ts";

export const UPSTREAM_USAGE =
  "Usage: ovpn-dco-cli <tcp|udp> <i4|i6> <local-ip> <local-port> <remote-ip> <remote-port> <vpn-ip> <vpn-netmask> <vpn-gw> <key-file> <key-direction>";

/** Whether argv is the positional form (first word tcp or udp). */
export function isUpstreamForm(args: string[]): boolean {
  return args[0] === "tcp" || args[0] === "udp";
}

function ip(v: string, what: string, v6: boolean): string {
  const ok = v6 ? parseIPv6(v) : parseIPv4(v);
  if (!ok) throw usage(`${what}: '${v}' is not an IPv${v6 ? 6 : 4} address (${v6 ? "i6" : "i4"} was given)`);
  return v;
}

/** Run the positional form. */
export async function upstream(args: string[]): Promise<number> {
  const { values: v, positionals: p } = parseFlags(args, GLOBAL_OPTIONS, "upstream form", true);
  if (p.length < 9) throw usage(`expected at least 9 arguments, got ${p.length}. ${UPSTREAM_USAGE}`);
  if (p.length > 11) throw usage(`expected at most 11 arguments, got ${p.length}. ${UPSTREAM_USAGE}`);
  const [proto, fam, lip, lport, rip, rport, vpnIp, vpnMask, vpnGw, keyFile, keyDir] = p;
  if (fam !== "i4" && fam !== "i6") {
    throw usage(`second argument: '${fam}' is not i4 or i6. ${UPSTREAM_USAGE}`);
  }
  const v6 = fam === "i6";
  const local = { address: ip(lip, "local-ip", v6), port: parsePort(lport, "local-port") };
  const remote = { address: ip(rip, "remote-ip", v6), port: parsePort(rport, "remote-port") };
  const vpnV6 = !parseIPv4(vpnIp) && !!parseIPv6(vpnIp);
  if (!parseIPv4(vpnIp) && !vpnV6) throw usage(`vpn-ip: '${vpnIp}' is not an IP address`);
  const prefix = netmaskToPrefix(vpnMask, "vpn-netmask", vpnV6);
  if (!parseIPv4(vpnGw) && !parseIPv6(vpnGw)) throw usage(`vpn-gw: '${vpnGw}' is not an IP address`);
  if (v.key && keyFile) throw usage("give the key file either as the 10th argument or as --key, not both");
  if (v.mode !== undefined && v.mode !== "p2p") {
    throw usage("the positional form is point-to-point; for a server use 'ovpn-dco-cli start --mode server'");
  }
  const common = await commonConfig({ ...v, key: undefined, epoch: undefined });
  const file = keyFile ?? (v.key as string | undefined);
  // upstream: key direction > 0 → 1 else 0; no key file → NONE
  const direction = keyDir !== undefined
    ? (parseIntIn(keyDir, "key-direction", -(2 ** 31), 2 ** 31 - 1) > 0 ? 1 : 0)
    : 0;
  const key = file
    ? (await loadKey(file, {
      cipher: (v.cipher as string | undefined) ?? "AES-256-GCM",
      keyDirection: direction,
      epoch: !!v.epoch,
    })).material
    : noneKey();
  if (v.epoch && !file) throw usage("--epoch needs a key file (the 10th argument or --key)");
  if (!file) console.error("no key file: cipher NONE (test mode, as upstream)");
  return await runTunnel({
    ...common,
    // upstream: setup_keepalive(5, 60, 0); --keepalive / --mss still override
    keepalive: v.keepalive !== undefined ? common.keepalive : { interval: 5, timeout: 60 },
    key,
    addresses: [`${vpnIp}/${prefix}`],
    peer: { proto: proto as "tcp" | "udp", local, remote, peerId: common.peerId, connectTimeoutMs: 30_000 },
  });
}
