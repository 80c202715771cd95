/**
 * The processes `bench:server` (bench/server.ts) starts in its namespaces: many simulated clients from one
 * process, and what sets up and times the server through its control socket.
 *
 *   server_load keys FILE N                      write N peers' keys (AES-256-GCM, the server's direction)
 *   server_load setup IFNAME FILE N LOCAL REMOTE_IP BASE_PORT VPN_PREFIX
 *       (in the server's namespace) add N peers with their keys through the control socket, a few requests in
 *       flight at once; then time `peer.list` and `stats --all` (best of 3). Prints one JSON line.
 *   server_load gen FILE N SERVER BIND_IP BASE_PORT VPN_PREFIX DST SIZE SECONDS
 *       (in the clients' namespace) N clients, each its own UDP socket at BIND_IP:BASE_PORT+i and its own data
 *       channel, sending DATA_V2 packets round robin (an equal share each) that carry SIZE-byte IPv4/UDP
 *       packets from the client's VPN address to DST, for SECONDS. Prints how many went.
 *   server_load spray N VPN_PREFIX SIZE SECONDS
 *       (in the server's namespace) SIZE-byte UDP datagrams to the N clients' VPN addresses round robin, into
 *       the server's tun, for SECONDS. Prints how many went.
 *
 * Peer i (1..N) has VPN address VPN_PREFIX.(i >> 8).(i & 255) (VPN_PREFIX: the first two bytes, "10.91").
 * @module
 */
import { cipherByName } from "../crypto/aead.ts";
import { controlRequest, keyToWire } from "../driver/control.ts";
import { DataChannel, KeySlotId } from "../driver/datachannel/channel.ts";
import type { KeyMaterial } from "../driver/datachannel/keyslot.ts";
import { HEADROOM } from "../driver/datachannel/packet.ts";
import { parseIPv4 } from "../driver/uapi.ts";
import { AF_INET, libc, SOCK_DGRAM, sockaddr } from "../ffi/libc.ts";

const CIPHER = cipherByName("AES-256-GCM")!;
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => new Uint8Array(s.match(/../g)!.map((h) => parseInt(h, 16)));
const vpnIp = (prefix: string, i: number) => `${prefix}.${i >> 8}.${i & 255}`;

interface StoredKey {
  enc: string;
  dec: string;
  encTail: string;
  decTail: string;
}

/** Peer i's key as the server holds it (`server`) or as its client does (directions swapped). */
function material(k: StoredKey, server: boolean): KeyMaterial {
  const [e, d, et, dt] = server ? [k.enc, k.dec, k.encTail, k.decTail] : [k.dec, k.enc, k.decTail, k.encTail];
  return {
    cipher: CIPHER,
    keyId: 0,
    encryptKey: unhex(e),
    decryptKey: unhex(d),
    encryptNonceTail: unhex(et),
    decryptNonceTail: unhex(dt),
  };
}

const [mode, ...a] = Deno.args;
const L = () => libc().symbols;

