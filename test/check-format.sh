#!/usr/bin/env bash
# Fails when clang-format (.clang-format at the top) would change a C or C++ file git tracks
# under include/, lib/, samples/ or test/, and names each such file. Run from the source tree;
# the meson test 'format' runs it. To fix: clang-format -i FILE...
#
#   test/check-format.sh [CLANG_FORMAT]
set -uo pipefail
cf=${1:-clang-format}
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
mapfile -t files < <(git ls-files 'include/*.h' 'include/*.hpp' 'lib/*.cpp' 'lib/*.hpp' \
  'samples/*.c' 'samples/*.cpp' 'samples/*.hpp' 'test/*.c' 'test/*.cpp' 'test/*.hpp')
if [ "${#files[@]}" -eq 0 ]; then
  echo "check-format: no files (not a git checkout?)" >&2
  exit 2
fi
bad=0
for f in "${files[@]}"; do
  if ! "$cf" --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "not formatted: $f"
    bad=$((bad + 1))
  fi
done
echo "${#files[@]} files checked, $bad not formatted"
[ "$bad" -eq 0 ]
