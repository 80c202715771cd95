/**
 * The `dco` backend: the Device over the ovpn-dco-win kernel driver, driven exactly like upstream's
 * ovpn-dco-cli.exe: CreateFileA(`\\.\ovpn-dco`, FILE_FLAG_OVERLAPPED), DeviceIoControl with the
 * OVPN_IOCTL_* codes (overlapped: TCP NEW_PEER completes when connected), one pending overlapped ReadFile
 * (2048 bytes) for control packets at all times, WriteFile to send one. The driver version is read from
 * the non-exclusive `\\.\ovpn-dco-ver` first. Interface address and MTU are set with netsh, as upstream.
 *
 * @example
 * ```ts
 * import { DcoDevice } from "./dco.ts";
 * const dev = await DcoDevice.open({ ifname: "ovpn-dco" }); // Windows, driver installed
 * ```
 * @module
 */
import {
  cstr,
  ERROR,
  FILE_ATTRIBUTE_SYSTEM,
  FILE_FLAG_OVERLAPPED,
  GENERIC_READ,
  GENERIC_WRITE,
  INFINITE,
  isInvalidHandle,
  kernel32,
  ntStatusToWin32,
  OPEN_EXISTING,
  Overlapped,
  WAIT_OBJECT_0,
  win32ErrorName,
} from "../ffi/kernel32.ts";
import { type Device, type DeviceEndReason, DeviceError, type PeerConfig } from "./device.ts";
import {
  CRYPTO_OPTIONS,
  decodeStats,
  decodeVersion,
  driverFeatures,
  encodeCryptoData,
  encodeNewPeer,
  encodeSetPeer,
  IOCTL,
  ioctlName,
  OVPN_CIPHER_ALG,
  type SetPeer,
  SIZE,
  type Version,
} from "./uapi.ts";
import type { KeyMaterial, KeySlotId } from "./userspace/keyslot.ts";
import type { Stats } from "./userspace/stats.ts";
import { CipherAlg } from "../crypto/aead.ts";
import { MAX_CONTROL_LEN } from "./userspace/packet.ts";
import { configureWindowsInterface } from "./netsh.ts";
import { ControlInbox } from "./tunnel_end.ts";

/** Where the driver lives. */
export const DCO_PATH = "\\\\.\\ovpn-dco";
export const DCO_VERSION_PATH = "\\\\.\\ovpn-dco-ver";
const READ_BUFFER = 2048;

/** Plain-language text for the driver's Win32 errors (SPEC §5.1). */
export function dcoErrorText(code: number): string {
  switch (code) {
    case ERROR.FILE_NOT_FOUND:
    case ERROR.PATH_NOT_FOUND:
      return "the ovpn-dco driver is not installed (no \\\\.\\ovpn-dco device); install it (for example with OpenVPN 2.6) or use --backend wintun";
    case ERROR.ACCESS_DENIED:
      return "the ovpn-dco adapter is in use by another process (OpenVPN or another instance); stop it, or pick another adapter with --adapter";
    case ERROR.NETNAME_DELETED:
      return "the peer timed out: the driver's keepalive timeout expired";
    case ERROR.CONNECTION_ABORTED:
      return "the TCP connection was closed by the server";
    case ERROR.BAD_COMMAND:
      return "the driver refused the call in its current state or mode (wrong order, or a multipeer call on a peer-to-peer adapter)";
    case ERROR.ALREADY_INITIALIZED:
      return "the adapter's mode is already set; close and reopen the adapter to change it";
    case ERROR.INSUFFICIENT_BUFFER:
      return "the read buffer is too small for the driver's packet";
    case ERROR.INVALID_PARAMETER:
      return "the driver rejected the call's parameters";
    case ERROR.CONNECTION_REFUSED:
      return "the TCP connection was refused; is the server listening?";
    case ERROR.OPERATION_ABORTED:
      return "the operation was cancelled";
  }
  return `the driver call failed with ${win32ErrorName(code)}`;
}

function dcoError(code: number, what: string): DeviceError {
  const kind = code === ERROR.FILE_NOT_FOUND || code === ERROR.PATH_NOT_FOUND
    ? "missing"
    : code === ERROR.ACCESS_DENIED
    ? "busy"
    : code === ERROR.BAD_COMMAND || code === ERROR.ALREADY_INITIALIZED
    ? "state"
    : "io";
  return new DeviceError(`${what}: ${dcoErrorText(code)} [${win32ErrorName(code)}]`, kind);
}

