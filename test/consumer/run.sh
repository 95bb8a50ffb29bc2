#!/usr/bin/env bash
# Uses uvcometd the ways a downstream project does, each a check of its own: installed into a
# prefix and found by pkg-config (C++ with c++, C with gcc, dynamically with LD_LIBRARY_PATH or
# an rpath, and the C program statically), by CMake's find_package, by meson's dependency();
# and as a meson subproject, installed with the consumer and run from there.
#
#   test/consumer/run.sh [BUILD_ROOT]     (default test/consumer/build; run from anywhere)
#
# Prints "PASS <check>" or "FAIL <check>" per check on stdout, the commands and their output on
# stderr; exits 1 when a check failed. test/run-tests.sh runs it (step 2).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SRC=$ROOT/test/consumer
B=${1:-$SRC/build}
mkdir -p "$B" && B=$(cd "$B" && pwd)
PREFIX=$B/prefix
failed=0

log() { printf '[consumer] %s\n' "$*" >&2; }
run() { log "\$ $*"; "$@" >&2; }
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; log "FAIL $1: $2"; failed=$((failed + 1)); }
# The program prints "ok" (it closes a client it never opened and checks uv_loop_close()).
prints_ok() { local out; out=$("$@" 2>&1); [ "$out" = ok ] || { log "$* printed: $out"; return 1; }; }
# A fresh meson build dir (reconfigured builds could hide a stale option).
setup() { rm -rf "$1" && run meson setup "$@"; }

# uvcometd itself, as a user installs it (static and shared, so both can be linked).
rm -rf "$PREFIX"
if ! setup "$B/uvcometd" "$ROOT" --prefix="$PREFIX" -Ddefault_library=both -Dtests=disabled \
       -Dwerror=true --wrap-mode=nodownload || ! run meson install -C "$B/uvcometd"; then
  fail install "building or installing uvcometd into $PREFIX failed"
  exit 1
fi
LIBDIR=$PREFIX/$(meson introspect "$B/uvcometd" --buildoptions |
                 python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "libdir"))')
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
unset LD_LIBRARY_PATH

# What the shared library exports: the API only (uvcometd:: outside detail, and uvcometd_*).
check_exports() {
  local syms bad
  syms=$(nm -D --defined-only "$LIBDIR/libuvcometd.so.0" | awk '{print $3}')
  bad=$(grep -v -E '^(_ZN8uvcometd|_ZNK8uvcometd|_ZT[ISV]N8uvcometd|uvcometd_)' <<<"$syms")
  bad+=$(c++filt <<<"$syms" | grep -E 'uvcometd::detail')
  log "libuvcometd.so.0 exports $(wc -l <<<"$syms") symbols ($(grep -c '^uvcometd_' <<<"$syms") of the C API)"
  [ -z "$bad" ] || { log "not API: $bad"; return 1; }
  readelf -d "$LIBDIR/libuvcometd.so.0" | grep -q 'SONAME.*\[libuvcometd\.so\.0\]'
}
if check_exports; then pass exports; else fail exports "internal symbols exported or no SONAME"; fi

# The installed CLI finds its library through its rpath.
if [ "$("$PREFIX/bin/uvcometd-cli" --version)" = "uvcometd-cli $(pkg-config --modversion uvcometd)" ]; then
  pass installed-cli
else
  fail installed-cli "uvcometd-cli --version from $PREFIX/bin"
fi

# pkg-config: nothing but what the headers need (libuv), RapidJSON only for the helper header.
if ! pkg-config --print-requires --print-requires-private uvcometd | grep -qi rapidjson &&
   pkg-config --print-requires uvcometd-rapidjson | grep -q RapidJSON; then
  pass pkg-config-requires
else
  fail pkg-config-requires "uvcometd.pc names RapidJSON, or uvcometd-rapidjson.pc does not"
fi

# pkg-config, C++ and C (gcc), against the shared library: LD_LIBRARY_PATH, or an rpath.
mkdir -p "$B/pkg-config"
pc_consumer() {
  local name=$1 compiler=$2 std=$3 source=$4 out=$B/pkg-config/$1
  # shellcheck disable=SC2046
  run "$compiler" "$std" -Wall -Wextra -Werror "$source" -o "$out" \
      $(pkg-config --cflags --libs uvcometd) &&
    prints_ok env LD_LIBRARY_PATH="$(pkg-config --variable=libdir uvcometd)" "$out" &&
    # shellcheck disable=SC2046
    run "$compiler" "$std" "$source" -o "$out-rpath" $(pkg-config --cflags --libs uvcometd) \
        -Wl,-rpath,"$(pkg-config --variable=libdir uvcometd)" &&
    prints_ok "$out-rpath"
}
if pc_consumer cxx c++ -std=c++17 "$SRC/main.cpp"; then pass pkg-config-c++; else fail pkg-config-c++ "see above"; fi
if pc_consumer c gcc -std=gnu99 "$SRC/main.c"; then pass pkg-config-c-gcc; else fail pkg-config-c-gcc "see above"; fi
# The C program with the static library: gcc needs uvcometd.pc's Libs.private (the C++ runtime)
# besides what it requires. (pkg-config --static would also expand libcurl's own private
# libraries, whose -dev packages are not needed for anything else here.)
PC_PRIVATE=$(sed -n 's/^Libs\.private: //p' "$PKG_CONFIG_PATH/uvcometd.pc")
# shellcheck disable=SC2046,SC2086
if run gcc -std=gnu99 "$SRC/main.c" -o "$B/pkg-config/c-static" $(pkg-config --cflags uvcometd) \
       "$LIBDIR/libuvcometd.a" $PC_PRIVATE \
       $(pkg-config --libs $(pkg-config --print-requires --print-requires-private uvcometd |
                             cut -d' ' -f1)) &&
   ! readelf -d "$B/pkg-config/c-static" | grep -q libuvcometd && prints_ok "$B/pkg-config/c-static"; then
  pass pkg-config-c-static
