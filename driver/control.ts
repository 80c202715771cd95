/**
 * The local control socket: lets short-lived commands (`peer`, `key`, `stats`) reach the process that
 * owns a device (`start`), as `wg` reaches wireguard-go. A unix socket in a directory only its owner can
 * enter (0700), the socket itself 0600; one JSON request per line, one JSON response per line.
 * The socket lives in a directory per network namespace (interface names are per namespace). `events`
 * streams notifications, one line each, until the client goes. On Windows the channel is a named pipe with
 * an owner-only DACL and a mutual token proof (control_win.ts), an instance per client, `events` included.
 *
 * @example
 * ```ts
 * import { controlRequest } from "./control.ts";
 * const r = await controlRequest("ovpn0", { cmd: "stats" }); // throws ControlError when nothing runs
 * ```
 * @module
 */
import { cipherByName } from "../crypto/aead.ts";
import { type KeyMaterial, keyMaterialProblem } from "./datachannel/keyslot.ts";
import { PipeError, pipeName, pipeRequest, pipeStream, servePipe } from "./control_win.ts";

/** A request of the control protocol. */
export type ControlRequest =
  // `peerId` on stats/peer/key requests picks a peer of a server-mode instance (refused by a p2p one)
  | { cmd: "stats"; peerId?: number; all?: boolean }
  | { cmd: "peer.get"; peerId?: number }
  | { cmd: "peer.set"; keepaliveInterval: number; keepaliveTimeout: number; mss: number; peerId?: number }
  | { cmd: "peer.del"; peerId?: number }
  | { cmd: "peer.list" }
  | {
    cmd: "peer.new";
    proto: "udp" | "tcp";
    local: { address: string; port: number };
    remote: { address: string; port: number };
    listen?: boolean;
    peerId?: number;
    /** Server mode: the peer's VPN addresses. */
    vpnIps?: string[];
  }
  | { cmd: "key.new"; slot: number; peerId: number; key: WireKey }
  | { cmd: "key.swap"; peerId?: number }
  | { cmd: "key.del"; slot: number; peerId?: number }
  | { cmd: "key.epoch"; peerId?: number }
  | { cmd: "route"; peerId: number; cidr: string; add: boolean }
  // streams one JSON line per notification until the client goes
  | { cmd: "events" };

/** A response: `ok` and data, or an error message for the user. */
export type ControlResponse = { ok: true; [k: string]: unknown } | {
  ok: false;
  error: string;
  busy?: boolean;
};

/** KeyMaterial as it travels on the (owner-only) control socket. */
export interface WireKey {
  cipher: string;
  keyId: number;
  encryptKey: string;
  encryptNonceTail: string;
  decryptKey: string;
  decryptNonceTail: string;
  firstPacketId?: number;
  /** Epoch data keys: the keys are the E1 secrets. */
  epoch?: boolean;
}

const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const fromHex = (s: string) => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));

export function keyToWire(m: KeyMaterial): WireKey {
  return {
    cipher: m.cipher.name,
    keyId: m.keyId,
    encryptKey: toHex(m.encryptKey),
    encryptNonceTail: toHex(m.encryptNonceTail),
    decryptKey: toHex(m.decryptKey),
    decryptNonceTail: toHex(m.decryptNonceTail),
    firstPacketId: m.firstPacketId,
    ...(m.epoch ? { epoch: true } : {}),
  };
}

