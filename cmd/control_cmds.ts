/**
 * `stats`, `peer new|set|del|get` and `key new|swap|del`: short-lived commands that reach a running
 * `start` through its control socket, found by --ifname.
 * @module
 */
import { CliError, EXIT, usage } from "./errors.ts";
import { checkIfname, DEFAULT_IFNAME, loadKey, noneKey } from "./start.ts";
import { parseCidr, parseEndpoint, parseFlags, parseIntIn } from "./flags.ts";
import { CIPHER_NAMES, cipherByName } from "../crypto/aead.ts";
import {
  ControlError,
  type ControlRequest,
  controlRequest,
  keyToWire,
  streamControl,
} from "../driver/control.ts";
import { formatEndpoint, parseIPv4, parseIPv6 } from "../driver/uapi.ts";
import { type Epochs, formatEpochs, formatStatsJson, statsJsonLine } from "../driver/datachannel/stats.ts";
import { MAX_PEER_ID } from "../driver/datachannel/packet.ts";

async function ask(ifname: string, req: ControlRequest): Promise<Record<string, unknown>> {
  let r;
  try {
    r = await controlRequest(ifname, req);
  } catch (e) {
    if (e instanceof ControlError) throw new CliError(e.message, e.privilege ? EXIT.PRIVILEGE : EXIT.CONTROL);
    throw e;
  }
  if (!r.ok) throw new CliError(`the instance on '${ifname}' refused: ${r.error}`, EXIT.CONTROL);
  return r;
}

export const STATS_HELP = `Usage: ovpn-dco-cli stats [--ifname NAME] [--json] [--watch] [--peer-id N | --all]

Print the statistics of the instance running on NAME (default ovpn0; on Windows the ovpn-dco adapter's name), in upstream's format, or as one
JSON object with --json (including drop counts by reason). --watch repeats every second until Ctrl-C.
Server mode: --peer-id N shows one peer's, --all every peer's after the total (with --json also the
server's own drops by reason and what the tun and UDP offloads did, under "device").

Example:
  ovpn-dco-cli stats --ifname ovpn0 --json
`;

export async function stats(args: string[]): Promise<number> {
  const { values: v } = parseFlags(args, {
    ifname: { type: "string" },
    json: { type: "boolean" },
    watch: { type: "boolean" },
    "peer-id": { type: "string" },
    all: { type: "boolean" },
  }, "stats");
  const ifname = checkIfname(v.ifname ?? DEFAULT_IFNAME);
  const peerId = optPeerId(v["peer-id"]);
  if (peerId !== undefined && v.all) throw usage("stats: give --peer-id N or --all, not both");
  // --watch ends with Ctrl-C (or SIGTERM) and exit 0, as `events` does
  let stop = false, wake = () => {};
  const pause = () => new Promise<void>((res) => (wake = res, setTimeout(res, 1000)));
  const onSig = () => {
    stop = true;
    wake();
  };
  const sigs = Deno.build.os === "windows" ? ["SIGINT", "SIGBREAK"] as const : ["SIGINT", "SIGTERM"] as const;
  if (v.watch) { for (const sg of sigs) Deno.addSignalListener(sg, onSig); }
  try {
    return await statsLoop();
  } finally {
    if (v.watch) { for (const sg of sigs) Deno.removeSignalListener(sg, onSig); }
  }
  async function statsLoop(): Promise<number> {
    for (;;) {
      const r = await ask(ifname, { cmd: "stats", peerId, all: v.all || undefined });
      if (r.peers) {
        const peers = r.peers as { peerId: number; stats: Record<string, number> }[];
        if (v.json) {
          // the server's own figures beside the total: drops by reason, what the offloads did
          const d = (r.info ?? {}) as Record<string, unknown>;
          const device = { drops: d.drops, offload: d.offload ?? null, udpOffload: d.udpOffload ?? null };
          console.log(
            JSON.stringify({ time: new Date().toISOString(), ifname, total: r.stats, device, peers }),
          );
        } else {
          let text = `total:\n${formatStatsJson(r.stats as Record<string, number>)}`;
          for (const p of peers) text += `peer ${p.peerId}:\n${formatStatsJson(p.stats)}`;
          await Deno.stdout.write(new TextEncoder().encode(text));
        }
        if (!v.watch) return EXIT.OK;
        await pause();
        if (stop) return EXIT.OK;
        continue;
      }
      const s = r.stats as Record<string, number>;
      const info = r.info as Record<string, unknown>;
      if (v.json) console.log(statsJsonLine(ifname, s, info.drops, info.epoch as Epochs));
      else {
        await Deno.stdout.write(
          new TextEncoder().encode(formatStatsJson(s) + formatEpochs(info.epoch as Epochs)),
        );
      }
      if (!v.watch) return EXIT.OK;
      await pause();
      if (stop) return EXIT.OK;
    }
  }
}

