// The requester and completer of one RC QP under the rules that decide when to resend,
// when to give up, and which work request an error belongs to: the retry budgets and
// what resets them, the RNR wait and the retransmission timer, NAKs for a later work
// request than the oldest, the READ limit, fences, and the PSNs outstanding. Time moves
// only when a test says so (SocketlessRc::advance).
#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "rc_peer.hpp"

namespace uroce::rc_test {
namespace {

using namespace wire;
using socketless::RcSetup;
using std::chrono::hours;
using std::chrono::milliseconds;

constexpr uint8_t kAck = kAethAck | kAckNoCreditLimit;
constexpr uint32_t kRemote = 0x77;  // an R_Key at the peer; the peer here is played by hand

/// The peer answers the packet at `psn` with an RNR NAK of timer code 1 (10 us); once the
/// wait is over the QP sends that packet again.
void rnr_nak_then_resend(SocketlessRc& h, uint32_t psn) {
  h.deliver(ack_from_peer(h, psn, kAethRnrNak | 1));
  ASSERT_EQ(h.qp.state, IBV_QPS_RTS);
  EXPECT_TRUE(sent_by(h).empty()) << "nothing goes during the wait";
  h.advance(milliseconds(1));
  EXPECT_EQ(only_sent(h).p.bth.psn, psn) << "resent after the RNR wait";
}

// ---- retry budgets ----------------------------------------------------------------------------

// rnr_retry bounds RNR NAKs in a row, not over the QP's life: an ACK that makes progress
// gives the budget back (rxe_comp.c, reset_retry_counters). With rnr_retry 1, four SENDs
// that each meet one RNR NAK all complete.
TEST(RcRetry, RnrBudgetStartsOverAfterProgress) {
  SocketlessRc h({.rnr_retry = 1});
  for (uint32_t i = 0; i < 4; ++i) {
    SCOPED_TRACE("SEND " + std::to_string(i));
    const uint32_t psn = 0x500 + i;
    ASSERT_EQ(h.post_send(i, IBV_WR_SEND, 0, 8), 0);
    EXPECT_EQ(only_sent(h).p.bth.psn, psn);
    rnr_nak_then_resend(h, psn);
    h.deliver(ack_from_peer(h, psn, kAck));
    EXPECT_EQ(only_completion(h.send_cq).status, IBV_WC_SUCCESS);
  }
}

// Without progress in between, the (rnr_retry + 1)-th RNR NAK ends the WQE.
TEST(RcRetry, RnrNaksInARowExhaustTheBudget) {
  SocketlessRc h({.rnr_retry = 2});
  ASSERT_EQ(h.post_send(1, IBV_WR_SEND, 0, 8), 0);
  sent_by(h);
  rnr_nak_then_resend(h, 0x500);
  rnr_nak_then_resend(h, 0x500);
  h.deliver(ack_from_peer(h, 0x500, kAethRnrNak | 1));
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
  EXPECT_EQ(only_completion(h.send_cq).status, IBV_WC_RNR_RETRY_EXC_ERR);
}

// A PSN sequence NAK is a retry like a timeout and consumes one of retry_cnt (rxe_comp.c
// goes to COMPST_ERROR_RETRY for both). A copy of that NAK, arriving while the retry it
// started has made no progress, starts no second one and consumes nothing.
TEST(RcRetry, SequenceNakConsumesARetry) {
  SocketlessRc h({.retry_cnt = 1});
  ASSERT_EQ(h.post_send(1, IBV_WR_SEND, 0, 8), 0);
  ASSERT_EQ(h.post_send(2, IBV_WR_SEND, 0, 8), 0);
  ASSERT_EQ(sent_by(h).size(), 2u);
  h.deliver(ack_from_peer(h, 0x500, kAethNak | kNakPsnSequence));
  EXPECT_EQ(h.qp.retries_left, 0);
  const auto resent = sent_by(h);
  ASSERT_EQ(resent.size(), 2u) << "go back to the PSN the NAK names";
  EXPECT_EQ(resent[0].p.bth.psn, 0x500u);
  EXPECT_EQ(resent[1].p.bth.psn, 0x501u);
  h.deliver(ack_from_peer(h, 0x500, kAethNak | kNakPsnSequence));
  EXPECT_TRUE(sent_by(h).empty()) << "the copy must not start a second retry";
  EXPECT_EQ(h.qp.state, IBV_QPS_RTS);
  // The one retry is spent: the next timeout ends the oldest WQE, the other is flushed.
  h.advance(hours(1));
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
  const auto wcs = SocketlessRc::drain(h.send_cq);
  ASSERT_EQ(wcs.size(), 2u);
  EXPECT_EQ(wcs[0].wr_id, 1u);
  EXPECT_EQ(wcs[0].status, IBV_WC_RETRY_EXC_ERR);
  EXPECT_EQ(wcs[1].status, IBV_WC_WR_FLUSH_ERR);
}

// retry_cnt 7 is seven retries here, as the spec has it and a NIC does (rxe alone resends
// for ever with 7): seven timeouts resend, the eighth ends the WQE.
TEST(RcRetry, RetryCount7IsSevenRetries) {
  SocketlessRc h;  // retry_cnt 7
  ASSERT_EQ(h.post_send(1, IBV_WR_SEND, 0, 8), 0);
  sent_by(h);
  for (int i = 1; i <= 7; ++i) {
    h.advance(hours(1));
    ASSERT_EQ(h.qp.state, IBV_QPS_RTS) << "timeout " << i;
    EXPECT_EQ(only_sent(h).p.bth.psn, 0x500u) << "timeout " << i;
    EXPECT_EQ(h.qp.retries_left, 7 - i);
  }
  h.advance(hours(1));
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
  const ibv_wc wc = only_completion(h.send_cq);
  EXPECT_EQ(wc.status, IBV_WC_RETRY_EXC_ERR);
}

// ---- the RNR wait and the retransmission timer ----------------------------------------------

// During an RNR NAK's wait the retransmission timer does not run: a READ response that
// completes an earlier READ (progress, which restarts the timer otherwise) must not arm
// it, and a timeout during the wait must not spend a retry. With retry_cnt 0 a spent
// retry would end the QP.
TEST(RcRetry, RetransmitTimerSleepsDuringRnrWait) {
  SocketlessRc h({.timeout = 14, .retry_cnt = 0});  // an ACK timeout of 67 ms
  ASSERT_EQ(h.post_send(1, IBV_WR_RDMA_READ, 2000, 100, 0x5000, kRemote), 0);  // PSN 0x500
  ASSERT_EQ(h.post_send(2, IBV_WR_SEND, 0, 8), 0);                              // PSN 0x501
  ASSERT_EQ(sent_by(h).size(), 2u);
  h.deliver(ack_from_peer(h, 0x501, kAethRnrNak | 0));  // timer code 0: 655.36 ms
  h.deliver(read_response_from_peer(h, kReadResponseOnly, 0x500, std::vector<uint8_t>(100, 7)));
  const ibv_wc read = only_completion(h.send_cq);
  EXPECT_EQ(read.wr_id, 1u);
  EXPECT_EQ(read.status, IBV_WC_SUCCESS);
  EXPECT_EQ(qp_deadline(h.qp), h.qp.rnr_resume_at) << "only the RNR timer is armed";

  h.advance(milliseconds(200));  // three ACK timeouts, a third of the RNR wait
  EXPECT_EQ(h.qp.state, IBV_QPS_RTS);
  EXPECT_TRUE(sent_by(h).empty());
  EXPECT_TRUE(SocketlessRc::drain(h.send_cq).empty());

  h.advance(milliseconds(500));  // the wait is over: the SEND goes again
  EXPECT_EQ(only_sent(h).p.bth.psn, 0x501u);
  // Its ACK timeout runs from this resend, not from a time armed during the wait.
  h.advance(milliseconds(1));
  EXPECT_EQ(h.qp.state, IBV_QPS_RTS);
  EXPECT_TRUE(sent_by(h).empty());
  h.deliver(ack_from_peer(h, 0x501, kAck));
  EXPECT_EQ(only_completion(h.send_cq).status, IBV_WC_SUCCESS);
}

// ---- which WQE an error belongs to ----------------------------------------------------------

// A NAK names a PSN. The WQEs before it were executed and complete normally, the one
// holding the PSN gets the error, the later ones are flushed. Here the oldest is a READ
// whose response the network delivers after the NAK of the WRITE behind it: the READ
// completes with its data, the WRITE with "remote access error".
TEST(RcRetry, NakFailsTheWqeHoldingItsPsn) {
  SocketlessRc h;
  ASSERT_EQ(h.post_send(1, IBV_WR_RDMA_READ, 2000, 100, 0x5000, kRemote), 0);  // PSN 0x500
  ASSERT_EQ(h.post_send(2, IBV_WR_RDMA_WRITE, 0, 16, 0x6000, kRemote), 0);     // PSN 0x501
  ASSERT_EQ(h.post_send(3, IBV_WR_SEND, 0, 8), 0);                             // PSN 0x502
  ASSERT_EQ(sent_by(h).size(), 3u);
  h.deliver(ack_from_peer(h, 0x501, kAethNak | kNakRemoteAccess));
  EXPECT_TRUE(SocketlessRc::drain(h.send_cq).empty()) << "the READ's data is still owed";
  EXPECT_EQ(h.qp.state, IBV_QPS_RTS);
  h.deliver(read_response_from_peer(h, kReadResponseOnly, 0x500, std::vector<uint8_t>(100, 9)));
  const auto wcs = SocketlessRc::drain(h.send_cq);
  ASSERT_EQ(wcs.size(), 3u);
  EXPECT_EQ(wcs[0].wr_id, 1u);
  EXPECT_EQ(wcs[0].status, IBV_WC_SUCCESS);
  EXPECT_EQ(h.memory[2000], 9);
  EXPECT_EQ(wcs[1].wr_id, 2u);
  EXPECT_EQ(wcs[1].status, IBV_WC_REM_ACCESS_ERR);
  EXPECT_EQ(wcs[2].wr_id, 3u);
  EXPECT_EQ(wcs[2].status, IBV_WC_WR_FLUSH_ERR);
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
}

// A NAK inside a multi-packet WQE fails that WQE; the one before it was acknowledged by
// the same NAK.
TEST(RcRetry, NakInsideAMultiPacketWqe) {
  SocketlessRc h;  // path MTU 1024
  ASSERT_EQ(h.post_send(1, IBV_WR_SEND, 0, 8), 0);     // PSN 0x500
  ASSERT_EQ(h.post_send(2, IBV_WR_SEND, 0, 3000), 0);  // PSNs 0x501..0x503
  ASSERT_EQ(h.post_send(3, IBV_WR_SEND, 0, 8), 0);     // PSN 0x504
  ASSERT_EQ(sent_by(h).size(), 5u);
  h.deliver(ack_from_peer(h, 0x502, kAethNak | kNakInvalidRequest));
  const auto wcs = SocketlessRc::drain(h.send_cq);
  ASSERT_EQ(wcs.size(), 3u);
  EXPECT_EQ(wcs[0].status, IBV_WC_SUCCESS);
  EXPECT_EQ(wcs[1].wr_id, 2u);
  EXPECT_EQ(wcs[1].status, IBV_WC_REM_INV_REQ_ERR);
  EXPECT_EQ(wcs[2].status, IBV_WC_WR_FLUSH_ERR);
}

// A READ whose repeated request the responder refuses (its memory was deregistered after
// the first request: "NAK remote access error" with a PSN among the READ's responses)
// completes with that error, as the requester of a lost response must learn it.
TEST(RcRetry, RefusedRepeatOfAReadFailsTheRead) {
  SocketlessRc h;  // path MTU 1024
  ASSERT_EQ(h.post_send(1, IBV_WR_RDMA_READ, 0, 3000, 0x5000, kRemote), 0);  // PSNs 0x500..2
  ASSERT_EQ(h.post_send(2, IBV_WR_SEND, 0, 8), 0);                           // PSN 0x503
  ASSERT_EQ(sent_by(h).size(), 2u);
  h.deliver(read_response_from_peer(h, kReadResponseFirst, 0x500, std::vector<uint8_t>(1024, 1)));
  h.deliver(read_response_from_peer(h, kReadResponseLast, 0x502, std::vector<uint8_t>(952, 3)));
  const SentPacket again = only_sent(h);  // the middle one went missing: asked for again
  EXPECT_EQ(again.p.bth.opcode, kReadRequest);
  EXPECT_EQ(again.p.bth.psn, 0x501u);
  h.deliver(ack_from_peer(h, 0x501, kAethNak | kNakRemoteAccess));
  const auto wcs = SocketlessRc::drain(h.send_cq);
  ASSERT_EQ(wcs.size(), 2u);
  EXPECT_EQ(wcs[0].wr_id, 1u);
  EXPECT_EQ(wcs[0].status, IBV_WC_REM_ACCESS_ERR);
  EXPECT_EQ(wcs[1].status, IBV_WC_WR_FLUSH_ERR);
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
}

// A READ whose responses went missing is asked for again a window at a time: the
// responder answers a repeated READ with one burst, and the whole tail of a long READ
// would overflow the receive buffer the window is sized to. Here the buffer holds a
// window of 4 packets of 1 KiB (three quarters of 12630 bytes, 2368 bytes a packet).
TEST(RcRetry, RepeatedReadAsksAWindowAtATime) {
  SocketlessRc h;  // path MTU 1024
  h.dev.rcvbuf_bytes = 12630;
  ASSERT_EQ(h.dev.window_packets(1024), 4u);
  ASSERT_EQ(h.post_send(1, IBV_WR_RDMA_READ, 0, 12 * 1024, 0x5000, kRemote), 0);  // 0x500..0x50B
  const SentPacket first = only_sent(h);
  EXPECT_EQ(first.p.reth.length, 12u * 1024);  // the first request asks for all of it
  const std::vector<uint8_t> kib(1024, 5);
  h.deliver(read_response_from_peer(h, kReadResponseFirst, 0x500, kib));
  h.deliver(read_response_from_peer(h, kReadResponseMiddle, 0x502, kib));  // 0x501 lost
  const SentPacket part1 = only_sent(h);
  EXPECT_EQ(part1.p.bth.psn, 0x501u);
  EXPECT_EQ(part1.p.reth.va, 0x5000u + 1024);
  EXPECT_EQ(part1.p.reth.length, 4u * 1024);  // a window, not the 11 KiB still missing
  // The rest of the first burst, out of order now, asks for nothing more.
  h.deliver(read_response_from_peer(h, kReadResponseMiddle, 0x503, kib));
  EXPECT_TRUE(sent_by(h).empty());
  for (uint32_t psn = 0x501; psn <= 0x504; ++psn)
    h.deliver(read_response_from_peer(h, psn == 0x501 ? kReadResponseFirst : kReadResponseMiddle,
                                      psn, kib));
  // That part is here: the next one is asked for, then the last (3 packets).
  const SentPacket part2 = only_sent(h);
  EXPECT_EQ(part2.p.bth.psn, 0x505u);
  EXPECT_EQ(part2.p.reth.length, 4u * 1024);
  for (uint32_t psn = 0x505; psn <= 0x508; ++psn)
    h.deliver(read_response_from_peer(h, psn == 0x505 ? kReadResponseFirst : kReadResponseMiddle,
                                      psn, kib));
  const SentPacket part3 = only_sent(h);
  EXPECT_EQ(part3.p.bth.psn, 0x509u);
  EXPECT_EQ(part3.p.reth.length, 3u * 1024);
  h.deliver(read_response_from_peer(h, kReadResponseFirst, 0x509, kib));
  h.deliver(read_response_from_peer(h, kReadResponseMiddle, 0x50A, kib));
  h.deliver(read_response_from_peer(h, kReadResponseLast, 0x50B, kib));
  EXPECT_TRUE(sent_by(h).empty());
  const ibv_wc wc = only_completion(h.send_cq);
  EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
  EXPECT_EQ(wc.byte_len, 12u * 1024);
}

// A NAK for a PSN already acknowledged (a late copy) names no outstanding WQE: it must not
// fail the oldest one, which it does not concern.
TEST(RcRetry, StaleNakIsIgnored) {
  SocketlessRc h;
  ASSERT_EQ(h.post_send(1, IBV_WR_SEND, 0, 8), 0);  // PSN 0x500
  ASSERT_EQ(h.post_send(2, IBV_WR_SEND, 0, 8), 0);  // PSN 0x501
  sent_by(h);
  h.deliver(ack_from_peer(h, 0x500, kAck));
  ASSERT_EQ(SocketlessRc::drain(h.send_cq).size(), 1u);
  h.deliver(ack_from_peer(h, 0x500, kAethNak | kNakRemoteAccess));
  EXPECT_EQ(h.qp.state, IBV_QPS_RTS);
  EXPECT_TRUE(SocketlessRc::drain(h.send_cq).empty());
  h.deliver(ack_from_peer(h, 0x501, kAck));
  const ibv_wc wc = only_completion(h.send_cq);
  EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
}

// ---- what may be sent -----------------------------------------------------------------------

// max_rd_atomic 0: no READ may be outstanding, so a READ is never sent, and the work
// behind it waits too (rxe's requester waits the same way; lesson 02's initiator_depth 0).
TEST(RcRequester, MaxRdAtomicZeroNeverSendsARead) {
  SocketlessRc h({.max_rd_atomic = 0});
  ASSERT_EQ(h.post_send(1, IBV_WR_RDMA_READ, 0, 100, 0x5000, kRemote), 0);
  ASSERT_EQ(h.post_send(2, IBV_WR_SEND, 0, 8), 0);
  EXPECT_TRUE(sent_by(h).empty());
  h.advance(hours(1));
  EXPECT_TRUE(sent_by(h).empty());
  EXPECT_EQ(h.qp.state, IBV_QPS_RTS);
  EXPECT_EQ(h.qp.sq.size(), 2u);
}

// A READ holds its max_rd_atomic slot until it completes, in order, not until its own
// data arrives: while an older READ still lacks its response, a new READ would push the
// older one out of the responder's READ resources (max_dest_rd_atomic of them), and the
// older one's resend would go unanswered (rxe frees the slot in complete_ack). With
// max_rd_atomic 2, three READs: the second's response comes, the first's is lost. The
// third waits until the first completes.
TEST(RcRequester, ReadSlotHeldUntilOlderReadCompletes) {
  SocketlessRc h({.max_rd_atomic = 2});
  ASSERT_EQ(h.post_send(1, IBV_WR_RDMA_READ, 0, 100, 0x5000, kRemote), 0);    // PSN 0x500
  ASSERT_EQ(h.post_send(2, IBV_WR_RDMA_READ, 200, 100, 0x6000, kRemote), 0);  // PSN 0x501
  ASSERT_EQ(h.post_send(3, IBV_WR_RDMA_READ, 400, 100, 0x7000, kRemote), 0);  // PSN 0x502
  const auto first_two = sent_by(h);
  ASSERT_EQ(first_two.size(), 2u) << "two READs fill max_rd_atomic";
  EXPECT_EQ(first_two[0].p.bth.psn, 0x500u);
  EXPECT_EQ(first_two[1].p.bth.psn, 0x501u);

  // The first READ's response is lost; the second's arrives.
  h.deliver(read_response_from_peer(h, kReadResponseOnly, 0x501, std::vector<uint8_t>(100, 2)));
  EXPECT_TRUE(SocketlessRc::drain(h.send_cq).empty()) << "completions go in order";
  for (const SentPacket& s : sent_by(h)) {
    EXPECT_EQ(s.p.bth.opcode, kReadRequest);
    EXPECT_NE(s.p.bth.psn, 0x502u) << "the third READ went while the first still waits";
  }
  // Whatever the requester does to get the first READ's data (asks again now, or after
  // a timeout), the third READ does not go before the first completes.
  h.advance(hours(1));
  ASSERT_EQ(h.qp.state, IBV_QPS_RTS);
  for (const SentPacket& s : sent_by(h)) {
    EXPECT_EQ(s.p.bth.opcode, kReadRequest);
    EXPECT_NE(s.p.bth.psn, 0x502u) << "the third READ went while the first still waits";
  }
  h.deliver(read_response_from_peer(h, kReadResponseOnly, 0x500, std::vector<uint8_t>(100, 1)));
  const auto done = SocketlessRc::drain(h.send_cq);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].wr_id, 1u);
  EXPECT_EQ(done[0].status, IBV_WC_SUCCESS);
  EXPECT_EQ(done[1].wr_id, 2u);
  EXPECT_EQ(done[1].status, IBV_WC_SUCCESS);
  EXPECT_EQ(h.memory[0], 1);
  EXPECT_EQ(h.memory[200], 2);

