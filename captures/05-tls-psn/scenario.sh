# What scripts/capture.sh runs in the lab to record lesson 05 (sourced, not run).
# One server (--clients 3) and three clients:
#   the victim: TLS 1.3 handshake and the QP_INFO / READY exchange on TCP 4433
#     (encrypted), then RoCE: a SEND and the server's acknowledging SEND, an RDMA WRITE
#     into its slot, an RDMA READ of it; then it waits (its commands come from a FIFO)
#   rogue 1: its own session, then an RDMA WRITE one byte past its slot -> NAK
#   rogue 2: its own session, then an RDMA WRITE to the victim's slot, with the victim's
#     real address and rkey (from the victim's log) -> NAK: another PD
#   the victim again: an RDMA READ (its slot is unchanged) and the zero-length goodbye.
# Each step waits for the one before it, so the recording is the same every time: the
# victim starts once the server listens (lab-ready on the server, lab-wait on the
# client), and the rogues once the victim's log shows its READ verified (lab-ready
# --log-line, which waits for that line).
# Commands run inside the guests, with BUILD_DIR exported; LAB_OUT and LAB_SERVER_IP come
# from the lab.
PORT=4433
REQUIRE=ClientHello,ServerHello,ApplicationData,SEND_ONLY,ACK,RDMA_WRITE_ONLY,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_ONLY,NAK_REMOTE_ACCESS_ERROR
CHECK_LOGS="--client-log client.log --server-log server.log"
LOGS="server/server.log client/client.log client/rogue.log"
PCAP_NAME=lesson05.pcap
SERVER_CMD='lab-ready -q server --tcp-listen 4433 -- \
  "$BUILD_DIR/lessons/05-tls-psn/server" --certs "$BUILD_DIR/certs" -t 60 --clients 3 >"$LAB_OUT/server.log" 2>&1'
CLIENT_CMD='c="$BUILD_DIR/lessons/05-tls-psn/client $LAB_SERVER_IP --certs $BUILD_DIR/certs -t 60 --connect-timeout 60"
lab-wait -q server || exit 1
mkfifo /tmp/victim
$c </tmp/victim >"$LAB_OUT/client.log" 2>&1 &
victim=$!
exec 7>/tmp/victim
printf "send hello over RC\nwrite my secret slot data\nread\n" >&7
lab-ready -q --timeout 60 victim-read --log-line "$LAB_OUT/client.log" "read .my secret slot data. [(]verified[)]" || exit 1
slot=$(sed -nE "s/.*step 6: received QP_INFO: .* slot addr=(0x[0-9a-f]+) rkey=(0x[0-9a-f]+) .*/\1 \2/p" "$LAB_OUT/client.log")
{ $c -e "write-past overflow" && $c -e "write-at $slot forged by a rogue"; } >"$LAB_OUT/rogue.log" 2>&1 || exit 1
printf "read\nquit\n" >&7
exec 7>&-
wait $victim'