export function keyFromWire(w: WireKey): KeyMaterial {
  const cipher = typeof w?.cipher === "string" ? cipherByName(w.cipher) : undefined;
  if (!cipher) throw new ControlError(`key.new: unknown cipher '${w?.cipher}'`);
  for (const f of ["encryptKey", "encryptNonceTail", "decryptKey", "decryptNonceTail"] as const) {
    if (typeof w[f] !== "string" || !/^([0-9a-fA-F]{2})*$/.test(w[f])) {
      throw new ControlError(`key.new: '${f}' is not hex (an even number of 0-9, a-f)`);
    }
  }
  const m: KeyMaterial = {
    cipher,
    keyId: w.keyId,
    encryptKey: fromHex(w.encryptKey),
    encryptNonceTail: fromHex(w.encryptNonceTail),
    decryptKey: fromHex(w.decryptKey),
    decryptNonceTail: fromHex(w.decryptNonceTail),
    firstPacketId: w.firstPacketId,
    ...(w.epoch ? { epoch: true } : {}),
  };
  const bad = keyMaterialProblem(m);
  if (bad) throw new ControlError(`key.new: ${bad}`);
  return m;
}

/** A control-socket failure; the message is for the user. */
export class ControlError extends Error {
  constructor(message: string, readonly notRunning = false, readonly privilege = false) {
    super(message);
  }
}

/** The run directory root's instances use (Linux). */
const ROOT_RUNDIR = "/run/ovpn-dco-cli";

/** Directory of the control sockets. */
export function runDir(): string {
  const env = Deno.env.get("OVPN_DCO_CLI_RUNDIR");
  if (env) return env;
  if (Deno.build.os === "windows") {
    return `${Deno.env.get("LOCALAPPDATA") ?? "C:\\ProgramData"}\\ovpn-dco-cli`;
  }
  const uid = Deno.uid();
  if (uid === 0) return "/run/ovpn-dco-cli";
  return `${Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp"}/ovpn-dco-cli-${uid}`;
}

const WINDOWS = Deno.build.os === "windows";

/**
 * The network namespace this process lives in, as a directory name (`net-<inode of /proc/self/ns/net>`):
 * interface names are per namespace, so control sockets are too, although every namespace sees one /run.
 */
function netnsTag(): string {
  try {
    return `net-${Deno.statSync("/proc/self/ns/net").ino}`;
  } catch {
    return "net";
  }
}

/** Path of the control socket of interface `ifname` in this network namespace (Windows: its named pipe). */
export function socketPath(ifname: string): string {
  if (WINDOWS) return pipeName(ifname);
  return `${runDir()}/${netnsTag()}/${ifname.replace(/[^A-Za-z0-9_.-]/g, "_")}.sock`;
}

async function connectControl(path: string): Promise<Deno.Conn> {
  return await Deno.connect({ transport: "unix", path });
}

async function exchange(conn: Deno.Conn, req: unknown): Promise<ControlResponse> {
  try {
    await writeAll(conn, new TextEncoder().encode(JSON.stringify(req) + "\n"));
  } catch {
    // refused before the request went (too many clients): the refusal line is still there to read
  }
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    if (buf[n - 1] === 10) break;
  }
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  chunks.reduce((off, c) => (all.set(c, off), off + c.length), 0);
  const text = new TextDecoder().decode(all);
  if (!text.trim()) {
    throw new ControlError("the running instance closed the control connection without answering");
  }
  return JSON.parse(text) as ControlResponse;
}

/** A pipe failure (Windows) as the ControlError the commands report. */
async function fromPipe<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (e instanceof PipeError) throw new ControlError(e.message, e.notRunning);
    throw e;
  }
}

/** Connect to the control socket of `ifname`, or throw one ControlError saying why not and what to do. */
async function openControl(ifname: string): Promise<Deno.Conn> {
  const path = socketPath(ifname);
  try {
    return await connectControl(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.ConnectionRefused) {
      // a user who is not root cannot see root's instances (their sockets are root's alone): say so
      if (!WINDOWS && Deno.uid() !== 0 && !Deno.env.get("OVPN_DCO_CLI_RUNDIR") && rootRunDirExists()) {
        throw new ControlError(
          `no instance of this user runs on interface '${ifname}'; instances started as root answer root only: run this command as root (sudo)`,
          true,
          true,
        );
      }
      throw new ControlError(
        `no instance is running on interface '${ifname}' (no control socket at ${path}); start one with 'ovpn-dco-cli start --ifname ${ifname} ...'`,
        true,
      );
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new ControlError(
        `cannot reach the instance on '${ifname}': permission denied on ${path}; run as the user that started it (root: sudo)`,
        false,
        true,
      );
    }
    throw new ControlError(`cannot reach the instance on '${ifname}': ${(e as Error).message}`);
  }
}

