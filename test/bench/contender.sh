#!/usr/bin/env bash
# uvcometd against the CometD JavaScript client, side by side in one run: the firehose
# (firehose-server.js) streams COUNT messages at BATCH messages per frame (1: one message per
# websocket frame or per long-poll response) to (a) uvcometd-bench and (b) cometd-js-client.mjs
# (npm cometd 9 + cometd-nodejs-client 2 from test/servers/node_modules). Each client reports
# its own process CPU from the subscribe reply to the last message; the server is a fresh
# firehose for each client run, with the same arguments. RUNS rounds, the two clients
# interleaved (their order alternates per round); prints each round and the medians, and the
# ratio CometD-JS ÷ uvcometd of CPU per message (per round and of the medians). Each client's
# CPU is also split into user and kernel time: uvcometd's kernel time alone (the wakeups and
# reads the kernel charges it) bounds the ratio it could reach with a user-space cost of zero,
# printed as ratio_if_uvcometd_user_space_were_free.
#
#   test/bench/contender.sh BUILD [RUNS] [COUNT] [BATCH] [websocket|long-polling] [tls]
#
# e.g. test/bench/contender.sh build-bench 5 50000 1 websocket
# BUILD is a meson build dir with test/bench/uvcometd-bench built (release).
# Environment: UVCOMETD_NODE (default node), UVCOMETD_SERVERS_DIR (default test/servers).
set -euo pipefail

BUILD=${1:?usage: contender.sh BUILD [RUNS] [COUNT] [BATCH] [websocket|long-polling] [tls]}
RUNS=${2:-5}
COUNT=${3:-50000}
BATCH=${4:-1}
TRANSPORT=${5:-websocket}
TLS=${6:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODE=${UVCOMETD_NODE:-node}
BENCH=$BUILD/test/bench/uvcometd-bench
[ -x "$BENCH" ] || { echo "contender: $BENCH is not built" >&2; exit 2; }
case $TRANSPORT in websocket|long-polling) ;; *) echo "contender: bad transport" >&2; exit 2;; esac
tls_arg=() scheme=http
if [ "$TLS" = tls ]; then tls_arg=(--tls); scheme=https; fi

WORK=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# uvcometd: the bench starts its own firehose with the same arguments.
run_uvcometd() {
  "$BENCH" --transport "$TRANSPORT" --count "$COUNT" --batch "$BATCH" "${tls_arg[@]}" \
    >"$WORK/u.out"
  sed -n 's/^cpu_us_per_msg: //p' "$WORK/u.out" >"$WORK/u.cpu"
  kernel_us u >"$WORK/u.sys"
}

run_js() {
  # Killed below, or by the EXIT trap.
  "$NODE" "$HERE/firehose-server.js" --port 0 --count "$COUNT" --batch "$BATCH" \
    "${tls_arg[@]}" </dev/null >"$WORK/s.out" 2>"$WORK/s.err" &
  server_pid=$!
  for _ in $(seq 150); do
    grep -q '^PORT ' "$WORK/s.out" 2>/dev/null && break
    sleep 0.1
  done
  local port
  port=$(sed -n 's/^PORT //p' "$WORK/s.out")
  [ -n "$port" ] || { echo "contender: the firehose did not start" >&2; cat "$WORK/s.err" >&2; exit 1; }
  NODE_TLS_REJECT_UNAUTHORIZED=0 "$NODE" --no-warnings "$HERE/cometd-js-client.mjs" \
    --url "$scheme://127.0.0.1:$port/cometd" --count "$COUNT" --transport "$TRANSPORT" \
    >"$WORK/j.out"
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  sed -n 's/^cpu_us_per_msg: //p' "$WORK/j.out" >"$WORK/j.cpu"
  kernel_us j >"$WORK/j.sys"
}

# Kernel (system) CPU µs per message of a client's run, from its cpu_sys_s and the count.
kernel_us() {
  awk -v n="$COUNT" '/^cpu_sys_s: / {printf "%.3f\n", $2 * 1e6 / n}' "$WORK/$1.out"
}

median() { sort -g | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

echo "contender: $TRANSPORT${TLS:+ ($TLS)}, $COUNT messages, batch $BATCH, $RUNS rounds;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$WORK/u.all"
: >"$WORK/j.all"
: >"$WORK/r.all"
: >"$WORK/us.all"
: >"$WORK/js.all"
for i in $(seq "$RUNS"); do
  if [ $((i % 2)) = 1 ]; then run_uvcometd; run_js; else run_js; run_uvcometd; fi
  u=$(cat "$WORK/u.cpu")
  j=$(cat "$WORK/j.cpu")
  r=$(awk -v a="$j" -v b="$u" 'BEGIN{printf "%.2f", a/b}')
  us=$(cat "$WORK/u.sys")
  js=$(cat "$WORK/j.sys")
  printf 'round %d: uvcometd %s us/msg (%s msg/s), cometd-js %s us/msg (%s msg/s), ratio %s;' \
    "$i" "$u" "$(sed -n 's/^msgs_per_s: //p' "$WORK/u.out")" \
    "$j" "$(sed -n 's/^msgs_per_s: //p' "$WORK/j.out")" "$r"
  printf ' kernel us/msg: uvcometd %s, cometd-js %s\n' "$us" "$js"
  echo "$us" >>"$WORK/us.all"
  echo "$js" >>"$WORK/js.all"
  echo "$u" >>"$WORK/u.all"
  echo "$j" >>"$WORK/j.all"
  echo "$r" >>"$WORK/r.all"
done
mu=$(median <"$WORK/u.all")
mj=$(median <"$WORK/j.all")
mr=$(median <"$WORK/r.all")
echo "median_uvcometd_cpu_us_per_msg: $mu"
echo "median_cometd_js_cpu_us_per_msg: $mj"
echo "median_ratio_per_round: $mr"
mus=$(median <"$WORK/us.all")
echo "median_uvcometd_kernel_us_per_msg: $mus"
echo "median_cometd_js_kernel_us_per_msg: $(median <"$WORK/js.all")"
awk -v a="$mj" -v k="$mus" 'BEGIN{printf "ratio_if_uvcometd_user_space_were_free: %.2f\n", a/k}'
awk -v a="$mj" -v b="$mu" -v t="$TRANSPORT" -v n="$COUNT" -v m="$BATCH" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
  'BEGIN{printf "summary: %s %d x batch %d: uvcometd %.3f us/msg, cometd-js %.3f us/msg, cometd-js / uvcometd %.2f (medians); load %s\n", t, n, m, b, a, a/b, l}'
