#!/usr/bin/env bash
# Soak (issue 11): a message stream from a real server, the connection cut every 1-3 s, the
# client's RSS sampled every second; by hand, never in the test suite.
#
#   test/bench/soak.sh BUILD_DIR [SECONDS] [SCENARIOS]
#
# BUILD_DIR holds test/bench/uvcometd-soak-client (a release build for RSS figures, e.g.
# `meson setup build-bench -Dbuildtype=release && ninja -C build-bench
# test/bench/uvcometd-soak-client`). SECONDS (default 600) is each scenario's stream-and-cut time.
# SCENARIOS (default all, comma separated):
#   cometd-lp-ack  cometd-nodejs-server --ack 1, long-polling, the ack extension (0 lost, 0 dup)
#   cometd-lp      the same server and transport without the ack extension
#   faye-lp        Faye 1.4.3, long-polling
#   faye-ws        Faye 1.4.3, websocket
# (cometd-nodejs-server has no websocket transport and Faye no ack extension.)
#
# Per scenario: the server (127.0.0.1, ephemeral port), soak-driver.js in front of it (a TCP
# proxy resetting every connection at random intervals of 1-3 s, and a publisher of RATE
# messages/s, default 50, on the server's control API), and the client subscribed through the
# proxy. After SECONDS the cuts and the stream stop; the client gets up to DRAIN seconds (default
# 30) to receive what is still due, then SIGTERM. One line per scenario:
#   <scenario> published=N received=N distinct=N lost=N dup=N cuts=N reconnects=N
#              rss_start_kb=N rss_end_kb=N rss_max_kb=N
# and the RSS samples in $SOAK_KEEP/<scenario>.stat when SOAK_KEEP=DIR is set (with SOAK_LOG=1
# too, the library's log in $SOAK_KEEP/<scenario>.log).
# Exit status 1 when the ack scenario lost or duplicated a message, or a scenario failed to run.
# Environment: UVCOMETD_SERVERS_DIR (default test/servers), UVCOMETD_NODE (default node), RATE,
# DRAIN, SOAK_KEEP.
set -euo pipefail

BUILD=${1:?usage: soak.sh BUILD_DIR [SECONDS] [SCENARIOS]}
SECONDS_PER=${2:-600}
SCENARIOS=${3:-cometd-lp-ack,cometd-lp,faye-lp,faye-ws}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SERVERS=${UVCOMETD_SERVERS_DIR:-$HERE/../servers}
NODE=${UVCOMETD_NODE:-node}
RATE=${RATE:-50}
DRAIN=${DRAIN:-30}
CLIENT=$BUILD/test/bench/uvcometd-soak-client
[ -x "$CLIENT" ] || { echo "soak: $CLIENT not built" >&2; exit 1; }
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Waits (at most 15 s) for "PORT n" in file $1 and prints n.
port_of() {
  for _ in $(seq 150); do
    if grep -q '^PORT ' "$1" 2>/dev/null; then sed -n 's/^PORT //p' "$1" | head -1; return 0; fi
    sleep 0.1
  done
  return 1
}

