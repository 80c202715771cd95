/**
 * The benchmarks' data channel pair: one key both ways (the sealing and the opening channel are the two ends'
 * same direction), made with a chosen AEAD provider.
 * @module
 */
import type { AeadProvider, CipherInfo } from "../crypto/aead.ts";
import { DataChannel, KeySlotId } from "../driver/datachannel/channel.ts";

/** A sealing and an opening channel keyed alike with `cipher` through `provider`. */
export function loopbackChannels(
  provider: AeadProvider,
  cipher: CipherInfo,
  epoch = false,
): { tx: DataChannel; rx: DataChannel } {
  const makeAead = (c: CipherInfo, k: Uint8Array) => provider.create(c, k);
  const key = new Uint8Array(32).fill(9), tail = new Uint8Array(8).fill(1);
  const m = {
    cipher,
    keyId: 0,
    encryptKey: key,
    decryptKey: key,
    encryptNonceTail: tail,
    decryptNonceTail: tail,
    epoch,
  };
  const tx = new DataChannel({ makeAead }), rx = new DataChannel({ makeAead });
  tx.newKey(KeySlotId.PRIMARY, m);
  rx.newKey(KeySlotId.PRIMARY, m);
  return { tx, rx };
}
