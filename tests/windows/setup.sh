#!/usr/bin/env bash
# Builds the Wine test environment for the Windows code paths (see ../shared/windows-on-linux.md), once;
# later runs reuse it. Prints the environment to use as KEY=VALUE lines on stdout.
#   - the Windows build of Deno (npm: @deno/win32-x64, the pinned version), in a copy patched so that V8
#     takes its fallback path under Wine 8 (UnmapViewOfFile2 -> UnmapViewOfFileZ, asserted to occur once)
#   - bcryptprimitives.dll (ProcessPrng shim; Wine 8 lacks it), next to deno.exe
#   - the fake ovpn-dco driver (kernel service), the fake wintun.dll and a recording netsh.exe
#   - a Wine prefix with the driver installed as service "ovpndco"
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${OVPN_WINE_CACHE:-$repo/.cache/wine}
mkdir -p "$cache"
log() { echo "[wine-setup] $*" >&2; }

need=()
command -v wine >/dev/null 2>&1 || need+=(wine wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need+=(gcc-mingw-w64-x86-64)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} with apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

version=$(node -p "require('$repo/node_modules/deno/package.json').version")
if [ ! -f "$cache/deno-$version.exe" ]; then
  log "fetching @deno/win32-x64@$version from npm"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@deno/win32-x64@$version" >/dev/null && tar xzf deno-win32-x64-*.tgz)
  cp "$tmp/package/deno.exe" "$cache/deno-$version.exe.orig"
  rm -rf "$tmp"
  python3 - "$cache/deno-$version.exe.orig" "$cache/deno-$version.exe" <<'PY'
import sys
src, dst = sys.argv[1], sys.argv[2]
b = open(src, 'rb').read()
old = b'UnmapViewOfFile2\x00'
n = b.count(old)
if n != 1:
    sys.exit(f"expected exactly one '{old!r}' in deno.exe, found {n}: re-check the Wine recipe for this Deno version")
open(dst, 'wb').write(b.replace(old, b'UnmapViewOfFileZ\x00'))
PY
  rm -f "$cache/deno-$version.exe.orig"
fi

build() { # out src args...
  local out=$1 src=$2; shift 2
  if [ ! -f "$out" ] || [ "$src" -nt "$out" ]; then
    log "building $(basename "$out")"
    x86_64-w64-mingw32-gcc -O2 -Wall -o "$out.tmp" "$src" "$@"
    mv "$out.tmp" "$out"
  fi
}
build "$cache/bcryptprimitives.dll" "$here/shim_bcryptprimitives.c" -shared -lbcrypt
build "$cache/ovpn-dco.sys" "$here/fake_ovpn_dco.c" -I/usr/share/mingw-w64/include/ddk -shared -nostdlib \
  -Wl,--subsystem,native -e DriverEntry -lntoskrnl -lhal
build "$cache/wintun.dll" "$here/fake_wintun.c" -shared -lws2_32 -liphlpapi
build "$cache/netsh.exe" "$here/fake_netsh.c" -lshell32

# netsh.exe=n: the recording netsh in System32 (below) instead of Wine's builtin stub
overrides="mscoree,mshtml=;netsh.exe=n"
export WINEPREFIX=$cache/prefix WINEDEBUG=-all WINEDLLOVERRIDES="$overrides"
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  log "creating the Wine prefix"
  wineboot -i >/dev/null 2>&1
  wineserver -w
fi
drv=$WINEPREFIX/drive_c/windows/system32/drivers/ovpn-dco.sys
if ! cmp -s "$cache/ovpn-dco.sys" "$drv"; then
  cp "$cache/ovpn-dco.sys" "$drv"
fi
netsh=$WINEPREFIX/drive_c/windows/system32/netsh.exe
if ! cmp -s "$cache/netsh.exe" "$netsh"; then
  cp "$cache/netsh.exe" "$netsh"
fi
if ! grep -q 'ovpndco' "$WINEPREFIX/system.reg" 2>/dev/null; then
  log "registering the fake driver as service ovpndco"
  wine sc create ovpndco type= kernel start= demand 'binPath=' 'C:\windows\system32\drivers\ovpn-dco.sys' >/dev/null 2>&1
  wineserver -w
fi
echo "WINEPREFIX=$WINEPREFIX"
echo "WINEDEBUG=-all"
echo "WINEDLLOVERRIDES=$overrides"
echo "DENO_WIN=$cache/deno-$version.exe"
echo "WINE_CACHE=$cache"
