#!/usr/bin/env bash
# uroce_rdma_core_suite: the verbs API as programs nobody here wrote see it, on the
# userspace runtime.
#   1. uroce_verbs_api_check (verbs_api_check.cpp): one PASS/FAIL line per check (vendor
#      fields as kernel rxe's, ibv_query_device_ex and its size-tagged struct, ibv_rereg_mr
#      as rdma-core 44 fails it, EOPNOTSUPP for UC/UD QPs, ibv_open_xrcd and atomic work
#      requests, ibv_req_notify_cq without a channel, ibv_destroy_cq with
#      events pending, unacknowledged, or racing a thread in ibv_get_cq_event); and in its
#      log, the runtime's stderr note for each refusal, said once.
#   2. perftest's ib_atomic_bw (with and without -b) and ib_atomic_lat, server and client:
#      the device has no atomics, so both sides must fail by themselves within 20 s, not
#      be killed by timeout: a side that posts an atomic with perftest's "Couldn't post
#      send" and the runtime's note, a server that only waits with "Couldn't read remote
#      address" once its client is gone. (perftest's server waits for its client without a
#      time limit: a client that fails before it connects, for instance one started before
#      the server listens, leaves the server waiting with any device, which is why the
#      client starts only once the server listens, and every process runs under timeout.)
#   3. rdma-core 44's own test suite, as Debian's python3-pyverbs ships it
#      (/usr/share/doc/rdma-core/tests, some files gzipped): copied, gunzipped and run by
#      its run_tests.py --dev uroce0 --gid 0 -v. No failure and no error; the tests of what
#      was fixed here must pass; and every skip must be on the allow-list below, each
#      entry a feature the README lists as not implemented (and the README must still
#      list it), so that a new skip cannot hide a regression.
# perftest and python3-pyverbs are installed by scripts/install-deps.sh; if either is
# missing the script runs it, and skips (77) only if they still cannot be had (under
# CI=true that fails: lib.sh's t_skip).
# TCP ports 18620-18622. Logs in $BUILD_DIR/userspace-roce/test-out/uroce_rdma_core_suite/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t_init uroce_rdma_core_suite
README="$ROOT/userspace-roce/README.md"
SUITE_SRC=/usr/share/doc/rdma-core/tests
CHECK="$BUILD_DIR/userspace-roce/tests/uroce_verbs_api_check"
started=$SECONDS

# --- what it needs ----------------------------------------------------------------------
have_deps() {
  command -v ib_atomic_bw >/dev/null && command -v ib_atomic_lat >/dev/null &&
    [ -e "$SUITE_SRC/run_tests.py" ] && "$PYTHON" -c 'import pyverbs.device' 2>/dev/null
}
if ! have_deps; then
  echo "    perftest or python3-pyverbs is missing: running scripts/install-deps.sh"
  timeout -k 5 400 "$ROOT/scripts/install-deps.sh" >"$OUT/install-deps.log" 2>&1
  if ! have_deps; then
    missing="perftest (ib_atomic_bw, ib_atomic_lat) or python3-pyverbs ($SUITE_SRC,"
    missing+=" 'import pyverbs' in $PYTHON) is missing and scripts/install-deps.sh could not"
    missing+=" install it (log: $OUT/install-deps.log)"
    t_skip "$missing" "run scripts/install-deps.sh as root (or with sudo), then this test again"
  fi
fi
for tool in ss gunzip; do
  command -v "$tool" >/dev/null || { fail "$tool is not installed (iproute2, gzip)"; t_finish; }
done
need "$CHECK" || t_finish

# --- 1. the verbs API checks -------------------------------------------------------------
log="$OUT/verbs_api_check.log"
t0=$SECONDS
timeout -k 5 120 "$RUNTIME" -- "$CHECK" >"$log" 2>&1
rc=$?
while IFS= read -r line; do
  case $line in
    "PASS "*) pass "${line#PASS }" ;;
    "FAIL "*) fail "${line#FAIL }" ;;
    "    ("*) echo "$line" ;;
  esac
