// The CM Manager (userspace-roce/rdmacm/cm.hpp): two Managers, an active one at 10.0.0.2
// and a passive one at 10.0.0.1 as in lesson02.pcap, joined by an in-memory wire this test
// controls (it holds every MAD until the test delivers, drops, duplicates or reorders it)
// and driven by a fake clock, so that no test sleeps or depends on the machine's speed.
// The MADs the Managers send are compared with what the Linux 6.1 kernel CM sent
// (cm_vectors.hpp), the QP attributes with the kernel's (captures/02-cm-write-read/
// server.log and client.log), the timers with cm.c's arithmetic.
#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <set>
#include <string>

#include "cm.hpp"
#include "cm_mad.hpp"
#include "cm_vectors.hpp"

namespace {

using namespace uroce::cm;
namespace v = uroce::cm::vectors;
using std::chrono::milliseconds;

constexpr uint32_t kServerIp = 0x0a000001;  // 10.0.0.1
constexpr uint32_t kClientIp = 0x0a000002;  // 10.0.0.2
constexpr uint64_t kService = 0x1061d2f;    // rdma_cm's TCP port space, port 7471
constexpr uint64_t kServerGuid = 0x505400fffe000001;
constexpr uint64_t kClientGuid = 0x505400fffe000002;

// The kernel's timers with its RoCE values (cm.c, cma.c in Linux 6.1; cm.cpp says how).
constexpr int kReqWaitMs = 2 * 1024 + 4096;  // 2 x cm_convert_to_ms(18) + cm_convert_to_ms(20)
constexpr int kRepWaitMs = 4096;             // cm_convert_to_ms(20)
constexpr int kTimewaitMs = 2048;            // cm_convert_to_ms(19)
constexpr int kMraWaitMs = 65536 + 2048;     // cm_convert_to_ms(24) + cm_convert_to_ms(19)
constexpr int kRetries = 15;

struct Msg {
  uint32_t src = 0, dst = 0;
  std::array<uint8_t, kMadSize> mad{};
  uint16_t attr() const { return static_cast<uint16_t>(mad[16] << 8 | mad[17]); }
  uint64_t tid() const {
    uint64_t t = 0;
    for (int i = 8; i < 16; ++i) t = t << 8 | mad[i];
    return t;
  }
  uint32_t word(size_t at) const {
    return static_cast<uint32_t>(mad[at] << 24 | mad[at + 1] << 16 | mad[at + 2] << 8 |
                                 mad[at + 3]);
  }
};

constexpr uint16_t kReq = 0x10, kMra = 0x11, kRej = 0x12, kRep = 0x13, kRtu = 0x14,
                   kDreq = 0x15, kDrep = 0x16;

/// The wire: what each Manager sends waits in `queue` until the test moves it.
struct Wire {
  std::deque<Msg> queue;
};

struct Port : MadSender {
  Wire& wire;
  uint32_t ip;
  Port(Wire& w, uint32_t a) : wire(w), ip(a) {}
  void send(uint32_t dst, const uint8_t* mad) override {
    Msg m;
    m.src = ip;
    m.dst = dst;
    std::memcpy(m.mad.data(), mad, kMadSize);
    wire.queue.push_back(m);
  }
};

void put32(std::array<uint8_t, kMadSize>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}
void put64(std::array<uint8_t, kMadSize>& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = static_cast<uint8_t>(v >> (56 - 8 * i));
}
template <size_t N>
std::vector<uint8_t> slice(const std::array<uint8_t, N>& b, size_t at, size_t n) {
  return {b.begin() + static_cast<long>(at), b.begin() + static_cast<long>(at + n)};
}

class CmTest : public ::testing::Test {
 protected:
  Clock::time_point t = Clock::time_point{} + std::chrono::hours(1);
  Wire wire;
  Port client_port{wire, kClientIp}, server_port{wire, kServerIp};
  std::vector<Event> client_events, server_events;
  /// The server's consumer refuses every REQ from inside req_received (Event::refuse).
  bool refuse_reqs = false;
  Manager client{client_port, kClientIp, [this](const Event& e) { client_events.push_back(e); }};
  Manager server{server_port, kServerIp, [this](const Event& e) {
                   server_events.push_back(e);
                   server_events.back().refuse = nullptr;  // valid only inside deliver
                   if (refuse_reqs && e.type == EventType::req_received) *e.refuse = true;
                 }};
  int listen_ctx = 0, connect_ctx = 0;

  void SetUp() override {
    client.set_clock([this] { return t; });
    server.set_clock([this] { return t; });
    client.set_ca_guid(kClientGuid);
    server.set_ca_guid(kServerGuid);
  }

  Manager& at(uint32_t ip) { return ip == kServerIp ? server : client; }
  void deliver(const Msg& m) { at(m.dst).receive(m.src, m.mad.data(), kMadSize); }
  Msg take() {
    EXPECT_FALSE(wire.queue.empty());
    if (wire.queue.empty()) return {};
    Msg m = wire.queue.front();
    wire.queue.pop_front();
    return m;
  }
  /// Takes the one MAD on the wire, which must be of type `attr`.
  Msg take_only(uint16_t attr) {
    EXPECT_EQ(wire.queue.size(), 1u);
    Msg m = take();
    EXPECT_EQ(m.attr(), attr);
    return m;
  }
  void pump() {
    while (!wire.queue.empty()) deliver(take());
  }
  void advance(int ms) {
    t += milliseconds(ms);
    client.run_timers(t);
    server.run_timers(t);
  }

