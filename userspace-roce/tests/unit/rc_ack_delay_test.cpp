// The responder's delayed ACK (responder.cpp, qp_flush_ack): while the application
// answers each message it receives with a request of its own (ping-pong), the ACK a
// message earned waits for that request, at most UROCE_ACK_DELAY, and then leaves right
// behind it in the same batch. Otherwise ACKs go at once: the first messages, a
// duplicate, an AckReq inside a message, an ACK that would cover more than eight PSNs,
// and the messages after a delayed ACK had to go by its timer. The clock is the test's
// own, so every deadline is exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <vector>

#include "config.hpp"
#include "rc_peer.hpp"

namespace uroce::rc_test {
namespace {

using namespace wire;
using socketless::RcSetup;

std::chrono::microseconds configured_delay() {
  return std::chrono::microseconds(Config::get().ack_delay_us);
}

/// A one-packet RDMA WRITE from the peer into the MR at `offset`, with AckReq set.
std::vector<uint8_t> write_from_peer(const SocketlessRc& h, uint32_t psn, uint64_t offset = 0) {
  return from_peer(h, kWriteOnly, psn, bytes_of("ping"), {h.remote_va(offset), h.rkey(), 4});
}

/// The first packet of a two-packet WRITE (path MTU 1024), with AckReq set as a requester
/// sets it on the packet that fills its window.
std::vector<uint8_t> window_edge_write_first(const SocketlessRc& h, uint32_t psn) {
  wire::Packet p;
  p.bth.opcode = kWriteFirst;
  p.bth.dest_qp = h.qp.ibv.qp_num;
  p.bth.psn = psn;
  p.bth.ack_req = true;
  p.reth = {h.remote_va(), h.rkey(), 2048};
  return socketless::build_packet(p, std::vector<uint8_t>(1024, 0x5A),
                                  socketless::flow_between(kPeerIp, kLocalIp));
}

/// The packet must be an ACK covering every PSN before `next_epsn`.
void expect_ack_upto(const SentPacket& s, uint32_t next_epsn) {
  EXPECT_EQ(s.p.bth.opcode, kAcknowledge);
  EXPECT_EQ(s.p.aeth.syndrome & 0xE0, kAethAck) << aeth_text(s.p.aeth.syndrome);
  EXPECT_EQ(s.p.bth.psn, psn_add(next_epsn, kPsnMask));
}

/// The peer's next WRITE: the QP (in ping-pong) owes its ACK, and holds it back.
void owe_ack_for(SocketlessRc& h, uint32_t psn) {
  h.deliver(write_from_peer(h, psn));
  EXPECT_TRUE(sent_by(h).empty());
  ASSERT_TRUE(h.qp.ack_due.has_value());
}

/// One round before ping-pong: the peer's WRITE at `psn`, ACKed at once, then the
/// application's SEND within the delay.
void answered_round(SocketlessRc& h, uint32_t psn) {
  h.deliver(write_from_peer(h, psn));
  expect_ack_upto(only_sent(h), psn_add(psn, 1));
  h.advance(configured_delay() / 2);
  ASSERT_EQ(h.post_send(psn, IBV_WR_SEND, 0, 16), 0);
  EXPECT_EQ(only_sent(h).p.bth.opcode, kSendOnly);
}

/// A QP is in ping-pong after this many messages in a row, each answered in time by the
/// application's first request after it.
constexpr uint32_t kRounds = 8;

/// Fixture: one QP whose application has answered 8 WRITEs in a row (PSNs 0xF9-0x100)
/// with a SEND of its own, each in time: from then on the QP is in ping-pong. The peer's
/// next PSN is 0x101; the QP's own SENDs took 0x500-0x507.
class AckDelay : public ::testing::Test {
 protected:
  static RcSetup setup() {
    RcSetup s;
    s.rq_psn = 0x101 - kRounds;
    return s;
  }
  void SetUp() override {
    if (configured_delay().count() == 0) GTEST_SKIP() << "UROCE_ACK_DELAY=0: no delayed ACKs";
    for (uint32_t psn = 0x101 - kRounds; psn < 0x101; ++psn) {
      ASSERT_FALSE(h.qp.ping_pong) << "before PSN " << psn;  // until then, ACKs at once
      answered_round(h, psn);
    }
    ASSERT_TRUE(h.qp.ping_pong);
  }
  SocketlessRc h{setup()};
};

// In ping-pong the ACK waits for the application's next request, and goes behind it.
TEST_F(AckDelay, TheAckFollowsTheNextRequestInTheSameBatch) {
  owe_ack_for(h, 0x101);
  h.advance(configured_delay() / 2);
  EXPECT_TRUE(sent_by(h).empty());
  ASSERT_EQ(h.post_send(2, IBV_WR_SEND, 0, 16), 0);
  const auto sent = sent_by(h);
  ASSERT_EQ(sent.size(), 2u);
  // The request first: the peer, polling its CQ for the ACK, has the request in by then.
  EXPECT_EQ(sent[0].p.bth.opcode, kSendOnly);
  expect_ack_upto(sent[1], 0x102);
  EXPECT_FALSE(h.qp.ack_due.has_value());
  EXPECT_TRUE(h.qp.ping_pong);
}

// No request within the delay: the ACK goes by its timer, exactly at ack_due, and the QP
// stops delaying, so the next message is ACKed at once.
TEST_F(AckDelay, WithoutARequestTheAckGoesAtItsDeadlineAndPingPongEnds) {
  owe_ack_for(h, 0x101);
  h.advance(configured_delay() - std::chrono::microseconds(1));
  EXPECT_TRUE(sent_by(h).empty());
  h.advance(std::chrono::microseconds(1));
  expect_ack_upto(only_sent(h), 0x102);
  EXPECT_FALSE(h.qp.ping_pong);
  h.deliver(write_from_peer(h, 0x102));
  expect_ack_upto(only_sent(h), 0x103);
}

// A request posted later than the delay after a message is no answer to it: the QP does
// not go into ping-pong.
TEST(AckDelayStart, ALateRequestStartsNoPingPong) {
  if (configured_delay().count() == 0) GTEST_SKIP() << "UROCE_ACK_DELAY=0: no delayed ACKs";
  SocketlessRc h;
  h.deliver(write_from_peer(h, 0x100));
  expect_ack_upto(only_sent(h), 0x101);
  h.advance(configured_delay() + std::chrono::microseconds(1));
  ASSERT_EQ(h.post_send(1, IBV_WR_SEND, 0, 16), 0);
  EXPECT_EQ(only_sent(h).p.bth.opcode, kSendOnly);
  EXPECT_FALSE(h.qp.ping_pong);
  h.deliver(write_from_peer(h, 0x101));
  expect_ack_upto(only_sent(h), 0x102);
}

// A duplicate means the requester is resending, so it is waiting: ACKed at once, also in
// ping-pong, and covering the message whose ACK was being delayed.
TEST_F(AckDelay, ADuplicateIsAckedAtOnce) {
  owe_ack_for(h, 0x101);
  h.deliver(write_from_peer(h, 0x101));
  expect_ack_upto(only_sent(h), 0x102);
  EXPECT_FALSE(h.qp.ack_due.has_value());
}

// A delayed ACK covers at most eight PSNs: a requester that has sent more may be at the
// end of its window, waiting for it.
TEST_F(AckDelay, NinePsnsOwedAreAckedAtOnce) {
  for (uint32_t psn = 0x101; psn < 0x109; ++psn) {
    h.deliver(write_from_peer(h, psn));
    EXPECT_TRUE(sent_by(h).empty()) << "PSN " << psn;
  }
  h.deliver(write_from_peer(h, 0x109));
  expect_ack_upto(only_sent(h), 0x10A);
  EXPECT_FALSE(h.qp.ack_due.has_value());
}

// A QP that goes to ERROR (as when its own requester gives up) first sends the ACK it owes:
// the messages it acknowledges did arrive, and rxe would have ACKed them at once. Then
// nothing more: an ERROR QP sends no ACK.
TEST_F(AckDelay, ErrorSendsTheOwedAckFirst) {
  owe_ack_for(h, 0x101);
  {
    std::lock_guard<std::mutex> l(h.dev.mu);
    qp_enter_error(h.qp);
  }
  expect_ack_upto(only_sent(h), 0x102);
  EXPECT_FALSE(h.qp.ack_due.has_value());
  EXPECT_FALSE(h.qp.ping_pong);
  h.advance(configured_delay());
  EXPECT_TRUE(sent_by(h).empty());
}

// So does a QP the application modifies (here: back to RESET, to reuse it).
TEST_F(AckDelay, ModifySendsTheOwedAckFirst) {
  owe_ack_for(h, 0x101);
  {
    std::lock_guard<std::mutex> l(h.dev.mu);
    ASSERT_EQ(h.to_reset(), 0);
  }
  expect_ack_upto(only_sent(h), 0x102);
  EXPECT_FALSE(h.qp.ack_due.has_value());
}

// An AckReq inside a message (the requester's window is full, or the 16th packet of a long
// message) is ACKed at once: the requester waits for it, and the application cannot answer
// a message it has not received whole.
TEST_F(AckDelay, AckReqInsideAMessageIsAckedAtOnce) {
  h.deliver(window_edge_write_first(h, 0x101));
  expect_ack_upto(only_sent(h), 0x102);
  EXPECT_FALSE(h.qp.ack_due.has_value());
}

// An RNR NAK (a SEND with no RECV posted) names the expected PSN, so it acknowledges every
// PSN before it: the owed ACK goes with it, not after.
TEST_F(AckDelay, ANakReplacesTheOwedAck) {
  owe_ack_for(h, 0x101);
  h.deliver(from_peer(h, kSendOnly, 0x102, bytes_of("no recv")));
  const SentPacket nak = only_sent(h);
  EXPECT_EQ(nak.p.bth.opcode, kAcknowledge);
  EXPECT_EQ(nak.p.aeth.syndrome & 0xE0, kAethRnrNak) << aeth_text(nak.p.aeth.syndrome);
  EXPECT_EQ(nak.p.bth.psn, 0x102u);
  EXPECT_FALSE(h.qp.ack_due.has_value());
  h.advance(configured_delay());
  EXPECT_TRUE(sent_by(h).empty());
}

// After a delayed ACK went by its timer, ping-pong starts over: 8 messages in a row
// answered in time again, each ACKed at once, then the backoff's 2 ACKs at once, before
// the next ACK waits.
TEST_F(AckDelay, AfterAMissPingPongStartsOver) {
  owe_ack_for(h, 0x101);
  h.advance(configured_delay());
  expect_ack_upto(only_sent(h), 0x102);  // the miss
  uint32_t psn = 0x102;
  for (; psn < 0x102 + kRounds; ++psn) {
    EXPECT_FALSE(h.qp.ping_pong);
    answered_round(h, psn);
  }
  EXPECT_TRUE(h.qp.ping_pong);
  for (; psn < 0x102 + kRounds + 2; ++psn) answered_round(h, psn);  // the backoff: 2^1
  owe_ack_for(h, psn);  // delayed again
}

// A handshake of a few messages (perftest -R's exchange, then a second connection) never
// reaches ping-pong: its last message's ACK does not wait for an answer that never comes.
TEST(AckDelayStart, AShortExchangeNeverWaits) {
  if (configured_delay().count() == 0) GTEST_SKIP() << "UROCE_ACK_DELAY=0: no delayed ACKs";
  SocketlessRc h;
  for (uint32_t psn = 0x100; psn < 0x100 + kRounds - 1; ++psn) answered_round(h, psn);
  EXPECT_FALSE(h.qp.ping_pong);
  h.deliver(write_from_peer(h, 0x100 + kRounds - 1));
  expect_ack_upto(only_sent(h), 0x100 + kRounds);  // at once
}

// After a miss, ping-pong needs 8 answers in a row again, and then the next 2^misses ACKs
// that could wait go at once all the same (2, then 4, ...); 64 ACKs in a row that rode
// behind a request forget the misses.
TEST_F(AckDelay, MissesDoubleTheBackoffAndHitsForgetIt) {
  uint32_t psn = 0x101;
  uint32_t our_psn = 0x507;  // the fixture's SENDs took 0x500-0x507
  // The peer ACKs each of our SENDs, so that the send queue never fills.
  auto peer_acks = [&] { h.deliver(ack_from_peer(h, our_psn++, kAethAck | kAckNoCreditLimit)); };
  // answer(): the peer's message, ACKed at once (the backoff), then the application's answer.
  auto answer = [&] {
    h.deliver(write_from_peer(h, psn));
    expect_ack_upto(only_sent(h), psn + 1);
    ASSERT_EQ(h.post_send(psn, IBV_WR_SEND, 0, 16), 0);
    EXPECT_EQ(only_sent(h).p.bth.opcode, kSendOnly);
    peer_acks();
    psn++;
  };
  for (int misses = 1; misses <= 2; ++misses) {
    owe_ack_for(h, psn++);
    h.advance(configured_delay());
    expect_ack_upto(only_sent(h), psn);
    EXPECT_EQ(h.qp.ack_misses, misses);
    ASSERT_EQ(h.qp.ack_skip, 1 << misses);
    // 8 answers in a row bring ping-pong back; the 2^misses ACKs after them still go at once.
    for (uint32_t i = 0; i < kRounds; ++i) answer();
    EXPECT_TRUE(h.qp.ping_pong);
    EXPECT_EQ(h.qp.ack_skip, 1 << misses);
    for (int i = 0; i < (1 << misses); ++i) answer();
    EXPECT_EQ(h.qp.ack_skip, 0);
  }
  for (int hit = 1; hit <= 64; ++hit) {
    owe_ack_for(h, psn++);
    ASSERT_EQ(h.post_send(psn, IBV_WR_SEND, 0, 16), 0);
    ASSERT_EQ(sent_by(h).size(), 2u);  // the SEND, then the ACK behind it
    peer_acks();
    EXPECT_EQ(h.qp.ack_misses, hit < 64 ? 2 : 0) << "after " << hit << " hits";
  }
}

// An application may answer with several requests (a WRITE, then a SEND): the first
// carries the ACK, the others neither answer nor break ping-pong.
TEST_F(AckDelay, FurtherRequestsForOneAnswerKeepPingPong) {
  owe_ack_for(h, 0x101);
  ASSERT_EQ(h.post_send(1, IBV_WR_RDMA_WRITE, 0, 16, 0x9000, 0x77), 0);
  const auto sent = sent_by(h);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].p.bth.opcode, kWriteOnly);
  expect_ack_upto(sent[1], 0x102);
  ASSERT_EQ(h.post_send(2, IBV_WR_SEND, 0, 16), 0);
  EXPECT_EQ(only_sent(h).p.bth.opcode, kSendOnly);
  EXPECT_TRUE(h.qp.ping_pong);
  owe_ack_for(h, 0x102);  // still delayed
}