done <"$log"
if expect_rc "uroce_verbs_api_check (log: $log)" 0 "$rc" "$log"; then
  echo "    uroce_verbs_api_check: $((SECONDS - t0)) s"
fi
# note TEXT: the runtime's stderr note for TEXT, on exactly one line of the log.
NOTE_END=' is not implemented by userspace-roce \(EOPNOTSUPP\)$'
note() {
  local re n
  re="userspace-roce\[[0-9]+\] [0-9.]+: $(sed 's/[][\.*^$+?(){}|]/\\&/g' <<<"$1")$NOTE_END"
  n=$(grep -Ec -- "$re" "$log")
  if [ "$n" -eq 1 ]; then
    pass "note on stderr, once: '$1 is not implemented ...'"
  else
    fail "note on stderr for '$1': $n lines match /$re/ in $log, expected exactly 1"
  fi
}
note "ibv_create_qp of a UC QP (unreliable connected)"   # asked twice, said once
note "ibv_create_qp of a UD QP (unreliable datagram)"
note "ibv_open_xrcd (XRC domains)"
note "ibv_post_send with IBV_WR_ATOMIC_FETCH_AND_ADD"
note "ibv_post_send with IBV_WR_ATOMIC_CMP_AND_SWP"
note "ibv_rereg_mr"

# --- 2. perftest's atomic tests: refused on both sides, promptly --------------------------
# atomic NAME PORT TOOL ARGS...: server, then (once it listens) client; both must exit
# non-zero by themselves within 20 s, not be killed by timeout. A side that posts atomics
# (the client; with -b the server too) says perftest's "Couldn't post send" and the
# runtime's note; a server that only waits says it lost its client.
POST_NOTE='ibv_post_send with IBV_WR_ATOMIC_FETCH_AND_ADD is not implemented by userspace-roce \(EOPNOTSUPP\)'
atomic() {
  local name=$1 port=$2 tool=$3; shift 3
  local args=(-d uroce0 -x 0 -p "$port" "$@")
  SERVER=("$RUNTIME" -- "$tool" "${args[@]}")
  CLIENT=("$RUNTIME" -- "$tool" "${args[@]}" 127.0.0.1)
  local t=$SECONDS side rc
  run_pair "$name" "$port"
  local took=$((SECONDS - t))
  for side in server client; do
    [ $side = server ] && rc=$SRC || rc=$CRC
    local log="$OUT/$name-$side.log" what="$tool${*:+ $*} ($side): fails by itself, atomics refused"
    if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ]; then
      local why="exit $rc"
      [ "$rc" -eq 0 ] && why="exit 0 (the device has no atomics: it must fail)"
      [ "$rc" -ge 124 ] && why="killed by timeout after ${took} s (a hang)"
      fail "$what: $why (log: $log)"; show "$log"
      continue
    fi
    if [ $side = client ] || [ "${1:-}" = -b ]; then
      expect_lines "$what" "$log" "Couldn't post send" "$POST_NOTE" || continue
    else
      expect_lines "$what" "$log" "Couldn't read remote address" || continue
    fi
    if [ "$took" -gt 20 ]; then
      fail "$what: the pair took ${took} s, expected at most 20"
      continue
    fi
    pass "$what (exit $rc, ${took} s for the pair)"
  done
}
atomic atomic-bw 18620 ib_atomic_bw
atomic atomic-bw-bidir 18621 ib_atomic_bw -b
atomic atomic-lat 18622 ib_atomic_lat

