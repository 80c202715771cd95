/**
 * Raw symbol table of wintun.dll (the Wintun API) for `Deno.dlopen`, and its error codes. No logic.
 * wintun.dll is loaded by absolute path from the executable's directory (never the search path).
 * @module
 */

export const WINTUN_SYMBOLS = {
  WintunCreateAdapter: { parameters: ["buffer", "buffer", "pointer"], result: "pointer" },
  WintunOpenAdapter: { parameters: ["buffer"], result: "pointer" },
  WintunCloseAdapter: { parameters: ["pointer"], result: "void" },
  WintunDeleteDriver: { parameters: [], result: "i32" },
  WintunGetAdapterLUID: { parameters: ["pointer", "buffer"], result: "void" },
  WintunGetRunningDriverVersion: { parameters: [], result: "u32" },
  WintunSetLogger: { parameters: ["pointer"], result: "void" },
  WintunStartSession: { parameters: ["pointer", "u32"], result: "pointer" },
  WintunEndSession: { parameters: ["pointer"], result: "void" },
  WintunGetReadWaitEvent: { parameters: ["pointer"], result: "pointer" },
  WintunReceivePacket: { parameters: ["pointer", "buffer"], result: "pointer" },
  WintunReleaseReceivePacket: { parameters: ["pointer", "pointer"], result: "void" },
  WintunAllocateSendPacket: { parameters: ["pointer", "u32"], result: "pointer" },
  WintunSendPacket: { parameters: ["pointer", "pointer"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

export type Wintun = Deno.DynamicLibrary<typeof WINTUN_SYMBOLS>["symbols"];

export const ERROR_HANDLE_EOF = 38;
export const ERROR_BUFFER_OVERFLOW = 111;
export const ERROR_NO_MORE_ITEMS = 259;
/** Ring capacity bounds of WintunStartSession. */
export const WINTUN_MIN_RING = 0x20000;
export const WINTUN_MAX_RING = 0x4000000;

/** A NUL-terminated UTF-16LE string for the W functions. */
export function wstr(s: string): Uint8Array {
  const b = new Uint8Array((s.length + 1) * 2);
  for (let i = 0; i < s.length; i++) {
    b[2 * i] = s.charCodeAt(i) & 0xff;
    b[2 * i + 1] = s.charCodeAt(i) >> 8;
  }
  return b;
}
