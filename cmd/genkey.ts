/**
 * `genkey [FILE]`: a fresh random data64.key, written readable by the owner only (or printed to stdout
 * when no file is named, for piping).
 * @module
 */
import { CliError, EXIT, usage } from "./errors.ts";
import { generateData64, KeyFileError, writeNewKeyFile } from "../keys/keyfile.ts";

export const GENKEY_HELP = `Usage: ovpn-dco-cli genkey [FILE]

Write a fresh random data64.key (72 random bytes, base64) to FILE, created readable by its owner
only; without FILE, print it on stdout. Refuses to overwrite an existing file.

Example:
  ovpn-dco-cli genkey tunnel.key
`;

export async function genkey(args: string[]): Promise<number> {
  if (args.length > 1) {
    throw usage(`genkey takes at most one FILE, got ${args.length}; see 'ovpn-dco-cli genkey --help'`);
  }
  if (args.length === 0) {
    await Deno.stdout.write(new TextEncoder().encode(generateData64()));
    return EXIT.OK;
  }
  try {
    await writeNewKeyFile(args[0]);
  } catch (e) {
    if (e instanceof KeyFileError) throw new CliError(e.message, EXIT.KEY);
    throw e;
  }
  console.error(`wrote a new key to ${args[0]} (mode 0600)`);
  return EXIT.OK;
}
