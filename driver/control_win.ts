/**
 * The control channel on Windows: a named pipe `\\.\pipe\ovpn-dco-cli\<ifname>` that only SYSTEM,
 * Administrators and this process's owner can open (an explicit, protected DACL; for an elevated
 * administrator the owner is Administrators, so an unelevated process of the same user is kept out), an
 * instance per client (the first with FILE_FLAG_FIRST_PIPE_INSTANCE: a pipe squatted by someone else makes
 * `start` refuse; later ones need the owner's access to create), no remote clients. The pipe vanishes with the process, so no endpoint outlives it.
 *
 * On top, both sides prove that they hold the instance's token before anything else is said: the client
 * sends a nonce, the server answers with its nonce and HMAC(token, server ‖ Nc ‖ Ns), and only after checking
 * it does the client send HMAC(token, client ‖ Ns ‖ Nc) with its request (which may carry key material). The
 * token lives in a file in the run directory, which gets the same owner-only DACL (whoever else owns that
 * directory makes `start` refuse). A token file left by a crashed instance is never trusted on its own: a pipe
 * that cannot prove it is refused before the request leaves.
 *
 * @example
 * ```ts
 * import { pipeName } from "./control_win.ts";
 * pipeName("OpenVPN Data Channel Offload"); // \\.\pipe\ovpn-dco-cli\OpenVPN_Data_Channel_Offload
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { kernel32, ntdll, ntSuccess, STATUS, system32, wcstr } from "../ffi/kernel32.ts";
import {
  CTRL_CLOSE_EVENT,
  CTRL_LOGOFF_EVENT,
  CTRL_SHUTDOWN_EVENT,
  DACL_SECURITY_INFORMATION,
  FILE_FLAG_FIRST_PIPE_INSTANCE,
  FSCTL_PIPE_LISTEN,
  OWNER_SECURITY_INFORMATION,
  PIPE_ACCESS_DUPLEX,
  PIPE_K32_SYMBOLS,
  PIPE_NTDLL_SYMBOLS,
  PIPE_REJECT_REMOTE_CLIENTS,
  PIPE_TYPE_BYTE,
  PROTECTED_DACL_SECURITY_INFORMATION,
  SDDL_REVISION_1,
  SE_FILE_OBJECT,
  SE_KERNEL_OBJECT,
  SEC_ADVAPI32_SYMBOLS,
  STATUS_ACCESS_DENIED,
  STATUS_INSTANCE_NOT_AVAILABLE,
  STATUS_OBJECT_NAME_NOT_FOUND,
  STATUS_PIPE_BUSY,
  STATUS_PIPE_CONNECTED,
  STATUS_PIPE_NOT_AVAILABLE,
  TOKEN_OWNER,
  TOKEN_QUERY,
  TOKEN_USER,
} from "../ffi/winsec.ts";
import { GENERIC_READ_WRITE, openHandleStatus, overlapped } from "./win_io.ts";

const FILE_FLAG_OVERLAPPED = 0x40000000;
/**
 * A client gets this long for each step of its exchange (its hello, its request; the answer's write): a
 * liveness bound (a client under Wine on a busy machine took over 10 s for one step), not a measure of speed.
 */
const STEP_MS = 30_000;
const MAX_LINE = 1 << 20;

let k: Deno.DynamicLibrary<typeof PIPE_K32_SYMBOLS>["symbols"] | undefined;
let adv: Deno.DynamicLibrary<typeof SEC_ADVAPI32_SYMBOLS>["symbols"] | undefined;
let nt: Deno.DynamicLibrary<typeof PIPE_NTDLL_SYMBOLS>["symbols"] | undefined;
const k32 = () => (k ??= Deno.dlopen(system32("kernel32.dll"), PIPE_K32_SYMBOLS).symbols);
const advapi = () => (adv ??= Deno.dlopen(system32("advapi32.dll"), SEC_ADVAPI32_SYMBOLS).symbols);
const ntfs = () => (nt ??= Deno.dlopen(system32("ntdll.dll"), PIPE_NTDLL_SYMBOLS).symbols);

/** A failure of the Windows control channel; the message is for the user. */
export class PipeError extends Error {
  constructor(message: string, readonly notRunning = false) {
    super(message);
  }
}

const safe = (ifname: string) => ifname.replace(/[^A-Za-z0-9_.-]/g, "_");

/** The control pipe of an interface. */
export function pipeName(ifname: string): string {
  return `\\\\.\\pipe\\ovpn-dco-cli\\${safe(ifname)}`;
}

