#!/usr/bin/env bash
# Builds the OpenVPN 2.7.6 test peer (epoch data keys) from the release tarball here (upstream tag v2.7.6,
# GPLv2) with log-epoch-secrets.patch applied (two log lines at verb 9: "Epoch E1 send/recv: ..."), once, into
# a cache keyed by the tarball's and the patch's hashes, and prints the binary's path. Installs the build
# dependencies with apt when they are missing (root). Used by scripts/test.sh; OPENVPN_27 overrides it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
key=$(cat "$here/openvpn-2.7.6.tar.xz" "$here/log-epoch-secrets.patch" | sha256sum | cut -c1-16)
cache=${OVPN_TEST_CACHE:-/var/tmp/ovpn-dco-cli-test}/openvpn-2.7.6-$key
if [ -x "$cache/openvpn" ] && "$cache/openvpn" --version >/dev/null 2>&1; then
  echo "$cache/openvpn"
  exit 0
fi
need=()
for pair in autoreconf:autoconf automake:automake libtoolize:libtool pkg-config:pkg-config make:make gcc:gcc \
  patch:patch; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
dpkg -s libcap-ng-dev >/dev/null 2>&1 || need+=(libcap-ng-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "building OpenVPN 2.7.6 needs ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
    exit 2
  fi
  echo "installing ${need[*]} with apt (to build the OpenVPN 2.7.6 test peer)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${need[@]}" >/dev/null; }
fi
echo "building the OpenVPN 2.7.6 test peer into $cache (once)" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xJf "$here/openvpn-2.7.6.tar.xz" -C "$work"
cd "$work/openvpn-2.7.6"
patch -s -p1 <"$here/log-epoch-secrets.patch"
autoreconf -fi >/dev/null 2>&1
./configure --disable-plugin-auth-pam --disable-plugin-down-root --disable-dco --disable-lz4 --disable-lzo \
  >/dev/null
make -j"$(nproc)" >/dev/null 2>&1
mkdir -p "$cache"
strip -o "$cache/openvpn.tmp" src/openvpn/openvpn
mv "$cache/openvpn.tmp" "$cache/openvpn"
"$cache/openvpn" --version | head -1 >&2
echo "$cache/openvpn"