else
  fail pkg-config-c-static "see above (Libs.private: $PC_PRIVATE)"
fi

# CMake: find_package(uvcometd CONFIG) -> uvcometd::uvcometd, C++ and C; versions checked.
if rm -rf "$B/cmake" && run cmake -S "$SRC/cmake" -B "$B/cmake" -DCMAKE_PREFIX_PATH="$PREFIX" &&
   run cmake --build "$B/cmake" && prints_ok "$B/cmake/uvcometd-consumer" &&
   prints_ok "$B/cmake/uvcometd-consumer-c"; then
  pass cmake
else
  fail cmake "see above"
fi
# The package a static-only build installs (default_library=static): meson writes it at
# configure time; it is tried on the static library installed above, so nothing is rebuilt.
STATIC_PREFIX=$B/cmake-static-prefix
if setup "$B/uvcometd-static" "$ROOT" --prefix="$STATIC_PREFIX" -Ddefault_library=static \
       -Dtests=disabled -Dsamples=false --wrap-mode=nodownload >/dev/null &&
   rm -rf "$STATIC_PREFIX" && mkdir -p "$STATIC_PREFIX/${LIBDIR#"$PREFIX"/}/cmake/uvcometd" &&
   ln -s "$PREFIX/include" "$STATIC_PREFIX/include" &&
   ln -s "$LIBDIR/libuvcometd.a" "$STATIC_PREFIX/${LIBDIR#"$PREFIX"/}/libuvcometd.a" &&
   cp "$B/uvcometd-static/lib/cmake/"*.cmake "$STATIC_PREFIX/${LIBDIR#"$PREFIX"/}/cmake/uvcometd/" &&
   rm -rf "$B/cmake-static" &&
   run cmake -S "$SRC/cmake" -B "$B/cmake-static" -DCMAKE_PREFIX_PATH="$STATIC_PREFIX" &&
   run cmake --build "$B/cmake-static" && prints_ok "$B/cmake-static/uvcometd-consumer" &&
   prints_ok "$B/cmake-static/uvcometd-consumer-c" &&
   ! readelf -d "$B/cmake-static/uvcometd-consumer-c" | grep -q libuvcometd; then
  pass cmake-static
else
  fail cmake-static "see above"
fi
cmake_refuses() {
  rm -rf "$B/cmake-version"
  ! cmake -S "$SRC/cmake" -B "$B/cmake-version" -DCMAKE_PREFIX_PATH="$PREFIX" \
      -DUVCOMETD_WANT="$1" >/dev/null 2>&1
}
if cmake_refuses 0.2 && cmake_refuses 1.0 && cmake_refuses 0.0.9; then
  pass cmake-version
else
  fail cmake-version "find_package accepted a version this package does not satisfy"
fi

# meson dependency() from the installed prefix (no fallback), built and installed.
if setup "$B/meson-dependency" "$SRC" --wrap-mode=nofallback --prefix="$B/meson-dependency-prefix" &&
   run meson install -C "$B/meson-dependency" &&
   readelf -d "$B/meson-dependency/uvcometd-consumer" | grep -q 'NEEDED.*libuvcometd\.so\.0' &&
   prints_ok "$B/meson-dependency/uvcometd-consumer" &&
   prints_ok "$B/meson-dependency/uvcometd-consumer-c" &&
   prints_ok env LD_LIBRARY_PATH="$LIBDIR" "$B/meson-dependency-prefix/bin/uvcometd-consumer-c"; then
  pass meson-dependency
else
  fail meson-dependency "see above"
fi

# meson subproject (the tree through subprojects/uvcometd), installed with the consumer: the
# installed programs run from the consumer's prefix alone, and nothing of uvcometd is installed.
if [ ! -e "$SRC/subprojects/uvcometd/meson.build" ]; then
  mkdir -p "$SRC/subprojects" && rm -rf "$SRC/subprojects/uvcometd" &&
    ln -s ../../.. "$SRC/subprojects/uvcometd"
fi
SUBPREFIX=$B/meson-subproject-prefix
if rm -rf "$SUBPREFIX" &&
   setup "$B/meson-subproject" "$SRC" --force-fallback-for=uvcometd --wrap-mode=nodownload \
     --prefix="$SUBPREFIX" &&
   run meson install -C "$B/meson-subproject" &&
   prints_ok "$SUBPREFIX/bin/uvcometd-consumer" && prints_ok "$SUBPREFIX/bin/uvcometd-consumer-c" &&
   ! readelf -d "$SUBPREFIX/bin/uvcometd-consumer" | grep -q libuvcometd &&
   [ "$(cd "$SUBPREFIX" && find . -type f | sort | tr '\n' ' ')" = \
     "./bin/uvcometd-consumer ./bin/uvcometd-consumer-c " ]; then
  pass meson-subproject
else
  fail meson-subproject "see above (installed: $(cd "$SUBPREFIX" 2>/dev/null && find . -type f | tr '\n' ' '))"
fi

[ "$failed" -eq 0 ]
