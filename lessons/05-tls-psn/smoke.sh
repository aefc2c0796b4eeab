#!/usr/bin/env bash
# Lesson 05 smoke test: runs the real server and clients on Soft-RoCE and checks what they
# print and how they exit.
#
#   smoke.sh local               both sides on this host: a scripted session over IPv4,
#                                IPv6 and a host name; mutual TLS with and without a client
#                                certificate; a wrong CA, a wrong host name and an expired
#                                certificate (refused before any RDMA resource exists);
#                                garbage, truncated and silent peers (dropped, others
#                                unaffected); isolation (rogue clients that WRITE past their
#                                slot, or WRITE and READ another client's slot, are refused
#                                by the device while that client carries on); 10 concurrent
#                                clients and an 11th refused
#   smoke.sh server              the server side for a run between two hosts
#   smoke.sh client SERVER_IP    the client side: one session, then 10 concurrent clients
#                                and an 11th that must be refused
#   smoke.sh check-capture PCAP DIR   check a capture of the pair run (DIR: its logs)
#   smoke.sh leaks               200 connect/disconnect cycles against one server, both
#                                built with AddressSanitizer (LeakSanitizer reports any
#                                leak at exit); LEAK_BUILD_DIR names that build tree
#
# Environment: BUILD_DIR (default <repo>/build), CERTS (default $BUILD_DIR/certs, made by
# scripts/make-certs.sh), SMOKE_OUT (logs), SMOKE_PORT (default 4433).
set -euo pipefail

LESSON_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LESSON_DIR/../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
BIN="$BUILD_DIR/lessons/05-tls-psn"
: "${CERTS:=$BUILD_DIR/certs}"
: "${SMOKE_OUT:=${LAB_OUT:-$(mktemp -d /tmp/smoke05.XXXXXX)}}"
: "${SMOKE_PORT:=4433}"
CHECK_CAPTURE="$ROOT/tests/tools/roce_capture.py"
TLS_PEER="$ROOT/tests/tools/tls_peer.py"
mkdir -p "$SMOKE_OUT"
SMOKE_NAME="lesson 05"
source "$ROOT/scripts/smoke-lib.sh"

need_certs() {
  [ -f "$CERTS/ca.pem" ] && return 0
  echo "smoke: no certificates in $CERTS; run scripts/make-certs.sh $CERTS" >&2
  exit 2
}

SESSION=(-e "send hello over RC" -e "write data for my slot" -e read -e quit)
OK_SESSION=("server says 'ack 13 bytes: 'hello over RC''" "read 'data for my slot' \\(verified\\)" "session 1: 4 command\\(s\\) done")

# session NAME HOST PORT [CLIENT ARGS...]: one scripted client session; sets RC.
session() {
  local name=$1 host=$2 port=$3; shift 3
  set +e
  timeout 120 "$BIN/client" "$host" -p "$port" --certs "$CERTS" --connect-timeout 30 -t 60 "${SESSION[@]}" "$@" \
    </dev/null >"$SMOKE_OUT/$name-client.log" 2>&1
  RC=$?
  set -e
}

# start_server NAME PORT [SERVER ARGS...]: a server in the background; sets SPID. Its -t
# (every handshake and exchange step) is 60 s: ten handshakes at once in an emulated
# guest on a loaded machine take seconds. Cases about a silent peer set SERVER_T=3.
start_server() {
  local name=$1 port=$2; shift 2
  "$BIN/server" -p "$port" --certs "$CERTS" -t "${SERVER_T:-60}" "$@" >"$SMOKE_OUT/$name-server.log" 2>&1 &
  SPID=$!
  wait_for_line "$SMOKE_OUT/$name-server.log" "listening on TCP port" 60 \
    || fail "$name: the server is not listening after 60 s (log: $SMOKE_OUT/$name-server.log)"
}

# slot_of LOG: "ADDR RKEY" of the slot a client's log says the server gave it.
slot_of() {
  sed -nE 's/.*step 6: received QP_INFO: .* slot addr=(0x[0-9a-f]+) rkey=(0x[0-9a-f]+) .*/\1 \2/p' "$1" | head -n 1
}

