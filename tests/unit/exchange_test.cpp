// The out-of-band wire format and the TCP channel that carries it: valid messages round
// trip; short, oversized, wrong-version, garbage and random input is refused with
// common::Error (never a crash, never a partly-used message).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/errors.hpp"
#include "common/exchange.hpp"
#include "common/tcp.hpp"
#include "expect_error.hpp"

using common::Error;

namespace {

common::Hello sample_hello() {
  common::Hello h;
  h.qpn = 0x000011;
  h.psn = 0xabcdef;
  h.lid = 0;
  h.mtu = IBV_MTU_1024;
  const unsigned char gid[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
  std::memcpy(h.gid.raw, gid, 16);
  h.msg_size = 4096;
  h.msg_count = 10;
  return h;
}

std::span<const std::uint8_t> body_of(const std::vector<std::uint8_t>& msg) {
  return std::span(msg).subspan(common::kHeaderSize);
}

}  // namespace

TEST(Exchange, HelloRoundTripsWithExplicitBigEndianLayout) {
  const auto msg = common::encode_hello(sample_hello());
  ASSERT_EQ(msg.size(), common::kHeaderSize + common::kHelloSize);
  // Header: "RDMT", version 1, type 1, reserved 0, length 36 big-endian.
  const std::vector<std::uint8_t> head(msg.begin(), msg.begin() + 12);
  EXPECT_EQ(head, (std::vector<std::uint8_t>{'R', 'D', 'M', 'T', 1, 1, 0, 0, 0, 0, 0, 36}));
  // QPN 0x11 and PSN 0xabcdef, most significant byte first.
  EXPECT_EQ(msg[12 + 3], 0x11);
  EXPECT_EQ(msg[16 + 1], 0xab);
  EXPECT_EQ(msg[16 + 3], 0xef);
  const auto header = common::decode_header(msg);
  EXPECT_EQ(header.type, common::MessageType::hello);
  const auto back = common::decode_hello(body_of(msg));
  EXPECT_EQ(back.qpn, 0x11u);
  EXPECT_EQ(back.psn, 0xabcdefu);
  EXPECT_EQ(back.mtu, IBV_MTU_1024);
  EXPECT_EQ(std::memcmp(back.gid.raw, sample_hello().gid.raw, 16), 0);
  EXPECT_EQ(back.msg_size, 4096u);
  EXPECT_EQ(back.msg_count, 10u);
}

TEST(Exchange, ReadyAndErrorRoundTrip) {
  EXPECT_EQ(common::decode_header(common::encode_ready()).type, common::MessageType::ready);
  const auto done = common::encode_done();
  EXPECT_EQ(common::decode_header(done).type, common::MessageType::done);
  EXPECT_EQ(common::decode_header(done).body_length, 0u);
  EXPECT_EQ(common::message_type_name(common::MessageType::done), "DONE");
  auto done_with_body = done;
  done_with_body[11] = 4;  // DONE never carries a body
  expect_error_containing([&] { common::decode_header(done_with_body); }, "DONE with a body of 4");
  const auto err = common::encode_error("buffer too small");
  EXPECT_EQ(common::decode_header(err).type, common::MessageType::error);
  EXPECT_EQ(common::decode_error(body_of(err)), "buffer too small");
  // Over-long reasons are cut to the limit, which the decoder accepts.
  const auto long_err = common::encode_error(std::string(2000, 'x'));
  EXPECT_EQ(common::decode_header(long_err).body_length, common::kMaxErrorText);
}

TEST(Exchange, ShortHeaderIsRefused) {
  const auto msg = common::encode_ready();
  expect_error_containing([&] { common::decode_header(std::span(msg).first(11)); }, "11 bytes");
  expect_error_containing([&] { common::decode_header({}); }, "0 bytes");
}

TEST(Exchange, WrongMagicIsRefused) {
  auto msg = common::encode_ready();
  std::memcpy(msg.data(), "GET ", 4);  // someone speaking HTTP to our port
  expect_error_containing([&] { common::decode_header(msg); }, "magic is 47 45 54 20");
}

TEST(Exchange, OtherVersionIsRefusedWithTheVersionSeen) {
  auto msg = common::encode_hello(sample_hello());
  msg[4] = 2;
  expect_error_containing([&] { common::decode_header(msg); }, "version 2");
}

TEST(Exchange, UnknownTypeAndReservedBitsAreRefused) {
  auto msg = common::encode_ready();
  msg[5] = 9;
  expect_error_containing([&] { common::decode_header(msg); }, "unknown message type 9");
  msg = common::encode_ready();
  msg[7] = 1;
  expect_error_containing([&] { common::decode_header(msg); }, "reserved");
}

TEST(Exchange, LengthsThatDoNotFitTheTypeAreRefused) {
  auto msg = common::encode_hello(sample_hello());
  msg[11] = 35;  // HELLO claiming 35 bytes
  expect_error_containing([&] { common::decode_header(msg); }, "HELLO with a body of 35");
  msg[8] = 0x7f;  // oversized: ~2 GiB body
  expect_error_containing([&] { common::decode_header(msg); }, "HELLO with a body of");
  auto ready = common::encode_ready();
  ready[11] = 1;
  expect_error_containing([&] { common::decode_header(ready); }, "READY with a body of 1");
  auto err = common::encode_error("x");
  err[10] = 0x10;  // 4097 bytes: above kMaxErrorText
  expect_error_containing([&] { common::decode_header(err); }, "ERROR with a body of 4097");
}

TEST(Exchange, HelloFieldsOutOfRangeAreRefused) {
  const auto with = [](auto change) {
    common::Hello h = sample_hello();
    auto msg = common::encode_hello(h);
    change(msg);
    return msg;
  };
  auto qpn = with([](auto& m) { m[12] = 0x01; });  // QPN 0x01000011: 25 bits
  expect_error_containing([&] { common::decode_hello(body_of(qpn)); }, "24-bit");
  auto qp1 = with([](auto& m) { m[15] = 0x01; });  // QPN 1 is the GSI QP
  expect_error_containing([&] { common::decode_hello(body_of(qp1)); }, "QPN 1");
  auto psn = with([](auto& m) { m[16] = 0x01; });
  expect_error_containing([&] { common::decode_hello(body_of(psn)); }, "24 bits");
  auto mtu = with([](auto& m) { m[22] = 6; });
  expect_error_containing([&] { common::decode_hello(body_of(mtu)); }, "MTU code 6");
  auto reserved = with([](auto& m) { m[23] = 1; });
  expect_error_containing([&] { common::decode_hello(body_of(reserved)); }, "reserved");
  auto size = with([](auto& m) { m[40] = m[41] = m[42] = m[43] = 0; });
  expect_error_containing([&] { common::decode_hello(body_of(size)); }, "message size 0");
  const auto ok = common::encode_hello(sample_hello());
  expect_error_containing([&] { common::decode_hello(body_of(ok).first(35)); }, "35 bytes");
}

namespace {

common::TestSpec sample_test() {
  common::TestSpec t;
  t.op = common::TestOp::write_imm;
  t.pattern = common::TestPattern::stream;
  t.use_inline = true;
  t.use_event = true;
  t.size = 0x01020304;
  t.iters = 5000;
  t.window = 64;
  t.number = 0xa1b2c3d4;
  return t;
}

/// A TEST message whose body byte @p at is @p value (the header left as encoded).
std::vector<std::uint8_t> test_with(std::size_t at, int value) {
  auto msg = common::encode_test(sample_test());
  msg[common::kHeaderSize + at] = static_cast<std::uint8_t>(value);
  return msg;
}

/// A TEST message whose 32-bit body field at @p at is 0.
std::vector<std::uint8_t> test_with_zero(std::size_t at) {
  auto msg = common::encode_test(sample_test());
  for (std::size_t i = 0; i < 4; ++i) msg[common::kHeaderSize + at + i] = 0;
  return msg;
}

}  // namespace

TEST(Exchange, TestRoundTripsWithExplicitBigEndianLayout) {
  const auto msg = common::encode_test(sample_test());
  ASSERT_EQ(msg.size(), common::kHeaderSize + common::kTestSize);
  // Header: "RDMT", version 1, type 6, reserved 0, length 20 big-endian.
  const std::vector<std::uint8_t> head(msg.begin(), msg.begin() + 12);
  EXPECT_EQ(head, (std::vector<std::uint8_t>{'R', 'D', 'M', 'T', 1, 6, 0, 0, 0, 0, 0, 20}));
  // op 3, pattern 2, flags 3 (inline | event), reserved 0, then the four fields, most
  // significant byte first.
  const std::vector<std::uint8_t> body(msg.begin() + 12, msg.end());
  EXPECT_EQ(body, (std::vector<std::uint8_t>{3, 2, 3, 0, 0x01, 0x02, 0x03, 0x04, 0, 0, 0x13, 0x88, 0, 0, 0, 64,
                                             0xa1, 0xb2, 0xc3, 0xd4}));
  const auto header = common::decode_header(msg);
  EXPECT_EQ(header.type, common::MessageType::test);
  EXPECT_EQ(header.body_length, common::kTestSize);
  EXPECT_EQ(common::message_type_name(common::MessageType::test), "TEST");
  const auto back = common::decode_test(body_of(msg));
  EXPECT_EQ(back.op, common::TestOp::write_imm);
  EXPECT_EQ(back.pattern, common::TestPattern::stream);
  EXPECT_TRUE(back.use_inline);
  EXPECT_TRUE(back.use_event);
  EXPECT_EQ(back.size, 0x01020304u);
  EXPECT_EQ(back.iters, 5000u);
  EXPECT_EQ(back.window, 64u);
  EXPECT_EQ(back.number, 0xa1b2c3d4u);
  EXPECT_EQ(common::encode_test(back), msg);
}

TEST(Exchange, TestEveryOpFlagAndPatternRoundTrips) {
  for (const auto op : {common::TestOp::send, common::TestOp::write, common::TestOp::write_imm, common::TestOp::read})
    for (const auto pattern : {common::TestPattern::ping_pong, common::TestPattern::stream})
      for (int flags = 0; flags < 4; ++flags) {
        if (pattern == common::TestPattern::ping_pong && op != common::TestOp::send) continue;
        common::TestSpec t = sample_test();
        t.op = op;
        t.pattern = pattern;
        t.use_inline = (flags & 1) != 0;
        t.use_event = (flags & 2) != 0;
        t.size = t.iters = t.window = 1;  // the smallest accepted values
        t.number = 0;
        const auto msg = common::encode_test(t);
        const auto back = common::decode_test(body_of(msg));
        EXPECT_EQ(back.op, op);
        EXPECT_EQ(back.pattern, pattern);
        EXPECT_EQ(back.use_inline, t.use_inline);
        EXPECT_EQ(back.use_event, t.use_event);
        EXPECT_EQ(common::encode_test(back), msg);
      }
}

TEST(Exchange, TestFieldsOutOfRangeAreRefused) {
  for (const int op : {0, 5, 255}) {
    const auto msg = test_with(0, op);
    expect_error_containing([&] { common::decode_test(body_of(msg)); }, "TEST op " + std::to_string(op) + " is not 1..4");
  }
  for (const int pattern : {0, 3}) {
    const auto msg = test_with(1, pattern);
    expect_error_containing([&] { common::decode_test(body_of(msg)); },
                            "TEST pattern " + std::to_string(pattern) + " is not 1 (ping-pong) or 2 (stream)");
  }
  // Ping-pong is SEND only: the server echoes what its RECV took.
  for (const int op : {2, 3, 4}) {
    auto msg = test_with(0, op);
    msg[common::kHeaderSize + 1] = 1;
    expect_error_containing([&] { common::decode_test(body_of(msg)); }, "TEST ping-pong with an op other than SEND");
  }
  for (const int flags : {4, 0x80}) {
    const auto msg = test_with(2, flags);
    expect_error_containing([&] { common::decode_test(body_of(msg)); },
                            "TEST flags " + std::to_string(flags) + " have bits other than 0 (inline) and 1 (event)");
  }
  const auto reserved = test_with(3, 1);
  expect_error_containing([&] { common::decode_test(body_of(reserved)); }, "TEST reserved byte is not zero");
  const auto size = test_with_zero(4);
  expect_error_containing([&] { common::decode_test(body_of(size)); }, "TEST message size 0");
  const auto iters = test_with_zero(8);
  expect_error_containing([&] { common::decode_test(body_of(iters)); }, "TEST of 0 iterations");
  const auto window = test_with_zero(12);
  expect_error_containing([&] { common::decode_test(body_of(window)); }, "TEST window 0");
  // Test number 0 is a valid seed.
  const auto number = test_with_zero(16);
  EXPECT_EQ(common::decode_test(body_of(number)).number, 0u);
}

TEST(Exchange, TestOfTheWrongLengthIsRefused) {
  const auto msg = common::encode_test(sample_test());
  expect_error_containing([&] { common::decode_test(body_of(msg).first(19)); }, "TEST body is 19 bytes, expected 20");
  auto longer = msg;
  longer.push_back(0);
  expect_error_containing([&] { common::decode_test(body_of(longer)); }, "TEST body is 21 bytes, expected 20");
  expect_error_containing([&] { common::decode_test({}); }, "TEST body is 0 bytes, expected 20");
  // The header's length must be exactly 20 for type 6, whatever follows.
  for (const int length : {0, 19, 21, 36}) {
    auto head = msg;
    head[11] = static_cast<std::uint8_t>(length);
    expect_error_containing([&] { common::decode_header(head); },
                            "TEST with a body of " + std::to_string(length) + " bytes");
  }
  auto huge = msg;
  huge[8] = 0x7f;  // ~2 GiB
  expect_error_containing([&] { common::decode_header(huge); }, "TEST with a body of 2130706452 bytes");
  // Type 7 is BREAK now (lesson 07): a TEST header retyped to 7 is a BREAK of 20 bytes.
  auto seven = msg;
  seven[5] = 7;
  EXPECT_EQ(common::decode_header(seven).type, common::MessageType::break_case);
}

namespace {

/// The bytes of @p text, as a body.
std::vector<std::uint8_t> bytes_of(const std::string& text) { return std::vector<std::uint8_t>(text.begin(), text.end()); }

/// Names encode_break and decode_break refuse, each with the text its refusal must hold.
const std::vector<std::pair<std::string, std::string>>& bad_break_names() {
  static const std::vector<std::pair<std::string, std::string>> names = {
      {"", "BREAK name of 0 bytes (1..32)"},
      {std::string(33, 'a'), "BREAK name of 33 bytes (1..32)"},
      {"Bad-rkey", "BREAK name has byte 0x42 (only a-z, 0-9 and '-')"},
      {"bad rkey", "BREAK name has byte 0x20"},
      {"bad/rkey", "BREAK name has byte 0x2f"},
      {"bad_rkey", "BREAK name has byte 0x5f"},
      {"rkey\xc3\xa9", "BREAK name has byte 0xc3"},  // "rkeyé" in UTF-8: not ASCII
      {std::string("bad\0rkey", 8), "BREAK name has byte 0x00"},
      {"bad-rkey\n", "BREAK name has byte 0x0a"},
  };
  return names;
}

}  // namespace

TEST(Exchange, BreakRoundTripsWithExplicitLayout) {
  const auto msg = common::encode_break("bad-rkey");
  ASSERT_EQ(msg.size(), common::kHeaderSize + 8);
  // Header: "RDMT", version 1, type 7, reserved 0, length 8 big-endian; the body is the name.
  const std::vector<std::uint8_t> head(msg.begin(), msg.begin() + 12);
  EXPECT_EQ(head, (std::vector<std::uint8_t>{'R', 'D', 'M', 'T', 1, 7, 0, 0, 0, 0, 0, 8}));
  EXPECT_EQ(std::vector<std::uint8_t>(msg.begin() + 12, msg.end()), bytes_of("bad-rkey"));
  const auto header = common::decode_header(msg);
  EXPECT_EQ(header.type, common::MessageType::break_case);
  EXPECT_EQ(header.body_length, 8u);
  EXPECT_EQ(common::message_type_name(common::MessageType::break_case), "BREAK");
  EXPECT_EQ(common::decode_break(body_of(msg)), "bad-rkey");
  // The shortest and longest names, and every allowed character.
  for (const std::string& name : {std::string("a"), std::string(common::kMaxBreakName, 'z'), std::string("0-9"),
                                 std::string("abcdefghijklmnopqrstuvwxyz-0189"), std::string("-")}) {
    const auto m = common::encode_break(name);
    const auto h = common::decode_header(m);
    EXPECT_EQ(h.type, common::MessageType::break_case);
    EXPECT_EQ(h.body_length, name.size());
    const std::string back = common::decode_break(body_of(m));
    EXPECT_EQ(back, name);
    EXPECT_EQ(common::encode_break(back), m);
  }
}

TEST(Exchange, BreakNamesOutsideTheAlphabetOrLengthAreRefused) {
  for (const auto& [name, needle] : bad_break_names()) {
    SCOPED_TRACE("name of " + std::to_string(name.size()) + " bytes");
    expect_error_containing([&] { common::encode_break(name); }, needle);
    const auto body = bytes_of(name);
    expect_error_containing([&] { common::decode_break(body); }, needle);
    expect_error_containing([&] { common::decode_break(body); }, "malformed exchange message");
  }
}

TEST(Exchange, BreakHeaderOfTheWrongLengthIsRefused) {
  const auto msg = common::encode_break("bad-rkey");
  for (const int length : {0, 33, 36, 255}) {
    auto head = msg;
    head[11] = static_cast<std::uint8_t>(length);
    expect_error_containing([&] { common::decode_header(head); },
                            "BREAK with a body of " + std::to_string(length) + " bytes");
  }
  for (const int length : {1, 32}) {
    auto head = msg;
    head[11] = static_cast<std::uint8_t>(length);
    EXPECT_EQ(common::decode_header(head).body_length, static_cast<std::uint32_t>(length));
  }
  auto huge = msg;
  huge[8] = 0x7f;  // ~2 GiB
  expect_error_containing([&] { common::decode_header(huge); }, "BREAK with a body of 2130706440 bytes");
  // BREAK is the last type: 8 is unknown.
  auto eight = msg;
  eight[5] = 8;
  expect_error_containing([&] { common::decode_header(eight); }, "unknown message type 8");
  EXPECT_EQ(common::message_type_name(static_cast<common::MessageType>(8)), "type 8");
}

TEST(Exchange, ErrorTextIsSanitised) {
  const std::vector<std::uint8_t> body = {'b', 'a', 'd', 0x1b, '[', '2', 'J', 0xff};
  EXPECT_EQ(common::decode_error(body), "bad?[2J?");
  expect_error_containing([&] { common::decode_error({}); }, "ERROR text of 0 bytes");
}

TEST(Exchange, RandomBytesNeverCrashAndAreAlmostAlwaysRefused) {
  std::mt19937 rng(20261120);
  std::uniform_int_distribution<int> byte(0, 255), len(0, 64);
  int accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    std::vector<std::uint8_t> buf(static_cast<std::size_t>(len(rng)));
    for (auto& b : buf) b = static_cast<std::uint8_t>(byte(rng));
    if (i % 2 == 0 && buf.size() >= 4) std::memcpy(buf.data(), "RDMT", 4);  // get past the magic
    try {
      common::decode_header(buf);
      ++accepted;
    } catch (const Error&) {
    }
    try {
      common::decode_hello(buf);
      ++accepted;
    } catch (const Error&) {
    }
  }
  // Valid-looking headers need magic, version, type, zero reserved bytes and a matching
  // length; random data almost never has all of them.
  EXPECT_LT(accepted, 10);
}

