#!/usr/bin/env bash
# uroce_cm_tools: Debian's RDMA CM programs (rdmacm-utils) and perftest's RDMA CM mode,
# unmodified, on the userspace runtime: scripts/userspace-roce.sh puts the runtime's
# librdmacm.so.1 and libibverbs.so.1 first, and each process gets its own address.
#   - rping -v -V -C 100, server and client: both exit 0, and each prints exactly the 100
#     ping data lines rping's pattern gives ("rdma-ping-N: " and a run of letters that
#     starts one further for each ping), in order: the client's line is what the server
#     RDMA WROTE back after it RDMA READ the client's buffer
#   - ucmatose (server) and ucmatose -s SERVER (client): both exit 0, data transfers
#     complete, disconnected
#   - rdma_server / rdma_client -s SERVER -p PORT, and rdma_xserver / rdma_xclient with
#     -c r (the RC connection type): both exit 0 with their "end 0" line
#   - perftest over RDMA CM (-R): ib_send_bw, ib_write_bw and ib_read_lat with
#     -d uroce0 -x 0 -R -p PORT: both exit 0; the side(s) that print a result table print
#     one row of the default size with a positive iteration count and a positive, finite
#     bandwidth (bw) or 0 < t_min <= t_typical <= t_max (lat); the client's second
#     connect waits until the server listens again (UROCE_CM_CONNECT_GATE, see perf),
#     and the server's log shows its second listen before the second REQ
#   - udaddy (UD QPs over RDMA CM) and mckey (multicast): the runtime implements neither;
#     server and client each fail by themselves within 20 s, with a nonzero exit and the
#     runtime's note on stderr naming what is not implemented
#   - UROCE_CM_CONNECT_GATE naming no directory: refused on one line, and rping's first
#     librdmacm call fails (rping exits nonzero within 20 s)
#   - not here: rdma-core 44's test_rdmacm (python3-pyverbs), which cannot run on the
#     runtime (userspace-roce/README.md, "rdma-core's test_rdmacm", says why);
#     uroce_rdma_core_suite (rdma_core_suite.sh) accepts its skip ("Device uroce0
#     doesn't have net interface") on its allow-list
# A server is at a fixed address (127.0.191.N, outside the 127.0.0.x the runtime hands
# to processes that ask for none: its -s/-a/-b option where it has one, else
# UROCE_ADDR); the client connects there. RDMA CM ports 18980-18986 (they are no TCP
# ports, but distinct from every other test's). Output of programs that block-buffer a
# redirected stdout goes through `stdbuf -oL`. Logs in
# $BUILD_DIR/userspace-roce/test-out/uroce_cm_tools/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t_init uroce_cm_tools

for tool in rping ucmatose rdma_server rdma_client rdma_xserver rdma_xclient udaddy mckey \
            ib_send_bw ib_write_bw ib_read_lat ss stdbuf; do
  command -v "$tool" >/dev/null \
    || { fail "$tool is not installed (rdmacm-utils, perftest, iproute2, coreutils: scripts/install-deps.sh)"; t_finish; }
done
need_rdmacm
LB=(stdbuf -oL)   # line-buffered stdout for programs whose output goes to a file

# both_zero WHAT SERVER_REGEX CLIENT_REGEX NAME: SRC and CRC must be 0, each log with its line.
both_zero() {
  local what=$1 sre=$2 cre=$3 name=$4
  check "$what: server" 0 "$SRC" "$OUT/$name-server.log" "$sre"
  check "$what: client" 0 "$CRC" "$OUT/$name-client.log" "$cre"
}

