/**
 * What every userspace Device shares, whatever moves its packets (Linux workers, or the main-thread
 * loop used over WinTUN): the end-of-tunnel promise, the control-packet queue with one pending reader,
 * keepalive timing (ping after `interval` s without sending, expire after `timeout` s without receiving),
 * the bookkeeping of keys and peer settings, and `peerInfo`.
 * @module
 */
import { type DeviceEndReason, DeviceError, type PeerConfig } from "../device.ts";
import { ControlInbox } from "../tunnel_end.ts";
import type { SetPeer, Version } from "../uapi.ts";
import type { KeyMaterial, KeySlotId } from "../datachannel/keyslot.ts";
import type { SharedStats } from "./shared_stats.ts";
import type { Stats } from "../datachannel/stats.ts";
import { MAX_CONTROL_LEN } from "../datachannel/packet.ts";

/** The shared half of the userspace devices. */
export abstract class EngineDeviceBase {
  readonly configureAfterStart = false;
  abstract readonly backend: string;
  abstract readonly ifname: string;
  /** Counters, with `lastTx`/`lastRx` timestamps. */
  abstract readonly stats: SharedStats;
  protected peer: PeerConfig | null = null;
  protected peerId = 0;
  protected mss = 0;
  protected started = false;
  protected closed = false;
  protected keepalive = { interval: 0, timeout: 0 };
  #inbox = new ControlInbox();
  #keyIds: {
    primary?: number;
    secondary?: number;
    /** The cipher of the key in each slot (`peer get` shows the primary's). */
    primaryCipher?: string;
    secondaryCipher?: string;
    primaryEpoch?: boolean;
    secondaryEpoch?: boolean;
  } = {};
  #timer: ReturnType<typeof setInterval> | undefined;

  /** Resolves once, when the tunnel ends by itself. */
  get ended(): Promise<DeviceEndReason> {
    return this.#inbox.ended;
  }

  /** Why the tunnel ended, or null while it runs. */
  protected get endReason(): DeviceEndReason | null {
    return this.#inbox.reason;
  }

  /** Send one keepalive ping now. */
  protected abstract sendPing(): void;

  /** End the tunnel (once): resolves `ended`, fails pending control reads. */
  protected end(r: DeviceEndReason): void {
    this.#inbox.end(r);
  }

  protected requirePeer(): void {
    if (!this.peer) throw new DeviceError("no peer is configured; add one first (peer new)", "state");
  }

  protected requireNoPeer(): void {
    if (this.closed) throw new DeviceError("the device is closed", "state");
    if (this.peer) throw new DeviceError("a peer is already configured; delete it first (peer del)", "state");
  }

  /** Start the keepalive timer (after NEW_PEER). */
  protected startTimer(): void {
    this.stats.lastRx = this.stats.lastTx = Date.now();
    this.#timer = setInterval(() => this.#tick(), 250);
  }

  protected stopTimer(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Where the diagnosis of refused packets is said (once per bad spell). */
  protected abstract note(line: string): void;

  #diag = new RefusalWatch();

  #tick() {
    if (!this.peer || this.endReason) return;
    const now = Date.now();
    const { interval, timeout } = this.keepalive;
    if (this.started && interval > 0 && now - this.stats.lastTx >= interval * 1000) {
      this.stats.lastTx = now; // refreshed again when the ping leaves
      this.sendPing();
    }
    const said = this.#diag.check(now, this.stats.ReceivedDataPackets, this.stats.drops());
    if (said) this.note(said);
    if (timeout > 0 && now - this.stats.lastRx >= timeout * 1000) {
      const why = this.#diag.current(this.stats.drops());
      this.end({
        kind: "expired",
        message: why
          ? `keepalive timeout: nothing authentic received from the peer for ${timeout} s, while ${why}`
          : `keepalive timeout: nothing received from the peer for ${timeout} s`,
      });
    }
  }

  /** A control packet arrived. */
  protected pushControl(p: Uint8Array): void {
    if (this.#inbox.push(p)) return;
    this.stats.LostInControlPackets++;
    this.stats.countDrop("queue-full");
  }

  readControl(): Promise<Uint8Array> {
    return this.#inbox.read();
  }

  /** Check a control packet to send (1..1500 bytes) and a peer; returns a copy. */
  protected checkControl(p: Uint8Array): Uint8Array {
    this.requirePeer();
    if (p.length === 0 || p.length > MAX_CONTROL_LEN) {
      throw new DeviceError(
        `a control packet must have 1 to ${MAX_CONTROL_LEN} bytes, not ${p.length}`,
        "state",
      );
    }
    return p.slice();
  }

  protected noteKey(slot: KeySlotId, key: KeyMaterial): void {
    const epoch = !!key.epoch && key.cipher.keyLen > 0;
    const k = this.#keyIds;
    if (slot === 0) [k.primary, k.primaryEpoch, k.primaryCipher] = [key.keyId, epoch, key.cipher.name];
    else [k.secondary, k.secondaryEpoch, k.secondaryCipher] = [key.keyId, epoch, key.cipher.name];
  }

  protected noteSwap(): void {
    const { primary, secondary, primaryEpoch, secondaryEpoch, primaryCipher, secondaryCipher } = this.#keyIds;
    Object.assign(this.#keyIds, { primary: secondary, secondary: primary });
    Object.assign(this.#keyIds, { primaryEpoch: secondaryEpoch, secondaryEpoch: primaryEpoch });
    Object.assign(this.#keyIds, { primaryCipher: secondaryCipher, secondaryCipher: primaryCipher });
  }

  protected noteDelKey(slot: KeySlotId): void {
    const k = this.#keyIds;
    if (slot === 0) delete k.primary, delete k.primaryEpoch, delete k.primaryCipher;
    else delete k.secondary, delete k.secondaryEpoch, delete k.secondaryCipher;
  }

  /**
   * A key must be in `slot` for `verb`: swapping with an empty secondary slot would leave no primary key (all
   * traffic would stop), and deleting an empty slot does nothing the user meant.
   */
  protected requireKeyIn(slot: KeySlotId, verb: "swap" | "delete"): void {
    if ((slot === 0 ? this.#keyIds.primary : this.#keyIds.secondary) !== undefined) return;
    throw new DeviceError(
      verb === "swap"
        ? "the secondary slot is empty, so a swap would leave no primary key; install the next key there first ('key new ... --slot secondary')"
        : `the ${slot === 0 ? "primary" : "secondary"} slot is empty; nothing to delete`,
      "state",
    );
  }

  /** The primary key must be an epoch key (for `nextEpoch`). */
  protected requireEpochKey(): void {
    this.requirePeer();
    if (this.#keyIds.primary === undefined) {
      throw new DeviceError("no primary key is installed; add one with 'key new ... --epoch'", "state");
    }
    if (!this.#keyIds.primaryEpoch) {
      throw new DeviceError(
        "the primary key does not use epoch data keys; install one with 'key new ... --epoch'",
        "state",
      );
    }
  }

  /** The primary key's send and receive epoch (null: not an epoch key). */
  protected abstract epochs(): { send: number; recv: number } | null;

  /** Move the primary key's sender to the next epoch now (epoch keys only). */
  abstract nextEpoch(): Promise<void>;

  /** Apply SET_PEER's keepalive fields (-1: unchanged); returns the new MSS, or -1 when unchanged. */
  protected noteSetPeer(p: SetPeer): number {
    this.requirePeer();
    if (p.keepaliveInterval >= 0) this.keepalive.interval = p.keepaliveInterval;
    if (p.keepaliveTimeout >= 0) this.keepalive.timeout = p.keepaliveTimeout;
    if (p.mss >= 0) this.mss = p.mss;
    return p.mss;
  }

  /** Forget the peer (DEL_PEER). */
  protected notePeerGone(): void {
    this.stopTimer();
    this.peer = null;
    this.started = false;
    this.#keyIds = {};
  }

  getStats(): Promise<Stats> {
    return Promise.resolve(this.stats.snapshot());
  }

  getVersion(): Promise<Version | null> {
    return Promise.resolve(null);
  }

  /** Datagrams the kernel dropped at the UDP transport socket, or -1 where it does not say (io_linux.ts). */
  protected socketDrops(): number {
    return -1;
  }

  peerInfo(): Record<string, unknown> {
    const p = this.peer;
    const k = this.socketDrops();
    if (k >= 0) this.stats.setDrop("kernel-socket", k);
    return {
      backend: this.backend,
      ifname: this.ifname,
      peer: p
        ? { proto: p.proto, local: p.local, remote: p.remote, listen: !!p.listen, peerId: this.peerId }
        : null,
      keepaliveInterval: this.keepalive.interval,
      keepaliveTimeout: this.keepalive.timeout,
      mss: this.mss,
      started: this.started,
      cipher: this.#keyIds.primaryCipher ?? null,
      primaryKeyId: this.#keyIds.primary ?? null,
      secondaryKeyId: this.#keyIds.secondary ?? null,
      epoch: this.epochs(),
      drops: this.stats.drops(),
      offload: this.stats.offload(),
      udpOffload: this.stats.udpOffload(),
    };
  }
}

/** The drop reasons that mean "the peer is there, but something in the configurations differs". */
const MISMATCH: Record<string, string> = {
  "bad-tag":
    "fail authentication: both ends need the same key file with opposite --key-direction (0 on one end, 1 on the other) and the same --cipher",
  "wrong-peer": "carry another peer id: give both ends the same --peer-id",
  "unknown-key-id": "use a key id this end has no key for: give both ends the same --key-id",
};

/**
 * Authentic packets whose ids the replay window refuses while none gets through: the peer started over with
 * the same key (a restart), so its packet ids began again at 1. Never accepted; said once.
 */
const RESTART =
  "are authentic but reuse packet ids this end has seen: the peer restarted with the same key. Restart this end too, or move both ends to a new key ('key new' with another --key-id, then 'key swap')";
const RESTART_REASONS = ["replay", "too-old", "expired"];

/**
 * Watches for packets that arrive from the peer and are refused for a reason that points at a configuration
 * mismatch, while nothing gets through: after 2 s of that it says once which reason and what to check; a
 * packet that gets through ends the spell (and a later one is said again).
 */
export class RefusalWatch {
  #received = -1;
  #base: Record<string, number> = {};
  #since = 0;
  #said = false;

  /** A line to say now, or null. */
  check(now: number, received: number, drops: Record<string, number>): string | null {
    if (received !== this.#received) {
      this.#received = received;
      this.#base = { ...drops };
      this.#since = 0;
      this.#said = false;
      return null;
    }
    const why = this.current(drops);
    if (!why) return null;
    if (!this.#since) this.#since = now;
    if (this.#said || now - this.#since < 2000) return null;
    this.#said = true;
    return `nothing from the peer gets through: ${why}`;
  }

  /** What is being refused since the last packet that got through, or null. */
  current(drops: Record<string, number>): string | null {
    let best: string | null = null, n = 0;
    for (const r of Object.keys(MISMATCH)) {
      const d = (drops[r] ?? 0) - (this.#base[r] ?? 0);
      if (d > n) [best, n] = [r, d];
    }
    let replays = 0;
    for (const r of RESTART_REASONS) replays += (drops[r] ?? 0) - (this.#base[r] ?? 0);
    // a sustained run of replays (not a few duplicates on the path) with nothing getting through
    if (replays >= 10 && replays > n) return `${replays} of its packets ${RESTART}`;
    return best && n >= 3 ? `${n} of its packets ${MISMATCH[best]} (${best})` : null;
  }
}
