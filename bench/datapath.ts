/**
 * `deno task bench:datapath`: the CPU the TCP row's data path spends per segment in JavaScript and libcrypto,
 * without the kernel and without a second process — one thread, the same functions the engines run:
 *
 * - send: a 64 KB TCP super-packet as the tun gives it (virtio_net_hdr GSO_TCPV4, partial checksum) split into
 *   1448-byte segments in 64 send slots (`splitSuperPacket`, checksums), each sealed (`DataChannel.seal`);
 * - receive: those wire packets laid out as UDP_GRO trains in a receive batch, each opened
 *   (`DataChannel.open`, replay window) and pushed into the `Coalescer` (checksums verified, joined into 64 KB
 *   super-packets whose write is counted, not made).
 *
 * The reference, measured in the same run: the bare AEAD (libcrypto AES-256-GCM) sealing and opening the same
 * segments in one fixed buffer — the floor no data path goes below. The figures are ns per segment and the
 * ratio to that floor; CPU-s/GB is the time of one GB of segments on this one thread.
 * `BENCH_SECONDS` (default 3) per stage and round, `BENCH_ROUNDS` (default 3): the best round counts.
 * @module
 */
import { cipherByName } from "../crypto/aead.ts";
import { availableProviders } from "../crypto/providers.ts";
import { loopbackChannels } from "./loopback_channels.ts";
import { wasmBytes } from "../driver/datachannel/csum.ts";
import {
  Coalescer,
  fold,
  GSO_TCPV4,
  parseVnetHdr,
  splitSuperPacket,
  sum16,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VNET_HDR_LEN,
} from "../driver/datachannel/gso.ts";
import { HEADROOM, MAX_PLAINTEXT_LEN } from "../driver/datachannel/packet.ts";

const seconds = Math.max(0.2, Number(Deno.env.get("BENCH_SECONDS") ?? "3"));
const rounds = Math.max(1, Math.round(Number(Deno.env.get("BENCH_ROUNDS") ?? "3")));
const MSS = 1448, IP = 20, TCP = 32, SEGS = 42;
const SLOT = HEADROOM + MAX_PLAINTEXT_LEN + 64;
const BATCH = 64, GRO_SLOT = 65536;

const cipher = cipherByName("AES-256-GCM")!;
const libcrypto = availableProviders().find((p) => p.name === "libcrypto");
if (!libcrypto) throw new Error("libcrypto is not available: nothing to measure");
const provider = libcrypto;
const key = new Uint8Array(32).fill(7);

/** The super-packet of one tun read: virtio_net_hdr + IPv4 + TCP (with timestamps) + SEGS × MSS bytes. */
function superPacket(): { buf: Uint8Array; len: number } {
  const buf = wasmBytes(VNET_HDR_LEN + 65536);
  const ipLen = IP + TCP + SEGS * MSS, p = VNET_HDR_LEN;
  buf.set([VIRTIO_NET_HDR_F_NEEDS_CSUM, GSO_TCPV4, IP + TCP, 0, MSS & 0xff, MSS >> 8, IP, 0, 16, 0]);
  buf.set([0x45, 0, ipLen >> 8, ipLen & 0xff, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2], p);
  const t = p + IP;
  buf.set([0x9c, 0x40, 0x14, 0x51, 0, 0, 0x10, 0, 0, 0, 0, 1, 0x80, 0x10, 0x01, 0xf5], t);
  buf.set([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], t + 20);
  for (let i = t + TCP; i < p + ipLen; i++) buf[i] = (i * 7919) >> 3;
  // the kernel leaves the pseudo-header sum in the TCP checksum field (NEEDS_CSUM)
  const f = fold(sum16(buf, p + 12, p + 20, 6 + TCP + MSS));
  buf[t + 16] = f >> 8;
  buf[t + 17] = f & 0xff;
  return { buf, len: ipLen };
}

interface Stage {
  ns: number;
  segments: number;
}

/** Run `step` (one unit of `per` segments) for `seconds`; ns per segment. */
function timed(step: () => void, per: number): Stage {
  for (let i = 0; i < 50; i++) step();
  let n = 0;
  const t0 = performance.now(), budget = seconds * 1000;
  let t = t0;
  while (t - t0 < budget) {
    for (let i = 0; i < 20; i++) step();
    n += 20;
    t = performance.now();
  }
  return { ns: ((t - t0) * 1e6) / (n * per), segments: n * per };
}

