/**
 * Notifications of a running instance (the driver's OVPN_NOTIFY_EVENT, and the same events of the userspace
 * engines and of a point-to-point tunnel) as the `events` stream carries them: one JSON object each.
 * @module
 */
import { formatEndpoint } from "../driver/uapi.ts";
import type { EventSource } from "../driver/control.ts";
import type { DelPeerReason, ServerEvent } from "../driver/userspace/server_api.ts";
import type { DeviceEndReason } from "../driver/device.ts";

/** A notification as one JSON object (the `events` stream, `--json`). */
export function eventJson(e: ServerEvent): Record<string, unknown> {
  return e.cmd === "DEL_PEER"
    ? { event: "DEL_PEER", peerId: e.peerId, reason: e.reason }
    : e.cmd === "FLOAT_PEER"
    ? { event: "FLOAT_PEER", peerId: e.peerId, address: formatEndpoint(e.address) }
    : e.cmd === "NOTICE"
    ? { event: "NOTICE", peerId: e.peerId, text: e.text }
    : { event: "SWAP_KEYS", peerId: e.peerId };
}

/** Why a point-to-point tunnel's peer went, as the driver's DEL_PEER reason. */
export function endReason(r: DeviceEndReason): DelPeerReason | null {
  if (r.kind === "expired") return "expired";
  if (r.kind === "aborted") return r.error ? "transport-error" : "transport-disconnect";
  return null;
}

/** The subscribers of one instance: `emit` sends to each; `flush` waits until they have it (before exit). */
export class EventHub {
  #subs = new Set<(o: Record<string, unknown>) => Promise<boolean>>();
  #pending: Promise<boolean>[] = [];

  readonly source: EventSource = (send) => {
    this.#subs.add(send);
    return () => this.#subs.delete(send);
  };

  emit(e: ServerEvent): void {
    for (const s of this.#subs) this.#pending.push(s(eventJson(e)).catch(() => false));
    if (this.#pending.length > 256) this.#pending.splice(0, this.#pending.length - 256);
  }

  async flush(): Promise<void> {
    await Promise.allSettled(this.#pending.splice(0));
  }
}
