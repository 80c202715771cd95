/**
 * MSS clamping of TCP SYN packets (IPv4 and IPv6) with an incremental checksum update (RFC 1624),
 * as the driver's mss.cpp does in both directions.
 *
 * @example
 * ```ts
 * import { clampMss } from "./mss.ts";
 * // clampMss(packet, 0, packet.length, 1360) rewrites a larger MSS option in place
 * ```
 * @module
 */

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** Clamp the MSS option of the TCP header at `tcp` (within `end`). Returns true if changed. */
function clampTcp(p: Uint8Array, tcp: number, end: number, mss: number): boolean {
  if (tcp + 20 > end) return false;
  if ((p[tcp + 13] & 0x02) === 0) return false; // not SYN
  const hdrLen = (p[tcp + 12] >> 4) * 4;
  if (hdrLen < 20 || tcp + hdrLen > end) return false;
  let i = tcp + 20;
  const optEnd = tcp + hdrLen;
  while (i < optEnd) {
    const kind = p[i];
    if (kind === 0) break;
    if (kind === 1) {
      i++;
      continue;
    }
    if (i + 1 >= optEnd) break;
    const olen = p[i + 1];
    if (olen < 2 || i + olen > optEnd) break;
    if (kind === 2 && olen === 4) {
      const old = (p[i + 2] << 8) | p[i + 3];
      if (old <= mss) return false;
      p[i + 2] = mss >> 8;
      p[i + 3] = mss & 0xff;
      // RFC 1624: HC' = ~(~HC + ~m + m')
      const hc = (p[tcp + 16] << 8) | p[tcp + 17];
      const sum = fold((~hc & 0xffff) + (~old & 0xffff) + mss);
      const nc = ~sum & 0xffff;
      p[tcp + 16] = nc >> 8;
      p[tcp + 17] = nc & 0xff;
      return true;
    }
    i += olen;
  }
  return false;
}

/**
 * Clamp the MSS of the IP packet at `p[off .. off+len]` to `mss` if it is a TCP SYN carrying a larger
 * MSS. `mss <= 0` does nothing. Returns true when the packet was changed.
 */
export function clampMss(p: Uint8Array, off: number, len: number, mss: number): boolean {
  if (mss <= 0 || len < 1) return false;
  const end = off + len;
  const version = p[off] >> 4;
  if (version === 4) {
    if (len < 20 || p[off + 9] !== 6) return false;
    if (((p[off + 6] & 0x1f) | p[off + 7]) !== 0) return false; // fragment
    const ihl = (p[off] & 0x0f) * 4;
    if (ihl < 20) return false;
    return clampTcp(p, off + ihl, end, mss);
  }
  if (version === 6) {
    if (len < 40 || p[off + 6] !== 6) return false;
    return clampTcp(p, off + 40, end, mss);
  }
  return false;
}