export const PEER_HELP = `Usage:
  ovpn-dco-cli peer new <peer-id> <local ADDR:PORT> <remote ADDR:PORT> [--proto udp|tcp] [--listen] [--vpn-ip ADDR]... [--ifname NAME]
  ovpn-dco-cli peer set [--keepalive I,T] [--mss N] [--peer-id N] [--ifname NAME]     (-1 or omitted: unchanged)
  ovpn-dco-cli peer del [--peer-id N] [--ifname NAME]
  ovpn-dco-cli peer get [--peer-id N] [--ifname NAME] [--json]
  ovpn-dco-cli peer list [--ifname NAME] [--json]

NEW_PEER, SET_PEER, DEL_PEER and the peer's settings and statistics, on the instance running on
NAME (default ovpn0; on Windows the ovpn-dco adapter's name). 'peer del' drops the peer and keeps the interface.
On a server (start --mode server) every peer command names its peer: 'peer new' by its first argument and
needs --vpn-ip (its IPv4 and/or IPv6 address in the tunnel), the others by --peer-id; 'peer list' lists them.
A TCP server gives each connection to the peer of its remote address and port; a remote port 0 takes any port
of that address (for clients that cannot bind theirs, such as the wintun backend).

Example:
  ovpn-dco-cli peer set --ifname ovpn0 --keepalive 5,30 --mss 1360
`;

