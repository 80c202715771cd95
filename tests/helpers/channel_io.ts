/**
 * Test helpers for the pure data channel: seal a payload into wire bytes, open wire bytes back, in either
 * format (DATA_V2 or epoch), through the channel's own buffer convention.
 * @module
 */
import { type DataChannel, RX_DROP, RX_KEEPALIVE } from "../../driver/datachannel/channel.ts";
import { HEADROOM, MAX_WIRE_LEN, TAILROOM } from "../../driver/datachannel/packet.ts";
import { assert } from "../assert.ts";

/** Seal `payload` on `ch`; the wire bytes (a copy). */
export function sealed(ch: DataChannel, payload: Uint8Array): Uint8Array {
  const buf = new Uint8Array(MAX_WIRE_LEN + HEADROOM + TAILROOM);
  buf.set(payload, HEADROOM);
  const start = ch.seal(buf, payload.length);
  assert(start >= 0, "seal failed");
  return buf.slice(start, ch.sealEnd);
}

/** Open wire bytes on `ch` (at an offset, as received packets often are): the plaintext, "keepalive" or "drop". */
export function opened(ch: DataChannel, wire: Uint8Array): Uint8Array | "keepalive" | "drop" {
  const buf = new Uint8Array(wire.length + 16);
  buf.set(wire, 16);
  const r = ch.open(buf, 16, wire.length);
  if (r === RX_DROP) return "drop";
  if (r === RX_KEEPALIVE) return "keepalive";
  return buf.slice(r, ch.openEnd);
}
