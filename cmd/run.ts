/**
 * What every long-running instance (`start`, point-to-point or server) does while it runs: wait for the
 * signals that end it cleanly, and keep one control-packet read pending.
 * @module
 */

/**
 * Resolve with the name of the first stop signal: Ctrl-C and SIGTERM, or on Windows Ctrl-C and Ctrl-Break
 * (SIGBREAK; a console close is handled in control_win.ts, as Windows ends the process right after the
 * handler returns). The listeners' removal goes to `cleanups`.
 */
export function stopSignal(cleanups: (() => void)[]): Promise<string> {
  let stopResolve!: (sig: string) => void;
  const stopped = new Promise<string>((r) => (stopResolve = r));
  const signals = Deno.build.os === "windows"
    ? ["SIGINT", "SIGBREAK"] as const
    : ["SIGINT", "SIGTERM"] as const;
  for (const sig of signals) {
    const h = () => stopResolve(sig);
    Deno.addSignalListener(sig, h);
    cleanups.push(() => Deno.removeSignalListener(sig, h));
  }
  return stopped;
}

/** Keep one control read pending (as the driver wants) and show each control packet on stderr. */
export function logControlPackets(
  dev: { readControl(): Promise<Uint8Array> },
  log: (line: string) => void,
): void {
  (async () => {
    for (;;) {
      const p = await dev.readControl();
      log(`control packet received: ${p.length} bytes, opcode ${p[0] >> 3}`);
    }
  })().catch(() => {});
}
