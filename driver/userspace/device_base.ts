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

  #tick() {
    if (!this.peer || this.endReason) return;
    const now = Date.now();
    const { interval, timeout } = this.keepalive;
    if (this.started && interval > 0 && now - this.stats.lastTx >= interval * 1000) {
      this.stats.lastTx = now; // refreshed again when the ping leaves
      this.sendPing();
    }
    if (timeout > 0 && now - this.stats.lastRx >= timeout * 1000) {
      this.end({
        kind: "expired",
        message: `keepalive timeout: nothing received from the peer for ${timeout} s`,
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

  peerInfo(): Record<string, unknown> {
    const p = this.peer;
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