# isolation HOST PORT: a victim client writes its slot and waits (its commands come from
# a FIFO); rogue clients try to WRITE one byte past their own slot, and to WRITE and READ
# the victim's slot with its real address and rkey; the server's device must refuse each
# (NAK, IBV_WC_REM_ACCESS_ERR); then the victim reads its slot back unchanged, and the
# server, which dropped each rogue, still serves. Every step waits for the one before it.
isolation() {
  local host=$1 port=$2 fifo_dir vpid rc slot addr rkey
  fifo_dir=$(mktemp -d /tmp/smoke05-fifo.XXXXXX)   # not in SMOKE_OUT: 9p shares hold no FIFOs
  mkfifo "$fifo_dir/victim"
  timeout 300 "$BIN/client" "$host" -p "$port" --certs "$CERTS" --connect-timeout 30 -t 60 \
    <"$fifo_dir/victim" >"$SMOKE_OUT/victim-client.log" 2>&1 &
  vpid=$!
  exec {vfd}>"$fifo_dir/victim"
  echo "write data of the victim" >&"$vfd"
  wait_for_line "$SMOKE_OUT/victim-client.log" "write 'data of the victim'" 120 \
    || fail "isolation: the victim's write did not complete (log: $SMOKE_OUT/victim-client.log)"
  slot=$(slot_of "$SMOKE_OUT/victim-client.log")
  addr=${slot% *} rkey=${slot#* }
  local name cmd what
  for name in write-past write-at read-at; do
    case $name in
      write-past) cmd="write-past overflow" what="WRITE one byte past its own slot" ;;
      write-at) cmd="write-at $addr $rkey forged by a rogue" what="WRITE to the victim's slot ($addr, rkey $rkey)" ;;
      read-at) cmd="read-at $addr $rkey" what="READ of the victim's slot" ;;
    esac
    set +e
    timeout 120 "$BIN/client" "$host" -p "$port" --certs "$CERTS" --connect-timeout 30 -t 60 -e "$cmd" \
      </dev/null >"$SMOKE_OUT/rogue-$name-client.log" 2>&1
    rc=$?
    set -e
    check "isolation: a rogue client's $what is refused by the server's device" \
          0 $rc "$SMOKE_OUT/rogue-$name-client.log" \
          "WC: wr_id=[0-9]+ status=10 \(remote access error\)" \
          "client: $name: refused by the server's device \(IBV_WC_REM_ACCESS_ERR\), as it must" \
          "our QP is in ERR, the server's too"
  done
  printf 'read\nsend still here\nquit\n' >&"$vfd"
  exec {vfd}>&-
  set +e; wait "$vpid"; rc=$?; set -e
  rm -rf "$fifo_dir"
  check "isolation: the victim's slot is untouched and its session carries on" 0 $rc \
        "$SMOKE_OUT/victim-client.log" "read 'data of the victim' \(verified\)" \
        "server says 'ack 10 bytes: 'still here''" "session 1: 4 command\(s\) done"
}

# stop_server NAME: wait for a server started with --clients N to finish; sets SRC.
stop_server() {
  set +e; wait "$SPID"; SRC=$?; set -e
}