function openHandle(path: string): { h: Deno.PointerValue; err: number } {
  const k = kernel32();
  const h = k.CreateFileA(
    cstr(path),
    (GENERIC_READ | GENERIC_WRITE) >>> 0,
    0,
    null,
    OPEN_EXISTING,
    (FILE_ATTRIBUTE_SYSTEM | FILE_FLAG_OVERLAPPED) >>> 0,
    null,
  );
  if (isInvalidHandle(h)) return { h: null, err: k.GetLastError() };
  return { h, err: 0 };
}

/** Run one DeviceIoControl on an overlapped handle and wait for it (timeout: cancel and throw). */
async function ioctl(
  h: Deno.PointerValue,
  code: number,
  input: Uint8Array | null,
  outLen: number,
  timeoutMs = 10_000,
): Promise<Uint8Array> {
  const k = kernel32();
  const ov = new Overlapped();
  const out = new Uint8Array(Math.max(outLen, 1));
  const got = new Uint32Array(1);
  try {
    if (!k.DeviceIoControl(h, code, input, input?.length ?? 0, outLen ? out : null, outLen, got, ov.buf)) {
      const err = k.GetLastError();
      if (err !== ERROR.IO_PENDING) throw dcoError(err || ntStatusToWin32(ov.status), ioctlName(code));
      if (!(await waitEvent(ov, timeoutMs))) {
        k.CancelIoEx(h, ov.buf);
        await k.WaitForSingleObject_nb(ov.event, INFINITE);
        throw new DeviceError(`${ioctlName(code)} did not complete within ${timeoutMs / 1000} s`, "timeout");
      }
    }
    if (!k.GetOverlappedResult(h, ov.buf, got, 0)) {
      throw dcoError(k.GetLastError() || ntStatusToWin32(ov.status), ioctlName(code));
    }
    return out.subarray(0, got[0]);
  } finally {
    ov.close();
  }
}

/** Wait for an overlapped operation's event without blocking the event loop; false on timeout. */
async function waitEvent(
  ov: Overlapped,
  timeoutMs: number,
  cancelled: () => boolean = () => false,
): Promise<boolean> {
  const k = kernel32();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0 || cancelled()) return false;
    const r = await k.WaitForSingleObject_nb(ov.event, Math.min(left, 500));
    if (r === WAIT_OBJECT_0) return true;
  }
}

/** Read the driver version from `\\.\ovpn-dco-ver` (null when that device does not exist). */
export async function readDriverVersion(): Promise<Version | null> {
  const { h } = openHandle(DCO_VERSION_PATH);
  if (h === null) return null;
  try {
    return decodeVersion(await ioctl(h, IOCTL.GET_VERSION, null, SIZE.VERSION));
  } finally {
    kernel32().CloseHandle(h);
  }
}

/** Options of the dco backend. */
export interface DcoOptions {
  /** Interface name for netsh (address and MTU). */
  ifname: string;
  /** A specific adapter: its name or device path (default `\\.\ovpn-dco`, the first adapter, as upstream). */
  adapter?: string;
  log?: (line: string) => void;
}

/** The Device over the ovpn-dco-win driver. */
export class DcoDevice implements Device {
  readonly backend = "dco";
  readonly configureAfterStart = true;
  readonly ifname: string;
  readonly ended: Promise<DeviceEndReason>;
  readonly version: Version | null;
  #h: Deno.PointerValue;
  #closed = false;
  #peer: PeerConfig | null = null;
  #peerSettings = { keepaliveInterval: 0, keepaliveTimeout: 0, mss: 0 };
  #keys: { primary?: number; secondary?: number; cipher?: string } = {};
  #started = false;
  #reading: Promise<void> | null = null;
  #readOv: Overlapped | null = null;
  #inbox = new ControlInbox();
  #log: (line: string) => void;

  private constructor(h: Deno.PointerValue, version: Version | null, o: DcoOptions) {
    this.#h = h;
    this.version = version;
    this.ifname = o.ifname;
    this.#log = o.log ?? ((l) => console.error(l));
    this.ended = this.#inbox.ended;
  }

