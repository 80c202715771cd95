/**
 * TCP transfer helper for the end-to-end tests, run inside a namespace:
 *   sink ADDR PORT            accept one connection, read to EOF, print "<bytes> <sha256>"
 *   source ADDR PORT BYTES    connect, send BYTES of seeded pseudo-random data, print "<bytes> <sha256>"
 * @module
 */
import { createHash } from "node:crypto";

const [mode, addr, port, bytes] = Deno.args;
const hash = createHash("sha256");
let total = 0;
if (mode === "sink") {
  const l = Deno.listen({ hostname: addr, port: Number(port) });
  console.error("listening");
  const c = await l.accept();
  const buf = new Uint8Array(256 * 1024);
  for (;;) {
    const n = await c.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
    total += n;
  }
  c.close();
  l.close();
} else {
  const c = await Deno.connect({ hostname: addr, port: Number(port) });
  const want = Number(bytes);
  const chunk = new Uint8Array(64 * 1024);
  let s = 12345;
  while (total < want) {
    const n = Math.min(chunk.length, want - total);
    for (let i = 0; i < n; i += 4) {
      s = (s * 1664525 + 1013904223) >>> 0;
      chunk[i] = s & 0xff;
      chunk[i + 1] = (s >>> 8) & 0xff;
      chunk[i + 2] = (s >>> 16) & 0xff;
      chunk[i + 3] = s >>> 24;
    }
    const part = chunk.subarray(0, n);
    let off = 0;
    while (off < n) off += await c.write(part.subarray(off));
    hash.update(part);
    total += n;
  }
  c.close();
}
console.log(`${total} ${hash.digest("hex")}`);
