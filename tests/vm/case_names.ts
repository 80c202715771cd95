/**
 * The names of the cases tests/vm/kernel_cases.ts runs in the VM, one test each on the host
 * (tests/kernel_vm_test.ts): a case the guest does not report is a failure there.
 * @module
 */
export const KERNEL_CASES = [
  "dco(a) <-> tun: udp over IPv4, AES-256-GCM",
  "dco(b) <-> tun: udp over IPv6, CHACHA20-POLY1305",
  "dco(a) <-> tun: tcp over IPv6, AES-256-GCM",
  "dco(b) <-> tun: tcp over IPv4, CHACHA20-POLY1305",
  "dco <-> dco: udp over IPv4, AES-128-GCM, verified transfer",
  "upstream positional form on dco (tcp i4) against a tun listener",
  "dco: key rotation (new secondary, swap, delete) under traffic loses nothing",
  "dco: keepalive expiry -> events DEL_PEER expired, exit 6",
  "dco: replays, forged tags, garbage and unknown peer ids are dropped by the kernel",
  "dco server (multipeer) with two tun clients: pings, client<->client, stats, route, peer del",
  "dco: --epoch with --backend dco is one clear line, exit 2; auto takes tun and says why; restart after SIGKILL",
] as const;
