# What scripts/capture.sh runs in the lab to record lesson 04 (sourced, not run).
# One server with a small dataset (512 elements = 4096 bytes) and one client with four
# tasks, then the comparison:
#   1. sum by name                   -> a 72-byte request, a 136-byte answer
#   2. programs/count_lt.lasm:500    -> the bytecode travels inside the request
#   3. programs/bad_read_oob.lasm    -> refused by the interpreter: the answer says why
#   4. --compare                     -> one RDMA READ of the whole dataset
# The client exits 3 because one task was refused, as it should. It starts once the
# server listens: lab-ready on the server waits for the line common::listen_on logs after
# rdma_listen, lab-wait on the client for that announcement.
PORT=7474
REQUIRE=ConnectRequest,ConnectReply,ReadyToUse,RDMA_WRITE_ONLY_WITH_IMMEDIATE,ACK,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_FIRST,RDMA_READ_RESPONSE_MIDDLE,RDMA_READ_RESPONSE_LAST,DisconnectRequest,DisconnectReply
CHECK_LOGS="--server-log server.log --server-log client.log"
PCAP_NAME=lesson04.pcap
SERVER_CMD='lab-ready -q server --new-line "$LAB_OUT/server.log" "listening for RDMA CM connections on port 7474" -- \
  "$BUILD_DIR/lessons/04-lambda/server" --elements 512 --accept-timeout 60 >"$LAB_OUT/server.log" 2>&1'
CLIENT_CMD='cd "$LAB_REPO/lessons/04-lambda" && lab-wait -q server &&
{ "$BUILD_DIR/lessons/04-lambda/client" "$LAB_SERVER_IP" --connect-timeout 60 --compare \
    -r sum -r programs/count_lt.lasm:500 -r programs/bad_read_oob.lasm >"$LAB_OUT/client.log" 2>&1
  [ $? -eq 3 ]; }'