// --- the TCP channel, over loopback --------------------------------------------------

namespace {

/// The deadline of every wait that is expected to succeed: generous, so that a loaded
/// machine never turns a success into a timeout.
constexpr double kWait = 30.0;

// A raw TCP peer that connects to `port` (retrying, bounded, until the test listens) and
// writes `bytes`, then optionally lingers.
void raw_peer(std::uint16_t port, std::vector<std::uint8_t> bytes, bool hold_open) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  for (int i = 0; i < 3000 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (!bytes.empty()) (void)!::write(fd, bytes.data(), bytes.size());
  if (hold_open) {
    char c;
    (void)!::read(fd, &c, 1);  // until the server side closes
  }
  ::close(fd);
}

std::uint16_t test_port() {
  static std::uint16_t next = static_cast<std::uint16_t>(20000 + ::getpid() % 20000);
  return next++;
}

// Accept one raw peer sending `bytes` and try to receive a HELLO from it. A peer that
// sends nothing and holds the connection open is waited for 0.5 s (the timeout is what
// that case tests); every other wait is kWait.
void receive_from_raw_peer(std::vector<std::uint8_t> bytes, bool hold_open, const std::string& needle) {
  const std::uint16_t port = test_port();
  const double wait = bytes.empty() && hold_open ? 0.5 : kWait;
  std::thread peer(raw_peer, port, bytes, hold_open);
  {
    auto channel = common::Channel::accept_one(port, kWait);
    expect_error_containing([&] { channel.receive_hello(wait); }, needle);
  }  // the channel closes here, releasing a peer that holds the connection open
  peer.join();
}

}  // namespace

