/**
 * An impaired path for the tests (this kernel has no netem): a relay between a tunnel's two ends that drops,
 * duplicates, reorders, corrupts and delays the packets it carries, each with a seeded pseudo-random choice,
 * and counts what it did. Run in a namespace the test made:
 *
 *   impair CONFIG_FILE
 *
 * CONFIG_FILE (JSON) names the transport and the addresses, and the impairments; it is read again whenever it
 * changes, so a test can change the path while traffic flows (30 % loss for 10 s, a cut, a clean path again):
 *
 *   { "proto": "udp" | "tcp",
 *     "front": "IP:PORT",     where the near end sends (UDP) or connects (TCP)
 *     "back": "IP:PORT",      UDP: the relay's address towards the far end (the far end's --remote);
 *                             TCP: the address the relay connects from (port 0: any)
 *     "upstream": "IP:PORT",  the far end
 *     "stats": "FILE",        written with the counts every 200 ms and at exit
 *     "seed": N,
 *     "drop": P, "dup": P, "corrupt": P, "reorder": P, "window": N, "delayMs": N, "cut": false }
 *
 * At most one impairment per packet (so the tunnel's own counts can be checked against these): a dropped packet
 * is gone; a duplicated one is sent twice, back to back; a corrupted one has one byte of its last 16 (the AEAD
 * tag) flipped; a reordered one is held back until 1..window-1 later packets of its direction went (or 5 ms
 * passed). `cut` drops everything. Over TCP the relay keeps OpenVPN's framing (2-byte length) and impairs whole
 * packets. Prints "relay ready" once it listens.
 * @module
 */
import net from "node:net";

interface Config {
  proto: "udp" | "tcp";
  front: string;
  back: string;
  upstream: string;
  stats: string;
  seed?: number;
  drop?: number;
  dup?: number;
  corrupt?: number;
  reorder?: number;
  window?: number;
  delayMs?: number;
  cut?: boolean;
}

const file = Deno.args[0];
let cfg: Config = JSON.parse(Deno.readTextFileSync(file));
let mtime = Deno.statSync(file).mtime?.getTime() ?? 0;
const split = (ep: string) => {
  const i = ep.lastIndexOf(":");
  return { host: ep.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(ep.slice(i + 1)) };
};

/** mulberry32: a small seeded generator (the same seed, the same choices for the same packets). */
let seed = (cfg.seed ?? 1) >>> 0;
const rand = () => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

type Counts = {
  packets: number;
  forwarded: number;
  dropped: number;
  duplicated: number;
  corrupted: number;
  reordered: number;
  cut: number;
};
const newCounts = (): Counts => ({
  packets: 0,
  forwarded: 0,
  dropped: 0,
  duplicated: 0,
  corrupted: 0,
  reordered: 0,
  cut: 0,
});
const counts = { toUpstream: newCounts(), toFront: newCounts() };

/** One direction of the path: impairs each packet and hands what goes on to `out` (after the delay). */
class Direction {
  #held: { pkt: Uint8Array; after: number; since: number }[] = [];
  #delayed: { pkt: Uint8Array; at: number }[] = [];
  constructor(readonly c: Counts, readonly out: (pkt: Uint8Array) => void) {}

  packet(pkt: Uint8Array): void {
    const c = this.c;
    c.packets++;
    if (cfg.cut) {
      c.cut++;
      return;
    }
    const r = rand();
    let edge = cfg.drop ?? 0;
    if (r < edge) {
      c.dropped++;
      return this.#released();
    }
    if (r < (edge += cfg.dup ?? 0)) {
      c.duplicated++;
      this.#emit(pkt);
      this.#emit(pkt.slice());
      return this.#released();
    }
    if (r < (edge += cfg.corrupt ?? 0) && pkt.length >= 24) {
      c.corrupted++;
      const bad = pkt.slice();
      bad[bad.length - 1 - Math.floor(rand() * 16)] ^= 1 + Math.floor(rand() * 255);
      this.#emit(bad);
      return this.#released();
    }
    if (r < (edge += cfg.reorder ?? 0) && (cfg.window ?? 0) > 1) {
      c.reordered++;
      this.#held.push({ pkt, after: 1 + Math.floor(rand() * ((cfg.window ?? 2) - 1)), since: Date.now() });
      return;
    }
    this.#emit(pkt);
    this.#released();
  }