function rootRunDirExists(): boolean {
  try {
    const st = Deno.statSync(ROOT_RUNDIR);
    return st.isDirectory && st.uid === 0;
  } catch (e) {
    return e instanceof Deno.errors.PermissionDenied;
  }
}

/** Send one request to the instance that owns `ifname`. */
export async function controlRequest(
  ifname: string,
  req: ControlRequest,
  timeoutMs = 30_000, // liveness only: a busy machine (Wine, a VM) can take seconds to answer
): Promise<ControlResponse> {
  if (WINDOWS) return await fromPipe(() => pipeRequest(ifname, runDir(), req, timeoutMs)) as ControlResponse;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const conn = await openControl(ifname);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let r: ControlResponse;
    try {
      r = await Promise.race([
        exchange(conn, req),
        new Promise<never>((_, rej) => {
          timer = setTimeout(
            () =>
              rej(
                new ControlError(`the instance on '${ifname}' did not answer within ${timeoutMs / 1000} s`),
              ),
            Math.max(1, deadline - Date.now()),
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    // the instance serves as many clients as it may at once: a refused one comes back a moment later
    if (r.ok === false && r.busy === true && Date.now() < deadline - 200) {
      await new Promise((res) => setTimeout(res, 20 + Math.random() * 80));
      continue;
    }
    return r;
  }
}

/**
 * Send `req` and hand every line that comes back to `onLine` until the instance closes the connection or
 * the user presses Ctrl-C (for `events`).
 */
export async function streamControl(
  ifname: string,
  req: ControlRequest,
  onLine: (o: Record<string, unknown>) => void,
): Promise<void> {
  if (WINDOWS) {
    let stop = false;
    const onSig = () => (stop = true);
    const sigs = ["SIGINT", "SIGBREAK"] as const;
    for (const sig of sigs) Deno.addSignalListener(sig, onSig);
    try {
      return await fromPipe(() => pipeStream(ifname, runDir(), req, onLine, () => stop));
    } finally {
      for (const sig of sigs) Deno.removeSignalListener(sig, onSig);
    }
  }
  const conn = await openControl(ifname);
  const stop = () => {
    try {
      conn.close();
    } catch { /* closed */ }
  };
  Deno.addSignalListener("SIGINT", stop);
  try {
    await writeAll(conn, new TextEncoder().encode(JSON.stringify(req) + "\n"));
    const dec = new TextDecoder();
    const buf = new Uint8Array(64 * 1024);
    let text = "";
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch {
        return; // closed by Ctrl-C
      }
      if (n === null) return;
      text += dec.decode(buf.subarray(0, n), { stream: true });
      for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n")) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        if (line.trim()) onLine(JSON.parse(line));
      }
    }
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
    stop();
  }
}

/** A running control server. */
export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

/**
 * Serve the control socket of `ifname`. Refuses when another live instance already serves it; removes
 * a stale socket left by a crashed one.
 */
export async function serveControl(
  ifname: string,
  handle: (req: ControlRequest) => Promise<ControlResponse>,
  events?: EventSource,
  limits: ControlLimits = {},
): Promise<ControlServer> {
  const dir = runDir();
  if (WINDOWS) {
    try {
      const server = servePipe(ifname, dir, (req) => handle(req as ControlRequest), events, limits);
      return { path: pipeName(ifname), close: () => server.close() };
    } catch (e) {
      if (e instanceof PipeError) throw new ControlError(e.message);
      throw e;
    }
  }
  const path = socketPath(ifname);
  const nsDir = path.slice(0, path.lastIndexOf("/"));
  // key material travels through this socket: its directories must be this user's alone, never a directory
  // someone else made first (another local user could otherwise listen there)
  for (const d of [dir, nsDir]) checkRunDir(d);
  await Deno.mkdir(nsDir, { recursive: true, mode: 0o700 });
  await Deno.chmod(dir, 0o700);
  await Deno.chmod(nsDir, 0o700);
  try {
    const conn = await connectControl(path);
    conn.close();
    throw new ControlError(
      `an instance is already running on interface '${ifname}' (control socket ${path}); stop it first or pick another --ifname`,
    );
  } catch (e) {
    if (e instanceof ControlError) throw e;
    await Deno.remove(path).catch(() => {});
  }
  let listener: Deno.UnixListener;
  try {
    listener = Deno.listen({ transport: "unix", path });
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      // another instance got there between our check and our listen
      throw new ControlError(
        `another instance is starting on interface '${ifname}' (control socket ${path}); stop it first or pick another --ifname`,
      );
    }
    throw e;
  }
  await Deno.chmod(path, 0o600);
  let closed = false;
  const maxClients = limits.maxClients ?? 64;
  // requests in progress, and `events` streams (long-lived by design: they have a cap of their own, so
  // subscribers, even ones that never read, cannot take the places of requests)
  const slots = { clients: 0, streams: 0, maxStreams: limits.maxStreams ?? 128 };
  (async () => {
    const said = new Set<string>(); // each kind of accept failure is logged once
    while (!closed) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (closed) break;
        // out of file descriptors and the like: say it once per kind, wait a moment, keep serving
        const what = (e as Error).message.split("\n")[0];
        if (!said.has(what)) console.error(`control socket: accept failed (${what}); still serving`);
        said.add(what);
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      if (slots.clients >= maxClients) {
        refuse(conn, `too many control connections at once (${maxClients}); try again`, true);
        continue;
      }
      slots.clients++;
      serveConn(conn, handle, events, limits, slots).catch(() => {});
    }
  })().catch(() => {});
  return {
    path,
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      try {
        listener.close();
      } catch { /* closed */ }
      try {
        Deno.removeSync(path);
      } catch { /* gone */ }
      return Promise.resolve();
    },
  };
}

