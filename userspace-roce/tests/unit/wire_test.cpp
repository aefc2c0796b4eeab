// The pure packet code of the userspace RoCE runtime (src/wire.hpp): 24-bit PSN
// arithmetic, the RC opcode table, header encoding and parsing, and the timer tables.
// The ICRC against real captured packets is in icrc_test.cpp.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "socketless_device.hpp"
#include "wire.hpp"

namespace {

using namespace uroce::wire;
using uroce::socketless::build_packet;

// ---- PSNs ------------------------------------------------------------------------------

// A PSN is 24 bits: after 0xFFFFFF comes 0. A requester that forgot this would send PSN
// 0x1000000, which the responder reads as 0 only by luck of the field width.
TEST(Psn, AddWrapsFrom0xFFFFFFTo0) {
  EXPECT_EQ(psn_add(0xFFFFFF, 1), 0u);
  EXPECT_EQ(psn_add(0xFFFFFE, 5), 3u);
  EXPECT_EQ(psn_add(0, 0), 0u);
  EXPECT_EQ(psn_add(0x123456, 0x1000000), 0x123456u);  // a full circle is no move
  // Adding kPsnMask is subtracting 1: how the runtime names "the PSN before this one".
  EXPECT_EQ(psn_add(0, kPsnMask), 0xFFFFFFu);
  EXPECT_EQ(psn_add(0x000100, kPsnMask), 0x0000FFu);
  // Results never leave 24 bits, whatever the inputs carry above them.
  EXPECT_EQ(psn_add(0xFF000001, 1), 2u);
  static_assert(psn_add(0xFFFFFF, 1) == 0);
}

// psn_diff is how a responder tells a duplicate (behind, negative) from a packet after a
// gap (ahead, positive) even when the sequence just wrapped.
TEST(Psn, DiffSignAcrossTheWrap) {
  EXPECT_EQ(psn_diff(0, 0xFFFFFF), 1);
  EXPECT_EQ(psn_diff(0xFFFFFF, 0), -1);
  EXPECT_EQ(psn_diff(5, 0xFFFFFD), 8);
  EXPECT_EQ(psn_diff(0xFFFFFD, 5), -8);
  EXPECT_EQ(psn_diff(0x123456, 0x123456), 0);
  static_assert(psn_diff(0, 0xFFFFFF) == 1);
}

// Half the circle is "ahead", half "behind": the range is [-2^23, 2^23).
TEST(Psn, DiffAtTheHalfCircleBoundary) {
  constexpr int32_t kHalf = 0x800000;
  EXPECT_EQ(psn_diff(0x7FFFFF, 0), kHalf - 1);   // the farthest "ahead"
  EXPECT_EQ(psn_diff(0x800000, 0), -kHalf);      // exactly half way counts as behind
  EXPECT_EQ(psn_diff(0, 0x800000), -kHalf);
  EXPECT_EQ(psn_diff(0, 0x7FFFFF), -(kHalf - 1));
  EXPECT_EQ(psn_diff(0, 0x800001), kHalf - 1);
  EXPECT_EQ(psn_diff(0xFFFFFF, 0x7FFFFF), -kHalf);
  EXPECT_EQ(psn_diff(0x7FFFFE, 0xFFFFFF), kHalf - 1);
}

TEST(Psn, DiffInvertsAddEverywhereOnTheCircle) {
  std::mt19937 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const uint32_t a = rng() & kPsnMask;
    const int32_t n = static_cast<int32_t>(rng() % 0x1000000) - 0x800000;  // [-2^23, 2^23)
    const uint32_t b = psn_add(a, static_cast<uint32_t>(n));
    ASSERT_EQ(psn_diff(b, a), n) << "a=" << a << " n=" << n << " b=" << b;
    ASSERT_EQ(psn_diff(a, b), n == -0x800000 ? n : -n) << "a=" << a << " n=" << n;
  }
}

// ---- the opcode table --------------------------------------------------------------------

struct ExpectedOpcode {
  uint8_t opcode;
  const char* name;
  bool reth, imm, aeth, first, last, request, payload;
};