/** The token file of an interface, in `dir`. */
export function tokenPath(dir: string, ifname: string): string {
  return `${dir}\\${safe(ifname)}.token`;
}

function readWide(p: Deno.PointerValue): string {
  if (p === null) return "";
  const v = new Deno.UnsafePointerView(p);
  let s = "";
  for (let off = 0;; off += 2) {
    const c = v.getUint16(off);
    if (c === 0) return s;
    s += String.fromCharCode(c);
  }
}

function pointerAt(b: Uint8Array): Deno.PointerValue {
  return Deno.UnsafePointer.create(new DataView(b.buffer).getBigUint64(0, true));
}

/** The LocalAlloc'ed UTF-16 string whose pointer an API wrote to `out`, read and freed. */
function takeWide(out: Uint8Array): string {
  const str = pointerAt(out);
  try {
    return readWide(str);
  } finally {
    k32().LocalFree(str);
  }
}

/** The string SID of this process's default owner (an elevated administrator's is Administrators). */
export function ownerSid(): string {
  return tokenSid(TOKEN_OWNER);
}

/** The string SID of this process's user. */
export function userSid(): string {
  return tokenSid(TOKEN_USER);
}

function tokenSid(which: number): string {
  const a = advapi();
  const h = new Uint8Array(8);
  if (!a.OpenProcessToken(k32().GetCurrentProcess(), TOKEN_QUERY, h)) {
    throw new PipeError("OpenProcessToken failed");
  }
  const token = pointerAt(h);
  try {
    const buf = new Uint8Array(512);
    const len = new Uint32Array(1);
    if (!a.GetTokenInformation(token, which, buf, buf.length, new Uint8Array(len.buffer))) {
      throw new PipeError(`GetTokenInformation(${which}) failed`);
    }
    const out = new Uint8Array(8);
    if (!a.ConvertSidToStringSidW(pointerAt(buf), out)) throw new PipeError("ConvertSidToStringSidW failed");
    return takeWide(out);
  } finally {
    kernel32().CloseHandle(token);
  }
}

/** The SDDL of the channel's objects: only SYSTEM, Administrators and `owner`; protected from inheritance. */
export function ownerOnlySddl(owner: string, container = false): string {
  const inherit = container ? "OICI" : "";
  const ace = (sid: string) => `(A;${inherit};GA;;;${sid})`;
  const owners = new Set(["SY", "BA", owner === "S-1-5-32-544" ? "BA" : owner === "S-1-5-18" ? "SY" : owner]);
  return `O:${owner}D:P${[...owners].map(ace).join("")}`;
}

/** Run `fn` with a SECURITY_ATTRIBUTES (and its descriptor) made from `sddl`. */
function withSecurity<T>(sddl: string, fn: (sa: Uint8Array, sd: Deno.PointerValue) => T): T {
  const out = new Uint8Array(8);
  if (
    !advapi().ConvertStringSecurityDescriptorToSecurityDescriptorW(wcstr(sddl), SDDL_REVISION_1, out, null)
  ) {
    throw new PipeError(`cannot build the security descriptor ${sddl}`);
  }
  const sd = pointerAt(out);
  try {
    const sa = new Uint8Array(24); // SECURITY_ATTRIBUTES: nLength, lpSecurityDescriptor, bInheritHandle
    const dv = new DataView(sa.buffer);
    dv.setUint32(0, 24, true);
    dv.setBigUint64(8, Deno.UnsafePointer.value(sd), true);
    return fn(sa, sd);
  } finally {
    k32().LocalFree(sd);
  }
}

/** The SDDL (owner and DACL) of a file or directory, or of an open kernel object handle. */
export function securityOf(target: string | Deno.PointerValue): string {
  const a = advapi();
  const ppsd = new Uint8Array(8);
  const info = OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION;
  const r = typeof target === "string"
    ? a.GetNamedSecurityInfoW(wcstr(target), SE_FILE_OBJECT, info, null, null, null, null, ppsd)
    : a.GetSecurityInfo(target, SE_KERNEL_OBJECT, info, null, null, null, null, ppsd);
  if (r !== 0) {
    throw new PipeError(
      `reading the security of ${typeof target === "string" ? target : "a handle"} failed (${r})`,
    );
  }
  const sd = pointerAt(ppsd);
  try {
    const out = new Uint8Array(8);
    if (!a.ConvertSecurityDescriptorToStringSecurityDescriptorW(sd, SDDL_REVISION_1, info, out, null)) {
      throw new PipeError("ConvertSecurityDescriptorToStringSecurityDescriptorW failed");
    }
    return takeWide(out);
  } finally {
    k32().LocalFree(sd);
  }
}