  /** Open the adapter (after reading the driver version, as the driver's documentation asks). */
  static async open(o: DcoOptions): Promise<DcoDevice> {
    const version = await readDriverVersion();
    const path = o.adapter ? (await import("./adapters.ts")).resolveAdapter(o.adapter) : DCO_PATH;
    const { h, err } = openHandle(path);
    if (h === null) throw dcoError(err, `opening ${path}`);
    return new DcoDevice(h, version, o);
  }

  #end(r: DeviceEndReason) {
    this.#inbox.end(r);
  }

  configureInterface(o: { mtu: number; addresses: string[] }): Promise<void> {
    return configureWindowsInterface(this.ifname, o);
  }

  async newPeer(p: PeerConfig): Promise<void> {
    if (p.listen) {
      throw new DeviceError("the ovpn-dco driver only connects (client side); drop --listen", "state");
    }
    const timeout = p.connectTimeoutMs ?? 30_000;
    await ioctl(this.#h, IOCTL.NEW_PEER, encodeNewPeer(p), 0, timeout);
    this.#peer = p;
    this.#startReading();
  }

  async newKey(slot: KeySlotId, key: KeyMaterial, peerId: number): Promise<void> {
    const epoch = !!key.epoch && key.cipher.alg !== CipherAlg.NONE;
    if (epoch && !driverFeatures(this.version).includes("new-key-v2")) {
      const v = this.version;
      throw new DeviceError(
        `the ovpn-dco driver ${
          v ? `${v.major}.${v.minor}.${v.patch}` : "(version unknown)"
        } has no epoch data keys (NEW_KEY_V2 needs driver 2.4.0 or newer); update the driver or leave out --epoch`,
        "state",
      );
    }
    const alg = key.cipher.alg === CipherAlg.NONE
      ? OVPN_CIPHER_ALG.NONE
      : key.cipher.alg === CipherAlg.CHACHA20_POLY1305
      ? OVPN_CIPHER_ALG.CHACHA20_POLY1305
      : OVPN_CIPHER_ALG.AES_GCM;
    // epoch keys (as OpenVPN's dco_win.c): NEW_KEY_V2 with CryptoOptions EPOCH, Key = the 32-byte epoch
    // secret E1 of each direction, KeyLen = the cipher's key length; the driver derives the data keys
    const keyLen = epoch ? key.cipher.keyLen : undefined;
    const tail = (t: Uint8Array) => (t.length === 8 ? t : new Uint8Array(8));
    const data = encodeCryptoData({
      encrypt: {
        key: key.encryptKey,
        nonceTail: epoch ? tail(key.encryptNonceTail) : key.encryptNonceTail,
        keyLen,
      },
      decrypt: {
        key: key.decryptKey,
        nonceTail: epoch ? tail(key.decryptNonceTail) : key.decryptNonceTail,
        keyLen,
      },
      keySlot: slot,
      cipherAlg: alg,
      keyId: key.keyId,
      peerId,
      ...(epoch ? { cryptoOptions: CRYPTO_OPTIONS.EPOCH } : {}),
    });
    try {
      await ioctl(this.#h, epoch ? IOCTL.NEW_KEY_V2 : IOCTL.NEW_KEY, data, 0);
    } finally {
      data.fill(0);
    }
    if (slot === 0) this.#keys.primary = key.keyId;
    else this.#keys.secondary = key.keyId;
    this.#keys.cipher = key.cipher.name;
  }

  nextEpoch(): Promise<void> {
    return Promise.reject(
      new DeviceError(
        "the ovpn-dco driver moves to the next epoch by itself and has no call to force it; this works on the tun and wintun backends",
        "state",
      ),
    );
  }

  async swapKeys(): Promise<void> {
    await ioctl(this.#h, IOCTL.SWAP_KEYS, null, 0);
    [this.#keys.primary, this.#keys.secondary] = [this.#keys.secondary, this.#keys.primary];
  }

  delKey(_slot: KeySlotId): Promise<void> {
    return Promise.reject(
      new DeviceError(
        "the ovpn-dco driver has no call that deletes a key; renegotiate with 'key new' (secondary) and 'key swap'",
        "state",
      ),
    );
  }

  async setPeer(p: SetPeer): Promise<void> {
    await ioctl(this.#h, IOCTL.SET_PEER, encodeSetPeer(p), 0);
    if (p.keepaliveInterval >= 0) this.#peerSettings.keepaliveInterval = p.keepaliveInterval;
    if (p.keepaliveTimeout >= 0) this.#peerSettings.keepaliveTimeout = p.keepaliveTimeout;
    if (p.mss >= 0) this.#peerSettings.mss = p.mss;
  }

  async startVpn(): Promise<void> {
    await ioctl(this.#h, IOCTL.START_VPN, null, 0);
    this.#started = true;
  }

  async delPeer(): Promise<void> {
    await ioctl(this.#h, IOCTL.DEL_PEER, null, 0);
    this.#peer = null;
    this.#started = false;
    this.#keys = {};
  }

  async getStats(): Promise<Stats> {
    return decodeStats(await ioctl(this.#h, IOCTL.GET_STATS, null, SIZE.STATS));
  }

  getVersion(): Promise<Version | null> {
    return Promise.resolve(this.version);
  }

  /** Keep one overlapped ReadFile pending at all times; each completion is one control packet. */
  #startReading() {
    if (this.#reading) return;
    const k = kernel32();
    const ov = this.#readOv = new Overlapped();
    const buf = new Uint8Array(READ_BUFFER);
    const got = new Uint32Array(1);
    this.#reading = (async () => {
      while (!this.#closed && !this.#inbox.reason) {
        ov.reset();
        let err = 0;
        if (!k.ReadFile(this.#h, buf, READ_BUFFER, got, ov.buf)) {
          err = k.GetLastError();
          if (err === ERROR.IO_PENDING) {
            err = 0;
            while (!(await waitEvent(ov, 1000)) && !this.#closed);
            if (this.#closed) break;
          }
        }
        if (!err && !k.GetOverlappedResult(this.#h, ov.buf, got, 0)) {
          err = k.GetLastError() || ntStatusToWin32(ov.status);
        }
        if (err === ERROR.OPERATION_ABORTED || this.#closed) break;
        if (err === ERROR.NETNAME_DELETED) this.#end({ kind: "expired", message: dcoErrorText(err) });
        else if (err === ERROR.CONNECTION_ABORTED) this.#end({ kind: "aborted", message: dcoErrorText(err) });
        else if (err === ERROR.INSUFFICIENT_BUFFER) {
          this.#log(`a control packet was dropped: ${dcoErrorText(err)}`);
        } else if (err) {
          this.#end({
            kind: "failed",
            message: `reading control packets: ${dcoErrorText(err)} [${win32ErrorName(err)}]`,
          });
        } else this.#inbox.push(buf.slice(0, got[0])); // full queue: dropped, as the driver's own queue would
      }
    })();
  }

  readControl(): Promise<Uint8Array> {
    return this.#inbox.read();
  }

  async writeControl(p: Uint8Array): Promise<void> {
    if (p.length === 0 || p.length > MAX_CONTROL_LEN) {
      throw new DeviceError(
        `a control packet must have 1 to ${MAX_CONTROL_LEN} bytes, not ${p.length}`,
        "state",
      );
    }
    const k = kernel32();
    const ov = new Overlapped();
    const data = p.slice();
    const n = new Uint32Array(1);
    try {
      if (!k.WriteFile(this.#h, data, data.length, n, ov.buf)) {
        const err = k.GetLastError();
        if (err !== ERROR.IO_PENDING) throw dcoError(err, "WriteFile (control packet)");
        await waitEvent(ov, 10_000);
      }
      if (!k.GetOverlappedResult(this.#h, ov.buf, n, 0)) {
        throw dcoError(k.GetLastError() || ntStatusToWin32(ov.status), "WriteFile (control packet)");
      }
    } finally {
      ov.close();
    }
  }

  peerInfo(): Record<string, unknown> {
    const p = this.#peer;
    return {
      backend: this.backend,
      ifname: this.ifname,
      driverVersion: this.version
        ? `${this.version.major}.${this.version.minor}.${this.version.patch}`
        : null,
      driverFeatures: driverFeatures(this.version),
      peer: p ? { proto: p.proto, local: p.local, remote: p.remote } : null,
      ...this.#peerSettings,
      started: this.#started,
      cipher: this.#keys.cipher ?? null,
      primaryKeyId: this.#keys.primary ?? null,
      secondaryKeyId: this.#keys.secondary ?? null,
      drops: {},
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const k = kernel32();
    k.CancelIoEx(this.#h, null);
    await this.#reading?.catch(() => {});
    this.#readOv?.close();
    k.CloseHandle(this.#h);
    this.#end({ kind: "failed", message: "the device was closed" });
  }
}