// An application that answers only every second message (it waits for two before it
// answers) never gets into ping-pong: the message it leaves unanswered for the whole delay
// starts the count again, so every ACK goes at once.
TEST(AckDelayStart, AnsweringEverySecondMessageStartsNoPingPong) {
  if (configured_delay().count() == 0) GTEST_SKIP() << "UROCE_ACK_DELAY=0: no delayed ACKs";
  SocketlessRc h;
  uint32_t psn = 0x100;
  for (uint32_t round = 0; round < 4 * kRounds; ++round) {
    h.deliver(write_from_peer(h, psn));
    expect_ack_upto(only_sent(h), psn + 1);
    psn++;
    h.advance(configured_delay());  // not answered
    h.deliver(write_from_peer(h, psn));
    expect_ack_upto(only_sent(h), psn + 1);
    psn++;
    ASSERT_EQ(h.post_send(round, IBV_WR_SEND, 0, 16), 0);  // the answer to both
    EXPECT_EQ(only_sent(h).p.bth.opcode, kSendOnly);
    ASSERT_FALSE(h.qp.ping_pong) << "round " << round;
    if (round % 16 == 15) h.deliver(ack_from_peer(h, 0x500 + round, kAethAck | kAckNoCreditLimit));
  }
}

// A request posted once the delayed ACK is due is late, even if the engine has not run
// the timer yet: a miss, not an answer.
TEST_F(AckDelay, ARequestAtTheDeadlineIsAMiss) {
  owe_ack_for(h, 0x101);
  h.clock += configured_delay();  // the time has come; the timers have not run
  ASSERT_EQ(h.post_send(1, IBV_WR_SEND, 0, 16), 0);
  const auto sent = sent_by(h);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].p.bth.opcode, kSendOnly);
  expect_ack_upto(sent[1], 0x102);
  EXPECT_EQ(h.qp.ack_misses, 1);
  EXPECT_FALSE(h.qp.ping_pong);
}