# concurrent HOST PORT: 10 clients connected at once (each waits on its own FIFO for its
# commands), then an 11th that must be refused, then the 10 run their commands.
concurrent() {
  local host=$1 port=$2 i fifo_dir pids=() fds=()
  fifo_dir=$(mktemp -d /tmp/smoke05-fifo.XXXXXX)   # not in SMOKE_OUT: 9p shares hold no FIFOs
  for i in $(seq 1 10); do
    mkfifo "$fifo_dir/c$i"
    timeout 300 "$BIN/client" "$host" -p "$port" --certs "$CERTS" --connect-timeout 30 -t 60 \
      <"$fifo_dir/c$i" >"$SMOKE_OUT/concurrent-$i-client.log" 2>&1 &
    pids+=($!)
    exec {fd}>"$fifo_dir/c$i"
    fds+=("$fd")
  done
  local ready=0
  for i in $(seq 1 10); do
    wait_for_line "$SMOKE_OUT/concurrent-$i-client.log" "step 7: QP in RTS" 240 && ready=$((ready + 1))
  done
  if [ $ready -eq 10 ]; then pass "10 clients connected at once, each with its own QP"; else fail "only $ready of 10 clients reached RTS"; fi
  set +e
  timeout 120 "$BIN/client" "$host" -p "$port" --certs "$CERTS" -t 60 -e "send too many" </dev/null >"$SMOKE_OUT/eleventh-client.log" 2>&1
  local rc=$?
  set -e
  check "the 11th client is refused with the reason" 1 $rc "$SMOKE_OUT/eleventh-client.log" \
        "the server refused us: server full: 10 clients connected; try again later"
  for i in $(seq 1 10); do
    fd=${fds[$((i - 1))]}
    printf 'send hello from client %s\nwrite data of client %s\nread\nquit\n' "$i" "$i" >&"$fd"
    exec {fd}>&-
  done
  local ok=0
  for i in $(seq 1 10); do
    set +e; wait "${pids[$((i - 1))]}"; rc=$?; set -e
    if [ $rc -eq 0 ] && grep -q "read 'data of client $i' (verified)" "$SMOKE_OUT/concurrent-$i-client.log" &&
       grep -Eq "ack [0-9]+ bytes: 'hello from client $i'" "$SMOKE_OUT/concurrent-$i-client.log"; then
      ok=$((ok + 1))
    else
      fail "concurrent client $i: exit $rc (log: $SMOKE_OUT/concurrent-$i-client.log)"; tail -n 5 "$SMOKE_OUT/concurrent-$i-client.log" | sed 's/^/    | /'
    fi
  done
  rm -rf "$fifo_dir"
  [ $ok -eq 10 ] && pass "10 concurrent clients: send acknowledged, write, read back verified (each its own slot)"
}