// IBA vol 1 table 38 (RC), independently of wire.cpp's table: which extension headers
// each opcode carries, where it sits in a message and who sends it.
constexpr ExpectedOpcode kRcOpcodes[] = {
    // op   name                                reth   imm    aeth   first  last   req    payload
    {0x00, "SEND_FIRST",                        false, false, false, true,  false, true,  true},
    {0x01, "SEND_MIDDLE",                       false, false, false, false, false, true,  true},
    {0x02, "SEND_LAST",                         false, false, false, false, true,  true,  true},
    {0x03, "SEND_LAST_WITH_IMMEDIATE",          false, true,  false, false, true,  true,  true},
    {0x04, "SEND_ONLY",                         false, false, false, true,  true,  true,  true},
    {0x05, "SEND_ONLY_WITH_IMMEDIATE",          false, true,  false, true,  true,  true,  true},
    {0x06, "RDMA_WRITE_FIRST",                  true,  false, false, true,  false, true,  true},
    {0x07, "RDMA_WRITE_MIDDLE",                 false, false, false, false, false, true,  true},
    {0x08, "RDMA_WRITE_LAST",                   false, false, false, false, true,  true,  true},
    {0x09, "RDMA_WRITE_LAST_WITH_IMMEDIATE",    false, true,  false, false, true,  true,  true},
    {0x0A, "RDMA_WRITE_ONLY",                   true,  false, false, true,  true,  true,  true},
    {0x0B, "RDMA_WRITE_ONLY_WITH_IMMEDIATE",    true,  true,  false, true,  true,  true,  true},
    {0x0C, "RDMA_READ_REQUEST",                 true,  false, false, true,  true,  true,  false},
    {0x0D, "RDMA_READ_RESPONSE_FIRST",          false, false, true,  true,  false, false, true},
    {0x0E, "RDMA_READ_RESPONSE_MIDDLE",         false, false, false, false, false, false, true},
    {0x0F, "RDMA_READ_RESPONSE_LAST",           false, false, true,  false, true,  false, true},
    {0x10, "RDMA_READ_RESPONSE_ONLY",           false, false, true,  true,  true,  false, true},
    {0x11, "ACKNOWLEDGE",                       false, false, true,  true,  true,  false, false},
};

TEST(Opcodes, TableMatchesTheSpecForEveryRcOpcode) {
  for (const ExpectedOpcode& e : kRcOpcodes) {
    SCOPED_TRACE(e.name);
    const OpcodeInfo info = opcode_info(e.opcode);
    EXPECT_TRUE(info.valid);
    EXPECT_STREQ(info.name, e.name);
    EXPECT_EQ(info.reth, e.reth);
    EXPECT_EQ(info.imm, e.imm);
    EXPECT_EQ(info.aeth, e.aeth);
    EXPECT_EQ(info.first, e.first);
    EXPECT_EQ(info.last, e.last);
    EXPECT_EQ(info.request, e.request);
    EXPECT_EQ(info.payload, e.payload);
    EXPECT_FALSE(info.atomic_eth);
  }
}

// The two atomic requests (IBA vol 1 table 38): ONLY packets from a requester, with an
// AtomicETH and no payload. The runtime parses them only to answer "NAK invalid request".
TEST(Opcodes, AtomicRequestsCarryAnAtomicEth) {
  for (uint8_t op : {kCompareSwap, kFetchAdd}) {
    const OpcodeInfo info = opcode_info(op);
    SCOPED_TRACE(info.name);
    EXPECT_TRUE(info.valid);
    EXPECT_TRUE(info.atomic_eth);
    EXPECT_TRUE(info.first && info.last && info.request);
    EXPECT_FALSE(info.reth || info.imm || info.aeth || info.payload);
  }
  EXPECT_STREQ(opcode_info(kCompareSwap).name, "COMPARE_SWAP");
  EXPECT_STREQ(opcode_info(kFetchAdd).name, "FETCH_ADD");
}

