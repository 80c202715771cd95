/**
 * `start`: create the device, optionally configure peer and key from flags, serve the control socket,
 * print statistics every second, and run in the foreground until SIGINT/SIGTERM (exit 0) or until the
 * peer times out or closes the connection (exit 6). Also the engine behind the upstream positional form.
 * @module
 */
import { logControlPackets, stopSignal } from "./run.ts";
import { printOut } from "./output.ts";
import { endReason, EventHub } from "./events.ts";
import { formatEndpoint } from "../driver/uapi.ts";
import { CliError, EXIT, usage } from "./errors.ts";
import { parseCidr, parseEndpoint, parseFlags, parseIntIn, parseKeepalive } from "./flags.ts";
import { CIPHER_NAMES, cipherByName } from "../crypto/aead.ts";
import { PROVIDER_NAMES, type ProviderName, providerProblem } from "../crypto/providers.ts";
import type { Device, PeerConfig } from "../driver/device.ts";
import { type BackendName, BACKENDS, openDevice } from "../driver/open.ts";
import {
  ControlError,
  type ControlRequest,
  type ControlResponse,
  keyFromWire,
  serveControl,
} from "../driver/control.ts";
import { KeySlotId } from "../driver/datachannel/keyslot.ts";
import {
  type Epochs,
  formatEpochs,
  formatStats,
  statsJsonLine,
  statsToJson,
} from "../driver/datachannel/stats.ts";
import { readKeyFile, toKeyMaterial } from "../keys/keyfile.ts";
import type { KeyMaterial } from "../driver/datachannel/keyslot.ts";
import { MAX_PEER_ID } from "../driver/datachannel/packet.ts";

/** Everything a tunnel run needs. */
export interface TunnelConfig {
  backend: BackendName;
  provider: ProviderName;
  ifname: string;
  /** dco: device path of a specific adapter. */
  adapter?: string;
  addresses: string[];
  mtu: number;
  peer?: PeerConfig;
  peerId: number;
  key?: KeyMaterial;
  keepalive: { interval: number; timeout: number };
  mss: number;
  /** Seconds between statistics blocks; 0: none. */
  statsInterval: number;
  json: boolean;
  /** Send upstream's test control packet ("hello, world!") every tick. */
  hello: boolean;
}

export const START_HELP = `Usage: ovpn-dco-cli start --remote ADDR:PORT [options]

Create the tunnel device, configure the peer and key given by flags, and run in the foreground,
printing statistics every second, until Ctrl-C / SIGTERM (exit 0) or until the peer times out or
closes the connection (exit 6). Other commands (peer, key, stats) reach it by --ifname.

Options:
  --mode p2p|server         p2p (default): one peer; server: many peers on one socket (UDP, or TCP on
                            tun and wintun), added with 'peer new <id> ... --vpn-ip ADDR'; needs --local,
                            takes no peer flags
  --proto udp|tcp           transport (default udp)
  --local ADDR:PORT         local endpoint (default 0.0.0.0:1194, or [::]:1194 for an IPv6 remote)
  --remote ADDR:PORT        the peer (ADDR may be [IPv6]); without it, add one later with 'peer new'
  --listen                  TCP: accept one connection from the remote address instead of connecting
  --connect-timeout SEC     TCP connect/accept timeout (default 30)
  --ifname NAME             interface name (default ovpn0; on Windows 'OpenVPN Data Channel Offload')
  --ifaddr CIDR             address for the interface, IPv4 or IPv6 (repeatable); without it the
                            interface is brought up and its addresses and routes are left alone
  --mtu N                   interface MTU (default 1428)
  --peer-id N               DATA_V2 peer id (default 0, or the JSON key file's peerId)
  --key FILE                data64.key or JSON key file (omitted: no key until 'key new', or
                            --cipher none)
  --key-direction 0|1       data64.key: 0 encrypts with key A, 1 with key B (default 0)
  --key-id N                key id 0-7 (default 0, or the JSON key file's keyId)
  --cipher NAME             ${CIPHER_NAMES} (default AES-256-GCM, or the JSON key's)
  --epoch                   epoch data keys (OpenVPN 2.7 'aead-epoch'): 64-bit packet ids, tag at the end,
                            data keys that move forward by themselves; data64.key: E1 = key A / key B;
                            a JSON key with 'epochSecret' fields is an epoch key without this flag
  --keepalive I,T           ping after I s without sending; give up after T s without receiving
                            (default 10,300; 0,0 turns both off)
  --mss N                   clamp the MSS of TCP SYNs to N (default 0: off)
  --backend NAME            auto|dco|wintun|tun (default auto: on Windows the ovpn-dco driver, else
                            wintun; on Linux the kernel's ovpn module (dco) where it is loaded or
                            loadable and the tunnel needs nothing it lacks (--epoch, cipher none,
                            --mss), else tun)
  --crypto NAME             auto|libcrypto|cng|node|portable (default auto: the fastest available)
  --adapter NAME            dco: a specific ovpn-dco adapter, by name or device path (default
                            \\\\.\\ovpn-dco, the first adapter, as upstream)
  --stats-interval SEC      seconds between statistics blocks (default 1; 0: none)
  --json                    statistics as one JSON object per line
  --hello                   send upstream's test control packet "hello, world!" every tick

Example:
  ovpn-dco-cli genkey t.key
  ovpn-dco-cli start --proto udp --local 192.0.2.1:1194 --remote 192.0.2.2:1194 \\
      --ifname ovpn0 --ifaddr 10.8.0.1/24 --key t.key --key-direction 0
`;