export async function peer(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const opts = {
    ifname: { type: "string" },
    json: { type: "boolean" },
    keepalive: { type: "string" },
    mss: { type: "string" },
    proto: { type: "string" },
    listen: { type: "boolean" },
    "peer-id": { type: "string" },
    "vpn-ip": { type: "string", multiple: true },
  } as const;
  if (!["new", "set", "del", "get", "list"].includes(sub ?? "")) {
    throw usage(
      `peer: expected new, set, del, get or list${
        sub ? `, not '${sub}'` : ""
      }; see 'ovpn-dco-cli peer --help'`,
    );
  }
  const { values: v, positionals: p } = parseFlags(rest, opts, `peer ${sub}`, sub === "new");
  const ifname = checkIfname(v.ifname ?? DEFAULT_IFNAME);
  const peerId = optPeerId(v["peer-id"]);
  if (sub === "new" && peerId !== undefined) {
    throw usage("peer new: the peer id is its first argument, not --peer-id");
  }
  if (sub !== "new" && v["vpn-ip"]) throw usage(`--vpn-ip is for 'peer new'`);
  if (sub === "list") {
    const r = await ask(ifname, { cmd: "peer.list" });
    const peers = r.peers as Record<string, unknown>[];
    if (v.json) console.log(JSON.stringify(peers));
    else {
      for (const q of peers) {
        const ep = q.remote as { address: string; port: number };
        console.log(
          `peer ${q.peerId}: ${formatEndpoint(ep)} vpn ${(q.vpnIps as string[]).join(", ")}` +
            ((q.iroutes as string[]).length ? ` routes ${(q.iroutes as string[]).join(", ")}` : "") +
            ` cipher ${q.cipher ?? "none yet"}`,
        );
      }
      if (!peers.length) console.log("no peers");
    }
    return EXIT.OK;
  }
  if (sub === "new") {
    if (p.length !== 3) {
      throw usage(
        `peer new: expected <peer-id> <local ADDR:PORT> <remote ADDR:PORT>, got ${p.length} arguments`,
      );
    }
    const proto = v.proto ?? "udp";
    if (proto !== "udp" && proto !== "tcp") throw usage(`--proto: '${proto}' is not udp or tcp`);
    await ask(ifname, {
      cmd: "peer.new",
      proto,
      peerId: parseIntIn(p[0], "peer-id", 0, MAX_PEER_ID),
      local: parseEndpoint(p[1], "local"),
      remote: parseEndpoint(p[2], "remote"),
      listen: !!v.listen,
      vpnIps: v["vpn-ip"]?.map((a) => parseAddress(a, "--vpn-ip")),
    });
    console.error(`peer added on ${ifname}`);
  } else if (sub === "set") {
    let interval = -1, timeout = -1;
    if (v.keepalive !== undefined) {
      const m = /^(-?\d+),(-?\d+)$/.exec(v.keepalive);
      if (!m) throw usage(`--keepalive: '${v.keepalive}' is not INTERVAL,TIMEOUT in seconds (-1: unchanged)`);
      interval = parseIntIn(m[1], "--keepalive interval", -1, 86400);
      timeout = parseIntIn(m[2], "--keepalive timeout", -1, 86400);
    }
    const mss = v.mss !== undefined ? parseIntIn(v.mss, "--mss", -1, 65535) : -1;
    if (v.keepalive === undefined && v.mss === undefined) {
      throw usage("peer set: nothing to set; give --keepalive I,T and/or --mss N");
    }
    await ask(ifname, {
      cmd: "peer.set",
      keepaliveInterval: interval,
      keepaliveTimeout: timeout,
      mss,
      peerId,
    });
    console.error(`peer on ${ifname} updated`);
  } else if (sub === "del") {
    await ask(ifname, { cmd: "peer.del", peerId });
    console.error(`peer${peerId !== undefined ? ` ${peerId}` : ""} on ${ifname} deleted`);
  } else {
    const r = await ask(ifname, { cmd: "peer.get", peerId });
    if (v.json) console.log(JSON.stringify({ info: r.info, stats: r.stats }));
    else {
      const info = r.info as Record<string, unknown>;
      for (const line of plainLines(info)) console.log(line);
      await Deno.stdout.write(new TextEncoder().encode(formatStatsJson(r.stats as Record<string, number>)));
    }
  }
  return EXIT.OK;
}

export const KEY_HELP = `Usage:
  ovpn-dco-cli key new <peer-id> <cipher> <key-direction> <key-file> [--slot primary|secondary] [--key-id N] [--epoch] [--ifname NAME]
  ovpn-dco-cli key swap [--peer-id N] [--ifname NAME]
  ovpn-dco-cli key del [--slot primary|secondary] [--peer-id N] [--ifname NAME]
  ovpn-dco-cli key epoch [--peer-id N] [--ifname NAME]

NEW_KEY into a slot (default: secondary, ready for a swap), SWAP_KEYS, or delete a slot, on the
instance running on NAME (default ovpn0; on Windows the ovpn-dco adapter's name). The cipher is one of ${CIPHER_NAMES}. The key file is a
data64.key (key direction 0 or 1 applies) or a JSON key file (key direction ignored).
Renegotiation is 'key new' into the secondary slot on both ends, then 'key swap' on both ends.
--epoch installs epoch data keys (OpenVPN 2.7, NEW_KEY_V2 on the driver; E1 = key A / key B of a
data64.key, or the JSON key's 'epochSecret' fields). 'key epoch' moves the primary key's sender to the next
epoch now (the peer follows; tun and wintun backends: the driver moves epochs by itself).
On a server, 'key new' installs the key of the peer its first argument names; swap, del and epoch need --peer-id.

Example:
  ovpn-dco-cli key new 0 AES-256-GCM 0 next.key --key-id 1 --ifname ovpn0 && ovpn-dco-cli key swap --ifname ovpn0
`;

function parseSlot(v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (v === "primary" || v === "0") return 0;
  if (v === "secondary" || v === "1") return 1;
  throw usage(`--slot: '${v}' is not primary or secondary`);
}

