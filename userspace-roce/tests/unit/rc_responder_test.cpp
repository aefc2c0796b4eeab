// The responder of one RC QP checking what the peer asks of it, stage by stage: the
// partition (P_Key), the operation against the QP's access flags (whatever the length),
// atomics, the R_Key of every WRITE packet, and the READ-resource ring that decides which
// repeated READ is answered again. Also modify_qp's path MTU check.
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "rc_peer.hpp"

namespace uroce::rc_test {
namespace {

using namespace wire;
using socketless::RcSetup;

/// A second MR, registered and deregistered by a test as ibv_reg_mr / ibv_dereg_mr would
/// (Device::mrs is what every R_Key lookup goes through).
void register_mr(SocketlessRc& h, Mr& mr, std::vector<uint8_t>& bytes, uint32_t key,
                 uint64_t iova) {
  mr.pd = &h.pd;
  mr.access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  mr.ibv.addr = bytes.data();
  mr.ibv.length = bytes.size();
  mr.iova = iova;
  mr.ibv.lkey = mr.ibv.rkey = key;
  std::lock_guard<std::mutex> l(h.dev.mu);
  h.dev.mrs[key] = &mr;
}
void deregister_mr(SocketlessRc& h, uint32_t key) {
  std::lock_guard<std::mutex> l(h.dev.mu);
  h.dev.mrs.erase(key);
}

/// The single packet the responder sent must be a NAK of `code` for `psn`.
void expect_nak(SocketlessRc& h, uint8_t code, uint32_t psn) {
  const SentPacket nak = only_sent(h);
  EXPECT_EQ(nak.p.bth.opcode, kAcknowledge);
  EXPECT_EQ(nak.p.aeth.syndrome, kAethNak | code) << aeth_text(nak.p.aeth.syndrome);
  EXPECT_EQ(nak.p.bth.psn, psn);
}

// ---- P_Key ----------------------------------------------------------------------------------

// A packet of another partition never reaches the QP (rxe_recv.c, check_keys): no
// completion, no answer, counted. A limited member of the QP's own partition (0x7FFF)
// does reach it: the QP's P_Key 0xFFFF is a full member.
TEST(RcResponder, ForeignPkeyIsDropped) {
  SocketlessRc h;
  ASSERT_EQ(h.post_recv(1, 64), 0);
  h.deliver(from_peer(h, kSendOnly, 0x100, bytes_of("hi"), {}, 0, 0x1234));
  EXPECT_TRUE(SocketlessRc::drain(h.recv_cq).empty());
  EXPECT_TRUE(sent_by(h).empty());
  EXPECT_EQ(h.qp.epsn, 0x100u);
  EXPECT_EQ(h.qp.bad_pkey_drops, 1u);
  h.deliver(from_peer(h, kSendOnly, 0x100, bytes_of("hi"), {}, 0, 0x7FFF));
  const ibv_wc wc = only_completion(h.recv_cq);
  EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
  EXPECT_EQ(h.qp.bad_pkey_drops, 1u);
}

// ---- the operation against the QP's access flags ----------------------------------------------

// A zero-length WRITE_WITH_IMM names no memory, but the QP must still allow remote
// writes (rxe_resp.c, check_op_valid): "NAK invalid request", the QP to ERROR, and the
// posted RECV is flushed, not completed.
TEST(RcResponder, ZeroLengthWriteWithImmNeedsRemoteWrite) {
  SocketlessRc h({.qp_access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ});
  ASSERT_EQ(h.post_recv(5, 64), 0);
  h.deliver(from_peer(h, kWriteOnlyImm, 0x100, {}, {0, 0, 0}, 0x1234));
  expect_nak(h, kNakInvalidRequest, 0x100);
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
  const ibv_wc wc = only_completion(h.recv_cq);
  EXPECT_EQ(wc.wr_id, 5u);
  EXPECT_EQ(wc.status, IBV_WC_WR_FLUSH_ERR);
}

// The same for a zero-length READ on a QP without REMOTE_READ: no response, a NAK.
TEST(RcResponder, ZeroLengthReadNeedsRemoteRead) {
  SocketlessRc h({.qp_access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE});
  h.deliver(from_peer(h, kReadRequest, 0x100, {}, {0, 0, 0}));
  expect_nak(h, kNakInvalidRequest, 0x100);
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
}

// A WRITE with data through a QP without REMOTE_WRITE is refused at the same stage, before
// its R_Key is looked at: "invalid request", not "remote access error".
TEST(RcResponder, WriteThroughAQpWithoutRemoteWriteIsAnInvalidRequest) {
  SocketlessRc h({.qp_access = IBV_ACCESS_LOCAL_WRITE});
  h.deliver(from_peer(h, kWriteOnly, 0x100, bytes_of("abc"), {h.remote_va(0), h.rkey(), 3}));
  expect_nak(h, kNakInvalidRequest, 0x100);
  EXPECT_EQ(h.memory[0], 0);
}

// ---- atomics --------------------------------------------------------------------------------

// An atomic request is parsed and answered "NAK invalid request" (class C: the QP goes to
// ERROR), as rxe answers one its QP does not allow; this device allows none, even with
// REMOTE_ATOMIC set. Dropping it would leave the peer resending until its retries run out.
TEST(RcResponder, AtomicRequestIsAnInvalidRequest) {
  for (uint8_t op : {kCompareSwap, kFetchAdd}) {
    SCOPED_TRACE(opcode_info(op).name);
    RcSetup s;
    s.qp_access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
                  IBV_ACCESS_REMOTE_ATOMIC;
    SocketlessRc h(s);
    h.deliver(atomic_from_peer(h, op, 0x100, {h.remote_va(8), h.rkey(), 5, 0}));
    expect_nak(h, kNakInvalidRequest, 0x100);
    EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
    EXPECT_EQ(h.memory[8], 0);
  }
}

// ---- WRITE: the R_Key of every packet ---------------------------------------------------------

// An MR deregistered between the FIRST and the LAST packet of a WRITE, and another MR
// registered in the very same storage (as the heap hands freed memory out again), under
// another key, over other bytes: the LAST packet must not land in the new MR. The WRITE's
// R_Key no longer names any MR: "NAK remote access error", ERROR.
TEST(RcResponder, MrDeregisteredInTheMiddleOfAWrite) {
  SocketlessRc h({.path_mtu = IBV_MTU_256});
  constexpr uint64_t kIova = 0x10000;
  std::vector<uint8_t> old_bytes(1024), new_bytes(1024);
  std::optional<Mr> storage;  // where an MR object lives; reused by the next registration
  register_mr(h, storage.emplace(), old_bytes, 0x2201, kIova);
  h.deliver(from_peer(h, kWriteFirst, 0x100, std::vector<uint8_t>(256, 0xAA), {kIova, 0x2201, 512}));
  ASSERT_EQ(old_bytes[255], 0xAA);

  deregister_mr(h, 0x2201);
  storage.reset();
  register_mr(h, storage.emplace(), new_bytes, 0x3302, kIova);

  h.deliver(from_peer(h, kWriteLast, 0x101, std::vector<uint8_t>(256, 0xBB)));
  EXPECT_EQ(new_bytes, std::vector<uint8_t>(1024, 0)) << "written through a stale MR";
  EXPECT_EQ(old_bytes[256], 0);
  expect_nak(h, kNakRemoteAccess, 0x101);
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
  deregister_mr(h, 0x3302);
}

// ---- READ: the responder-resource ring --------------------------------------------------------

// With max_dest_rd_atomic 1 the ring holds one READ. A repeat of the READ it still holds
// is answered again; a repeat of an older one, whose resource was taken by the next READ,
// is dropped without a word (rxe_resp.c, duplicate_request: class D).
TEST(RcResponder, RepeatedReadIsAnsweredOnlyFromTheRing) {
  SocketlessRc h({.max_dest_rd_atomic = 1});
  const auto read_a = from_peer(h, kReadRequest, 0x100, {}, {h.remote_va(0), h.rkey(), 100});
  const auto read_b = from_peer(h, kReadRequest, 0x101, {}, {h.remote_va(200), h.rkey(), 50});
  h.deliver(read_a);
  h.deliver(read_b);
  ASSERT_EQ(sent_by(h).size(), 2u);
  h.deliver(read_a);
  EXPECT_TRUE(sent_by(h).empty()) << "READ A is no longer saved";
  h.deliver(read_b);
  const SentPacket again = only_sent(h);
  EXPECT_EQ(again.p.bth.opcode, kReadResponseOnly);
  EXPECT_EQ(again.p.bth.psn, 0x101u);
  EXPECT_EQ(again.p.payload_len, 50u);
  EXPECT_EQ(h.qp.state, IBV_QPS_RTS);
  EXPECT_EQ(h.qp.epsn, 0x102u);
}

// A READ request far behind the expected PSN that the responder never executed is not
// answered from whatever the memory holds now.
TEST(RcResponder, ReadNeverExecutedIsNotAnswered) {
  SocketlessRc h;
  h.deliver(from_peer(h, kReadRequest, psn_add(0x100, kPsnMask - 0x400000), {},
                      {h.remote_va(0), h.rkey(), 100}));
  EXPECT_TRUE(sent_by(h).empty());
  EXPECT_EQ(h.qp.state, IBV_QPS_RTS);
}

// A repeat must ask for a part of the saved READ: the same R_Key, a range inside it, and
// response PSNs inside its own. The tail from a later PSN is answered; more than the
// original, or another key, is dropped.
TEST(RcResponder, RepeatedReadMustBeAPartOfTheSavedOne) {
  SocketlessRc h;  // path MTU 1024
  for (size_t i = 0; i < 3000; ++i) h.memory[i] = static_cast<uint8_t>(i * 3);
  h.deliver(from_peer(h, kReadRequest, 0x100, {}, {h.remote_va(0), h.rkey(), 3000}));
  ASSERT_EQ(sent_by(h).size(), 3u);
  h.deliver(from_peer(h, kReadRequest, 0x100, {}, {h.remote_va(0), h.rkey(), 3001}));
  EXPECT_TRUE(sent_by(h).empty()) << "more than the original";
  h.deliver(from_peer(h, kReadRequest, 0x100, {}, {h.remote_va(0), h.rkey() + 1, 3000}));
  EXPECT_TRUE(sent_by(h).empty()) << "another R_Key";
  h.deliver(from_peer(h, kReadRequest, 0x102, {}, {h.remote_va(2048), h.rkey(), 952}));
  const SentPacket tail = only_sent(h);
  EXPECT_EQ(tail.p.bth.psn, 0x102u);
  ASSERT_EQ(tail.p.payload_len, 952u);
  EXPECT_EQ(tail.p.payload[0], h.memory[2048]);
  EXPECT_EQ(h.qp.state, IBV_QPS_RTS);
}

// A saved READ whose MR has been deregistered since: the repeat is answered with "NAK
// remote access error" (rxe's read_reply re-checks the key), not dropped, so the peer
// learns why instead of running out of retries.
TEST(RcResponder, RepeatedReadOfADeregisteredMrIsARemoteAccessError) {
  SocketlessRc h;
  std::vector<uint8_t> bytes(256, 0x5A);
  Mr mr;
  register_mr(h, mr, bytes, 0x4401, 0x20000);
  const auto read = from_peer(h, kReadRequest, 0x100, {}, {0x20000, 0x4401, 256});
  h.deliver(read);
  ASSERT_EQ(only_sent(h).p.payload_len, 256u);
  deregister_mr(h, 0x4401);
  h.deliver(read);
  expect_nak(h, kNakRemoteAccess, 0x100);
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
}

// ---- modify_qp --------------------------------------------------------------------------------

// A path MTU above the port's active MTU is refused in INIT -> RTR with EINVAL, as rxe's
// rxe_qp_chk_attr refuses one above its limit; the QP stays in INIT.
TEST(RcModify, PathMtuAboveActiveMtuIsRefused) {
  SocketlessRc h;
  std::lock_guard<std::mutex> l(h.dev.mu);
  RcSetup s;
  ASSERT_EQ(h.to_reset(), 0);
  ASSERT_EQ(h.to_init(s), 0);
  h.dev.active_mtu = IBV_MTU_1024;
  s.path_mtu = IBV_MTU_2048;
  EXPECT_EQ(h.to_rtr(s), EINVAL);
  EXPECT_EQ(h.qp.state, IBV_QPS_INIT);
  s.path_mtu = IBV_MTU_1024;
  EXPECT_EQ(h.to_rtr(s), 0);
  EXPECT_EQ(h.qp.mtu, 1024u);
}

// RESET leads only to INIT: RESET -> ERR is refused with EINVAL, as the kernel's
// ib_modify_qp_is_ok refuses it; from INIT on, ERR is always reachable.
TEST(RcModify, ResetToErrorIsNotATransition) {
  SocketlessRc h;
  std::lock_guard<std::mutex> l(h.dev.mu);
  RcSetup s;
  ASSERT_EQ(h.to_reset(), 0);
  ibv_qp_attr err{};
  err.qp_state = IBV_QPS_ERR;
  EXPECT_EQ(qp_modify(h.qp, err, IBV_QP_STATE), EINVAL);
  EXPECT_EQ(h.qp.state, IBV_QPS_RESET);
  ASSERT_EQ(h.to_init(s), 0);
  EXPECT_EQ(qp_modify(h.qp, err, IBV_QP_STATE), 0);
  EXPECT_EQ(h.qp.state, IBV_QPS_ERR);
}

// An alternate path is refused on RoCE with EINVAL, as the kernel's _ib_modify_qp refuses
// it on any port that is not InfiniBand; the same transition without it succeeds.
TEST(RcModify, AlternatePathIsRefusedOnRoce) {
  SocketlessRc h;
  std::lock_guard<std::mutex> l(h.dev.mu);
  RcSetup s;
  ASSERT_EQ(h.to_reset(), 0);
  ASSERT_EQ(h.to_init(s), 0);
  ASSERT_EQ(h.to_rtr(s), 0);
  EXPECT_EQ(h.to_rts(s, IBV_QP_ALT_PATH), EINVAL);
  EXPECT_EQ(h.qp.state, IBV_QPS_RTR);
  EXPECT_EQ(h.to_rts(s), 0);
  EXPECT_EQ(h.qp.state, IBV_QPS_RTS);
}

}  // namespace
}  // namespace uroce::rc_test