/**
 * Make `dir` the channel's run directory: created with, or given, the owner-only DACL. A directory owned by
 * anyone but this owner, Administrators or SYSTEM is refused (its owner could change the DACL back).
 */
export function secureRunDir(dir: string): void {
  const owner = ownerSid();
  const sddl = ownerOnlySddl(owner, true);
  withSecurity(sddl, (sa, sd) => {
    k32().CreateDirectoryW(wcstr(dir), sa); // fails harmlessly when it exists: then checked and fixed below
    const have = /^O:([^GD]+)/.exec(securityOf(dir))?.[1] ?? "";
    // this process's default owner or its user (who owns what it creates unelevated), or the system
    const ok = [owner, userSid(), "BA", "SY", "S-1-5-32-544", "S-1-5-18"];
    if (!ok.includes(have)) {
      throw new PipeError(
        `the control directory ${dir} belongs to someone else (${have}); remove it or set OVPN_DCO_CLI_RUNDIR`,
      );
    }
    const info = (DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION) >>> 0;
    if (!advapi().SetFileSecurityW(wcstr(dir), info, sd)) {
      throw new PipeError(`cannot restrict the control directory ${dir} to its owner`);
    }
    // read it back: no allow entry may name anyone but these
    const strangers = allowTrustees(securityOf(dir)).filter((t) => !ok.includes(t));
    if (strangers.length) {
      throw new PipeError(
        `the control directory ${dir} still grants access to ${
          strangers.join(", ")
        }; remove it or set OVPN_DCO_CLI_RUNDIR`,
      );
    }
  });
}

/** The trustees of the allow entries of an SDDL string's DACL. */
export function allowTrustees(sddl: string): string[] {
  const dacl = sddl.slice(sddl.indexOf("D:"));
  return [...dacl.matchAll(/\(A;[^;]*;[^;]*;[^;]*;[^;]*;([^)]+)\)/g)].map((m) => m[1]);
}

const hmac = (token: Buffer, label: string, a: string, b: string) =>
  createHmac("sha256", token).update(`ovpn-dco-cli ${label}\n${a}\n${b}`).digest("hex");

function proofOk(got: unknown, want: string): boolean {
  if (typeof got !== "string" || got.length !== want.length) return false;
  return timingSafeEqual(Buffer.from(got), Buffer.from(want));
}

/** Line-oriented, deadline-bound reads and writes on an overlapped pipe handle (exported for tests). */
export class PipeConn {
  #buf = "";
  #chunk = new Uint8Array(64 * 1024);
  #offset = new Uint8Array(8);
  /** `deadline`: when the conversation gives up (Infinity for a stream that waits for events). */
  constructor(readonly h: Deno.PointerValue, public deadline: number, readonly cancelled: () => boolean) {}

  #left(): number {
    return Math.max(1, this.deadline - Date.now());
  }

  /** Why the last `readLine` returned null: the other end closed the pipe, or the deadline passed. */
  ended: "closed" | "timeout" | null = null;

  async readLine(): Promise<string | null> {
    for (;;) {
      const nl = this.#buf.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        return line;
      }
      if (this.#buf.length > MAX_LINE || Date.now() >= this.deadline) {
        this.ended = "timeout";
        return null;
      }
      const h = this.h, chunk = this.#chunk, off = this.#offset;
      const r = await overlapped(
        h,
        (ov) => ntdll().NtReadFile(h, ov.event, null, null, ov.buf, chunk, chunk.length, off, null),
        [chunk, off],
        "reading the control pipe",
        this.#left(),
        this.cancelled,
      );
      if (!ntSuccess(r.status) || r.info === 0) {
        this.ended = r.timedOut ? "timeout" : "closed";
        return null;
      }
      this.#buf += new TextDecoder().decode(chunk.subarray(0, r.info));
    }
  }

  async writeLine(o: unknown): Promise<boolean> {
    const data = new TextEncoder().encode(JSON.stringify(o) + "\n");
    const h = this.h, off = this.#offset;
    const r = await overlapped(
      h,
      (ov) => ntdll().NtWriteFile(h, ov.event, null, null, ov.buf, data, data.length, off, null),
      [data, off],
      "writing the control pipe",
      this.#left(),
      this.cancelled,
    );
    return ntSuccess(r.status) && r.info === data.length;
  }
}