export async function key(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (!["new", "swap", "del", "epoch"].includes(sub ?? "")) {
    throw usage(
      `key: expected new, swap, del or epoch${sub ? `, not '${sub}'` : ""}; see 'ovpn-dco-cli key --help'`,
    );
  }
  const opts = {
    ifname: { type: "string" },
    slot: { type: "string" },
    "key-id": { type: "string" },
    epoch: { type: "boolean" },
    "peer-id": { type: "string" },
  } as const;
  const { values: v, positionals: p } = parseFlags(rest, opts, `key ${sub}`, sub === "new");
  const ifname = checkIfname(v.ifname ?? DEFAULT_IFNAME);
  const peerId = optPeerId(v["peer-id"]);
  if (sub === "new" && peerId !== undefined) {
    throw usage("key new: the peer id is its first argument, not --peer-id");
  }
  if (sub === "new") {
    if (p.length !== 4 && !(p.length === 3 && p[1]?.toLowerCase() === "none")) {
      throw usage(
        `key new: expected <peer-id> <cipher> <key-direction> <key-file>, got ${p.length} arguments`,
      );
    }
    const peerId = parseIntIn(p[0], "peer-id", 0, MAX_PEER_ID);
    const cipher = cipherByName(p[1]);
    if (!cipher) throw usage(`key new: unknown cipher '${p[1]}'; use one of ${CIPHER_NAMES}`);
    const keyDirection = parseIntIn(p[2], "key-direction", 0, 1 << 30);
    const keyId = v["key-id"] !== undefined ? parseIntIn(v["key-id"], "--key-id", 0, 7) : undefined;
    if (v.epoch && p[3] === undefined) throw usage("key new: --epoch needs a key file");
    const material = p[3] === undefined
      ? noneKey(keyId)
      : (await loadKey(p[3], { cipher: cipher.name, keyDirection, keyId, epoch: !!v.epoch })).material;
    const slot = parseSlot(v.slot, 1);
    await ask(ifname, { cmd: "key.new", slot, peerId, key: keyToWire(material) });
    console.error(
      `key id ${material.keyId} (${material.cipher.name}${
        material.epoch ? ", epoch data keys" : ""
      }) installed in the ${slot ? "secondary" : "primary"} slot on ${ifname}`,
    );
  } else if (sub === "swap") {
    await ask(ifname, { cmd: "key.swap", peerId });
    console.error(`keys swapped on ${ifname}`);
  } else if (sub === "epoch") {
    const r = await ask(ifname, { cmd: "key.epoch", peerId });
    const e = r.epoch as { send: number; recv: number } | null;
    console.error(
      `${ifname} now sends with epoch ${e?.send ?? "?"} (receiving with epoch ${e?.recv ?? "?"})`,
    );
  } else {
    const slot = parseSlot(v.slot, 1);
    await ask(ifname, { cmd: "key.del", slot, peerId });
    console.error(`${slot ? "secondary" : "primary"} key deleted on ${ifname}`);
  }
  return EXIT.OK;
}

/** `--peer-id N` (24 bits), or undefined. */
function optPeerId(v: string | undefined): number | undefined {
  return v === undefined ? undefined : parseIntIn(v, "--peer-id", 0, MAX_PEER_ID);
}

/** An IPv4 or IPv6 address (no prefix, no port). */
function parseAddress(v: string, what: string): string {
  if (!parseIPv4(v) && !parseIPv6(v)) throw usage(`${what}: '${v}' is not an IPv4 or IPv6 address`);
  return v;
}

export const ROUTE_HELP = `Usage:
  ovpn-dco-cli route add <peer-id> <CIDR> [--ifname NAME]
  ovpn-dco-cli route del <peer-id> <CIDR> [--ifname NAME]

Server mode: a subnet behind a peer (an iroute, MP_ADD_IROUTE). Packets from the tun to an address in it go
to that peer; the longest prefix wins; a prefix belongs to one peer. The server's own kernel still needs a route
to the subnet through the interface (ip route add CIDR dev NAME).

Example:
  ovpn-dco-cli route add 2 192.168.51.0/24 --ifname ovpn-srv && ip route add 192.168.51.0/24 dev ovpn-srv
`;

