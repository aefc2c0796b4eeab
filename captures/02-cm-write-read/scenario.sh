# What scripts/capture.sh runs in the lab to record lesson 02 (sourced, not run).
# One server (--clients 4) and five clients, one after another:
#   run 1: the default: 17-byte RDMA WRITE ONLY, then RDMA READ of the whole 4096-byte
#          buffer -> READ RESPONSE FIRST / MIDDLE / LAST at path MTU 1024
#   run 2: -s 3000 --range 0:1000 -> RDMA WRITE FIRST / MIDDLE / LAST, READ RESPONSE ONLY
#   run 3: private data of another version -> ConnectReject (does not count as served)
#   run 4: --bad-rkey -> NAK (remote access error); both QPs end in ERR
#   run 5: --initiator-depth 0 -> the WRITE, then no READ on the wire at all: the
#          client's QP may have no READ in flight (max_rd_atomic 0); it times out (-t 5)
# Commands run inside the guests, with BUILD_DIR exported; LAB_OUT and LAB_SERVER_IP come
# from the lab. The clients start once the server listens: lab-ready on the server waits
# for the line it logs after rdma_listen, lab-wait on the client for that announcement (a
# log line works on kernel rxe and on the userspace runtime alike: scripts/tour.sh runs
# this scenario on both).
PORT=7471
REQUIRE=ConnectRequest,ConnectReply,ReadyToUse,RDMA_WRITE_ONLY,ACK,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_FIRST,RDMA_READ_RESPONSE_MIDDLE,RDMA_READ_RESPONSE_LAST,RDMA_WRITE_FIRST,RDMA_WRITE_MIDDLE,RDMA_WRITE_LAST,RDMA_READ_RESPONSE_ONLY,ConnectReject,NAK_REMOTE_ACCESS_ERROR,DisconnectRequest,DisconnectReply
CHECK_LOGS="--server-log server.log"
PCAP_NAME=lesson02.pcap
SERVER_CMD='lab-ready -q server --new-line "$LAB_OUT/server.log" "step 7: wait for CONNECT_REQUEST" -- \
  "$BUILD_DIR/lessons/02-cm-write-read/server" --clients 4 --accept-timeout 60 >"$LAB_OUT/server.log" 2>&1'
CLIENT_CMD='c="$BUILD_DIR/lessons/02-cm-write-read/client $LAB_SERVER_IP --connect-timeout 60"
{ lab-wait -q server && $c && $c -s 3000 --range 0:1000 && { $c --bad-private-data version; [ $? -eq 1 ]; } && $c --bad-rkey &&
  { $c --initiator-depth 0; [ $? -eq 1 ]; }; } >"$LAB_OUT/client.log" 2>&1'
