#!/usr/bin/env bash
# Lesson 05's leak test (registered with ctest as leaks_05): build the lesson's server and
# client with AddressSanitizer (LeakSanitizer included) into $BUILD_DIR/asan, the sanitized
# sub-tree shared with the userspace runtime's sanitized smoke (scripts/lib.sh,
# asan_subtree), then run `smoke.sh leaks` in a lab guest: 200 sessions between one server
# and one client process, both of which fail at exit if anything leaked.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
source "$ROOT/scripts/lib.sh"
asan="$BUILD_DIR/asan"
asan_subtree lesson05_server lesson05_client
out="$BUILD_DIR/lab-runs/05-tls-psn-leaks"
rm -rf "$out"
mkdir -p "$out"
"$ROOT/scripts/lab/lab.sh" run --out "$out" --timeout 900 \
  --server "BUILD_DIR=$BUILD_DIR LEAK_BUILD_DIR=$asan CERTS=$BUILD_DIR/certs lessons/05-tls-psn/smoke.sh leaks"
