/**
 * Which Windows network interface an adapter is, as an interface index for netsh: never a name that
 * another adapter may carry. The ovpn-dco adapter actually opened is found through the device tree (its
 * device path, or for `\\.\ovpn-dco` the device object the link points to), then its NetCfgInstanceId (the
 * interface GUID); a Wintun adapter through its LUID. Only where that fails is the interface looked up by
 * its alias (the name), and the caller says so.
 *
 * @example
 * ```ts
 * import { indexOfLuid } from "./ifindex.ts";
 * indexOfLuid(0x18000001000000n); // 1 (Windows)
 * ```
 * @module
 */
import { ADVAPI32_SYMBOLS, IPHLPAPI_SYMBOLS } from "../ffi/setupapi.ts";
import { kernel32, system32, wcstr } from "../ffi/kernel32.ts";

let ip: Deno.DynamicLibrary<typeof IPHLPAPI_SYMBOLS>["symbols"] | undefined;
let adv: Deno.DynamicLibrary<typeof ADVAPI32_SYMBOLS>["symbols"] | undefined;

function iphlpapi() {
  ip ??= Deno.dlopen(system32("iphlpapi.dll"), IPHLPAPI_SYMBOLS).symbols;
  return ip;
}

/** advapi32.dll from System32, opened once. */
export function advapi32(): Deno.DynamicLibrary<typeof ADVAPI32_SYMBOLS>["symbols"] {
  adv ??= Deno.dlopen(system32("advapi32.dll"), ADVAPI32_SYMBOLS).symbols;
  return adv;
}

/** The interface index of a NET_LUID, or null. */
export function indexOfLuid(luid: bigint): number | null {
  const l = new BigUint64Array([luid]);
  const idx = new Uint32Array(1);
  if (iphlpapi().ConvertInterfaceLuidToIndex(new Uint8Array(l.buffer), new Uint8Array(idx.buffer)) !== 0) {
    return null;
  }
  return idx[0] || null;
}

/** The interface index of the interface whose alias (friendly name) is `name`, or null. */
export function indexOfAlias(name: string): number | null {
  const l = new BigUint64Array(1);
  if (iphlpapi().ConvertInterfaceAliasToLuid(wcstr(name), new Uint8Array(l.buffer)) !== 0) return null;
  return indexOfLuid(l[0]);
}

/** `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` as a 16-byte GUID struct, or null. */
export function parseGuid(s: string): Uint8Array | null {
  const m = /^\{?([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})\}?$/i.exec(s.trim());
  if (!m) return null;
  const g = new Uint8Array(16);
  const dv = new DataView(g.buffer);
  dv.setUint32(0, parseInt(m[1], 16), true);
  dv.setUint16(4, parseInt(m[2], 16), true);
  dv.setUint16(6, parseInt(m[3], 16), true);
  const rest = m[4] + m[5];
  for (let i = 0; i < 8; i++) g[8 + i] = parseInt(rest.substr(i * 2, 2), 16);
  return g;
}

/** The interface index of an interface GUID (a NetCfgInstanceId), or null. */
export function indexOfGuid(guid: string): number | null {
  const g = parseGuid(guid);
  if (!g) return null;
  const l = new BigUint64Array(1);
  if (iphlpapi().ConvertInterfaceGuidToLuid(g, new Uint8Array(l.buffer)) !== 0) return null;
  return indexOfLuid(l[0]);
}

/** The NT device object a DOS device name (`ovpn-dco`) links to, e.g. `\Device\00000042`, or null. */
export function dosDeviceTarget(name: string): string | null {
  const out = new Uint16Array(1024);
  const n = kernel32().QueryDosDeviceW(wcstr(name), new Uint8Array(out.buffer), out.length);
  if (n === 0) return null;
  const end = out.indexOf(0);
  return String.fromCharCode(...out.subarray(0, end < 0 ? n : end));
}
