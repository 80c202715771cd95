#!/usr/bin/env bash
# The main job (README: `npm ci && npm run demo`): installs what the demo runs (iproute2, ping, iperf3) when
# missing, as root with apt, then runs `ovpn-dco-cli demo` with any arguments given (npm run demo -- --time 5).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/need.sh
need_deno || exit 2
if [ "$(id -u)" = 0 ]; then
  need ip:iproute2 ping:iputils-ping iperf3:iperf3 || exit 2
fi # without root, the demo itself says that it needs root
exec "$DENO" run -A main.ts demo "$@"
