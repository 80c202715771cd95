/**
 * The client of Linux's `ovpn` module: the family looked up by name (with `modprobe ovpn` when it is not
 * there yet), an ovpn interface created and deleted over rtnetlink (with its mode, which Debian 12's iproute2
 * cannot set), every command of the family, the interface's own counters, and the `peers` notifications.
 * One instance per interface; used by the p2p device and the server alike.
 *
 * @example
 * ```ts
 * import { OvpnKernel } from "./ovpn_kernel.ts";
 * const k = await OvpnKernel.create("ovpn0", "p2p", { log: console.error });
 * await k.close(); // deletes the interface
 * ```
 * @module
 */
import { DeviceError } from "../device.ts";
import { socketPath } from "../control.ts";
import { CipherAlg } from "../../crypto/aead.ts";
import type { KeyMaterial, KeySlotId } from "../datachannel/keyslot.ts";
import { ENODEV, libc } from "../../ffi/libc.ts";
import type { GenlFamily, NlMessage } from "./netlink.ts";
import { NetlinkError, NetlinkListener, NetlinkSocket } from "./nlsock.ts";
import {
  delLinkRequest,
  getLinkRequest,
  keyDelRequest,
  keyGetRequest,
  keyNewRequest,
  keySwapRequest,
  type LinkInfo,
  newLinkRequest,
  OVPN_CIPHER_ALG,
  OVPN_FAMILY_NAME,
  OVPN_MCGRP_PEERS,
  OVPN_MODE,
  type OvpnNotification,
  type OvpnPeer,
  type OvpnPeerNew,
  type OvpnPeerSet,
  parseLink,
  parseNotification,
  parsePeer,
  peerDelRequest,
  peerGetRequest,
  peerNewRequest,
  peerSetRequest,
} from "./ovpn_nl.ts";
import { Attrs, GENL_HDRLEN } from "./netlink.ts";
import { OVPN_A, OVPN_A_KEYCONF } from "./ovpn_nl.ts";

/** What the module is on this host: its family, or why it is not there. */
export type ModuleState = { present: true; family: GenlFamily } | { present: false; why: string };

let probed: ModuleState | undefined;

/**
 * Whether Linux's `ovpn` module answers: the generic netlink family `ovpn` resolves (the kernel loads the
 * module on the lookup where it can), or does after `modprobe ovpn`.
 */
export async function probeModule(): Promise<ModuleState> {
  if (probed) return probed;
  const lookup = (): GenlFamily => {
    const s = NetlinkSocket.open("generic");
    try {
      return s.family(OVPN_FAMILY_NAME);
    } finally {
      s.close();
    }
  };
  try {
    probed = { present: true, family: lookup() };
  } catch (e) {
    if (!(e instanceof DeviceError) || e.kind !== "missing") throw e;
    try {
      await new Deno.Command("modprobe", { args: ["-q", "ovpn"], stdout: "null", stderr: "null" }).output();
      probed = { present: true, family: lookup() };
    } catch {
      const rel = (() => {
        try {
          return Deno.osRelease();
        } catch {
          return "this kernel";
        }
      })();
      probed = {
        present: false,
        why:
          `Linux's ovpn module is not available (no generic netlink family 'ovpn', and 'modprobe ovpn' did not load it on ${rel}); it needs Linux 6.16 or newer built with CONFIG_OVPN`,
      };
    }
  }
  return probed;
}

/** The ovpn module's cipher number for key material (NONE is not something the module does). */
export function kernelCipher(key: KeyMaterial): number {
  if (key.epoch) {
    throw new DeviceError(
      "Linux's ovpn module has no epoch data keys; leave out --epoch, or use --backend tun",
      "state",
    );
  }
  switch (key.cipher.alg) {
    case CipherAlg.CHACHA20_POLY1305:
      return OVPN_CIPHER_ALG.CHACHA20_POLY1305;
    case CipherAlg.NONE:
      throw new DeviceError(
        "Linux's ovpn module has no cipher 'none' (it only does AES-GCM and ChaCha20-Poly1305); give a key file, or use --backend tun",
        "state",
      );
    default:
      return OVPN_CIPHER_ALG.AES_GCM;
  }
}

