# What scripts/capture.sh runs in the lab to record lesson 05 (sourced, not run).
# One session: TLS 1.3 handshake and the QP_INFO / READY exchange on TCP 4433 (encrypted),
# then RoCE: a SEND and the server's acknowledging SEND, an RDMA WRITE into the client's
# slot, an RDMA READ of it, and the zero-length goodbye SEND.
PORT=4433
REQUIRE=ClientHello,ServerHello,ApplicationData,SEND_ONLY,ACK,RDMA_WRITE_ONLY,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_ONLY
CHECK_LOGS="--client-log client.log"
PCAP_NAME=lesson05.pcap
SERVER_CMD='"$BUILD_DIR/lessons/05-tls-psn/server" --certs "$BUILD_DIR/certs" --clients 1 >"$LAB_OUT/server.log" 2>&1'
CLIENT_CMD='"$BUILD_DIR/lessons/05-tls-psn/client" "$LAB_SERVER_IP" --certs "$BUILD_DIR/certs" --connect-timeout 60 \
  -e "send hello over RC" -e "write my secret slot data" -e read -e quit >"$LAB_OUT/client.log" 2>&1'
