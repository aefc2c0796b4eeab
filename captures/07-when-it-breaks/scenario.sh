# What scripts/capture.sh runs in the lab to record lesson 07 (sourced, not run).
# A selection of the lesson's cases, each of which shows something on the wire, run by
# the lesson's own smoke script in its two roles (SMOKE_CASES: only those cases, in this
# order; one server and one client per case, each judging its own side):
#   psn-ahead       the client starts 1000 PSNs after the one it announced: a PSN
#                   sequence error NAK, then resends nobody answers
#   psn-behind      1000 PSNs before it: one ACK with PSN 0xffffff, the message lost
#   before-rtr      the server says READY with its QP still in INIT: the first SEND is
#                   dropped, its resend after one ACK timeout is ACKed
#   rnr-retry-1     no RECV posted, rnr_retry 1: two RNR NAKs
#   recv-too-small  a 64-byte SEND into a smaller RECV: a remote operational error NAK
#   peer-killed     the server's process is killed: four SENDs, nothing back
#   bad-rkey        an RDMA WRITE with a wrong rkey: a remote access error NAK
# The others show nothing new on the wire, or nothing at all (rejected locally), or (the
# RNR cases with more retries) many RNR NAK pairs; the README covers them. Each case's
# resend count is fixed by its QP attributes (retry_cnt, rnr_retry) and its timeouts as
# long as every answer comes within one ACK timeout (timeout 14: 67 ms nominal, 64 ms in
# rxe at HZ 250; the slowest ACK or NAK in twelve runs in the lab with both host CPUs
# kept busy came after 15 ms), and, for before-rtr (timeout 18, 1.07 s), as long as the
# server reaches RTR within about 0.57 s of the client's READY (it told the server after
# 0.5 s). rnr-retry-1's count also rests on rxe deferring a retry that falls due during
# an RNR wait to the RNR timer. So --check compares every frame, resends included (not
# scripts/capture.sh's default --without-resends). A TCP segment sent twice is timing
# and tells nothing (roce_capture.py reads the exchange by sequence number).
# Commands run inside the guests, with BUILD_DIR exported; LAB_OUT and LAB_SERVER_IP come
# from the lab; the smoke script writes its logs to LAB_OUT (SMOKE_OUT defaults to it).
PORT=18517
COMPARE_ARGS=()
CASES="psn-ahead psn-behind before-rtr rnr-retry-1 recv-too-small peer-killed bad-rkey"
REQUIRE=SEND_ONLY,ACK,RDMA_WRITE_ONLY,RNR_NAK,NAK_PSN_SEQUENCE_ERROR,NAK_REMOTE_OPERATIONAL_ERROR,NAK_REMOTE_ACCESS_ERROR
# No --client-log: psn-ahead and psn-behind send on purpose from a PSN other than the one
# they announced. The server logs advertise the buffer bad-rkey's WRITE misses.
CHECK_LOGS="$(for c in $CASES; do printf ' --server-log %s-server.log' "$c"; done)"
LOGS="$(for c in $CASES; do printf ' server/%s-server.log client/%s-client.log' "$c" "$c"; done)"
# The lesson's README quotes lines of every case, most of which this selection does not run.
README=""
PCAP_NAME=lesson07.pcap
SERVER_CMD='lab-ready -q --timeout 240 server --tcp-listen 18517 -- env SMOKE_CASES="'"$CASES"'" \
  "$LAB_REPO/lessons/07-when-it-breaks/smoke.sh" server >"$LAB_OUT/smoke-server.log" 2>&1'
# The client role records no capture of its own in the guest (SMOKE_NO_CAPTURE): the lab
# records the wire, and this script checks that recording.
CLIENT_CMD='lab-wait -q --timeout 240 server && SMOKE_NO_CAPTURE=1 SMOKE_CASES="'"$CASES"'" \
  "$LAB_REPO/lessons/07-when-it-breaks/smoke.sh" client "$LAB_SERVER_IP" >"$LAB_OUT/smoke-client.log" 2>&1'
