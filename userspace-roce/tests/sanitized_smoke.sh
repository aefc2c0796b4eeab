#!/usr/bin/env bash
# uroce_sanitized_smoke: lessons 01, 02, 05 and 06 on the runtime built with
# AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer, with the fault
# injector on, in a plain build. It builds the shared sanitized sub-tree $BUILD_DIR/asan
# (scripts/lib.sh, asan_subtree: the same tree tests/lab_leaks.sh uses, under one lock)
# with only what the runs need: the runtime (uroce_verbs and its librdmacm, uroce_rdmacm)
# and lessons 01, 02, 05 and 06's server and client (06: many requests in flight,
# unsignaled requests, chains, inline data, WRITE_WITH_IMM and READs in flight through the
# runtime). Then each lesson's `smoke.sh --runtime userspace local` runs there through
# lesson_smoke.sh --faults, which fails on any sanitizer report from any process. Lesson
# 02 stands for the RDMA CM lessons: its smoke takes the CM library through every path 03
# and 04 take (connect, accept, reject with private data, disconnect, a server serving
# many clients, "nobody listening") and more, and 03 and 04 would each add a sanitized
# build of their programs and a run to CI's time for little more of the runtime's code.
# Registered only in plain builds: a SANITIZE=1 build runs the smokes of lessons 01 to
# 06, smoke_01_userspace to smoke_06_userspace, this way itself (and smoke_07_userspace
# on its sanitized runtime without --faults).
#
# TCP ports 18670-18683 (lesson 01), 18690-18696 (lesson 05) and 18654-18658 (lesson
# 06); RDMA CM ports 18900-18926 (lesson 02, its server at 127.0.73.212). Logs: each
# lesson's in $BUILD_DIR/asan/userspace-roce/test-out/uroce_sanitized_NN/, the sub-tree's
# build in $BUILD_DIR/asan/build.log.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/scripts/lib.sh"
t_init uroce_sanitized_smoke
asan="$BUILD_DIR/asan"

start=$SECONDS
if ! asan_subtree uroce_verbs uroce_rdmacm lesson01_server lesson01_client lesson02_server \
      lesson02_client lesson05_server lesson05_client lesson06_server lesson06_client \
      >"$OUT/asan-build.log" 2>&1; then
  fail "building the sanitized sub-tree $asan"; show "$OUT/asan-build.log" 40; t_finish
fi
echo "    sanitized sub-tree $asan built in $((SECONDS - start)) s"
if [ ! -e "$asan/userspace-roce/lib/sanitizer-runtimes.txt" ]; then
  fail "$asan/userspace-roce/lib holds no sanitizer-runtimes.txt: the runtime there is not sanitized"
  t_finish
fi
pass "runtime built with ASan + UBSan: $(grep -v '^#' "$asan/userspace-roce/lib/sanitizer-runtimes.txt" | tr '\n' ' ')"

# One lesson after the other. At once they would save at most the shorter smoke's time
# (about 10 s), and put both smokes' busy-polling processes, whose ACK timeouts are 67 ms,
# in competition for the CI machine's two CPUs.
for run in "01-verbs-send-recv 18670" "02-cm-write-read 18900" "05-tls-psn 18690" \
           "06-performance 18654"; do
  set -- $run
  name="uroce_sanitized_${1:0:2}"
  start=$SECONDS
  BUILD_DIR=$asan timeout -k 5 900 "$TESTS_DIR/lesson_smoke.sh" --faults "$1" "$2" "$name" \
    >"$OUT/$name.log" 2>&1
  rc=$?
  sed 's/^/    /' "$OUT/$name.log"
  if [ $rc -eq 0 ]; then
    pass "lesson ${1:0:2} on the sanitized runtime with faults ($((SECONDS - start)) s)"
  else
    fail "lesson ${1:0:2} on the sanitized runtime with faults: exit $rc (log: $OUT/$name.log)"
  fi
done
t_finish