const START_OPTIONS = {
  mode: { type: "string" },
  proto: { type: "string" },
  local: { type: "string" },
  remote: { type: "string" },
  listen: { type: "boolean" },
  "connect-timeout": { type: "string" },
  ifname: { type: "string" },
  ifaddr: { type: "string", multiple: true },
  mtu: { type: "string" },
  "peer-id": { type: "string" },
  key: { type: "string" },
  "key-direction": { type: "string" },
  "key-id": { type: "string" },
  cipher: { type: "string" },
  epoch: { type: "boolean" },
  keepalive: { type: "string" },
  mss: { type: "string" },
  backend: { type: "string" },
  crypto: { type: "string" },
  "stats-interval": { type: "string" },
  json: { type: "boolean" },
  hello: { type: "boolean" },
  adapter: { type: "string" },
} as const;

/** The options shared by `start` and the upstream positional form. */
export const GLOBAL_OPTIONS = START_OPTIONS;

/** Default interface name: Linux `ovpn0`; Windows, the ovpn-dco adapter's usual name. */
export const DEFAULT_IFNAME = Deno.build.os === "windows" ? "OpenVPN Data Channel Offload" : "ovpn0";

/** Check an interface name (Linux: 1-15 of [A-Za-z0-9_.-]; Windows: 1-64, spaces allowed). */
export function checkIfname(v: string): string {
  const ok = Deno.build.os === "windows"
    ? /^[A-Za-z0-9_.() -]{1,64}$/.test(v)
    : /^[A-Za-z0-9_.-]{1,15}$/.test(v);
  if (!ok) {
    throw usage(
      Deno.build.os === "windows"
        ? `--ifname: '${v}' is not a valid interface name (1-64 letters, digits, spaces, '_', '-', '.', '(', ')')`
        : `--ifname: '${v}' is not a valid interface name (1-15 letters, digits, '_', '-', '.')`,
    );
  }
  return v;
}

export function parseBackend(v: string | undefined): BackendName {
  const b = (v ?? "auto") as BackendName;
  if (!BACKENDS.includes(b)) throw usage(`--backend: '${v}' is not one of ${BACKENDS.join(", ")}`);
  return b;
}

export function parseProvider(v: string | undefined): ProviderName {
  const p = (v ?? "auto") as ProviderName;
  if (!PROVIDER_NAMES.includes(p)) throw usage(`--crypto: '${v}' is not one of ${PROVIDER_NAMES.join(", ")}`);
  return p;
}