# --- 3. rdma-core's own test suite -------------------------------------------------------
SUITE="$OUT/rdma-core-tests"
cp -r "$SUITE_SRC" "$SUITE" && gunzip -f "$SUITE"/*.gz \
  || { fail "could not copy and gunzip $SUITE_SRC into $SUITE"; t_finish; }
RESULTS="$OUT/rdma-core-results.tsv"
SUITE_LOG="$OUT/rdma-core-suite.log"
# run_tests.py as it is, with one addition: every test's outcome is also written, one
# line each (outcome, test id, reason or message), to RESULTS as it happens. The
# runtime's stderr notes share unittest's stream, so its -v report is not parsed.
RECORDER='
import os, runpy, sys, unittest
tests_dir, results = sys.argv[1], sys.argv[2]
out = open(results, "w", buffering=1)
def record(test, outcome, detail=""):
    out.write("%s\t%s\t%s\n" % (outcome, test.id(), " ".join(str(detail).split())))
class Recording(unittest.TextTestResult):
    def addSuccess(self, test):
        super().addSuccess(test); record(test, "ok")
    def addFailure(self, test, err):
        super().addFailure(test, err); record(test, "FAIL", err[1])
    def addError(self, test, err):
        super().addError(test, err); record(test, "ERROR", err[1])
    def addSkip(self, test, reason):
        super().addSkip(test, reason); record(test, "skip", reason)
    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err); record(test, "xfail", err[1])
    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test); record(test, "FAIL", "unexpected success")
    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            record(subtest, "FAIL" if issubclass(err[0], test.failureException) else "ERROR", err[1])
unittest.TextTestRunner.resultclass = Recording
sys.path.insert(0, tests_dir)
script = os.path.join(tests_dir, "run_tests.py")
sys.argv = [script, "--dev", "uroce0", "--gid", "0", "-v"]
runpy.run_path(script, run_name="__main__")
'
t0=$SECONDS
(cd "$OUT" && timeout -k 5 300 "$RUNTIME" -- "$PYTHON" -c "$RECORDER" "$SUITE" "$RESULTS") \
  >"$SUITE_LOG" 2>&1
rc=$?
suite_secs=$((SECONDS - t0))
count() { awk -F'\t' -v o="$1" '$1 == o' "$RESULTS" 2>/dev/null | wc -l; }
n_ok=$(count ok) n_skip=$(count skip) n_fail=$(count FAIL) n_err=$(count ERROR)
ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} in .*/\1/p' "$SUITE_LOG")
echo "    rdma-core suite: ran ${ran:-?}: $n_ok ok, $n_skip skipped, $n_fail failures, $n_err errors ($suite_secs s; $SUITE_LOG)"
if [ -z "$ran" ] || [ "$ran" -ne $((n_ok + n_skip + n_fail + n_err + $(count xfail))) ] || [ "$ran" -eq 0 ]; then
  fail "rdma-core suite: no complete run (exit $rc; 'Ran N tests' says ${ran:-nothing}, $RESULTS has $((n_ok + n_skip + n_fail + n_err)) outcomes)"
  show "$SUITE_LOG" 30
elif [ "$n_fail" -eq 0 ] && [ "$n_err" -eq 0 ] && [ "$rc" -eq 0 ]; then
  pass "rdma-core suite: no failure, no error ($n_ok ok, $n_skip skipped)"
else
  fail "rdma-core suite: $n_fail failures, $n_err errors, exit $rc (log: $SUITE_LOG)"
  awk -F'\t' '$1 == "FAIL" || $1 == "ERROR" { printf "    | %s %s: %.300s\n", $1, $2, $3 }' "$RESULTS"
fi

# The suite's tests of what this runtime was fixed for: they must run and pass.
for id in tests.test_device.DeviceTest.test_query_device \
          tests.test_device.DeviceTest.test_query_device_ex \
          tests.test_device.DeviceTest.test_phys_port_cnt_ex \
          tests.test_cq_events.CqEventsTestCase.test_cq_events_rc; do
  outcome=$(awk -F'\t' -v id="$id" '$2 == id { print $1 }' "$RESULTS")
  if [ "$outcome" = ok ]; then
    pass "rdma-core suite: $id ok"
  else
    fail "rdma-core suite: $id: '${outcome:-not run}', expected ok"
  fi
done

