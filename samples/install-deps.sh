# shellcheck shell=bash
# Sourced by test/run-tests.sh and samples/demo.sh: installs what building and testing uvcometd
# needs on Debian bookworm (as root, or through sudo), and the test servers' npm packages.
#
#   uvcometd_install_deps [EXTRA_PACKAGE...]   apt packages (apt-get update only if one is missing)
#   uvcometd_npm_ci DIR                        npm ci in DIR unless node_modules matches the lock
#
# UVCOMETD_SKIP_INSTALL=1 skips both (for machines set up by hand).

UVCOMETD_APT_PACKAGES=(
  g++ pkg-config meson ninja-build
  libuv1-dev libcurl4-openssl-dev libwebsockets-dev libwebsockets-evlib-uv libssl-dev openssl
  rapidjson-dev catch2 nlohmann-json3-dev
  redis-server haproxy
)

uvcometd__log() { printf '[deps] %s\n' "$*" >&2; }

uvcometd__installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

uvcometd__as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    uvcometd__log "need root (or sudo) to run: $*"
    return 1
  fi
}

uvcometd_install_deps() {
  if [ "${UVCOMETD_SKIP_INSTALL:-0}" = 1 ]; then return 0; fi
  if ! command -v dpkg-query >/dev/null 2>&1; then
    uvcometd__log "not a Debian system: install by hand: ${UVCOMETD_APT_PACKAGES[*]} nodejs npm $*"
    return 0
  fi
  local missing=() p
  for p in "${UVCOMETD_APT_PACKAGES[@]}" "$@"; do
    uvcometd__installed "$p" || missing+=("$p")
  done
  if ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs npm)
  elif ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
  fi
  if [ "${#missing[@]}" -eq 0 ]; then return 0; fi
  uvcometd__log "installing: ${missing[*]}"
  uvcometd__as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
  uvcometd__as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}" || return 1
}

uvcometd_npm_ci() {
  if [ "${UVCOMETD_SKIP_INSTALL:-0}" = 1 ]; then return 0; fi
  local dir=$1 want have=
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1) || return 1
  if [ -f "$dir/node_modules/.uvcometd-lock.sha256" ]; then
    have=$(cat "$dir/node_modules/.uvcometd-lock.sha256")
  fi
  if [ "$want" = "$have" ] && [ -f "$dir/node_modules/faye/package.json" ] &&
     [ -f "$dir/node_modules/cometd-nodejs-server/package.json" ]; then
    return 0
  fi
  uvcometd__log "npm ci in $dir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) || return 1
  printf '%s\n' "$want" > "$dir/node_modules/.uvcometd-lock.sha256"
}