/** Read a key file and complete it with the flags into key material (errors exit 3). */
export async function loadKey(
  file: string,
  opts: { cipher?: string; keyDirection?: number; keyId?: number; epoch?: boolean },
): Promise<{ material: KeyMaterial; peerId?: number }> {
  const kf = await readKeyFile(file);
  const material = toKeyMaterial(kf, opts, `key file '${file}'`);
  return { material, peerId: kf.format === "json" ? kf.peerId : undefined };
}

/** A NONE key (upstream's CLI without a key file). */
export function noneKey(keyId = 0): KeyMaterial {
  const z = new Uint8Array(0);
  return {
    cipher: cipherByName("none")!,
    keyId,
    encryptKey: z,
    decryptKey: z,
    encryptNonceTail: z,
    decryptNonceTail: z,
  };
}

/** Values shared by `start` and the positional form, from parsed flags. */
export async function commonConfig(
  v: Record<string, string | boolean | string[] | undefined>,
): Promise<Omit<TunnelConfig, "peer" | "addresses">> {
  const s = (k: string) => v[k] as string | undefined;
  const cipherName = s("cipher");
  if (cipherName !== undefined && !cipherByName(cipherName)) {
    throw usage(`--cipher: '${cipherName}' is not one of ${CIPHER_NAMES}`);
  }
  // --key-direction is 0 or 1 (the positional form's own argument keeps upstream's "> 0 → 1")
  const keyDirection = s("key-direction") !== undefined
    ? parseIntIn(s("key-direction")!, "--key-direction", 0, 1)
    : undefined;
  const keyId = s("key-id") !== undefined ? parseIntIn(s("key-id")!, "--key-id", 0, 7) : undefined;
  let peerId = s("peer-id") !== undefined
    ? parseIntIn(s("peer-id")!, "--peer-id", 0, MAX_PEER_ID)
    : undefined;
  let key: KeyMaterial | undefined;
  const epoch = !!v.epoch;
  if (epoch && cipherName !== undefined && cipherByName(cipherName)!.keyLen === 0) {
    throw usage("--epoch needs an AEAD cipher (AES-*-GCM or CHACHA20-POLY1305), not --cipher none");
  }
  if (epoch && !s("key")) {
    throw usage("--epoch needs a key: add --key FILE (create one with 'ovpn-dco-cli genkey FILE')");
  }
  if (s("key")) {
    const k = await loadKey(s("key")!, { cipher: cipherName, keyDirection, keyId, epoch });
    key = k.material;
    peerId ??= k.peerId;
  } else if (cipherName && cipherByName(cipherName)!.keyLen === 0) {
    key = noneKey(keyId);
  } else if (cipherName) {
    throw usage(
      `--cipher ${cipherName} needs a key: add --key FILE (create one with 'ovpn-dco-cli genkey FILE')`,
    );
  }
  // the crypto provider asked for must exist here and do the key's cipher: one line before anything is made
  const provider = parseProvider(s("crypto"));
  const cannot = providerProblem(key?.cipher ?? cipherByName("AES-256-GCM")!, provider);
  if (cannot) throw usage(`--crypto ${provider}: ${cannot}`);
  return {
    backend: parseBackend(s("backend")),
    provider,
    ifname: checkIfname(s("ifname") ?? DEFAULT_IFNAME),
    adapter: s("adapter"),
    mtu: s("mtu") !== undefined ? parseIntIn(s("mtu")!, "--mtu", 576, 9000) : 1428,
    peerId: peerId ?? 0,
    key,
    keepalive: s("keepalive") !== undefined
      ? parseKeepalive(s("keepalive")!)
      : { interval: 10, timeout: 300 },
    mss: s("mss") !== undefined ? parseIntIn(s("mss")!, "--mss", 0, 65535) : 0,
    statsInterval: s("stats-interval") !== undefined
      ? parseIntIn(s("stats-interval")!, "--stats-interval", 0, 3600)
      : 1,
    json: !!v.json,
    hello: !!v.hello,
  };
}