role_local() {
  need_binaries "$BIN"; need_certs
  local ip p=$SMOKE_PORT
  ip=$(local_ipv4)
  echo "smoke: lesson 05, both sides on this host ($ip); logs in $SMOKE_OUT"

  # One server for the good sessions and the misbehaving peers (7 sessions in all).
  start_server main $p --clients 7
  session ipv4 "$ip" $p
  check "session over IPv4 ($ip)" 0 $RC "$SMOKE_OUT/ipv4-client.log" "${OK_SESSION[@]}" \
        "step 3: TLS with .* verified: TLSv1.3" "step 4: sending QP_INFO: QPN 0x[0-9a-f]{6} PSN 0x[0-9a-f]{6}"
  session ipv6 ::1 $p
  check "session over IPv6 (::1)" 0 $RC "$SMOKE_OUT/ipv6-client.log" "${OK_SESSION[@]}"
  session name localhost $p
  check "session to a host name (localhost)" 0 $RC "$SMOKE_OUT/name-client.log" "${OK_SESSION[@]}"
  local mode
  for mode in garbage-tcp truncated-tls garbage-tls; do
    set +e
    timeout 120 python3 "$TLS_PEER" $mode "$ip" $p --ca "$CERTS/ca.pem" --wait 60 >"$SMOKE_OUT/$mode-peer.log" 2>&1
    set -e
  done
  session after "$ip" $p
  check "a good client after the bad peers" 0 $RC "$SMOKE_OUT/after-client.log" "${OK_SESSION[@]}"
  stop_server
  check "server: bad peers dropped, good sessions served" 0 $SRC "$SMOKE_OUT/main-server.log" \
        "dropped: TLS handshake with .* failed: .*(wrong version number|not speaking TLS)" \
        "dropped: .*closed the connection after 6 of 12 bytes" \
        "dropped: .*malformed exchange message" \
        "server: 7 session\\(s\\), 3 failed, 0 refused"
  check "server: each good client got its own PD, slot and QP, and a random PSN" 0 $SRC "$SMOKE_OUT/main-server.log" \
        "step 5: PD, slot and QP 0x[0-9a-f]{6} for .* our PSN 0x[0-9a-f]{6} \\(24 random bits from RAND_bytes\\)"

  # Silent peers: the server drops each after its -t (3 s here), whatever the machine's
  # speed; the peer waits up to 60 s for that.
  SERVER_T=3 start_server silent $((p + 4)) --clients 2
  for mode in silent-tcp silent-tls; do
    set +e
    timeout 120 python3 "$TLS_PEER" $mode "$ip" $((p + 4)) --ca "$CERTS/ca.pem" --wait 60 >"$SMOKE_OUT/$mode-peer.log" 2>&1
    set -e
  done
  stop_server
  check "server: silent peers dropped after -t" 0 $SRC "$SMOKE_OUT/silent-server.log" \
        "dropped: .*(timed out|within 3.0 s|no TLS handshake)" "server: 2 session\\(s\\), 2 failed, 0 refused"
  check "silent peers: the server hung up on them" 0 0 "$SMOKE_OUT/silent-tcp-peer.log" "server closed the connection"

  # Isolation: a victim, three rogues (each dropped), then the victim again.
  start_server isolation $((p + 5)) --clients 4
  isolation "$ip" $((p + 5))
  stop_server
  check "server: each rogue dropped because its QP is in ERR, the victim served" 0 $SRC \
        "$SMOKE_OUT/isolation-server.log" \
        "the QP of .* is in ERR: our device refused one of its requests" "server: 4 session\\(s\\), 3 failed, 0 refused"
  if [ "$(grep -c "is in ERR: our device refused one of its requests" "$SMOKE_OUT/isolation-server.log")" -eq 3 ]; then
    pass "server: exactly the three rogues were dropped"
  else
    fail "server: expected 3 rogues dropped (log: $SMOKE_OUT/isolation-server.log)"
  fi

  # Mutual TLS.
  start_server mutual $((p + 1)) --mutual --clients 2
  session mutual-ok "$ip" $((p + 1)) --mutual
  check "mutual TLS with a client certificate" 0 $RC "$SMOKE_OUT/mutual-ok-client.log" "${OK_SESSION[@]}"
  session mutual-none "$ip" $((p + 1))
  check "mutual TLS without a client certificate: refused" 1 $RC "$SMOKE_OUT/mutual-none-client.log" "ERROR .*TLS|ERROR .*certificate"
  stop_server
  check "server: the certificate-less client was dropped before any QP" 0 $SRC "$SMOKE_OUT/mutual-server.log" \
        "client certificate CN=rdma-lab-client|rdma-lab-client" "dropped: TLS handshake .*certificate"

  # Certificates that must not verify: nothing RDMA is created on either side.
  local bad
  for bad in wrong-ca wrong-name expired; do
    case $bad in
      wrong-ca) start_server $bad $((p + 2)) --clients 1; session $bad "$ip" $((p + 2)) --ca "$CERTS/other-ca.pem" ;;
      wrong-name) start_server $bad $((p + 2)) --clients 1 --cert "$CERTS/wrongname-server.pem" --key "$CERTS/wrongname-server.key"
                  session $bad "$ip" $((p + 2)) ;;
      expired) start_server $bad $((p + 2)) --clients 1 --cert "$CERTS/expired-server.pem" --key "$CERTS/expired-server.key"
               session $bad "$ip" $((p + 2)) ;;
    esac
    stop_server
    case $bad in
      wrong-ca) check "wrong CA: the client refuses the server" 1 $RC "$SMOKE_OUT/$bad-client.log" "certificate verify failed" ;;
      wrong-name) check "wrong host name: the client refuses the server" 1 $RC "$SMOKE_OUT/$bad-client.log" "certificate verify failed.*(hostname|IP address) mismatch" ;;
      expired) check "expired certificate: the client refuses the server" 1 $RC "$SMOKE_OUT/$bad-client.log" "certificate verify failed.*expired" ;;
    esac
    if grep -q "step 4:" "$SMOKE_OUT/$bad-client.log" || grep -q "step 5:" "$SMOKE_OUT/$bad-server.log"; then
      fail "$bad: RDMA resources were created after a failed handshake"
    else
      pass "$bad: no RDMA resource on either side; server says why"
    fi
    check "$bad: the server says why" 0 $SRC "$SMOKE_OUT/$bad-server.log" "dropped: TLS handshake"
  done

  # 10 at once, the 11th refused.
  start_server many $((p + 3)) --clients 10
  concurrent "$ip" $((p + 3))
  stop_server
  check "server: 10 concurrent sessions, the 11th refused" 0 $SRC "$SMOKE_OUT/many-server.log" \
        "server: 10 session\\(s\\), 0 failed, 1 refused"

  # --- usage ----------------------------------------------------------------------
  set +e
  "$BIN/client" >"$SMOKE_OUT/usage.log" 2>&1; rc=$?
  set -e
  check "usage: client without a server" 2 $rc "$SMOKE_OUT/usage.log" "server is required"
  set +e
  "$BIN/server" --max-clients 0 >"$SMOKE_OUT/usage2.log" 2>&1; rc=$?
  set -e
  check "usage: server --max-clients 0" 2 $rc "$SMOKE_OUT/usage2.log" "not in range"
  set +e
  "$BIN/server" --certs /nonexistent -p $((p + 6)) >"$SMOKE_OUT/nocerts.log" 2>&1; rc=$?
  set -e
  check "server without certificates says which file" 1 $rc "$SMOKE_OUT/nocerts.log" "/nonexistent/" "make-certs.sh"
}

