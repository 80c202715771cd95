/**
 * The WinTUN adapter of the `wintun` backend: wintun.dll (loaded by absolute path from the executable's
 * directory), an adapter created or opened by name, a session with a ring capacity, and the handles the
 * engine workers move packets with (the session and its read-wait event; see userspace/engine_win.ts), the
 * adapter's addresses and MTU set by its LUID.
 *
 * @example
 * ```ts
 * import { WintunTun } from "./wintun.ts";
 * const tun = WintunTun.open("ovpn-wintun"); // Windows, wintun.dll next to the executable
 * ```
 * @module
 */
import { kernel32 } from "../ffi/kernel32.ts";
import { type Wintun, WINTUN_MAX_RING, WINTUN_MIN_RING, WINTUN_SYMBOLS, wstr } from "../ffi/wintun.ts";
import { DeviceError } from "./device.ts";
import { configureWindowsInterface } from "./netsh.ts";
import { indexOfAlias, indexOfLuid } from "./ifindex.ts";

/** Ring capacity used for sessions (4 MiB). */
export const RING_CAPACITY = 0x400000;

/** Where wintun.dll must be: next to the executable. */
export function wintunPath(): string {
  const exe = Deno.execPath();
  return exe.slice(0, Math.max(exe.lastIndexOf("\\"), exe.lastIndexOf("/")) + 1) + "wintun.dll";
}

/** A Wintun adapter and its session. */
export class WintunTun {
  readonly name: string;
  readonly driverVersion: number;
  /** wintun.dll's absolute path (the engine workers load it again). */
  readonly dllPath = wintunPath();
  #w: Wintun;
  #adapter: Deno.PointerValue;
  #session: Deno.PointerValue;
  #event: Deno.PointerValue;
  #size = new Uint32Array(1);
  #closed = false;

  private constructor(w: Wintun, name: string, adapter: Deno.PointerValue, session: Deno.PointerValue) {
    this.#w = w;
    this.name = name;
    this.#adapter = adapter;
    this.#session = session;
    this.#event = w.WintunGetReadWaitEvent(session);
    this.driverVersion = w.WintunGetRunningDriverVersion();
  }

  /** Create (or open) adapter `name` and start a session. */
  static open(name: string, capacity = RING_CAPACITY): WintunTun {
    if (capacity < WINTUN_MIN_RING || capacity > WINTUN_MAX_RING || (capacity & (capacity - 1)) !== 0) {
      throw new DeviceError(
        `ring capacity ${capacity} must be a power of two from 128 KiB to 64 MiB`,
        "state",
      );
    }
    const path = wintunPath();
    let w: Wintun;
    try {
      w = Deno.dlopen(path, WINTUN_SYMBOLS).symbols;
    } catch {
      throw new DeviceError(
        `wintun.dll is not next to the executable (${path}); get it from wintun.net and put it there`,
        "missing",
      );
    }
    const k = kernel32();
    let adapter = w.WintunOpenAdapter(wstr(name));
    if (adapter === null) adapter = w.WintunCreateAdapter(wstr(name), wstr("OpenVPN"), null);
    if (adapter === null) {
      const e = k.GetLastError();
      throw new DeviceError(
        `creating the Wintun adapter '${name}' failed (error ${e}); creating adapters needs an elevated (administrator) prompt`,
        e === 5 ? "privilege" : "io",
      );
    }
    const session = w.WintunStartSession(adapter, capacity);
    if (session === null) {
      const e = k.GetLastError();
      w.WintunCloseAdapter(adapter);
      throw new DeviceError(
        `starting a Wintun session on '${name}' failed (error ${e})`,
        e === 5 ? "busy" : "io",
      );
    }
    return new WintunTun(w, name, adapter, session);
  }

  /** The session handle, for the engine workers (WintunReceivePacket and friends take it). */
  get sessionHandle(): bigint {
    return BigInt(Deno.UnsafePointer.value(this.#session));
  }

  /** The session's read-wait event, for the engine workers. */
  get readEventHandle(): bigint {
    return BigInt(Deno.UnsafePointer.value(this.#event));
  }

  /** Addresses and MTU through netsh, on the interface of this adapter's LUID (by index). */
  async configure(
    o: { mtu: number; addresses: string[] },
    log: (line: string) => void = (l) => console.error(l),
  ): Promise<void> {
    if (!o.addresses.length) return;
    const luid = new BigUint64Array(1);
    this.#w.WintunGetAdapterLUID(this.#adapter, new Uint8Array(luid.buffer));
    let index = indexOfLuid(luid[0]);
    if (index === null) {
      index = indexOfAlias(this.name);
      if (index === null) {
        throw new DeviceError(
          `cannot find the network interface of the Wintun adapter '${this.name}'`,
          "missing",
        );
      }
      log(
        `warning: the Wintun adapter's LUID has no interface; using the interface named '${this.name}' (index ${index})`,
      );
    }
    await configureWindowsInterface({ index, name: this.name }, o, log);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#w.WintunEndSession(this.#session);
    this.#w.WintunCloseAdapter(this.#adapter);
  }
}
