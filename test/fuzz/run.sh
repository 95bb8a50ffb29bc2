#!/usr/bin/env bash
# Runs one libFuzzer target of test/fuzz for a chosen time (see README.md here).
#
#   test/fuzz/run.sh TARGET [SECONDS] [--merge] [--keep-going] [-- LIBFUZZER_ARGS...]
#   test/fuzz/run.sh --minimize TARGET CRASH_FILE [SECONDS]
#
# TARGET is fuzz_frame, fuzz_ws, fuzz_session, fuzz_channel or fuzz_cli_args; SECONDS defaults
# to 300. The clang build (UVCOMETD_FUZZ_BUILD_DIR, default build-fuzz) is set up and built as
# needed. New inputs go to $BUILD/fuzz-work/TARGET/corpus, crashes to .../artifacts/; the
# checked-in corpus test/fuzz/corpus/TARGET is only read, unless --merge: then the inputs that add
# coverage are merged into it afterwards (libFuzzer -merge=1). --keep-going runs in fork mode and
# carries on past crashes, timeouts and out-of-memory inputs (each one lands in artifacts/).
# --minimize shrinks a crash input to the smallest one that still crashes (-minimize_crash=1) and
# prints where it wrote it. Runs one job at a time: the machines have few cores.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${UVCOMETD_FUZZ_BUILD_DIR:-build-fuzz}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
TARGETS="fuzz_frame fuzz_ws fuzz_session fuzz_channel fuzz_cli_args"

usage() {
  sed -n '4,6p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2
  exit 2
}

known() {
  case " $TARGETS " in *" $1 "*) return 0 ;; esac
  echo "unknown target '$1' (one of: $TARGETS)" >&2
  exit 2
}

build() {
  if [ ! -f "$BUILD/build.ninja" ]; then
    CC=${CC:-clang} CXX=${CXX:-clang++} meson setup "$BUILD" "$ROOT" -Dfuzzing=true -Dtests=enabled \
      --wrap-mode=nodownload >&2
  fi
  ninja -C "$BUILD" -j2 "test/fuzz/$1" >&2
}

# What a target needs besides its corpus: its dictionary and a longer input where it reads more.
target_args() {
  local dict="$ROOT/test/fuzz/dict/$1.dict"
  [ -f "$dict" ] && printf '%s\n' "-dict=$dict"
  case "$1" in
    fuzz_ws) printf '%s\n' -max_len=20000 ;;  # past the 16 KiB limit of an upgrade answer's head
    fuzz_session) printf '%s\n' -max_len=8192 ;;
  esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

if [ "${1:-}" = --minimize ]; then
  [ $# -ge 3 ] || usage
  known "$2"
  build "$2"
  crash=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
  out="$crash.min"
  "$BUILD/test/fuzz/$2" -minimize_crash=1 -max_total_time="${4:-120}" \
    -exact_artifact_path="$out" "$crash" || true
  [ -f "$out" ] || { echo "no smaller input found; $crash stays as it is" >&2; exit 1; }
  echo "minimized: $out ($(wc -c <"$out") bytes, was $(wc -c <"$crash"))"
  exit 0
fi

[ $# -ge 1 ] || usage
target=$1
shift
known "$target"
seconds=300
merge=0
keep_going=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --merge) merge=1 ;;
    --keep-going) keep_going=1 ;;
    --) shift; extra=("$@"); break ;;
    [0-9]*) seconds=$1 ;;
    *) usage ;;
  esac
  shift
done

build "$target"
work="$BUILD/fuzz-work/$target"
mkdir -p "$work/corpus" "$work/artifacts"
seeds="$ROOT/test/fuzz/corpus/$target"
mapfile -t base < <(target_args "$target")
args=("${base[@]}")
if [ "$keep_going" = 1 ]; then
  args+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
fi

echo "running $target for ${seconds}s: new inputs in $work/corpus, crashes in $work/artifacts" >&2
status=0
(cd "$work" && "$BUILD/test/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 \
   -timeout=10 -artifact_prefix="$work/artifacts/" "${args[@]}" "${extra[@]}" \
   "$work/corpus" "$seeds") || status=$?

if [ "$merge" = 1 ]; then
  echo "merging the inputs that add coverage into $seeds" >&2
  before=$(find "$seeds" -type f | wc -l)
  "$BUILD/test/fuzz/$target" -merge=1 "${base[@]}" "$seeds" "$work/corpus" >&2
  echo "corpus: $before -> $(find "$seeds" -type f | wc -l) files" >&2
fi
exit "$status"
