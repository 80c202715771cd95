/**
 * Standard output of a long-running instance, safe when its reader goes away (`start ... | head`): the first
 * failed write (a closed pipe) turns printing off, says so once on stderr, and never ends the tunnel.
 *
 * @example
 * ```ts
 * import { printOut } from "./output.ts";
 * await printOut("TCP connected\n"); // false once stdout is gone
 * ```
 * @module
 */

let gone = false;
const enc = new TextEncoder();

/** Write `text` to stdout; false (and nothing written from then on) once stdout is closed. */
export async function printOut(text: string): Promise<boolean> {
  if (gone) return false;
  try {
    const b = enc.encode(text);
    for (let off = 0; off < b.length;) off += await Deno.stdout.write(b.subarray(off));
    return true;
  } catch (e) {
    gone = true;
    try {
      console.error(
        `stdout closed (${
          (e as Error).message.split("\n")[0]
        }): statistics are no longer printed; the tunnel keeps running`,
      );
    } catch { /* stderr gone too */ }
    return false;
  }
}

/** Whether an error is a write to a closed pipe (the reader of our output went away). */
export function isBrokenPipe(e: unknown): boolean {
  return e instanceof Deno.errors.BrokenPipe || (e instanceof Error && /broken pipe|EPIPE/i.test(e.message));
}