// So is a message that arrives once the delayed ACK is due, before the engine has run
// the timer: one ACK covers both, and ping-pong ends.
TEST_F(AckDelay, AMessageAtTheDeadlineIsAMiss) {
  owe_ack_for(h, 0x101);
  h.clock += configured_delay();  // the time has come; the timers have not run
  h.deliver(write_from_peer(h, 0x102));
  expect_ack_upto(only_sent(h), 0x103);
  EXPECT_EQ(h.qp.ack_misses, 1);
  EXPECT_FALSE(h.qp.ping_pong);
  EXPECT_FALSE(h.qp.ack_due.has_value());
}

// A READ's response packets do not count towards the 8 PSNs a delayed ACK may cover: in
// ping-pong, a 9-packet READ and then a WRITE, whose ACK still waits.
TEST_F(AckDelay, AReadDoesNotCountTowardsTheEightPsns) {
  h.deliver(from_peer(h, kReadRequest, 0x101, {}, {h.remote_va(0), h.rkey(), 9 * 1024}));
  for (const SentPacket& s : sent_by(h)) EXPECT_NE(s.p.bth.opcode, kAcknowledge);
  h.deliver(write_from_peer(h, 0x10A));
  EXPECT_TRUE(sent_by(h).empty());
  EXPECT_TRUE(h.qp.ack_due.has_value());
}