/** `start`. */
export async function start(args: string[]): Promise<number> {
  const { values: v, positionals } = parseFlags(args, START_OPTIONS, "start", true);
  if (positionals.length) {
    throw usage(`start: unexpected argument '${positionals[0]}'; see 'ovpn-dco-cli start --help'`);
  }
  const mode = v.mode ?? "p2p";
  if (mode !== "p2p" && mode !== "server") throw usage(`--mode: '${mode}' is not p2p or server`);
  if (mode === "server") {
    const { runServer, serverFlagErrors } = await import("./server.ts");
    serverFlagErrors(v);
    const common = await commonConfig({ ...v, key: undefined, epoch: undefined });
    const win = Deno.build.os === "windows";
    const ok = win ? ["auto", "dco", "wintun"] : ["auto", "dco", "tun"];
    if (!ok.includes(common.backend)) {
      throw usage(
        win
          ? `the ${common.backend} backend runs on Linux only; on Windows use --backend auto, dco or wintun`
          : `--mode server on Linux runs on the tun or dco backend; the ${common.backend} backend needs Windows`,
      );
    }
    return await runServer({
      backend: common.backend,
      adapter: common.adapter,
      ifname: common.ifname,
      proto: (v.proto ?? "udp") as "udp" | "tcp",
      local: parseEndpoint(v.local!, "--local", 1194),
      addresses: (v.ifaddr ?? []).map((a) => parseCidr(a, "--ifaddr")),
      mtu: common.mtu,
      provider: common.provider,
      statsInterval: common.statsInterval,
      json: common.json,
    });
  }
  const common = await commonConfig(v);
  const proto = (v.proto ?? "udp") as string;
  if (proto !== "udp" && proto !== "tcp") throw usage(`--proto: '${proto}' is not udp or tcp`);
  if (v.listen && proto !== "tcp") {
    throw usage("--listen is for --proto tcp (a UDP peer needs no listening side)");
  }
  const addresses = (v.ifaddr ?? []).map((a) => parseCidr(a, "--ifaddr"));
  let peer: PeerConfig | undefined;
  if (v.remote) {
    const remote = parseEndpoint(v.remote, "--remote");
    const local = v.local
      ? parseEndpoint(v.local, "--local", 1194)
      : { address: remote.address.includes(":") ? "::" : "0.0.0.0", port: 1194 };
    if (local.address.includes(":") !== remote.address.includes(":")) {
      throw usage(
        `--local ${v.local} and --remote ${v.remote} are of different IP versions; use two IPv4 or two IPv6 addresses`,
      );
    }
    const timeout = v["connect-timeout"]
      ? parseIntIn(v["connect-timeout"], "--connect-timeout", 1, 3600)
      : 30;
    peer = {
      proto,
      local,
      remote,
      listen: !!v.listen,
      connectTimeoutMs: timeout * 1000,
      peerId: common.peerId,
    };
  } else if (v.local || v.listen) {
    throw usage(
      "--local and --listen describe a peer: add --remote ADDR:PORT, or add the peer later with 'peer new'",
    );
  }
  return await runTunnel({ ...common, addresses, peer });
}

const log = (line: string) => console.error(line);

/**
 * A `--local` address must be one of this host's: said before any interface is created (a listener on port 0
 * of that address is opened and closed at once; the wildcard addresses need no check).
 */
export function checkLocalAddress(address: string): void {
  if (/^(0\.0\.0\.0|::)$/.test(address)) return;
  try {
    Deno.listen({ hostname: address, port: 0 }).close();
  } catch (e) {
    if (e instanceof Deno.errors.AddrNotAvailable) {
      throw usage(
        `--local: ${address} is not an address of this host; use one of its addresses or 0.0.0.0 / [::]`,
      );
    }
    // anything else (no permission, no IPv6): the socket set-up later says it in its own words
  }
}

/** Why Linux's ovpn module cannot run this tunnel as configured (null: it can). */
export function kernelUnfit(cfg: Pick<TunnelConfig, "key" | "mss">): string | null {
  if (cfg.key?.epoch) return "Linux's ovpn module has no epoch data keys (--epoch)";
  if (cfg.key && cfg.key.cipher.keyLen === 0) {
    return "Linux's ovpn module has no cipher 'none' (it does AES-GCM and ChaCha20-Poly1305; give a key file)";
  }
  if (cfg.mss > 0) return "Linux's ovpn module does not clamp the TCP MSS (--mss)";
  return null;
}

