/**
 * `start --mode server`: one socket serving many peers (the driver's multipeer mode; in TypeScript on
 * Linux and over WinTUN). Peers, their keys and routes come over the control socket (`peer new`, `key new`, `route add`);
 * notifications go to `events` subscribers; statistics per peer and in total.
 * @module
 */
import { CliError, EXIT, usage } from "./errors.ts";
import { formatEndpoint, type SockAddr } from "../driver/uapi.ts";
import { type ControlRequest, type ControlResponse, keyFromWire, serveControl } from "../driver/control.ts";
import { ControlError } from "../driver/control.ts";
import type { KeySlotId } from "../driver/datachannel/keyslot.ts";
import { formatStats, statsJsonLine, statsToJson } from "../driver/datachannel/stats.ts";
import type { ProviderName } from "../crypto/providers.ts";
import type { ServerBackend } from "../driver/userspace/server_api.ts";
import { eventJson } from "./events.ts";
import { logControlPackets, stopSignal } from "./run.ts";
import { printOut } from "./output.ts";
import { checkLocalAddress } from "./start.ts";
import { type BackendName, chooseLinuxBackend } from "../driver/open.ts";

/** What a server run needs. */
export interface ServerConfig {
  backend: string;
  /** dco: a specific adapter. */
  adapter?: string;
  ifname: string;
  proto: "udp" | "tcp";
  local: SockAddr;
  addresses: string[];
  mtu: number;
  provider: ProviderName;
  statsInterval: number;
  json: boolean;
}

const log = (line: string) => console.error(line);

/**
 * Windows: the ovpn-dco driver's multipeer mode (2.4+, UDP), or the event-loop server over WinTUN (UDP or
 * TCP). `auto` tries the driver first and falls back to WinTUN when it is not installed or the transport is
 * TCP.
 */
async function openWindowsServer(cfg: ServerConfig): Promise<ServerBackend> {
  let backend = cfg.backend;
  if (backend === "dco" && cfg.proto === "tcp") {
    throw new CliError(
      "the driver's multipeer mode serves UDP peers only; use --proto udp, or --backend wintun for TCP",
      EXIT.USAGE,
    );
  }
  if (backend === "auto" && cfg.proto === "tcp") backend = "wintun";
  if (backend !== "wintun") {
    const { DcoServerDevice } = await import("../driver/dco_server.ts");
    const { DeviceError } = await import("../driver/device.ts");
    try {
      return await DcoServerDevice.open({ ifname: cfg.ifname, adapter: cfg.adapter, log });
    } catch (e) {
      if (backend !== "auto" || !(e instanceof DeviceError)) throw e;
      if (e.kind === "missing") log("backend auto: the ovpn-dco driver is not installed, using wintun");
      else if (e.message.includes("no multipeer")) log(`backend auto: ${e.message}; using wintun`);
      else throw e;
    }
  }
  const { WintunTun } = await import("../driver/wintun.ts");
  const { ServerDevice } = await import("../driver/userspace/server_device.ts");
  const { wintunIo } = await import("../driver/userspace/io_win.ts");
  const tun = WintunTun.open(cfg.ifname);
  log(
    `wintun: adapter '${cfg.ifname}' (Wintun driver version ${tun.driverVersion >> 16}.${
      tun.driverVersion & 0xffff
    })`,
  );
  return new ServerDevice(wintunIo(tun), {
    backend: "wintun",
    provider: cfg.provider,
    log,
    proto: cfg.proto,
  });
}

/** Run a server until a signal. */
export async function runServer(cfg: ServerConfig): Promise<number> {
  checkLocalAddress(cfg.local.address);
  let dev: ServerBackend;
  if (Deno.build.os === "windows") {
    dev = await openWindowsServer(cfg);
  } else if (
    await chooseLinuxBackend({
      backend: cfg.backend as BackendName,
      kernelUnfit: cfg.proto === "tcp" ? "this tool serves TCP peers on the tun backend only" : null,
      log,
    }) === "dco"
  ) {
    const { LinuxDcoServer } = await import("../driver/linux/dco_server.ts");
    dev = await LinuxDcoServer.open({ ifname: cfg.ifname, log });
  } else {
    const { openTun } = await import("../driver/userspace/tun_linux.ts");
    const { ServerDevice } = await import("../driver/userspace/server_device.ts");
    const tun = openTun(cfg.ifname, { offload: "on", log });
    dev = new ServerDevice(tun, { provider: cfg.provider, log, proto: cfg.proto });
  }
  let control: { close(): Promise<void> } | undefined;
  const cleanups: (() => void)[] = [];
  try {
    await dev.configureInterface({ mtu: cfg.mtu, addresses: cfg.addresses });
    log(
      `server: interface ${dev.ifname} up, mtu ${cfg.mtu}` +
        (cfg.addresses.length ? `, ${cfg.addresses.join(", ")}` : " (addresses left alone)"),
    );
    // the control socket answers from here on (a second instance on this interface hears "busy" before the
    // port is bound), but a request waits until the server is started: `peer list` answering means it is
    let markStarted!: (ok: boolean) => void;
    const started = new Promise<boolean>((r) => markStarted = r);
    cleanups.push(() => markStarted(false));
    control = await serveControl(
      dev.ifname,
      async (req) => {
        if (!await started) return { ok: false, error: "the server did not start" };
        return await handleServerControl(dev, req);
      },
      (send) => dev.onEvent((e) => void send(eventJson(e))),
    ).catch((e) => {
      if (e instanceof ControlError) throw new CliError(e.message, EXIT.BUSY);
      throw e;
    });
    const bound = await dev.start(cfg.local);
    markStarted(true);
    log(
      `server (${dev.backend}): ${dev.proto} ${
        formatEndpoint(bound)
      }; add peers with 'ovpn-dco-cli peer new <id> ... --vpn-ip ADDR'`,
    );
    const stopped = stopSignal(cleanups);
    if (cfg.statsInterval > 0) {
      const t = setInterval(async () => {
        const s = await dev.getStats().catch(() => null); // a tick that cannot read them skips them
        if (!s) return;
        if (cfg.json) await printOut(statsJsonLine(dev.ifname, statsToJson(s), dev.drops()) + "\n");
        else await printOut(formatStats(s));
      }, cfg.statsInterval * 1000);
      cleanups.push(() => clearInterval(t));
    }
    logControlPackets(dev, log);
    const outcome = await Promise.race([stopped.then((sig) => ({ sig })), dev.ended.then((r) => ({ r }))]);
    if ("sig" in outcome) {
      log(`${outcome.sig}: shutting down`);
      return EXIT.OK;
    }
    throw new CliError(`server failed: ${outcome.r.message}`, EXIT.FAILURE);
  } finally {
    for (const c of cleanups) c();
    await control?.close();
    await dev.close();
  }
}

