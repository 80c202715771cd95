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
  ERROR,
  GENERIC_READ,
  kernel32,
  ntdll,
  ntStatusToWin32,
  ntSuccess,
  STATUS,
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
import type { KeyMaterial, KeySlotId } from "./datachannel/keyslot.ts";
import type { Stats } from "./datachannel/stats.ts";
import { CipherAlg } from "../crypto/aead.ts";
import { MAX_CONTROL_LEN } from "./datachannel/packet.ts";
import { configureWindowsInterface } from "./netsh.ts";
import { indexOfAlias } from "./ifindex.ts";
import { ControlInbox } from "./tunnel_end.ts";
import { type Completion, FILE_SHARE_READ_WRITE, openHandle, overlapped } from "./win_io.ts";

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

export function dcoError(code: number, what: string): DeviceError {
  const kind = code === ERROR.FILE_NOT_FOUND || code === ERROR.PATH_NOT_FOUND
    ? "missing"
    : code === ERROR.ACCESS_DENIED
    ? "busy"
    : code === ERROR.BAD_COMMAND || code === ERROR.ALREADY_INITIALIZED
    ? "state"
    : "io";
  return new DeviceError(`${what}: ${dcoErrorText(code)} [${win32ErrorName(code)}]`, kind);
}

/**
 * Issue one DeviceIoControl (NtDeviceIoControlFile) on an overlapped handle and wait for its completion, whatever
 * its status: the caller reads it (ERROR_MORE_DATA, a notification, a cancel...). Buffers are kept until done.
 */
export function ioctlStatus(
  h: Deno.PointerValue,
  code: number,
  input: Uint8Array | null,
  out: Uint8Array | null,
  timeoutMs: number,
  cancelled?: () => boolean,
): Promise<Completion> {
  return overlapped(
    h,
    (ov) =>
      ntdll().NtDeviceIoControlFile(
        h,
        ov.event,
        null,
        null,
        ov.buf,
        code,
        input,
        input?.length ?? 0,
        out,
        out?.length ?? 0,
      ),
    [input, out],
    ioctlName(code),
    timeoutMs,
    cancelled,
  );
}

/** Run one DeviceIoControl on an overlapped handle and wait for it (timeout: cancel, wait, throw). */
export async function ioctl(
  h: Deno.PointerValue,
  code: number,
  input: Uint8Array | null,
  outLen: number,
  timeoutMs = 10_000,
): Promise<Uint8Array> {
  const out = new Uint8Array(Math.max(outLen, 1));
  const name = ioctlName(code);
  const r = await ioctlStatus(h, code, input, outLen ? out : null, timeoutMs);
  if (r.timedOut && r.status === STATUS.CANCELLED) {
    throw new DeviceError(`${name} did not complete within ${timeoutMs / 1000} s`, "timeout");
  }
  if (!ntSuccess(r.status)) throw dcoError(ntStatusToWin32(r.status), name);
  return out.subarray(0, r.info);
}

/**
 * NEW_KEY (or, for epoch keys, NEW_KEY_V2 on a driver of 2.4.0 or newer) on an adapter handle, for the peer
 * `peerId` (in multipeer mode the key's peer). The key bytes are wiped from the request buffer afterwards.
 */
