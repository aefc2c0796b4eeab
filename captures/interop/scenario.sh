# What scripts/capture.sh runs in the lab to record lesson 01 between two different RoCE
# implementations (sourced, not run): the server guest on kernel Soft-RoCE (rdma_rxe,
# rxe0), the client guest on this project's userspace runtime (userspace-roce/, device
# uroce0, no rdma_rxe loaded). The same two connections as captures/01-verbs-send-recv:
#   run 1: three 64-byte messages   -> RC SEND ONLY + ACK, then the zero-length goodbye
#   run 2: one 2500-byte message    -> RC SEND FIRST / MIDDLE / LAST at path MTU 1024
# The server's buffer (-s 4096) takes both. Commands run inside the guests, with
# BUILD_DIR exported; LAB_OUT, LAB_SERVER_IP and LAB_REPO come from the lab. Each client
# starts once its server listens (lab-ready run1/run2 on the server, lab-wait on the
# client).
PORT=18515
REQUIRE=SEND_ONLY,ACK,SEND_FIRST,SEND_MIDDLE,SEND_LAST
CHECK_LOGS="--client-log client.log"
PCAP_NAME=interop01.pcap
# lab.sh run options: the server guest keeps kernel rxe, the client guest gets none.
LAB_ARGS=(--server-runtime kernel --client-runtime userspace)
# No README check: lessons/01-verbs-send-recv/README.md quotes the client's device and
# GID lines as rxe prints them (rxe0, GID index 1); on the runtime they say uroce0, GID 0.
README=
# Compared with a fresh run, requests resent although they had arrived, and the repeated
# answers, are left out (scripts/capture.sh's default COMPARE_ARGS): under load the runtime's
# ACK, in an emulated guest, can take tens of milliseconds, and kernel rxe's
# retransmission timer, armed for an earlier SEND and not restarted for a later one, then
# expires a few milliseconds after the later SEND and resends it (a CI run on a busy host
# saw the echo SEND twice, 6 ms apart, and both ACKed). See roce_capture.py, without_resends.
SERVER_CMD='bin=$BUILD_DIR/lessons/01-verbs-send-recv
for run in 1 2; do
  lab-ready -q run$run --tcp-listen 18515 -- "$bin/server" -s 4096 --accept-timeout 60 || exit 1
done >"$LAB_OUT/server.log" 2>&1'
# Each client process binds the first free IPv4 address of eth0 (UROCE_ADDR=eth0): the
# guest's own 10.0.0.2, free again once the first client has exited. UROCE_ACK_DELAY=0:
# the runtime ACKs at the end of each receive batch (here each message), as rxe ACKs
# each. The default does the same here (an ACK waits for the client's next SEND only
# after 8 messages in a row answered; these runs have 3 and 1), but the capture check
# compares the order of the frames, so it does not rest on that rule.
CLIENT_CMD='bin=$BUILD_DIR/lessons/01-verbs-send-recv
uroce() { UROCE_ADDR=eth0 UROCE_ACK_DELAY=0 "$LAB_REPO/scripts/userspace-roce.sh" -- "$@"; }
{ lab-wait -q run1 && uroce "$bin/client" "$LAB_SERVER_IP" -n 3 -s 64 --connect-timeout 60 &&
  lab-wait -q run2 && uroce "$bin/client" "$LAB_SERVER_IP" -n 1 -s 2500 --connect-timeout 60; } >"$LAB_OUT/client.log" 2>&1'