/** Bring the tunnel up and run it until a signal or the peer ends it. */
export async function runTunnel(cfg: TunnelConfig): Promise<number> {
  if (cfg.peer) checkLocalAddress(cfg.peer.local.address);
  const dev = await openDevice({
    backend: cfg.backend,
    ifname: cfg.ifname,
    provider: cfg.provider,
    adapter: cfg.adapter,
    log,
    kernelUnfit: kernelUnfit(cfg),
  });
  let control: { close(): Promise<void> } | undefined;
  const stopSignals: (() => void)[] = [];
  const hub = new EventHub();
  try {
    const configure = async () => {
      await dev.configureInterface({ mtu: cfg.mtu, addresses: cfg.addresses });
      log(
        `${dev.backend}: interface ${dev.ifname} up, mtu ${cfg.mtu}` +
          (cfg.addresses.length ? `, ${cfg.addresses.join(", ")}` : " (addresses left alone)"),
      );
    };
    if (!(cfg.peer && dev.configureAfterStart)) await configure();
    control = await serveControl(dev.ifname, async (req) => {
      const peerId = peerIdOf(dev);
      const resp = await handleControl(dev, req);
      if (req.cmd === "peer.del" && resp.ok) hub.emit({ cmd: "DEL_PEER", peerId, reason: "userspace" });
      return resp;
    }, hub.source).catch((e) => {
      if (e instanceof ControlError) throw new CliError(e.message, EXIT.BUSY);
      throw e;
    });
    dev.onNotice = (text) => hub.emit({ cmd: "NOTICE", peerId: peerIdOf(dev), text });
    if (cfg.peer) await addPeer(dev, cfg, cfg.peer);
    else log("no peer yet: add one with 'ovpn-dco-cli peer new ...'");
    if (cfg.peer && dev.configureAfterStart) await configure();
    return await runUntilDone(dev, cfg, stopSignals, hub);
  } finally {
    for (const s of stopSignals) s();
    await control?.close();
    await dev.close();
  }
}

async function addPeer(dev: Device, cfg: TunnelConfig, peer: PeerConfig) {
  const ep = formatEndpoint;
  log(
    `peer: ${peer.proto} ${ep(peer.local)} ${peer.listen ? "<-" : "->"} ${
      ep(peer.remote)
    }, peer id ${cfg.peerId}`,
  );
  await dev.newPeer(peer);
  if (peer.proto === "tcp") await printOut("TCP connected\n");
  if (cfg.key) {
    await dev.newKey(KeySlotId.PRIMARY, cfg.key, cfg.peerId);
    log(
      `key: ${cfg.key.cipher.name}${
        cfg.key.epoch ? " (epoch data keys)" : ""
      }, key id ${cfg.key.keyId}, primary slot`,
    );
  } else {
    log("no key yet: data packets are dropped until 'ovpn-dco-cli key new'");
  }
  await dev.setPeer({
    keepaliveInterval: cfg.keepalive.interval,
    keepaliveTimeout: cfg.keepalive.timeout,
    mss: cfg.mss,
  });
  await dev.startVpn();
}

/** The peer id of a p2p device's peer (0 before one is added). */
function peerIdOf(dev: Device): number {
  return (dev.peerInfo().peer as { peerId?: number } | null)?.peerId ?? 0;
}