const parse = (line: string | null): Record<string, unknown> | null => {
  if (line === null) return null;
  try {
    const o = JSON.parse(line);
    return typeof o === "object" && o !== null && !Array.isArray(o) ? o : null;
  } catch {
    return null;
  }
};

const NONCE = /^[0-9a-f]{32}$/;

/** Token files of the pipes this process serves: removed on a console close, log-off or shutdown. */
const liveTokens = new Set<string>();
const CONSOLE_HANDLER = { parameters: ["u32"], result: "i32" } as const;
let consoleHandler: Deno.UnsafeCallback<typeof CONSOLE_HANDLER> | undefined;

/**
 * What a console close (or log-off, shutdown) does before Windows ends the process: remove the token files
 * (the pipes and the device handles go with the process). Exported for tests, which cannot close a console
 * under Wine. Returns 0: the next handler (Windows' default: terminate) runs.
 */
export function onConsoleEvent(type: number): number {
  if (type === CTRL_CLOSE_EVENT || type === CTRL_LOGOFF_EVENT || type === CTRL_SHUTDOWN_EVENT) {
    for (const t of liveTokens) {
      try {
        Deno.removeSync(t);
      } catch { /* gone */ }
    }
    liveTokens.clear();
  }
  return 0;
}

function watchConsole() {
  if (consoleHandler) return;
  const cb = Deno.UnsafeCallback.threadSafe(CONSOLE_HANDLER, onConsoleEvent);
  cb.unref(); // it must not keep the process alive
  k32().SetConsoleCtrlHandler(cb.pointer, 1);
  consoleHandler = cb;
}

/** A running control pipe. */
export interface PipeServer {
  close(): Promise<void>;
}

/** Subscribe `send` to notifications; returns the unsubscribe function (control.ts's EventSource). */
export type PipeEvents = (send: (o: Record<string, unknown>) => Promise<boolean>) => () => void;

/** Pipe instances at most: one per client at once (an `events` stream holds one for as long as it runs). */
const MAX_INSTANCES = 16;
/** A stream's write that the client does not take within this long ends the stream. */
const STREAM_WRITE_MS = 5000;

function createInstance(name: string, owner: string, first: boolean): Deno.PointerValue {
  const h = withSecurity(ownerOnlySddl(owner), (sa) =>
    k32().CreateNamedPipeW(
      wcstr(name),
      (PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (first ? FILE_FLAG_FIRST_PIPE_INSTANCE : 0)) >>> 0,
      PIPE_TYPE_BYTE | PIPE_REJECT_REMOTE_CLIENTS,
      MAX_INSTANCES,
      65536,
      65536,
      0,
      sa,
    ));
  return h === null || Deno.UnsafePointer.value(h) === 0xffffffffffffffffn ? null : h;
}

/**
 * Serve the control pipe of `ifname` with a fresh token written to `dir`. Refuses when the pipe name is
 * taken (another instance, or anyone squatting it). Each client gets its own pipe instance, so an `events`
 * stream (served when `events` is given) does not hold up the requests of others.
 */
