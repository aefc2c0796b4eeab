// The RC transport of one queue pair driven by packets alone: a SocketlessRc (one device,
// one QP in RTS, no socket) receives hand-built packets from its peer through
// Device::handle_packet, and the tests look at the completions, the QP state and what the
// QP queued for the wire in answer (ACK, NAK, READ responses). The basics are here; the
// retry rules are in rc_retry_test.cpp, the responder's checks in rc_responder_test.cpp.
// The fuzzer (tests/fuzz/uroce_rx_fuzz.cpp) drives the same path with random input.
#include <gtest/gtest.h>

#include <endian.h>

#include <cstring>
#include <string>
#include <vector>

#include "rc_peer.hpp"

namespace uroce::rc_test {
namespace {

using namespace wire;
using socketless::RcSetup;

// ---- responder ---------------------------------------------------------------------------

TEST(RcResponder, SendOnlyLandsInThePostedRecv) {
  SocketlessRc h;
  ASSERT_EQ(h.post_recv(7, 64), 0);
  h.deliver(from_peer(h, kSendOnly, 0x100, bytes_of("hello")));
  const auto wcs = SocketlessRc::drain(h.recv_cq);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wr_id, 7u);
  EXPECT_EQ(wcs[0].status, IBV_WC_SUCCESS);
  EXPECT_EQ(wcs[0].opcode, IBV_WC_RECV);
  EXPECT_EQ(wcs[0].byte_len, 5u);
  EXPECT_EQ(wcs[0].qp_num, h.qp.qpn());
  EXPECT_EQ(wcs[0].src_qp, socketless::kPeerQpn);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(h.recv_area()), 5), "hello");
  EXPECT_EQ(h.qp.epsn, 0x101u);
  EXPECT_EQ(h.qp.msn, 1u);
  // One ACK for the SEND's PSN, with the message count.
  const auto sent = sent_by(h);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].p.bth.opcode, kAcknowledge);
  EXPECT_EQ(sent[0].p.bth.psn, 0x100u);
  EXPECT_EQ(aeth_kind(sent[0].p.aeth.syndrome), AethKind::ack);
  EXPECT_EQ(sent[0].p.aeth.msn, 1u);
}

// ibv_wc.imm_data is in network order, as the application's ibv_post_send gave it.
TEST(RcResponder, SendWithImmediateReportsImmInNetworkOrder) {
  SocketlessRc h;
  ASSERT_EQ(h.post_recv(1, 64), 0);
  h.deliver(from_peer(h, kSendOnlyImm, 0x100, bytes_of("x"), {}, 0x01020304));
  const auto wcs = SocketlessRc::drain(h.recv_cq);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_TRUE(wcs[0].wc_flags & IBV_WC_WITH_IMM);
  EXPECT_EQ(wcs[0].imm_data, htobe32(0x01020304));
}

// A three-packet SEND whose PSNs go 0xFFFFFF, 0, 1.
TEST(RcResponder, MultiPacketSendAcrossThePsnWrap) {
  RcSetup s;
  s.path_mtu = IBV_MTU_256;
  s.rq_psn = 0xFFFFFF;
  SocketlessRc h(s);
  ASSERT_EQ(h.post_recv(3, 1024), 0);
  std::vector<uint8_t> first(256, 'a'), middle(256, 'b'), last(10, 'c');
  h.deliver(from_peer(h, kSendFirst, 0xFFFFFF, first));
  h.deliver(from_peer(h, kSendMiddle, 0, middle));
  EXPECT_TRUE(SocketlessRc::drain(h.recv_cq).empty()) << "completed before its last packet";
  h.deliver(from_peer(h, kSendLast, 1, last));
  const auto wcs = SocketlessRc::drain(h.recv_cq);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].status, IBV_WC_SUCCESS);
  EXPECT_EQ(wcs[0].byte_len, 522u);
  EXPECT_EQ(h.recv_area()[255], 'a');
  EXPECT_EQ(h.recv_area()[256], 'b');
  EXPECT_EQ(h.recv_area()[521], 'c');
  EXPECT_EQ(h.qp.epsn, 2u);
}