  /// The lesson's parameters (lesson02.pcap frames 3 and 4).
  static ConnParams client_params() {
    ConnParams p;
    p.qpn = 0x12;
    p.starting_psn = 0x2845e0;
    p.responder_resources = 0;
    p.initiator_depth = 1;
    p.flow_control = false;
    p.local_ack_timeout = 19;
    p.flow_label = (0xbe0au * 31 + 7471) & 0xFFFFF;
    p.private_data = slice(v::bytes(v::kReq), 24 + 140, 92);
    return p;
  }
  static ConnParams server_params() {
    ConnParams p;
    p.qpn = 0x11;
    p.starting_psn = 0x5b32a0;
    p.responder_resources = 1;
    p.initiator_depth = 0;
    p.flow_control = false;
    p.target_ack_delay = 15;
    p.private_data = slice(v::bytes(v::kRep), 24 + 36, 20);
    return p;
  }

  /// connect, REQ delivered, accept, REP delivered, RTU delivered: both established.
  uint32_t establish(uint32_t* server_id = nullptr) {
    EXPECT_EQ(server.listen(kService, &listen_ctx), 0);
    const uint32_t id = client.connect(kServerIp, kService, client_params(), &connect_ctx);
    deliver(take_only(kReq));
    EXPECT_EQ(server_events.back().type, EventType::req_received);
    const uint32_t sid = server_events.back().id;
    EXPECT_EQ(server.accept(sid, server_params()), 0);
    deliver(take_only(kRep));
    EXPECT_EQ(client_events.back().type, EventType::rep_received);
    EXPECT_EQ(client.ready_to_use(id), 0);
    deliver(take_only(kRtu));
    EXPECT_EQ(server_events.back().type, EventType::rtu_received);
    if (server_id) *server_id = sid;
    return id;
  }
};

// ---- the whole life of a connection ---------------------------------------------------------

TEST_F(CmTest, ConnectAcceptReadyToUseDisconnectTimewait) {
  uint32_t sid = 0;
  const uint32_t cid = establish(&sid);
  ASSERT_EQ(server_events.size(), 2u);
  const Event& req = server_events[0];
  EXPECT_EQ(req.ctx, &listen_ctx);
  EXPECT_EQ(req.peer_ip, kClientIp);
  EXPECT_EQ(req.service_id, kService);
  EXPECT_EQ(req.remote.qpn, 0x12u);
  EXPECT_EQ(req.remote.starting_psn, 0x2845e0u);
  EXPECT_EQ(req.remote.initiator_depth, 1);
  EXPECT_EQ(req.remote.path_mtu, IBV_MTU_1024);
  EXPECT_EQ(req.remote.local_ack_timeout, 19);
  EXPECT_EQ(req.private_data.size(), 92u);
  EXPECT_EQ(req.private_data, client_params().private_data);
  EXPECT_EQ(req.transport_type, 0);  // RC
  ASSERT_EQ(client_events.size(), 1u);
  const Event& rep = client_events[0];
  EXPECT_EQ(rep.ctx, &connect_ctx);
  EXPECT_EQ(rep.remote.qpn, 0x11u);
  EXPECT_EQ(rep.remote.responder_resources, 1);
  EXPECT_EQ(rep.remote.target_ack_delay, 15);
  EXPECT_EQ(rep.private_data.size(), 196u);
  EXPECT_EQ(server_events[1].private_data.size(), 224u);  // the RTU's

  const uint8_t bye[] = {'b', 'y', 'e'};
  EXPECT_EQ(client.disconnect(cid, bye), 0);
  deliver(take_only(kDreq));
  ASSERT_EQ(server_events.back().type, EventType::dreq_received);
  EXPECT_EQ(server_events.back().private_data.size(), 220u);
  EXPECT_EQ(server_events.back().private_data[0], 'b');
  EXPECT_EQ(server.disconnect(sid), 0);
  deliver(take_only(kDrep));
  ASSERT_EQ(client_events.back().type, EventType::drep_received);
  EXPECT_EQ(client_events.back().private_data.size(), 224u);

  // Time-wait: cm_convert_to_ms(19) on both sides, then timewait_exit.
  advance(kTimewaitMs - 1);
  EXPECT_EQ(client_events.back().type, EventType::drep_received);
  EXPECT_EQ(server_events.back().type, EventType::dreq_received);
  advance(1);
  EXPECT_EQ(client_events.back().type, EventType::timewait_exit);
  EXPECT_EQ(server_events.back().type, EventType::timewait_exit);
  EXPECT_FALSE(client.next_deadline());
  EXPECT_FALSE(server.next_deadline());
  EXPECT_TRUE(wire.queue.empty());
  client.destroy(cid);
  server.destroy(sid);
  EXPECT_TRUE(wire.queue.empty());
}

// ---- the kernel's bytes -------------------------------------------------------------------

TEST_F(CmTest, SendsTheKernelsBytesBarTheRandomFields) {
  // REQ: lesson02.pcap frame 3 but for the comm ID and the TID.
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  Msg req = take_only(kReq);
  EXPECT_EQ(req.word(24), cid);
  EXPECT_EQ(req.tid(), uint64_t{1} << 32 | __builtin_bswap32(cid));  // cm_form_tid
  auto want = v::bytes(v::kReq);
  put32(want, 24, cid);
  put64(want, 8, req.tid());
  EXPECT_EQ(req.mad, want);

  // REP: the server answers the captured REQ; frame 4 but for the server's comm ID.
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  server.receive(kClientIp, v::bytes(v::kReq).data(), kMadSize);
  ASSERT_EQ(server_events.size(), 1u);
  const uint32_t sid = server_events[0].id;
  ASSERT_EQ(server.accept(sid, server_params()), 0);
  Msg rep = take_only(kRep);
  want = v::bytes(v::kRep);
  put32(want, 24, sid);
  EXPECT_EQ(rep.mad, want);

  // RTU: the client answers the captured REP (addressed to it); frame 5 but for the IDs.
  auto cap_rep = v::bytes(v::kRep);
  put32(cap_rep, 28, cid);
  put64(cap_rep, 8, req.tid());
  client.receive(kServerIp, cap_rep.data(), kMadSize);
  ASSERT_EQ(client_events.size(), 1u);
  ASSERT_EQ(client.ready_to_use(cid), 0);
  Msg rtu = take_only(kRtu);
  want = v::bytes(v::kRtu);
  put32(want, 24, cid);
  put64(want, 8, req.tid());
  EXPECT_EQ(rtu.mad, want);

  // DREQ: frame 13 but for the client's ID and TID.
  ASSERT_EQ(client.disconnect(cid), 0);
  Msg dreq = take_only(kDreq);
  want = v::bytes(v::kDreq);
  put32(want, 24, cid);
  put64(want, 8, req.tid());
  EXPECT_EQ(dreq.mad, want);

  // DREP: the server answers the captured DREQ (addressed to it); frame 14 but for its ID.
  server.receive(kClientIp, v::bytes(v::kRtu).data(), kMadSize);  // established first
  auto cap_rtu = v::bytes(v::kRtu);
  put32(cap_rtu, 28, sid);
  server.receive(kClientIp, cap_rtu.data(), kMadSize);
  ASSERT_EQ(server_events.back().type, EventType::rtu_received);
  auto cap_dreq = v::bytes(v::kDreq);
  put32(cap_dreq, 28, sid);
  server.receive(kClientIp, cap_dreq.data(), kMadSize);
  ASSERT_EQ(server_events.back().type, EventType::dreq_received);
  ASSERT_EQ(server.disconnect(sid), 0);
  Msg drep = take_only(kDrep);
  want = v::bytes(v::kDrep);
  put32(want, 24, sid);
  EXPECT_EQ(drep.mad, want);
}

TEST_F(CmTest, RejectsAReqForAServiceNobodyListensOnAsTheKernelDoes) {
  // Frame 2 exactly: nothing in it is ours to choose.
  server.receive(kClientIp, v::bytes(v::kReqNoListener).data(), kMadSize);
  EXPECT_EQ(take_only(kRej).mad, v::bytes(v::kRejInvalidService));
  EXPECT_TRUE(server_events.empty());
  EXPECT_FALSE(server.next_deadline());
}

TEST_F(CmTest, ConsumerRejectCarriesPrivateDataAsTheKernelDid) {
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  server.receive(kClientIp, v::bytes(v::kReqRejected).data(), kMadSize);
  ASSERT_EQ(server_events.size(), 1u);
  const uint32_t sid = server_events[0].id;
  const auto text = slice(v::bytes(v::kRejConsumer), 24 + 84, 148);
  ASSERT_EQ(server.reject(sid, kRejConsumerDefined, text), 0);
  auto want = v::bytes(v::kRejConsumer);
  put32(want, 24, sid);
  EXPECT_EQ(take_only(kRej).mad, want);
  const std::vector<uint8_t> too_long(149);
  EXPECT_EQ(server.reject(sid, kRejConsumerDefined, too_long), EINVAL);
}

TEST_F(CmTest, ActiveSideReceivesTheReject) {
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  deliver(take_only(kReq));
  const uint8_t why[] = {'n', 'o'};
  ASSERT_EQ(server.reject(server_events[0].id, kRejConsumerDefined, why), 0);
  deliver(take_only(kRej));
  ASSERT_EQ(client_events.size(), 1u);
  EXPECT_EQ(client_events[0].type, EventType::rej_received);
  EXPECT_EQ(client_events[0].id, cid);
  EXPECT_EQ(client_events[0].rej_reason, kRejConsumerDefined);
  EXPECT_EQ(client_events[0].private_data.size(), 148u);
  EXPECT_EQ(client_events[0].private_data[1], 'o');
  EXPECT_FALSE(client.next_deadline());  // no more REQs
}

TEST_F(CmTest, NoListenerRejectReachesTheActiveSide) {
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  deliver(take_only(kReq));
  deliver(take_only(kRej));
  ASSERT_EQ(client_events.size(), 1u);
  EXPECT_EQ(client_events[0].id, cid);
  EXPECT_EQ(client_events[0].rej_reason, kRejInvalidServiceId);
}

// ---- QP attributes --------------------------------------------------------------------------

TEST_F(CmTest, QpAttributesAreTheKernels) {
  uint32_t sid = 0;
  const uint32_t cid = establish(&sid);
  ibv_qp_attr a{};
  int mask = 0;
  // The server (passive): server.log "qpn=0x000011 state=RTS mtu=1024 sq_psn=0x2845e0
  // rq_psn=0x5b32a0 dest_qpn=0x000012 max_rd_atomic=0 max_dest_rd_atomic=1 retry=7
  // rnr_retry=7 timeout=19 min_rnr_timer=0".
  ASSERT_EQ(server.init_qp_attr(sid, IBV_QPS_INIT, a, mask), 0);
  EXPECT_EQ(mask, IBV_QP_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_PKEY_INDEX | IBV_QP_PORT);
  EXPECT_EQ(a.qp_state, IBV_QPS_INIT);
  EXPECT_EQ(a.qp_access_flags, unsigned{IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
                                        IBV_ACCESS_REMOTE_ATOMIC});
  EXPECT_EQ(a.pkey_index, 0);
  EXPECT_EQ(a.port_num, 1);
  ASSERT_EQ(server.init_qp_attr(sid, IBV_QPS_RTR, a, mask), 0);
  EXPECT_EQ(mask, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                      IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
  EXPECT_EQ(a.path_mtu, IBV_MTU_1024);
  EXPECT_EQ(a.dest_qp_num, 0x12u);
  EXPECT_EQ(a.rq_psn, 0x5b32a0u);
  EXPECT_EQ(a.max_dest_rd_atomic, 1);
  EXPECT_EQ(a.min_rnr_timer, 0);
  ASSERT_EQ(server.init_qp_attr(sid, IBV_QPS_RTS, a, mask), 0);
  EXPECT_EQ(mask, IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                      IBV_QP_MAX_QP_RD_ATOMIC | IBV_QP_TIMEOUT);
  EXPECT_EQ(a.sq_psn, 0x2845e0u);
  EXPECT_EQ(a.max_rd_atomic, 0);
  EXPECT_EQ(a.retry_cnt, 7);
  EXPECT_EQ(a.rnr_retry, 7);
  EXPECT_EQ(a.timeout, 19);

  // The client (active): client.log "qpn=0x000012 state=RTS mtu=1024 sq_psn=0x5b32a0
  // rq_psn=0x2845e0 dest_qpn=0x000011 max_rd_atomic=1 max_dest_rd_atomic=0 retry=7
  // rnr_retry=7 timeout=19 min_rnr_timer=0".
  ASSERT_EQ(client.init_qp_attr(cid, IBV_QPS_INIT, a, mask), 0);
  EXPECT_EQ(a.qp_access_flags, unsigned{IBV_ACCESS_REMOTE_WRITE});  // REP initiator depth 0
  ASSERT_EQ(client.init_qp_attr(cid, IBV_QPS_RTR, a, mask), 0);
  EXPECT_EQ(a.path_mtu, IBV_MTU_1024);
  EXPECT_EQ(a.dest_qp_num, 0x11u);
  EXPECT_EQ(a.rq_psn, 0x2845e0u);
  EXPECT_EQ(a.max_dest_rd_atomic, 0);
  ASSERT_EQ(client.init_qp_attr(cid, IBV_QPS_RTS, a, mask), 0);
  EXPECT_EQ(a.sq_psn, 0x5b32a0u);
  EXPECT_EQ(a.max_rd_atomic, 1);
  EXPECT_EQ(a.retry_cnt, 7);
  EXPECT_EQ(a.rnr_retry, 7);
  EXPECT_EQ(a.timeout, 19);  // cm_ack_timeout(REP target ACK delay 15, 18)
  EXPECT_EQ(client.init_qp_attr(cid, IBV_QPS_SQD, a, mask), EINVAL);
}

TEST_F(CmTest, QpAttributesFollowTheConnectionsProgress) {
  ibv_qp_attr a{};
  int mask = 0;
  EXPECT_EQ(client.init_qp_attr(12345, IBV_QPS_INIT, a, mask), EINVAL);
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  // Active, REQ sent: INIT only (its responder resources are 0: no READs).
  ASSERT_EQ(client.init_qp_attr(cid, IBV_QPS_INIT, a, mask), 0);
  EXPECT_EQ(a.qp_access_flags, unsigned{IBV_ACCESS_REMOTE_WRITE});
  EXPECT_EQ(client.init_qp_attr(cid, IBV_QPS_RTR, a, mask), EINVAL);
  EXPECT_EQ(client.init_qp_attr(cid, IBV_QPS_RTS, a, mask), EINVAL);
  deliver(take_only(kReq));
  // Passive, before accept (the kernel lets rdma_accept move the QP first): the REQ's
  // values, and rq_psn 0 until the REP's PSN exists.
  const uint32_t sid = server_events[0].id;
  ASSERT_EQ(server.init_qp_attr(sid, IBV_QPS_RTR, a, mask), 0);
  EXPECT_EQ(a.dest_qp_num, 0x12u);
  EXPECT_EQ(a.rq_psn, 0u);
  EXPECT_EQ(a.max_dest_rd_atomic, 1);  // the REQ's initiator depth
  ASSERT_EQ(server.init_qp_attr(sid, IBV_QPS_RTS, a, mask), 0);
  EXPECT_EQ(a.sq_psn, 0x2845e0u);
  EXPECT_EQ(a.max_rd_atomic, 0);       // the REQ's responder resources
}

// ---- timers -----------------------------------------------------------------------------------

TEST_F(CmTest, ReqIsResentEvery6144MsFifteenTimesThenReqError) {
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  const Msg first = take_only(kReq);
  EXPECT_EQ(client.next_deadline(), t + milliseconds(kReqWaitMs));
  for (int i = 0; i < kRetries; ++i) {
    advance(kReqWaitMs - 1);
    EXPECT_TRUE(wire.queue.empty());
    advance(1);
    EXPECT_EQ(take_only(kReq).mad, first.mad);  // same bytes, same transaction ID
  }
  advance(kReqWaitMs - 1);
  EXPECT_TRUE(client_events.empty());
  advance(1);
  EXPECT_TRUE(wire.queue.empty());
  ASSERT_EQ(client_events.size(), 1u);
  EXPECT_EQ(client_events[0].type, EventType::req_error);
  EXPECT_EQ(client_events[0].id, cid);
  EXPECT_FALSE(client.next_deadline());
  client.destroy(cid);
  EXPECT_TRUE(wire.queue.empty());  // idle: nothing left to tell the peer
}

TEST_F(CmTest, DuplicateReqBeforeTheConsumerAnswersGetsAnMraThatStretchesTheWait) {
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  deliver(take_only(kReq));
  ASSERT_EQ(server_events.size(), 1u);
  EXPECT_TRUE(wire.queue.empty());  // the kernel marks the MRA pending, sends none yet
  advance(kReqWaitMs);
  deliver(take_only(kReq));  // the resent REQ
  EXPECT_EQ(server_events.size(), 1u);
  const Msg mra = take_only(kMra);
  EXPECT_EQ(mra.word(24), server_events[0].id);
  EXPECT_EQ(mra.word(28), cid);
  EXPECT_EQ(mra.mad[32] >> 6, 0);   // MRAed: the REQ
  EXPECT_EQ(mra.mad[33] >> 3, 24);  // service timeout: CMA_CM_MRA_SETTING's 24
  deliver(mra);
  // The REQ now waits cm_convert_to_ms(24) + cm_convert_to_ms(19) before each resend.
  EXPECT_EQ(client.next_deadline(), t + milliseconds(kMraWaitMs));
  advance(kMraWaitMs - 1);
  EXPECT_TRUE(wire.queue.empty());
  advance(1);
  take_only(kReq);
  // The consumer answers; the REP ends the wait.
  ASSERT_EQ(server.accept(server_events[0].id, server_params()), 0);
  deliver(take_only(kRep));
  EXPECT_EQ(client_events.back().type, EventType::rep_received);
  EXPECT_FALSE(client.next_deadline());
}

TEST_F(CmTest, RepIsResentUntilTheRtuThenRepError) {
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  client.connect(kServerIp, kService, client_params(), &connect_ctx);
  deliver(take_only(kReq));
  ASSERT_EQ(server.accept(server_events[0].id, server_params()), 0);
  const Msg rep = take_only(kRep);  // lost
  // What the server sent; the client's REQs, resent on their own timer, are lost too.
  auto from_server = [this] {
    std::vector<Msg> out;
    for (const Msg& m : wire.queue)
      if (m.src == kServerIp) out.push_back(m);
    wire.queue.clear();
    return out;
  };
  for (int i = 0; i < kRetries; ++i) {
    advance(kRepWaitMs - 1);
    EXPECT_TRUE(from_server().empty());
    advance(1);
    const auto sent = from_server();
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0].mad, rep.mad);
  }
  advance(kRepWaitMs);
  ASSERT_EQ(server_events.back().type, EventType::rep_error);
  // As the kernel's cm_process_send_error: reported, and nothing more on the wire.
  EXPECT_TRUE(from_server().empty());
}