// A PSN sequence error NAK names the expected PSN, so it too acknowledges every PSN
// before it: the owed ACK is replaced, not sent after it.
TEST_F(AckDelay, ASequenceNakReplacesTheOwedAck) {
  owe_ack_for(h, 0x101);
  h.deliver(write_from_peer(h, 0x104));  // 0x102 and 0x103 lost
  const SentPacket nak = only_sent(h);
  EXPECT_EQ(nak.p.bth.opcode, kAcknowledge);
  EXPECT_EQ(nak.p.aeth.syndrome, kAethNak | kNakPsnSequence) << aeth_text(nak.p.aeth.syndrome);
  EXPECT_EQ(nak.p.bth.psn, 0x102u);
  EXPECT_FALSE(h.qp.ack_due.has_value());
  h.advance(configured_delay());
  EXPECT_TRUE(sent_by(h).empty());
}

// Ping-pong across the PSN wrap (0xFFFFFF to 0): the rounds count and the ACK waits and
// covers the right PSN.
TEST(AckDelayWrap, PingPongAcrossThePsnWrap) {
  if (configured_delay().count() == 0) GTEST_SKIP() << "UROCE_ACK_DELAY=0: no delayed ACKs";
  RcSetup s;
  s.rq_psn = kPsnMask - 3;
  SocketlessRc h(s);
  uint32_t psn = s.rq_psn;
  for (uint32_t i = 0; i < kRounds; ++i, psn = psn_add(psn, 1)) answered_round(h, psn);
  ASSERT_EQ(psn, kRounds - 4);
  ASSERT_TRUE(h.qp.ping_pong);
  owe_ack_for(h, psn);
  ASSERT_EQ(h.post_send(9, IBV_WR_SEND, 0, 16), 0);
  const auto sent = sent_by(h);
  ASSERT_EQ(sent.size(), 2u);
  expect_ack_upto(sent[1], psn_add(psn, 1));
}

