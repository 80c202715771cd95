/**
 * A bounded flood of unauthenticated non-data datagrams for the hostile-server test, run in a namespace the
 * test made: SOCKETS sockets send SIZE-byte datagrams whose first byte is a control opcode to DST:PORT for
 * SECONDS or until MAX datagrams went, whichever comes first; at most RATE datagrams per second when given
 * (else as fast as it can). Prints how many were sent.
 *
 *   flood DST PORT SECONDS SOCKETS SIZE MAX [RATE]
 * @module
 */
import { parseIPv4 } from "../../driver/uapi.ts";

const [dst, port, seconds, sockets, size, max, rate] = Deno.args;
const L = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
}).symbols;
const sa = new Uint8Array(16);
new DataView(sa.buffer).setUint16(0, 2, true); // AF_INET
new DataView(sa.buffer).setUint16(2, Number(port), false);
sa.set(parseIPv4(dst)!, 4);
const fds = Array.from({ length: Number(sockets) }, () => L.socket(2, 2 | 0o4000, 0)); // SOCK_DGRAM|NONBLOCK
const d = crypto.getRandomValues(new Uint8Array(Number(size)));
d[0] = 7 << 3; // P_CONTROL_HARD_RESET_CLIENT_V2, key id 0
const start = Date.now(), end = start + Number(seconds) * 1000;
const perMs = rate ? Number(rate) / 1000 : Infinity;
let sent = 0, tries = 0;
while (Date.now() < end && sent < Number(max)) {
  for (const fd of fds) if (Number(L.sendto(fd, d, BigInt(d.length), 0, sa, 16)) > 0) sent++;
  if (++tries % 16 === 0) await new Promise((r) => setTimeout(r, 0)); // let the clock move
  // paced: wait until the rate allows the next round
  while (tries * fds.length > (Date.now() - start) * perMs && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 1));
  }
}
console.log(sent);