const enc = new TextEncoder();

/** Write all of `b` (a connection's write may take only part of it: a large answer, a full buffer). */
async function writeAll(conn: Deno.Conn, b: Uint8Array): Promise<void> {
  for (let off = 0; off < b.length;) off += await conn.write(off ? b.subarray(off) : b);
}

/** Bounds of the control server (defaults for real use; tests shorten them). */
export interface ControlLimits {
  /** Connections served at once; more get one error line (default 64). */
  maxClients?: number;
  /** A client must send its request line within this (default 10 s). */
  idleMs?: number;
  /** `events` subscribers at once (apart from the requests' connections); more get one error line (default 128). */
  maxStreams?: number;
  /** Notifications queued for one `events` subscriber that does not read; more drop it (default 1024). */
  maxQueued?: number;
}

/** One error line, then close (no waiting on a client that may not read). */
function refuse(conn: Deno.Conn, error: string, busy = false) {
  conn.write(enc.encode(JSON.stringify({ ok: false, error, ...(busy ? { busy } : {}) }) + "\n")).catch(
    () => {},
  ).finally(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  });
}

/** A run directory that exists must be a directory of this user's, mode 0700 (one clear line otherwise). */
export function checkRunDir(d: string): void {
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(d);
  } catch {
    return; // made below, 0700
  }
  const fix = `remove it (or set OVPN_DCO_CLI_RUNDIR to a directory of your own)`;
  if (st.isSymlink || !st.isDirectory) {
    throw new ControlError(`the run directory ${d} is not a plain directory; ${fix}`);
  }
  if (st.uid !== null && st.uid !== Deno.uid()) {
    throw new ControlError(`the run directory ${d} belongs to user ${st.uid}, not to you; ${fix}`);
  }
  if (st.mode !== null && (st.mode & 0o077) !== 0) {
    throw new ControlError(
      `the run directory ${d} has mode ${
        (st.mode & 0o777).toString(8)
      }, open to others; 'chmod 700 ${d}' or ${fix}`,
    );
  }
}

