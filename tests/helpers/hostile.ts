/**
 * Hostile-input sender for the end-to-end tests, run in the peer's namespace. Sends, from the peer's own
 * address and port (raw socket, so the tunnel's source check passes and the packets reach the decoder):
 * garbage with a DATA_V2 opcode, truncated packets, replays of ids already used, packets sealed with a wrong key,
 * and packets with a wrong peer id. Prints the number of packets sent.
 *
 *   hostile DST_IP DST_PORT SRC_PORT KEYFILE KEYDIR PEERID COUNT_EACH REPLAY_BASE
 *
 * REPLAY_BASE: first of COUNT_EACH packet ids that the receiver has already accepted from the real peer.
 *
 *   hostile ... REPLAY_BASE epoch RECV_EPOCH
 *
 * Epoch data keys: replays of counters REPLAY_BASE.. of the receiver's current epoch RECV_EPOCH, authentic
 * packets of an epoch beyond the receiver's future keys (RECV_EPOCH + 17), and packets claiming epoch 0.
 * @module
 */
import { DataChannel, KeySlotId } from "../../driver/datachannel/channel.ts";
import { HEADROOM } from "../../driver/datachannel/packet.ts";
import { readKeyFile, toKeyMaterial } from "../../keys/keyfile.ts";
import { parseIPv4 } from "../../driver/uapi.ts";

const [dst, dstPort, srcPort, keyFile, keyDir, peerId, countEach, replayBase, mode, recvEpoch] = Deno.args;
const L = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
}).symbols;
const fd = L.socket(2, 3, 17); // AF_INET, SOCK_RAW, IPPROTO_UDP
if (fd < 0) throw new Error("raw socket failed (needs root)");
const sa = new Uint8Array(16);
sa[0] = 2;
sa.set(parseIPv4(dst)!, 4);

function send(payload: Uint8Array) {
  const udp = new Uint8Array(8 + payload.length);
  const dv = new DataView(udp.buffer);
  dv.setUint16(0, Number(srcPort));
  dv.setUint16(2, Number(dstPort));
  dv.setUint16(4, udp.length);
  dv.setUint16(6, 0); // no checksum (IPv4)
  udp.set(payload, 8);
  if (Number(L.sendto(fd, udp, BigInt(udp.length), 0, sa, 16)) < 0) throw new Error("sendto failed");
}

const material = toKeyMaterial(await readKeyFile(keyFile), {
  keyDirection: Number(keyDir),
  epoch: mode === "epoch",
});
const sealer = (m: typeof material, pid: number) => {
  const ch = new DataChannel({ peerId: pid });
  ch.newKey(KeySlotId.PRIMARY, m);
  return ch;
};
const seal = (ch: DataChannel, pktId: number, len = 60) => {
  const buf = new Uint8Array(HEADROOM + len).fill(0x45, HEADROOM);
  ch.keys.primary!.tx.seek(pktId);
  const start = ch.seal(buf, len);
  return buf.slice(start);
};
if (mode === "epoch") {
  const n = Number(countEach), e = Number(recvEpoch);
  /** A sender of this key, moved to `epoch`, that seals counter `counter`. */
  const at = (epoch: number) => {
    const ch = sealer(material, Number(peerId));
    for (let i = 1; i < epoch; i++) ch.nextEpoch();
    return (counter: number) => {
      const buf = new Uint8Array(HEADROOM + 60 + 16).fill(0x45, HEADROOM);
      ch.keys.primary!.epochSend!.counter = counter - 1;
      const start = ch.seal(buf, 60);
      return buf.slice(start, ch.sealEnd);
    };
  };
  const current = at(e), far = at(e + 17);
  let sent = 0;
  for (let i = 0; i < n; i++) {
    send(current(Number(replayBase) + i)); // replay: the receiver accepted this counter in this epoch
    send(far(1 + i)); // authentic, but beyond the 16 future epochs the receiver keeps
    const zero = current(1_000_000 + i);
    zero[4] = zero[5] = 0; // epoch 0 does not exist
    send(zero);
    sent += 3;
  }
  console.log(sent);
  Deno.exit(0);
}
const good = sealer(material, Number(peerId));
const wrongKey = sealer(
  { ...material, encryptKey: material.encryptKey.map((x) => x ^ 0x5a) },
  Number(peerId),
);
const wrongPeer = sealer(material, Number(peerId) + 1);
const n = Number(countEach);
let sent = 0;
for (let i = 0; i < n; i++) {
  const garbage = crypto.getRandomValues(new Uint8Array(40 + i));
  garbage[0] = (9 << 3) | (material.keyId & 7); // DATA_V2 with our key id
  garbage[1] = 0, garbage[2] = 0, garbage[3] = Number(peerId); // our peer id: reaches the crypto
  send(garbage);
  send(seal(good, 100 + i).subarray(0, 20)); // truncated: header and part of the tag
  send(seal(good, Number(replayBase) + i)); // replay of an id the receiver already accepted
  send(seal(wrongKey, 2_000_000 + i)); // wrong key
  send(seal(wrongPeer, 3_000_000 + i)); // wrong peer id
  sent += 5;
}
console.log(sent);