export async function route(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== "add" && sub !== "del") {
    throw usage(`route: expected add or del${sub ? `, not '${sub}'` : ""}; see 'ovpn-dco-cli route --help'`);
  }
  const { values: v, positionals: p } = parseFlags(
    rest,
    { ifname: { type: "string" } } as const,
    `route ${sub}`,
    true,
  );
  if (p.length !== 2) throw usage(`route ${sub}: expected <peer-id> <CIDR>, got ${p.length} arguments`);
  const ifname = checkIfname(v.ifname ?? DEFAULT_IFNAME);
  const peerId = parseIntIn(p[0], "peer-id", 0, MAX_PEER_ID);
  const cidr = parseCidr(p[1], "CIDR");
  const r = await ask(ifname, { cmd: "route", peerId, cidr, add: sub === "add" });
  console.error(
    `route ${r.route} ${sub === "add" ? "added to" : "removed from"} peer ${peerId} on ${ifname}`,
  );
  return EXIT.OK;
}

export const EVENTS_HELP = `Usage: ovpn-dco-cli events [--ifname NAME] [--json]

One line per notification of the instance on NAME until Ctrl-C or until the instance ends: a peer deleted
(userspace: 'peer del'; expired: keepalive timeout; transport-disconnect: its TCP connection closed;
transport-error; teardown: the instance stopped) or floated to a new address (server mode, UDP). A
point-to-point instance reports its peer the same way (peer id 0 unless --peer-id gave one).

Example:
  ovpn-dco-cli events --ifname ovpn-srv --json
`;

export async function events(args: string[]): Promise<number> {
  const { values: v } = parseFlags(args, { ifname: { type: "string" }, json: { type: "boolean" } }, "events");
  const ifname = checkIfname(v.ifname ?? DEFAULT_IFNAME);
  let first = true;
  try {
    await streamControl(ifname, { cmd: "events" }, (o) => {
      if (first) {
        first = false;
        if (o.ok === false) {
          throw new CliError(`the instance on '${ifname}' refused: ${o.error}`, EXIT.CONTROL);
        }
        console.error(`listening for events of '${ifname}' (Ctrl-C to stop)`);
        return;
      }
      if (v.json) console.log(JSON.stringify({ time: new Date().toISOString(), ifname, ...o }));
      else {
        console.log(
          `${new Date().toISOString()} ${
            o.event === "FLOAT_PEER"
              ? `peer ${o.peerId} floated to ${o.address}`
              : o.event === "SWAP_KEYS"
              ? `peer ${o.peerId}: keys swapped`
              : o.event === "NOTICE"
              ? `peer ${o.peerId}: ${o.text}`
              : `peer ${o.peerId} deleted (${o.reason})`
          }`,
        );
      }
    });
  } catch (e) {
    if (e instanceof ControlError) throw new CliError(e.message, e.privilege ? EXIT.PRIVILEGE : EXIT.CONTROL);
    throw e;
  }
  return EXIT.OK;
}

/**
 * A nested object as plain `key: value` lines (`peer get`): nested objects as dotted keys, endpoints as
 * ADDR:PORT, lists comma-separated, empty ones as "none"; never raw JSON.
 */
export function plainLines(o: Record<string, unknown>, prefix = ""): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(o)) {
    const key = prefix + k;
    if (v && typeof v === "object" && !Array.isArray(v)) {
      const e = v as Record<string, unknown>;
      if (typeof e.address === "string" && typeof e.port === "number" && Object.keys(e).length === 2) {
        out.push(`${key}: ${formatEndpoint({ address: e.address, port: e.port })}`);
      } else if (Object.keys(e).length === 0) out.push(`${key}: none`);
      else out.push(...plainLines(e, `${key}.`));
    } else if (Array.isArray(v)) {
      out.push(
        `${key}: ${
          v.length ? v.map((x) => typeof x === "object" ? JSON.stringify(x) : String(x)).join(", ") : "none"
        }`,
      );
    } else out.push(`${key}: ${v ?? "none"}`);
  }
  return out;
}
