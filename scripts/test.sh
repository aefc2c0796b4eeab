#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run):
#   1. install what is missing (Debian/Ubuntu packages, as root or with sudo)
#   2. build everything with warnings as errors (SANITIZE=1: with ASan + UBSan)
#   3. build the docs site (README, lessons, walkthroughs, concepts, API; a Doxygen warning
#      fails the build); ctest's "docs" tests check its links and render it in Chromium
#   4. run the unit tests, then every lesson's smoke in the Soft-RoCE lab VMs, then the
#      capture checks, kernel Soft-RoCE and the userspace runtime against each other in
#      the lab (interop, both directions, also under netem loss), then the userspace RoCE
#      runtime's tests (all seven lessons' smokes and the tour on it, Debian's verbs tools
#      and RDMA CM tools on it, its captures and fault injection), all through ctest
# Logs of every lab run are under $BUILD_DIR/lab-runs/ and $BUILD_DIR/captures/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
start=$SECONDS

step "1/4 packages"
"$ROOT/scripts/install-deps.sh"

step "2/4 build ($BUILD_DIR, sanitizers: $([ "$SANITIZE" = 1 ] && echo on || echo off))"
configure_and_build

step "3/4 docs site (Doxygen, warnings are errors): $BUILD_DIR/docs/html/index.html"
cmake --build "$BUILD_DIR" --target docs

step "4/4 tests: unit, lab smoke, captures, interop, userspace RoCE runtime"
# The lab image is built (or found cached) once here, so its download shows up as its
# own step instead of inside the first smoke test's time.
"$ROOT/scripts/lab/build-image.sh"
cd "$BUILD_DIR"
rc=0
ctest --output-on-failure --timeout 900 "$@" || rc=$?
if [ $rc -ne 0 ]; then
  # A failing test's own verdict is at the end of its output, which ctest printed
  # hundreds of lines up: repeat each one's last lines here, at the end of the log.
  log=Testing/Temporary/LastTest.log
  [ -f "$log" ] && while IFS= read -r name; do
    echo "test.sh: ---- the last 60 lines of failed test $name (all of it: $BUILD_DIR/$log) ----"
    # The name compared as a string, not a pattern (a test name may hold regex characters).
    awk -v t="$name" '!on { s = $0; if (sub(/^[0-9]+\/[0-9]+ Test: /, "", s) && s == t) on = 1; next }
                      /^<end of output>$/ {exit}
                      out {print}
                      /^Output:$/ {getline; out = 1}' "$log" | tail -n 60
  done < <(sed 's/^[0-9]*://' Testing/Temporary/LastTestsFailed.log 2>/dev/null)
  # (no LastTest.log: ctest stopped before running a test, and said why above)
  echo "test.sh: ctest failed (exit $rc) after $((SECONDS - start)) s"
  exit $rc
fi
echo "test.sh: all passed in $((SECONDS - start)) s"