TEST(RcResponder, WriteOnlyPlacesDataWithoutConsumingARecv) {
  SocketlessRc h;
  ASSERT_EQ(h.post_recv(1, 64), 0);
  h.deliver(from_peer(h, kWriteOnly, 0x100, bytes_of("abc"), {h.remote_va(100), h.rkey(), 3}));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(h.memory.data() + 100), 3), "abc");
  EXPECT_TRUE(SocketlessRc::drain(h.recv_cq).empty());
  EXPECT_EQ(h.qp.rq.size(), 1u);
  EXPECT_EQ(h.qp.state, IBV_QPS_RTS);
}

TEST(RcResponder, WriteFirstMiddleLastWithImmediate) {
  RcSetup s;
  s.path_mtu = IBV_MTU_256;
  SocketlessRc h(s);
  ASSERT_EQ(h.post_recv(9, 0), 0);  // WRITE_WITH_IMM consumes a RECV but writes no data to it
  const Reth reth{h.remote_va(1000), h.rkey(), 256 + 256 + 7};
  h.deliver(from_peer(h, kWriteFirst, 0x100, std::vector<uint8_t>(256, 1), reth));
  h.deliver(from_peer(h, kWriteMiddle, 0x101, std::vector<uint8_t>(256, 2)));
  h.deliver(from_peer(h, kWriteLastImm, 0x102, std::vector<uint8_t>(7, 3), {}, 0xCAFE));
  EXPECT_EQ(h.memory[1000], 1);
  EXPECT_EQ(h.memory[1000 + 256], 2);
  EXPECT_EQ(h.memory[1000 + 512 + 6], 3);
  EXPECT_EQ(h.memory[1000 + 512 + 7], 0);
  const auto wcs = SocketlessRc::drain(h.recv_cq);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].opcode, IBV_WC_RECV_RDMA_WITH_IMM);
  EXPECT_EQ(wcs[0].byte_len, 519u);
  EXPECT_EQ(wcs[0].imm_data, htobe32(0xCAFE));
}

// A bad rkey is a class C error: NAK remote access, QP to ERROR, posted RECVs flushed.
TEST(RcResponder, WriteWithBadRkeyMovesTheQpToError) {
  SocketlessRc h;
  ASSERT_EQ(h.post_recv(5, 64), 0);
  h.deliver(from_peer(h, kWriteOnly, 0x100, bytes_of("abc"), {h.remote_va(0), h.rkey() + 1, 3}));
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
  const auto wcs = SocketlessRc::drain(h.recv_cq);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wr_id, 5u);
  EXPECT_EQ(wcs[0].status, IBV_WC_WR_FLUSH_ERR);
  EXPECT_EQ(h.memory[0], 0);
  const auto sent = sent_by(h);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].p.bth.opcode, kAcknowledge);
  EXPECT_EQ(sent[0].p.aeth.syndrome, kAethNak | kNakRemoteAccess);
  EXPECT_EQ(sent[0].p.bth.psn, 0x100u);
}

TEST(RcResponder, WriteBeyondTheMrMovesTheQpToError) {
  SocketlessRc h;
  const uint64_t end = h.remote_va(h.memory.size());
  h.deliver(from_peer(h, kWriteOnly, 0x100, bytes_of("abcd"), {end - 2, h.rkey(), 4}));
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
}

// ---- what the responder must drop without a trace ------------------------------------------

/// The responder state a dropped packet must leave alone.
struct ResponderState {
  ibv_qp_state state;
  uint32_t epsn, msn;
  size_t rq;
  bool operator==(const ResponderState&) const = default;
};
ResponderState snapshot(const SocketlessRc& h) {
  return {h.qp.state, h.qp.epsn, h.qp.msn, h.qp.rq.size()};
}