# --- rping -----------------------------------------------------------------------------
# rping_lines SIZE COUNT: the COUNT strings rping's client puts in its SIZE-byte buffer
# (rping.c, rping_test_client): "rdma-ping-N: ", then letters from ASCII 65 to 122 and
# round again, the first one starting at 65 and each later one a letter further; the
# last byte is the terminating NUL.
rping_lines() {
  "$PYTHON" - "$1" "$2" <<'EOF'
import sys
size, count = int(sys.argv[1]), int(sys.argv[2])
start = 65
for ping in range(count):
    buf = bytearray(b"rdma-ping-%d: " % ping)[:size - 1]
    c = start
    while len(buf) < size - 1:
        buf.append(c)
        c = c + 1 if c < 122 else 65
    start = start + 1 if start < 122 else 65
    print(buf.decode())
EOF
}
A=127.0.191.1
SERVER=("${LB[@]}" "$RUNTIME" -- rping -s -v -V -C 100 -a "$A" -p 18980)
CLIENT=("${LB[@]}" "$RUNTIME" -- rping -c -v -V -C 100 -a "$A" -p 18980)
cm_pair rping $A 'RDMA_CM_EVENT_REJECTED, error 8'
rping_lines 64 100 >"$OUT/rping-expected.txt"
for side in server client; do
  [ $side = server ] && rc=$SRC prefix="server ping data: " || rc=$CRC prefix="ping data: "
  log="$OUT/rping-$side.log"
  expect_rc "rping -v -V -C 100 ($side)" 0 "$rc" "$log" || continue
  sed -n "s/^$prefix//p" "$log" >"$OUT/rping-$side-data.txt"
  got=$(wc -l <"$OUT/rping-$side-data.txt")
  if cmp -s "$OUT/rping-expected.txt" "$OUT/rping-$side-data.txt"; then
    pass "rping -v -V -C 100 ($side): exit 0, the 100 ping data lines, each as rping wrote it, in order"
  else
    fail "rping -v -V -C 100 ($side): $got '${prefix% }' lines, expected 100 equal to $OUT/rping-expected.txt; first difference:"
    diff "$OUT/rping-expected.txt" "$OUT/rping-$side-data.txt" | head -n 4 | sed 's/^/    | /'
  fi
done

# --- ucmatose --------------------------------------------------------------------------
A=127.0.191.2
SERVER=("${LB[@]}" "$RUNTIME" --addr "$A" -- ucmatose -p 18981)
CLIENT=("${LB[@]}" "$RUNTIME" -- ucmatose -s "$A" -p 18981)
cm_pair ucmatose $A 'RDMA_CM_EVENT_REJECTED, error: 8'
both_zero "ucmatose" 'data transfers complete' 'data transfers complete' ucmatose
# The server disconnects; the client sees it and ends.
expect_lines "ucmatose: the server disconnects, both report status 0" "$OUT/ucmatose-server.log" \
  '^cmatose: disconnecting$' '^disconnected$' '^return status 0$' \
  && expect_lines "ucmatose: the server disconnects, both report status 0" "$OUT/ucmatose-client.log" \
    '^test complete$' '^return status 0$' \
  && pass "ucmatose: the server disconnects, both report status 0"

# --- rdma_server / rdma_client, rdma_xserver / rdma_xclient (RC) -----------------------
A=127.0.191.3
SERVER=("${LB[@]}" "$RUNTIME" -- rdma_server -s "$A" -p 18982)
CLIENT=("${LB[@]}" "$RUNTIME" -- rdma_client -s "$A" -p 18982)
cm_pair rdma_server $A 'rdma_connect: Connection refused'
both_zero "rdma_server -s $A / rdma_client -s $A" '^rdma_server: end 0$' '^rdma_client: end 0$' rdma_server

A=127.0.191.4
SERVER=("${LB[@]}" "$RUNTIME" --addr "$A" -- rdma_xserver -c r -p 18983)
CLIENT=("${LB[@]}" "$RUNTIME" -- rdma_xclient -c r -s "$A" -p 18983)
cm_pair rdma_xserver $A 'rdma_connect: Connection refused'
both_zero "rdma_xserver -c r / rdma_xclient -c r" '^rdma_xserver: end 0$' '^rdma_xclient: end 0$' rdma_xserver

