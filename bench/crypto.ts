/**
 * `deno task bench`: seal+open throughput of the data channel per cipher and provider, for 64-byte and
 * 1400-byte packets, measured side by side with `openssl speed -evp` in the same run (single core).
 * Epoch data keys (OpenVPN 2.7) are measured beside DATA_V2 for AES-256-GCM with the fastest provider:
 * `aes-256-gcm-epoch-1400: <ratio> of DATA_V2`. The last line is `aes-256-gcm-1400: <ratio> of openssl`
 * (best provider / openssl).
 *
 * openssl's figure is made comparable: one packet costs one encryption plus one decryption, so its
 * seal+open rate is 1 / (1/enc + 1/dec) from `openssl speed -evp C -bytes N` and the same with `-decrypt`.
 * @module
 */
import { AEAD_CIPHERS, type CipherInfo } from "../crypto/aead.ts";
import { availableProviders } from "../crypto/providers.ts";
import { loopbackChannels } from "./loopback_channels.ts";
import { HEADROOM, TAILROOM } from "../driver/datachannel/packet.ts";

const SIZES = [64, 1400];
const seconds = Math.max(1, Math.round(Number(Deno.env.get("BENCH_SECONDS") ?? "1")));
/** Rounds per measurement; the best round counts (the machines are noisy, and noise only slows). */
const rounds = Math.max(1, Math.round(Number(Deno.env.get("BENCH_ROUNDS") ?? "2")));

async function bestOf(f: () => Promise<number>, n: number): Promise<number> {
  let b = 0;
  for (let i = 0; i < n; i++) b = Math.max(b, await f());
  return b;
}

/** seal+open packets per second through a DataChannel pair using `provider`. */
function measure(
  providerName: string,
  cipher: CipherInfo,
  size: number,
  budgetMs: number,
  epoch = false,
): number {
  const provider = availableProviders().find((p) => p.name === providerName)!;
  const { tx, rx } = loopbackChannels(provider, cipher, epoch);
  const buf = new Uint8Array(HEADROOM + size + TAILROOM).fill(0x45, HEADROOM);
  const start = tx.seal(buf, size), wireLen = tx.sealEnd - start; // the same for every packet
  // warm up
  for (let i = 0; i < 2000; i++) rx.open(buf, tx.seal(buf, size), wireLen);
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < budgetMs) {
    for (let i = 0; i < 256; i++) {
      if (rx.open(buf, tx.seal(buf, size), wireLen) < 0) throw new Error("bench packet refused");
    }
    n += 256;
    t = performance.now();
  }
  tx.close();
  rx.close();
  return n / ((t - t0) / 1000);
}

/** openssl's seal+open packets/s for `cipher` at `size` bytes, or NaN when openssl is missing. */
async function opensslRate(cipher: CipherInfo, size: number): Promise<number> {
  const rate = async (decrypt: boolean) => {
    const args = [
      "speed",
      "-mr",
      "-seconds",
      String(seconds),
      "-bytes",
      String(size),
      ...(decrypt ? ["-decrypt"] : []),
      "-evp",
      cipher.lower,
    ];
    try {
      const out = await new Deno.Command("openssl", { args, stdout: "piped", stderr: "piped" }).output();
      const line = new TextDecoder().decode(out.stdout).split("\n").find((l) => l.startsWith("+F:"));
      return line ? Number(line.split(":").pop()) / size : NaN; // bytes/s → packets/s
    } catch {
      return NaN;
    }
  };
  const enc = await rate(false), dec = await rate(true);
  return 1 / (1 / enc + 1 / dec);
}

/** Run one measurement in a fresh process, as a real tunnel runs one provider per process. */
async function measureIsolated(
  provider: string,
  cipher: CipherInfo,
  size: number,
  budgetMs: number,
  epoch = false,
): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(import.meta.url).pathname,
      "--one",
      provider,
      cipher.name,
      String(size),
      String(budgetMs),
      epoch ? "epoch" : "v2",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`bench worker for ${provider} ${cipher.name} failed`);
  return Number(new TextDecoder().decode(out.stdout).trim());
}

if (Deno.args[0] === "--one") {
  const [, provider, name, size, budget, format] = Deno.args;
  console.log(
    measure(
      provider,
      AEAD_CIPHERS.find((c) => c.name === name)!,
      Number(size),
      Number(budget),
      format === "epoch",
    ),
  );
  Deno.exit(0);
}

const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : "n/a");
const gbit = (pps: number, size: number) => (pps * size * 8) / 1e9;

console.log(
  `seal+open per packet, single core, best of ${rounds} rounds of ${seconds}s (BENCH_ROUNDS, BENCH_SECONDS)`,
);
console.log(
  ["cipher", "bytes", "provider", "packets/s", "Gbit/s", "vs openssl"].map((s) => s.padEnd(18)).join(""),
);
let headline = NaN;
for (const cipher of AEAD_CIPHERS) {
  for (const size of SIZES) {
    const ref = await bestOf(() => opensslRate(cipher, size), rounds);
    console.log(
      [cipher.lower, String(size), "openssl speed", fmt(ref), fmt(gbit(ref, size), 2), "1.00"].map((s) =>
        s.padEnd(18)
      ).join(""),
    );
    let best = 0;
    for (const p of availableProviders()) {
      if (!p.supports(cipher)) continue;
      const budget = p.name === "portable" ? Math.min(300, seconds * 1000) : seconds * 1000;
      const pps = await bestOf(
        () => measureIsolated(p.name, cipher, size, budget),
        p.name === "portable" ? 1 : rounds,
      );
      best = Math.max(best, pps);
      console.log(
        [cipher.lower, String(size), p.name, fmt(pps), fmt(gbit(pps, size), 2), fmt(pps / ref, 2)].map((s) =>
          s.padEnd(18)
        ).join(""),
      );
    }
    if (cipher.lower === "aes-256-gcm" && size === 1400) headline = best / ref;
  }
}

// epoch data keys beside DATA_V2: same cipher, same (fastest) provider, measured alternately
const aes256 = AEAD_CIPHERS.find((c) => c.name === "AES-256-GCM")!;
const fastest = availableProviders().find((p) => p.supports(aes256))!.name;
let epochRatio = NaN;
for (const size of SIZES) {
  let v2 = 0, ep = 0;
  for (let i = 0; i < rounds; i++) {
    v2 = Math.max(v2, await measureIsolated(fastest, aes256, size, seconds * 1000));
    ep = Math.max(ep, await measureIsolated(fastest, aes256, size, seconds * 1000, true));
  }
  for (const [label, pps] of [["aes-256-gcm", v2], ["aes-256-gcm-epoch", ep]] as const) {
    console.log(
      [label, String(size), fastest, fmt(pps), fmt(gbit(pps, size), 2), fmt(pps / v2, 2) + " of v2"].map((
        s,
      ) => s.padEnd(18)).join(""),
    );
  }
  if (size === 1400) epochRatio = ep / v2;
}
console.log(`aes-256-gcm-epoch-1400: ${fmt(epochRatio, 2)} of DATA_V2`);
console.log(`aes-256-gcm-1400: ${fmt(headline, 2)} of openssl`);