TEST(RcResponder, BadIcrcIsDropped) {
  SocketlessRc h;
  ASSERT_EQ(h.post_recv(1, 64), 0);
  const ResponderState before = snapshot(h);
  auto pkt = from_peer(h, kSendOnly, 0x100, bytes_of("hello"));
  pkt.back() ^= 1;
  h.deliver(pkt);
  EXPECT_TRUE(SocketlessRc::drain(h.recv_cq).empty());
  EXPECT_EQ(snapshot(h), before);
}

TEST(RcResponder, PacketsFromAStrangerAreDropped) {
  SocketlessRc h;
  ASSERT_EQ(h.post_recv(1, 64), 0);
  const ResponderState before = snapshot(h);
  // Sealed for the stranger's address, so only the address check can refuse it.
  Packet p;
  p.bth.opcode = kSendOnly;
  p.bth.dest_qp = h.qp.qpn();
  p.bth.psn = 0x100;
  const uint32_t stranger = kPeerIp + 1;
  h.deliver(socketless::build_packet(p, bytes_of("hi"), socketless::flow_between(stranger, kLocalIp)),
            stranger);
  EXPECT_TRUE(SocketlessRc::drain(h.recv_cq).empty());
  EXPECT_EQ(snapshot(h), before);
}

TEST(RcResponder, PacketsForAnotherQpAreDropped) {
  SocketlessRc h;
  ASSERT_EQ(h.post_recv(1, 64), 0);
  const ResponderState before = snapshot(h);
  auto pkt = from_peer(h, kSendOnly, 0x100, bytes_of("hello"));
  pkt[7] ^= 0x40;  // DestQP
  const std::span<const uint8_t> parts[] = {std::span<const uint8_t>(pkt).first(pkt.size() - 4)};
  store_icrc(compute_icrc(socketless::flow_between(kPeerIp, kLocalIp), parts), &pkt[pkt.size() - 4]);
  h.deliver(pkt);
  EXPECT_TRUE(SocketlessRc::drain(h.recv_cq).empty());
  EXPECT_EQ(snapshot(h), before);
}

// No RECV posted: RNR NAK, nothing consumed; the retried packet succeeds once one is.
TEST(RcResponder, SendWithoutRecvIsAnsweredWithRnrAndRetried) {
  SocketlessRc h;
  const auto pkt = from_peer(h, kSendOnly, 0x100, bytes_of("late"));
  h.deliver(pkt);
  EXPECT_EQ(h.qp.state, IBV_QPS_RTS);
  EXPECT_EQ(h.qp.epsn, 0x100u);
  EXPECT_TRUE(SocketlessRc::drain(h.recv_cq).empty());
  // The RNR NAK names the PSN to resend and the QP's min_rnr_timer (12: 0.64 ms).
  const auto sent = sent_by(h);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].p.aeth.syndrome, kAethRnrNak | 12);
  EXPECT_EQ(sent[0].p.bth.psn, 0x100u);
  ASSERT_EQ(h.post_recv(2, 64), 0);
  h.deliver(pkt);
  const auto wcs = SocketlessRc::drain(h.recv_cq);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].byte_len, 4u);
}

// A packet after a gap is dropped (one PSN sequence NAK goes out); the expected PSN is
// still taken afterwards, and a duplicate of it is acknowledged but not delivered twice.
TEST(RcResponder, GapsAndDuplicates) {
  SocketlessRc h;
  ASSERT_EQ(h.post_recv(1, 64), 0);
  ASSERT_EQ(h.post_recv(2, 64), 0);
  h.deliver(from_peer(h, kSendOnly, 0x101, bytes_of("second")));
  h.deliver(from_peer(h, kSendOnly, 0x102, bytes_of("third")));
  EXPECT_EQ(h.qp.epsn, 0x100u);
  EXPECT_TRUE(h.qp.nak_sent);
  const auto naks = sent_by(h);
  ASSERT_EQ(naks.size(), 1u) << "one sequence NAK per gap, not one per packet";
  EXPECT_EQ(naks[0].p.aeth.syndrome, kAethNak | kNakPsnSequence);
  EXPECT_EQ(naks[0].p.bth.psn, 0x100u);
  h.deliver(from_peer(h, kSendOnly, 0x100, bytes_of("first")));
  h.deliver(from_peer(h, kSendOnly, 0x100, bytes_of("first")));  // duplicate
  const auto wcs = SocketlessRc::drain(h.recv_cq);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wr_id, 1u);
  EXPECT_EQ(h.qp.epsn, 0x101u);
  EXPECT_EQ(h.qp.rq.size(), 1u);
}

