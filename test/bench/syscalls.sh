#!/usr/bin/env bash
# System calls per message and per wakeup of uvcometd-bench in firehose receive mode, under
# strace (-f -ff: one file per process, so the Node server the bench starts is left out; only
# the bench's own process is counted). For each run: epoll_wait calls and wakeups (epoll_wait
# returning > 0), epoll_ctl, socket reads (read/recvfrom/recvmsg/readv on TCP sockets) and the
# bytes per read, socket writes (write/sendto/sendmsg/writev on TCP sockets), reads and writes
# on other fds (eventfds of uv_async / lws_cancel_service), all per message and per wakeup.
# strace slows the client, so more data waits per wakeup than without it: compare runs of the
# same script, not with the bench's own timing.
#
#   test/bench/syscalls.sh BUILD [RUN...]
#   RUN = TRANSPORT:BATCH:COUNT[:tls], e.g. websocket:1:50000 long-polling:1000:200000:tls
#
# With no RUN: ws, wss, http, https at batch 1 and batch 1,000.
# SYSCALLS_KEEP=DIR keeps the strace files there.
set -euo pipefail

BUILD=${1:?usage: syscalls.sh BUILD [TRANSPORT:BATCH:COUNT[:tls]...]}
shift
BENCH=$BUILD/test/bench/uvcometd-bench
[ -x "$BENCH" ] || { echo "syscalls: $BENCH is not built" >&2; exit 2; }
runs=("$@")
if [ ${#runs[@]} = 0 ]; then
  runs=(websocket:1:50000 websocket:1:50000:tls long-polling:1:5000 long-polling:1:5000:tls
        websocket:1000:500000 websocket:1000:500000:tls long-polling:1000:500000
        long-polling:1000:500000:tls)
fi
WORK=${SYSCALLS_KEEP:-$(mktemp -d)}
mkdir -p "$WORK"
[ -n "${SYSCALLS_KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT

printf '%-22s %7s %7s %7s %7s %7s %8s %7s %7s %7s %9s\n' run wakeups ep_wait ep_ctl sk_read \
  sk_write other_rw "B/read" "ctl/req" "msg/wk" "cpu_us/msg"
for run in "${runs[@]}"; do
  IFS=: read -r transport batch count tls <<<"$run"
  name=$transport:$batch${tls:+:tls}
  dir=$WORK/${name//:/_}
  rm -rf "$dir"
  mkdir -p "$dir"
  args=(--transport "$transport" --batch "$batch" --count "$count")
  [ "$tls" = tls ] && args+=(--tls)
  strace -f -ff -yy -s 0 -o "$dir/t" \
    -e trace=epoll_wait,epoll_pwait,epoll_ctl,read,recvfrom,recvmsg,readv,write,sendto,sendmsg,writev \
    "$BENCH" "${args[@]}" >"$dir/bench.out" 2>"$dir/bench.err" ||
    { echo "syscalls: $name failed:" >&2; tail -5 "$dir/bench.err" >&2; exit 1; }
  # The bench is the process whose first trace file has the lowest pid (the parent).
  main=$(ls "$dir"/t.* | sort -t. -k2 -n | head -1)
  cpu=$(sed -n 's/^cpu_us_per_msg: //p' "$dir/bench.out")
  # ctl/req (long-polling): epoll_ctl per HTTP response carrying data, i.e. per COUNT / BATCH.
  awk -v n="$count" -v batch="$batch" -v name="$name" -v cpu="$cpu" -v lp="$([ "$transport" = long-polling ] && echo 1 || echo 0)" '
    /^epoll_wait|^epoll_pwait/ { ew++; if ($NF + 0 > 0) wk++; next }
    /^epoll_ctl/ { ctl++; next }
    /^(read|recvfrom|recvmsg|readv)\(/ {
      if ($0 ~ /TCP|TCPv6/) { r = $NF + 0; if (r > 0) { sr++; bytes += r } else sre++ } else orw++
      next }
    /^(write|sendto|sendmsg|writev)\(/ { if ($0 ~ /TCP|TCPv6/) sw++; else orw++; next }
    END {
      reqs = lp ? n / batch : 0
      printf "%-22s %7d %7d %7d %7d %7d %8d %7.0f %7s %7.1f %9s\n", name, wk, ew, ctl, sr + sre, sw, orw,
        sr ? bytes / sr : 0, reqs ? sprintf("%.2f", ctl / reqs) : "-", wk ? n / wk : 0, cpu
      printf "%-22s %7.3f %7.3f %7.3f %7.3f %7.3f %8.3f  (per message)\n", "", wk / n, ew / n, ctl / n,
        (sr + sre) / n, sw / n, orw / n
      printf "%-22s %7s %7.2f %7.2f %7.2f %7.2f %8.2f  (per wakeup)\n", "", "", ew / wk, ctl / wk,
        (sr + sre) / wk, sw / wk, orw / wk
    }' "$main"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
