/**
 * What the userspace engines' unit tests share: key material for a pair of ends, fake IPv4 packets, an
 * in-memory PacketTun and a bounded wait on a socket.
 * @module
 */
import dgram from "node:dgram";
import { cipherByName } from "../../crypto/aead.ts";
import { libc, MSG_DONTWAIT } from "../../ffi/libc.ts";
import type { KeyMaterial } from "../datachannel/keyslot.ts";

export function material(cipher: string, dir: 0 | 1, keyId = 0, seed = 1): KeyMaterial {
  const c = cipherByName(cipher)!;
  const a = new Uint8Array(32).fill(seed), b = new Uint8Array(32).fill(seed + 1);
  const t1 = new Uint8Array(8).fill(7), t2 = new Uint8Array(8).fill(8);
  return {
    cipher: c,
    keyId,
    encryptKey: (dir ? b : a).slice(0, c.keyLen),
    decryptKey: (dir ? a : b).slice(0, c.keyLen),
    encryptNonceTail: dir ? t2 : t1,
    decryptNonceTail: dir ? t1 : t2,
  };
}

/** A fake IPv4 packet of `len` bytes with a marker. */
export function packet(len: number, mark: number): Uint8Array {
  const p = new Uint8Array(len).fill(mark);
  p[0] = 0x45;
  p[9] = 17;
  return p;
}

export async function recvWithin(fd: number, ms: number): Promise<Uint8Array | null> {
  const buf = new Uint8Array(4096);
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const n = Number(libc().symbols.recv(fd, buf, BigInt(buf.length), MSG_DONTWAIT));
    if (n > 0) return buf.slice(0, n);
    await new Promise((r) => setTimeout(r, 5));
  }
  return null;
}

/** A port on 127.0.0.1 that was free a moment ago (for a device that binds its own). */
export async function freePort(proto: "udp" | "tcp"): Promise<number> {
  if (proto === "tcp") {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    return port;
  }
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A fake IPv4 packet of `len` bytes to `dst` (a dotted quad), its payload filled with `mark`. */
export function packetTo(dst: string, len: number, mark: number): Uint8Array {
  const p = packet(len, mark);
  p.set(dst.split(".").map(Number), 16);
  return p;
}
