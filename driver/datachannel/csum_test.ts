import { assert, assertEquals } from "../../tests/assert.ts";
import { sumLE, summedInPlace, wasmBytes } from "./csum.ts";

/** The reference: little-endian 16-bit words one by one, folded (0 and 0xffff both stand for zero). */
function reference(b: Uint8Array, from: number, to: number): number {
  let s = 0;
  for (let i = from; i < to; i += 2) s += b[i] + (i + 1 < to ? b[i + 1] << 8 : 0);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}
const norm = (x: number) => x === 0 ? 0xffff : x;

function fillRandom(b: Uint8Array) {
  for (let i = 0; i < b.length; i += 65536) {
    crypto.getRandomValues(b.subarray(i, Math.min(b.length, i + 65536)));
  }
}

Deno.test("csum: the WebAssembly sum equals the plain one in place, through the scratch copy, at every alignment", () => {
  const inPlace = wasmBytes(3 * 65536);
  const plain = new Uint8Array(3 * 65536);
  assert(summedInPlace(inPlace), "wasmBytes gives a buffer in a WebAssembly memory");
  assert(!summedInPlace(plain));
  fillRandom(inPlace);
  plain.set(inPlace);
  const lengths = [0, 1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 1400, 1401, 9000, 65535];
  for (let round = 0; round < 3000; round++) {
    const from = Math.floor(Math.random() * 4096);
    const len = round < lengths.length * 4
      ? lengths[round % lengths.length]
      : Math.floor(Math.random() * 3000);
    for (const b of [inPlace, plain, inPlace.subarray(1 + (round % 7)), plain.subarray(3)]) {
      assertEquals(
        norm(sumLE(b, from, from + len)),
        norm(reference(b, from, from + len)),
        `from ${from} len ${len}`,
      );
    }
  }
  // the i32 lanes do not overflow: 64 KB of 0xff
  inPlace.fill(0xff, 0, 65535);
  assertEquals(norm(sumLE(inPlace, 0, 65535)), norm(reference(inPlace, 0, 65535)));
});

Deno.test("csum: wasmBytes is zeroed and exactly as long as asked, each in memory of its own", () => {
  const a = wasmBytes(100), b = wasmBytes(70000);
  assertEquals([a.length, b.length], [100, 70000]);
  assert(a.every((x) => x === 0) && b.every((x) => x === 0));
  assert(a.buffer !== b.buffer);
});

Deno.test("csum: without WebAssembly (--jitless) buffers are plain and the sums the same", async () => {
  const script = `
    import { sumLE, summedInPlace, wasmBytes } from ${
    JSON.stringify(new URL("./csum.ts", import.meta.url).href)
  };
    const b = wasmBytes(5000);
    for (let i = 0; i < b.length; i++) b[i] = (i * 7919) & 0xff;
    console.log(JSON.stringify([typeof WebAssembly, summedInPlace(b), sumLE(b, 3, 4003)]));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--jitless", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  const b = new Uint8Array(5000);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7919) & 0xff;
  assertEquals(JSON.parse(new TextDecoder().decode(out.stdout)), ["undefined", false, reference(b, 3, 4003)]);
});