// ATOMIC_ACKNOWLEDGE (a response to an atomic, which this runtime never sends), UD/UC/RD/
// XRC opcodes and CNPs are not handled: parse() must refuse them.
TEST(Opcodes, EverythingElseIsUnknown) {
  for (int op = 0x12; op <= 0xFF; ++op) {
    if (op == kCompareSwap || op == kFetchAdd || op == kUdSendOnly) continue;
    EXPECT_FALSE(opcode_info(static_cast<uint8_t>(op)).valid) << "opcode 0x" << std::hex << op;
  }
}

// UD SEND_ONLY is the one datagram opcode: RDMA CM's MADs to QP 1. Its only extension
// header is the DETH, and it carries a payload (the 256-byte MAD).
TEST(Opcodes, UdSendOnlyCarriesADeth) {
  const OpcodeInfo ud = opcode_info(kUdSendOnly);
  EXPECT_TRUE(ud.valid);
  EXPECT_TRUE(ud.deth);
  EXPECT_TRUE(ud.first && ud.last && ud.payload);
  EXPECT_FALSE(ud.reth || ud.imm || ud.aeth || ud.atomic_eth);
  for (int op = 0; op <= 0x14; ++op) EXPECT_FALSE(opcode_info(static_cast<uint8_t>(op)).deth);
}

// ---- header encoding: exact bytes ---------------------------------------------------------

/// The headers encode_headers writes for `p`.
std::vector<uint8_t> encoded(const Packet& p) {
  std::array<uint8_t, kMaxHeaderSize> out{};
  return {out.begin(), out.begin() + static_cast<std::ptrdiff_t>(encode_headers(p, out.data()))};
}

// An RDMA WRITE ONLY with immediate: BTH + RETH + ImmDt, every multi-byte field big-endian.
TEST(Encode, WriteOnlyWithImmediateHasTheSpecLayout) {
  Packet p;
  p.bth.opcode = kWriteOnlyImm;
  p.bth.solicited = true;
  p.bth.migreq = true;
  p.bth.pad = 2;
  p.bth.pkey = 0xFFFF;
  p.bth.dest_qp = 0xABCDEF;
  p.bth.ack_req = true;
  p.bth.psn = 0x123456;
  p.reth = {0x0102030405060708ull, 0x11223344, 0x00000002};
  p.imm = 0xDEADBEEF;
  std::array<uint8_t, kMaxHeaderSize> out{};
  ASSERT_EQ(encode_headers(p, out.data()), 32u);
  const std::array<uint8_t, 32> expected = {
      0x0B,                    // opcode
      0xE0,                    // SE | M | PadCnt 2 | TVer 0
      0xFF, 0xFF,              // P_Key
      0x00,                    // FECN, BECN, reserved
      0xAB, 0xCD, 0xEF,        // DestQP
      0x80,                    // AckReq
      0x12, 0x34, 0x56,        // PSN
      0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // RETH VA
      0x11, 0x22, 0x33, 0x44,  // RETH R_Key
      0x00, 0x00, 0x00, 0x02,  // RETH DMA length
      0xDE, 0xAD, 0xBE, 0xEF,  // ImmDt
  };
  EXPECT_EQ(std::vector<uint8_t>(out.begin(), out.begin() + 32),
            std::vector<uint8_t>(expected.begin(), expected.end()));
}

// An ACK carrying a remote access NAK at the last PSN before the wrap.
TEST(Encode, NakHasTheSpecLayout) {
  Packet p;
  p.bth.opcode = kAcknowledge;
  p.bth.migreq = false;
  p.bth.dest_qp = 0x000011;
  p.bth.psn = 0xFFFFFF;
  p.aeth = {static_cast<uint8_t>(kAethNak | kNakRemoteAccess), 0x000102};
  std::array<uint8_t, kMaxHeaderSize> out{};
  ASSERT_EQ(encode_headers(p, out.data()), 16u);
  const std::array<uint8_t, 16> expected = {0x11, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x11,
                                            0x00, 0xFF, 0xFF, 0xFF, 0x62, 0x00, 0x01, 0x02};
  EXPECT_EQ(std::vector<uint8_t>(out.begin(), out.begin() + 16),
            std::vector<uint8_t>(expected.begin(), expected.end()));
}

