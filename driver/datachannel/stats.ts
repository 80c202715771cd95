/**
 * OVPN_STATS counters with the driver's semantics, and upstream's text format.
 *
 * - lostIn/OutData: a data packet that could not be decrypted (bad tag, replay, unknown key id, wrong peer,
 *   truncated or oversized) or could not be encrypted/sent (no key, packet-id limit, send error).
 * - lostIn/OutCtrl: a control packet dropped for want of room (queue full) or on a send error.
 * - transportBytesSent/Received: bytes of whole packets on the socket (without TCP length prefixes).
 * - tunBytesSent: plaintext bytes read from the tun and sent into the tunnel;
 *   tunBytesReceived: plaintext bytes that came out of the tunnel and were written to the tun.
 *
 * @example
 * ```ts
 * import { formatStats, newStats } from "./stats.ts";
 * formatStats(newStats()).startsWith("lostInCtrlPkts: 0\n"); // true
 * ```
 * @module
 */

import type { OvpnStats } from "../uapi.ts";

/** The counters of OVPN_STATS, named as the driver's struct (defined once, in uapi.ts). */
export type Stats = OvpnStats;

/** A zeroed counter set. */
export function newStats(): Stats {
  return {
    LostInControlPackets: 0,
    LostOutControlPackets: 0,
    LostInDataPackets: 0,
    LostOutDataPackets: 0,
    ReceivedDataPackets: 0,
    ReceivedControlPackets: 0,
    SentControlPackets: 0,
    SentDataPackets: 0,
    TransportBytesSent: 0,
    TransportBytesReceived: 0,
    TunBytesSent: 0,
    TunBytesReceived: 0,
  };
}

/** Upstream's field names, in upstream's order, with the struct field each prints. */
export const STATS_FIELDS: readonly (readonly [string, keyof Stats])[] = [
  ["lostInCtrlPkts", "LostInControlPackets"],
  ["lostInDataPkts", "LostInDataPackets"],
  ["lostOutCtrlPkts", "LostOutControlPackets"],
  ["lostOutDataPkts", "LostOutDataPackets"],
  ["rcvdCtrlPkts", "ReceivedControlPackets"],
  ["rcvdDataPkts", "ReceivedDataPackets"],
  ["sentCtrlPkts", "SentControlPackets"],
  ["sentDataPkts", "SentDataPackets"],
  ["transportBytesSent", "TransportBytesSent"],
  ["transportBytesReceived", "TransportBytesReceived"],
  ["tunBytesSent", "TunBytesSent"],
  ["tunBytesReceived", "TunBytesReceived"],
];

/** The statistics block exactly as upstream's ovpn-dco-cli prints it (ends with a blank line). */
export function formatStats(s: Stats): string {
  return formatStatsJson(statsToJson(s));
}

/** The same block from counters under upstream's names (as `statsToJson` makes them). */
export function formatStatsJson(j: Record<string, number>): string {
  return STATS_FIELDS.map(([label]) => `${label}: ${j[label]}`).join("\n") + "\n\n";
}

/** The same counters under upstream's names, for `--json`. */
export function statsToJson(s: Stats): Record<string, number> {
  const o: Record<string, number> = {};
  for (const [label, key] of STATS_FIELDS) o[label] = s[key];
  return o;
}

/** The primary key's epochs (epoch data keys only). */
export type Epochs = { send: number; recv: number } | null | undefined;

/** The epoch block printed after the statistics when epoch data keys are in use ("" otherwise). */
export function formatEpochs(e: Epochs): string {
  return e ? `sendEpoch: ${e.send}\nrecvEpoch: ${e.recv}\n\n` : "";
}

/**
 * One `--json` statistics line: time, interface, the counters under upstream's names, `sendEpoch` and
 * `recvEpoch` with epoch data keys, drops by reason.
 */
export function statsJsonLine(
  ifname: string,
  j: Record<string, number>,
  drops: unknown,
  epochs?: Epochs,
): string {
  const e = epochs ? { sendEpoch: epochs.send, recvEpoch: epochs.recv } : {};
  return JSON.stringify({ time: new Date().toISOString(), ifname, ...j, ...e, drops: drops ?? {} });
}