  // Now the third READ goes.
  const SentPacket third = only_sent(h);
  EXPECT_EQ(third.p.bth.opcode, kReadRequest);
  EXPECT_EQ(third.p.bth.psn, 0x502u);
  EXPECT_EQ(third.p.reth.va, 0x7000u);
  h.deliver(read_response_from_peer(h, kReadResponseOnly, 0x502, std::vector<uint8_t>(100, 3)));
  const ibv_wc wc = only_completion(h.send_cq);
  EXPECT_EQ(wc.wr_id, 3u);
  EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
  EXPECT_EQ(h.memory[400], 3);
}

// IBV_SEND_FENCE on a READ: it waits until the earlier READ has its data.
TEST(RcRequester, FencedReadWaitsForEarlierReads) {
  SocketlessRc h;
  ASSERT_EQ(h.post_send(1, IBV_WR_RDMA_READ, 0, 100, 0x5000, kRemote), 0);  // PSN 0x500
  ASSERT_EQ(h.post_send(2, IBV_WR_RDMA_READ, 200, 100, 0x6000, kRemote, IBV_SEND_FENCE), 0);
  const SentPacket first = only_sent(h);
  EXPECT_EQ(first.p.bth.opcode, kReadRequest);
  EXPECT_EQ(first.p.bth.psn, 0x500u);
  h.deliver(read_response_from_peer(h, kReadResponseOnly, 0x500, std::vector<uint8_t>(100, 1)));
  const SentPacket second = only_sent(h);
  EXPECT_EQ(second.p.bth.opcode, kReadRequest);
  EXPECT_EQ(second.p.bth.psn, 0x501u);
  EXPECT_EQ(second.p.reth.va, 0x6000u);
}

