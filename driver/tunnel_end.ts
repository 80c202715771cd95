/**
 * What every Device keeps the same way, whatever its backend: the control packets that arrived and wait for
 * a reader (one pending `read` at a time, like the driver's ReadFile), and the end of the tunnel, which
 * resolves `ended` once and fails every pending and later read.
 *
 * @example
 * ```ts
 * import { ControlInbox } from "./tunnel_end.ts";
 * const inbox = new ControlInbox();
 * inbox.push(new Uint8Array([0x38]));
 * await inbox.read(); // the packet
 * inbox.end({ kind: "expired", message: "keepalive timeout" });
 * ```
 * @module
 */
import { type DeviceEndReason, DeviceError } from "./device.ts";

/** Control packets waiting for a reader, and the end of the tunnel. */
export class ControlInbox {
  readonly ended: Promise<DeviceEndReason>;
  #reason: DeviceEndReason | null = null;
  #resolve!: (r: DeviceEndReason) => void;
  #queue: Uint8Array[] = [];
  #waiters: { resolve: (p: Uint8Array) => void; reject: (e: Error) => void }[] = [];

  /** `limit`: packets kept while nobody reads; more are refused. */
  constructor(readonly limit = 256) {
    this.ended = new Promise((r) => (this.#resolve = r));
  }

  /** Why the tunnel ended, or null while it runs. */
  get reason(): DeviceEndReason | null {
    return this.#reason;
  }

  /** End the tunnel (only the first call counts): resolves `ended`, fails the pending reads. */
  end(r: DeviceEndReason): void {
    if (this.#reason) return;
    this.#reason = r;
    this.#resolve(r);
    for (const w of this.#waiters.splice(0)) w.reject(new DeviceError(r.message, "io"));
  }

  /** A control packet arrived; false when it had to be dropped (the queue is full). */
  push(p: Uint8Array): boolean {
    const w = this.#waiters.shift();
    if (w) {
      w.resolve(p);
      return true;
    }
    if (this.#queue.length >= this.limit) return false;
    this.#queue.push(p);
    return true;
  }

  /** The next control packet; rejects once the tunnel has ended. */
  read(): Promise<Uint8Array> {
    const p = this.#queue.shift();
    if (p) return Promise.resolve(p);
    if (this.#reason) return Promise.reject(new DeviceError(this.#reason.message, "io"));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }
}
