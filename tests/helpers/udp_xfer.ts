/**
 * UDP transfer helper for the end-to-end tests, run inside a namespace (datagrams checked one by one):
 *   sink ADDR PORT COUNT          take datagrams until COUNT arrived or 3 s pass without one; print one JSON line
 *                                 {received, corrupt, duplicates, reordered}
 *   source ADDR PORT COUNT SIZE   a connected socket (so IPv4 ids run on, as senders' do) sends COUNT datagrams of
 *                                 SIZE bytes in bursts of 64, a millisecond apart; print the count sent
 * Datagram k is [k as u32][bytes that depend on k and their position], so corruption, loss and order show.
 * Plain blocking socket calls through libc (the sends leave in order; a 4 MB receive buffer).
 * @module
 */
import {
  AF_INET,
  AF_INET6,
  libc,
  POLLIN,
  SO_RCVBUF,
  SOCK_DGRAM,
  sockaddr,
  SOL_SOCKET,
} from "../../ffi/libc.ts";
import { addrBytes } from "../../driver/userspace/sockets_linux.ts";

const [mode, addr, port, count, size] = Deno.args;
const L = libc().symbols;
const byteAt = (k: number, i: number) => (k * 31 + i * 7) & 0xff;
const want = Number(count);
const sa = sockaddr(addrBytes(addr), Number(port));
const fd = L.socket(addr.includes(":") ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
if (fd < 0) throw new Error("socket failed");

if (mode === "sink") {
  L.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, new Uint8Array(new Int32Array([4 << 20]).buffer), 4);
  if (L.bind(fd, sa, sa.length) < 0) throw new Error(`bind ${addr}:${port} failed`);
  console.error("listening");
  const seen = new Uint8Array(want);
  const m = new Uint8Array(65536);
  const pfd = new Uint8Array(8);
  new DataView(pfd.buffer).setInt32(0, fd, true);
  new DataView(pfd.buffer).setInt16(4, POLLIN, true);
  let received = 0, corrupt = 0, duplicates = 0, reordered = 0, last = -1;
  while (received < want && L.poll(pfd, 1n, 3000) > 0) {
    const n = Number(L.recv(fd, m, BigInt(m.length), 0));
    if (n < 0) continue;
    const k = n >= 4 ? ((m[0] << 24) | (m[1] << 16) | (m[2] << 8) | m[3]) >>> 0 : -1;
    let ok = k >= 0 && k < want;
    for (let i = 4; ok && i < n; i++) ok = m[i] === byteAt(k, i);
    if (!ok) corrupt++;
    else if (seen[k]) duplicates++;
    else {
      seen[k] = 1;
      received++;
      if (k < last) reordered++;
      last = k;
    }
  }
  console.log(JSON.stringify({ received, corrupt, duplicates, reordered }));
} else {
  if (L.connect(fd, sa, sa.length) < 0) throw new Error(`connect ${addr}:${port} failed`);
  const len = Number(size);
  const b = new Uint8Array(len);
  let sent = 0;
  for (let k = 0; k < want; k++) {
    b[0] = k >>> 24;
    b[1] = (k >> 16) & 0xff;
    b[2] = (k >> 8) & 0xff;
    b[3] = k & 0xff;
    for (let i = 4; i < len; i++) b[i] = byteAt(k, i);
    if (Number(L.send(fd, b, BigInt(len), 0)) === len) sent++;
    if (k % 64 === 63) await new Promise((r) => setTimeout(r, 1));
  }
  console.log(sent);
}
L.close(fd);