// A READ request uses one PSN per response packet: 3000 bytes at MTU 1024 is 3.
TEST(RcResponder, ReadRequestConsumesOnePsnPerResponse) {
  SocketlessRc h;
  for (size_t i = 0; i < 3000; ++i) h.memory[10 + i] = static_cast<uint8_t>(i * 7);
  h.deliver(from_peer(h, kReadRequest, 0x100, {}, {h.remote_va(10), h.rkey(), 3000}));
  EXPECT_EQ(h.qp.state, IBV_QPS_RTS);
  EXPECT_EQ(h.qp.epsn, 0x103u);
  EXPECT_EQ(h.qp.msn, 1u);
  // FIRST, MIDDLE, LAST at PSNs 0x100..0x102, carrying the region in order.
  const auto sent = sent_by(h);
  ASSERT_EQ(sent.size(), 3u);
  const uint8_t opcodes[] = {kReadResponseFirst, kReadResponseMiddle, kReadResponseLast};
  std::vector<uint8_t> data;
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(sent[k].p.bth.opcode, opcodes[k]);
    EXPECT_EQ(sent[k].p.bth.psn, 0x100u + k);
    data.insert(data.end(), sent[k].p.payload, sent[k].p.payload + sent[k].p.payload_len);
  }
  EXPECT_EQ(data, std::vector<uint8_t>(h.memory.begin() + 10, h.memory.begin() + 3010));
}

// A READ request whose response was lost arrives again: it is answered again, and the
// QP's state does not move.
TEST(RcResponder, DuplicateReadRequestIsAnsweredAgain) {
  SocketlessRc h;
  const auto req = from_peer(h, kReadRequest, 0x100, {}, {h.remote_va(0), h.rkey(), 100});
  h.deliver(req);
  ASSERT_EQ(sent_by(h).size(), 1u);
  h.deliver(req);
  const auto again = sent_by(h);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].p.bth.opcode, kReadResponseOnly);
  EXPECT_EQ(again[0].p.bth.psn, 0x100u);
  EXPECT_EQ(again[0].p.payload_len, 100u);
  EXPECT_EQ(h.qp.epsn, 0x101u);
  EXPECT_EQ(h.qp.msn, 1u);
}

TEST(RcResponder, SendLargerThanTheRecvIsALengthError) {
  SocketlessRc h;
  ASSERT_EQ(h.post_recv(4, 3), 0);
  h.deliver(from_peer(h, kSendOnly, 0x100, bytes_of("toolong")));
  const auto wcs = SocketlessRc::drain(h.recv_cq);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].status, IBV_WC_LOC_LEN_ERR);
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
}

TEST(RcResponder, MiddlePacketWithoutAFirstIsAnInvalidRequest) {
  SocketlessRc h;
  ASSERT_EQ(h.post_recv(1, 4096), 0);
  h.deliver(from_peer(h, kSendMiddle, 0x100, std::vector<uint8_t>(1024, 0)));
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
}

// ---- requester -----------------------------------------------------------------------------

TEST(RcRequester, AckCompletesTheSend) {
  SocketlessRc h;
  ASSERT_EQ(h.post_send(11, IBV_WR_SEND, 0, 100), 0);
  EXPECT_EQ(h.qp.sq.size(), 1u);
  const auto sent = sent_by(h);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].p.bth.opcode, kSendOnly);
  EXPECT_EQ(sent[0].p.bth.psn, 0x500u);
  EXPECT_TRUE(sent[0].p.bth.ack_req);
  h.deliver(ack_from_peer(h, 0x505, kAethAck | kAckNoCreditLimit));  // never sent: ignored
  EXPECT_TRUE(SocketlessRc::drain(h.send_cq).empty());
  h.deliver(ack_from_peer(h, 0x500, kAethAck | kAckNoCreditLimit));
  const auto wcs = SocketlessRc::drain(h.send_cq);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wr_id, 11u);
  EXPECT_EQ(wcs[0].status, IBV_WC_SUCCESS);
  EXPECT_EQ(wcs[0].opcode, IBV_WC_SEND);
  EXPECT_TRUE(h.qp.sq.empty());
}

