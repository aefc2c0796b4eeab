# What scripts/capture.sh runs in the lab to record lesson 03 (sourced, not run).
# Three connections, one after the other:
#   run 1: 3 x 32 B into a ring of 8 slots -> RDMA WRITE ONLY WITH IMMEDIATE, imm = 0, 1, 2
#   run 2: 3 x 2500 B into 4 slots of 4096 B -> WRITE FIRST / MIDDLE / LAST WITH IMMEDIATE
#   run 3: the server posts no RECV (--no-recv, rnr_retry 1) -> two RNR NAKs, then the
#          client's IBV_WC_RNR_RETRY_EXC_ERR
# (Runs stay within the ring, so no credit READ happens: how many READs a full ring
# takes depends on timing, and a capture must be the same every time.)
# Each client starts once its server listens: lab-ready run1..run3 on the server waits
# for the line common::listen_on logs after rdma_listen (a new line: the file holds the
# earlier runs' too), lab-wait on the client for that announcement.
PORT=7472
REQUIRE=ConnectRequest,ConnectReply,ReadyToUse,RDMA_WRITE_ONLY_WITH_IMMEDIATE,ACK,RDMA_WRITE_FIRST,RDMA_WRITE_MIDDLE,RDMA_WRITE_LAST_WITH_IMMEDIATE,RNR_NAK,DisconnectRequest,DisconnectReply
CHECK_LOGS="--server-log server.log"
PCAP_NAME=lesson03.pcap
SERVER_CMD='s() { lab-ready -q "$1" --new-line "$LAB_OUT/server.log" "listening for RDMA CM connections on port 7472" -- "$BUILD_DIR/lessons/03-write-with-imm/server" --accept-timeout 60 "${@:2}"; }
{ s run1 && s run2 -s 4096 --slots 4 && s run3 --no-recv; } >"$LAB_OUT/server.log" 2>&1'
CLIENT_CMD='c="$BUILD_DIR/lessons/03-write-with-imm/client $LAB_SERVER_IP --connect-timeout 60"
{ lab-wait -q run1 && $c -n 3 && lab-wait -q run2 && $c -n 3 -s 2500 &&
  lab-wait -q run3 && { $c -n 1; [ $? -eq 1 ]; }; } >"$LAB_OUT/client.log" 2>&1'
