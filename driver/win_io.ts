/**
 * Overlapped I/O on Windows handles, safely: requests are issued through ntdll (NtCreateFile,
 * NtDeviceIoControlFile, NtReadFile, NtWriteFile, NtFsControlFile), whose NTSTATUS result says whether a
 * request is pending (a thread's last error can be overwritten by any other call); every OVERLAPPED and
 * buffer stays referenced until the kernel has completed its request, on every path (timeouts cancel and
 * wait; a request never completed after its cancel is kept forever). Used by the dco backend and the control
 * pipe.
 * @module
 */
import {
  FILE_ATTRIBUTE_SYSTEM,
  GENERIC_READ,
  GENERIC_WRITE,
  kernel32,
  ntdll,
  ntStatusToWin32,
  ntSuccess,
  Overlapped,
  STATUS,
  WAIT_OBJECT_0,
} from "../ffi/kernel32.ts";
import { DeviceError } from "./device.ts";

/** `\\.\X` / `\\?\X` as the NT object path `\??\X`. */
export function ntPath(path: string): string {
  const m = /^\\\\[.?]\\(.+)$/.exec(path);
  if (!m) throw new DeviceError(`'${path}' is not a device path (\\\\.\\NAME or \\\\?\\...)`, "missing");
  return `\\??\\${m[1]}`;
}

export const GENERIC_READ_WRITE = (GENERIC_READ | GENERIC_WRITE) >>> 0;
export const FILE_SHARE_READ_WRITE = 3;
const FILE_OPEN = 1;
const FILE_NON_DIRECTORY_FILE = 0x40;
const OBJ_CASE_INSENSITIVE = 0x40;
const SYNCHRONIZE = 0x100000;
const FILE_READ_ATTRIBUTES = 0x80;

/**
 * Open a device for overlapped I/O with NtCreateFile: the path is UTF-16 (a user-given adapter path is
 * never squeezed through the ANSI code page) and the NTSTATUS comes back as the result.
 */
export function openHandle(
  path: string,
  access = GENERIC_READ_WRITE,
  share = 0,
): { h: Deno.PointerValue; err: number } {
  const r = openHandleStatus(path, access, share);
  return r.h === null ? { h: null, err: ntStatusToWin32(r.status) } : { h: r.h, err: 0 };
}

/** As `openHandle`, with the NTSTATUS of a failure. */
export function openHandleStatus(
  path: string,
  access = GENERIC_READ_WRITE,
  share = 0,
): { h: Deno.PointerValue; status: number } {
  const name = new Uint16Array([...ntPath(path)].map((c) => c.charCodeAt(0)));
  const us = new Uint8Array(16); // UNICODE_STRING: Length, MaximumLength, Buffer
  const usv = new DataView(us.buffer);
  usv.setUint16(0, name.byteLength, true);
  usv.setUint16(2, name.byteLength, true);
  usv.setBigUint64(8, Deno.UnsafePointer.value(Deno.UnsafePointer.of(name)), true);
  const oa = new Uint8Array(48); // OBJECT_ATTRIBUTES
  const oav = new DataView(oa.buffer);
  oav.setUint32(0, 48, true);
  oav.setBigUint64(16, Deno.UnsafePointer.value(Deno.UnsafePointer.of(us)), true);
  oav.setUint32(24, OBJ_CASE_INSENSITIVE, true);
  const handle = new BigUint64Array(1);
  const iosb = new Uint8Array(16);
  const st = ntdll().NtCreateFile(
    new Uint8Array(handle.buffer),
    (access | SYNCHRONIZE | FILE_READ_ATTRIBUTES) >>> 0,
    oa,
    iosb,
    null,
    FILE_ATTRIBUTE_SYSTEM,
    share,
    FILE_OPEN,
    FILE_NON_DIRECTORY_FILE, // no FILE_SYNCHRONOUS_IO_*: overlapped, as FILE_FLAG_OVERLAPPED
    null,
    0,
  );
  void name; // referenced until here: the kernel reads it during the call
  if (!ntSuccess(st)) return { h: null, status: st };
  return { h: Deno.UnsafePointer.create(handle[0]), status: st };
}

/** OVERLAPPEDs (with their buffers) of requests the driver never completed after a cancel: never freed. */
const stuck: unknown[] = [];
/** How long to wait for a cancelled request to complete before giving up on it (and keeping its memory). */
const CANCEL_GRACE_MS = 5000;

/** How an overlapped request ended: its NTSTATUS and byte count; `timedOut`: it was cancelled by us. */
export interface Completion {
  status: number;
  info: number;
  timedOut: boolean;
}

/**
 * Issue one overlapped request (`issue` makes the Nt* call and returns its NTSTATUS) and wait for it. On a
 * timeout or when `cancelled()` turns true, cancel it and wait until the kernel has completed it: the
 * OVERLAPPED and every buffer in `keep` stay referenced until then, on every path. A request the driver never
 * completes after the cancel is kept forever (its memory may still be written) and reported.
 */
export async function overlapped(
  h: Deno.PointerValue,
  issue: (ov: Overlapped) => number,
  keep: unknown[],
  what: string,
  timeoutMs: number,
  cancelled: () => boolean = () => false,
): Promise<Completion> {
  const ov = new Overlapped();
  let free = true;
  try {
    const st = issue(ov);
    if (st !== STATUS.PENDING) {
      return { status: st, info: ntSuccess(st) ? ov.information : 0, timedOut: false };
    }
    if (await waitEvent(ov, timeoutMs, cancelled)) {
      return { status: ov.status, info: ov.information, timedOut: false };
    }
    kernel32().CancelIoEx(h, ov.buf);
    if (await waitEvent(ov, CANCEL_GRACE_MS)) {
      return { status: ov.status, info: ov.information, timedOut: true };
    }
    free = false;
    stuck.push(ov, keep);
    throw new DeviceError(
      `${what}: the driver did not complete the request within ${
        CANCEL_GRACE_MS / 1000
      } s of its cancellation`,
      "timeout",
    );
  } finally {
    if (free) ov.close();
  }
}

/** Wait for an overlapped operation's event without blocking the event loop; false on timeout or cancel. */
export async function waitEvent(
  ov: Overlapped,
  timeoutMs: number,
  cancelled: () => boolean = () => false,
): Promise<boolean> {
  const k = kernel32();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0 || cancelled()) return false;
    const r = await k.WaitForSingleObject_nb(ov.event, Math.min(left, 200));
    if (r === WAIT_OBJECT_0) return true;
  }
}