function needPeerId(req: { peerId?: number }, what: string): number {
  if (req.peerId === undefined) {
    throw new Error(`${what} on a server needs --peer-id N (see 'ovpn-dco-cli peer list')`);
  }
  return req.peerId;
}

/** Serve one control request against the server. */
export async function handleServerControl(dev: ServerBackend, req: ControlRequest): Promise<ControlResponse> {
  switch (req.cmd) {
    case "stats": {
      if (req.all) {
        return {
          ok: true,
          stats: statsToJson(await dev.getStats()),
          info: dev.info(),
          peers: await Promise.all(
            dev.peerIds().map(async (id) => ({ peerId: id, stats: statsToJson(await dev.peerStats(id)) })),
          ),
        };
      }
      if (req.peerId !== undefined) {
        return {
          ok: true,
          stats: statsToJson(await dev.peerStats(req.peerId)),
          info: dev.peerInfo(req.peerId),
        };
      }
      return { ok: true, stats: statsToJson(await dev.getStats()), info: dev.info() };
    }
    case "peer.list":
      return { ok: true, peers: dev.peerIds().map((id) => dev.peerInfo(id)) };
    case "peer.get": {
      const id = needPeerId(req, "peer get");
      return { ok: true, info: dev.peerInfo(id), stats: statsToJson(await dev.peerStats(id)) };
    }
    case "peer.new": {
      if (req.proto !== dev.proto) {
        throw new Error(`this server serves ${dev.proto.toUpperCase()} peers; give --proto ${dev.proto}`);
      }
      if (req.listen) throw new Error("--listen is for a point-to-point TCP peer, not a server's peer");
      const id = needPeerId(req, "peer new");
      if (!req.vpnIps?.length) {
        throw new Error(`peer new on a server needs --vpn-ip ADDR (the peer's address in the tunnel)`);
      }
      await dev.newPeer({ peerId: id, remote: req.remote, vpnIps: req.vpnIps });
      return { ok: true };
    }
    case "peer.set":
      await dev.setPeer(needPeerId(req, "peer set"), {
        keepaliveInterval: req.keepaliveInterval,
        keepaliveTimeout: req.keepaliveTimeout,
        mss: req.mss,
      });
      return { ok: true };
    case "peer.del":
      await dev.delPeer(needPeerId(req, "peer del"));
      return { ok: true };
    case "key.new":
      await dev.newKey(req.slot as KeySlotId, keyFromWire(req.key), req.peerId);
      return { ok: true };
    case "key.swap":
      await dev.swapKeys(needPeerId(req, "key swap"));
      return { ok: true };
    case "key.del":
      await dev.delKey(req.slot as KeySlotId, needPeerId(req, "key del"));
      return { ok: true };
    case "key.epoch": {
      const id = needPeerId(req, "key epoch");
      await dev.nextEpoch(id);
      return { ok: true, epoch: dev.peerInfo(id).epoch };
    }
    case "route":
      return { ok: true, route: await dev.route(req.peerId, req.cidr, req.add) };
    case "events":
      throw new Error("events are streamed; use 'ovpn-dco-cli events'");
  }
  return { ok: false, error: "unknown control command" };
}

/** `start --mode server`: what the flags mean there (checked by start.ts before it gets here). */
export function serverFlagErrors(v: Record<string, unknown>): void {
  for (
    const f of ["remote", "key", "listen", "peer-id", "key-id", "key-direction", "cipher", "epoch", "hello"]
  ) {
    if (v[f] !== undefined && v[f] !== false) {
      throw usage(
        `--${f} is for a point-to-point tunnel; in server mode add peers with 'peer new' and their keys with 'key new'`,
      );
    }
  }
  if (v.proto !== undefined && v.proto !== "udp" && v.proto !== "tcp") {
    throw usage(`--proto: '${v.proto}' is not udp or tcp`);
  }
  if (!v.local) throw usage("--mode server needs --local ADDR:PORT (the address the peers send to)");
}