TEST(RcRequester, ReadResponsePlacesDataAndCompletesTheRead) {
  SocketlessRc h;
  ASSERT_EQ(h.post_send(12, IBV_WR_RDMA_READ, 2000, 300, 0x5000, 0x77), 0);
  Packet p;
  p.bth.opcode = kReadResponseOnly;
  p.bth.dest_qp = h.qp.qpn();
  p.bth.psn = 0x500;
  const std::vector<uint8_t> data(300, 0x42);
  h.deliver(socketless::build_packet(p, data, socketless::flow_between(kPeerIp, kLocalIp)));
  const auto wcs = SocketlessRc::drain(h.send_cq);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].status, IBV_WC_SUCCESS);
  EXPECT_EQ(wcs[0].opcode, IBV_WC_RDMA_READ);
  EXPECT_EQ(wcs[0].byte_len, 300u);
  EXPECT_EQ(h.memory[2000], 0x42);
  EXPECT_EQ(h.memory[2299], 0x42);
  EXPECT_EQ(h.memory[2300], 0);
}

TEST(RcRequester, RemoteAccessNakFailsTheWrite) {
  SocketlessRc h;
  ASSERT_EQ(h.post_send(13, IBV_WR_RDMA_WRITE, 0, 16, 0x5000, 0x77), 0);
  h.deliver(ack_from_peer(h, 0x500, kAethNak | kNakRemoteAccess, 0));
  const auto wcs = SocketlessRc::drain(h.send_cq);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].status, IBV_WC_REM_ACCESS_ERR);
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
}

// A 3000-byte SEND at path MTU 1024 goes out as FIRST, MIDDLE, LAST with consecutive
// PSNs, full-MTU packets before the last, and an ACK requested at the end.
TEST(RcRequester, SendIsSegmentedByPathMtu) {
  SocketlessRc h;
  for (size_t i = 0; i < 3000; ++i) h.memory[i] = static_cast<uint8_t>(i);
  ASSERT_EQ(h.post_send(15, IBV_WR_SEND, 0, 3000), 0);
  const auto sent = sent_by(h);
  ASSERT_EQ(sent.size(), 3u);
  const uint8_t opcodes[] = {kSendFirst, kSendMiddle, kSendLast};
  const size_t sizes[] = {1024, 1024, 952};
  std::vector<uint8_t> data;
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(sent[k].p.bth.opcode, opcodes[k]);
    EXPECT_EQ(sent[k].p.bth.psn, 0x500u + k);
    EXPECT_EQ(sent[k].p.payload_len, sizes[k]);
    data.insert(data.end(), sent[k].p.payload, sent[k].p.payload + sent[k].p.payload_len);
  }
  EXPECT_TRUE(sent[2].p.bth.ack_req);
  EXPECT_EQ(data, std::vector<uint8_t>(h.memory.begin(), h.memory.begin() + 3000));
}

// No ACK ever comes: after retry_cnt resends the WQE fails with RETRY_EXC_ERR.
TEST(RcRequester, RetryCountExhausted) {
  RcSetup s;
  s.retry_cnt = 2;
  SocketlessRc h(s);
  ASSERT_EQ(h.post_send(14, IBV_WR_SEND, 0, 8), 0);
  for (int i = 0; i < 3 && h.qp.state == IBV_QPS_RTS; ++i)
    h.advance(std::chrono::hours(1));  // far past any retransmission timer
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
  const auto wcs = SocketlessRc::drain(h.send_cq);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].status, IBV_WC_RETRY_EXC_ERR);
}

}  // namespace
}  // namespace uroce::rc_test