// A CMP_SWAP: BTH + AtomicETH (VA, R_Key, swap data, compare data), 40 bytes, the
// largest header stack there is.
TEST(Encode, CompareSwapHasTheAtomicEthLayout) {
  Packet p;
  p.bth.opcode = kCompareSwap;
  p.atomic = {0x0102030405060708ull, 0x11223344, 0xA1A2A3A4A5A6A7A8ull, 0xC1C2C3C4C5C6C7C8ull};
  const std::vector<uint8_t> out = encoded(p);
  ASSERT_EQ(out.size(), kMaxHeaderSize);
  EXPECT_EQ(out[0], 0x13);
  EXPECT_EQ(std::vector<uint8_t>(out.begin() + kBthSize, out.end()),
            std::vector<uint8_t>({
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // VA
                0x11, 0x22, 0x33, 0x44,                          // R_Key
                0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8,  // swap (or add) data
                0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8,  // compare data
            }));
}

// 24-bit fields keep only their 24 bits; PadCnt only its 2.
// UD SEND_ONLY to QP 1: BTH, then the DETH (Q_Key, a reserved byte, the 24-bit source QP).
TEST(Encode, UdSendOnlyHasTheDethLayout) {
  Packet p;
  p.bth.opcode = kUdSendOnly;
  p.bth.migreq = false;
  p.bth.ack_req = true;
  p.bth.dest_qp = 1;
  p.bth.psn = 7;
  p.deth.qkey = 0x80010000;
  p.deth.src_qp = 1;
  const std::vector<uint8_t> want = {0x64, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01,
                                     0x80, 0x00, 0x00, 0x07,                          // BTH
                                     0x80, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01};  // DETH
  EXPECT_EQ(encoded(p), want);
  const Ipv4Flow flow = uroce::socketless::flow_between(0x0A000002, 0x0A000001);
  const std::vector<uint8_t> bytes = build_packet(p, std::vector<uint8_t>(256, 0x5A), flow);
  Packet back;
  ASSERT_EQ(parse(bytes.data(), bytes.size(), flow, back), ParseStatus::ok);
  EXPECT_EQ(back.deth.qkey, 0x80010000u);
  EXPECT_EQ(back.deth.src_qp, 1u);
  EXPECT_EQ(back.payload_len, 256u);
}

TEST(Encode, FieldsAreCutToTheirWidth) {
  Packet p;
  p.bth.opcode = kReadResponseFirst;
  p.bth.dest_qp = 0xFF123456;
  p.bth.psn = 0x01000005;
  p.bth.pad = 7;
  p.aeth.msn = 0xAB000001;
  std::array<uint8_t, kMaxHeaderSize> out{};
  ASSERT_EQ(encode_headers(p, out.data()), kBthSize + kAethSize);
  EXPECT_EQ(out[1] & 0x30, 0x30);  // PadCnt 3
  EXPECT_EQ(out[1] & 0x0F, 0);     // TVer untouched
  EXPECT_EQ(out[5], 0x12);
  EXPECT_EQ(out[7], 0x56);
  EXPECT_EQ(out[9], 0x00);
  EXPECT_EQ(out[11], 0x05);
  EXPECT_EQ(out[13], 0x00);
  EXPECT_EQ(out[15], 0x01);
}

// ---- encode -> parse round trips -----------------------------------------------------------

size_t header_size(const OpcodeInfo& info) {
  return kBthSize + (info.deth ? kDethSize : 0) + (info.reth ? kRethSize : 0) +
         (info.aeth ? kAethSize : 0) +
         (info.atomic_eth ? kAtomicEthSize : 0) + (info.imm ? kImmSize : 0);
}

