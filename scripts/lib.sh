# Shared by scripts/tour.sh and scripts/test.sh (sourced, not run).
# ROOT: the repository; BUILD_DIR: the CMake build tree (default build/, or build-asan/
# with SANITIZE=1).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${SANITIZE:=0}"
if [ "$SANITIZE" = 1 ]; then : "${BUILD_DIR:=$ROOT/build-asan}"; else : "${BUILD_DIR:=$ROOT/build}"; fi
export ROOT BUILD_DIR

# step "text": one progress line, so a long run reads as a list of what happened.
step() { printf '\n==> %s\n' "$*"; }

# configure_and_build [TARGET...]: CMake configure and build, warnings as errors. With no
# TARGET everything, the unit tests included (RDMA_TUTORIAL_TESTS=ON), as scripts/test.sh
# does. With TARGETs only those, as scripts/tour.sh does: a tree configured before keeps
# its setting, and a new one is configured without the tests (GoogleTest need not be
# installed; scripts/test.sh turns them on in the same tree later).
configure_and_build() {
  local sanitize=OFF tests=(-DRDMA_TUTORIAL_TESTS=ON)
  [ "$SANITIZE" = 1 ] && sanitize=ON
  if [ $# -gt 0 ]; then
    tests=()
    [ -f "$BUILD_DIR/CMakeCache.txt" ] || tests=(-DRDMA_TUTORIAL_TESTS=OFF)
  fi
  mkdir -p "$BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DRDMA_TUTORIAL_SANITIZE=$sanitize "${tests[@]}" >"$BUILD_DIR/configure.log" 2>&1 \
    || { cat "$BUILD_DIR/configure.log"; echo "cmake configure failed (log above)" >&2; return 1; }
  local targets=()
  [ $# -gt 0 ] && targets=(--target "$@")
  cmake --build "$BUILD_DIR" -j "$(nproc)" "${targets[@]}"
}

# asan_subtree TARGET...: configure $BUILD_DIR/asan (ASan + UBSan, no tests) and build
# just TARGET... there, for the tests that run sanitized programs next to a plain build
# (tests/lab_leaks.sh; userspace-roce/tests/sanitized_smoke.sh, which also gets the
# sanitized userspace runtime). One sub-tree for all of them, so each file is compiled
# once; the lock makes a second test wait (at most 20 min) until the first has finished
# configuring and building, instead of running cmake in the same tree at once.
# -O1 -g1 rather than RelWithDebInfo's -O2 -g: AddressSanitizer's recommended level, and
# line tables are all a report's stack trace needs; it compiles the sub-tree with about
# 40 % less CPU (190 s instead of 340 s here), while the sanitized smokes run as fast.
# Logs: $BUILD_DIR/asan/configure.log and build.log (the last build's).
asan_subtree() {
  local tree="$BUILD_DIR/asan"
  mkdir -p "$tree"
  (
    flock -w 1200 9 || { echo "asan_subtree: $tree stayed locked for 20 min ($BUILD_DIR/asan.lock)" >&2; exit 1; }
    cmake -S "$ROOT" -B "$tree" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
          "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" -DRDMA_TUTORIAL_SANITIZE=ON \
          -DRDMA_TUTORIAL_TESTS=OFF >"$tree/configure.log" 2>&1 \
      || { cat "$tree/configure.log"; echo "asan_subtree: cmake configure of $tree failed (log above)" >&2; exit 1; }
    cmake --build "$tree" -j "$(nproc)" --target "$@" >"$tree/build.log" 2>&1 \
      || { tail -n 40 "$tree/build.log"; echo "asan_subtree: building $* in $tree failed (log: $tree/build.log)" >&2; exit 1; }
  ) 9>"$BUILD_DIR/asan.lock"
}