export async function installKey(
  h: Deno.PointerValue,
  version: Version | null,
  slot: KeySlotId,
  key: KeyMaterial,
  peerId: number,
): Promise<void> {
  const epoch = !!key.epoch && key.cipher.alg !== CipherAlg.NONE;
  if (epoch && !driverFeatures(version).includes("new-key-v2")) {
    throw new DeviceError(
      `the ovpn-dco driver ${
        versionText(version)
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
    await ioctl(h, epoch ? IOCTL.NEW_KEY_V2 : IOCTL.NEW_KEY, data, 0);
  } finally {
    data.fill(0);
  }
}

/** `major.minor.patch`, or "(version unknown)". */
export function versionText(v: Version | null): string {
  return v ? `${v.major}.${v.minor}.${v.patch}` : "(version unknown)";
}

/** Read the driver version from `\\.\ovpn-dco-ver` (null when that device does not exist). */
export async function readDriverVersion(): Promise<Version | null> {
  // read-only and shared, as OpenVPN opens it: it answers while an adapter is in use
  const { h } = openHandle(DCO_VERSION_PATH, GENERIC_READ, FILE_SHARE_READ_WRITE);
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
  /** How long a control-packet write may stay pending (default 10 s). */
  ioTimeoutMs?: number;
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
  #path: string;
  #closed = false;
  #peer: PeerConfig | null = null;
  #peerSettings = { keepaliveInterval: 0, keepaliveTimeout: 0, mss: 0 };
  #keys: { primary?: number; secondary?: number; cipher?: string } = {};
  #started = false;
  #reading: Promise<void> | null = null;
  #stopReading = false;
  #ioTimeoutMs: number;
  #inbox = new ControlInbox();
  #log: (line: string) => void;

  private constructor(h: Deno.PointerValue, path: string, version: Version | null, o: DcoOptions) {
    this.#h = h;
    this.#path = path;
    this.version = version;
    this.ifname = o.ifname;
    this.#log = o.log ?? ((l) => console.error(l));
    this.#ioTimeoutMs = o.ioTimeoutMs ?? 10_000;
    this.ended = this.#inbox.ended;
  }

  /** Open the adapter (after reading the driver version, as the driver's documentation asks). */
  static async open(o: DcoOptions): Promise<DcoDevice> {
    let version = await readDriverVersion();
    const path = o.adapter ? (await import("./adapters.ts")).resolveAdapter(o.adapter) : DCO_PATH;
    const { h, err } = openHandle(path);
    if (h === null) throw dcoError(err, `opening ${path}`);
    // driver 2.0.x has no version device: ask the adapter itself
    if (!version) {
      version = await ioctl(h, IOCTL.GET_VERSION, null, SIZE.VERSION).then(decodeVersion, () => null);
    }
    return new DcoDevice(h, path, version, o);
  }

  /** The adapter handle (for the multipeer device built on this one). */
  get handle(): Deno.PointerValue {
    return this.#h;
  }

  #end(r: DeviceEndReason) {
    this.#inbox.end(r);
  }

  /**
   * Addresses and MTU through netsh, on the interface of the adapter actually opened (by index); only when
   * the device tree cannot tell it, on the interface named --ifname, with a warning.
   */
  async configureInterface(o: { mtu: number; addresses: string[] }): Promise<void> {
    if (!o.addresses.length) return;
    let index: number | null = null;
    try {
      index = (await import("./adapters.ts")).interfaceIndexOfAdapter(this.#path);
    } catch { /* no device tree to search: fall back below */ }
    if (index === null) {
      index = indexOfAlias(this.ifname);
      if (index === null) {
        throw new DeviceError(
          `cannot find the network interface of the ovpn-dco adapter (${this.#path}), nor one named '${this.ifname}'; give --ifname the adapter's name as Windows shows it`,
          "missing",
        );
      }
      this.#log(
        `warning: the device tree does not say which interface ${this.#path} is; using the interface named '${this.ifname}' (index ${index})`,
      );
    }
    await configureWindowsInterface({ index, name: this.ifname }, o, this.#log);
  }

  async newPeer(p: PeerConfig): Promise<void> {
    if (p.listen) {
      throw new DeviceError("the ovpn-dco driver only connects (client side); drop --listen", "state");
    }
    const timeout = p.connectTimeoutMs ?? 30_000;
    await this.#reading; // the previous peer's reader has ended (DEL_PEER cancelled its read)
    try {
      await ioctl(this.#h, IOCTL.NEW_PEER, encodeNewPeer(p), 0, timeout);
    } catch (e) {
      // a TCP NEW_PEER cancelled on timeout leaves a half-made peer in the driver: remove it
      if (e instanceof DeviceError && e.kind === "timeout") {
        await ioctl(this.#h, IOCTL.DEL_PEER, null, 0).catch(() => {});
      }
      throw e;
    }
    this.#peer = p;
    this.#startReading();
  }

  async newKey(slot: KeySlotId, key: KeyMaterial, peerId: number): Promise<void> {
    await installKey(this.#h, this.version, slot, key, peerId);
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
    if (this.#keys.secondary === undefined) {
      throw new DeviceError(
        "the secondary slot is empty, so a swap would leave no primary key; install the next key there first ('key new ... --slot secondary')",
        "state",
      );
    }
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
    // the driver completes the pending read with STATUS_CANCELLED; should it not, cancel it ourselves
    this.#stopReading = true;
    await this.#reading;
    this.#stopReading = false;
  }

  async getStats(): Promise<Stats> {
    return decodeStats(await ioctl(this.#h, IOCTL.GET_STATS, null, SIZE.STATS));
  }

  getVersion(): Promise<Version | null> {
    return Promise.resolve(this.version);
  }

  /**
   * Keep one overlapped read pending while a peer exists; each completion is one control packet. The loop
   * ends when the read is cancelled (DEL_PEER, close) or the tunnel ends (keepalive expiry, TCP abort), and
   * clears itself so that the next peer's reader starts afresh.
   */
  #startReading() {
    if (this.#reading) return;
    const h = this.#h;
    const buf = new Uint8Array(READ_BUFFER);
    const offset = new Uint8Array(8);
    const stop = () => this.#closed || this.#stopReading;
    this.#reading = (async () => {
      try {
        while (!stop() && !this.#inbox.reason) {
          const r = await overlapped(
            h,
            (ov) => ntdll().NtReadFile(h, ov.event, null, null, ov.buf, buf, READ_BUFFER, offset, null),
            [buf, offset],
            "ReadFile (control packets)",
            Infinity,
            stop,
          );
          if (ntSuccess(r.status)) {
            this.#inbox.push(buf.slice(0, r.info)); // full queue: dropped, as the driver's own queue would
            continue;
          }
          const err = ntStatusToWin32(r.status);
          if (err === ERROR.OPERATION_ABORTED) break; // DEL_PEER or close
          if (err === ERROR.NETNAME_DELETED) this.#end({ kind: "expired", message: dcoErrorText(err) });
          else if (err === ERROR.CONNECTION_ABORTED) {
            this.#end({ kind: "aborted", message: dcoErrorText(err) });
          } else if (err === ERROR.INSUFFICIENT_BUFFER || err === ERROR.MORE_DATA) {
            this.#log(`a control packet was dropped: ${dcoErrorText(ERROR.INSUFFICIENT_BUFFER)}`);
            continue;
          } else {
            this.#end({
              kind: "failed",
              message: `reading control packets: ${dcoErrorText(err)} [${win32ErrorName(err)}]`,
            });
          }
          break;
        }
      } catch (e) {
        this.#end({ kind: "failed", message: (e as Error).message });
      } finally {
        this.#reading = null;
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
    // the driver keeps the write pending until its socket send completes
    const h = this.#h;
    const data = p.slice();
    const offset = new Uint8Array(8);
    const r = await overlapped(
      h,
      (ov) => ntdll().NtWriteFile(h, ov.event, null, null, ov.buf, data, data.length, offset, null),
      [data, offset],
      "WriteFile (control packet)",
      this.#ioTimeoutMs,
      () => this.#closed,
    );
    if (r.timedOut && r.status === STATUS.CANCELLED) {
      throw new DeviceError(
        `WriteFile (control packet) did not complete within ${this.#ioTimeoutMs / 1000} s and was cancelled`,
        "timeout",
      );
    }
    if (!ntSuccess(r.status)) throw dcoError(ntStatusToWin32(r.status), "WriteFile (control packet)");
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
    // every request's OVERLAPPED stays alive until the kernel completed it: wait for the reader's
    await this.#reading;
    k.CloseHandle(this.#h);
    this.#end({ kind: "failed", message: "the device was closed" });
  }
}