// A READ's responses acknowledge it: with nothing owed before a READ, nothing is owed
// after it (the expected PSN the last ACK covered moves with it).
TEST(AckDelayRead, AReadLeavesNothingOwed) {
  SocketlessRc h;
  h.deliver(from_peer(h, kReadRequest, 0x100, {}, {h.remote_va(0), h.rkey(), 3000}));
  EXPECT_EQ(h.qp.epsn, 0x103u);  // three response packets at path MTU 1024
  EXPECT_EQ(h.qp.last_ack_epsn, h.qp.epsn);
  for (const SentPacket& s : sent_by(h)) EXPECT_NE(s.p.bth.opcode, kAcknowledge);
}

// A READ after a message whose ACK is being held back: the READ's responses acknowledge
// that message too (the requester completes it on them), so the owed ACK is not sent when
// its time comes, and is no miss: the QP stays in ping-pong.
TEST_F(AckDelay, AReadAnswersTheOwedAck) {
  owe_ack_for(h, 0x101);
  h.deliver(from_peer(h, kReadRequest, 0x102, {}, {h.remote_va(0), h.rkey(), 3000}));
  const auto sent = sent_by(h);
  ASSERT_EQ(sent.size(), 3u);  // three response packets at path MTU 1024, no ACK
  EXPECT_EQ(sent[0].p.bth.opcode, kReadResponseFirst);
  EXPECT_EQ(sent[0].p.bth.psn, 0x102u);
  EXPECT_EQ(sent[2].p.bth.opcode, kReadResponseLast);
  EXPECT_FALSE(h.qp.ack_due.has_value());
  EXPECT_EQ(h.qp.last_ack_epsn, 0x105u);
  h.advance(configured_delay() * 2);
  EXPECT_TRUE(sent_by(h).empty());
  EXPECT_EQ(h.qp.ack_misses, 0);
  EXPECT_TRUE(h.qp.ping_pong);
}