status=0
IFS=, read -r -a list <<<"$SCENARIOS"
for scenario in "${list[@]}"; do
  case $scenario in
    cometd-lp-ack) script=cometd-server.js; sargs=(--ack 1); path=/cometd; transport=long-polling; ack=1 ;;
    cometd-lp)     script=cometd-server.js; sargs=();        path=/cometd; transport=long-polling; ack=0 ;;
    faye-lp)       script=faye-server.js;   sargs=();        path=/bayeux; transport=long-polling; ack=0 ;;
    faye-ws)       script=faye-server.js;   sargs=();        path=/bayeux; transport=websocket;    ack=0 ;;
    *) echo "soak: unknown scenario $scenario" >&2; status=1; continue ;;
  esac
  dir=$WORK/$scenario
  mkdir -p "$dir"
  "$NODE" "$SERVERS/$script" --port 0 "${sargs[@]}" >"$dir/server.out" 2>"$dir/server.err" &
  server_pid=$!
  pids+=("$server_pid")
  server_port=$(port_of "$dir/server.out") || { echo "soak: $scenario: the server did not start" >&2; status=1; continue; }

  # The driver waits for the client's subscription (the server's /control/stats) before it starts
  # the stream and the cuts, so SECONDS counts from there and every message published is due.
  "$NODE" "$HERE/soak-driver.js" --target "$server_port" --seconds "$SECONDS_PER" --rate "$RATE" \
    --wait-subscribed 1 >"$dir/driver.out" 2>"$dir/driver.err" &
  driver_pid=$!
  pids+=("$driver_pid")
  proxy_port=$(port_of "$dir/driver.out") || { echo "soak: $scenario: the driver did not start" >&2; status=1; continue; }

  "$CLIENT" "http://127.0.0.1:$proxy_port$path" "$transport" "$ack" >"$dir/client.out" 2>"$dir/client.err" &
  client_pid=$!
  pids+=("$client_pid")

  # The stream and the cuts run for SECONDS; the driver prints PUBLISHED once they stopped.
  limit=$((SECONDS_PER + 60))
  for _ in $(seq $((limit * 10))); do
    grep -q '^PUBLISHED ' "$dir/driver.out" && break
    kill -0 "$client_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q '^PUBLISHED ' "$dir/driver.out"; then
    echo "soak: $scenario: the run did not finish (see $dir)" >&2
    tail -5 "$dir/client.err" "$dir/driver.err" >&2 || true
    status=1
    continue
  fi
  read -r _ published _ cuts < <(grep '^PUBLISHED ' "$dir/driver.out")
  # Drain: until every id arrived or DRAIN seconds passed.
  for _ in $(seq $((DRAIN * 10))); do
    last=$(grep '^STAT ' "$dir/client.out" | tail -1)
    d=$(sed -n 's/.* distinct=\([0-9]*\).*/\1/p' <<<"$last")
    [ -n "$d" ] && [ "$d" -ge "$published" ] && break
    sleep 0.1
  done
  kill -TERM "$client_pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$client_pid" 2>/dev/null || break; sleep 0.1; done
  kill "$driver_pid" "$server_pid" 2>/dev/null || true
  final=$(grep '^FINAL ' "$dir/client.out" | tail -1)
  if [ -z "$final" ]; then
    echo "soak: $scenario: no final line from the client" >&2
    tail -5 "$dir/client.err" >&2 || true
    status=1
    continue
  fi
  get() { sed -n "s/.* $1=\([0-9-]*\).*/\1/p" <<<"$final"; }
  received=$(get received); distinct=$(get distinct); dup=$(get dup)
  lost=$((published - distinct))
  printf '%s published=%s received=%s distinct=%s lost=%s dup=%s cuts=%s reconnects=%s rss_start_kb=%s rss_end_kb=%s rss_max_kb=%s\n' \
    "$scenario" "$published" "$received" "$distinct" "$lost" "$dup" "$cuts" "$(get reconnects)" \
    "$(get rss_start_kb)" "$(get rss_end_kb)" "$(get rss_max_kb)"
  if [ -n "${SOAK_KEEP:-}" ]; then
    mkdir -p "$SOAK_KEEP"
    grep -E '^(STAT|FINAL) ' "$dir/client.out" >"$SOAK_KEEP/$scenario.stat" || true
    cp "$dir/client.err" "$SOAK_KEEP/$scenario.log" 2>/dev/null || true
  fi
  if [ "$ack" = 1 ] && { [ "$lost" -ne 0 ] || [ "$dup" -ne 0 ]; }; then
    echo "soak: $scenario: with the ack extension $lost lost and $dup duplicated" >&2
    status=1
  fi
done
exit "$status"