# The allow-list: test id (ERE) <TAB> skip reason (ERE) <TAB> the README's words for the
# feature that is not implemented (which its "Not implemented" section must contain).
ALLOWED=$(cat <<'EOF'
^tests\.test_mlx5_	^(Can not run the test over non MLX5 device|Could not open mlx5 context \(This is not an MLX5 device\)|PCI device must be passed by the user|cuda-python 12\.0\+ must be installed to run CUDA tests)$	mlx5 and EFA provider interfaces
^tests\.test_efa	^Can not run the test over non EFA device$	mlx5 and EFA provider interfaces
^tests\.	^Atomic operations are not supported$	atomics
^tests\.	^Create (UD QP .*|QP type 4) is not supported$	UD QPs
^tests\.	^Create UC QP .* is not supported$	UC QPs
^tests\.	^Create (Raw Packet QP .*|QP type 8) is not supported$	raw packet QPs
^tests\.	^Create XRCD is not supported$	XRC
^tests\.	^Create SRQ is not supported$	SRQs
^tests\.	^(Create RC QP (with|without) extended attrs is not supported|Extended QP is not supported on this device)$	extended QPs
^tests\.	^(Create )?Extended CQ is not supported$	extended CQs
^tests\.	^Query device real time is not supported$	the device clock
^tests\.test_addr\.	^Create AH is not supported$	address handles
^tests\.test_(device|mr)\.	^Device memory is not supported$	device memory
^tests\.test_odp\.	^(ODP is not supported - No ODP caps|There are no huge pages of size 2M allocated)$	on-demand paging
^tests\.test_parent_domain\.	^(Parent Domain is not supported on this device|There are no huge pages of size 2M allocated)$	parent domains
^tests\.test_(mr|qpex)\.	^(Reg MR with MW access is not supported|Create memory window of type 3 is not supported|Create custom mr with additional access flags 18 is not supported)$	memory windows
^tests\.test_mr\.DmaBuf	^Allocating dmabuf is not supported by /dev/dri/renderD[0-9]+$	dma-buf
^tests\.test_cuda_dmabuf\.	^cuda-python 12\.0\+ must be installed to run CUDA tests$	dma-buf
^tests\.test_mr\.MRTest\.test_mr_rereg_	^Rereg MR is not supported \(.*\)$	ibv_rereg_mr
^tests\.test_(mlx5_)?rdmacm\.	^Device uroce0 doesn't have net interface$	a net device in sysfs
^tests\.test_device\.DeviceTest\.test_query_gid_ex_bad_flow$	^All gid indices populated, cannot check bad flow$	a GID table of more than one entry
EOF
)
# The README's list must still name every feature the allow-list excuses.
not_built=$(sed -n '/^### Not implemented, and said so/,/^## /p' "$README")
missing_in_readme=0
while IFS=$'\t' read -r _ _ feature; do
  grep -Fqi -- "$feature" <<<"$not_built" && continue
  fail "allow-list: '$feature' is not in the README's 'Not implemented, and said so' ($README)"
  missing_in_readme=1
done <<<"$ALLOWED"
[ $missing_in_readme = 0 ] && pass "allow-list: every excused feature is listed in the README as not implemented"

unexpected=0
declare -A excused=()
while IFS=$'\t' read -r outcome id reason; do
  [ "$outcome" = skip ] || continue
  feature=""
  while IFS=$'\t' read -r id_re reason_re feat; do
    if [[ $id =~ $id_re ]] && [[ $reason =~ $reason_re ]]; then feature=$feat; break; fi
  done <<<"$ALLOWED"
  if [ -z "$feature" ]; then
    fail "rdma-core suite: skip not on the allow-list: $id: '$reason'"
    unexpected=$((unexpected + 1))
  else
    excused[$feature]=$(( ${excused[$feature]:-0} + 1 ))
  fi
done <"$RESULTS"
if [ "$n_skip" -gt 0 ] && [ $unexpected -eq 0 ]; then
  pass "rdma-core suite: all $n_skip skips are features the README lists as not implemented"
  for feature in "${!excused[@]}"; do printf '    %4d  %s\n' "${excused[$feature]}" "$feature"; done | sort -k2
fi

echo "    $T_NAME: $((SECONDS - started)) s in all"
t_finish
