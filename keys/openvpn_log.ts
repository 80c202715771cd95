/**
 * Turn an OpenVPN 2.6 `--verb 9` log into this tool's JSON key format, to take over one side of a real
 * session's data channel: the cipher and keys from `Outgoing/Incoming Data Channel: ...` lines, the
 * nonce tails from the last `ENCRYPT IV:` / `DECRYPT IV:` lines (their last 8 bytes), the peer id from
 * `peer-id: N`, and a first packet id safely above the last one the log shows, so the real peer's replay
 * window accepts the new sender.
 *
 * An OpenVPN 2.7 log of an `aead-epoch` session (with ../shared/tools/openvpn-2.7.6's `Epoch E1 send/recv`
 * lines) gives an epoch key instead: the E1 secrets, the cipher from `Outgoing Epoch Data key N: Cipher`,
 * and a first counter above the one in the last `ENCRYPT AD:` line (its packet id: epoch ‖ counter).
 *
 * @example
 * ```ts
 * import { keyFromOpenvpnLog } from "./openvpn_log.ts";
 * const json = keyFromOpenvpnLog(await Deno.readTextFile("client.log"));
 * ```
 * @module
 */
import { KeyFileError } from "./keyfile.ts";

/** The JSON key (SPEC §3.2 plus `firstPacketId`) for the side that wrote the log. */
export interface LoggedKey {
  cipher: string;
  peerId: number;
  keyId: number;
  firstPacketId: number;
  encrypt: { key: string; nonceTail: string } | { epochSecret: string };
  decrypt: { key: string; nonceTail: string } | { epochSecret: string };
}

const words = (s: string) => s.trim().split(/\s+/).join("").toLowerCase();

/**
 * Parse the log; `margin` is added to the last packet id the log shows. `client` (`IP:PORT`) picks one
 * client's lines out of a server's log, where every line of a client's session names its address.
 */
export function keyFromOpenvpnLog(log: string, margin = 100_000, client?: string): LoggedKey {
  if (client !== undefined) {
    const lines = log.split("\n").filter((l) => l.includes(`${client} `) || l.includes(`:${client} `));
    if (!lines.length) throw new KeyFileError(`the OpenVPN log has no lines of client ${client}`);
    log = lines.join("\n");
  }
  const last = (re: RegExp): RegExpExecArray | null => {
    let m: RegExpExecArray | null = null;
    for (const x of log.matchAll(new RegExp(re, "g"))) m = x as RegExpExecArray;
    return m;
  };
  // the peer id the server assigned (PUSH_REPLY) wins over "peer-id: N" status lines, which a 2.6 server
  // also writes with other values
  const peer = last(/PUSH_REPLY,[^']*peer-id (\d+)/) ?? last(/peer-id:? (\d+)/);
  const e1send = last(/Epoch E1 send: ([0-9a-f ]+)/);
  if (e1send) {
    const e1recv = last(/Epoch E1 recv: ([0-9a-f ]+)/);
    const ecipher = last(/Outgoing Epoch Data key \d+: Cipher '([^']+)'/);
    const ad = last(/ENCRYPT AD: [0-9a-f]{8} ([0-9a-f]{4})([0-9a-f]{4}) ([0-9a-f]{8})/);
    const miss = [
      [e1recv, "'Epoch E1 recv'"],
      [ecipher, "'Outgoing Epoch Data key 1: Cipher' (run OpenVPN with --verb 9)"],
      [ad, "'ENCRYPT AD' (send some traffic first)"],
    ].find(([m]) => !m);
    if (miss) throw new KeyFileError(`the OpenVPN log has no ${miss[1]}`);
    if (parseInt(ad![1], 16) !== 1) {
      throw new KeyFileError(
        `the OpenVPN session already sends with epoch ${
          parseInt(ad![1], 16)
        }; take it over while it is at epoch 1`,
      );
    }
    return {
      cipher: ecipher![1],
      peerId: peer ? Number(peer[1]) : 0,
      keyId: 0,
      firstPacketId: parseInt(ad![2] + ad![3], 16) + margin,
      encrypt: { epochSecret: words(e1send[1]) },
      decrypt: { epochSecret: words(e1recv![1]) },
    };
  }
  const cipher = last(/Outgoing Data Channel: Cipher '([^']+)'/);
  const outKey = last(/Outgoing Data Channel: CIPHER KEY: ([0-9a-f ]+)/);
  const inKey = last(/Incoming Data Channel: CIPHER KEY: ([0-9a-f ]+)/);
  const enc = last(/ENCRYPT IV: ([0-9a-f]{8}) ([0-9a-f]{8}) ([0-9a-f]{8})/);
  const dec = last(/DECRYPT IV: ([0-9a-f]{8}) ([0-9a-f]{8}) ([0-9a-f]{8})/);
  const missing = [
    [cipher, "'Outgoing Data Channel: Cipher' (run OpenVPN with --verb 9)"],
    [outKey, "'Outgoing Data Channel: CIPHER KEY'"],
    [inKey, "'Incoming Data Channel: CIPHER KEY'"],
    [enc, "'ENCRYPT IV' (send some traffic first)"],
    [dec, "'DECRYPT IV' (receive some traffic first)"],
  ].find(([m]) => !m);
  if (missing) throw new KeyFileError(`the OpenVPN log has no ${missing[1]}`);
  return {
    cipher: cipher![1],
    peerId: peer ? Number(peer[1]) : 0,
    keyId: 0,
    firstPacketId: parseInt(enc![1], 16) + margin,
    encrypt: { key: words(outKey![1]), nonceTail: enc![2] + enc![3] },
    decrypt: { key: words(inKey![1]), nonceTail: dec![2] + dec![3] },
  };
}
