#!/usr/bin/env bash
# smoke_NN_userspace: a lesson's own smoke test, both sides on this host, on the
# userspace runtime instead of Soft-RoCE: `lessons/LESSON/smoke.sh --runtime userspace local`.
# Passes only if the smoke exits 0 and its tally says every check passed.
#
#   lesson_smoke.sh [--faults] LESSON PORT [NAME]
#       LESSON: a directory under lessons/, e.g. 01-verbs-send-recv
#       PORT:   the smoke's first TCP port (SMOKE_PORT)
#       NAME:   the test's name, for its messages and log directory (default smoke_NN_userspace)
#       --faults: every process of the smoke runs with the runtime's fault injector on, at
#               the lesson's rates below (5 % duplicates and reordering; 5 % loss too for
#               lessons 01 and 06). Without it, whatever UROCE_DROP, UROCE_DUPLICATE,
#               UROCE_REORDER and UROCE_SEED the environment holds apply.
#
# On a runtime built with the sanitizers (SANITIZE=1, or the $BUILD_DIR/asan sub-tree of
# sanitized_smoke.sh: lib/sanitizer-runtimes.txt next to the library), any sanitizer
# report from any process (the lesson's programs and the runtime inside them) fails the
# test, whatever the smoke's own checks said: a process that was expected to exit 1 and
# did so because of a report must not pass. ASan and LSan write their reports to
# $OUT/sanitizer/report.PID (log_path: found even if a process's stderr went nowhere).
# GCC's UBSan, linked together with ASan, ignores log_path and writes to stderr, so the
# logs are searched for its reports as well, and it exits 98 (not 1) after one.
#
# Lesson 05 needs the lab certificates: scripts/make-certs.sh makes them in
# $BUILD_DIR/certs if they are missing (idempotent, locked against parallel runs).
# Logs in $BUILD_DIR/userspace-roce/test-out/NAME/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
faults=0
if [ "${1:-}" = --faults ]; then faults=1; shift; fi
usage="usage: lesson_smoke.sh [--faults] LESSON PORT [NAME]"
lesson=${1:?$usage}
port=${2:?$usage}
n=${lesson:0:2}
t_init "${3:-smoke_${n}_userspace}"
smoke="$ROOT/lessons/$lesson/smoke.sh"
[ -x "$smoke" ] || { fail "no $smoke"; t_finish; }
# The RDMA CM lessons need the runtime's librdmacm.so.1 (else the system's would load,
# which needs the kernel's /dev/infiniband/rdma_cm).
case $n in 02|03|04) need_rdmacm ;; esac

if [ $faults = 1 ]; then
  # Rates RC recovers from within its budget: a lost packet costs a go-back-N resend, after at
  # most one ACK timeout (the lessons use 67 ms; sooner at a PSN sequence NAK); a QP gives up only after 8 losses in a row
  # of the same exchange (retry_cnt 7), about (2 x 0.05)^8 = 1e-8 per packet at 5 %. Every
  # process mixes the seed with its own address, so each has its own pattern.
  export UROCE_SEED=$port UROCE_DUPLICATE=0.05 UROCE_REORDER=0.05
  case $n in
  02|03|04)
    # No loss for the RDMA CM lessons: the fault injector acts on every packet, the CM's
    # MADs too, and a lost ConnectRequest is sent again only after the CM's 6144 ms
    # timer (a lost ConnectReject, only when that resent ConnectRequest is refused
    # again), while their "nobody listening" cases give the client 1 or 2 s to be
    # refused. Duplicated and reordered MADs still come, and the CM must ignore a
    # duplicate. (Loss in the RC transport is lesson 01's, in uroce_faults too.)
    unset UROCE_DROP ;;
  05)
    # No loss for lesson 05: its isolation cases expect the server's device to refuse a
    # rogue WRITE or READ with "NAK remote access error", after which the server's QP is
    # in ERROR (IBA class C) and drops everything. A lost NAK is therefore never resent;
    # the rogue's resends go unanswered and it ends with "retry counter exceeded" instead
    # of "remote access error", as on a NIC. Duplicated and reordered NAKs still arrive.
    unset UROCE_DROP ;;
  *)
    export UROCE_DROP=0.05 ;;
  esac
