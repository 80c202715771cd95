/**
 * Backend choice: `auto` picks `dco` when `\\.\ovpn-dco` opens, else `wintun` (Windows), and `tun` on
 * Linux. Returns a Device for the chosen backend.
 *
 * @example
 * ```ts
 * import { openDevice } from "./open.ts";
 * const dev = await openDevice({ backend: "auto", ifname: "ovpn0" });
 * ```
 * @module
 */
import type { ProviderName } from "../crypto/providers.ts";
import { type Device, DeviceError } from "./device.ts";

export const BACKENDS = ["auto", "dco", "wintun", "tun"] as const;
export type BackendName = typeof BACKENDS[number];

/** Options for opening a device. */
export interface OpenOptions {
  backend: BackendName;
  ifname: string;
  provider?: ProviderName;
  /** dco: device path of a specific adapter. */
  adapter?: string;
  log?: (line: string) => void;
}

/** Open the device of the chosen backend. */
export async function openDevice(o: OpenOptions): Promise<Device> {
  const os = Deno.build.os;
  let backend = o.backend;
  if (backend === "auto") backend = os === "windows" ? "dco" : "tun";
  if (o.backend === "auto" && os === "windows") o.log?.("backend auto: trying the ovpn-dco driver first");
  if (backend === "tun") {
    if (os !== "linux") {
      throw new DeviceError(`the tun backend runs on Linux only; on ${os} use --backend auto`, "state");
    }
    const { openTun } = await import("./userspace/tun_linux.ts");
    const { UserspaceDevice } = await import("./userspace/device.ts");
    const tun = openTun(o.ifname, { offload: "on", log: o.log });
    return new UserspaceDevice(tun, { backend: "tun", provider: o.provider, log: o.log });
  }
  if (os !== "windows") {
    throw new DeviceError(
      `the ${backend} backend needs Windows (${
        backend === "dco" ? "the ovpn-dco-win driver" : "wintun.dll"
      }); on Linux use --backend tun`,
      "state",
    );
  }
  if (backend === "dco") {
    const { DcoDevice } = await import("./dco.ts");
    try {
      return await DcoDevice.open({ ifname: o.ifname, adapter: o.adapter, log: o.log });
    } catch (e) {
      if (o.backend !== "auto" || !(e instanceof DeviceError) || e.kind !== "missing") throw e;
      o.log?.("backend auto: the ovpn-dco driver is not installed, using wintun");
    }
  }
  const { WintunTun } = await import("./wintun.ts");
  const { UserspaceDevice } = await import("./userspace/device.ts");
  const { wintunIo } = await import("./userspace/io_win.ts");
  const tun = WintunTun.open(o.ifname);
  o.log?.(
    `wintun: adapter '${o.ifname}' (Wintun driver version ${tun.driverVersion >> 16}.${
      tun.driverVersion & 0xffff
    })`,
  );
  return new UserspaceDevice(wintunIo(tun), { backend: "wintun", provider: o.provider, log: o.log });
}
