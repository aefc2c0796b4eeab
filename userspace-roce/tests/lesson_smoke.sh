#!/usr/bin/env bash
# smoke_NN_userspace: a lesson's own smoke test, both sides on this host, on the
# userspace runtime instead of Soft-RoCE: `lessons/LESSON/smoke.sh --runtime userspace local`.
# Passes only if the smoke exits 0 and its tally says every check passed.
#
#   lesson_smoke.sh LESSON PORT     (LESSON: a directory under lessons/, e.g. 01-verbs-send-recv;
#                                    PORT: the smoke's first TCP port, SMOKE_PORT)
#
# Lesson 05 needs the lab certificates: scripts/make-certs.sh makes them in
# $BUILD_DIR/certs if they are missing (idempotent, locked against parallel runs).
# Logs in $BUILD_DIR/userspace-roce/test-out/smoke_NN_userspace/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lesson=${1:?usage: lesson_smoke.sh LESSON PORT}
port=${2:?usage: lesson_smoke.sh LESSON PORT}
n=${lesson:0:2}
t_init "smoke_${n}_userspace"
smoke="$ROOT/lessons/$lesson/smoke.sh"
[ -x "$smoke" ] || { fail "no $smoke"; t_finish; }

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
t_finish
