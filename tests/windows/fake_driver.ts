/**
 * Test helpers (Windows side, under Wine) for talking to the fake ovpn-dco driver's private IOCTLs
 * through the shared version device: read and reset the journal, inject events.
 * @module
 */
import {
  cstr,
  GENERIC_READ,
  GENERIC_WRITE,
  isInvalidHandle,
  kernel32,
  OPEN_EXISTING,
} from "../../ffi/kernel32.ts";

const ctl = (n: number) => (0x220000 | (n << 2)) >>> 0;
const FAKE_GET_JOURNAL = ctl(0x800);
const FAKE_INJECT = ctl(0x801);
const FAKE_SET_TCP = ctl(0x802);
const FAKE_SET_VERSION = ctl(0x803);
const FAKE_SET_DELAY = ctl(0x804);

function call(code: number, input: Uint8Array | null, outLen: number): Uint8Array {
  const k = kernel32();
  // a synchronous handle (no FILE_FLAG_OVERLAPPED): these calls complete at once
  const h = k.CreateFileA(
    cstr("\\\\.\\ovpn-dco-ver"),
    (GENERIC_READ | GENERIC_WRITE) >>> 0,
    0,
    null,
    OPEN_EXISTING,
    0, /* no FILE_FLAG_OVERLAPPED */
    null,
  );
  if (isInvalidHandle(h)) throw new Error(`the fake driver is not running (error ${k.GetLastError()})`);
  try {
    const out = new Uint8Array(Math.max(outLen, 1));
    const got = new Uint32Array(1);
    if (!k.DeviceIoControl(h, code, input, input?.length ?? 0, outLen ? out : null, outLen, got, null)) {
      throw new Error(`fake driver IOCTL failed: ${k.GetLastError()}`);
    }
    return out.subarray(0, got[0]);
  } finally {
    k.CloseHandle(h);
  }
}

/** The journal lines since the last reset. */
export function journal(): string[] {
  return new TextDecoder().decode(call(FAKE_GET_JOURNAL, null, 32768)).split("\n").filter((l) => l);
}

function inject(what: number, data: Uint8Array = new Uint8Array(0)) {
  const b = new Uint8Array(4 + data.length);
  new DataView(b.buffer).setUint32(0, what, true);
  b.set(data, 4);
  call(FAKE_INJECT, b, 0);
}

/** Forget every state and the journal. */
export const resetDriver = () => inject(4);
/** A control packet arrives from the "peer". */
export const injectControl = (p: Uint8Array) => inject(1, p);
/** The keepalive timeout expires. */
export const injectExpire = () => inject(2);
/** The server closes the TCP connection. */
export const injectTcpAbort = () => inject(3);
/** Make TCP connects succeed (false) or be refused (true). */
export function refuseTcp(refuse: boolean) {
  const b = new Uint8Array(4);
  b[0] = refuse ? 1 : 0;
  call(FAKE_SET_TCP, b, 0);
}

/** The driver version the fake reports from now on (until `resetDriver`, which restores 2.7.1). */
export function setDriverVersion(major: number, minor: number, patch: number) {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  dv.setInt32(0, major, true);
  dv.setInt32(4, minor, true);
  dv.setInt32(8, patch, true);
  call(FAKE_SET_VERSION, b, 0);
}

/**
 * How long the fake keeps pended requests (writes, TCP connects) before completing them: 0 = varied
 * (1-40 ms, the default after `resetDriver`), else exactly `ms`.
 */
export function setDelay(ms: number) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, ms, true);
  call(FAKE_SET_DELAY, b, 0);
}

/** A notification from the "driver" (OVPN_NOTIFY_EVENT bytes; a DEL_PEER also drops the peer). */
export function injectNotify(event: Uint8Array) {
  inject(5, event);
}

/** FNV-1a (as the fake journals key fingerprints). */
export function fnv(b: Uint8Array): string {
  let h = 2166136261;
  for (const x of b) h = Math.imul(h ^ x, 16777619) >>> 0;
  return h.toString(16).padStart(8, "0");
}
