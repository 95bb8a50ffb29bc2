#!/usr/bin/env bash
# Builds uvcometd with ASan+UBSan and runs every test, then the consumer projects.
#
#   test/run-tests.sh [MESON_TEST_ARGS...]     e.g. test/run-tests.sh --suite unit
#
# On a Debian bookworm machine it first installs what is missing (apt, then npm ci for the test
# servers). The last line is "N passed, N failed"; the exit status is non-zero if anything failed.
# Environment: UVCOMETD_BUILD_DIR (default build-asan), UVCOMETD_CONSUMER_BUILD_DIR (default
# test/consumer/build), UVCOMETD_SKIP_INSTALL=1,
# UVCOMETD_SKIP_CONSUMER=1.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${UVCOMETD_BUILD_DIR:-build-asan}
CONSUMER_BUILD=${UVCOMETD_CONSUMER_BUILD_DIR:-test/consumer/build}

log() { printf '[run-tests] %s\n' "$*" >&2; }

# shellcheck source=SCRIPTDIR/../samples/install-deps.sh
. "$ROOT/samples/install-deps.sh"
# cmake for the CMake consumer, doxygen for the reference (test 'docs'), clang-format for
# the style check (test 'format').
if ! uvcometd_install_deps cmake doxygen clang-format; then
  log "installing the build dependencies failed"
  echo "0 passed, 1 failed"
  exit 1
fi
if ! uvcometd_npm_ci "$ROOT/test/servers"; then
  log "npm ci for the test servers failed"
  echo "0 passed, 1 failed"
  exit 1
fi

export UVCOMETD_SERVERS_DIR="$ROOT/test/servers"
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1:print_summary=1:print_stacktrace=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_summary=1:print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-print_suppressions=0}

# meson setup, or reconfigure an existing build dir (wiping it if that fails).
setup() {
  local dir=$1 src=$2
  shift 2
  if [ -f "$dir/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$dir" "$src" "$@" || meson setup --wipe "$dir" "$src" "$@"
  else
    meson setup "$dir" "$src" "$@"
  fi
}

passed=0
failed=0
status=0
DIGEST=$(mktemp)
trap 'rm -f "$DIGEST"' EXIT

# 1. The library and its tests, sanitized.
built=0
if setup "$BUILD" . -Dtests=enabled -Dbuildtype=debug -Db_sanitize=address,undefined -Dwerror=true \
     --wrap-mode=nodownload >&2 && meson compile -C "$BUILD" >&2; then
  built=1
else
  log "building $BUILD failed"
  failed=$((failed + 1))
  status=1
fi

if [ "$built" = 1 ]; then
  rm -f "$BUILD/meson-logs/testlog.json"
  meson test -C "$BUILD" --print-errorlogs "$@"
  rc=$?
  [ "$rc" -eq 0 ] || status=1
  counts=
  if [ -f "$BUILD/meson-logs/testlog.json" ]; then
    counts=$(python3 - "$BUILD/meson-logs/testlog.json" <<'EOF'
import json, re, sys
ok = bad = skipped = 0
with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    for line in f:
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        result = entry.get("result", "")
        # Each meson test runs one Catch2 file: count its test cases when its summary is there.
        out = entry.get("stdout", "") or ""
        m = re.search(r"All tests passed \([0-9]+ assertions? in ([0-9]+) test cases?\)", out)
        m2 = re.search(r"test cases:\s*([0-9]+)\s*\|\s*([0-9]+) passed\s*\|\s*([0-9]+) failed", out)
        if result == "OK" and m:
            ok += int(m.group(1))
        elif result != "SKIP" and m2:
            ok += int(m2.group(2))
            bad += max(int(m2.group(3)), 0 if result == "OK" else 1)
        elif result in ("OK", "EXPECTEDFAIL"):
            ok += 1
        elif result == "SKIP":
            skipped += 1
        else:  # FAIL, TIMEOUT, UNEXPECTEDPASS, ERROR
            bad += 1
print(ok, bad, skipped)
EOF
    )
    # What failed, kept for the end of the output (CI records its tail).
    python3 - "$BUILD/meson-logs/testlog.json" >"$DIGEST" <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    for line in f:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("result") in ("OK", "SKIP", "EXPECTEDFAIL"):
            continue
        print(f"FAILED {entry.get('name')} ({entry.get('result')}, {entry.get('duration', 0):.1f} s)")
        out = (entry.get("stdout", "") or "").splitlines()
        # Catch2 names each failing case between two rules of dashes; show those and the tail.
        rule = lambda k: out[k].startswith("-----")
        cases = [out[i + 1] for i in range(len(out) - 2)
                 if rule(i) and not rule(i + 1)
                 and any(rule(k) for k in range(i + 2, min(i + 6, len(out))))]
        for case in dict.fromkeys(cases):
            print(f"  case: {case}")
        failures = [i for i, text in enumerate(out) if text.endswith(": FAILED:")][:3]
        for i in failures:
            for text in out[i:i + 8]:
                print(f"  > {text}")
        for tail in out[-25:]:
            print(f"  | {tail}")
EOF
  fi
  if [ -n "$counts" ]; then
    read -r ok bad skipped <<<"$counts"
    passed=$((passed + ok))
    failed=$((failed + bad))
    [ "$skipped" -eq 0 ] || log "$skipped test(s) skipped"
  elif [ "$rc" -ne 0 ]; then
    failed=$((failed + 1))  # meson test itself failed without a log
  fi
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1  # e.g. a bad argument: never report success for a failed run
  fi
fi

# 2. Downstream projects: uvcometd installed into a prefix and used through pkg-config (C++ and
#    C), CMake and meson dependency(), and as a meson subproject (one test per check).
if [ "${UVCOMETD_SKIP_CONSUMER:-0}" != 1 ]; then
  log "building the consumer projects (test/consumer/run.sh $CONSUMER_BUILD)"
  consumer_out=$(test/consumer/run.sh "$CONSUMER_BUILD")
  printf '%s\n' "$consumer_out" | sed 's/^/[run-tests] consumer: /' >&2
  ok=$(grep -c '^PASS ' <<<"$consumer_out")
  bad=$(grep -c '^FAIL ' <<<"$consumer_out")
  [ "$ok" -gt 0 ] || bad=$((bad + 1))  # it stopped before any check
  passed=$((passed + ok))
  failed=$((failed + bad))
  [ "$bad" -eq 0 ] || status=1
fi

[ "$failed" -eq 0 ] || status=1
if [ -s "$DIGEST" ]; then
  log "what failed (the whole output of each is above):"
  sed 's/^/[run-tests] /' "$DIGEST" >&2
fi
echo "$passed passed, $failed failed"
exit "$status"
