#!/usr/bin/env bash
# The project's test command (README: `npm ci && npm test`). Installs the system packages the
# end-to-end tests need (as root, with apt), runs every Deno test, and ends with the plain summary line
# "N passed, N failed". A test that cannot run here fails; nothing is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/need.sh
need_deno || exit 2

need openssl:openssl ip:iproute2 ping:iputils-ping openvpn:openvpn iperf3:iperf3 \
  qemu-system-x86_64:qemu-system-x86 depmod:kmod cpio:cpio xz:xz-utils || exit 2

# the OpenVPN 2.7.6 test peer (epoch interop), built once from the source in tests/openvpn27 and cached
if [ -z "${OPENVPN_27:-}" ]; then
  if OPENVPN_27=$(bash tests/openvpn27/build.sh); then
    export OPENVPN_27
  else
    echo "building the OpenVPN 2.7.6 test peer failed; the tests that need it will fail" >&2
    unset OPENVPN_27
  fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# type-check everything once (the Windows-only modules included), check formatting and lint, then run the tests without
# re-checking every module (and every engine worker) as it loads
check_failed=0
if ! NO_COLOR=1 "$DENO" check . >"$log" 2>&1; then
  cat "$log"
  echo "deno check failed" >&2
  check_failed=1
fi
# formatting and lint are part of the contract too (each counts as one failure)
if ! NO_COLOR=1 "$DENO" fmt --check >"$log" 2>&1; then
  cat "$log"
  echo "deno fmt --check failed: run deno fmt" >&2
  check_failed=$((check_failed + 1))
fi
if ! NO_COLOR=1 "$DENO" lint >"$log" 2>&1; then
  cat "$log"
  echo "deno lint failed" >&2
  check_failed=$((check_failed + 1))
fi
NO_COLOR=1 "$DENO" test -A --no-prompt --no-check "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
passed=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -1 | sed -E 's/.*\| ([0-9]+) passed.*/\1/')
failed=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -1 | sed -E 's/.*\| ([0-9]+) failed.*/\1/')
ignored=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -1 | grep -oE '[0-9]+ ignored' | grep -oE '[0-9]+' || true)
passed=${passed:-0}
failed=${failed:-0}
# an ignored test is a test that did not run: count it as failed
failed=$((failed + ${ignored:-0} + check_failed))
if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$rc" = 0 ]
