/**
 * Linux-side bridge for the fake wintun.dll (run in the "Windows host" namespace): a real Linux tun
 * device stands for the Wintun adapter. Packets the kernel routes into the tun go as UDP datagrams to the
 * DLL (127.0.0.1:DLL_PORT: WintunReceivePacket); datagrams from the DLL (WintunSendPacket, arriving on
 * 127.0.0.1:BRIDGE_PORT) are written to the tun.
 *
 *   wintun_bridge IFNAME BRIDGE_PORT DLL_PORT CIDR...
 * @module
 */
import { libc, MSG_DONTWAIT, POLLIN, sockaddr } from "../../ffi/libc.ts";
import { openTun } from "../../driver/userspace/tun_linux.ts";
import { udpSocket } from "../../driver/userspace/sockets_linux.ts";

const [ifname, bridgePort, dllPort, ...cidrs] = Deno.args;
const L = libc().symbols;
const tun = openTun(ifname);
await tun.configure({ mtu: 1428, addresses: cidrs });
const sock = udpSocket({ address: "127.0.0.1", port: Number(bridgePort) }, {
  address: "127.0.0.1",
  port: Number(dllPort),
});
const dll = sockaddr(new Uint8Array([127, 0, 0, 1]), Number(dllPort));
const buf = new Uint8Array(65536);
const pfd = new Uint8Array(16);
const dv = new DataView(pfd.buffer);
dv.setInt32(0, tun.fd, true);
dv.setInt16(4, POLLIN, true);
dv.setInt32(8, sock, true);
dv.setInt16(12, POLLIN, true);
console.log("bridge ready");
let stop = false;
Deno.addSignalListener("SIGTERM", () => (stop = true));
while (!stop) {
  await L.poll_nb(pfd, 2n, 200);
  for (;;) {
    const n = Number(L.read(tun.fd, buf, BigInt(buf.length)));
    if (n <= 0) break;
    L.sendto(sock, buf, BigInt(n), 0, dll, dll.length);
  }
  for (;;) {
    const n = Number(L.recv(sock, buf, BigInt(buf.length), MSG_DONTWAIT));
    if (n <= 0) break;
    L.write(tun.fd, buf, BigInt(n));
  }
}
tun.close();
L.close(sock);
