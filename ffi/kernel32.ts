/**
 * Raw kernel32 (and one ntdll) symbols for driving the ovpn-dco-win driver, plus the smallest wrappers:
 * handles, OVERLAPPED buffers, Win32 error names. No logic here. The `*_nb` variants are
 * `nonblocking: true` (they wait on a helper thread and return a promise); GetLastError is meaningless
 * after them, so overlapped results are read with GetOverlappedResult on the calling thread.
 *
 * @example
 * ```ts
 * import { kernel32 } from "./kernel32.ts";
 * const k = kernel32(); // Windows only
 * ```
 * @module
 */

const SYMBOLS = {
  CreateFileA: {
    parameters: ["buffer", "u32", "u32", "pointer", "u32", "u32", "pointer"],
    result: "pointer",
  },
  CloseHandle: { parameters: ["pointer"], result: "i32" },
  DeviceIoControl: {
    parameters: ["pointer", "u32", "buffer", "u32", "buffer", "u32", "buffer", "buffer"],
    result: "i32",
  },
  ReadFile: { parameters: ["pointer", "buffer", "u32", "buffer", "buffer"], result: "i32" },
  WriteFile: { parameters: ["pointer", "buffer", "u32", "buffer", "buffer"], result: "i32" },
  GetOverlappedResult: { parameters: ["pointer", "buffer", "buffer", "i32"], result: "i32" },
  CancelIoEx: { parameters: ["pointer", "buffer"], result: "i32" },
  CreateEventA: { parameters: ["pointer", "i32", "i32", "pointer"], result: "pointer" },
  ResetEvent: { parameters: ["pointer"], result: "i32" },
  SetEvent: { parameters: ["pointer"], result: "i32" },
  // memcpy from native memory into a buffer, and from a buffer into native memory (WinTUN packets)
  RtlMoveMemory_in: { name: "RtlMoveMemory", parameters: ["buffer", "pointer", "usize"], result: "void" },
  RtlMoveMemory_out: { name: "RtlMoveMemory", parameters: ["pointer", "buffer", "usize"], result: "void" },
  // (nCount, lpHandles, bWaitAll, dwMilliseconds): WAIT_OBJECT_0 + the index of the signalled one, or 258
  WaitForMultipleObjects: { parameters: ["u32", "buffer", "i32", "u32"], result: "u32" },
  WaitForSingleObject: { parameters: ["pointer", "u32"], result: "u32" },
  WaitForSingleObject_nb: {
    name: "WaitForSingleObject",
    parameters: ["pointer", "u32"],
    result: "u32",
    nonblocking: true,
  },
  GetLastError: { parameters: [], result: "u32" },
  GetConsoleOutputCP: { parameters: [], result: "u32" },
  GetOEMCP: { parameters: [], result: "u32" },
  // (CodePage, dwFlags, lpMultiByteStr, cbMultiByte, lpWideCharStr, cchWideChar)
  MultiByteToWideChar: { parameters: ["u32", "u32", "buffer", "i32", "buffer", "i32"], result: "i32" },
  // (lpDeviceName, lpTargetPath, ucchMax)
  QueryDosDeviceW: { parameters: ["buffer", "buffer", "u32"], result: "u32" },
} as const satisfies Deno.ForeignLibraryInterface;

/**
 * ntdll's I/O calls return their NTSTATUS as the result, so whether a request is pending is known from
 * the call itself, never from a thread-local last error that another call may have overwritten.
 */
