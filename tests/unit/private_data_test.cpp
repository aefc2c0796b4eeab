// The CM private-data layout (common/private_data.hpp): what lessons 02 and 03 put in the
// ConnectRequest, ConnectReply and ConnectReject. Valid blobs round trip byte for byte;
// short, zero, wrong-version, wrong-type, wrong-length and random input is refused with
// common::Error, including when the CM has zero-padded the bytes to the field's size.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "common/private_data.hpp"
#include "expect_error.hpp"

namespace {

using Bytes = std::vector<std::uint8_t>;

/// What the receiver sees on IB/RoCE: the sent bytes, zero-padded to the field's size.
Bytes padded(Bytes b, std::size_t field = common::kMaxConnectPrivateData) {
  b.resize(field, 0);
  return b;
}

}  // namespace

TEST(PrivateData, ConnectIntentRoundTripsBigEndian) {
  const Bytes b = common::encode_connect({17, 3});
  EXPECT_EQ(b, (Bytes{1, 1, 0, 8, 0, 0, 0, 17, 0, 0, 0, 3}));
  const Bytes p = padded(b);
  const common::ConnectIntent got = common::decode_connect(p.data(), p.size());
  EXPECT_EQ(got.bytes, 17u);
  EXPECT_EQ(got.messages, 3u);
}

TEST(PrivateData, BufferAdvertRoundTripsBigEndian) {
  const Bytes b = common::encode_buffer({0x0000556677889900ull, 0x000002ef, 4096});
  EXPECT_EQ(b, (Bytes{1, 2, 0, 16, 0, 0, 0x55, 0x66, 0x77, 0x88, 0x99, 0x00, 0, 0, 2, 0xef, 0, 0, 0x10, 0}));
  const Bytes p = padded(b, 196);
  const common::BufferAdvert got = common::decode_buffer(p.data(), p.size());
  EXPECT_EQ(got.addr, 0x0000556677889900ull);
  EXPECT_EQ(got.rkey, 0x2efu);
  EXPECT_EQ(got.length, 4096u);
}

TEST(PrivateData, RingAdvertRoundTrips) {
  const common::RingAdvert in{0x1000, 0xabcd, 64, 8, 0xff8, 0x1234};
  const Bytes b = common::encode_ring(in);
  ASSERT_EQ(b.size(), 36u);
  EXPECT_EQ(b[3], 32);
  const common::RingAdvert got = common::decode_ring(b.data(), b.size());
  EXPECT_EQ(got.addr, in.addr);
  EXPECT_EQ(got.rkey, in.rkey);
  EXPECT_EQ(got.slot_size, in.slot_size);
  EXPECT_EQ(got.slot_count, in.slot_count);
  EXPECT_EQ(got.consumed_addr, in.consumed_addr);
  EXPECT_EQ(got.consumed_rkey, in.consumed_rkey);
}

TEST(PrivateData, RegionsAdvertRoundTrips) {
  const common::RegionsAdvert in{{0x1000, 0x11, 32768}, {0x9000, 0x22, 4096}};
  const Bytes b = common::encode_regions(in);
  ASSERT_EQ(b.size(), 36u);
  const Bytes p = padded(b, 196);
  const common::RegionsAdvert got = common::decode_regions(p.data(), p.size());
  EXPECT_EQ(got.data.addr, 0x1000u);
  EXPECT_EQ(got.data.length, 32768u);
  EXPECT_EQ(got.request.rkey, 0x22u);
  EXPECT_EQ(got.request.length, 4096u);
  const Bytes empty = common::encode_regions({{0x1000, 0x11, 32768}, {0x9000, 0x22, 0}});
  expect_error_containing([&] { common::decode_regions(empty.data(), empty.size()); }, "0 bytes long");
}

TEST(PrivateData, RejectReasonRoundTripsAndIsCut) {
  const Bytes b = common::encode_reject("buffer too small");
  EXPECT_EQ(common::decode_reject(b.data(), b.size()), "buffer too small");
  const Bytes p = padded(b, 148);
  EXPECT_EQ(common::decode_reject(p.data(), p.size()), "buffer too small");
  const Bytes long_reason = common::encode_reject(std::string(500, 'x') + "\n");
  EXPECT_EQ(common::decode_reject(long_reason.data(), long_reason.size()).size(), common::kMaxRejectReason);
  // Not our layout: no reason rather than garbage.
  const Bytes other{7, 7, 7, 7, 'h', 'i'};
  EXPECT_EQ(common::decode_reject(other.data(), other.size()), "");
  EXPECT_EQ(common::decode_reject(nullptr, 0), "");
}

