/**
 * Raw symbols of setupapi.dll and cfgmgr32.dll for finding ovpn-dco adapters: network-class devices
 * whose hardware ID contains `ovpn-dco`, their friendly names and device-interface paths. No logic here.
 * @module
 */

export const SETUPAPI_SYMBOLS = {
  SetupDiGetClassDevsW: { parameters: ["buffer", "pointer", "pointer", "u32"], result: "pointer" },
  SetupDiEnumDeviceInfo: { parameters: ["pointer", "u32", "buffer"], result: "i32" },
  SetupDiGetDeviceRegistryPropertyW: {
    parameters: ["pointer", "buffer", "u32", "buffer", "buffer", "u32", "buffer"],
    result: "i32",
  },
  SetupDiGetDeviceInstanceIdW: {
    parameters: ["pointer", "buffer", "buffer", "u32", "buffer"],
    result: "i32",
  },
  SetupDiDestroyDeviceInfoList: { parameters: ["pointer"], result: "i32" },
  // (DeviceInfoSet, DeviceInfoData, Scope, HwProfile, KeyType, samDesired) -> HKEY
  SetupDiOpenDevRegKey: { parameters: ["pointer", "buffer", "u32", "u32", "u32", "u32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

export const ADVAPI32_SYMBOLS = {
  RegQueryValueExW: {
    parameters: ["pointer", "buffer", "pointer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  RegCloseKey: { parameters: ["pointer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** iphlpapi.dll: from an adapter's LUID, GUID or alias (friendly name) to its interface index. */
export const IPHLPAPI_SYMBOLS = {
  ConvertInterfaceLuidToIndex: { parameters: ["buffer", "buffer"], result: "u32" },
  ConvertInterfaceGuidToLuid: { parameters: ["buffer", "buffer"], result: "u32" },
  ConvertInterfaceAliasToLuid: { parameters: ["buffer", "buffer"], result: "u32" },
} as const satisfies Deno.ForeignLibraryInterface;

export const CFGMGR32_SYMBOLS = {
  CM_Get_Device_Interface_List_SizeW: { parameters: ["buffer", "buffer", "buffer", "u32"], result: "u32" },
  CM_Get_Device_Interface_ListW: { parameters: ["buffer", "buffer", "buffer", "u32", "u32"], result: "u32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** GUID_DEVCLASS_NET {4d36e972-e325-11ce-bfc1-08002be10318}. */
export const GUID_DEVCLASS_NET = new Uint8Array([
  0x72,
  0xe9,
  0x36,
  0x4d,
  0x25,
  0xe3,
  0xce,
  0x11,
  0xbf,
  0xc1,
  0x08,
  0x00,
  0x2b,
  0xe1,
  0x03,
  0x18,
]);
/** GUID_DEVINTERFACE_NET {cac88484-7515-4c03-82e6-71a87abac361}. */
export const GUID_DEVINTERFACE_NET = new Uint8Array([
  0x84,
  0x84,
  0xc8,
  0xca,
  0x15,
  0x75,
  0x03,
  0x4c,
  0x82,
  0xe6,
  0x71,
  0xa8,
  0x7a,
  0xba,
  0xc3,
  0x61,
]);
export const DIGCF_PRESENT = 0x2;
export const SPDRP_HARDWAREID = 0x1;
export const SPDRP_FRIENDLYNAME = 0xc;
export const SPDRP_PHYSICAL_DEVICE_OBJECT_NAME = 0xe;
export const DICS_FLAG_GLOBAL = 1;
export const DIREG_DRV = 2;
export const KEY_READ = 0x20019;
/** sizeof(SP_DEVINFO_DATA) on x64. */
export const SP_DEVINFO_DATA_SIZE = 32;
export const CR_SUCCESS = 0;
/** The list grew between the size query and the read: ask again. */
export const CR_BUFFER_SMALL = 0x1a;
