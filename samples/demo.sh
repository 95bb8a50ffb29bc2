#!/usr/bin/env bash
# uvcometd demo: builds uvcometd-cli, starts a local Faye server, subscribes the CLI to
# /demo/ticker and publishes 10 ticks to it through the server's control API, one every 0.3 s.
#
#   samples/demo.sh
#
# On a Debian bookworm machine it first installs what is missing. Exits non-zero if the CLI fails.
# Environment: UVCOMETD_DEMO_BUILD_DIR (default build), UVCOMETD_SKIP_INSTALL=1,
# UVCOMETD_DEMO_CLI (a prebuilt CLI to use instead of building one).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${UVCOMETD_DEMO_BUILD_DIR:-build}
CHANNEL=/demo/ticker
COUNT=10

say() { printf '[demo] %s\n' "$*"; }

# shellcheck source=SCRIPTDIR/install-deps.sh
. "$ROOT/samples/install-deps.sh"
uvcometd_install_deps curl
uvcometd_npm_ci "$ROOT/test/servers"

CLI=${UVCOMETD_DEMO_CLI:-}
if [ -z "$CLI" ]; then
  say "building uvcometd-cli in $BUILD/"
  if [ -f "$BUILD/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$BUILD" . -Dbuildtype=debugoptimized -Dtests=disabled -Dsamples=true --wrap-mode=nodownload >/dev/null
  else
    meson setup "$BUILD" . -Dbuildtype=debugoptimized -Dtests=disabled -Dsamples=true --wrap-mode=nodownload >/dev/null
  fi
  meson compile -C "$BUILD" uvcometd-cli
  CLI="$BUILD/samples/uvcometd-cli"
fi
[ -x "$CLI" ] || { say "no executable $CLI"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/uvcometd-demo.XXXXXX")
SERVER_PID=
CLI_PID=
TAIL_PID=
cleanup() {
  if [ -n "$CLI_PID" ]; then kill "$CLI_PID" 2>/dev/null || true; fi
  if [ -n "$TAIL_PID" ]; then kill "$TAIL_PID" 2>/dev/null || true; fi
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

node test/servers/faye-server.js >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
PORT=
for _ in $(seq 150); do
  PORT=$(sed -n 's/^PORT \([0-9][0-9]*\)$/\1/p' "$WORK/server.out")
  [ -n "$PORT" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$PORT" ]; then
  say "the Faye server did not start:"
  cat "$WORK/server.err" >&2
  exit 1
fi
BASE="http://127.0.0.1:$PORT"
URL="$BASE/bayeux"
say "Faye server (websocket + long-polling) at $URL"

say "running: $CLI -v -s $CHANNEL -n $COUNT $URL"
LINEBUF=()
if command -v stdbuf >/dev/null 2>&1; then LINEBUF=(stdbuf -oL -eL); fi
"${LINEBUF[@]}" "$CLI" -v -s "$CHANNEL" -n "$COUNT" "$URL" >"$WORK/cli.log" 2>&1 &
CLI_PID=$!
# Show the CLI's output as it arrives.
tail -n +1 -s 0.1 -f --pid="$CLI_PID" "$WORK/cli.log" | sed -u 's/^/  cli | /' &
TAIL_PID=$!

cli_running() { kill -0 "$CLI_PID" 2>/dev/null; }

# Publish only once the CLI's subscription reached the server.
subscribed=
for _ in $(seq 200); do
  if curl -fsS "$BASE/control/stats" 2>/dev/null | grep -q "\"$CHANNEL\":[1-9]"; then
    subscribed=1
    break
  fi
  cli_running || break
  sleep 0.1
done
if [ -z "$subscribed" ]; then
  if cli_running; then
    say "the CLI did not subscribe to $CHANNEL within 20 s"
  else
    rc=0
    wait "$CLI_PID" || rc=$?
    CLI_PID=
    wait "$TAIL_PID" 2>/dev/null || true
    TAIL_PID=
    say "uvcometd-cli exited with status $rc before subscribing"
  fi
  exit 1
fi

for i in $(seq 1 "$COUNT"); do
  sleep 0.3
  body="{\"channel\":\"$CHANNEL\",\"data\":{\"tick\":$i,\"time\":\"$(date +%T.%3N)\"}}"
  curl -fsS -H 'Content-Type: application/json' -d "$body" "$BASE/control/publish" >/dev/null
  say "published tick $i"
done

# The CLI exits by itself after $COUNT messages; give it 15 s.
for _ in $(seq 150); do
  cli_running || break
  sleep 0.1
done
if cli_running; then
  say "the CLI did not exit after $COUNT messages"
  exit 1
fi
rc=0
wait "$CLI_PID" || rc=$?
CLI_PID=
wait "$TAIL_PID" 2>/dev/null || true
TAIL_PID=
if [ "$rc" != 0 ]; then
  say "uvcometd-cli failed (exit status $rc)"
  exit 1
fi
say "uvcometd-cli received $COUNT messages and exited; stopping the server"