const NTDLL = {
  RtlNtStatusToDosError: { parameters: ["u32"], result: "u32" },
  // (FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, IoControlCode, In, InLen, Out, OutLen)
  NtDeviceIoControlFile: {
    parameters: [
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
    ],
    result: "u32",
  },
  // (FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, Buffer, Length, ByteOffset, Key)
  NtReadFile: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "buffer", "buffer", "u32", "buffer", "pointer"],
    result: "u32",
  },
  NtWriteFile: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "buffer", "buffer", "u32", "buffer", "pointer"],
    result: "u32",
  },
  // (FileHandle*, DesiredAccess, ObjectAttributes, IoStatusBlock, AllocationSize, FileAttributes,
  //  ShareAccess, CreateDisposition, CreateOptions, EaBuffer, EaLength)
  NtCreateFile: {
    parameters: [
      "buffer",
      "u32",
      "buffer",
      "buffer",
      "pointer",
      "u32",
      "u32",
      "u32",
      "u32",
      "pointer",
      "u32",
    ],
    result: "u32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

export type Kernel32 = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let k32: Kernel32 | undefined;
let nt: Deno.DynamicLibrary<typeof NTDLL>["symbols"] | undefined;

/** kernel32.dll, opened once. */
export function kernel32(): Kernel32 {
  k32 ??= Deno.dlopen(system32("kernel32.dll"), SYMBOLS).symbols;
  return k32;
}

/** ntdll.dll (from System32), opened once. */
export function ntdll(): Deno.DynamicLibrary<typeof NTDLL>["symbols"] {
  nt ??= Deno.dlopen(system32("ntdll.dll"), NTDLL).symbols;
  return nt;
}

/** The Win32 error of an NTSTATUS (ntdll's table). */
export function ntStatusToWin32(status: number): number {
  return ntdll().RtlNtStatusToDosError(status >>> 0);
}

/**
 * The absolute path of a system DLL or program (`%SystemRoot%\System32\name`), so that an elevated
 * process never loads one from the current directory or PATH.
 */
export function system32(name: string): string {
  const root = Deno.env.get("SystemRoot") ?? Deno.env.get("windir") ?? "C:\\Windows";
  return `${root.replace(/[\\/]+$/, "")}\\System32\\${name}`;
}

export const STATUS = {
  SUCCESS: 0,
  PENDING: 0x103,
  CANCELLED: 0xc0000120,
  BUFFER_OVERFLOW: 0x80000005,
} as const;

/** Whether an NTSTATUS is a success (or informational) code. */
export const ntSuccess = (st: number) => (st >>> 0) < 0x80000000;

export const GENERIC_READ = 0x80000000;
export const GENERIC_WRITE = 0x40000000;
export const OPEN_EXISTING = 3;
export const FILE_ATTRIBUTE_SYSTEM = 4;
export const FILE_FLAG_OVERLAPPED = 0x40000000;
export const INFINITE = 0xffffffff;
export const WAIT_OBJECT_0 = 0;
export const WAIT_TIMEOUT = 258;

export const ERROR = {
  FILE_NOT_FOUND: 2,
  PATH_NOT_FOUND: 3,
  ACCESS_DENIED: 5,
  INVALID_HANDLE: 6,
  INVALID_FUNCTION: 1,
  BAD_COMMAND: 22,
  NETNAME_DELETED: 64,
  INVALID_PARAMETER: 87,
  INSUFFICIENT_BUFFER: 122,
  IO_INCOMPLETE: 996,
  IO_PENDING: 997,
  OPERATION_ABORTED: 995,
  CONNECTION_REFUSED: 1225,
  CONNECTION_ABORTED: 1236,
  ALREADY_INITIALIZED: 1247,
  NOT_FOUND: 1168,
  MORE_DATA: 234,
} as const;

const NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(ERROR).map(([k, v]) => [v, `ERROR_${k}`]),
);

/** `ERROR_X (n)` for messages. */
export function win32ErrorName(code: number): string {
  return `${NAMES[code] ?? "error"} (${code})`;
}

/** Whether a handle is INVALID_HANDLE_VALUE or null. */
export function isInvalidHandle(h: Deno.PointerValue): boolean {
  if (h === null) return true;
  return Deno.UnsafePointer.value(h) === 0xffffffffffffffffn;
}

/** A NUL-terminated UTF-16LE string for the *W functions. */
export function wcstr(s: string): Uint8Array {
  const b = new Uint16Array(s.length + 1);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return new Uint8Array(b.buffer);
}

/** Text a console program wrote, decoded from the console's code page (the OEM code page without a console). */
export function decodeConsoleOutput(bytes: Uint8Array): string {
  if (bytes.length === 0) return "";
  const k = kernel32();
  const cp = k.GetConsoleOutputCP() || k.GetOEMCP();
  if (cp === 65001) return new TextDecoder().decode(bytes);
  const out = new Uint16Array(bytes.length * 2);
  const n = k.MultiByteToWideChar(cp, 0, bytes, bytes.length, new Uint8Array(out.buffer), out.length);
  if (n <= 0) return new TextDecoder().decode(bytes);
  return String.fromCharCode(...out.subarray(0, n));
}

/** A NUL-terminated ANSI string for the *A functions. */
export function cstr(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}

/**
 * An OVERLAPPED (x64: 32 bytes, hEvent at 24) bound to a manual-reset event. Its first 16 bytes are the
 * IO_STATUS_BLOCK the kernel writes when the request completes (Internal = NTSTATUS, InternalHigh = bytes).
 */
export class Overlapped {
  readonly buf = new Uint8Array(32);
  readonly event: Deno.PointerValue;
  constructor() {
    this.event = kernel32().CreateEventA(null, 1, 0, null);
    if (this.event === null) throw new Error("CreateEventA failed");
    new DataView(this.buf.buffer).setBigUint64(24, Deno.UnsafePointer.value(this.event), true);
  }
  /** Clear for a new operation (keeps the event). */
  reset(): void {
    this.buf.fill(0, 0, 24);
    kernel32().ResetEvent(this.event);
  }
  /** The NTSTATUS the I/O manager stored in Internal. */
  get status(): number {
    return new DataView(this.buf.buffer).getUint32(0, true);
  }
  /** The byte count the I/O manager stored in InternalHigh. */
  get information(): number {
    return Number(new DataView(this.buf.buffer).getBigUint64(8, true));
  }
  close(): void {
    kernel32().CloseHandle(this.event);
  }
}
