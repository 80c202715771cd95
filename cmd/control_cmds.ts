/**
 * `stats`, `peer new|set|del|get` and `key new|swap|del`: short-lived commands that reach a running
 * `start` through its control socket, found by --ifname.
 * @module
 */
import { CliError, EXIT, usage } from "./errors.ts";
import { checkIfname, DEFAULT_IFNAME, loadKey, noneKey } from "./start.ts";
import { parseEndpoint, parseFlags, parseIntIn } from "./flags.ts";
import { CIPHER_NAMES, cipherByName } from "../crypto/aead.ts";
import { ControlError, type ControlRequest, controlRequest, keyToWire } from "../driver/control.ts";
import { type Epochs, formatEpochs, formatStatsJson, statsJsonLine } from "../driver/datachannel/stats.ts";
import { MAX_PEER_ID } from "../driver/datachannel/packet.ts";

async function ask(ifname: string, req: ControlRequest): Promise<Record<string, unknown>> {
  let r;
  try {
    r = await controlRequest(ifname, req);
  } catch (e) {
    if (e instanceof ControlError) throw new CliError(e.message, EXIT.CONTROL);
    throw e;
  }
  if (!r.ok) throw new CliError(`the instance on '${ifname}' refused: ${r.error}`, EXIT.CONTROL);
  return r;
}

export const STATS_HELP = `Usage: ovpn-dco-cli stats [--ifname NAME] [--json] [--watch]

Print the statistics of the instance running on NAME (default ovpn0; on Windows the ovpn-dco adapter's name), in upstream's format, or as one
JSON object with --json (including drop counts by reason). --watch repeats every second until Ctrl-C.

Example:
  ovpn-dco-cli stats --ifname ovpn0 --json
`;

export async function stats(args: string[]): Promise<number> {
  const { values: v } = parseFlags(args, {
    ifname: { type: "string" },
    json: { type: "boolean" },
    watch: { type: "boolean" },
  }, "stats");
  const ifname = checkIfname(v.ifname ?? DEFAULT_IFNAME);
  for (;;) {
    const r = await ask(ifname, { cmd: "stats" });
    const s = r.stats as Record<string, number>;
    const info = r.info as Record<string, unknown>;
    if (v.json) console.log(statsJsonLine(ifname, s, info.drops, info.epoch as Epochs));
    else {
      await Deno.stdout.write(
        new TextEncoder().encode(formatStatsJson(s) + formatEpochs(info.epoch as Epochs)),
      );
    }
    if (!v.watch) return EXIT.OK;
    await new Promise((res) => setTimeout(res, 1000));
  }
}

export const PEER_HELP = `Usage:
  ovpn-dco-cli peer new <peer-id> <local ADDR:PORT> <remote ADDR:PORT> [--proto udp|tcp] [--listen] [--ifname NAME]
  ovpn-dco-cli peer set [--keepalive I,T] [--mss N] [--ifname NAME]     (-1 or omitted: unchanged)
  ovpn-dco-cli peer del [--ifname NAME]
  ovpn-dco-cli peer get [--ifname NAME] [--json]

NEW_PEER, SET_PEER, DEL_PEER and the peer's settings and statistics, on the instance running on
NAME (default ovpn0; on Windows the ovpn-dco adapter's name). 'peer del' drops the peer and keeps the interface.

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
  } as const;
  if (!["new", "set", "del", "get"].includes(sub ?? "")) {
    throw usage(
      `peer: expected new, set, del or get${sub ? `, not '${sub}'` : ""}; see 'ovpn-dco-cli peer --help'`,
    );
  }
  const { values: v, positionals: p } = parseFlags(rest, opts, `peer ${sub}`, sub === "new");
  const ifname = checkIfname(v.ifname ?? DEFAULT_IFNAME);
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
    await ask(ifname, { cmd: "peer.set", keepaliveInterval: interval, keepaliveTimeout: timeout, mss });
    console.error(`peer on ${ifname} updated`);
  } else if (sub === "del") {
    await ask(ifname, { cmd: "peer.del" });
    console.error(`peer on ${ifname} deleted`);
  } else {
    const r = await ask(ifname, { cmd: "peer.get" });
    if (v.json) console.log(JSON.stringify({ info: r.info, stats: r.stats }));
    else {
      const info = r.info as Record<string, unknown>;
      for (const [k, val] of Object.entries(info)) {
        console.log(`${k}: ${typeof val === "object" ? JSON.stringify(val) : val}`);
      }
      await Deno.stdout.write(new TextEncoder().encode(formatStatsJson(r.stats as Record<string, number>)));
    }
  }
  return EXIT.OK;
}

export const KEY_HELP = `Usage:
  ovpn-dco-cli key new <peer-id> <cipher> <key-direction> <key-file> [--slot primary|secondary] [--key-id N] [--epoch] [--ifname NAME]
  ovpn-dco-cli key swap [--ifname NAME]
  ovpn-dco-cli key del [--slot primary|secondary] [--ifname NAME]
  ovpn-dco-cli key epoch [--ifname NAME]

NEW_KEY into a slot (default: secondary, ready for a swap), SWAP_KEYS, or delete a slot, on the
instance running on NAME (default ovpn0; on Windows the ovpn-dco adapter's name). The cipher is one of ${CIPHER_NAMES}. The key file is a
data64.key (key direction 0 or 1 applies) or a JSON key file (key direction ignored).
Renegotiation is 'key new' into the secondary slot on both ends, then 'key swap' on both ends.
--epoch installs epoch data keys (OpenVPN 2.7, NEW_KEY_V2 on the driver; E1 = key A / key B of a
data64.key, or the JSON key's 'epochSecret' fields). 'key epoch' moves the primary key's sender to the next
epoch now (the peer follows; tun and wintun backends: the driver moves epochs by itself).

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
  } as const;
  const { values: v, positionals: p } = parseFlags(rest, opts, `key ${sub}`, sub === "new");
  const ifname = checkIfname(v.ifname ?? DEFAULT_IFNAME);
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
    await ask(ifname, { cmd: "key.swap" });
    console.error(`keys swapped on ${ifname}`);
  } else if (sub === "epoch") {
    const r = await ask(ifname, { cmd: "key.epoch" });
    const e = r.epoch as { send: number; recv: number } | null;
    console.error(
      `${ifname} now sends with epoch ${e?.send ?? "?"} (receiving with epoch ${e?.recv ?? "?"})`,
    );
  } else {
    const slot = parseSlot(v.slot, 1);
    await ask(ifname, { cmd: "key.del", slot });
    console.error(`${slot ? "secondary" : "primary"} key deleted on ${ifname}`);
  }
  return EXIT.OK;
}