TEST_F(CmTest, DreqIsResentUntilTheDrepThenDreqErrorAndTimewait) {
  const uint32_t cid = establish();
  ASSERT_EQ(client.disconnect(cid), 0);
  const Msg dreq = take_only(kDreq);
  for (int i = 0; i < kRetries; ++i) {
    advance(kReqWaitMs - 1);  // the active side's timeout_ms, the REQ's
    EXPECT_TRUE(wire.queue.empty());
    advance(1);
    EXPECT_EQ(take_only(kDreq).mad, dreq.mad);
  }
  advance(kReqWaitMs);
  ASSERT_EQ(client_events.back().type, EventType::dreq_error);
  EXPECT_TRUE(wire.queue.empty());
  advance(kTimewaitMs);
  EXPECT_EQ(client_events.back().type, EventType::timewait_exit);
}

TEST_F(CmTest, PassiveSideDreqWaitsItsOwnResponseTimeout) {
  uint32_t sid = 0;
  establish(&sid);
  ASSERT_EQ(server.disconnect(sid), 0);
  const Msg dreq = take_only(kDreq);
  // The passive side's DREQ has a TID of its own making (cm_form_tid of its ID).
  EXPECT_EQ(dreq.tid(), uint64_t{1} << 32 | __builtin_bswap32(sid));
  advance(kRepWaitMs - 1);
  EXPECT_TRUE(wire.queue.empty());
  advance(1);
  deliver(take_only(kDreq));
  ASSERT_EQ(client_events.back().type, EventType::dreq_received);
}

