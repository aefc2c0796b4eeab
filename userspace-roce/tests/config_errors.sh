#!/usr/bin/env bash
# uroce_config_errors: the runtime refuses a UROCE_* value it cannot use instead of
# replacing it with a default, and says so. For each invalid value below:
#   - Debian's ibv_devices, unmodified, exits 1 with "Failed to get IB devices list:
#     Invalid argument" (its perror after ibv_get_device_list returned NULL with EINVAL)
#   - the runtime said it on exactly one stderr line: "userspace-roce: VAR='VALUE'
#     refused: <what is accepted>; the device list fails with EINVAL until it is fixed"
# and then, more closely:
#   - python3 through ctypes: ibv_get_device_list returns NULL, *num = 0, errno EINVAL
#   - lesson 01's server exits 1 with "ibv_get_device_list failed: EINVAL"
#   - two invalid values: one line each; the launcher's own options (--drop 2) reach the
#     runtime's check too
#   - the edges that are valid (window 1 and 4096, seed 2^64-1 and 0x-hex, probabilities
#     0, 1, .5 and 5e-2, log 3, an empty value meaning unset) give the device, and
#     ibv_devinfo -v on UROCE_ADDR=127.0.187.5 shows that address as GID[0]; an
#     interface name (UROCE_ADDR=lo) gives its first free address, 127.0.0.1
# TCP port 18699 (lesson 01's server stops before it listens). Logs in
# $BUILD_DIR/userspace-roce/test-out/uroce_config_errors/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t_init uroce_config_errors
for tool in ibv_devices ibv_devinfo; do
  command -v "$tool" >/dev/null || { fail "$tool is not installed (ibverbs-utils: scripts/install-deps.sh)"; t_finish; }
done
need "$LESSON01/server" || t_finish
# Nothing from the caller's environment may change what is tested.
unset UROCE_ADDR UROCE_DROP UROCE_DUPLICATE UROCE_REORDER UROCE_SEED UROCE_LOG UROCE_WINDOW \
  UROCE_ACK_DELAY

SUFFIX="; the device list fails with EINVAL until it is fixed"
PROBABILITY="a probability is a number from 0 to 1, e.g. 0.05 \\(unset: 0\\)"
ADDR="an IPv4 unicast address of this host in dotted form, e.g. 127.0.0.2 or 10.0.0.2, or the name of a network interface that exists here, e.g. eth0 \\(unset: the first free 127.0.0.x from 127.0.0.2\\)"
WINDOW="the window is a whole number of packets from 1 to 4096 \\(unset: 128\\)"
ACK_DELAY="the ACK delay is a whole number of microseconds from 0 \\(ACK at once\\) to 10000 \\(unset: 100\\)"
LOG="the log level is 0 \\(quiet\\), 1 \\(connections and errors\\), 2 \\(every packet\\) or 3 \\(responder decisions\\) \\(unset: 0\\)"
SEED="a seed is a whole number from 0 to 18446744073709551615, decimal or 0x-hex \\(unset: 1\\)"

# ere TEXT: TEXT as an extended regular expression matching itself.
ere() { sed 's/[][\.*^$+?(){}|]/\\&/g' <<<"$1"; }

# refused NAME VAR VALUE SHOWN ACCEPTED_RE: ibv_devices with VAR=VALUE.
refused() {
  local name=$1 var=$2 value=$3 shown=$4 accepted=$5 log="$OUT/$1.log"
  env "$var=$value" timeout -k 5 30 "$RUNTIME" -- ibv_devices >"$log" 2>&1
  local rc=$?
  local line="^userspace-roce: $var='$(ere "$shown")' refused: $accepted$(ere "$SUFFIX")\$"
  check "$var='$shown': ibv_devices gets NULL and EINVAL; the runtime says what is accepted" 1 $rc \
    "$log" "$line" '^Failed to get IB devices list: Invalid argument$' || return
  local n
  n=$(grep -c "$var" "$log")
  [ "$n" -eq 1 ] || { fail "$var='$shown': said on $n lines, expected one (log: $log)"; show "$log"; }
}

refused addr-garbage UROCE_ADDR garbage garbage "$ADDR"
refused addr-octet UROCE_ADDR 127.0.0.256 127.0.0.256 "$ADDR"
refused addr-short UROCE_ADDR 127.1 127.1 "$ADDR"
refused addr-any UROCE_ADDR 0.0.0.0 0.0.0.0 "$ADDR"
refused addr-multicast UROCE_ADDR 224.0.0.1 224.0.0.1 "$ADDR"
refused addr-newline UROCE_ADDR $'127.0.0.2\nx' '127.0.0.2\x0ax' "$ADDR"
refused addr-no-interface UROCE_ADDR nosuchif0 nosuchif0 "$ADDR"
refused window-zero UROCE_WINDOW 0 0 "$WINDOW"
refused window-big UROCE_WINDOW 4097 4097 "$WINDOW"
refused window-negative UROCE_WINDOW -1 -1 "$WINDOW"
refused window-hex UROCE_WINDOW 0x80 0x80 "$WINDOW"
refused window-junk UROCE_WINDOW 12abc 12abc "$WINDOW"
refused ack-delay-big UROCE_ACK_DELAY 10001 10001 "$ACK_DELAY"
refused ack-delay-unit UROCE_ACK_DELAY 100us 100us "$ACK_DELAY"
refused log-high UROCE_LOG 4 4 "$LOG"
refused log-word UROCE_LOG verbose verbose "$LOG"
refused seed-negative UROCE_SEED -1 -1 "$SEED"
refused seed-overflow UROCE_SEED 18446744073709551616 18446744073709551616 "$SEED"
refused seed-bad-hex UROCE_SEED 0xZZ 0xZZ "$SEED"
refused drop-high UROCE_DROP 1.5 1.5 "$PROBABILITY"
refused drop-comma UROCE_DROP 0,05 0,05 "$PROBABILITY"
refused drop-negative UROCE_DROP -0.1 -0.1 "$PROBABILITY"
refused drop-nan UROCE_DROP nan nan "$PROBABILITY"
refused drop-percent UROCE_DROP 5% 5% "$PROBABILITY"
refused duplicate-word UROCE_DUPLICATE often often "$PROBABILITY"
refused reorder-high UROCE_REORDER 2 2 "$PROBABILITY"

