/**
 * User-facing errors and exit codes. Every failure the user can cause or fix ends as one line on stderr
 * (`ovpn-dco-cli: <problem>; <fix>`) and one of these exit codes; never a stack trace, never key bytes.
 *
 * @example
 * ```ts
 * import { CliError, EXIT } from "./errors.ts";
 * throw new CliError("unknown cipher 'x'; use one of ...", EXIT.USAGE);
 * ```
 * @module
 */

/** Exit codes (documented in the README). */
export const EXIT = {
  OK: 0,
  /** A runtime failure: socket, device or system command error. */
  FAILURE: 1,
  /** A bad invocation: arguments, flags, addresses. */
  USAGE: 2,
  /** A missing, unreadable or malformed key file. */
  KEY: 3,
  /** Missing privilege (root / administrator / CAP_NET_ADMIN). */
  PRIVILEGE: 4,
  /** No running instance to talk to, or the instance refused the request. */
  CONTROL: 5,
  /** The peer timed out (keepalive) or closed the connection. */
  PEER: 6,
  /** A resource is busy: port in use, interface or adapter already taken. */
  BUSY: 7,
  /** The driver or a needed library is missing. */
  DRIVER: 8,
} as const;

/** An error whose message is meant for the user, with its exit code. */
export class CliError extends Error {
  readonly code: number;
  constructor(message: string, code: number = EXIT.FAILURE) {
    super(message);
    this.code = code;
  }
}

/** Shorthand for a usage error. */
export function usage(message: string): CliError {
  return new CliError(message, EXIT.USAGE);
}