if (mode === "keys") {
  const [file, n] = [a[0], Number(a[1])];
  const r = (len: number) => hex(crypto.getRandomValues(new Uint8Array(len)));
  const keys = Array.from({ length: n }, () => ({ enc: r(32), dec: r(32), encTail: r(8), decTail: r(8) }));
  Deno.writeTextFileSync(file, JSON.stringify(keys));
} else if (mode === "setup") {
  const [ifname, file, nText, local, remoteIp, basePort, prefix] = a;
  const n = Number(nText);
  const keys: StoredKey[] = JSON.parse(Deno.readTextFileSync(file));
  const [lAddr, lPort] = [
    local.slice(0, local.lastIndexOf(":")),
    Number(local.slice(local.lastIndexOf(":") + 1)),
  ];
  const t0 = performance.now();
  let next = 1;
  const worker = async () => {
    while (next <= n) {
      const i = next++;
      const r1 = await controlRequest(ifname, {
        cmd: "peer.new",
        proto: "udp",
        peerId: i,
        local: { address: lAddr, port: lPort },
        remote: { address: remoteIp, port: Number(basePort) + i },
        listen: false,
        vpnIps: [vpnIp(prefix, i)],
      });
      if (!r1.ok) throw new Error(`peer.new ${i}: ${r1.error}`);
      const r2 = await controlRequest(ifname, {
        cmd: "key.new",
        slot: 0,
        peerId: i,
        key: keyToWire(material(keys[i - 1], true)),
      });
      if (!r2.ok) throw new Error(`key.new ${i}: ${r2.error}`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  const addMs = performance.now() - t0;
  const best = async (req: Record<string, unknown>) => {
    let ms = Infinity, bytes = 0;
    for (let k = 0; k < 3; k++) {
      const s = performance.now();
      const r = await controlRequest(ifname, req as never);
      if (!r.ok) throw new Error(`${req.cmd}: ${r.error}`);
      ms = Math.min(ms, performance.now() - s);
      bytes = JSON.stringify(r).length;
    }
    return { ms, bytes };
  };
  const list = await best({ cmd: "peer.list" });
  const all = await best({ cmd: "stats", all: true });
  console.log(JSON.stringify({ addMs, listMs: list.ms, statsAllMs: all.ms, statsAllBytes: all.bytes }));
} else if (mode === "gen") {
  const [file, nText, server, bindIp, basePort, prefix, dst, sizeText, secs] = a;
  const n = Number(nText), size = Number(sizeText);
  const keys: StoredKey[] = JSON.parse(Deno.readTextFileSync(file));
  const sAddr = server.slice(0, server.lastIndexOf(":")),
    sPort = Number(server.slice(server.lastIndexOf(":") + 1));
  const to = sockaddr(parseIPv4(sAddr)!, sPort);
  const clients = Array.from({ length: n }, (_, k) => {
    const i = k + 1;
    const fd = L().socket(AF_INET, SOCK_DGRAM, 0);
    const sa = sockaddr(parseIPv4(bindIp)!, Number(basePort) + i);
    if (fd < 0 || L().bind(fd, sa, sa.length) !== 0) {
      throw new Error(`socket for client ${i} at port ${Number(basePort) + i}`);
    }
    const ch = new DataChannel({ peerId: i });
    ch.newKey(KeySlotId.PRIMARY, material(keys[k], false));
    // the inner packet: IPv4/UDP from the client's VPN address to DST:9, SIZE bytes in all
    const pkt = new Uint8Array(size);
    pkt.set([0x45, 0, size >> 8, size & 255, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    pkt.set(parseIPv4(vpnIp(prefix, i))!, 12);
    pkt.set(parseIPv4(dst)!, 16);
    let sum = 0;
    for (let j = 0; j < 20; j += 2) sum += (pkt[j] << 8) | pkt[j + 1];
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
    pkt[10] = (~sum >> 8) & 255;
    pkt[11] = ~sum & 255;
    pkt.set([0x9c, 0x40, 0, 9, (size - 20) >> 8, (size - 20) & 255, 0, 0], 20); // UDP, no checksum
    return { fd, ch, pkt };
  });
  const buf = new Uint8Array(HEADROOM + size + 64);
  const end = Date.now() + Number(secs) * 1000;
  let sent = 0;
  outer: for (;;) {
    for (const c of clients) {
      buf.set(c.pkt, HEADROOM);
      const start = c.ch.seal(buf, size);
      if (Number(L().sendto(c.fd, buf.subarray(start), BigInt(c.ch.sealEnd - start), 0, to, to.length)) > 0) {
        sent++;
      }
      if ((sent & 1023) === 0 && Date.now() >= end) break outer;
    }
    if (Date.now() >= end) break;
  }
  console.log(JSON.stringify({ sent }));
} else if (mode === "spray") {
  const [nText, prefix, sizeText, secs] = a;
  const n = Number(nText), size = Number(sizeText);
  const fd = L().socket(AF_INET, SOCK_DGRAM | 0o4000, 0); // non-blocking: a full buffer skips, never waits
  const dsts = Array.from({ length: n }, (_, k) => sockaddr(parseIPv4(vpnIp(prefix, k + 1))!, 9));
  const payload = new Uint8Array(size - 28);
  const end = Date.now() + Number(secs) * 1000;
  let sent = 0, tries = 0;
  outer: for (;;) {
    for (const d of dsts) {
      if (Number(L().sendto(fd, payload, BigInt(payload.length), 0, d, d.length)) > 0) sent++;
      if ((++tries & 1023) === 0 && Date.now() >= end) break outer;
    }
    if (Date.now() >= end) break;
  }
  console.log(JSON.stringify({ sent }));
} else {
  console.error("usage: server_load keys|setup|gen|spray ...");
  Deno.exit(2);
}