// Every RC opcode, every flag combination, random field values and payload lengths:
// what parse() returns is what was encoded.
TEST(RoundTrip, EveryOpcodeAndFieldSurvivesEncodeAndParse) {
  std::mt19937_64 rng(42);
  const Ipv4Flow flow = uroce::socketless::flow_between(0x0A000002, 0x0A000001);
  for (const ExpectedOpcode& e : kRcOpcodes) {
    for (int flags = 0; flags < 8; ++flags) {
      SCOPED_TRACE(std::string(e.name) + " flags " + std::to_string(flags));
      Packet p;
      p.bth.opcode = e.opcode;
      p.bth.solicited = flags & 1;
      p.bth.migreq = flags & 2;
      p.bth.ack_req = flags & 4;
      p.bth.pkey = static_cast<uint16_t>(rng());
      p.bth.dest_qp = static_cast<uint32_t>(rng()) & kPsnMask;
      p.bth.psn = static_cast<uint32_t>(rng()) & kPsnMask;
      p.reth = {rng(), static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng())};
      p.imm = static_cast<uint32_t>(rng());
      p.aeth = {static_cast<uint8_t>(rng()), static_cast<uint32_t>(rng()) & kPsnMask};
      std::vector<uint8_t> payload(e.payload ? rng() % 41 : 0);
      for (auto& b : payload) b = static_cast<uint8_t>(rng());

      const std::vector<uint8_t> bytes = build_packet(p, payload, flow);
      const OpcodeInfo info = opcode_info(e.opcode);
      ASSERT_EQ(bytes.size(),
                header_size(info) + payload.size() + pad_for(payload.size()) + kIcrcSize);
      Packet q;
      ASSERT_EQ(parse(bytes.data(), bytes.size(), flow, q), ParseStatus::ok);
      EXPECT_EQ(q.bth.opcode, e.opcode);
      EXPECT_EQ(q.bth.solicited, p.bth.solicited);
      EXPECT_EQ(q.bth.migreq, p.bth.migreq);
      EXPECT_EQ(q.bth.pad, pad_for(payload.size()));
      EXPECT_EQ(q.bth.pkey, p.bth.pkey);
      EXPECT_EQ(q.bth.dest_qp, p.bth.dest_qp);
      EXPECT_EQ(q.bth.ack_req, p.bth.ack_req);
      EXPECT_EQ(q.bth.psn, p.bth.psn);
      if (info.reth) {
        EXPECT_EQ(q.reth.va, p.reth.va);
        EXPECT_EQ(q.reth.rkey, p.reth.rkey);
        EXPECT_EQ(q.reth.length, p.reth.length);
      }
      if (info.imm) {
        EXPECT_EQ(q.imm, p.imm);
      }
      if (info.aeth) {
        EXPECT_EQ(q.aeth.syndrome, p.aeth.syndrome);
        EXPECT_EQ(q.aeth.msn, p.aeth.msn);
      }
      ASSERT_EQ(q.payload_len, payload.size());
      EXPECT_EQ(q.payload, bytes.data() + header_size(info));
      EXPECT_EQ(std::vector<uint8_t>(q.payload, q.payload + q.payload_len), payload);
    }
  }
}

// The atomic requests: every AtomicETH field survives encode and parse.
TEST(RoundTrip, AtomicEthSurvivesEncodeAndParse) {
  std::mt19937_64 rng(43);
  const Ipv4Flow flow = uroce::socketless::flow_between(0x0A000002, 0x0A000001);
  for (uint8_t op : {kCompareSwap, kFetchAdd}) {
    Packet p;
    p.bth.opcode = op;
    p.bth.psn = static_cast<uint32_t>(rng()) & kPsnMask;
    p.atomic = {rng(), static_cast<uint32_t>(rng()), rng(), rng()};
    const std::vector<uint8_t> bytes = build_packet(p, {}, flow);
    ASSERT_EQ(bytes.size(), kBthSize + kAtomicEthSize + kIcrcSize);
    Packet q;
    ASSERT_EQ(parse(bytes.data(), bytes.size(), flow, q), ParseStatus::ok);
    EXPECT_EQ(q.bth.opcode, op);
    EXPECT_EQ(q.atomic.va, p.atomic.va);
    EXPECT_EQ(q.atomic.rkey, p.atomic.rkey);
    EXPECT_EQ(q.atomic.swap_add, p.atomic.swap_add);
    EXPECT_EQ(q.atomic.compare, p.atomic.compare);
    EXPECT_EQ(q.payload_len, 0u);
  }
}

// ---- parse errors ---------------------------------------------------------------------------