// ---- duplicates ------------------------------------------------------------------------------

// cm_dup_req_handler drops a duplicate REQ once the REP is out: the REP's own timer
// resends it.
TEST_F(CmTest, DuplicateReqAfterTheRepIsLeftToTheRepTimer) {
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  client.connect(kServerIp, kService, client_params(), &connect_ctx);
  const Msg req = take_only(kReq);
  deliver(req);
  ASSERT_EQ(server.accept(server_events[0].id, server_params()), 0);
  const Msg rep = take_only(kRep);  // lost
  deliver(req);                     // the client resent its REQ
  EXPECT_TRUE(wire.queue.empty());
  advance(kRepWaitMs);
  EXPECT_EQ(take_only(kRep).mad, rep.mad);
  EXPECT_EQ(server_events.size(), 1u);
}

TEST_F(CmTest, DuplicateRepAfterTheRtuGetsTheRtuAgain) {
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  deliver(take_only(kReq));
  ASSERT_EQ(server.accept(server_events[0].id, server_params()), 0);
  const Msg rep = take_only(kRep);
  deliver(rep);
  deliver(rep);  // duplicated on the wire before the consumer answered: MRA
  const Msg mra = take_only(kMra);
  EXPECT_EQ(mra.mad[32] >> 6, 1);  // MRAed: the REP
  deliver(mra);
  EXPECT_EQ(server.next_deadline(), t + milliseconds(kMraWaitMs));
  const uint8_t hello[] = {'h', 'i'};
  ASSERT_EQ(client.ready_to_use(cid, hello), 0);
  const Msg rtu = take_only(kRtu);  // lost
  deliver(rep);
  EXPECT_EQ(take_only(kRtu).mad, rtu.mad);  // with the same private data
  EXPECT_EQ(rtu.mad[32], 'h');
  EXPECT_EQ(client_events.size(), 1u);
}

