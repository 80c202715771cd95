/**
 * Abuse of an instance's control socket, run in the instance's namespace with its run directory (issue 18):
 * 100 `events` subscribers that never read, a client that connects and never sends, a 16 MB line without a
 * newline, malformed JSON, then 1 000 well-formed requests at once. Prints one JSON line with what came back:
 *
 *   control_abuse IFNAME
 *
 * { "answered": N (of 1 000 `stats`), "malformed": "<the error line>", "longLine": "<what the 16 MB line got>",
 *   "silentClosed": true|false (the silent client was hung up on), "subscribers": N (events streams opened),
 *   "ms": duration of the 1 000 }
 * @module
 */
import { controlRequest, socketPath } from "../../driver/control.ts";

const ifname = Deno.args[0];
const path = socketPath(ifname);
const enc = new TextEncoder(), dec = new TextDecoder();

/** Read what the instance sends on `c` until it closes the connection or `ms` pass; the text. */
async function readAll(c: Deno.Conn, ms: number): Promise<string> {
  const buf = new Uint8Array(65536);
  let text = "";
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return text;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      c.read(buf).catch(() => null),
      new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), left))),
    ]);
    clearTimeout(timer);
    if (n === "timeout") return text;
    if (n === null) return text + "\u0000closed";
    text += dec.decode(buf.subarray(0, n));
  }
}

/** A connection the instance took (not refused as busy): connect again while it says it is busy. */
async function admitted(first: string): Promise<{ c: Deno.Conn; line: string }> {
  for (let i = 0; i < 200; i++) {
    const c = await Deno.connect({ transport: "unix", path });
    await c.write(enc.encode(first));
    const buf = new Uint8Array(4096);
    const n = await c.read(buf).catch(() => null);
    const line = n ? dec.decode(buf.subarray(0, n)) : "";
    if (!line.includes('"busy":true')) return { c, line };
    c.close();
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("the instance stayed busy");
}

// 100 subscribers that read their first line (the subscription is confirmed) and never again
const subs: Deno.Conn[] = [];
for (let i = 0; i < 100; i++) {
  const { c, line } = await admitted(JSON.stringify({ cmd: "events" }) + "\n");
  if (line.includes('"events":true')) subs.push(c);
  else c.close();
}
// a client that connects and never sends
const silent = await Deno.connect({ transport: "unix", path });
const silentGone = readAll(silent, 30_000).then((t) => t.endsWith("\u0000closed"));
// a 16 MB line without a newline
const long = await Deno.connect({ transport: "unix", path });
const chunk = new Uint8Array(1 << 20).fill(0x61);
let longWrote = 0;
try {
  for (let i = 0; i < 16; i++) longWrote += await long.write(chunk);
} catch { /* the instance hung up once the line was too long */ }
const longLine = (await readAll(long, 10_000)).replace("\u0000closed", "").trim();
// malformed JSON
const bad = await Deno.connect({ transport: "unix", path });
await bad.write(enc.encode("{ this is not json\n"));
const malformed = (await readAll(bad, 10_000)).replace("\u0000closed", "").trim();
// 1 000 well-formed requests at once
const t0 = Date.now();
const results = await Promise.all(
  Array.from(
    { length: 1000 },
    () => controlRequest(ifname, { cmd: "stats" }, 60_000).catch((e) => e as Error),
  ),
);
const ms = Date.now() - t0;
const answered = results.filter((r) => !(r instanceof Error) && r.ok === true).length;
const errors = [...new Set(results.map((r) => r instanceof Error ? r.message : r.ok ? "" : r.error))].filter(
  Boolean,
);
console.log(JSON.stringify({
  answered,
  errors,
  malformed,
  longLine,
  longWrote,
  silentClosed: await silentGone,
  subscribers: subs.length,
  ms,
}));
for (const c of [...subs, silent, long, bad]) {
  try {
    c.close();
  } catch { /* closed */ }
}
