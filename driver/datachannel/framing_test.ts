import { assertEquals, assertThrows } from "../../tests/assert.ts";
import { FramingError, TcpDeframer, writeLengthPrefix } from "./framing.ts";

function stream(packets: number[][]): Uint8Array {
  const out: number[] = [];
  for (const p of packets) out.push(p.length >> 8, p.length & 0xff, ...p);
  return new Uint8Array(out);
}

function feed(d: TcpDeframer, bytes: Uint8Array, chunk: number): number[][] {
  const got: number[][] = [];
  for (let i = 0; i < bytes.length;) {
    const room = d.writable();
    const part = bytes.subarray(i, i + Math.min(chunk, room.length));
    room.set(part);
    i += part.length;
    d.commit(part.length, (b, off, len) => got.push([...b.subarray(off, off + len)]));
  }
  return got;
}

Deno.test("framing: packets reassemble across every split of the stream", () => {
  const packets = [[1], [2, 3], Array.from({ length: 1500 }, (_, i) => i & 0xff), [9, 9, 9]];
  const s = stream(packets);
  for (const chunk of [1, 2, 3, 7, 100, 1501, s.length]) {
    const d = new TcpDeframer();
    assertEquals(feed(d, s, chunk), packets, `chunk ${chunk}`);
    assertEquals(d.pending, 0);
  }
});

Deno.test("framing: a long stream through the reused buffer keeps every byte", () => {
  const packets = Array.from(
    { length: 3000 },
    (_, i) => Array.from({ length: 1 + (i * 37) % 2000 }, (_, j) => (i + j) & 0xff),
  );
  const d = new TcpDeframer();
  assertEquals(feed(d, stream(packets), 4096), packets);
});

Deno.test("framing: length 0 and oversized lengths reset the connection", () => {
  const d = new TcpDeframer(2048);
  d.writable().set([0, 0, 1]);
  assertThrows(() => d.commit(3, () => {}), "bad TCP packet length 0");
  d.writable().set([0x08, 0x01]);
  assertThrows(() => d.commit(2, () => {}), "length 2049");
  assertEquals(d.pending, 0);
  try {
    d.writable().set([0xff, 0xff]);
    d.commit(2, () => {});
  } catch (e) {
    assertEquals(e instanceof FramingError, true);
  }
});

Deno.test("framing: writeLengthPrefix", () => {
  const b = new Uint8Array(4);
  writeLengthPrefix(b, 2, 0x1234);
  assertEquals([...b], [0x12, 0x34, 0, 0]);
});
