# Sourced by scripts/test.sh and scripts/demo.sh (from the repository's top): `need_deno` checks that `npm ci`
# put the pinned Deno in place ($DENO); `need cmd:package ...` installs, as root with apt, the Debian packages of
# the commands that are missing; without root it names them and fails.
DENO=./node_modules/deno/deno
need_deno() {
  if [ ! -x "$DENO" ]; then
    echo "the pinned Deno is missing: run 'npm ci' first" >&2
    return 2
  fi
}

need() {
  local missing=() pair cmd pkg
  for pair in "$@"; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
    return 2
  fi
  echo "installing ${missing[*]} with apt" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
    echo "apt-get install ${missing[*]} failed" >&2
    return 2
  }
}