TEST_F(CmTest, DreqInTimewaitGetsTheDrepAgain) {
  uint32_t sid = 0;
  const uint32_t cid = establish(&sid);
  ASSERT_EQ(client.disconnect(cid), 0);
  const Msg dreq = take_only(kDreq);
  deliver(dreq);
  const uint8_t ok[] = {'o', 'k'};
  ASSERT_EQ(server.disconnect(sid, ok), 0);
  const Msg drep = take_only(kDrep);  // lost
  deliver(dreq);                      // resent
  EXPECT_EQ(take_only(kDrep).mad, drep.mad);
  EXPECT_EQ(server_events.back().type, EventType::dreq_received);
  EXPECT_EQ(server_events.size(), 3u);
  // Even after the consumer is gone (cm.c: cm_issue_drep for an unknown connection).
  server.destroy(sid);
  advance(kTimewaitMs);
  deliver(dreq);
  const Msg late = take_only(kDrep);
  EXPECT_EQ(late.word(24), sid);
  EXPECT_EQ(late.word(28), cid);
  EXPECT_EQ(late.tid(), dreq.tid());
}

TEST_F(CmTest, DuplicateRtuAndReorderedMessagesChangeNothing) {
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  deliver(take_only(kReq));
  const uint32_t sid = server_events[0].id;
  ASSERT_EQ(server.accept(sid, server_params()), 0);
  deliver(take_only(kRep));
  ASSERT_EQ(client.ready_to_use(cid), 0);
  const Msg rtu = take_only(kRtu);
  // The client disconnects at once; its DREQ overtakes the RTU.
  ASSERT_EQ(client.disconnect(cid), 0);
  deliver(take_only(kDreq));
  EXPECT_EQ(server_events.back().type, EventType::dreq_received);  // REP timer cancelled
  deliver(rtu);
  deliver(rtu);
  EXPECT_EQ(server_events.back().type, EventType::dreq_received);
  EXPECT_EQ(server_events.size(), 2u);
  ASSERT_EQ(server.disconnect(sid), 0);
  deliver(take_only(kDrep));
  EXPECT_EQ(client_events.back().type, EventType::drep_received);
}

