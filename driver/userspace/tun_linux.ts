/**
 * The Linux tun backend: /dev/net/tun with IFF_TUN | IFF_NO_PI (one IP packet per read/write), and
 * interface set-up with `ip` (addresses IPv4/IPv6, MTU, up). The device disappears when its fd is
 * closed. Also a socketpair "tun" for tests that need no root: same fd semantics, no kernel device.
 *
 * @example
 * ```ts
 * import { openTun } from "./tun_linux.ts";
 * const tun = openTun("ovpn0"); // needs CAP_NET_ADMIN
 * await tun.configure({ mtu: 1428, addresses: ["10.8.0.1/24"] });
 * tun.close();
 * ```
 * @module
 */
import {
  AF_UNIX,
  EACCES,
  EBUSY,
  ENOENT,
  EPERM,
  errno,
  errnoText,
  F_GETFL,
  F_SETFL,
  IFF_NO_PI,
  IFF_TUN,
  IFF_VNET_HDR,
  libc,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  TUN_F_CSUM,
  TUN_F_TSO4,
  TUN_F_TSO6,
  TUN_F_USO4,
  TUN_F_USO6,
  TUNSETIFF,
  TUNSETOFFLOAD,
} from "../../ffi/libc.ts";
import { DeviceError } from "../device.ts";

/** An open tun (or test stand-in): an fd carrying one IP packet per read/write. */
export interface TunHandle {
  readonly fd: number;
  readonly name: string;
  /** Every read and write carries a 10-byte virtio_net_hdr (IFF_VNET_HDR), so TCP comes as super-packets. */
  readonly vnetHdr?: boolean;
  /** The kernel took the offload flags: super-packets may be read and written (GRO on receive). */
  readonly offloaded?: boolean;
  /** The kernel also took USO4/USO6: UDP comes as super-packets too, and received datagrams may be joined. */
  readonly uso?: boolean;
  /** Set MTU, addresses and bring the link up (a real tun only). */
  configure(opts: { mtu?: number; addresses?: string[] }): Promise<void>;
  close(): void;
}

const IFNAMSIZ = 16;

/** Run a command; on failure throw a DeviceError naming the interface, the command and its output. */
export async function run(cmd: string[], what: string): Promise<void> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    throw new DeviceError(
      `${what} failed: cannot run '${cmd[0]}' (${(e as Error).message}); install iproute2`,
      "missing",
    );
  }
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n")[0];
    throw new DeviceError(`${what} failed: '${cmd.join(" ")}': ${err || `exit code ${out.code}`}`);
  }
}

/**
 * Tun offload: `on` (IFF_VNET_HDR with checksum and TSO4/TSO6 offload, the default for the p2p engine),
 * `off` (one IP packet per read), or `refuse` (tests: ask the kernel for an offload flag it does not know, so
 * the refusal path runs). `OVPN_DCO_CLI_TUN_OFFLOAD=off|refuse` overrides where the caller asks for `on`.
 */
export type TunOffload = "on" | "off" | "refuse";

function offloadSetting(asked: TunOffload): TunOffload {
  if (asked === "off") return "off"; // an engine that does not handle the header
  const env = Deno.env.get("OVPN_DCO_CLI_TUN_OFFLOAD");
  return env === "off" || env === "refuse" ? env : asked;
}

