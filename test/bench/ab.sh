#!/usr/bin/env bash
# Interleaved A/B of two uvcometd-bench builds (e.g. a base and a changed library): ROUNDS
# rounds, each running every ARGS set on A then B (the order alternates per round); prints
# cpu_us_per_msg and msgs_per_s per run and the medians, and B ÷ A of the medians (in publish
# mode cpu_us_per_publish and acked_publishes_per_s, under the same labels).
#
#   test/bench/ab.sh A_BUILD B_BUILD ROUNDS 'ARGS' ['ARGS'...]
#   e.g. test/bench/ab.sh base build-bench 5 '--transport long-polling --batch 1 --count 10000'
set -euo pipefail
A=${1:?usage: ab.sh A_BUILD B_BUILD ROUNDS ARGS...}
B=${2:?}
ROUNDS=${3:?}
shift 3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "ab: A=$A B=$B, $ROUNDS rounds; load average $(cut -d' ' -f1-3 /proc/loadavg)"
median() { sort -g | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
for r in $(seq "$ROUNDS"); do
  k=0
  for args in "$@"; do
    k=$((k + 1))
    order=(A B)
    [ $((r % 2)) = 0 ] && order=(B A)
    for w in "${order[@]}"; do
      dir=$A
      [ "$w" = B ] && dir=$B
      # shellcheck disable=SC2086
      "$dir/test/bench/uvcometd-bench" $args >"$WORK/out" 2>"$WORK/err" ||
        { echo "ab: $w $args failed" >&2; tail -3 "$WORK/err" >&2; exit 1; }
      sed -n 's/^cpu_us_per_\(msg\|publish\): //p' "$WORK/out" >>"$WORK/$k.$w.cpu"
      sed -n 's/^\(msgs\|acked_publishes\)_per_s: //p' "$WORK/out" >>"$WORK/$k.$w.rate"
    done
  done
done
k=0
for args in "$@"; do
  k=$((k + 1))
  ma=$(median <"$WORK/$k.A.cpu")
  mb=$(median <"$WORK/$k.B.cpu")
  echo "[$args]"
  echo "  A cpu_us_per_msg: $(tr '\n' ' ' <"$WORK/$k.A.cpu")-> median $ma (msg/s median $(median <"$WORK/$k.A.rate"))"
  echo "  B cpu_us_per_msg: $(tr '\n' ' ' <"$WORK/$k.B.cpu")-> median $mb (msg/s median $(median <"$WORK/$k.B.rate"))"
  awk -v a="$ma" -v b="$mb" 'BEGIN{printf "  B / A: %.2f\n", b/a}'
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