// A READ needing 2^23 PSNs (2^31 bytes at path MTU 256) would put half the PSN space in
// flight, where PSN arithmetic can no longer tell new from old: ibv_post_send refuses it.
// One response packet less still goes, with its retransmission timer armed.
TEST(RcRequester, ReadNeedingHalfThePsnSpaceIsRefused) {
  SocketlessRc h({.path_mtu = IBV_MTU_256});
  EXPECT_EQ(h.post_send(1, IBV_WR_RDMA_READ, 0, 1u << 31, 0x5000, kRemote), EINVAL);
  EXPECT_TRUE(h.qp.sq.empty());
  EXPECT_TRUE(sent_by(h).empty());
  const uint32_t largest = (1u << 31) - 256;  // 2^23 - 1 responses
  ASSERT_EQ(h.post_send(2, IBV_WR_RDMA_READ, 0, largest, 0x5000, kRemote), 0);
  const SentPacket req = only_sent(h);
  EXPECT_EQ(req.p.bth.opcode, kReadRequest);
  EXPECT_EQ(req.p.reth.length, largest);
  EXPECT_EQ(psn_diff(h.qp.tx_psn, h.qp.una_psn), (1 << 23) - 1);
  EXPECT_TRUE(h.qp.retransmit_at.has_value());
  ASSERT_EQ(h.post_send(3, IBV_WR_SEND, 0, 8), 0);
  EXPECT_TRUE(sent_by(h).empty()) << "nothing more fits behind it";
}

// Atomics are not implemented (atomic_cap IBV_ATOMIC_NONE): ibv_post_send says so.
TEST(RcRequester, AtomicPostIsNotSupported) {
  SocketlessRc h;
  for (ibv_wr_opcode op : {IBV_WR_ATOMIC_CMP_AND_SWP, IBV_WR_ATOMIC_FETCH_AND_ADD})
    EXPECT_EQ(h.post_send(1, op, 0, 8), EOPNOTSUPP);  // post_send checks *bad names it
  EXPECT_TRUE(h.qp.sq.empty());
  EXPECT_TRUE(sent_by(h).empty());
}

}  // namespace
}  // namespace uroce::rc_test