/// A valid packet of `opcode` with `payload_len` bytes of payload (ICRC for `flow`).
std::vector<uint8_t> valid_packet(uint8_t opcode, size_t payload_len, const Ipv4Flow& flow) {
  Packet p;
  p.bth.opcode = opcode;
  p.bth.dest_qp = 0x11;
  p.bth.psn = 100;
  p.reth = {0x1000, 0x1A5, static_cast<uint32_t>(payload_len)};
  return build_packet(p, std::vector<uint8_t>(payload_len, 0xA5), flow);
}

/// Recomputes the ICRC of a modified packet, so that only the modification is judged.
void reseal(std::vector<uint8_t>& bytes, const Ipv4Flow& flow) {
  const std::span<const uint8_t> covered(bytes.data(), bytes.size() - kIcrcSize);
  const std::span<const uint8_t> parts[] = {covered};
  store_icrc(compute_icrc(flow, parts), bytes.data() + bytes.size() - kIcrcSize);
}

/// parse() on an exactly sized heap copy, so AddressSanitizer sees any read past the end.
ParseStatus parse_copy(const uint8_t* data, size_t len, const Ipv4Flow& flow,
                       bool check_icrc = true) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[len ? len : 1]);
  if (len) std::memcpy(copy.get(), data, len);
  Packet p;
  return parse(copy.get(), len, flow, p, check_icrc);
}

const Ipv4Flow kFlow = uroce::socketless::flow_between(0x0A000002, 0x0A000001);

TEST(ParseErrors, TooShortForBthAndIcrc) {
  const auto ok = valid_packet(kSendOnly, 0, kFlow);
  ASSERT_EQ(ok.size(), kBthSize + kIcrcSize);
  for (size_t len = 0; len < ok.size(); ++len)
    EXPECT_EQ(parse_copy(ok.data(), len, kFlow), ParseStatus::too_short) << "len " << len;
  EXPECT_EQ(parse_copy(ok.data(), ok.size(), kFlow), ParseStatus::ok);
}

// A WRITE ONLY needs room for its RETH: 12 + 16 + 4 bytes at the least.
TEST(ParseErrors, TooShortForTheExtensionHeaders) {
  for (uint8_t op : {kWriteFirst, kWriteOnly, kWriteOnlyImm, kReadRequest, kSendOnlyImm,
                     kReadResponseOnly, kAcknowledge, kCompareSwap, kFetchAdd}) {
    const auto ok = valid_packet(op, 0, kFlow);
    for (size_t len = kBthSize + kIcrcSize; len < ok.size(); ++len)
      EXPECT_EQ(parse_copy(ok.data(), len, kFlow, false), ParseStatus::too_short)
          << opcode_info(op).name << " cut to " << len;
  }
}

TEST(ParseErrors, TransportVersionMustBeZero) {
  auto bytes = valid_packet(kSendOnly, 8, kFlow);
  for (uint8_t tver = 1; tver < 16; ++tver) {
    auto bad = bytes;
    bad[1] = static_cast<uint8_t>((bad[1] & 0xF0) | tver);
    reseal(bad, kFlow);
    EXPECT_EQ(parse_copy(bad.data(), bad.size(), kFlow), ParseStatus::bad_version) << int(tver);
  }
}

TEST(ParseErrors, OpcodesOutsideTheRcTableAreUnknown) {
  // 0x12: ATOMIC_ACKNOWLEDGE (never asked for); 0x15: the first past the atomics; 0x24:
  // UC SEND ONLY; 0x65: UD SEND ONLY with immediate; 0x81: CNP; 0xFF: nothing.
  for (int op : {0x12, 0x15, 0x24, 0x65, 0x81, 0xFF}) {
    auto bytes = valid_packet(kSendOnly, 32, kFlow);
    bytes[0] = static_cast<uint8_t>(op);
    reseal(bytes, kFlow);
    EXPECT_EQ(parse_copy(bytes.data(), bytes.size(), kFlow), ParseStatus::unknown_opcode)
        << "opcode 0x" << std::hex << op;
  }
}

