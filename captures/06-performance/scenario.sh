# What scripts/capture.sh runs in the lab to record lesson 06 (sourced, not run).
# One short client run (--run) per technique, each its own connection (the server serves
# one client and exits, so it runs once per client), each client with its own log:
#   pingpong   step 1: --run pingpong, 3 x 64 B, every SEND signaled: one in flight
#   window     step 2: --run send, 8 x 64 B, window 8, every SEND signaled
#   unsignaled step 3: the same, only every 4th SEND signaled
#   inline     step 4: the same as unsignaled, with --inline
#   chain      step 5: the same as inline, with --chain 4 (2 ibv_post_send calls of 4)
#   write      step 6: --run write, 3 x 2500 B, window 3: WRITE FIRST/MIDDLE/LAST at
#              path MTU 1024
#   write-imm  step 6: --run write-imm, 4 x 64 B, window 4: WRITE ONLY WITH IMMEDIATE
#   read       step 6: --run read, 3 x 2500 B, window 3: READ requests, READ RESPONSE
#              FIRST/MIDDLE/LAST
#   event      step 7: pingpong again, sleeping on the completion channel (--event)
# Each client starts once its server listens (lab-ready on the server, lab-wait on the
# client). With many requests in flight, where the server's ACKs (or READ responses) fall
# between the client's requests is timing, so --check compares each side's packets of a
# measurement in order, not how the two sides interleave, and leaves out a request rxe
# resent although it had arrived, and the repeated answer (COMPARE_ARGS;
# scripts/capture.sh says why: a CI run on a busy host saw the server's echo SEND twice,
# and the client's ACK twice).
# Commands run inside the guests, with BUILD_DIR exported; LAB_OUT and LAB_SERVER_IP come
# from the lab.
PORT=18516
REQUIRE=SEND_ONLY,ACK,RDMA_WRITE_FIRST,RDMA_WRITE_MIDDLE,RDMA_WRITE_LAST,RDMA_WRITE_ONLY_WITH_IMMEDIATE,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_FIRST,RDMA_READ_RESPONSE_MIDDLE,RDMA_READ_RESPONSE_LAST
RUNS="pingpong window unsignaled inline chain write write-imm read event"
CHECK_LOGS="--server-log server.log$(for r in $RUNS; do printf ' --client-log client-%s.log' "$r"; done)"
LOGS="server/server.log$(for r in $RUNS; do printf ' client/client-%s.log' "$r"; done)"
COMPARE_ARGS=(--by-direction --without-resends)
PCAP_NAME=lesson06.pcap
SERVER_CMD='for run in '"$RUNS"'; do
  lab-ready -q "$run" --tcp-listen 18516 -- "$BUILD_DIR/lessons/06-performance/server" --accept-timeout 60 || exit 1
done >"$LAB_OUT/server.log" 2>&1'
CLIENT_CMD='c() { lab-wait -q "$1" && "$BUILD_DIR/lessons/06-performance/client" "$LAB_SERVER_IP" --connect-timeout 60 \
  "${@:2}" >"$LAB_OUT/client-$1.log" 2>&1; }
c pingpong   --run pingpong  -s 64   -n 3 --window 1 --signal-every 1 &&
c window     --run send      -s 64   -n 8 --window 8 --signal-every 1 --chain 1 &&
c unsignaled --run send      -s 64   -n 8 --window 8 --signal-every 4 --chain 1 &&
c inline     --run send      -s 64   -n 8 --window 8 --signal-every 4 --chain 1 --inline &&
c chain      --run send      -s 64   -n 8 --window 8 --signal-every 4 --chain 4 --inline &&
c write      --run write     -s 2500 -n 3 --window 3 --signal-every 3 --chain 1 &&
c write-imm  --run write-imm -s 64   -n 4 --window 4 --signal-every 4 --chain 1 &&
c read       --run read      -s 2500 -n 3 --window 3 --signal-every 3 --chain 1 &&
c event      --run pingpong  -s 64   -n 3 --window 1 --signal-every 1 --event'
