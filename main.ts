/**
 * ovpn-dco-cli: argv → the command; nothing else.
 * @module
 */
import { runCli } from "./cmd/cli.ts";

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
