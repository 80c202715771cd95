/**
 * What the Linux (libc) and Windows (Winsock) sockets share: the error lines of socket set-up, in one wording,
 * and the accept of one TCP connection from the peer.
 * @module
 */
import { DeviceError } from "../device.ts";
import { formatEndpoint, parseIPv4, parseIPv6, type SockAddr } from "../uapi.ts";

/** Address bytes (4 or 16) of an IPv4/IPv6 text address. */
export function addrBytes(a: string): Uint8Array {
  const b = parseIPv4(a) ?? parseIPv6(a);
  if (!b) throw new DeviceError(`'${a}' is not an IPv4 or IPv6 address`, "state");
  return b;
}

/** 4 or 6: the IP version both endpoints share (else one clear error). */
export function ipVersionOf(local: SockAddr, remote: SockAddr): 4 | 6 {
  const l = addrBytes(local.address), r = addrBytes(remote.address);
  if (l.length !== r.length) {
    throw new DeviceError(
      `local ${formatEndpoint(local)} and remote ${
        formatEndpoint(remote)
      } are of different IP versions; use two IPv4 or two IPv6 addresses`,
      "state",
    );
  }
  return l.length === 4 ? 4 : 6;
}

/** Why a bind failed, as a DeviceError naming the fix. */
export function bindError(
  why: "in-use" | "not-local" | "denied" | "other",
  local: SockAddr,
  proto: string,
  detail: string,
): DeviceError {
  const where = formatEndpoint(local);
  switch (why) {
    case "in-use":
      return new DeviceError(
        `local ${proto} port ${where} is already in use; pick another --local port or stop the program using it`,
        "busy",
      );
    case "not-local":
      return new DeviceError(
        `local address ${local.address} is not an address of this host; use one of its addresses or 0.0.0.0 / [::]`,
        "state",
      );
    case "denied":
      return new DeviceError(`binding ${where}: permission denied; ports below 1024 need root`, "privilege");
  }
  return new DeviceError(`binding ${proto} ${where}: ${detail}`);
}

/** The platform's calls `acceptOne` needs. */
export interface AcceptOps {
  listen(local: SockAddr): number;
  acceptNext(
    ls: number,
    timeoutMs: number,
    cancelled: () => boolean,
  ): Promise<{ fd: number; from: Uint8Array } | null>;
  parse(sa: Uint8Array): { addr: Uint8Array; port: number } | null;
  close(s: number): void;
}

/** Listen on `local` and accept one connection from `remote`'s address (any port), within `timeoutMs`. */
export async function acceptOne(
  ops: AcceptOps,
  local: SockAddr,
  remote: SockAddr,
  timeoutMs: number,
  cancelled: () => boolean,
  onListening?: () => void,
): Promise<number> {
  ipVersionOf(local, remote);
  const ls = ops.listen(local);
  try {
    onListening?.();
    const want = addrBytes(remote.address);
    const anyPeer = want.every((x) => x === 0);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = await ops.acceptNext(ls, deadline - Date.now(), cancelled);
      if (!c) {
        throw new DeviceError(
          `no TCP connection from ${remote.address} within ${timeoutMs / 1000} s on ${formatEndpoint(local)}`,
          "timeout",
        );
      }
      const from = ops.parse(c.from);
      if (anyPeer || (from && from.addr.length === want.length && from.addr.every((x, i) => x === want[i]))) {
        return c.fd;
      }
      ops.close(c.fd); // not our peer
    }
  } finally {
    ops.close(ls);
  }
}

/**
 * Connect over TCP, and while the peer refuses (its listener is not up yet) try again every half second until
 * `timeoutMs` is over: a client started a moment before its server connects once the server is there.
 */
export async function connectRetrying(
  connect: (
    local: SockAddr,
    remote: SockAddr,
    timeoutMs: number,
    cancelled: () => boolean,
  ) => Promise<number>,
  local: SockAddr,
  remote: SockAddr,
  timeoutMs: number,
  cancelled: () => boolean,
  onRetry?: () => void,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let said = false;
  for (;;) {
    try {
      return await connect(local, remote, Math.max(1, deadline - Date.now()), cancelled);
    } catch (e) {
      const refused = e instanceof DeviceError && /connection refused|Winsock error 10061/.test(e.message);
      if (!refused || cancelled() || Date.now() + 500 >= deadline) throw e;
      if (!said) onRetry?.();
      said = true;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