/** One ovpn interface and the netlink sockets that drive it. */
export class OvpnKernel {
  readonly family: GenlFamily;
  #genl: NetlinkSocket;
  #rtnl: NetlinkSocket;
  #listener: NetlinkListener | null = null;
  #deleted = false;

  private constructor(
    readonly ifname: string,
    readonly ifindex: number,
    family: GenlFamily,
    genl: NetlinkSocket,
    rtnl: NetlinkSocket,
  ) {
    this.family = family;
    this.#genl = genl;
    this.#rtnl = rtnl;
  }

  /**
   * Create ovpn interface `ifname` in `mode`. An ovpn interface of that name that no running instance owns
   * (its control socket does not answer: left by a crash) is deleted first, with one log line.
   */
  static async create(
    ifname: string,
    mode: "p2p" | "mp",
    o: { log?: (line: string) => void } = {},
  ): Promise<OvpnKernel> {
    const m = await probeModule();
    if (!m.present) throw new DeviceError(m.why, "missing");
    const genl = NetlinkSocket.open("generic");
    const rtnl = NetlinkSocket.open("route");
    try {
      const modeNo = mode === "mp" ? OVPN_MODE.MP : OVPN_MODE.P2P;
      const add = () => {
        const seq = rtnl.nextSeq();
        rtnl.request(newLinkRequest(ifname, modeNo, seq), seq, `creating ovpn interface '${ifname}'`);
      };
      try {
        add();
      } catch (e) {
        if (!(e instanceof NetlinkError) || e.kind !== "busy") throw e;
        const old = linkByName(rtnl, ifname);
        if (!old) throw e;
        if (old.kind !== "ovpn") {
          throw new DeviceError(
            `interface '${ifname}' already exists and is ${
              old.kind ? `a ${old.kind}` : "another kind of"
            } interface; pick another --ifname`,
            "busy",
          );
        }
        if (await instanceAnswers(ifname)) {
          throw new DeviceError(
            `an instance is already running on interface '${ifname}'; stop it first or pick another --ifname`,
            "busy",
          );
        }
        o.log?.(`removing ovpn interface '${ifname}' left behind by an earlier run`);
        const seq = rtnl.nextSeq();
        rtnl.request(delLinkRequest(old.index, seq), seq, `deleting the stale interface '${ifname}'`);
        add();
      }
      const info = linkByName(rtnl, ifname);
      if (!info) throw new DeviceError(`the ovpn interface '${ifname}' vanished right after it was created`);
      return new OvpnKernel(ifname, info.index, m.family, genl, rtnl);
    } catch (e) {
      genl.close();
      rtnl.close();
      throw e;
    }
  }