# --- perftest over RDMA CM -------------------------------------------------------------
# perf_table LOG KIND SIZE: the result table's one row (SIZE bytes) is sane; prints why not.
perf_table() {
  awk -v kind="$2" -v size="$3" '
    /#bytes/ { intable = 1; next }
    intable && $1 ~ /^[0-9]+$/ {
      rows++
      if ($1 != size) { err = "row for " $1 " B, expected " size " B"; exit }
      if ($2 <= 0) { err = $1 " B: " $2 " iterations"; exit }
      if (kind == "bw") {
        # #bytes #iterations BW_peak BW_average MsgRate (MB/s, Mpps)
        if (!($4 > 0) || $4 == "inf" || $4 == "nan") { err = "BW average " $4; exit }
        summary = $2 " x " $1 " B, BW average " $4 " MB/s"
      } else {
        # #bytes #iterations t_min t_max t_typical t_avg ...
        if (!($3 > 0 && $3 <= $5 && $5 <= $4)) { err = "t_min " $3 ", t_typical " $5 ", t_max " $4 ": not 0 < t_min <= t_typical <= t_max"; exit }
        summary = $2 " x " $1 " B, t_typical " $5 " us"
      }
    }
    END {
      if (err) { print err; exit 1 }
      if (rows != 1) { print rows + 0 " result rows, expected 1"; exit 1 }
      print summary
    }' "$1"
}
# perf NAME PORT ADDR KIND SIZE TABLE_SIDES TOOL: server and client with -R; both exit 0;
# TABLE_SIDES (server, client or both) print the table, checked by perf_table. perftest
# connects twice (its own exchange, then the test's QP), so a refused client is not run
# again (its server would be waiting for the second connection): the client starts once
# the server's runtime says it listens (--log 1), and a refusal is a failure.
# perftest's server destroys its listener once it has accepted the first connection, and
# after the exchange over it (create_rdma_cm_connection, src/perftest_communication.c)
# creates, binds and listens on a new one; its client, after the same exchange, resolves
# the route, creates its QP and connects. Nothing orders the two: a ConnectRequest first
# is refused (REJ, invalid service ID, as the Linux kernel's CM answers too), and
# perftest 4.5 then passes the ids it has just destroyed to rdma_resolve_addr
# (rdma_cm_client_connection after rdma_cm_destroy_cma) and dies of SIGSEGV; on a loaded
# machine that happened in three runs in a row. So the client's second rdma_connect
# waits at a gate (UROCE_CM_CONNECT_GATE, the runtime's test hook) that this test opens
# once the server's runtime has said "listening on" a second time: a barrier, not a
# delay. The server's log must then show that second listen before the second REQ.
perf() {
  local name=$1 port=$2 addr=$3 kind=$4 size=$5 sides=$6 tool=$7
  local args=(-d uroce0 -x 0 -R -p "$port") gate="$OUT/$name-gate" listening opener
  listening="librdmacm: listening on 0\.0\.0\.0:$port "
  rm -rf "$gate" && mkdir -p "$gate" && : >"$gate/1"
  SERVER=("${LB[@]}" "$RUNTIME" --log 1 --addr "$addr" -- "$tool" "${args[@]}")
  CLIENT=(env UROCE_CM_CONNECT_GATE="$gate" "${LB[@]}" "$RUNTIME" -- "$tool" "${args[@]}" "$addr")
  : >"$OUT/$name-server.log"
  # The gate for the second connect opens at the server's second listen (bounded: 150 s,
  # beyond the server's own `timeout 120`).
  ( deadline=$((SECONDS + 150))
    until [ "$(grep -Ec -- "$listening" "$OUT/$name-server.log")" -ge 2 ]; do
      [ $SECONDS -lt $deadline ] || exit 1
      sleep 0.05
    done
    : >"$gate/2" ) &
  opener=$!
  T_PIDS+=("$opener")
  cm_pair "$name" "$addr" '' "$listening"
  kill "$opener" 2>/dev/null; reap "$opener"
  # The barrier held: the server's second listen came before the second ConnectRequest
  # (the second transaction ID: a REQ sent again keeps its ID).
  if awk -v l="$listening" '$0 ~ l { if (++n == 2) ln = NR }
       / cm: received REQ from / && match($0, /TID 0x[0-9a-f]+/) {
         t = substr($0, RSTART, RLENGTH); if (!(t in seen)) { seen[t]; if (++r == 2) rq = NR } }
       END { exit !(ln && rq && ln < rq) }' "$OUT/$name-server.log"; then
    pass "$tool: the client's second connect waited for the server's second listen"
  else
    fail "$tool: the server's log has no second 'listening on' before a second REQ (log: $OUT/$name-server.log)"
  fi
  local side rc log why
  for side in server client; do
    [ $side = server ] && rc=$SRC || rc=$CRC
    log="$OUT/$name-$side.log"
    expect_rc "$tool ${args[*]} ($side)" 0 "$rc" "$log" || continue
    if [ "$sides" != both ] && [ "$sides" != $side ]; then
      pass "$tool ${args[*]} ($side): exit 0"
      continue
    fi
    if why=$(perf_table "$log" "$kind" "$size"); then
      pass "$tool ${args[*]} ($side): exit 0, $why"
    else
      fail "$tool ${args[*]} ($side): result table: $why (log: $log)"; show "$log"
    fi
  done
}
perf ib_send_bw 18984 127.0.191.5 bw 65536 both ib_send_bw
perf ib_write_bw 18985 127.0.191.6 bw 65536 both ib_write_bw
perf ib_read_lat 18986 127.0.191.7 lat 2 client ib_read_lat

