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
  CR_BUFFER_SMALL,
  CR_SUCCESS,
  DICS_FLAG_GLOBAL,
  DIGCF_PRESENT,
  DIREG_DRV,
  GUID_DEVCLASS_NET,
  GUID_DEVINTERFACE_NET,
  KEY_READ,
  SETUPAPI_SYMBOLS,
  SP_DEVINFO_DATA_SIZE,
  SPDRP_FRIENDLYNAME,
  SPDRP_HARDWAREID,
  SPDRP_PHYSICAL_DEVICE_OBJECT_NAME,
} from "../ffi/setupapi.ts";
import { advapi32, dosDeviceTarget, indexOfGuid } from "./ifindex.ts";
import { isInvalidHandle, system32, wcstr } from "../ffi/kernel32.ts";
import { DeviceError } from "./device.ts";

/** One ovpn-dco adapter. */
export interface DcoAdapter {
  name: string;
  instanceId: string;
  path: string;
  /** Its NetCfgInstanceId: the interface GUID (empty when unknown). */
  interfaceGuid: string;
  /** Its device object (`\Device\...`), what `\\.\ovpn-dco` links to for the first adapter. */
  deviceObject: string;
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

let libs: {
  sa: Deno.DynamicLibrary<typeof SETUPAPI_SYMBOLS>["symbols"];
  cm: Deno.DynamicLibrary<typeof CFGMGR32_SYMBOLS>["symbols"];
} | undefined;

/** setupapi.dll and cfgmgr32.dll, from System32, opened once. */
function setupLibs() {
  libs ??= {
    sa: Deno.dlopen(system32("setupapi.dll"), SETUPAPI_SYMBOLS).symbols,
    cm: Deno.dlopen(system32("cfgmgr32.dll"), CFGMGR32_SYMBOLS).symbols,
  };
  return libs;
}

/**
 * The device interface paths of one device instance (NUL-terminated UTF-16 `instZ`). The list can grow
 * between the size query and the read (CR_BUFFER_SMALL): then ask again, a few times.
 */
function interfacePaths(
  cm: ReturnType<typeof setupLibs>["cm"],
  instZ: Uint8Array,
): string[] {
  for (let attempt = 0; attempt < 5; attempt++) {
    const len = new Uint32Array(1);
    if (cm.CM_Get_Device_Interface_List_SizeW(len, GUID_DEVINTERFACE_NET, instZ, 0) !== CR_SUCCESS) return [];
    if (len[0] === 0) return [];
    const list = new Uint8Array(len[0] * 2);
    const r = cm.CM_Get_Device_Interface_ListW(GUID_DEVINTERFACE_NET, instZ, list, len[0], 0);
    if (r === CR_SUCCESS) return wstrings(list);
    if (r !== CR_BUFFER_SMALL) return [];
  }
  return [];
}

/** Every ovpn-dco adapter present (empty where there is none). */
export function findAdapters(): DcoAdapter[] {
  const { sa, cm } = setupLibs();
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
      const path = interfacePaths(cm, instZ).find((p) => p.toLowerCase().endsWith("\\ovpn-dco"));
      if (!path) continue;
      found.push({
        name: prop(SPDRP_FRIENDLYNAME)[0] ?? instanceId,
        instanceId,
        path,
        interfaceGuid: netCfgInstanceId(sa, set, info),
        deviceObject: prop(SPDRP_PHYSICAL_DEVICE_OBJECT_NAME)[0] ?? "",
      });
    }
  } finally {
    sa.SetupDiDestroyDeviceInfoList(set);
  }
  return found;
}

/** The NetCfgInstanceId value of a device's driver key ("" when it cannot be read). */
function netCfgInstanceId(
  sa: ReturnType<typeof setupLibs>["sa"],
  set: Deno.PointerValue,
  info: Uint8Array,
): string {
  const key = sa.SetupDiOpenDevRegKey(set, info, DICS_FLAG_GLOBAL, 0, DIREG_DRV, KEY_READ);
  if (isInvalidHandle(key)) return "";
  try {
    const b = new Uint8Array(512);
    const len = new Uint32Array([b.length]);
    const r = advapi32().RegQueryValueExW(
      key,
      wcstr("NetCfgInstanceId"),
      null,
      null,
      b,
      new Uint8Array(len.buffer),
    );
    return r === 0 ? wstrings(b.subarray(0, len[0]))[0] ?? "" : "";
  } finally {
    advapi32().RegCloseKey(key);
  }
}

/**
 * The interface index of the adapter opened at `path`: the adapter with that device path, or for
 * `\\.\ovpn-dco` the one whose device object the link points to. Null when it cannot be told.
 */
export function interfaceIndexOfAdapter(path: string): number | null {
  const all = findAdapters();
  let hit: DcoAdapter | undefined;
  if (path.toLowerCase() === "\\\\.\\ovpn-dco") {
    const target = dosDeviceTarget("ovpn-dco");
    hit = all.find((a) => target !== null && a.deviceObject.toLowerCase() === target.toLowerCase());
  } else {
    hit = all.find((a) => a.path.toLowerCase() === path.toLowerCase());
  }
  return hit?.interfaceGuid ? indexOfGuid(hit.interfaceGuid) : null;
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