  /** One more packet went: held packets whose turn came go now (after it, so out of order). */
  #released(): void {
    if (!this.#held.length) return;
    const keep = [];
    for (const h of this.#held) {
      if (--h.after <= 0) this.#emit(h.pkt);
      else keep.push(h);
    }
    this.#held = keep;
  }

  /** Held packets that waited 5 ms go anyway; delayed packets whose time came go. */
  tick(now: number): void {
    if (this.#held.length) {
      const keep = [];
      for (const h of this.#held) {
        if (now - h.since >= 5) this.#emit(h.pkt);
        else keep.push(h);
      }
      this.#held = keep;
    }
    while (this.#delayed.length && this.#delayed[0].at <= now) this.#send(this.#delayed.shift()!.pkt);
  }

  #emit(pkt: Uint8Array): void {
    const d = cfg.delayMs ?? 0;
    if (d > 0) this.#delayed.push({ pkt, at: Date.now() + d });
    else this.#send(pkt);
  }

  #send(pkt: Uint8Array): void {
    this.c.forwarded++;
    this.out(pkt);
  }
}

const dirs: Direction[] = [];
const timer = setInterval(() => {
  const now = Date.now();
  for (const d of dirs) d.tick(now);
}, 2);
const writeStats = () => Deno.writeTextFileSync(cfg.stats, JSON.stringify(counts));
const statsTimer = setInterval(() => {
  writeStats();
  try {
    const m = Deno.statSync(file).mtime?.getTime() ?? 0;
    if (m !== mtime) {
      mtime = m;
      cfg = { ...cfg, ...JSON.parse(Deno.readTextFileSync(file)) };
    }
  } catch { /* being rewritten: next time */ }
}, 200);
const stop = () => {
  clearInterval(timer);
  clearInterval(statsTimer);
  writeStats();
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);

const front = split(cfg.front), back = split(cfg.back), up = split(cfg.upstream);

if (cfg.proto === "udp") {
  // Deno's own UDP sockets (run with --unstable-net): node:dgram here delivered a few hundred datagrams a second
  const fs = Deno.listenDatagram({ hostname: front.host, port: front.port, transport: "udp" });
  const bs = Deno.listenDatagram({ hostname: back.host, port: back.port, transport: "udp" });
  let near: Deno.NetAddr | null = null;
  const upAddr: Deno.NetAddr = { transport: "udp", hostname: up.host, port: up.port };
  const toUp = new Direction(counts.toUpstream, (p) => void bs.send(p, upAddr).catch(() => {}));
  const toFront = new Direction(counts.toFront, (p) => void (near && fs.send(p, near).catch(() => {})));
  dirs.push(toUp, toFront);
  (async () => {
    for await (const [m, from] of fs) {
      near = from as Deno.NetAddr;
      toUp.packet(m);
    }
  })();
  (async () => {
    for await (const [m, from] of bs) {
      if ((from as Deno.NetAddr).port !== up.port) continue; // only the far end
      toFront.packet(m);
    }
  })();
  console.log("relay ready");
} else {
  /** Whole OpenVPN TCP packets out of a stream, each handed over with its 2-byte length. */
  const deframer = (each: (framed: Uint8Array) => void) => {
    let buf = new Uint8Array(0);
    return (chunk: Uint8Array) => {
      const all = new Uint8Array(buf.length + chunk.length);
      all.set(buf);
      all.set(chunk, buf.length);
      let off = 0;
      while (all.length - off >= 2) {
        const len = (all[off] << 8) | all[off + 1];
        if (all.length - off < 2 + len) break;
        each(all.slice(off, off + 2 + len));
        off += 2 + len;
      }
      buf = all.slice(off);
    };
  };
  /** Impair the packet of a framed one (the length stays right; a corrupted byte is never in it). */
  const framedDirection = (c: Counts, sock: net.Socket) => {
    const d = new Direction(c, (p) => sock.write(p));
    dirs.push(d);
    return d;
  };
  const server = net.createServer((client) => {
    const upstream = net.connect({
      host: up.host,
      port: up.port,
      localAddress: back.host,
      ...(back.port ? { localPort: back.port } : {}),
    });
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const toUp = framedDirection(counts.toUpstream, upstream);
    const toFront = framedDirection(counts.toFront, client);
    client.on("data", deframer((f) => toUp.packet(f)));
    upstream.on("data", deframer((f) => toFront.packet(f)));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  });
  server.listen(front.port, front.host, () => console.log("relay ready"));
}