export function servePipe(
  ifname: string,
  dir: string,
  handle: (req: unknown) => Promise<unknown>,
  events?: PipeEvents,
  limits: { idleMs?: number; maxQueued?: number } = {},
): PipeServer {
  const stepMs = limits.idleMs ?? STEP_MS, maxQueued = limits.maxQueued ?? 1024;
  secureRunDir(dir);
  const name = pipeName(ifname);
  const owner = ownerSid();
  // FILE_FLAG_FIRST_PIPE_INSTANCE refuses a pipe that exists on Windows (Wine does not enforce it): look first
  const probe = openHandleStatus(name, GENERIC_READ_WRITE, 0);
  if (probe.h !== null) kernel32().CloseHandle(probe.h);
  const exists = probe.h !== null || (probe.status >>> 0) !== STATUS_OBJECT_NAME_NOT_FOUND;
  let h = exists ? null : createInstance(name, owner, true);
  if (h === null) {
    throw new PipeError(
      `the control pipe ${name} is already held by another process (an instance on '${ifname}', or someone else); stop it first or pick another --ifname`,
    );
  }
  const token = randomBytes(32);
  const tfile = tokenPath(dir, ifname);
  try {
    Deno.removeSync(tfile);
  } catch { /* none */ }
  Deno.writeTextFileSync(tfile, token.toString("hex"), { createNew: true });
  liveTokens.add(tfile);
  watchConsole();
  let closed = false;
  const active = new Set<Promise<void>>();
  const serveOne = async (conn: Deno.PointerValue) => {
    const c = new PipeConn(conn, Date.now() + stepMs, () => closed);
    await converse(c, token, handle, events, stepMs, maxQueued).catch(() => {});
    // DisconnectNamedPipe throws away what the client has not read yet (an answer written a moment ago): wait
    // until the client has closed its end (a read then ends), within one step
    c.deadline = Date.now() + stepMs;
    while ((await c.readLine().catch(() => null)) !== null) { /* a client says nothing more */ }
  };
  const loop = (async () => {
    while (!closed) {
      const cur = h;
      const r = await overlapped(
        cur,
        (ov) =>
          ntfs().NtFsControlFile(cur, ov.event, null, null, ov.buf, FSCTL_PIPE_LISTEN, null, 0, null, 0),
        [],
        "waiting for a control client",
        Infinity,
        () => closed,
      ).catch(() => null);
      if (closed || r === null) break;
      if (r.status !== STATUS.SUCCESS && r.status !== STATUS_PIPE_CONNECTED) {
        k32().DisconnectNamedPipe(cur);
        continue;
      }
      const next = createInstance(name, owner, false);
      if (next === null) {
        // every instance is busy: this client is served before the next one is listened for
        await serveOne(cur);
        k32().DisconnectNamedPipe(cur);
        continue;
      }
      h = next;
      const task = serveOne(cur).finally(() => {
        k32().DisconnectNamedPipe(cur);
        kernel32().CloseHandle(cur);
        active.delete(task);
      });
      active.add(task);
    }
  })();
  return {
    async close() {
      if (closed) return;
      closed = true;
      await loop;
      await Promise.allSettled([...active]);
      kernel32().CloseHandle(h);
      liveTokens.delete(tfile);
      try {
        Deno.removeSync(tfile);
      } catch { /* gone */ }
    },
  };
}

/**
 * The server's half of one conversation: prove the token, check the client's proof, then handle the request,
 * or stream notifications until the client goes or the server closes.
 */
async function converse(
  c: PipeConn,
  token: Buffer,
  handle: (req: unknown) => Promise<unknown>,
  events: PipeEvents | undefined,
  stepMs: number,
  maxQueued: number,
) {
  // each step gets its own deadline: an idle client is dropped, a slow request still gets its answer written
  const step = () => (c.deadline = Date.now() + stepMs);
  const hello = parse(await c.readLine());
  const nc = hello?.nonce;
  if (typeof nc !== "string" || !NONCE.test(nc)) return;
  const ns = randomBytes(16).toString("hex");
  step();
  if (!(await c.writeLine({ nonce: ns, proof: hmac(token, "server", nc, ns) }))) return;
  step();
  const msg = parse(await c.readLine());
  step();
  if (!msg || !proofOk(msg.proof, hmac(token, "client", ns, nc))) {
    await c.writeLine({ ok: false, error: "the client did not prove it holds the control token" });
    return;
  }
  const req = msg.req as Record<string, unknown> | undefined;
  if (events && req?.cmd === "events") return await streamEvents(c, events, maxQueued);
  let resp: unknown;
  try {
    resp = await handle(msg.req);
  } catch (e) {
    resp = { ok: false, error: (e as Error).message };
  }
  step();
  await c.writeLine(resp);
}

/**
 * An ok line, then one line per notification, each write bounded; ends when the client closes its end, or
 * when it does not read: a write not taken within STREAM_WRITE_MS, or more than `maxQueued` notifications
 * waiting, drops the subscriber (its memory stays bounded).
 */
async function streamEvents(c: PipeConn, events: PipeEvents, maxQueued: number) {
  if (!(await c.writeLine({ ok: true, events: true }))) return;
  let chain = Promise.resolve(true);
  let queued = 0, dropped = false;
  const send = (o: Record<string, unknown>) => {
    if (dropped || ++queued > maxQueued) {
      dropped = true;
      return Promise.resolve(false);
    }
    return chain = chain.then(async (ok) => {
      queued--;
      const wrote = ok && !dropped &&
        await new PipeConn(c.h, Date.now() + STREAM_WRITE_MS, c.cancelled).writeLine(o).catch(() => false);
      if (!wrote) dropped = true;
      return wrote;
    });
  };
  const stop = events(send);
  try {
    // the client says nothing more: this returns when it goes, when the server closes, or once it is dropped
    await new PipeConn(c.h, Infinity, () => c.cancelled() || dropped).readLine();
  } finally {
    stop();
    await chain;
  }
}