  #req(msg: Uint8Array, seq: number, what: string): NlMessage[] {
    return this.#genl.request(msg, seq, what);
  }

  #seq(): number {
    return this.#genl.nextSeq();
  }

  peerNew(p: OvpnPeerNew): void {
    const s = this.#seq();
    this.#req(peerNewRequest(this.family.id, s, this.ifindex, p), s, `PEER_NEW (peer ${p.id})`);
  }

  peerSet(p: OvpnPeerSet): void {
    const s = this.#seq();
    this.#req(peerSetRequest(this.family.id, s, this.ifindex, p), s, `PEER_SET (peer ${p.id})`);
  }

  peerGet(id: number): OvpnPeer {
    const s = this.#seq();
    const r = this.#req(peerGetRequest(this.family.id, s, this.ifindex, id), s, `PEER_GET (peer ${id})`);
    if (!r.length) throw new DeviceError(`PEER_GET (peer ${id}): the kernel sent no peer`);
    return parsePeer(r[0].payload);
  }

  /** Every peer of the interface (PEER_GET dump). */
  peerDump(): OvpnPeer[] {
    const s = this.#seq();
    return this.#req(peerGetRequest(this.family.id, s, this.ifindex), s, "PEER_GET (dump)").map((m) =>
      parsePeer(m.payload)
    );
  }

  peerDel(id: number): void {
    const s = this.#seq();
    this.#req(peerDelRequest(this.family.id, s, this.ifindex, id), s, `PEER_DEL (peer ${id})`);
  }

  /** KEY_NEW; the request buffer (key bytes) is wiped afterwards. */
  keyNew(slot: KeySlotId, key: KeyMaterial, peerId: number): void {
    const alg = kernelCipher(key);
    const s = this.#seq();
    const msg = keyNewRequest(this.family.id, s, this.ifindex, {
      peerId,
      slot: slot === 0 ? 0 : 1,
      keyId: key.keyId,
      cipherAlg: alg,
      encrypt: { key: key.encryptKey, nonceTail: key.encryptNonceTail },
      decrypt: { key: key.decryptKey, nonceTail: key.decryptNonceTail },
    });
    try {
      this.#req(msg, s, `KEY_NEW (peer ${peerId}, ${slot === 0 ? "primary" : "secondary"} slot)`);
    } finally {
      msg.fill(0);
    }
  }

  /** KEY_GET: the key id and cipher in a slot, or null when the slot is empty. */
  keyGet(peerId: number, slot: KeySlotId): { keyId: number; cipherAlg: number } | null {
    const s = this.#seq();
    try {
      const r = this.#req(keyGetRequest(this.family.id, s, this.ifindex, peerId, slot), s, "KEY_GET");
      const k = r.length ? new Attrs(r[0].payload.subarray(GENL_HDRLEN)).nested(OVPN_A.KEYCONF) : undefined;
      if (!k) return null;
      return { keyId: k.u32(OVPN_A_KEYCONF.KEY_ID) ?? 0, cipherAlg: k.u32(OVPN_A_KEYCONF.CIPHER_ALG) ?? 0 };
    } catch (e) {
      if (e instanceof NetlinkError && e.nl.errno !== ENODEV) return null; // empty slot: ENOENT
      throw e;
    }
  }

  keySwap(peerId: number): void {
    const s = this.#seq();
    this.#req(keySwapRequest(this.family.id, s, this.ifindex, peerId), s, `KEY_SWAP (peer ${peerId})`);
  }

  keyDel(peerId: number, slot: KeySlotId): void {
    const s = this.#seq();
    this.#req(keyDelRequest(this.family.id, s, this.ifindex, peerId, slot), s, `KEY_DEL (peer ${peerId})`);
  }

  /** The interface's own counters and settings (RTM_GETLINK). */
  link(): LinkInfo | null {
    return linkByName(this.#rtnl, this.ifname);
  }

  /** Start handing this interface's `peers` notifications to `fn` (once). */
  listen(fn: (n: OvpnNotification) => void, onError: (e: Error) => void): void {
    if (this.#listener) return;
    const group = this.family.groups.get(OVPN_MCGRP_PEERS);
    if (group === undefined) {
      throw new DeviceError("the ovpn module offers no 'peers' notification group");
    }
    this.#listener = new NetlinkListener(group, (m) => {
      if (m.type !== this.family.id) return;
      const n = parseNotification(m.payload);
      if (n && n.ifindex === this.ifindex) fn(n);
    }, onError);
  }

  /** Stop listening, delete the interface (its peers go with it) and close the sockets. */
  async close(): Promise<void> {
    await this.#listener?.close();
    this.#listener = null;
    if (!this.#deleted) {
      this.#deleted = true;
      try {
        const s = this.#rtnl.nextSeq();
        this.#rtnl.request(delLinkRequest(this.ifindex, s), s, `deleting interface '${this.ifname}'`);
      } catch { /* already gone */ }
      this.#genl.close();
      this.#rtnl.close();
    }
  }
}

function linkByName(rtnl: NetlinkSocket, name: string): LinkInfo | null {
  const s = rtnl.nextSeq();
  try {
    const r = rtnl.request(getLinkRequest(name, s), s, `looking up interface '${name}'`);
    return r.length ? parseLink(r[0].payload) : null;
  } catch (e) {
    if (e instanceof NetlinkError && e.nl.errno === ENODEV) return null;
    throw e;
  }
}

/** Whether a running instance answers on the control socket of `ifname` (in this namespace). */
async function instanceAnswers(ifname: string): Promise<boolean> {
  try {
    const c = await Deno.connect({ transport: "unix", path: socketPath(ifname) });
    c.close();
    return true;
  } catch {
    return false;
  }
}

/** The index of an interface in this namespace (0: none). */
export function ifIndex(name: string): number {
  return libc().symbols.if_nametoindex(new TextEncoder().encode(name + "\0"));
}