fi
settings=$(env | sed -n '/^UROCE_\(DROP\|DUPLICATE\|REORDER\|SEED\)=/p' | sort | tr '\n' ' ')
echo "    faults: ${settings:-none}"

sanitized=0
if [ -e "$BUILD_DIR/userspace-roce/lib/sanitizer-runtimes.txt" ]; then
  sanitized=1
  mkdir -p "$OUT/sanitizer"
  # Leak detection stays on (ASan's default): the lessons and the runtime are ours.
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$OUT/sanitizer/report"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:exitcode=98"
  echo "    runtime built with ASan + UBSan: reports go to $OUT/sanitizer/"
fi

if [ "$n" = 05 ]; then
  timeout -k 5 120 "$ROOT/scripts/make-certs.sh" "$BUILD_DIR/certs" >"$OUT/make-certs.log" 2>&1
  expect_rc "lab certificates in $BUILD_DIR/certs (scripts/make-certs.sh)" 0 $? "$OUT/make-certs.log" || t_finish
fi

# The smoke bounds every process it starts; this bounds the whole run once more.
log="$OUT/smoke.log"
export SMOKE_OUT="$OUT/smoke" SMOKE_PORT=$port BUILD_DIR
bg 600 "$log" "$smoke" --runtime userspace local
reap "$BG_PID"; rc=$RC
grep -E '^smoke: (PASS|FAIL)|    \| ' "$log" | sed 's/^/    /'
tally=$(grep -E '^smoke: lesson [0-9]+: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
if [ -z "$tally" ]; then
  fail "lessons/$lesson/smoke.sh --runtime userspace local: no tally line (exit $rc)"; show "$log"
elif ! grep -q 'runtime: userspace RoCE' "$log"; then
  fail "lessons/$lesson/smoke.sh did not run on the userspace runtime"; show "$log"
else
  ok=$(echo "$tally" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\1/')
  bad=$(echo "$tally" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\2/')
  if [ "$rc" -eq 0 ] && [ "$bad" -eq 0 ] && [ "$ok" -gt 0 ]; then
    pass "lessons/$lesson/smoke.sh --runtime userspace local: $ok passed, 0 failed"
  else
    fail "lessons/$lesson/smoke.sh --runtime userspace local: exit $rc, $ok passed, $bad failed (log: $log)"
  fi
fi

if [ $sanitized = 1 ]; then
  reports=$(find "$OUT/sanitizer" -type f -name 'report.*' | sort)
  # "==PID==" starts every ASan/LSan message, "FILE:LINE:COL: runtime error:" every UBSan one.
  report_re='==[0-9]+==|: runtime error: '
  logged=$(grep -rlE --exclude-dir=sanitizer -- "$report_re" "$OUT" | sort)
  if [ -z "$reports" ] && [ -z "$logged" ]; then
    pass "no ASan, LSan or UBSan report from any process of the smoke"
  else
    if [ -n "$reports" ]; then
      fail "ASan/LSan reports from $(echo "$reports" | wc -l) process(es):"
      while IFS= read -r r; do
        echo "    --- $r (first 40 lines)"
        sed -n '1,40p' "$r" | sed 's/^/    | /'
      done <<<"$reports"
    fi
    if [ -n "$logged" ]; then
      fail "sanitizer reports in $(echo "$logged" | wc -l) log(s):"
      while IFS= read -r r; do
        echo "    --- $r"
        grep -m 3 -A 6 -E -- "$report_re" "$r" | sed 's/^/    | /'
      done <<<"$logged"
    fi
  fi
fi
t_finish
