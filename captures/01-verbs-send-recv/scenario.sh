# What scripts/capture.sh runs in the lab to record lesson 01 (sourced, not run).
# Two connections, one after the other:
#   run 1: three 64-byte messages   -> RC SEND ONLY + ACK, then the zero-length goodbye
#   run 2: one 2500-byte message    -> RC SEND FIRST / MIDDLE / LAST at path MTU 1024
# The server's buffer (-s 4096) takes both. Commands run inside the guests, with
# BUILD_DIR exported; LAB_OUT and LAB_SERVER_IP come from the lab. Each client starts
# once its server listens (lab-ready run1/run2 on the server, lab-wait on the client).
PORT=18515
REQUIRE=SEND_ONLY,ACK,SEND_FIRST,SEND_MIDDLE,SEND_LAST
CHECK_LOGS="--client-log client.log"
PCAP_NAME=lesson01.pcap
SERVER_CMD='bin=$BUILD_DIR/lessons/01-verbs-send-recv
for run in 1 2; do
  lab-ready -q run$run --tcp-listen 18515 -- "$bin/server" -s 4096 --accept-timeout 60 || exit 1
done >"$LAB_OUT/server.log" 2>&1'
CLIENT_CMD='bin=$BUILD_DIR/lessons/01-verbs-send-recv
{ lab-wait -q run1 && "$bin/client" "$LAB_SERVER_IP" -n 3 -s 64 --connect-timeout 60 &&
  lab-wait -q run2 && "$bin/client" "$LAB_SERVER_IP" -n 1 -s 2500 --connect-timeout 60; } >"$LAB_OUT/client.log" 2>&1'
