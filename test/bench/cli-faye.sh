#!/usr/bin/env bash
# The issue's Faye scenario for uvcometd-cli: Faye (test/servers/faye-server.js) publishes COUNT
# messages of a SIZE-character payload to /bench; uvcometd-cli, subscribed with -n COUNT, prints
# them to a file. Reports the CLI's CPU (user+sys, getrusage of the child) per delivered message.
# Startup, handshake and subscribe are included, so this slightly overstates the per-message cost.
#
#   test/bench/cli-faye.sh CLI [websocket|long-polling] [COUNT] [SIZE]
#
# e.g. test/bench/cli-faye.sh build-bench/samples/uvcometd-cli websocket 20000 100
# Environment: UVCOMETD_SERVERS_DIR (default test/servers), UVCOMETD_NODE (default node),
# CLI_FAYE_KEEP=FILE keeps the CLI's output there.
set -euo pipefail

CLI=${1:?usage: cli-faye.sh CLI [websocket|long-polling] [COUNT] [SIZE]}
TRANSPORT=${2:-websocket}
COUNT=${3:-20000}
SIZE=${4:-100}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SERVERS=${UVCOMETD_SERVERS_DIR:-$HERE/../servers}
NODE=${UVCOMETD_NODE:-node}
WORK=$(mktemp -d)
server_pid=
cli_pid=
cleanup() {
  [ -n "$cli_pid" ] && kill "$cli_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$NODE" "$SERVERS/faye-server.js" --port 0 >"$WORK/server.out" 2>"$WORK/server.err" &
server_pid=$!
for _ in $(seq 100); do
  grep -q '^PORT ' "$WORK/server.out" 2>/dev/null && break
  sleep 0.1
done
PORT=$(sed -n 's/^PORT //p' "$WORK/server.out")
[ -n "$PORT" ] || { echo "cli-faye: the server did not start" >&2; cat "$WORK/server.err" >&2; exit 1; }
BASE=http://127.0.0.1:$PORT

# Like /usr/bin/time, with microseconds: the CLI's own user, sys and wall seconds and peak RSS
# in kB (wait4 on the spawned process, so nothing else is counted).
python3 -c '
import os, sys, time
t = time.monotonic()
out = [(os.POSIX_SPAWN_OPEN, 1, sys.argv[1] + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ, file_actions=out)
_, status, ru = os.wait4(pid, 0)
open(sys.argv[1], "w").write("%.6f %.6f %.6f %d\n" % (ru.ru_utime, ru.ru_stime, time.monotonic() - t, ru.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))' "$WORK/time" "$CLI" -t "$TRANSPORT" -s /bench -n "$COUNT" "$BASE/bayeux" &
cli_pid=$!

# Publish once the subscription is live.
for _ in $(seq 200); do
  curl -fsS "$BASE/control/stats" | grep -q '"/bench":1' && break
  sleep 0.05
done
PAYLOAD=$(head -c "$SIZE" /dev/zero | tr '\0' x)
connects() { curl -fsS "$BASE/control/stats" | sed -n 's/.*"connects":\([0-9]*\).*/\1/p'; }
connects0=$(connects)
server_cpu0=$(awk '{print $14 + $15}' "/proc/$server_pid/stat")
curl -fsS -X POST -H 'Content-Type: application/json' \
  -d "{\"channel\":\"/bench\",\"data\":{\"p\":\"$PAYLOAD\"},\"count\":$COUNT}" \
  "$BASE/control/publish" >/dev/null
wait "$cli_pid"
status=$?
cli_pid=
server_cpu1=$(awk '{print $14 + $15}' "/proc/$server_pid/stat")
connects1=$(connects)

[ -z "${CLI_FAYE_KEEP:-}" ] || cp "$WORK/time.out" "$CLI_FAYE_KEEP"
read -r user sys wall maxrss <"$WORK/time"
lines=$(wc -l <"$WORK/time.out")
echo "transport: $TRANSPORT"
echo "count: $COUNT"
echo "size: $SIZE"
echo "cli_exit: $status"
echo "lines: $lines"
echo "cli_user_s: $user"
echo "cli_sys_s: $sys"
echo "cli_wall_s: $wall"
echo "cli_max_rss_kb: $maxrss"
# Over long-polling each /meta/connect response carries what Faye queued meanwhile: the fewer
# connects, the more messages share each HTTP round trip's cost.
echo "connects: $((connects1 - connects0))"
echo "server_cpu_s: $(awk -v a="$server_cpu0" -v b="$server_cpu1" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/hz}')"
awk -v u="$user" -v s="$sys" -v n="$COUNT" -v t="$TRANSPORT" \
  'BEGIN{printf "summary: uvcometd-cli %s, Faye %d messages: %.3f us CPU/msg (user %.3f s, sys %.3f s)\n", t, n, (u+s)*1e6/n, u, s}'
[ "$status" -eq 0 ] && [ "$lines" -eq "$COUNT" ]
