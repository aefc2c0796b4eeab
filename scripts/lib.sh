# Shared by scripts/tour.sh and scripts/test.sh (sourced, not run).
# ROOT: the repository; BUILD_DIR: the CMake build tree (default build/, or build-asan/
# with SANITIZE=1).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${SANITIZE:=0}"
if [ "$SANITIZE" = 1 ]; then : "${BUILD_DIR:=$ROOT/build-asan}"; else : "${BUILD_DIR:=$ROOT/build}"; fi
export ROOT BUILD_DIR

# step "text": one progress line, so a long run reads as a list of what happened.
step() { printf '\n==> %s\n' "$*"; }

# configure_and_build: CMake configure (once) and build everything, warnings as errors.
configure_and_build() {
  local sanitize=OFF
  [ "$SANITIZE" = 1 ] && sanitize=ON
  mkdir -p "$BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DRDMA_TUTORIAL_SANITIZE=$sanitize >"$BUILD_DIR/configure.log" 2>&1 \
    || { cat "$BUILD_DIR/configure.log"; echo "cmake configure failed (log above)" >&2; return 1; }
  cmake --build "$BUILD_DIR" -j "$(nproc)"
}
