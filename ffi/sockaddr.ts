/**
 * `struct sockaddr_in` / `sockaddr_in6` bytes, the same layout on Linux and Windows but for the family numbers
 * (AF_INET6 is 10 on Linux, 23 on Windows): family u16 little-endian, port big-endian, the IPv4 address at 4 or
 * the IPv6 address at 8 (flow info before, scope id after); 16 and 28 bytes.
 * @module
 */

/** The sockaddr of an IPv4 (4 bytes) or IPv6 (16 bytes) address and port, with the platform's families. */
export function encodeSockaddr(addr: Uint8Array, port: number, af4: number, af6: number): Uint8Array {
  const v6 = addr.length === 16;
  const b = new Uint8Array(v6 ? 28 : 16);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, v6 ? af6 : af4, true);
  dv.setUint16(2, port, false);
  b.set(addr, v6 ? 8 : 4);
  return b;
}

/** The address (4 or 16 bytes) and port of a sockaddr, or null for another family. */
export function decodeSockaddr(
  b: Uint8Array,
  af4: number,
  af6: number,
): { addr: Uint8Array; port: number } | null {
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const fam = dv.getUint16(0, true), port = dv.getUint16(2, false);
  if (fam === af4 && b.length >= 8) return { addr: b.slice(4, 8), port };
  if (fam === af6 && b.length >= 24) return { addr: b.slice(8, 24), port };
  return null;
}
