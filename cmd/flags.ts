/**
 * Parsing of the values users type: endpoints, CIDRs, netmasks, integers, keepalive pairs. Each parser
 * throws a usage error that names the flag, the bad value and the expected form.
 *
 * @example
 * ```ts
 * import { parseEndpoint } from "./flags.ts";
 * parseEndpoint("[fd00::1]:1194", "--remote"); // { address: "fd00::1", port: 1194 }
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { usage } from "./errors.ts";
import { formatEndpoint, parseIPv4, parseIPv6, type SockAddr } from "../driver/uapi.ts";

/** `ADDR:PORT` or `[IPv6]:PORT`. */
export function parseEndpoint(v: string, flag: string, defaultPort?: number): SockAddr {
  let addr: string, port: string | undefined;
  const m6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(v);
  if (m6) [addr, port] = [m6[1], m6[2]];
  else if ((v.match(/:/g) ?? []).length === 1) [addr, port] = v.split(":");
  else [addr, port] = [v, undefined];
  if (!parseIPv4(addr) && !parseIPv6(addr)) {
    throw usage(
      `${flag}: '${v}' is not ADDR:PORT with an IPv4 address or [IPv6] address (e.g. 192.0.2.1:1194, [fd00::1]:1194)`,
    );
  }
  if (port === undefined) {
    if (defaultPort === undefined) {
      throw usage(
        `${flag}: '${v}' has no port; write ADDR:PORT, e.g. ${formatEndpoint({ address: addr, port: 1194 })}`,
      );
    }
    return { address: addr, port: defaultPort };
  }
  return { address: addr, port: parsePort(port, flag) };
}

/** A port number 0..65535. */
export function parsePort(v: string, what: string): number {
  if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) {
    throw usage(`${what}: '${v}' is not a port number (0-65535)`);
  }
  return Number(v);
}

/** An integer within [min, max]. */
export function parseIntIn(v: string, what: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(v.trim()) || Number(v) < min || Number(v) > max) {
    throw usage(`${what}: '${v}' must be an integer from ${min} to ${max}`);
  }
  return Number(v);
}

/** `ADDR/PREFIX`, IPv4 or IPv6. Returns the normalised text. */
export function parseCidr(v: string, flag: string): string {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(v);
  const v4 = m && parseIPv4(m[1]);
  const v6 = m && !v4 && parseIPv6(m[1]);
  if (!m || (!v4 && !v6) || Number(m[2]) > (v4 ? 32 : 128)) {
    throw usage(`${flag}: '${v}' is not ADDR/PREFIX (e.g. 10.8.0.1/24 or fd00:8::1/64)`);
  }
  return `${m[1]}/${Number(m[2])}`;
}

/** A dotted IPv4 netmask (255.255.255.0) or a prefix length, as a prefix length. */
export function netmaskToPrefix(v: string, what: string, v6 = false): number {
  if (/^\d{1,3}$/.test(v) && Number(v) <= (v6 ? 128 : 32)) return Number(v);
  const b = parseIPv4(v);
  if (b) {
    const n = ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
    const prefix = 32 - Math.log2((~n >>> 0) + 1);
    if (Number.isInteger(prefix)) return prefix;
  }
  throw usage(`${what}: '${v}' is not a netmask (e.g. 255.255.255.0 or a prefix length like 24)`);
}

/** `INTERVAL,TIMEOUT` in seconds. */
export function parseKeepalive(v: string, flag = "--keepalive"): { interval: number; timeout: number } {
  const m = /^(\d+),(\d+)$/.exec(v.trim());
  if (!m) throw usage(`${flag}: '${v}' is not INTERVAL,TIMEOUT in seconds (e.g. 10,300)`);
  const interval = Number(m[1]), timeout = Number(m[2]);
  if (timeout !== 0 && interval >= timeout) {
    throw usage(`${flag}: the interval (${interval} s) must be shorter than the timeout (${timeout} s)`);
  }
  return { interval, timeout };
}

type OptSpec = Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }>;

/**
 * node:util parseArgs with errors rewritten as one usage line that points at the command's help.
 * Returns `values` and `positionals`.
 */
export function parseFlags<T extends OptSpec>(
  args: string[],
  options: T,
  command: string,
  allowPositionals = false,
) {
  // a value that starts with '-' and a digit (`--keepalive -1,40`, `--mss -1`) belongs to its option:
  // node:util parseArgs would take it for an option and refuse it
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith("--") ? args[i].slice(2) : null;
    if (name && options[name]?.type === "string" && /^-\d/.test(args[i + 1] ?? "")) {
      joined.push(`${args[i]}=${args[++i]}`);
    } else joined.push(args[i]);
  }
  args = joined;
  try {
    return parseArgs({ args, options, strict: true, allowPositionals });
  } catch (e) {
    const msg = (e as Error).message.replace(/\. To specify a positional argument.*$/s, "").replace(
      /\.$/,
      "",
    );
    throw usage(`${command}: ${msg}; see 'ovpn-dco-cli ${command} --help'`);
  }
}
