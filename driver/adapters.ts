/**
 * Finding ovpn-dco adapters on Windows, as the driver's documentation describes: network-class devices
 * whose hardware ID contains `ovpn-dco` (SetupDiGetClassDevs), their instance IDs and friendly names,
 * then `CM_Get_Device_Interface_List(GUID_DEVINTERFACE_NET, instance)` and the path that ends in
 * `\ovpn-dco`. `\\.\ovpn-dco` reaches only the first adapter; these paths reach each one.
 *
 * @example
 * ```ts
 * import { findAdapters } from "./adapters.ts";
 * for (const a of findAdapters()) console.log(a.name, a.path);
 * ```
 * @module
 */
import {
  CFGMGR32_SYMBOLS,
  CR_SUCCESS,
  DIGCF_PRESENT,
  GUID_DEVCLASS_NET,
  GUID_DEVINTERFACE_NET,
  SETUPAPI_SYMBOLS,
  SP_DEVINFO_DATA_SIZE,
  SPDRP_FRIENDLYNAME,
  SPDRP_HARDWAREID,
} from "../ffi/setupapi.ts";
import { isInvalidHandle } from "../ffi/kernel32.ts";
import { DeviceError } from "./device.ts";

/** One ovpn-dco adapter. */
export interface DcoAdapter {
  name: string;
  instanceId: string;
  path: string;
}

/** UTF-16LE multi-string (or single string) to strings. */
function wstrings(b: Uint8Array): string[] {
  const u16 = new Uint16Array(b.buffer, b.byteOffset, b.length >> 1);
  const out: string[] = [];
  let cur = "";
  for (const c of u16) {
    if (c === 0) {
      if (!cur) break;
      out.push(cur);
      cur = "";
    } else cur += String.fromCharCode(c);
  }
  if (cur) out.push(cur);
  return out;
}

/** Every ovpn-dco adapter present (empty where there is none). */
export function findAdapters(): DcoAdapter[] {
  const sa = Deno.dlopen("setupapi.dll", SETUPAPI_SYMBOLS).symbols;
  const cm = Deno.dlopen("cfgmgr32.dll", CFGMGR32_SYMBOLS).symbols;
  const set = sa.SetupDiGetClassDevsW(GUID_DEVCLASS_NET, null, null, DIGCF_PRESENT);
  if (isInvalidHandle(set)) return [];
  const found: DcoAdapter[] = [];
  try {
    const info = new Uint8Array(SP_DEVINFO_DATA_SIZE);
    for (let i = 0;; i++) {
      info.fill(0);
      new DataView(info.buffer).setUint32(0, SP_DEVINFO_DATA_SIZE, true);
      if (!sa.SetupDiEnumDeviceInfo(set, i, info)) break;
      const prop = (which: number) => {
        const b = new Uint8Array(4096);
        return sa.SetupDiGetDeviceRegistryPropertyW(set, info, which, null, b, b.length, null)
          ? wstrings(b)
          : [];
      };
      if (!prop(SPDRP_HARDWAREID).some((h) => h.toLowerCase().includes("ovpn-dco"))) continue;
      const idBuf = new Uint8Array(2048);
      if (!sa.SetupDiGetDeviceInstanceIdW(set, info, idBuf, idBuf.length / 2, null)) continue;
      const instanceId = wstrings(idBuf)[0] ?? "";
      const instZ = new Uint8Array((instanceId.length + 1) * 2);
      for (let k = 0; k < instanceId.length; k++) {
        new DataView(instZ.buffer).setUint16(2 * k, instanceId.charCodeAt(k), true);
      }
      const len = new Uint32Array(1);
      if (
        cm.CM_Get_Device_Interface_List_SizeW(len, GUID_DEVINTERFACE_NET, instZ, 0) !== CR_SUCCESS ||
        len[0] === 0
      ) continue;
      const list = new Uint8Array(len[0] * 2);
      if (cm.CM_Get_Device_Interface_ListW(GUID_DEVINTERFACE_NET, instZ, list, len[0], 0) !== CR_SUCCESS) {
        continue;
      }
      const path = wstrings(list).find((p) => p.toLowerCase().endsWith("\\ovpn-dco"));
      if (path) found.push({ name: prop(SPDRP_FRIENDLYNAME)[0] ?? instanceId, instanceId, path });
    }
  } finally {
    sa.SetupDiDestroyDeviceInfoList(set);
  }
  return found;
}

/**
 * The device path for `--adapter`: a path as given (starting with `\\`), or the adapter whose friendly
 * name or instance ID is `name`.
 */
export function resolveAdapter(name: string): string {
  if (name.startsWith("\\\\")) return name;
  const all = findAdapters();
  const hit = all.find((a) =>
    a.name.toLowerCase() === name.toLowerCase() || a.instanceId.toLowerCase() === name.toLowerCase()
  );
  if (hit) return hit.path;
  throw new DeviceError(
    all.length
      ? `no ovpn-dco adapter is named '${name}'; adapters: ${all.map((a) => `'${a.name}'`).join(", ")}`
      : `no ovpn-dco adapter is named '${name}' (no ovpn-dco adapters found); install the driver or omit --adapter`,
    "missing",
  );
}