function measureDataPath(): { send: Stage; receive: Stage } {
  const { tx, rx } = loopbackChannels(provider, cipher);
  const sup = superPacket();
  const h = parseVnetHdr(sup.buf);
  const slots = wasmBytes(BATCH * SLOT);
  const slotViews = Array.from({ length: BATCH }, (_, i) => slots.subarray(i * SLOT, (i + 1) * SLOT));
  const out = { buf: slotViews[0], at: HEADROOM };
  const starts = new Int32Array(BATCH), lens = new Int32Array(BATCH);
  let filled = 0;
  const outFn = () => {
    out.buf = slotViews[filled];
    return out;
  };
  const done = (_i: number, size: number) => {
    const start = tx.seal(slotViews[filled], size);
    starts[filled] = start;
    lens[filled] = tx.sealEnd - start;
    filled = (filled + 1) % BATCH;
  };
  const send = () => {
    splitSuperPacket(sup.buf, VNET_HDR_LEN, sup.len, h, outFn, done);
  };
  const sendStage = timed(send, SEGS);

  // receive: each round seals SEGS fresh segments (untimed), lays them out as one UDP_GRO train per slot, then
  // times opening and coalescing them
  const batch = wasmBytes(BATCH * GRO_SLOT);
  let written = 0;
  const gro = new Coalescer((_b, len) => (written += len, true), () => {
    throw new Error("the coalescer lost packets");
  });
  let slot = 0, wire = 0;
  let opened = 0, ns = 0;
  const deadline = performance.now() + seconds * 1000 + 200;
  let warm = 0;
  while (performance.now() < deadline) {
    filled = 0;
    send();
    const base = slot * GRO_SLOT;
    let o = base;
    for (let i = 0; i < SEGS; i++) {
      batch.set(slotViews[i].subarray(starts[i], starts[i] + lens[i]), o);
      wire = lens[i];
      o += wire;
    }
    const t0 = performance.now();
    for (let i = 0, off = base; i < SEGS; i++, off += wire) {
      const r = rx.open(batch, off, wire);
      if (r < 0) throw new Error("a segment did not open");
      gro.push(batch, r, rx.openEnd - r);
    }
    gro.flush();
    const dt = performance.now() - t0;
    if (++warm > 50) {
      ns += dt * 1e6;
      opened += SEGS;
    }
    slot = (slot + 1) % BATCH;
  }
  if (gro.joined < opened) throw new Error("segments were not joined");
  return { send: sendStage, receive: { ns: ns / opened, segments: opened } };
}

/** The floor: the bare AEAD sealing / opening one segment's bytes in one fixed buffer. */
function measureAead(): { seal: Stage; open: Stage } {
  const aead = provider.create(cipher, key);
  const buf = new Uint8Array(HEADROOM + IP + TCP + MSS).fill(0x45);
  const nonce = new Uint8Array(12), aad = buf.subarray(0, 8), tag = buf.subarray(8, 24);
  const text = buf.subarray(HEADROOM);
  const seal = timed(() => aead.seal(nonce, aad, text, text, tag), 1);
  aead.seal(nonce, aad, text, text, tag);
  const copy = buf.slice();
  const open = timed(() => {
    buf.set(copy);
    if (!aead.open(nonce, aad, text, tag, text)) throw new Error("the reference did not open");
  }, 1);
  aead.close();
  return { seal, open };
}

const best = <T>(xs: T[], f: (x: T) => number) => xs.reduce((a, b) => (f(b) < f(a) ? b : a));
const results: { path: ReturnType<typeof measureDataPath>; aead: ReturnType<typeof measureAead> }[] = [];
for (let r = 0; r < rounds; r++) results.push({ aead: measureAead(), path: measureDataPath() });
const send = best(results.map((r) => r.path.send), (s) => s.ns).ns;
const receive = best(results.map((r) => r.path.receive), (s) => s.ns).ns;
const seal = best(results.map((r) => r.aead.seal), (s) => s.ns).ns;
const open = best(results.map((r) => r.aead.open), (s) => s.ns).ns;
const perGB = (ns: number) => (ns * 1e9) / (IP + TCP + MSS) / 1e9;
const line = (name: string, ns: number, ref: number) =>
  console.log(
    `${name.padEnd(36)} ${ns.toFixed(0).padStart(6)} ns/segment  ${perGB(ns).toFixed(2)} CPU-s/GB  ${
      (ns / ref).toFixed(2)
    }× the bare AEAD`,
  );
console.log(`AES-256-GCM, ${MSS}-byte TCP segments of 64 KB super-packets; best of ${rounds} × ${seconds} s`);
line("bare AEAD seal (reference)", seal, seal);
line("send: split + checksum + seal", send, seal);
line("bare AEAD open (reference)", open, open);
line("receive: open + replay + coalesce", receive, open);
console.log(
  `datapath-send: ${(send / seal).toFixed(2)} of the bare AEAD, datapath-receive: ${
    (receive / open).toFixed(2)
  }`,
);
