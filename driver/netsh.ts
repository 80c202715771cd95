/**
 * Interface addresses and MTU on Windows with netsh (System32's, by absolute path), as upstream's
 * ovpn-dco-cli.exe does it: the interface is named by its **index**, taken from the adapter actually opened
 * (see ifindex.ts), so a command can never reach another adapter that carries the same name. Every change is
 * `store=active` (gone when the adapter goes, so addresses do not pile up in the registry). The IPv6 MTU is
 * set only when an IPv6 address is configured and the MTU is at least 1280 (IPv6's minimum); a failed MTU
 * step is a warning, a failed address an error. netsh's output is decoded in the console's code page.
 *
 * @example
 * ```ts
 * import { configureWindowsInterface } from "./netsh.ts";
 * await configureWindowsInterface({ index: 12, name: "ovpn" }, { mtu: 1428, addresses: ["10.8.0.2/24"] });
 * ```
 * @module
 */
import { DeviceError } from "./device.ts";
import { decodeConsoleOutput, system32 } from "../ffi/kernel32.ts";

/** A dotted IPv4 netmask of a prefix length. */
export function prefixToMask(prefix: number): string {
  const m = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [m >>> 24, (m >>> 16) & 255, (m >>> 8) & 255, m & 255].join(".");
}

/** The interface netsh is to change: its index, and its name for messages. */
export interface NetshTarget {
  index: number;
  name: string;
}

/** The netsh commands (argument lists) that configure `t`, each with whether its failure is fatal. */
export function netshCommands(
  t: NetshTarget,
  o: { mtu: number; addresses: string[] },
): { args: string[]; what: string; fatal: boolean }[] {
  const mtu = Math.min(o.mtu, 1500);
  const i = String(t.index);
  const cmds: { args: string[]; what: string; fatal: boolean }[] = [];
  for (const a of o.addresses) {
    const [ip, prefix] = a.split("/");
    const what = `setting address ${a} on '${t.name}' (interface ${i})`;
    if (ip.includes(":")) {
      cmds.push({
        args: ["interface", "ipv6", "set", "address", `interface=${i}`, `address=${a}`, "store=active"],
        what,
        fatal: true,
      });
    } else {
      cmds.push({
        args: [
          ...["interface", "ipv4", "set", "address", `name=${i}`, "source=static"],
          ...[`address=${ip}`, `mask=${prefixToMask(Number(prefix))}`, "store=active"],
        ],
        what,
        fatal: true,
      });
    }
  }
  if (!o.addresses.length) return cmds;
  cmds.push({
    args: ["interface", "ipv4", "set", "subinterface", i, `mtu=${mtu}`, "store=active"],
    what: `setting the IPv4 MTU ${mtu} on '${t.name}' (interface ${i})`,
    fatal: false,
  });
  if (o.addresses.some((a) => a.includes(":")) && mtu >= 1280) {
    cmds.push({
      args: ["interface", "ipv6", "set", "subinterface", i, `mtu=${mtu}`, "store=active"],
      what: `setting the IPv6 MTU ${mtu} on '${t.name}' (interface ${i})`,
      fatal: false,
    });
  }
  return cmds;
}

/** Run System32's netsh; the result and its output (decoded), or a DeviceError when it cannot start. */
export async function netsh(args: string[], what: string): Promise<{ ok: boolean; text: string }> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(system32("netsh.exe"), { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    throw new DeviceError(`${what} failed: cannot run netsh (${(e as Error).message})`, "missing");
  }
  const text = (decodeConsoleOutput(out.stdout) + decodeConsoleOutput(out.stderr)).trim().split(/\r?\n/)
    .filter((l) => l.trim()).join(" ");
  return { ok: out.success, text: text || `exit code ${out.code}` };
}

/**
 * Set addresses (IPv4 and IPv6) and the MTU (at most 1500) of interface `t`. A failed address ends with a
 * DeviceError; a failed MTU step is logged as a warning.
 */
export async function configureWindowsInterface(
  t: NetshTarget,
  o: { mtu: number; addresses: string[] },
  log: (line: string) => void = (l) => console.error(l),
): Promise<void> {
  const mtu = Math.min(o.mtu, 1500);
  if (o.addresses.some((a) => a.includes(":")) && mtu < 1280) {
    log(`warning: the IPv6 MTU of '${t.name}' is left alone: ${mtu} is below IPv6's minimum of 1280`);
  }
  for (const c of netshCommands(t, o)) {
    const r = await netsh(c.args, c.what);
    if (r.ok) continue;
    const line = `${c.what} failed: 'netsh ${c.args.join(" ")}': ${r.text}`;
    if (!c.fatal) {
      log(`warning: ${line}`);
      continue;
    }
    throw new DeviceError(`${line}; setting addresses needs an elevated (administrator) prompt`, "privilege");
  }
}
