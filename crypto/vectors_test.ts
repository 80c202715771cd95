import { assert, assertEquals } from "../tests/assert.ts";
import { cipherByName } from "./aead.ts";
import { availableProviders } from "./providers.ts";
import { DataChannel, KeySlotId, RX_KEEPALIVE } from "../driver/datachannel/channel.ts";
import { HEADROOM, isDataV2 } from "../driver/datachannel/packet.ts";
import { hex, loadVectors, toHex } from "../tests/fixtures/vectors.ts";

const vectors = loadVectors();

Deno.test("vectors: the three real OpenVPN 2.6 captures are present", () => {
  assertEquals(vectors.map((v) => v.cipher).sort(), ["AES-192-GCM", "AES-256-GCM", "CHACHA20-POLY1305"]);
});

Deno.test("vectors: control packets are recognised as control, data as DATA_V2", () => {
  for (const v of vectors) {
    for (const p of v.packets) {
      assertEquals(isDataV2(hex(p.wire)), p.kind === "data", `${v.file} ${p.wire.slice(0, 8)}`);
    }
  }
});

for (const provider of availableProviders()) {
  for (const v of vectors) {
    const cipher = cipherByName(v.cipher)!;
    // node:crypto in Deno has no aes-192-gcm: that pair is covered by providers_test.ts instead
    if (!provider.supports(cipher)) continue;
    Deno.test({
      name: `vectors: ${provider.name} ${v.cipher} opens every captured packet and reseals it byte for byte`,
      fn() {
        // One channel per side: the client encrypts with client_to_server, decrypts server_to_client.
        const side = (enc: "client_to_server" | "server_to_client", dec: typeof enc) => {
          const ch = new DataChannel({ peerId: v.peer_id, makeAead: (c, k) => provider.create(c, k) });
          ch.newKey(KeySlotId.PRIMARY, {
            cipher,
            keyId: v.key_id,
            encryptKey: hex(v[enc].key),
            encryptNonceTail: hex(v[enc].nonce_tail),
            decryptKey: hex(v[dec].key),
            decryptNonceTail: hex(v[dec].nonce_tail),
          });
          return ch;
        };
        const client = side("client_to_server", "server_to_client");
        const server = side("server_to_client", "client_to_server");
        let checked = 0;
        for (const p of v.packets.filter((x) => x.kind === "data")) {
          const receiver = p.direction === "client_to_server" ? server : client;
          const sender = p.direction === "client_to_server" ? client : server;
          const wire = hex(p.wire);
          const buf = new Uint8Array(2048);
          buf.set(wire);
          const r = receiver.open(buf, 0, wire.length);
          if (p.keepalive) assertEquals(r, RX_KEEPALIVE);
          else assertEquals(toHex(buf.subarray(r, wire.length)), p.plaintext);
          // reseal with the same packet id
          const pt = hex(p.plaintext!);
          const out = new Uint8Array(2048);
          out.set(pt, HEADROOM);
          sender.keys.primary!.tx.seek(p.packet_id!);
          const start = sender.seal(out, pt.length);
          assertEquals(toHex(out.subarray(start, HEADROOM + pt.length)), p.wire);
          checked++;
        }
        assert(checked >= 12);
        assertEquals(client.stats.LostInDataPackets + server.stats.LostInDataPackets, 0);
        client.close();
        server.close();
      },
    });
  }
}