/** Open the pipe of `ifname`, prove both ways and send `req`; the connection, ready for the answer. */
async function pipeSend(
  ifname: string,
  dir: string,
  req: unknown,
  timeoutMs: number,
  cancelled: () => boolean,
): Promise<PipeConn> {
  const name = pipeName(ifname);
  let token: Buffer;
  try {
    token = Buffer.from((await Deno.readTextFile(tokenPath(dir, ifname))).trim(), "hex");
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new PipeError(
        `no instance is running on interface '${ifname}' (no control token in ${dir})`,
        true,
      );
    }
    throw new PipeError(
      `cannot read the control token of '${ifname}': ${
        (e as Error).message
      }; run as the user that started it, elevated if it is`,
    );
  }
  const deadline = Date.now() + timeoutMs;
  let h: Deno.PointerValue = null;
  for (;;) {
    const r = openHandleStatus(name, GENERIC_READ_WRITE, 0);
    if (r.h !== null) {
      h = r.h;
      break;
    }
    const st = r.status >>> 0;
    if (st === STATUS_OBJECT_NAME_NOT_FOUND) {
      throw new PipeError(`no instance is running on interface '${ifname}' (no control pipe ${name})`, true);
    }
    if (st === STATUS_ACCESS_DENIED) {
      throw new PipeError(
        `cannot reach the instance on '${ifname}': access denied on ${name}; run as the user that started it (elevated, if it is)`,
      );
    }
    const busy = [STATUS_PIPE_NOT_AVAILABLE, STATUS_INSTANCE_NOT_AVAILABLE, STATUS_PIPE_BUSY].includes(st);
    if (!busy || Date.now() > deadline) {
      throw new PipeError(`cannot open the control pipe ${name} (NTSTATUS 0x${st.toString(16)})`);
    }
    await new Promise((r) => setTimeout(r, 30));
  }
  try {
    const c = new PipeConn(h, deadline, cancelled);
    const nc = randomBytes(16).toString("hex");
    if (!(await c.writeLine({ nonce: nc }))) {
      throw new PipeError(`the instance on '${ifname}' closed the control pipe`);
    }
    const hello = parse(await c.readLine());
    const ns = hello?.nonce;
    if (typeof ns !== "string" || !NONCE.test(ns) || !proofOk(hello?.proof, hmac(token, "server", nc, ns))) {
      throw new PipeError(
        `the control pipe of '${ifname}' is not served by the instance that wrote its token (a stale or foreign endpoint); nothing was sent`,
      );
    }
    if (!(await c.writeLine({ proof: hmac(token, "client", ns, nc), req }))) {
      throw new PipeError(`the instance on '${ifname}' closed the control pipe`);
    }
    return c;
  } catch (e) {
    kernel32().CloseHandle(h);
    throw e;
  }
}

/** One request to the instance on `ifname` through its pipe, after the mutual proof. */
export async function pipeRequest(
  ifname: string,
  dir: string,
  req: unknown,
  timeoutMs: number,
): Promise<unknown> {
  const c = await pipeSend(ifname, dir, req, timeoutMs, () => false);
  try {
    const resp = parse(await c.readLine());
    if (!resp) {
      throw new PipeError(
        c.ended === "closed"
          ? `the instance on '${ifname}' closed the control pipe without answering (it is ending, or gave up waiting for this request)`
          : `the instance on '${ifname}' did not answer within ${timeoutMs / 1000} s`,
      );
    }
    return resp;
  } finally {
    kernel32().CloseHandle(c.h);
  }
}

/**
 * Send `req` (`events`) and hand every line that comes back to `onLine` until the instance closes the pipe
 * or `cancelled()` (Ctrl-C).
 */
export async function pipeStream(
  ifname: string,
  dir: string,
  req: unknown,
  onLine: (o: Record<string, unknown>) => void,
  cancelled: () => boolean,
): Promise<void> {
  const c = await pipeSend(ifname, dir, req, 5000, cancelled);
  try {
    c.deadline = Infinity;
    for (;;) {
      const line = await c.readLine();
      if (line === null) return;
      const o = parse(line);
      if (o) onLine(o);
    }
  } finally {
    kernel32().CloseHandle(c.h);
  }
}