// PadCnt larger than the bytes between the headers and the ICRC.
TEST(ParseErrors, PadLargerThanThePayloadArea) {
  auto bytes = valid_packet(kSendOnly, 0, kFlow);  // BTH + ICRC: no room for any pad
  for (uint8_t pad = 1; pad < 4; ++pad) {
    auto bad = bytes;
    bad[1] = static_cast<uint8_t>((bad[1] & ~0x30) | pad << 4);
    reseal(bad, kFlow);
    EXPECT_EQ(parse_copy(bad.data(), bad.size(), kFlow), ParseStatus::bad_pad) << int(pad);
  }
  // Two bytes of payload area, three of them declared pad.
  Packet p;
  p.bth.opcode = kSendOnly;
  std::vector<uint8_t> raw(kMaxHeaderSize);
  raw.resize(encode_headers(p, raw.data()));
  raw[1] = static_cast<uint8_t>((raw[1] & ~0x30) | 3 << 4);
  raw.insert(raw.end(), {0xAA, 0xBB, 0, 0, 0, 0});
  reseal(raw, kFlow);
  EXPECT_EQ(parse_copy(raw.data(), raw.size(), kFlow), ParseStatus::bad_pad);
}

// ACKs and READ requests carry no payload: bytes there mean a malformed packet.
TEST(ParseErrors, PayloadOnAckOrReadRequest) {
  for (uint8_t op : {kAcknowledge, kReadRequest}) {
    auto bytes = valid_packet(op, 0, kFlow);
    bytes.insert(bytes.end() - kIcrcSize, {1, 2, 3, 4});
    reseal(bytes, kFlow);
    EXPECT_EQ(parse_copy(bytes.data(), bytes.size(), kFlow), ParseStatus::bad_pad)
        << opcode_info(op).name;
  }
}

TEST(ParseErrors, StatusesHaveTexts) {
  for (ParseStatus s : {ParseStatus::ok, ParseStatus::too_short, ParseStatus::bad_version,
                        ParseStatus::unknown_opcode, ParseStatus::bad_pad, ParseStatus::bad_icrc})
    EXPECT_STRNE(parse_status_text(s), "?");
}

// ---- parse never reads out of bounds --------------------------------------------------------

// Random bytes of random lengths, each in an exactly sized heap block: in the sanitizer
// build (RDMA_TUTORIAL_SANITIZE) AddressSanitizer fails the test on any read past the
// end. Whatever parse accepts must describe a payload inside the buffer.
TEST(ParseBounds, RandomInputsStayInsideTheBuffer) {
  std::mt19937_64 rng(1234);
  for (int i = 0; i < 200000; ++i) {
    const size_t len = rng() % 96;
    std::unique_ptr<uint8_t[]> buf(new uint8_t[len ? len : 1]);
    for (size_t k = 0; k < len; ++k) buf[k] = static_cast<uint8_t>(rng());
    if (len > 1 && rng() % 4) {
      // Most of the time a plausible start, so that parse gets past the first checks.
      buf[0] = static_cast<uint8_t>(rng() % 0x15);
      buf[1] &= 0xF0;
    }
    const bool seal = len >= kIcrcSize && rng() % 2;
    if (seal) {
      const std::span<const uint8_t> covered(buf.get(), len - kIcrcSize);
      const std::span<const uint8_t> parts[] = {covered};
      store_icrc(compute_icrc(kFlow, parts), buf.get() + len - kIcrcSize);
    }
    Packet p;
    const ParseStatus st = parse(buf.get(), len, kFlow, p, rng() % 2);
    if (st != ParseStatus::ok) continue;
    const OpcodeInfo info = opcode_info(p.bth.opcode);
    ASSERT_TRUE(info.valid);
    ASSERT_GE(p.payload, buf.get());
    ASSERT_EQ(static_cast<size_t>(p.payload - buf.get()), header_size(info));
    ASSERT_EQ(header_size(info) + p.payload_len + p.bth.pad + kIcrcSize, len);
    if (!info.payload) {
      ASSERT_EQ(p.payload_len, 0u);
    }
  }
}

// Every prefix of valid packets of every opcode, each in an exactly sized block.
TEST(ParseBounds, EveryTruncationOfAValidPacket) {
  for (const ExpectedOpcode& e : kRcOpcodes) {
    const auto bytes = valid_packet(e.opcode, e.payload ? 13 : 0, kFlow);
    for (size_t len = 0; len <= bytes.size(); ++len) {
      const ParseStatus st = parse_copy(bytes.data(), len, kFlow);
      if (len == bytes.size())
        EXPECT_EQ(st, ParseStatus::ok) << e.name;
      else
        EXPECT_NE(st, ParseStatus::ok) << e.name << " cut to " << len;
    }
  }
}