# The exact answer, as a program sees it (Debian's python3 through ctypes).
cat >"$OUT/device_list.py" <<'PY'
import ctypes, errno
lib = ctypes.CDLL("libibverbs.so.1", use_errno=True)
lib.ibv_get_device_list.restype = ctypes.c_void_p
num = ctypes.c_int(-1)
ctypes.set_errno(0)
lst = lib.ibv_get_device_list(ctypes.byref(num))
err = ctypes.get_errno()
print("list=%s num=%d errno=%s" % ("NULL" if not lst else "non-NULL", num.value,
                                   errno.errorcode.get(err, err)))
PY
UROCE_WINDOW=0 timeout -k 5 30 "$RUNTIME" -- "$PYTHON" "$OUT/device_list.py" >"$OUT/python.log" 2>&1
check "python3 (ctypes), UROCE_WINDOW=0: ibv_get_device_list returns NULL, num 0, errno EINVAL" 0 $? \
  "$OUT/python.log" '^list=NULL num=0 errno=EINVAL$' "^userspace-roce: UROCE_WINDOW='0' refused: "

# A lesson: it must be told "the verbs library rejected its configuration", not "no device".
UROCE_ADDR=garbage timeout -k 5 30 "$RUNTIME" -- "$LESSON01/server" -p 18699 --accept-timeout 5 \
  >"$OUT/lesson01.log" 2>&1
check "lesson 01 server, UROCE_ADDR=garbage: exits 1 on ibv_get_device_list's EINVAL" 1 $? \
  "$OUT/lesson01.log" "^userspace-roce: UROCE_ADDR='garbage' refused: " 'ibv_get_device_list failed: EINVAL'

# Every invalid value is named, not just the first.
UROCE_WINDOW=0 UROCE_LOG=9 timeout -k 5 30 "$RUNTIME" -- ibv_devices >"$OUT/two.log" 2>&1
check "two invalid values: one line for each" 1 $? "$OUT/two.log" \
  "^userspace-roce: UROCE_WINDOW='0' refused: " "^userspace-roce: UROCE_LOG='9' refused: "
# The launcher's options are checked by the same runtime.
timeout -k 5 30 "$RUNTIME" --drop 2 -- ibv_devinfo >"$OUT/launcher.log" 2>&1
rc=$?
check "scripts/userspace-roce.sh --drop 2: ibv_devinfo is refused by the runtime" 255 $rc \
  "$OUT/launcher.log" "^userspace-roce: UROCE_DROP='2' refused: $PROBABILITY" \
  '^Failed to get IB devices list: Invalid argument$'

# The valid edges.
UROCE_WINDOW=4096 UROCE_SEED=18446744073709551615 UROCE_DROP=0 UROCE_DUPLICATE=5e-2 \
  UROCE_REORDER=.5 UROCE_LOG=3 UROCE_ADDR= UROCE_ACK_DELAY=10000 \
  timeout -k 5 30 "$RUNTIME" -- ibv_devices >"$OUT/valid.log" 2>&1
check "valid edges (window 4096, seed 2^64-1, 0, 5e-2, .5, log 3, empty ADDR, ACK delay 10000): ibv_devices lists uroce0" \
  0 $? "$OUT/valid.log" '^[[:space:]]+uroce0[[:space:]]+[0-9a-f]{16}$'
UROCE_WINDOW=1 UROCE_SEED=0x1F UROCE_DROP=1 UROCE_LOG=0 UROCE_ACK_DELAY=0 \
  timeout -k 5 30 "$RUNTIME" -- ibv_devices >"$OUT/valid2.log" 2>&1
check "valid edges (window 1, seed 0x1F, drop 1, log 0, ACK delay 0): ibv_devices lists uroce0" 0 $? \
  "$OUT/valid2.log" '^[[:space:]]+uroce0[[:space:]]+[0-9a-f]{16}$'
for log in valid valid2; do
  if grep -q refused "$OUT/$log.log"; then fail "a valid value was refused (log: $OUT/$log.log)"; show "$OUT/$log.log"; fi
done
UROCE_ADDR=127.0.187.5 timeout -k 5 30 "$RUNTIME" -- ibv_devinfo -v >"$OUT/addr.log" 2>&1
check "UROCE_ADDR=127.0.187.5: ibv_devinfo -v shows GID[0] ::ffff:127.0.187.5" 0 $? "$OUT/addr.log" \
  'GID\[ *0\]:[[:space:]]+::ffff:127\.0\.187\.5, RoCE v2$'
UROCE_ADDR=lo timeout -k 5 30 "$RUNTIME" -- ibv_devinfo -v >"$OUT/addr-lo.log" 2>&1
check "UROCE_ADDR=lo: the interface's address, GID[0] ::ffff:127.0.0.1" 0 $? "$OUT/addr-lo.log" \
  'GID\[ *0\]:[[:space:]]+::ffff:127\.0\.0\.1, RoCE v2$'
t_finish