// ---- identifiers ------------------------------------------------------------------------------

TEST_F(CmTest, CommIdsAreUniqueAndNonzeroAndEachConnectionHasItsOwnTid) {
  std::set<uint32_t> ids;
  std::set<uint64_t> tids;
  for (int i = 0; i < 2000; ++i) {
    const uint32_t id = client.connect(kServerIp, kService, client_params(), nullptr);
    EXPECT_NE(id, 0u);
    ids.insert(id);
    tids.insert(take().tid());
  }
  EXPECT_EQ(ids.size(), 2000u);
  EXPECT_EQ(tids.size(), 2000u);
  // Another Manager starts somewhere else: the IDs are not a shared sequence.
  Port p{wire, kClientIp};
  Manager other{p, kClientIp, [](const Event&) {}};
  EXPECT_EQ(ids.count(other.connect(kServerIp, kService, client_params(), nullptr)), 0u);
}

// ---- the consumer leaves ----------------------------------------------------------------------

TEST_F(CmTest, DestroyWhileTheReqIsUnansweredSendsATimeoutReject) {
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  take_only(kReq);
  client.destroy(cid);
  const Msg rej = take_only(kRej);
  EXPECT_EQ(rej.word(24), cid);
  EXPECT_EQ(rej.word(28), 0u);
  EXPECT_EQ(rej.mad[32] >> 6, 2);  // REJected: "other" (cm_format_rej in REQ_SENT)
  EXPECT_EQ(rej.mad[34] << 8 | rej.mad[35], 4);  // IB_CM_REJ_TIMEOUT
  EXPECT_EQ(rej.mad[33] >> 1, 8);                // ARI length: the GUID's 8 bytes
  EXPECT_EQ(slice(rej.mad, 36, 8), (std::vector<uint8_t>{0x50, 0x54, 0x00, 0xff, 0xfe, 0x00,
                                                          0x00, 0x02}));
  EXPECT_FALSE(client.next_deadline());
  advance(kReqWaitMs * 20);
  EXPECT_TRUE(wire.queue.empty());
  EXPECT_TRUE(client_events.empty());
}

// After req_received the connection is in MRA_REQ_SENT (cma's delayed MRA): a destroy
// rejects with our local ID, as the consumer's reject in lesson02.pcap frame 27 does.
TEST_F(CmTest, DestroyBeforeAcceptRejectsAsTheConsumer) {
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  const Msg req = take_only(kReq);
  deliver(req);
  const uint32_t sid = server_events[0].id;
  server.destroy(sid);
  const Msg rej = take_only(kRej);
  EXPECT_EQ(rej.word(24), sid);  // cm_format_rej in MRA_REQ_SENT: our local ID
  EXPECT_EQ(rej.word(28), cid);
  EXPECT_EQ(rej.tid(), req.tid());
  EXPECT_EQ(rej.mad[34] << 8 | rej.mad[35], 28);
  EXPECT_EQ(rej.mad[32] >> 6, 0);  // REJected: the REQ
  deliver(rej);
  EXPECT_EQ(client_events.back().rej_reason, kRejConsumerDefined);
  EXPECT_FALSE(client.next_deadline());
}

// A consumer refusing the REQ from inside req_received is cm_destroy_id in REQ_RCVD: REJ 28
// with local ID 0 (cm_format_rej), as frame 2's REJ 8 has for a REQ nobody took.
TEST_F(CmTest, RefusalInsideReqReceivedRejectsWithLocalIdZero) {
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  refuse_reqs = true;
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  const Msg req = take_only(kReq);
  deliver(req);
  ASSERT_EQ(server_events.size(), 1u);
  const uint32_t sid = server_events[0].id;
  const Msg rej = take_only(kRej);
  EXPECT_EQ(rej.word(24), 0u);
  EXPECT_EQ(rej.word(28), cid);
  EXPECT_EQ(rej.tid(), req.tid());
  EXPECT_EQ(rej.mad[32] >> 6, 0);  // REJected: the REQ
  EXPECT_EQ(rej.mad[34] << 8 | rej.mad[35], 28);
  EXPECT_EQ(rej.mad[33] >> 1, 0);  // no ARI
  // The connection is gone: nothing more to do or say for it.
  ibv_qp_attr a{};
  int mask = 0;
  EXPECT_EQ(server.init_qp_attr(sid, IBV_QPS_INIT, a, mask), EINVAL);
  EXPECT_EQ(server.accept(sid, server_params()), EINVAL);
  EXPECT_EQ(server.reject(sid, kRejConsumerDefined), EINVAL);
  EXPECT_FALSE(server.next_deadline());
  // The active side matches it by its own ID alone (REJected: the REQ).
  deliver(rej);
  ASSERT_EQ(client_events.size(), 1u);
  EXPECT_EQ(client_events[0].type, EventType::rej_received);
  EXPECT_EQ(client_events[0].rej_reason, kRejConsumerDefined);
  EXPECT_EQ(server_events.size(), 1u);
}

