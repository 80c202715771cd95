/**
 * Real OpenVPN 2.7.6 epoch sessions (tests/fixtures/epoch-vectors, made by scripts/capture_epoch_vectors.ts):
 * our derivation gives OpenVPN's own logged data keys and IVs, and every captured packet opens and reseals
 * byte for byte, with every crypto provider that supports the cipher.
 */
import { assert, assertEquals } from "../tests/assert.ts";
import { cipherByName } from "./aead.ts";
import { availableProviders } from "./providers.ts";
import { DataChannel, KeySlotId, RX_DROP, RX_KEEPALIVE } from "../driver/datachannel/channel.ts";
import { deriveEpochDataKey } from "../driver/datachannel/epoch.ts";
import { HEADROOM } from "../driver/datachannel/packet.ts";
import { hex, toHex } from "../tests/fixtures/vectors.ts";

interface EpochVectorFile {
  file: string;
  cipher: string;
  peer_id: number;
  key_id: number;
  client_to_server: { epoch_secret: string; data_key_1: string; implicit_iv_1: string };
  server_to_client: { epoch_secret: string; data_key_1: string; implicit_iv_1: string };
  packets: {
    direction: "client_to_server" | "server_to_client";
    epoch: number;
    counter: number;
    wire: string;
  }[];
}

const dir = new URL("../tests/fixtures/epoch-vectors/", import.meta.url);
const vectors: EpochVectorFile[] = [...Deno.readDirSync(dir)]
  .filter((e) => e.name.endsWith(".json"))
  .map((e) => ({ ...JSON.parse(Deno.readTextFileSync(new URL(e.name, dir))), file: e.name }))
  .sort((a, b) => a.file.localeCompare(b.file));

Deno.test("epoch vectors: the three OpenVPN 2.7.6 captures are present", () => {
  assertEquals(vectors.map((v) => v.cipher).sort(), ["AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305"]);
});

Deno.test("epoch vectors: E1 gives the epoch-1 data keys and implicit IVs OpenVPN 2.7.6 logged", () => {
  for (const v of vectors) {
    const cipher = cipherByName(v.cipher)!;
    for (const d of [v.client_to_server, v.server_to_client]) {
      const { key, iv } = deriveEpochDataKey(hex(d.epoch_secret), cipher.keyLen);
      assertEquals(toHex(key), d.data_key_1, v.file);
      assertEquals(toHex(iv), d.implicit_iv_1, v.file);
    }
  }
});

for (const provider of availableProviders()) {
  for (const v of vectors) {
    const cipher = cipherByName(v.cipher)!;
    if (!provider.supports(cipher)) continue;
    Deno.test({
      name:
        `epoch vectors: ${provider.name} ${v.cipher} opens every captured packet and reseals it byte for byte`,
      fn() {
        const side = (enc: "client_to_server" | "server_to_client", dec: typeof enc) => {
          const ch = new DataChannel({ peerId: v.peer_id, makeAead: (c, k) => provider.create(c, k) });
          ch.newKey(KeySlotId.PRIMARY, {
            cipher,
            keyId: v.key_id,
            encryptKey: hex(v[enc].epoch_secret),
            encryptNonceTail: new Uint8Array(8),
            decryptKey: hex(v[dec].epoch_secret),
            decryptNonceTail: new Uint8Array(8),
            epoch: true,
          });
          return ch;
        };
        const client = side("client_to_server", "server_to_client");
        const server = side("server_to_client", "client_to_server");
        let checked = 0;
        for (const p of v.packets) {
          const receiver = p.direction === "client_to_server" ? server : client;
          const sender = p.direction === "client_to_server" ? client : server;
          const wire = hex(p.wire);
          const buf = new Uint8Array(2048);
          buf.set(wire);
          const r = receiver.open(buf, 0, wire.length);
          assert(r !== RX_DROP, `${v.file}: packet ${p.direction} ${p.counter} dropped`);
          const start = r === RX_KEEPALIVE ? 12 : r;
          assertEquals(receiver.openEnd, wire.length - 16);
          const pt = buf.slice(start, receiver.openEnd);
          if (r !== RX_KEEPALIVE) assertEquals(pt[0] >> 4 === 4 || pt[0] >> 4 === 6, true, "an IP packet");
          // reseal with the same epoch and counter
          const out = new Uint8Array(2048);
          out.set(pt, HEADROOM);
          assertEquals(p.epoch, 1);
          sender.keys.primary!.epochSend!.counter = p.counter - 1;
          const s = sender.seal(out, pt.length);
          assertEquals(
            toHex(out.subarray(s, sender.sealEnd)),
            p.wire,
            `${v.file} ${p.direction} ${p.counter}`,
          );
          checked++;
        }
        assert(checked >= 12, `only ${checked} packets`);
        assertEquals(client.stats.LostInDataPackets + server.stats.LostInDataPackets, 0);
        // a replay of a captured packet is refused and counted
        const again = hex(v.packets[0].wire), buf = new Uint8Array(2048);
        buf.set(again);
        const receiver = v.packets[0].direction === "client_to_server" ? server : client;
        assertEquals(receiver.open(buf, 0, again.length), RX_DROP);
        assertEquals(receiver.drops.get("replay"), 1);
        client.close();
        server.close();
      },
    });
  }
}