TEST(PrivateData, ShortInputIsRefused) {
  const Bytes three{1, 1, 0};
  expect_error_containing([&] { common::decode_connect(three.data(), three.size()); }, "3 bytes, shorter than the 4-byte header");
  expect_error_containing([&] { common::decode_connect(nullptr, 0); }, "0 bytes");
  // A header that declares less than version 1 defines, zero-padded by the CM.
  const Bytes p = padded({1, 1, 0, 4, 0, 0, 0x10, 0});
  expect_error_containing([&] { common::decode_connect(p.data(), p.size()); },
                          "a connect body of 4 bytes; version 1 defines 8");
  // Declares the right length, but the field is too small to hold it.
  const Bytes cut{1, 2, 0, 16, 0, 0, 0, 0};
  expect_error_containing([&] { common::decode_buffer(cut.data(), cut.size()); }, "needs 20 bytes but only 8 arrived");
}

TEST(PrivateData, NoneVersionAndTypeAreRefused) {
  const Bytes zeros = padded({});
  expect_error_containing([&] { common::decode_connect(zeros.data(), zeros.size()); },
                          "all 56 bytes are zero: the peer sent none");
  Bytes v9 = common::encode_connect({1, 1});
  v9[0] = 9;
  expect_error_containing([&] { common::decode_connect(v9.data(), v9.size()); }, "version 9, this build speaks 1");
  const Bytes ring = common::encode_ring({0x1000, 1, 64, 8, 0xff8, 2});
  expect_error_containing([&] { common::decode_buffer(ring.data(), ring.size()); }, "type 3 (ring), expected buffer");
  Bytes odd = common::encode_connect({1, 1});
  odd[1] = 200;
  expect_error_containing([&] { common::decode_connect(odd.data(), odd.size()); }, "type 200 (unknown)");
}

TEST(PrivateData, NonsenseValuesAreRefused) {
  const Bytes empty_buffer = common::encode_buffer({0x1000, 1, 0});
  expect_error_containing([&] { common::decode_buffer(empty_buffer.data(), empty_buffer.size()); }, "0 bytes long");
  const Bytes wraps = common::encode_buffer({~0ull - 10, 1, 4096});
  expect_error_containing([&] { common::decode_buffer(wraps.data(), wraps.size()); }, "wraps around");
  const Bytes no_slots = common::encode_ring({0x1000, 1, 64, 0, 0xff8, 2});
  expect_error_containing([&] { common::decode_ring(no_slots.data(), no_slots.size()); }, "a ring of 0 slots");
  const Bytes ring_wraps = common::encode_ring({~0ull - 100, 1, 64, 8, 0x10, 2});
  expect_error_containing([&] { common::decode_ring(ring_wraps.data(), ring_wraps.size()); }, "wraps around");
}

TEST(PrivateData, HexBytesShowsWhatArrived) {
  const Bytes b{1, 2, 0xab};
  EXPECT_EQ(common::hex_bytes(b.data(), b.size()), "01 02 ab");
  EXPECT_EQ(common::hex_bytes(nullptr, 0), "(none)");
  const Bytes many(20, 0xff);
  EXPECT_EQ(common::hex_bytes(many.data(), many.size(), 2), "ff ff ...");
}

// Random bytes of every length up to a REP's 196: decoding either succeeds with values it
// validated or throws common::Error. Never a crash, never an out-of-bounds read (ASan).
TEST(PrivateData, RandomInputNeverCrashes) {
  std::mt19937 rng(4242);
  std::uniform_int_distribution<int> byte(0, 255);
  std::size_t accepted = 0;
  for (int i = 0; i < 100000; ++i) {
    Bytes b(static_cast<std::size_t>(i % 197));
    for (auto& x : b) x = static_cast<std::uint8_t>(byte(rng));
    // Half of the inputs get a valid header, so the body checks run too.
    if (i % 2 == 0 && b.size() >= 4) {
      b[0] = 1;
      b[1] = static_cast<std::uint8_t>(1 + i % 5);
      b[2] = 0;
      b[3] = static_cast<std::uint8_t>(b[1] == 1 ? 8 : b[1] == 2 ? 16 : 32);  // ring and regions: 32
    }
    try { common::decode_connect(b.data(), b.size()); ++accepted; } catch (const common::Error&) {}
    try { common::decode_buffer(b.data(), b.size()); ++accepted; } catch (const common::Error&) {}
    try { common::decode_ring(b.data(), b.size()); ++accepted; } catch (const common::Error&) {}
    try { common::decode_regions(b.data(), b.size()); ++accepted; } catch (const common::Error&) {}
    EXPECT_LE(common::decode_reject(b.data(), b.size()).size(), common::kMaxRejectReason);
  }
  EXPECT_GT(accepted, 0u);  // the valid-header half reaches the body checks
}
