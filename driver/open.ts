/**
 * Backend choice: `auto` picks `dco` when `\\.\ovpn-dco` opens, else `wintun` (Windows); on Linux `dco`
 * (the kernel's ovpn module) when the module is there and can do what was asked, else `tun`, and says which.
 * Returns a Device for the chosen backend.
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
  /** Linux: why the kernel's ovpn module cannot run this tunnel (epoch keys, cipher none, MSS), or null. */
  kernelUnfit?: string | null;
}

/**
 * Linux `dco` or `tun` for `auto` / `dco`: an explicit `dco` the module cannot serve is one clear error; `auto`
 * takes the module when it answers and fits, and says why not otherwise.
 */
export async function chooseLinuxBackend(o: {
  backend: BackendName;
  kernelUnfit?: string | null;
  log?: (line: string) => void;
}): Promise<"dco" | "tun"> {
  if (o.backend === "tun") return "tun";
  const { probeModule } = await import("./linux/ovpn_kernel.ts");
  if (o.backend === "dco") {
    if (o.kernelUnfit) throw new DeviceError(`--backend dco: ${o.kernelUnfit}`, "state");
    const m = await probeModule();
    if (!m.present) throw new DeviceError(`--backend dco: ${m.why}; use --backend tun`, "missing");
    return "dco";
  }
  const m = await probeModule();
  if (!m.present) {
    o.log?.("backend auto: Linux's ovpn module is not available, using tun");
    return "tun";
  }
  if (o.kernelUnfit) {
    o.log?.(`backend auto: ${o.kernelUnfit}, using tun`);
    return "tun";
  }
  o.log?.("backend auto: using Linux's ovpn module (dco)");
  return "dco";
}

/** Open the device of the chosen backend. */
export async function openDevice(o: OpenOptions): Promise<Device> {
  const os = Deno.build.os;
  let backend = o.backend;
  if (os === "linux" && (backend === "auto" || backend === "dco")) {
    backend = await chooseLinuxBackend(o);
    if (backend === "dco") {
      const { LinuxDcoDevice } = await import("./linux/dco_device.ts");
      return await LinuxDcoDevice.open({ ifname: o.ifname, log: o.log });
    }
  }
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
