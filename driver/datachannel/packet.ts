/**
 * OpenVPN wire facts of the data channel: opcodes, the DATA_V2 header, overheads and the keepalive ping.
 *
 * @example
 * ```ts
 * import { isDataV2, OP_DATA_V2 } from "./packet.ts";
 * isDataV2(new Uint8Array([OP_DATA_V2 << 3, 0, 0, 0])); // true
 * ```
 * @module
 */

/** P_DATA_V2 opcode. */
export const OP_DATA_V2 = 9;
/** P_DATA_V1 opcode (not produced by this tool; handed up as control like the driver does). */
export const OP_DATA_V1 = 6;
/** Opcode shift in the first byte. */
export const OPCODE_SHIFT = 3;
/** Key id mask in the first byte. */
export const KEY_ID_MASK = 0x07;
/** op+peer_id (4) + packet_id (4). */
export const DATA_V2_HEADER_LEN = 8;
/** Overhead of an AEAD DATA_V2 packet: header + 16-byte tag. */
export const AEAD_OVERHEAD = 24;
/** Overhead of a NONE DATA_V2 packet. */
export const NONE_OVERHEAD = 8;
/** Epoch data format: op+peer_id (4) + 64-bit packet id (8), authenticated as additional data. */
export const EPOCH_HEADER_LEN = 12;
/** Overhead of an epoch-format packet: header + 16-byte tag at the end. */
export const EPOCH_OVERHEAD = EPOCH_HEADER_LEN + 16;
/** Room kept in front of a plaintext packet so the header (and a DATA_V2 tag) are written in place. */
export const HEADROOM = AEAD_OVERHEAD;
/** Room a sealing buffer needs after the plaintext (the epoch format's tag). */
export const TAILROOM = 16;
/** Largest wire packet accepted or produced (and the TCP framing buffer). */
export const MAX_WIRE_LEN = 2048;
/** Largest plaintext (tun) packet carried (in either format). */
export const MAX_PLAINTEXT_LEN = MAX_WIRE_LEN - EPOCH_OVERHEAD;
/** Largest peer id (24 bits). */
export const MAX_PEER_ID = 0xffffff;
/** Largest control packet the driver accepts on WriteFile. */
export const MAX_CONTROL_LEN = 1500;

/** OpenVPN's keepalive ping payload. */
export const KEEPALIVE_PING = new Uint8Array([
  0x2a,
  0x18,
  0x7b,
  0xf3,
  0x64,
  0x1e,
  0xb4,
  0xcb,
  0x07,
  0xed,
  0x2d,
  0x0a,
  0x98,
  0x1f,
  0xc7,
  0x48,
]);

/** Whether `p` is the keepalive ping. */
export function isKeepalive(p: Uint8Array, off = 0, len = p.length - off): boolean {
  if (len !== KEEPALIVE_PING.length) return false;
  for (let i = 0; i < len; i++) if (p[off + i] !== KEEPALIVE_PING[i]) return false;
  return true;
}

/** Whether the packet starting at `off` is DATA_V2 (everything else is a control packet). */
export function isDataV2(p: Uint8Array, off = 0, len = p.length - off): boolean {
  return len >= 1 && (p[off] >> OPCODE_SHIFT) === OP_DATA_V2;
}

/** Write the 8-byte DATA_V2 header at `off`. */
export function writeDataV2Header(
  p: Uint8Array,
  off: number,
  keyId: number,
  peerId: number,
  packetId: number,
) {
  p[off] = (OP_DATA_V2 << OPCODE_SHIFT) | (keyId & KEY_ID_MASK);
  p[off + 1] = (peerId >>> 16) & 0xff;
  p[off + 2] = (peerId >>> 8) & 0xff;
  p[off + 3] = peerId & 0xff;
  p[off + 4] = packetId >>> 24;
  p[off + 5] = (packetId >>> 16) & 0xff;
  p[off + 6] = (packetId >>> 8) & 0xff;
  p[off + 7] = packetId & 0xff;
}

/** Key id of a DATA packet. */
export function keyIdOf(p: Uint8Array, off = 0): number {
  return p[off] & KEY_ID_MASK;
}

/** Peer id (24 bits) of a DATA_V2 packet. */
export function peerIdOf(p: Uint8Array, off = 0): number {
  return (p[off + 1] << 16) | (p[off + 2] << 8) | p[off + 3];
}

/** Packet id of a DATA_V2 packet. */
export function packetIdOf(p: Uint8Array, off = 0): number {
  return ((p[off + 4] << 24) | (p[off + 5] << 16) | (p[off + 6] << 8) | p[off + 7]) >>> 0;
}
