/**
 * The control server under abuse (Linux): its run directory must be the user's alone, a client that sends
 * nothing is closed, too many at once are refused with one line, an `events` subscriber that does not read
 * is dropped, a line too long is refused, and well-formed requests keep being answered throughout.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../tests/assert.ts";
import { controlRequest, type EventSource, serveControl } from "./control.ts";

async function withRunDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  const before = Deno.env.get("OVPN_DCO_CLI_RUNDIR");
  Deno.env.set("OVPN_DCO_CLI_RUNDIR", `${dir}/run`);
  try {
    await fn(`${dir}/run`);
  } finally {
    if (before === undefined) Deno.env.delete("OVPN_DCO_CLI_RUNDIR");
    else Deno.env.set("OVPN_DCO_CLI_RUNDIR", before);
    await Deno.remove(dir, { recursive: true });
  }
}

const ok = () => Promise.resolve({ ok: true as const, pong: 1 });

Deno.test("control: a run directory that is someone else's, open to others, or a symlink is refused", async () => {
  await withRunDir(async (run) => {
    await Deno.mkdir(run, { mode: 0o755 });
    await Deno.chmod(run, 0o755);
    await assertRejects(() => serveControl("ctl0", ok), "has mode 755, open to others");
    await Deno.chmod(run, 0o700);
    await Deno.chown(run, 65534, 65534);
    await assertRejects(() => serveControl("ctl0", ok), "belongs to user 65534, not to you");
    await Deno.remove(run);
    await Deno.symlink("/tmp", run);
    await assertRejects(() => serveControl("ctl0", ok), "is not a plain directory");
  });
});

Deno.test("control: idle, too many, too long and non-reading clients cost nothing; requests still answered", async () => {
  await withRunDir(async () => {
    let subscribers = 0;
    const events: EventSource = (send) => {
      subscribers++;
      const t = setInterval(() => {
        for (let i = 0; i < 200; i++) void send({ event: "X", pad: "x".repeat(1000) });
      }, 10);
      return () => {
        clearInterval(t);
        subscribers--;
      };
    };
    const srv = await serveControl("ctl1", ok, events, { maxClients: 8, idleMs: 500, maxQueued: 64 });
    const conns: Deno.Conn[] = [];
    try {
      // a subscriber that never reads: dropped once its queue is full
      const sub = await Deno.connect({ transport: "unix", path: srv.path });
      conns.push(sub);
      await sub.write(new TextEncoder().encode('{"cmd":"events"}\n'));
      for (let i = 0; i < 100 && subscribers === 0; i++) await new Promise((r) => setTimeout(r, 20));
      for (let i = 0; i < 200 && subscribers > 0; i++) await new Promise((r) => setTimeout(r, 20));
      assertEquals(subscribers, 0, "the subscriber that does not read is still there");
      // clients that connect and send nothing: the ones over the cap get one error line
      for (let i = 0; i < 12; i++) conns.push(await Deno.connect({ transport: "unix", path: srv.path }));
      const last = conns[conns.length - 1];
      const b = new Uint8Array(256);
      const n = await last.read(b);
      assertMatch(new TextDecoder().decode(b.subarray(0, n ?? 0)), "too many control connections");
      // after the idle timeout they are closed, and a well-formed request is answered
      await new Promise((r) => setTimeout(r, 700));
      assertEquals((await controlRequest("ctl1", { cmd: "stats" })).ok, true);
      // a 2 MB line without a newline: one error, closed
      const big = await Deno.connect({ transport: "unix", path: srv.path });
      conns.push(big);
      await big.write(new Uint8Array(2 << 20).fill(0x41)).catch(() => {});
      const m = await big.read(b).catch(() => null);
      assert(m === null || new TextDecoder().decode(b.subarray(0, m)).includes("request too long"));
      assertEquals((await controlRequest("ctl1", { cmd: "stats" })).ok, true);
    } finally {
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await srv.close();
    }
  });
});