// cm.c never answers a REQ with REJ reason 9 itself: a UC REQ reaches the consumer, who
// refuses it (rdma_cm: cma_ib_check_req_qp_type), and this RC-only CM will not accept it.
TEST_F(CmTest, NonRcReqIsTheConsumersToRefuse) {
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  auto uc = v::bytes(v::kReq);
  uc[67] = static_cast<uint8_t>((uc[67] & ~0x06) | 1 << 1);  // transport service type 1
  server.receive(kClientIp, uc.data(), kMadSize);
  EXPECT_TRUE(wire.queue.empty());
  ASSERT_EQ(server_events.size(), 1u);
  EXPECT_EQ(server_events[0].type, EventType::req_received);
  EXPECT_EQ(server_events[0].transport_type, 1);
  EXPECT_EQ(server_events[0].extended_transport_type, 0);
  const uint32_t sid = server_events[0].id;
  EXPECT_EQ(server.accept(sid, server_params()), EINVAL);
  EXPECT_TRUE(wire.queue.empty());
  // The consumer rejects after the event: the connection is in MRA_REQ_SENT.
  ASSERT_EQ(server.reject(sid, kRejConsumerDefined), 0);
  const Msg rej = take_only(kRej);
  EXPECT_EQ(rej.word(24), sid);
  EXPECT_EQ(rej.word(28), uint32_t{uc[24]} << 24 | uc[25] << 16 | uc[26] << 8 | uc[27]);
  EXPECT_EQ(rej.mad[34] << 8 | rej.mad[35], 28);

  // Refused from inside req_received instead: REJ 28 with local ID 0.
  refuse_reqs = true;
  put32(uc, 24, 0x11223344);  // another connection of the peer's
  uc[58] = 0x77;              // on another QP
  server.receive(kClientIp, uc.data(), kMadSize);
  ASSERT_EQ(server_events.size(), 2u);
  EXPECT_EQ(server_events[1].transport_type, 1);
  const Msg rej0 = take_only(kRej);
  EXPECT_EQ(rej0.word(24), 0u);
  EXPECT_EQ(rej0.word(28), 0x11223344u);
  EXPECT_EQ(rej0.mad[34] << 8 | rej0.mad[35], 28);
}

// A timeout REJ (our peer gave up on its REQ) is matched by the peer's ID and CA GUID.
TEST_F(CmTest, TimeoutRejectIsMatchedByTheCaGuidInItsAri) {
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  deliver(take_only(kReq));
  ASSERT_EQ(server_events.size(), 1u);
  client.destroy(cid);
  Msg rej = take_only(kRej);
  Msg wrong = rej;
  wrong.mad[43] ^= 1;  // another CA's GUID
  deliver(wrong);
  EXPECT_EQ(server_events.size(), 1u);
  deliver(rej);
  ASSERT_EQ(server_events.size(), 2u);
  EXPECT_EQ(server_events[1].type, EventType::rej_received);
  EXPECT_EQ(server_events[1].rej_reason, kRejTimeout);
  EXPECT_EQ(server.accept(server_events[0].id, server_params()), EINVAL);  // idle now
}

TEST_F(CmTest, DestroyWhenEstablishedSendsOneDreqAndFinishesAlone) {
  uint32_t sid = 0;
  const uint32_t cid = establish(&sid);
  const size_t events = client_events.size();
  client.destroy(cid);
  const Msg dreq = take_only(kDreq);
  advance(kReqWaitMs * 3);  // not resent
  EXPECT_TRUE(wire.queue.empty());
  deliver(dreq);
  ASSERT_EQ(server.disconnect(sid), 0);
  deliver(take_only(kDrep));  // in time-wait: dropped, no event
  EXPECT_EQ(client_events.size(), events);
  EXPECT_FALSE(client.next_deadline());
  EXPECT_EQ(client.disconnect(cid), EINVAL);
}

// ---- establish (rdma_notify COMM_EST) ------------------------------------------------------

// The RTU is lost; the server's QP receives data first and the consumer calls establish.
TEST_F(CmTest, EstablishAfterALostRtuThenTheLateRtuIsADuplicate) {
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  deliver(take_only(kReq));
  const uint32_t sid = server_events[0].id;
  EXPECT_EQ(server.establish(sid), EINVAL);  // MRA_REQ_SENT: no REP yet
  ASSERT_EQ(server.accept(sid, server_params()), 0);
  deliver(take_only(kRep));
  const uint8_t hello[] = {'h', 'i'};
  ASSERT_EQ(client.ready_to_use(cid, hello), 0);
  const Msg rtu = take_only(kRtu);  // lost, for now
  EXPECT_EQ(client.establish(cid), EISCONN);
  ASSERT_EQ(server.next_deadline(), t + milliseconds(kRepWaitMs));

  ASSERT_EQ(server.establish(sid), 0);
  ASSERT_EQ(server_events.size(), 2u);
  EXPECT_EQ(server_events[1].type, EventType::rtu_received);
  EXPECT_EQ(server_events[1].id, sid);
  EXPECT_EQ(server_events[1].ctx, &listen_ctx);
  EXPECT_TRUE(server_events[1].private_data.empty());  // no RTU carried it
  EXPECT_FALSE(server.next_deadline());                // the REP is no longer resent
  advance(kRepWaitMs * 3);
  EXPECT_TRUE(wire.queue.empty());
  EXPECT_EQ(server.establish(sid), EISCONN);

  // The RTU arrives at last: cm_rtu_handler counts it a duplicate and drops it.
  deliver(rtu);
  EXPECT_EQ(server_events.size(), 2u);
  EXPECT_TRUE(wire.queue.empty());
  // Established as any other: the QP attributes, then a disconnect.
  ibv_qp_attr a{};
  int mask = 0;
  ASSERT_EQ(server.init_qp_attr(sid, IBV_QPS_RTS, a, mask), 0);
  EXPECT_EQ(a.sq_psn, 0x2845e0u);
  ASSERT_EQ(server.disconnect(sid), 0);
  deliver(take_only(kDreq));
  EXPECT_EQ(client_events.back().type, EventType::dreq_received);
}

