#!/usr/bin/env bash
# Lesson 05's leak test (registered with ctest as leaks_05): build the lesson's server and
# client with AddressSanitizer (LeakSanitizer included) into $BUILD_DIR/asan-05, then run
# `smoke.sh leaks` in a lab guest: 200 sessions between one server and one client process,
# both of which fail at exit if anything leaked.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
asan="$BUILD_DIR/asan-05"
cmake -S "$ROOT" -B "$asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRDMA_TUTORIAL_SANITIZE=ON \
      -DRDMA_TUTORIAL_TESTS=OFF >"$BUILD_DIR/asan-05-configure.log" 2>&1 \
  || { cat "$BUILD_DIR/asan-05-configure.log"; exit 1; }
cmake --build "$asan" -j "$(nproc)" --target lesson05_server lesson05_client >"$BUILD_DIR/asan-05-build.log" 2>&1 \
  || { tail -n 40 "$BUILD_DIR/asan-05-build.log"; exit 1; }
out="$BUILD_DIR/lab-runs/05-tls-psn-leaks"
rm -rf "$out"
mkdir -p "$out"
"$ROOT/scripts/lab/lab.sh" run --out "$out" --timeout 900 \
  --server "BUILD_DIR=$BUILD_DIR LEAK_BUILD_DIR=$asan CERTS=$BUILD_DIR/certs lessons/05-tls-psn/smoke.sh leaks"