// ---- AETH syndromes ---------------------------------------------------------------------------

TEST(Aeth, SyndromeKinds) {
  EXPECT_EQ(aeth_kind(kAethAck | kAckNoCreditLimit), AethKind::ack);
  EXPECT_EQ(aeth_kind(0x00), AethKind::ack);
  EXPECT_EQ(aeth_kind(kAethRnrNak | 12), AethKind::rnr_nak);
  EXPECT_EQ(aeth_kind(kAethNak | kNakRemoteAccess), AethKind::nak);
  for (int s : {0x40, 0x5F, 0x80, 0xA0, 0xC0, 0xFF})
    EXPECT_EQ(aeth_kind(static_cast<uint8_t>(s)), AethKind::reserved) << s;
  EXPECT_EQ(aeth_text(kAethAck | kAckNoCreditLimit), "ACK");
  EXPECT_EQ(aeth_text(kAethNak | kNakPsnSequence), "NAK PSN sequence error");
  EXPECT_EQ(aeth_text(kAethNak | kNakInvalidRequest), "NAK invalid request");
  EXPECT_EQ(aeth_text(kAethNak | kNakRemoteAccess), "NAK remote access error");
  EXPECT_EQ(aeth_text(kAethNak | kNakRemoteOperational), "NAK remote operational error");
  EXPECT_EQ(aeth_text(kAethRnrNak | 14), "RNR NAK (timer code 14)");
}

TEST(Pad, AlignsPayloadToFourBytes) {
  EXPECT_EQ(pad_for(0), 0);
  EXPECT_EQ(pad_for(1), 3);
  EXPECT_EQ(pad_for(2), 2);
  EXPECT_EQ(pad_for(3), 1);
  EXPECT_EQ(pad_for(4), 0);
  EXPECT_EQ(pad_for(4097), 3);
}

// ---- timers -----------------------------------------------------------------------------------

// IBA vol 1 table 45, "Encoding for RNR NAK Timer Field", in milliseconds. Code 0 is the
// longest wait, not the shortest: a classic misreading.
TEST(Timers, RnrTimerTable) {
  constexpr double kMs[32] = {655.36, 0.01,  0.02,  0.03,  0.04,   0.06,   0.08,   0.12,
                              0.16,   0.24,  0.32,  0.48,  0.64,   0.96,   1.28,   1.92,
                              2.56,   3.84,  5.12,  7.68,  10.24,  15.36,  20.48,  30.72,
                              40.96,  61.44, 81.92, 122.88, 163.84, 245.76, 327.68, 491.52};
  EXPECT_EQ(rnr_timer_us(0), 655360u);
  EXPECT_EQ(rnr_timer_us(1), 10u);
  EXPECT_EQ(rnr_timer_us(12), 640u);
  EXPECT_EQ(rnr_timer_us(31), 491520u);
  for (uint8_t code = 0; code < 32; ++code)
    EXPECT_NEAR(rnr_timer_us(code), kMs[code] * 1000.0, 0.5) << "code " << int(code);
}

// The local ACK timeout: 4.096 us * 2^timeout. 14 is what rc_pingpong uses.
TEST(Timers, TransportTimeout) {
  EXPECT_NEAR(static_cast<double>(transport_timeout_us(14)), 67108.864, 1.0);  // ~67 ms
  EXPECT_EQ(transport_timeout_us(1), 8u);
  EXPECT_NEAR(static_cast<double>(transport_timeout_us(31)), 4.096 * 2147483648.0, 1.0);  // ~2.4 h
  for (uint8_t t = 1; t < 31; ++t)
    EXPECT_NEAR(static_cast<double>(transport_timeout_us(static_cast<uint8_t>(t + 1))),
                2.0 * static_cast<double>(transport_timeout_us(t)), 1.0)
        << "timeout " << int(t);
}

}  // namespace
