/**
 * The main thread's side of the two engine workers (engine_worker.ts): spawning them with their wake-up
 * pipes, posting messages (and waiting for the ones that must be in force when a call returns, like an
 * IOCTL), and stopping them. Used by the point-to-point device and the server device alike.
 * @module
 */
import { errno, errnoText, libc, O_CLOEXEC, O_NONBLOCK } from "../../ffi/libc.ts";
import { DeviceError } from "../device.ts";
import type { EngineInit, FromEngine, ToEngine } from "./engine_protocol.ts";
import { SIGNAL } from "./engine_protocol.ts";

export type Role = "tx" | "rx";

interface Engine {
  worker: Worker;
  waker: Waker;
  stopped: Promise<void>;
}

/** How the main thread wakes a worker that waits (Linux: a pipe it polls; Windows: an event it waits on). */
export interface Waker {
  /** The worker's init with this waker's end filled in. */
  give(init: EngineInit): EngineInit;
  wake(): void;
  close(): void;
}

/** Linux: a non-blocking pipe; the worker polls the read end, a byte written wakes it. */
export function pipeWaker(): Waker {
  const L = libc().symbols;
  const pipe = new Int32Array(2);
  if (L.pipe2(pipe, O_CLOEXEC | O_NONBLOCK) < 0) throw new DeviceError(`pipe2: ${errnoText(errno())}`);
  const one = new Uint8Array(1);
  return {
    give: (init) => ({ ...init, wakeFd: pipe[0] }),
    wake: () => void L.write(pipe[1], one, 1n),
    close() {
      L.close(pipe[0]);
      L.close(pipe[1]);
    },
  };
}

/** What the host reports to its device. */
export interface EngineEvents {
  /** A message other than ready/ack/stopped (ctl, epoch, float, closed, fatal). */
  message(m: FromEngine): void;
  /** A worker failed or crashed. */
  failed(message: string): void;
  /** A worker ended the tunnel (TCP closed by the peer, or broken: `error`). */
  closed(reason: string, error: boolean): void;
  /** A line for the log (e.g. an offload the kernel refused). */
  log(line: string): void;
}

/** Two engine workers and their wake-up pipes. */
export class EngineHost {
  readonly signal = new Int32Array(new SharedArrayBuffer(12));
  #engines = new Map<Role, Engine>();
  #nextAck = 1;
  #acks = new Map<number, () => void>();
  #events: EngineEvents;
  #ended: Promise<unknown>;

  #newWaker: () => Waker;

  /**
   * `ended`: resolves when the device's tunnel ends (pending acks stop waiting then); `waker` makes each worker's
   * wake-up (a pipe by default).
   */
  constructor(events: EngineEvents, ended: Promise<unknown>, waker: () => Waker = pipeWaker) {
    this.#events = events;
    this.#ended = ended;
    this.#newWaker = waker;
  }

  get running(): boolean {
    return this.#engines.size > 0;
  }

  /** Start one worker with `init` (its role, fds, stats; the wake-up and signal are filled in here). */
  async spawn(init: Omit<EngineInit, "t" | "signal" | "wakeFd">): Promise<void> {
    const role = init.role;
    const waker = this.#newWaker();
    const worker = new Worker(new URL("./engine_worker.ts", import.meta.url).href, { type: "module" });
    let readyResolve!: () => void, readyReject!: (e: Error) => void;
    const ready = new Promise<void>((res, rej) => ((readyResolve = res), (readyReject = rej)));
    let stoppedResolve!: () => void;
    const stopped = new Promise<void>((r) => (stoppedResolve = r));
    worker.onmessage = (e: MessageEvent<FromEngine>) => {
      const m = e.data;
      switch (m.t) {
        case "ready":
          readyResolve();
          break;
        case "ack":
          this.#acks.get(m.ack)?.();
          this.#acks.delete(m.ack);
          break;
        case "stopped":
          stoppedResolve();
          break;
        case "log":
          this.#events.log(m.line);
          break;
        case "closed":
          stoppedResolve();
          this.#events.closed(m.reason, m.error);
          break;
        case "fatal":
          stoppedResolve();
          readyReject(new DeviceError(m.message));
          this.#events.failed(`${m.role} engine: ${m.message}`);
          break;
        default:
          this.#events.message(m);
      }
    };
    worker.onerror = (e) => {
      e.preventDefault();
      stoppedResolve();
      readyReject(new DeviceError(e.message));
      this.#events.failed(`${role} engine crashed: ${e.message}`);
    };
    this.#engines.set(role, { worker, waker, stopped });
    worker.postMessage(waker.give({
      ...init,
      t: "init",
      signal: this.signal.buffer as SharedArrayBuffer,
      wakeFd: -1,
    }));
    await ready;
  }

  /** Post a message (no waiting). */
  post(role: Role | "both", m: ToEngine): void {
    for (const r of role === "both" ? (["tx", "rx"] as Role[]) : [role]) {
      const e = this.#engines.get(r);
      if (!e) continue;
      e.worker.postMessage(m);
      Atomics.add(this.signal, r === "tx" ? SIGNAL.tx : SIGNAL.rx, 1);
      e.waker.wake();
    }
  }

  /** Post and wait until the workers applied it (so that, as with an IOCTL, it is in force on return). */
  async apply(role: Role | "both", m: ToEngine): Promise<void> {
    const roles = role === "both" ? (["tx", "rx"] as Role[]) : [role];
    await Promise.all(roles.map((r) => {
      if (!this.#engines.has(r)) return Promise.resolve();
      const ack = this.#nextAck++;
      const done = new Promise<void>((resolve) => this.#acks.set(ack, resolve));
      this.post(r, { ...m, ack } as ToEngine);
      return Promise.race([done, this.#ended.then(() => {})]);
    }));
  }

  /** Stop both workers (they finish their loop; after 2 s they are terminated) and close their wake-ups. */
  async stop(): Promise<void> {
    Atomics.store(this.signal, SIGNAL.stop, 1);
    const engines = [...this.#engines.values()];
    for (const e of engines) e.waker.wake();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(engines.map((e) => e.stopped)),
      new Promise((r) => timer = setTimeout(r, 2000)),
    ]);
    clearTimeout(timer);
    for (const e of engines) {
      e.worker.terminate();
      e.waker.close();
    }
    this.#engines.clear();
    Atomics.store(this.signal, SIGNAL.stop, 0);
    Atomics.store(this.signal, SIGNAL.tx, 0);
    Atomics.store(this.signal, SIGNAL.rx, 0);
  }
}