/** Answer `events`: an ok line, then one line per notification until the client closes the connection. */
async function streamEvents(conn: Deno.Conn, events: EventSource, maxQueued = 1024) {
  let gone!: () => void;
  const closed = new Promise<void>((r) => (gone = r));
  let chain = Promise.resolve(true);
  let queued = 0;
  const send = (e: Record<string, unknown>) => {
    // a subscriber that does not read is dropped once its queue is full (memory stays bounded)
    if (++queued > maxQueued) {
      gone();
      try {
        conn.close();
      } catch { /* closed */ }
      return Promise.resolve(false);
    }
    return chain = chain.then(async (ok) => {
      queued--;
      if (!ok) return false;
      try {
        await writeAll(conn, enc.encode(JSON.stringify(e) + "\n"));
        return true;
      } catch {
        gone();
        return false;
      }
    });
  };
  if (!(await send({ ok: true, events: true }))) return;
  const stop = events(send);
  // the client sends nothing more: a read that ends means it went away
  (async () => {
    const b = new Uint8Array(64);
    try {
      while ((await conn.read(b)) !== null);
    } catch { /* reset */ }
    gone();
  })();
  await closed;
  stop();
}

/** A subscription to notifications: `send` writes one line (false once the client is gone); returns the
 * function that ends the subscription. */
export type EventSource = (send: (event: Record<string, unknown>) => Promise<boolean>) => () => void;

async function serveConn(
  conn: Deno.Conn,
  handle: (req: ControlRequest) => Promise<ControlResponse>,
  events: EventSource | undefined,
  limits: ControlLimits,
  slots: { clients: number; streams: number; maxStreams: number },
) {
  let counted: "clients" | "streams" | null = "clients";
  const release = () => {
    if (counted) slots[counted]--;
    counted = null;
  };
  // a client that connects and sends nothing (or no whole line) is closed after idleMs
  const idle = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, limits.idleMs ?? 10_000);
  try {
    const buf = new Uint8Array(64 * 1024);
    let text = "";
    try {
      while (!text.includes("\n")) {
        const n = await conn.read(buf);
        if (n === null) return;
        text += new TextDecoder().decode(buf.subarray(0, n));
        if (text.length > 1 << 20) {
          const error = "request too long (over 1 MB without a newline)";
          await conn.write(enc.encode(JSON.stringify({ ok: false, error }) + "\n")).catch(() => {});
          return;
        }
      }
    } catch {
      return; // closed by the idle timer, or reset
    } finally {
      clearTimeout(idle);
    }
    let resp: ControlResponse;
    try {
      let req: ControlRequest;
      try {
        req = JSON.parse(text.slice(0, text.indexOf("\n")));
      } catch (e) {
        throw new Error(
          `the request is not valid JSON (${(e as Error).message}); send one JSON object per line`,
        );
      }
      if (req.cmd === "events" && events) {
        // from a request's place to a stream's
        release();
        if (slots.streams >= slots.maxStreams) {
          const error = `too many events subscribers at once (${slots.maxStreams}); try again later`;
          await conn.write(enc.encode(JSON.stringify({ ok: false, error }) + "\n")).catch(() => {});
          return;
        }
        slots.streams++;
        counted = "streams";
        await streamEvents(conn, events, limits.maxQueued);
        return;
      }
      resp = await handle(req);
    } catch (e) {
      resp = { ok: false, error: (e as Error).message };
    }
    await writeAll(conn, new TextEncoder().encode(JSON.stringify(resp) + "\n"));
  } finally {
    release();
    try {
      conn.close();
    } catch { /* closed */ }
  }
}
