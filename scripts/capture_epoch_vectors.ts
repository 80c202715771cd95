/**
 * Makes tests/fixtures/epoch-vectors/*.json: packets captured on the wire from a real OpenVPN 2.7.6 session
 * (tests/openvpn27, built by its build.sh; TLS, UDP; the two peers negotiate `aead-epoch` by themselves), with what
 * the client logged at verb 9: its epoch secrets (`Epoch E1 send/recv`), OpenVPN's own epoch-1 data keys
 * (`Outgoing/Incoming Epoch Data key 1: CIPHER KEY`) and the implicit IVs recovered from the per-packet
 * `ENCRYPT IV` / `DECRYPT IV` lines (the nonce XOR the packet id). Nothing here uses this tool's own
 * derivation, so the fixtures check it. Needs root and tcpdump (apt-get install tcpdump). Run:
 *
 *   ./node_modules/deno/deno run -A scripts/capture_epoch_vectors.ts
 * @module
 */
import { NetnsLab } from "../cmd/netns.ts";
import { OPENVPN_27, startOpenvpnPair } from "../tests/lab.ts";

const OUT = new URL("../tests/fixtures/epoch-vectors/", import.meta.url).pathname;
const words = (s: string) => s.trim().split(/\s+/).join("").toLowerCase();
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));

function lastMatch(log: string, re: RegExp): string {
  let m: RegExpMatchArray | null = null;
  for (const x of log.matchAll(new RegExp(re, "g"))) m = x;
  if (!m) throw new Error(`the client log has no ${re}`);
  return words(m[1]);
}

/** The implicit IV from one logged nonce and the packet's id (as on the wire). */
function ivFrom(log: string, what: "ENCRYPT" | "DECRYPT"): string {
  // "ENCRYPT IV: n0 n1 n2" is followed by "ENCRYPT AD: op/peer pid-hi pid-lo"
  const re = new RegExp(
    `${what} IV: ([0-9a-f ]{26})[\\s\\S]*?${what} AD: [0-9a-f]{8} ([0-9a-f]{8}) ([0-9a-f]{8})`,
  );
  const m = re.exec(log);
  if (!m) throw new Error(`the client log has no ${what} IV / AD pair`);
  const nonce = unhex(words(m[1])), pid = unhex(m[2] + m[3]);
  for (let i = 0; i < 8; i++) nonce[i] ^= pid[i];
  return hex(nonce);
}

/** UDP payloads of a pcap (Ethernet, IPv4). */
function udpPayloads(pcap: Uint8Array): { srcPort: number; payload: Uint8Array }[] {
  const dv = new DataView(pcap.buffer, pcap.byteOffset);
  if (dv.getUint32(0, true) !== 0xa1b2c3d4) throw new Error("not a little-endian pcap");
  if (dv.getUint32(20, true) !== 1) throw new Error("not an Ethernet capture");
  const out = [];
  for (let off = 24; off + 16 <= pcap.length;) {
    const len = dv.getUint32(off + 8, true);
    const frame = pcap.subarray(off + 16, off + 16 + len);
    off += 16 + len;
    if (frame[12] !== 0x08 || frame[13] !== 0x00) continue; // IPv4 only
    const ihl = (frame[14] & 15) * 4;
    if (frame[14 + 9] !== 17) continue;
    const udp = 14 + ihl;
    const srcPort = (frame[udp] << 8) | frame[udp + 1];
    const udpLen = (frame[udp + 4] << 8) | frame[udp + 5];
    out.push({ srcPort, payload: frame.slice(udp + 8, udp + udpLen) });
  }
  return out;
}

await Deno.mkdir(OUT, { recursive: true });
let index = 80;
for (const cipher of ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"]) {
  const lab = await NetnsLab.create(index++);
  try {
    const pcapFile = `${lab.runDir}/cap.pcap`;
    const dump = lab.spawn("b", [
      "tcpdump",
      "-i",
      "veth-b",
      "-U",
      "-n",
      "-w",
      pcapFile,
      "udp",
      "port",
      "1194",
    ]);
    await lab.waitFor(() => dump.output().includes("listening"), 10000, "tcpdump");
    const { net, clientLog } = await startOpenvpnPair(lab, cipher, { clientVerb: 9, openvpn: OPENVPN_27 });
    for (const size of ["56", "1000", "1300"]) {
      await lab.run("a", ["ping", "-c", "3", "-i", "0.2", "-s", size, `${net}.1`]);
    }
    await new Promise((r) => setTimeout(r, 500));
    await lab.stop(dump);
    const log = await Deno.readTextFile(clientLog);
    if (!log.includes("aead-epoch")) throw new Error("the peers did not negotiate aead-epoch");
    const packets = udpPayloads(await Deno.readFile(pcapFile))
      .filter((p) => p.payload.length > 0 && p.payload[0] >> 3 === 9) // P_DATA_V2
      .map((p) => ({
        direction: p.srcPort === 41194 ? "client_to_server" : "server_to_client",
        epoch: (p.payload[4] << 8) | p.payload[5],
        counter: ((p.payload[6] << 8) | p.payload[7]) * 2 ** 32 +
          new DataView(p.payload.buffer, p.payload.byteOffset + 8).getUint32(0),
        wire: hex(p.payload),
      }));
    const file = {
      source: `OpenVPN 2.7.6 client and server (TLS, UDP, aead-epoch negotiated), captured on the wire ${
        new Date().toISOString().slice(0, 10)
      }; secrets and keys from the client's verb-9 log`,
      cipher,
      peer_id: Number(/peer-id (\d+)/.exec(log)?.[1] ?? 0),
      key_id: 0,
      client_to_server: {
        epoch_secret: lastMatch(log, /Epoch E1 send: ([0-9a-f ]+)/),
        data_key_1: lastMatch(log, /Outgoing Epoch Data key 1: CIPHER KEY: ([0-9a-f ]+)/),
        implicit_iv_1: ivFrom(log, "ENCRYPT"),
      },
      server_to_client: {
        epoch_secret: lastMatch(log, /Epoch E1 recv: ([0-9a-f ]+)/),
        data_key_1: lastMatch(log, /Incoming Epoch Data key 1: CIPHER KEY: ([0-9a-f ]+)/),
        implicit_iv_1: ivFrom(log, "DECRYPT"),
      },
      packets,
    };
    const name = `openvpn-2.7.6-${cipher.toLowerCase()}.json`;
    await Deno.writeTextFile(`${OUT}${name}`, JSON.stringify(file, null, 1) + "\n");
    console.log(`${name}: ${packets.length} data packets`);
  } finally {
    await lab.destroy();
  }
}
