/**
 * Interface addresses and MTU on Windows with netsh, as upstream's ovpn-dco-cli.exe does. Setting them
 * needs an elevated prompt; a failure names the interface, the command and its output.
 *
 * @example
 * ```ts
 * import { configureWindowsInterface } from "./netsh.ts";
 * await configureWindowsInterface("OpenVPN Data Channel Offload", { mtu: 1428, addresses: ["10.8.0.2/24"] });
 * ```
 * @module
 */
import { DeviceError } from "./device.ts";

/** A dotted IPv4 netmask of a prefix length. */
export function prefixToMask(prefix: number): string {
  const m = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [m >>> 24, (m >>> 16) & 255, (m >>> 8) & 255, m & 255].join(".");
}

/** Run netsh; failures become a DeviceError that says what was being done. */
export async function netsh(args: string[], what: string): Promise<void> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("netsh", { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    throw new DeviceError(`${what} failed: cannot run netsh (${(e as Error).message})`, "missing");
  }
  if (!out.success) {
    const text =
      (new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr)).trim().split("\n")[0];
    throw new DeviceError(
      `${what} failed: 'netsh ${args.join(" ")}': ${
        text || `exit code ${out.code}`
      }; setting addresses needs an elevated (administrator) prompt`,
      "privilege",
    );
  }
}

/** Set addresses (IPv4 and IPv6) and the MTU (at most 1500) of a Windows interface. */
export async function configureWindowsInterface(
  ifname: string,
  o: { mtu: number; addresses: string[] },
): Promise<void> {
  const mtu = Math.min(o.mtu, 1500);
  for (const a of o.addresses) {
    const [ip, prefix] = a.split("/");
    const what = `setting address ${a} on '${ifname}'`;
    if (ip.includes(":")) {
      await netsh(["interface", "ipv6", "set", "address", `interface=${ifname}`, `address=${a}`], what);
    } else {await netsh([
        "interface",
        "ip",
        "set",
        "address",
        `name=${ifname}`,
        "static",
        ip,
        prefixToMask(Number(prefix)),
      ], what);}
  }
  if (o.addresses.length) {
    for (const fam of ["ipv4", "ipv6"]) {
      await netsh(
        ["interface", fam, "set", "subinterface", ifname, `mtu=${mtu}`],
        `setting MTU ${mtu} on '${ifname}'`,
      );
    }
  }
}