# --- UD and multicast: refused, promptly ------------------------------------------------
# refused NAME NOTE_REGEX CMD...: one process (CMD, run under timeout 60 with stdbuf -oL)
# must exit nonzero by itself within 20 s, with the runtime's note (NOTE_REGEX) in its
# output. WHY (default "not in the runtime"): what its PASS line calls the refusal.
refused() {
  local name=$1 note=$2; shift 2
  local log="$OUT/$name.log" t=$SECONDS rc
  timeout -k 5 60 "${LB[@]}" "$@" >"$log" 2>&1 </dev/null
  rc=$?
  local took=$((SECONDS - t)) what="$name (${*:2}): fails fast, ${WHY:-not in the runtime}"
  # 124 and 137: stopped by timeout, not failed by itself.
  if [ $rc -eq 0 ] || [ $rc -eq 124 ] || [ $rc -eq 137 ] || [ $took -gt 20 ]; then
    fail "$what: exit $rc after $took s (expected a nonzero exit of its own within 20 s; log: $log)"; show "$log"
    return
  fi
  expect_lines "$what" "$log" "$note" || return
  pass "$what (exit $rc, $took s): $(grep -Em1 -- "$note" "$log")"
}
# The runtime's note: "librdmacm: RDMA_PS_UDP/RDMA_PS_IPOIB (UD QPs, multicast) is not
# built in the userspace RoCE runtime (EOPNOTSUPP)" (or the verbs library's "... is not
# implemented by userspace-roce (EOPNOTSUPP)").
UD_NOTE='userspace-roce.*(UD|unreliable datagram|RDMA_PS_UDP).* is not (built in the userspace RoCE runtime|implemented by userspace-roce) \(EOPNOTSUPP\)'
MC_NOTE='userspace-roce.*(multicast|UD|RDMA_PS_UDP).* is not (built in the userspace RoCE runtime|implemented by userspace-roce) \(EOPNOTSUPP\)'
# udaddy's server binds the wildcard address (here 127.0.191.8); its client resolves
# 127.0.191.9, where nobody is: it must fail before it sends anything.
refused udaddy-server "$UD_NOTE" "$RUNTIME" --addr 127.0.191.8 -- udaddy
refused udaddy-client "$UD_NOTE" "$RUNTIME" -- udaddy -s 127.0.191.9
refused mckey-receiver "$MC_NOTE" "$RUNTIME" -- mckey -m 239.1.1.1 -b 127.0.191.10
refused mckey-sender "$MC_NOTE" "$RUNTIME" -- mckey -m 239.1.1.1 -b 127.0.191.11 -s

# --- the test hook's own check: a gate that is no directory is refused --------------------
# Like a wrong UROCE_CM_DROP: one line naming the value, and rping's first librdmacm call
# (rdma_create_event_channel) fails with EINVAL.
WHY="the setting refused" refused gate-not-a-directory \
  "librdmacm: UROCE_CM_CONNECT_GATE=[^ ]*/no-such-gate refused: it must name an existing directory" \
  env UROCE_CM_CONNECT_GATE="$OUT/no-such-gate" "$RUNTIME" -- rping -s -a 127.0.191.12 -C 1
if [ "$(grep -c "UROCE_CM_CONNECT_GATE=" "$OUT/gate-not-a-directory.log")" -eq 1 ] \
   && grep -q "^failed to create RDMA CM event channel: Invalid argument\$" "$OUT/gate-not-a-directory.log"; then
  pass "gate-not-a-directory: said on one line; rdma_create_event_channel failed with EINVAL"
else
  fail "gate-not-a-directory: expected one line naming UROCE_CM_CONNECT_GATE and rping's 'failed to create RDMA CM event channel: Invalid argument' (log: $OUT/gate-not-a-directory.log)"
fi

t_finish