/** Open (create) tun interface `name`; an empty name lets the kernel pick (tun0, tun1, ...). */
export function openTun(
  name: string,
  opts: { offload?: TunOffload; log?: (line: string) => void } = {},
): TunHandle {
  const offload = offloadSetting(opts.offload ?? "off");
  if (new TextEncoder().encode(name).length >= IFNAMSIZ) {
    throw new DeviceError(
      `interface name '${name}' is too long; use at most ${IFNAMSIZ - 1} characters`,
      "state",
    );
  }
  const L = libc().symbols;
  const fd = L.open(new TextEncoder().encode("/dev/net/tun\0"), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const e = errno();
    if (e === ENOENT) {
      throw new DeviceError("/dev/net/tun does not exist; load the tun module (modprobe tun)", "missing");
    }
    if (e === EACCES || e === EPERM) {
      throw new DeviceError(
        "opening /dev/net/tun: permission denied; run as root (or with CAP_NET_ADMIN)",
        "privilege",
      );
    }
    throw new DeviceError(`opening /dev/net/tun: ${errnoText(e)}`);
  }
  const ifr = new Uint8Array(40);
  ifr.set(new TextEncoder().encode(name));
  new DataView(ifr.buffer).setUint16(16, IFF_TUN | IFF_NO_PI | (offload === "off" ? 0 : IFF_VNET_HDR), true);
  if (L.ioctl(fd, BigInt(TUNSETIFF), ifr) < 0) {
    const e = errno();
    L.close(fd);
    if (e === EPERM || e === EACCES) {
      throw new DeviceError(
        `creating tun interface '${name}': permission denied; run as root (or with CAP_NET_ADMIN)`,
        "privilege",
      );
    }
    if (e === EBUSY) {
      throw new DeviceError(
        `interface '${name}' is already in use (another instance?); pick another --ifname`,
        "busy",
      );
    }
    throw new DeviceError(
      `creating tun interface '${name}': ${errnoText(e)}; is '${name}' another kind of interface?`,
    );
  }
  const actual = new TextDecoder().decode(ifr.subarray(0, IFNAMSIZ)).replace(/\0.*$/s, "");
  setNonblocking(fd);
  let offloaded = false, uso = false;
  if (offload !== "off") {
    // TSO4/TSO6: TCP arrives as super-packets of up to 64 KB, split by the engine (gso.ts); CSUM: checksums may
    // come partial and are completed there; USO4/USO6 (Linux 6.2+): the same for UDP, and received UDP datagrams
    // of one flow may be written as one (a kernel without USO keeps TCP only). A refusal leaves one packet per
    // read (with the header still there).
    const tcpFlags = offload === "refuse" ? 0x8000_0000 : TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    const set = (flags: number) => L.ioctl_value(fd, BigInt(TUNSETOFFLOAD), BigInt(flags)) >= 0;
    uso = offload !== "refuse" && set(tcpFlags | TUN_F_USO4 | TUN_F_USO6);
    offloaded = uso || set(tcpFlags);
    if (!offloaded) {
      opts.log?.(
        `tun offload refused by the kernel (${errnoText(errno())}): one packet per read on ${actual}`,
      );
    } else if (!uso) {
      opts.log?.(`tun UDP offload (USO, Linux 6.2+) refused by the kernel: TCP offload only on ${actual}`);
    }
  }
  let open = true;
  return {
    fd,
    name: actual,
    vnetHdr: offload !== "off",
    offloaded,
    uso,
    configure(o) {
      return configureLink(actual, o);
    },
    close() {
      if (open) L.close(fd);
      open = false;
    },
  };
}

/** Set the MTU and addresses of interface `name` with `ip` and bring it up (tun and ovpn interfaces alike). */
export async function configureLink(
  name: string,
  { mtu, addresses = [] }: { mtu?: number; addresses?: string[] },
) {
  if (mtu !== undefined) {
    await run(["ip", "link", "set", "dev", name, "mtu", String(mtu)], `setting MTU ${mtu} on ${name}`);
  }
  for (const a of addresses) {
    const v6 = a.includes(":");
    const cmd = v6
      ? ["ip", "-6", "addr", "add", a, "dev", name, "nodad"]
      : ["ip", "addr", "add", a, "dev", name];
    await run(cmd, `setting address ${a} on ${name}`);
  }
  // a layer-3 tunnel needs no IPv6 link-local address: without one, the host sends no router solicitations and
  // listener reports from fe80::… into the tunnel, which a server rightly drops as not the client's own source
  await run(["ip", "link", "set", "dev", name, "addrgenmode", "none"], `setting addrgenmode on ${name}`)
    .catch(() => {}); // a kernel without IPv6
  await run(["ip", "link", "set", "dev", name, "up"], `bringing ${name} up`);
}

/** Put an fd in non-blocking mode. */
export function setNonblocking(fd: number): void {
  const L = libc().symbols;
  const fl = L.fcntl(fd, F_GETFL, 0);
  if (fl < 0 || L.fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    throw new DeviceError(`fcntl: ${errnoText(errno())}`);
  }
}

/**
 * A socketpair stand-in for a tun, for tests without root: the engine reads and writes one end like a
 * tun fd; the test holds the other (`peerFd`), where each datagram is one "IP packet".
 */
export function memTun(name = "mem0"): TunHandle & { peerFd: number } {
  const L = libc().symbols;
  const fds = new Int32Array(2);
  if (L.socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds) < 0) {
    throw new DeviceError(`socketpair: ${errnoText(errno())}`);
  }
  setNonblocking(fds[0]);
  let open = true;
  return {
    fd: fds[0],
    peerFd: fds[1],
    name,
    configure: () => Promise.resolve(),
    close() {
      if (open) {
        L.close(fds[0]);
        L.close(fds[1]);
      }
      open = false;
    },
  };
}