role_server() {
  need_binaries "$BIN"; need_certs
  echo "smoke: lesson 05 server role; logs in $SMOKE_OUT"
  set +e
  timeout 600 "$BIN/server" -p "$SMOKE_PORT" --certs "$CERTS" -t 60 --clients 11 >"$SMOKE_OUT/pair-server.log" 2>&1; SRC=$?
  set -e
  check "server: 11 sessions (1 + 10 concurrent), the 12th refused" 0 $SRC "$SMOKE_OUT/pair-server.log" \
        "server: 11 session\\(s\\), 0 failed, 1 refused"
}

role_client() {
  local server=${1:?usage: smoke.sh client SERVER_IP}
  need_binaries "$BIN"; need_certs
  echo "smoke: lesson 05 client role against $server; logs in $SMOKE_OUT"
  start_capture "$server" "udp port 4791 or tcp port $SMOKE_PORT"
  session pair "$server" "$SMOKE_PORT"
  check "client: one session" 0 $RC "$SMOKE_OUT/pair-client.log" "${OK_SESSION[@]}"
  concurrent "$server" "$SMOKE_PORT"
  if [ -n "$CAPTURE_PID" ]; then stop_capture; fi
}

# role_check_capture PCAP DIR: TLS on the exchange port, RoCE after it, and the client's
# first SEND carrying the PSN it logged (its logs in DIR).
role_check_capture() {
  local pcap=$1 dir=$2 rc
  [ -d "$dir/client" ] && dir="$dir/client"
  set +e
  python3 "$CHECK_CAPTURE" check "$pcap" --port "$SMOKE_PORT" \
    --require "ClientHello,ServerHello,ApplicationData,SEND_ONLY,ACK,RDMA_WRITE_ONLY,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_ONLY" \
    --client-log "$dir/pair-client.log" >"$SMOKE_OUT/capture-check.log" 2>&1
  rc=$?
  set -e
  check "capture: TLS exchange, then RoCE starting at the logged PSNs ($pcap)" 0 $rc "$SMOKE_OUT/capture-check.log" "capture: OK"
}

# role_leaks: the ASan-built server and client, 200 sessions; LeakSanitizer runs at exit
# of both and makes the exit code non-zero on any leak.
role_leaks() {
  local bin="${LEAK_BUILD_DIR:?LEAK_BUILD_DIR must name an AddressSanitizer build}/lessons/05-tls-psn" ip
  need_binaries "$bin"; need_certs
  ip=$(local_ipv4)
  echo "smoke: lesson 05 leak check: 200 cycles, binaries from $bin"
  "$bin/server" -p "$SMOKE_PORT" --certs "$CERTS" --clients 200 >"$SMOKE_OUT/leaks-server.log" 2>&1 &
  local spid=$! rc
  set +e
  timeout 900 "$bin/client" "$ip" -p "$SMOKE_PORT" --certs "$CERTS" --connect-timeout 30 --repeat 200 -q \
    -e "send cycle" -e "write x" -e read -e quit </dev/null >"$SMOKE_OUT/leaks-client.log" 2>&1
  rc=$?
  set -e
  check "200 sessions from one client process, no leak (LeakSanitizer)" 0 $rc "$SMOKE_OUT/leaks-client.log" "session 200: 4 command"
  set +e; wait $spid; rc=$?; set -e
  check "server after 200 sessions: no leak (LeakSanitizer)" 0 $rc "$SMOKE_OUT/leaks-server.log" "server: 200 session\\(s\\), 0 failed"
  if grep -q "LeakSanitizer" "$SMOKE_OUT/leaks-server.log" "$SMOKE_OUT/leaks-client.log"; then fail "LeakSanitizer reported leaks"; fi
}

if [ "${1:-}" = leaks ]; then role_leaks; smoke_finish; exit; fi
smoke_main "$@"
