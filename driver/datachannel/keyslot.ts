/**
 * Key slots: one keyed direction pair with its packet-id counter and replay window, and the
 * primary/secondary pair with dispatch by key id, swap and delete (as the driver's crypto context).
 *
 * @example
 * ```ts
 * import { KeySlots } from "./keyslot.ts";
 * const slots = new KeySlots();
 * slots.forKeyId(0); // undefined: no key installed
 * ```
 * @module
 */
import { type Aead, CipherAlg, type CipherInfo } from "../../crypto/aead.ts";
import { EPOCH_SECRET_LEN, EpochRecv, EpochSend } from "./epoch.ts";
import { PacketIdCounter, ReplayWindow } from "./pktid.ts";

/** Everything needed to install one key (the content of OVPN_CRYPTO_DATA minus slot and peer). */
export interface KeyMaterial {
  cipher: CipherInfo;
  keyId: number;
  encryptKey: Uint8Array;
  encryptNonceTail: Uint8Array;
  decryptKey: Uint8Array;
  decryptNonceTail: Uint8Array;
  /** First packet id to send (default 1; with epoch keys, the first counter of epoch 1). */
  firstPacketId?: number;
  /**
   * Epoch data format (OpenVPN 2.7 `aead-epoch`): `encryptKey`/`decryptKey` are the 32-byte initial epoch
   * secrets E1 of each direction; the data keys and IVs are derived from them (the nonce tails are unused).
   */
  epoch?: boolean;
}

/**
 * Why key material cannot be installed (null: it can): each direction's key has the cipher's length (an epoch
 * key's the 32 bytes of its secret), an AEAD's nonce tails 8 bytes, the key id 0-7. A short key would make the
 * AEAD fail on the first packet (or read past the buffer), so every way in checks this first.
 */
export function keyMaterialProblem(m: KeyMaterial): string | null {
  if (!Number.isInteger(m.keyId) || m.keyId < 0 || m.keyId > 7) return `key id ${m.keyId} is not 0-7`;
  if (m.cipher.keyLen === 0) return null; // NONE: no key bytes are used
  const want = m.epoch ? 32 : m.cipher.keyLen;
  const what = m.epoch ? "epoch secret" : `${m.cipher.name} key`;
  for (const [dir, k] of [["encrypt", m.encryptKey], ["decrypt", m.decryptKey]] as const) {
    if (k.length !== want) return `the ${dir} ${what} has ${k.length} bytes; it must have ${want}`;
  }
  if (!m.epoch) {
    for (const [dir, t] of [["encrypt", m.encryptNonceTail], ["decrypt", m.decryptNonceTail]] as const) {
      if (t.length !== 8) return `the ${dir} nonce tail has ${t.length} bytes; it must have 8`;
    }
  }
  return null;
}

/** An installed key. */
export class KeySlot {
  readonly cipher: CipherInfo;
  readonly keyId: number;
  readonly encrypt: Aead | null;
  readonly decrypt: Aead | null;
  /** 12-byte nonce buffers whose last 8 bytes hold the nonce tail; the first 4 are filled per packet. */
  readonly encNonce = new Uint8Array(12);
  readonly decNonce = new Uint8Array(12);
  readonly tx = new PacketIdCounter();
  #rx: ReplayWindow | null = null;
  #now?: () => number;
  /** The replay window, made on the first packet opened (a server's tx worker never opens one). */
  get rx(): ReplayWindow {
    return this.#rx ??= new ReplayWindow(this.#now);
  }
  /** Epoch data format: the sending and receiving ratchets (null for DATA_V2 keys). */
  readonly epochSend: EpochSend | null = null;
  readonly epochRecv: EpochRecv | null = null;
  /** Which NEW_KEY installed this slot (tells a stale epoch follow-up from a current one). */
  readonly generation: number;

  constructor(
    m: KeyMaterial,
    makeAead: (c: CipherInfo, key: Uint8Array) => Aead,
    now?: () => number,
    generation = 0,
  ) {
    this.cipher = m.cipher;
    this.keyId = m.keyId;
    this.generation = generation;
    this.#now = now;
    if (m.firstPacketId) this.tx.seek(m.firstPacketId);
    if (m.epoch && m.cipher.alg !== CipherAlg.NONE) {
      if (m.encryptKey.length < EPOCH_SECRET_LEN || m.decryptKey.length < EPOCH_SECRET_LEN) {
        throw new RangeError(`epoch keys need ${EPOCH_SECRET_LEN}-byte secrets`);
      }
      this.encrypt = this.decrypt = null;
      this.epochSend = new EpochSend(m.encryptKey, m.cipher, makeAead);
      if (m.firstPacketId) this.epochSend.counter = m.firstPacketId - 1;
      this.epochRecv = new EpochRecv(m.decryptKey, m.cipher, makeAead, { now });
      return;
    }
    if (m.cipher.alg === CipherAlg.NONE) {
      this.encrypt = this.decrypt = null;
    } else {
      this.encrypt = makeAead(m.cipher, m.encryptKey.subarray(0, m.cipher.keyLen));
      this.decrypt = makeAead(m.cipher, m.decryptKey.subarray(0, m.cipher.keyLen));
      this.encNonce.set(m.encryptNonceTail.subarray(0, 8), 4);
      this.decNonce.set(m.decryptNonceTail.subarray(0, 8), 4);
    }
  }

  /** Release the AEAD contexts. */
  close(): void {
    this.encrypt?.close();
    this.decrypt?.close();
    this.epochSend?.close();
    this.epochRecv?.close();
  }
}

/** Slot names of OVPN_KEY_SLOT. */
export const KeySlotId = { PRIMARY: 0, SECONDARY: 1 } as const;
export type KeySlotId = typeof KeySlotId[keyof typeof KeySlotId];

/** The primary and secondary slot. Encryption uses the primary; decryption picks by key id. */
export class KeySlots {
  primary: KeySlot | undefined;
  secondary: KeySlot | undefined;

  /** Install `slot` (closing what was there). */
  install(which: KeySlotId, slot: KeySlot): void {
    if (which === KeySlotId.PRIMARY) {
      this.primary?.close();
      this.primary = slot;
    } else {
      this.secondary?.close();
      this.secondary = slot;
    }
  }

  /** Exchange primary and secondary. */
  swap(): void {
    [this.primary, this.secondary] = [this.secondary, this.primary];
  }

  /** Remove a slot's key. */
  delete(which: KeySlotId): void {
    if (which === KeySlotId.PRIMARY) {
      this.primary?.close();
      this.primary = undefined;
    } else {
      this.secondary?.close();
      this.secondary = undefined;
    }
  }

  /** The slot holding `keyId`, primary first. */
  forKeyId(keyId: number): KeySlot | undefined {
    if (this.primary?.keyId === keyId) return this.primary;
    if (this.secondary?.keyId === keyId) return this.secondary;
    return undefined;
  }

  /** Remove both. */
  clear(): void {
    this.delete(KeySlotId.PRIMARY);
    this.delete(KeySlotId.SECONDARY);
  }
}