// A message and a READ in one receive batch: the READ's responses acknowledge the
// message, and the batch owes no ACK.
TEST_F(AckDelay, AMessageAndAReadInOneBatchOweNoAck) {
  const auto write = write_from_peer(h, 0x101);
  const auto read = from_peer(h, kReadRequest, 0x102, {}, {h.remote_va(0), h.rkey(), 1000});
  {
    std::lock_guard<std::mutex> l(h.dev.mu);
    h.dev.handle_packet(write.data(), write.size(), kPeerIp);
    h.dev.handle_packet(read.data(), read.size(), kPeerIp);
    qp_flush_ack(h.qp);
  }
  EXPECT_EQ(only_sent(h).p.bth.opcode, kReadResponseOnly);
  EXPECT_FALSE(h.qp.ack_due.has_value());
  h.advance(configured_delay() * 2);
  EXPECT_TRUE(sent_by(h).empty());
  EXPECT_TRUE(h.qp.ping_pong);
}

// A READ taken in after the owed ACK's deadline, before the engine ran the timer: the ACK
// goes first and is a miss, as for any packet that late; then the responses.
TEST_F(AckDelay, AReadAfterTheDeadlineFindsTheAckDue) {
  owe_ack_for(h, 0x101);
  h.clock += configured_delay();  // the time has come; the timers have not run
  h.deliver(from_peer(h, kReadRequest, 0x102, {}, {h.remote_va(0), h.rkey(), 1000}));
  const auto sent = sent_by(h);
  ASSERT_EQ(sent.size(), 2u);
  expect_ack_upto(sent[0], 0x102);
  EXPECT_EQ(sent[1].p.bth.opcode, kReadResponseOnly);
  EXPECT_EQ(h.qp.ack_misses, 1);
  EXPECT_FALSE(h.qp.ping_pong);
}

// The delay stays an eighth of the QP's local ACK timeout at most: with timeout 4
// (4.096 us x 2^4 = 65.5 us) an ACK waits 8 us, not UROCE_ACK_DELAY.
TEST(AckDelayCap, AnEighthOfTheAckTimeoutAtMost) {
  if (configured_delay() <= std::chrono::microseconds(8)) GTEST_SKIP() << "UROCE_ACK_DELAY is 8 us or less";
  RcSetup s;
  s.timeout = 4;
  s.rq_psn = 0x101 - kRounds;
  SocketlessRc h(s);
  // Rounds answered within 4 us: within the capped delay, too.
  for (uint32_t psn = 0x101 - kRounds; psn < 0x101; ++psn) {
    h.deliver(write_from_peer(h, psn));
    expect_ack_upto(only_sent(h), psn + 1);
    ASSERT_EQ(h.post_send(psn, IBV_WR_SEND, 0, 16), 0);
    EXPECT_EQ(only_sent(h).p.bth.opcode, kSendOnly);
  }
  ASSERT_TRUE(h.qp.ping_pong);
  owe_ack_for(h, 0x101);
  h.advance(std::chrono::microseconds(7));
  EXPECT_TRUE(sent_by(h).empty());
  h.advance(std::chrono::microseconds(1));
  expect_ack_upto(only_sent(h), 0x102);
}

}  // namespace
}  // namespace uroce::rc_test
