/**
 * Windows side, under Wine: the control channel is a named pipe with an owner-only DACL, and neither side
 * says anything before the other has proven it holds the instance's token. Run by tests/windows_test.ts.
 * (Wine runs every process as one user, so "another user" is shown through the DACLs and through endpoints
 * that do not hold the token: a foreign pipe and a client without the token.)
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../assert.ts";
import {
  ControlError,
  type ControlRequest,
  controlRequest,
  serveControl,
  streamControl,
} from "../../driver/control.ts";
import {
  allowTrustees as trustees,
  onConsoleEvent,
  ownerSid,
  PipeConn,
  pipeName,
  securityOf,
  servePipe,
  tokenPath,
  userSid,
} from "../../driver/control_win.ts";
import { GENERIC_READ_WRITE, openHandleStatus } from "../../driver/win_io.ts";
import { kernel32 } from "../../ffi/kernel32.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

function withRunDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = Deno.makeTempDirSync() + "\\run";
  Deno.env.set("OVPN_DCO_CLI_RUNDIR", dir);
  return fn(dir).finally(() => Deno.env.delete("OVPN_DCO_CLI_RUNDIR"));
}

Deno.test({
  ...opts,
  name: "control (Windows): a request and its answer through the pipe, after both proofs",
  fn: () =>
    withRunDir(async () => {
      const seen: ControlRequest[] = [];
      const srv = await serveControl("wc-rt", (req) => {
        seen.push(req);
        return Promise.resolve({ ok: true, echo: req.cmd });
      });
      try {
        const r = await controlRequest("wc-rt", { cmd: "stats" });
        assertEquals(r, { ok: true, echo: "stats" });
        assertEquals((await controlRequest("wc-rt", { cmd: "peer.get" })).ok, true);
        assertEquals(seen.map((s) => s.cmd), ["stats", "peer.get"]);
      } finally {
        await srv.close();
      }
      // gone with the instance: nothing answers, and the user is told so
      const e = await assertRejects(
        () => controlRequest("wc-rt", { cmd: "stats" }),
        "no instance is running",
      );
      assert(e instanceof ControlError && e.notRunning);
    }),
});

Deno.test({
  ...opts,
  name: "control (Windows): the pipe and the run directory allow only SYSTEM, Administrators and the owner",
  fn: () =>
    withRunDir(async (dir) => {
      const srv = servePipe("wc-acl", dir, () => Promise.resolve({ ok: true }));
      try {
        const owner = ownerSid();
        const allowed = new Set(["SY", "BA", owner, userSid(), "S-1-5-18", "S-1-5-32-544"]);
        // (Wine keeps the entries but drops the "protected" flag: D:P on Windows, D: under Wine)
        const dirSd = securityOf(dir);
        assertMatch(dirSd, "D:");
        for (const t of trustees(dirSd)) assert(allowed.has(t), `run dir grants ${t}: ${dirSd}`);
        assert(trustees(dirSd).length > 0, dirSd);
        const o = openHandleStatus(pipeName("wc-acl"), GENERIC_READ_WRITE, 0);
        assert(o.h !== null, `open the pipe: 0x${o.status.toString(16)}`);
        try {
          const pipeSd = securityOf(o.h);
          for (const t of trustees(pipeSd)) assert(allowed.has(t), `pipe grants ${t}: ${pipeSd}`);
          for (const t of ["WD", "BU", "AU", "IU", "AN"]) assert(!trustees(pipeSd).includes(t), pipeSd);
          assert(trustees(pipeSd).length > 0, `no allow entries read back: ${pipeSd}`);
          assertMatch(pipeSd, "D:P"); // protected: nothing inherited
        } finally {
          kernel32().CloseHandle(o.h);
        }
      } finally {
        await srv.close();
      }
    }),
});

Deno.test({
  ...opts,
  name: "control (Windows): a second server on the same interface is refused with one clear line",
  fn: () =>
    withRunDir(async () => {
      const srv = await serveControl("wc-twice", () => Promise.resolve({ ok: true }));
      try {
        await assertRejects(
          () => serveControl("wc-twice", () => Promise.resolve({ ok: true })),
          "is already held by another process",
        );
      } finally {
        await srv.close();
      }
    }),
});

Deno.test({
  ...opts,
  name: "control (Windows): a pipe that cannot prove the token gets nothing: no request, no key bytes",
  fn: () =>
    withRunDir(async (dir) => {
      // a foreign endpoint: a pipe of that name served with some other token (another user's, a squatter)
      const other = Deno.makeTempDirSync() + "\\other";
      const received: unknown[] = [];
      const squatter = servePipe("wc-sq", other, (req) => {
        received.push(req);
        return Promise.resolve({ ok: true });
      });
      try {
        // our token file for wc-sq (e.g. left by an instance that crashed)
        Deno.mkdirSync(dir, { recursive: true });
        Deno.writeTextFileSync(tokenPath(dir, "wc-sq"), "ab".repeat(32));
        const key = { cipher: "AES-256-GCM", keyId: 0, encryptKey: "11".repeat(32) } as unknown;
        await assertRejects(
          () => controlRequest("wc-sq", { cmd: "key.new", slot: 1, peerId: 0, key } as ControlRequest),
          "not served by the instance that wrote its token",
        );
        assertEquals(received, []);
      } finally {
        await squatter.close();
      }
    }),
});

Deno.test({
  ...opts,
  name: "control (Windows): a client that cannot prove the token is refused and its request not run",
  fn: () =>
    withRunDir(async (dir) => {
      const seen: unknown[] = [];
      const srv = servePipe("wc-noauth", dir, (req) => {
        seen.push(req);
        return Promise.resolve({ ok: true });
      });
      try {
        const o = openHandleStatus(pipeName("wc-noauth"), GENERIC_READ_WRITE, 0);
        assert(o.h !== null);
        try {
          const c = new PipeConn(o.h, Date.now() + 5000, () => false);
          assert(await c.writeLine({ nonce: "0".repeat(32) }));
          const hello = JSON.parse((await c.readLine())!);
          assertEquals(Object.keys(hello).sort(), ["nonce", "proof"]); // an HMAC, never the token
          assert(!JSON.stringify(hello).includes(Deno.readTextFileSync(tokenPath(dir, "wc-noauth")).trim()));
          assert(await c.writeLine({ proof: "f".repeat(64), req: { cmd: "peer.del" } }));
          assertMatch((await c.readLine())!, "did not prove it holds the control token");
        } finally {
          kernel32().CloseHandle(o.h);
        }
        assertEquals(seen, []);
      } finally {
        await srv.close();
      }
    }),
});

Deno.test({
  ...opts,
  name: "control (Windows): a console close removes the token files before Windows ends the process",
  fn: () =>
    withRunDir(async (dir) => {
      const srv = servePipe("wc-close", dir, () => Promise.resolve({ ok: true }));
      try {
        const t = tokenPath(dir, "wc-close");
        assert(Deno.statSync(t).isFile);
        assertEquals(onConsoleEvent(0), 0); // Ctrl-C: left to the SIGINT path
        assert(Deno.statSync(t).isFile);
        assertEquals(onConsoleEvent(2), 0); // CTRL_CLOSE_EVENT: cleaned up, then the default handler
        assertEquals(await Deno.stat(t).then(() => "there", () => "gone"), "gone");
      } finally {
        await srv.close();
      }
    }),
});

Deno.test({
  ...opts,
  name:
    "control (Windows): an events stream on its own pipe instance; requests go on beside it; it ends with the client or the instance",
  fn: () =>
    withRunDir(async () => {
      const subs = new Set<(o: Record<string, unknown>) => Promise<boolean>>();
      const srv = await serveControl(
        "wc-ev",
        (req) => Promise.resolve({ ok: true, echo: req.cmd }),
        (send) => {
          subs.add(send);
          return () => subs.delete(send);
        },
      );
      const emit = (o: Record<string, unknown>) => Promise.all([...subs].map((s) => s(o)));
      try {
        const got: Record<string, unknown>[] = [];
        const stream = streamControl("wc-ev", { cmd: "events" }, (o) => got.push(o));
        const until = async (what: string, ok: () => boolean) => {
          const deadline = Date.now() + 5000;
          while (!ok()) {
            if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
            await new Promise((r) => setTimeout(r, 10));
          }
        };
        await until("the subscription", () => subs.size === 1);
        // the stream holds one instance; requests still get through, more than one at once
        const rs = await Promise.all([1, 2, 3].map(() => controlRequest("wc-ev", { cmd: "stats" })));
        assertEquals(rs.map((r) => (r as { echo?: string }).echo), ["stats", "stats", "stats"]);
        assertEquals(await emit({ event: "DEL_PEER", peerId: 7, reason: "expired" }), [true]);
        assertEquals(await emit({ event: "FLOAT_PEER", peerId: 8, address: "10.0.0.1:1194" }), [true]);
        await until("two events", () => got.length === 3);
        assertEquals(got, [
          { ok: true, events: true },
          { event: "DEL_PEER", peerId: 7, reason: "expired" },
          { event: "FLOAT_PEER", peerId: 8, address: "10.0.0.1:1194" },
        ]);
        // a second subscriber, then the instance goes: both streams end
        const got2: Record<string, unknown>[] = [];
        const stream2 = streamControl("wc-ev", { cmd: "events" }, (o) => got2.push(o));
        await until("the second subscription", () => subs.size === 2);
        await emit({ event: "DEL_PEER", peerId: 9, reason: "teardown" });
        await until("the event on both", () => got.length === 4 && got2.length === 2);
        await srv.close();
        await Promise.race([
          Promise.all([stream, stream2]),
          new Promise((_, rej) => setTimeout(() => rej(new Error("the streams did not end")), 5000)),
        ]);
        assertEquals(subs.size, 0, "a subscriber outlived its stream");
      } finally {
        await srv.close();
      }
    }),
});

Deno.test({
  ...opts,
  name:
    "control (Windows): a client that stays silent is dropped after the idle limit; a slow request still gets its answer",
  fn: () =>
    withRunDir(async () => {
      const srv = await serveControl(
        "wc-idle",
        async (req) => {
          if (req.cmd === "stats") await new Promise((r) => setTimeout(r, 1500)); // longer than the idle limit
          return { ok: true, echo: req.cmd };
        },
        undefined,
        { idleMs: 500 },
      );
      try {
        const o = openHandleStatus(pipeName("wc-idle"), GENERIC_READ_WRITE, 0);
        assert(o.h !== null);
        const t0 = Date.now();
        try {
          // says nothing: the instance hangs up (a read on this end then ends) instead of holding the instance
          const c = new PipeConn(o.h, Date.now() + 10_000, () => false);
          assertEquals(await c.readLine(), null);
        } finally {
          kernel32().CloseHandle(o.h);
        }
        const waited = Date.now() - t0;
        assert(waited < 5000, `the silent client was dropped only after ${waited} ms`);
        assertEquals(await controlRequest("wc-idle", { cmd: "stats" }), { ok: true, echo: "stats" });
      } finally {
        await srv.close();
      }
    }),
});

Deno.test({
  ...opts,
  name: "control (Windows): an events subscriber that does not read is dropped once its queue is full",
  fn: () =>
    withRunDir(async (dir) => {
      const { createHmac } = await import("node:crypto");
      const { Buffer } = await import("node:buffer");
      const subs = new Set<(o: Record<string, unknown>) => Promise<boolean>>();
      const srv = servePipe("wc-evq", dir, () => Promise.resolve({ ok: true }), (send) => {
        subs.add(send);
        return () => subs.delete(send);
      }, { maxQueued: 16 });
      try {
        const token = Buffer.from(Deno.readTextFileSync(tokenPath(dir, "wc-evq")).trim(), "hex");
        const mac = (label: string, a: string, b: string) =>
          createHmac("sha256", token).update(`ovpn-dco-cli ${label}\n${a}\n${b}`).digest("hex");
        const o = openHandleStatus(pipeName("wc-evq"), GENERIC_READ_WRITE, 0);
        assert(o.h !== null);
        try {
          const c = new PipeConn(o.h, Date.now() + 10_000, () => false);
          const nc = "1".repeat(32);
          assert(await c.writeLine({ nonce: nc }));
          const hello = JSON.parse((await c.readLine())!);
          assert(await c.writeLine({ proof: mac("client", hello.nonce, nc), req: { cmd: "events" } }));
          assertEquals(JSON.parse((await c.readLine())!), { ok: true, events: true });
          const deadline = Date.now() + 5000;
          while (subs.size === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
          // this client never reads again: 2 000 notifications of 1 KB each cannot all wait for it
          const big = "x".repeat(1024);
          const sent = [...subs].flatMap((s) =>
            Array.from({ length: 2000 }, (_, i) => s({ event: "X", i, big }))
          );
          const results = await Promise.race([
            Promise.all(sent),
            new Promise<null>((r) => setTimeout(() => r(null), 20_000)),
          ]);
          assert(results !== null, "the notifications to a subscriber that does not read never settled");
          assert(results.includes(false), "every notification was taken by a client that reads nothing");
          const until = Date.now() + 10_000;
          while (subs.size && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
          assertEquals(subs.size, 0, "the subscriber that does not read was kept");
        } finally {
          kernel32().CloseHandle(o.h);
        }
      } finally {
        await srv.close();
      }
    }),
});
