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

/**
 * Keep one control read pending (as the driver wants) and show control packets on stderr: each one while
 * they are rare, then at most one line per `everyMs` with their count, so that no flood turns into a flood
 * of log lines.
 */
export function logControlPackets(
  dev: { readControl(): Promise<Uint8Array> },
  log: (line: string) => void,
  everyMs = 5000,
): void {
  let windowStart = 0, inWindow = 0, held = 0, last = "";
  const flush = () => {
    if (held) log(`${held} more control packets received in the last ${everyMs / 1000} s (last: ${last})`);
    held = 0;
  };
  const timer = setInterval(() => {
    flush();
    inWindow = 0;
    windowStart = Date.now();
  }, everyMs);
  Deno.unrefTimer(timer);
  (async () => {
    for (;;) {
      const p = await dev.readControl();
      last = `${p.length} bytes, opcode ${p[0] >> 3}`;
      if (Date.now() - windowStart >= everyMs) [windowStart, inWindow] = [Date.now(), 0];
      if (++inWindow <= 5) log(`control packet received: ${last}`);
      else held++;
    }
  })().catch(() => {}).finally(() => {
    clearInterval(timer);
    flush();
  });
}