TEST(Channel, HelloAndReadyCrossLoopback) {
  const std::uint16_t port = test_port();
  std::thread client([port] {
    auto ch = common::Channel::connect_with_retry("127.0.0.1", port, kWait);
    ch.send(common::encode_hello(sample_hello()), kWait);
    ch.receive_ready(kWait);
  });
  auto server = common::Channel::accept_one(port, kWait);
  EXPECT_EQ(server.receive_hello(kWait).psn, 0xabcdefu);
  server.send(common::encode_ready(), kWait);
  client.join();
}

TEST(Channel, GarbageFromThePeerIsRefused) {
  receive_from_raw_peer({'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1'}, false, "magic");
}

TEST(Channel, TruncatedMessageFromAPeerThatClosesIsRefused) {
  auto msg = common::encode_hello(sample_hello());
  msg.resize(20);  // header plus 8 of 36 body bytes, then the peer closes
  receive_from_raw_peer(msg, false, "closed the connection after 8 of 36 bytes");
}

TEST(Channel, SilentPeerTimesOut) {
  receive_from_raw_peer({}, true, "no message header");
}

TEST(Channel, ErrorFromThePeerBecomesAClearError) {
  receive_from_raw_peer(common::encode_error("server buffer too small"), false,
                        "refused: server buffer too small");
}

TEST(Channel, ConnectToNobodyGivesUpWithinTheDeadline) {
  const auto start = std::chrono::steady_clock::now();
  expect_error_containing([] { common::Channel::connect_with_retry("127.0.0.1", 1, 0.5); },
                          "could not connect to 127.0.0.1:1");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));  // gives up, bounded
}

TEST(Channel, UnresolvableHostIsRefusedAtOnce) {
  expect_error_containing([] { common::Channel::connect_with_retry("no-such-host.invalid", 1, 5); },
                          "cannot resolve");
}