async function runUntilDone(
  dev: Device,
  cfg: TunnelConfig,
  cleanups: (() => void)[],
  hub: EventHub,
): Promise<number> {
  const stopped = stopSignal(cleanups);
  let ticker: ReturnType<typeof setInterval> | undefined;
  if (cfg.statsInterval > 0 || cfg.hello) {
    ticker = setInterval(async () => {
      if (cfg.hello) await dev.writeControl(new TextEncoder().encode("hello, world!")).catch(() => {});
      // a tick that cannot read or print the statistics (the peer just went, stdout closed) skips them
      if (cfg.statsInterval > 0) await printStats(dev, cfg.json).catch(() => {});
    }, (cfg.statsInterval || 1) * 1000);
    cleanups.push(() => clearInterval(ticker));
  }
  logControlPackets(dev, log);
  const outcome = await Promise.race([
    stopped.then((sig) => ({ sig })),
    dev.ended.then((reason) => ({ reason })),
  ]);
  if ("sig" in outcome) {
    log(`${outcome.sig}: shutting down`);
    return EXIT.OK;
  }
  const r = outcome.reason;
  const reason = endReason(r);
  if (reason) {
    hub.emit({ cmd: "DEL_PEER", peerId: peerIdOf(dev), reason });
    await hub.flush(); // `events` subscribers hear it before the instance goes
  }
  if (r.kind === "expired") {
    // with a diagnosis (refused packets) the peer is reachable: the message says what to check instead
    const hint = r.message.includes(" while ") ? "" : "; check that the peer runs and is reachable";
    throw new CliError(`peer timed out: ${r.message}${hint}`, EXIT.PEER);
  }
  if (r.kind === "aborted") throw new CliError(`connection ended: ${r.message}`, EXIT.PEER);
  throw new CliError(`tunnel failed: ${r.message}`, EXIT.FAILURE);
}

async function printStats(dev: Device, json: boolean) {
  const s = await dev.getStats();
  if (json) {
    const info = dev.peerInfo();
    await printOut(statsJsonLine(dev.ifname, statsToJson(s), info.drops, info.epoch as Epochs) + "\n");
  } else {
    await printOut(formatStats(s) + formatEpochs(dev.peerInfo().epoch as Epochs));
  }
}

/** Requests (or parts of them) that only a server-mode instance takes. */
function serverOnly(req: ControlRequest): string | null {
  if (req.cmd === "peer.list" || req.cmd === "route") {
    return req.cmd === "route" ? "route add|del" : "peer list";
  }
  if (req.cmd === "stats" && (req.all || req.peerId !== undefined)) return "stats --peer-id/--all";
  if (req.cmd === "peer.new" && req.vpnIps?.length) return "peer new --vpn-ip";
  const p2pPeerIdOk = req.cmd === "peer.new" || req.cmd === "key.new";
  if (!p2pPeerIdOk && "peerId" in req && req.peerId !== undefined) {
    return `${req.cmd.replace(".", " ")} --peer-id`;
  }
  return null;
}

/** Serve one control request against the device. */
export async function handleControl(dev: Device, req: ControlRequest): Promise<ControlResponse> {
  const so = serverOnly(req);
  if (so) {
    return {
      ok: false,
      error: `${so} is for a server-mode instance (start --mode server); this one is point-to-point`,
    };
  }
  switch (req.cmd) {
    case "stats":
      return { ok: true, stats: statsToJson(await dev.getStats()), info: dev.peerInfo() };
    case "peer.get":
      return { ok: true, info: dev.peerInfo(), stats: statsToJson(await dev.getStats()) };
    case "peer.set":
      await dev.setPeer({
        keepaliveInterval: req.keepaliveInterval,
        keepaliveTimeout: req.keepaliveTimeout,
        mss: req.mss,
      });
      return { ok: true };
    case "peer.del":
      await dev.delPeer();
      return { ok: true };
    case "peer.new": {
      const peer: PeerConfig = {
        proto: req.proto,
        local: req.local,
        remote: req.remote,
        listen: req.listen,
        peerId: req.peerId,
      };
      await dev.newPeer(peer);
      await dev.startVpn();
      return { ok: true };
    }
    case "key.new":
      await dev.newKey(req.slot as KeySlotId, keyFromWire(req.key), req.peerId);
      return { ok: true };
    case "key.swap":
      await dev.swapKeys();
      return { ok: true };
    case "key.del":
      await dev.delKey(req.slot as KeySlotId);
      return { ok: true };
    case "key.epoch":
      await dev.nextEpoch();
      return { ok: true, epoch: dev.peerInfo().epoch };
  }
  return { ok: false, error: `unknown control command` };
}