TEST_F(CmTest, EstablishAfterAnMraForTheRep) {
  ASSERT_EQ(server.listen(kService, &listen_ctx), 0);
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  deliver(take_only(kReq));
  const uint32_t sid = server_events[0].id;
  ASSERT_EQ(server.accept(sid, server_params()), 0);
  const Msg rep = take_only(kRep);
  deliver(rep);
  deliver(rep);  // duplicated: the client, still deciding, answers with an MRA
  deliver(take_only(kMra));
  EXPECT_EQ(server.next_deadline(), t + milliseconds(kMraWaitMs));  // MRA_REP_RCVD
  ASSERT_EQ(server.establish(sid), 0);
  EXPECT_EQ(server_events.back().type, EventType::rtu_received);
  EXPECT_FALSE(server.next_deadline());
  ASSERT_EQ(client.ready_to_use(cid), 0);
  deliver(take_only(kRtu));
  EXPECT_EQ(server_events.size(), 2u);
}

TEST_F(CmTest, EstablishIsRefusedOutsideRepSent) {
  EXPECT_EQ(server.establish(12345), EINVAL);
  uint32_t sid = 0;
  const uint32_t cid = establish(&sid);
  EXPECT_EQ(server.establish(sid), EISCONN);
  ASSERT_EQ(client.disconnect(cid), 0);
  EXPECT_EQ(client.establish(cid), EINVAL);  // DREQ_SENT
  deliver(take_only(kDreq));
  EXPECT_EQ(server.establish(sid), EINVAL);  // DREQ_RCVD
  server.destroy(sid);
  EXPECT_EQ(server.establish(sid), EINVAL);
  const uint32_t cid2 = client.connect(kServerIp, kService, client_params(), nullptr);
  EXPECT_EQ(client.establish(cid2), EINVAL);  // REQ_SENT
}

// ---- refusals -----------------------------------------------------------------------------------

TEST_F(CmTest, CallsInTheWrongStateAreRefused) {
  EXPECT_EQ(server.listen(kService, &listen_ctx), 0);
  EXPECT_EQ(server.listen(kService, &listen_ctx), EADDRINUSE);
  const uint32_t cid = client.connect(kServerIp, kService, client_params(), &connect_ctx);
  EXPECT_EQ(client.accept(cid, server_params()), EINVAL);
  EXPECT_EQ(client.ready_to_use(cid), EINVAL);
  EXPECT_EQ(client.disconnect(cid), EINVAL);
  deliver(take_only(kReq));
  const uint32_t sid = server_events[0].id;
  EXPECT_EQ(server.ready_to_use(sid), EINVAL);
  ConnParams big = server_params();
  big.private_data.resize(197);
  EXPECT_EQ(server.accept(sid, big), EINVAL);
  EXPECT_EQ(server.accept(sid, server_params()), 0);
  EXPECT_EQ(server.accept(sid, server_params()), EINVAL);
  ConnParams too_long = client_params();
  too_long.private_data.resize(93);
  EXPECT_EQ(client.connect(kServerIp, kService, too_long, nullptr), 0u);
  server.stop_listening(kService);
  EXPECT_EQ(server.listen(kService, &listen_ctx), 0);
}

TEST_F(CmTest, StaleConnectionIsRejectedAndTheOldOneDisconnected) {
  establish();
  // A new REQ from the same peer for the same QP while the old connection lives.
  client.connect(kServerIp, kService, client_params(), &connect_ctx);
  deliver(take_only(kReq));
  ASSERT_EQ(wire.queue.size(), 2u);
  const Msg rej = take();
  EXPECT_EQ(rej.attr(), kRej);
  EXPECT_EQ(rej.mad[34] << 8 | rej.mad[35], 10);
  EXPECT_EQ(take().attr(), kDreq);
}

// ---- what does not belong ---------------------------------------------------------------------

std::vector<std::string> log_lines;

TEST_F(CmTest, UnknownAndMalformedMessagesAreDroppedWithALogLine) {
  log_sink.level = 1;
  log_sink.write = [](const char* line) { log_lines.emplace_back(line); };
  log_lines.clear();
  auto rtu = v::bytes(v::kRtu);
  server.receive(kClientIp, rtu.data(), kMadSize);
  auto bad = v::bytes(v::kRtu);
  bad[2] = 9;
  server.receive(kClientIp, bad.data(), kMadSize);
  server.receive(kClientIp, bad.data(), 12);
  log_sink.level = 0;
  log_sink.write = nullptr;
  EXPECT_TRUE(wire.queue.empty());
  EXPECT_TRUE(server_events.empty());
  ASSERT_GE(log_lines.size(), 3u);
  std::string all;
  for (const auto& l : log_lines) all += l + "\n";
  EXPECT_NE(all.find("RTU from 10.0.0.2 for no connection of ours"), std::string::npos) << all;
  EXPECT_NE(all.find("CM class version 9, expected 2"), std::string::npos) << all;
  EXPECT_NE(all.find("MAD of 12 bytes, expected 256"), std::string::npos) << all;
}

TEST_F(CmTest, MessagesFromAStrangerDoNotTouchAConnection) {
  uint32_t sid = 0;
  const uint32_t cid = establish(&sid);
  ASSERT_EQ(client.disconnect(cid), 0);
  Msg dreq = take_only(kDreq);
  server.receive(0x0a000009, dreq.mad.data(), kMadSize);  // right IDs, wrong sender
  EXPECT_EQ(server_events.back().type, EventType::rtu_received);
  take_only(kDrep);  // answered as for an unknown connection, as cm.c does
}

}  // namespace
