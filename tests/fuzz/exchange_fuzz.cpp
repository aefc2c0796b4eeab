// libFuzzer target for the out-of-band exchange format (common/exchange.hpp): the HELLO,
// READY, ERROR, QP_INFO, DONE, TEST and BREAK messages that lessons 01, 06 and 07 read from
// a TCP connection and lesson 05 from a TLS one. Built and run by run_fuzz.sh with ASan + UBSan, so an
// out-of-bounds read, an overflow or a leak is a crash.
//
// One input is the byte stream a receiver reads from its peer. It is cut the way
// Channel::receive (common/tcp.cpp) and TlsChannel::receive (lesson 05) cut it: exactly 12
// bytes for decode_header, then exactly body_length bytes, again and again. The first
// header decode_header refuses ends the stream, as it ends the connection; so does a
// stream that stops inside a message (the peer closed). Each body goes to the decoder of
// its type, as the lessons' servers and clients call them (decode_hello, decode_qp_info,
// decode_error, decode_test, decode_break), and to the other four as well: a decoder must check its
// own length whatever the header claimed. Whatever is left after the last whole message,
// if shorter than a header, is given to decode_header too, which must refuse it.
//
// Besides "no crash", these must hold; a violation traps, which libFuzzer reports like a
// crash:
//   - a decoder refuses only by throwing common::Error, with a reason and a remedy;
//   - an accepted header is byte for byte the header the encoders write for that type and
//     body length, and the length is within its type's bounds (HELLO 36, QP_INFO 52,
//     TEST 20, ERROR 1..kMaxErrorText, BREAK 1..kMaxBreakName, READY and DONE 0);
//   - an accepted HELLO or QP_INFO has its fields in range (QPN 2..2^24-1, PSN < 2^24,
//     MTU code 1..5, message size >= 1, a buffer that does not wrap and has a length if
//     it has an address or rkey) and re-encodes to exactly the header and body received;
//   - an accepted TEST has its fields in range (op 1..4, pattern 1..2 and ping-pong only
//     with SEND, size, iterations and window >= 1) and re-encodes to exactly the header
//     and body received (so the flags byte held only the inline and event bits and the
//     reserved byte was 0);
//   - an accepted ERROR text has one printable character per body byte (the byte itself,
//     or '?' for a byte that is not printable ASCII) and re-encodes to the same header;
//   - an accepted BREAK name is the body itself, 1..kMaxBreakName bytes of a-z, 0-9 and
//     '-', and re-encodes to exactly the header and body received; a body that
//     decode_break refuses, encode_break refuses too (they apply one rule).
//
// Built with -DFUZZ_SEED_MODE instead, the file is a tool that writes the seed corpus:
// `exchange_seed OUT_DIR` writes the streams the lessons' own encoders produce (lesson
// 01's client and server conversations, lesson 05's, lesson 06's, lesson 07's, a refusal). run_fuzz.sh adds the
// streams recorded in captures/01-verbs-send-recv/lesson01.pcap (capture_seeds.py).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/errors.hpp"
#include "common/exchange.hpp"
#include "fuzz_support.hpp"

namespace {

using Bytes = std::vector<std::uint8_t>;
using fuzz_support::check;
using fuzz_support::check_refusal;
using fuzz_support::printable;

/// The 12-byte header the encoders write for a message of @p type with a body of
/// @p length bytes (the encoders are the reference the decoder must agree with).
Bytes encoder_header(common::MessageType type, std::size_t length) {
  Bytes m;
  switch (type) {
    case common::MessageType::hello: m = common::encode_hello({}); break;
    case common::MessageType::qp_info: m = common::encode_qp_info({}); break;
    case common::MessageType::ready: m = common::encode_ready(); break;
    case common::MessageType::done: m = common::encode_done(); break;
    case common::MessageType::error: m = common::encode_error(std::string(length, 'x')); break;
    case common::MessageType::test: m = common::encode_test({}); break;
    case common::MessageType::break_case: m = common::encode_break(std::string(length, 'x')); break;
  }
  check(m.size() == common::kHeaderSize + length);
  return Bytes(m.begin(), m.begin() + common::kHeaderSize);
}

Bytes concat(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  Bytes out(a.begin(), a.end());
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

void check_hello_fields(const common::Hello& h) {
  check(h.qpn >= 2 && h.qpn <= common::kMax24Bit);
  check(h.psn <= common::kMax24Bit);
  check(h.mtu >= IBV_MTU_256 && h.mtu <= IBV_MTU_4096);
  check(h.msg_size >= 1);
}

/// The decoder of a fixed-size message (@p type, @p size bytes) on any body: accepted
/// only at that size, then @p check_fields holds and the message re-encodes exactly.
template <class Decode, class Encode, class CheckFields>
void try_fixed(std::span<const std::uint8_t> body, common::MessageType type, std::size_t size, Decode decode,
               Encode encode, CheckFields check_fields) {
  try {
    const auto decoded = decode(body);
    check(body.size() == size);
    check_fields(decoded);
    check(encode(decoded) == concat(encoder_header(type, body.size()), body));
  } catch (const common::Error& e) {
    check_refusal(e);
  }
}

/// decode_hello on any body: accepted only at 36 bytes, and then it re-encodes exactly.
void try_hello(std::span<const std::uint8_t> body) {
  try_fixed(
      body, common::MessageType::hello, common::kHelloSize,
      [](std::span<const std::uint8_t> b) { return common::decode_hello(b); },
      [](const common::Hello& h) { return common::encode_hello(h); }, check_hello_fields);
}

/// decode_qp_info on any body: accepted only at 52 bytes, and then it re-encodes exactly.
void try_qp_info(std::span<const std::uint8_t> body) {
  try_fixed(
      body, common::MessageType::qp_info, common::kQpInfoSize,
      [](std::span<const std::uint8_t> b) { return common::decode_qp_info(b); },
      [](const common::QpInfo& info) { return common::encode_qp_info(info); },
      [](const common::QpInfo& info) {
        check_hello_fields(info.qp);
        check(info.addr + info.length >= info.addr);  // no wrap-around
        check(info.length != 0 || (info.addr == 0 && info.rkey == 0));
      });
}

/// decode_test on any body: accepted only at 20 bytes, and then it re-encodes exactly.
void try_test(std::span<const std::uint8_t> body) {
  try_fixed(
      body, common::MessageType::test, common::kTestSize,
      [](std::span<const std::uint8_t> b) { return common::decode_test(b); },
      [](const common::TestSpec& t) { return common::encode_test(t); },
      [](const common::TestSpec& t) {
        const auto op = static_cast<unsigned>(t.op), pattern = static_cast<unsigned>(t.pattern);
        check(op >= 1 && op <= 4);
        check(pattern >= 1 && pattern <= 2);
        check(t.pattern != common::TestPattern::ping_pong || t.op == common::TestOp::send);
        check(t.size >= 1 && t.iters >= 1 && t.window >= 1);
      });
}

/// decode_error on any body: 1..kMaxErrorText bytes, one printable character per byte.
void try_error(std::span<const std::uint8_t> body) {
  try {
    const std::string text = common::decode_error(body);
    check(!body.empty() && body.size() <= common::kMaxErrorText);
    check(text.size() == body.size());
    for (std::size_t i = 0; i < body.size(); ++i)
      check(static_cast<std::uint8_t>(text[i]) == (printable(body[i]) ? body[i] : '?'));
    const Bytes again = common::encode_error(text);
    check(Bytes(again.begin(), again.begin() + common::kHeaderSize) ==
          encoder_header(common::MessageType::error, body.size()));
  } catch (const common::Error& e) {
    check_refusal(e);
  }
}

/// A byte a BREAK name may hold: a-z, 0-9 or '-'.
bool break_name_byte(std::uint8_t c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; }

/// decode_break on any body: accepted only as 1..kMaxBreakName bytes of a-z, 0-9 and '-',
/// returned unchanged, and then it re-encodes exactly; refused, and encode_break refuses
/// the same bytes.
void try_break(std::span<const std::uint8_t> body) {
  std::string name;
  try {
    name = common::decode_break(body);
  } catch (const common::Error& e) {
    check_refusal(e);
    bool encode_refused = false;
    try {
      (void)common::encode_break(std::string(body.begin(), body.end()));
    } catch (const common::Error& again) {
      check_refusal(again);
      encode_refused = true;
    }
    check(encode_refused);
    return;
  }
  check(!body.empty() && body.size() <= common::kMaxBreakName);
  check(name.size() == body.size());
  for (std::size_t i = 0; i < body.size(); ++i) check(break_name_byte(body[i]) && name[i] == static_cast<char>(body[i]));
  try {
    check(common::encode_break(name) == concat(encoder_header(common::MessageType::break_case, body.size()), body));
  } catch (const common::Error&) {
    check(false);  // a name the decoder accepted, the encoder must accept
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> stream(data, size);
  std::size_t at = 0;
  while (size - at >= common::kHeaderSize) {
    // What the receiver's read_exactly() hands decode_header: a private 12-byte buffer.
    const Bytes head(stream.begin() + at, stream.begin() + at + common::kHeaderSize);
    common::Header h;
    try {
      h = common::decode_header(head);
    } catch (const common::Error& e) {
      check_refusal(e);
      return 0;  // the receiver throws: the conversation is over
    }
    check(h.body_length <= common::kMaxErrorText);  // receivers size their buffer with it
    check(head == encoder_header(h.type, h.body_length));
    check(common::message_type_name(h.type).find("type ") != 0);  // a known type
    at += common::kHeaderSize;
    if (size - at < h.body_length) return 0;  // the peer closed inside the body
    // The receiver's body buffer, exactly body_length bytes (ASan sees any read past it).
    const Bytes body(stream.begin() + at, stream.begin() + at + h.body_length);
    at += h.body_length;
    switch (h.type) {
      case common::MessageType::hello:
      case common::MessageType::qp_info:
      case common::MessageType::error:
      case common::MessageType::test:
      case common::MessageType::break_case:
        try_hello(body);
        try_qp_info(body);
        try_test(body);
        try_error(body);
        try_break(body);
        break;
      case common::MessageType::ready:
      case common::MessageType::done:
        check(body.empty());  // nothing to decode: the type is the whole message
        break;
    }
  }
  if (at < size) {
    // A header cut short: decode_header must refuse it rather than read past it.
    const Bytes tail(stream.begin() + at, stream.end());
    bool refused = false;
    try {
      (void)common::decode_header(tail);
    } catch (const common::Error& e) {
      check_refusal(e);
      refused = true;
    }
    check(refused);
  }
  return 0;
}

#ifdef FUZZ_SEED_MODE
#include <filesystem>

namespace {

using fuzz_support::v4_mapped_gid;

common::Hello hello(std::uint32_t qpn, std::uint32_t psn, const char* ip, std::uint32_t size, std::uint32_t count) {
  common::Hello h;
  h.qpn = qpn;
  h.psn = psn;
  h.mtu = IBV_MTU_1024;
  h.gid = v4_mapped_gid(ip);
  h.msg_size = size;
  h.msg_count = count;
  return h;
}

/// A seed is the byte stream of @p messages, one after the other.
void write_seed(const std::filesystem::path& dir, const std::string& name, const std::vector<Bytes>& messages) {
  Bytes stream;
  for (const Bytes& m : messages) stream.insert(stream.end(), m.begin(), m.end());
  fuzz_support::write_seed_file(dir, name, stream);
}

void write_seeds(const std::filesystem::path& dir) {
  using namespace common;
  // Lesson 01: what its client sends (HELLO, then DONE) and what its server sends (HELLO,
  // READY, DONE), with the values of its default run (64-byte messages, 3 of them).
  const Hello client = hello(0x11, 0x348c21, "10.0.0.2", 64, 3);
  const Hello server = hello(0x11, 0xccab3c, "10.0.0.1", 4096, 3);
  write_seed(dir, "lesson01-client", {encode_hello(client), encode_done()});
  write_seed(dir, "lesson01-server", {encode_hello(server), encode_ready(), encode_done()});
  // Lesson 01's server refusing a client whose messages do not fit (server.cpp).
  write_seed(dir, "lesson01-refusal",
             {encode_error("client sends 8192-byte messages but the server's RECV buffer is 4096 bytes; "
                           "start the server with -s 8192 or more")});
  // Lesson 05: QP_INFO from the client (no buffer) and from the server (its slot).
  QpInfo ours{hello(0x12, 0x22ace1, "10.0.0.2", 256, 0), 0, 0, 0};
  QpInfo theirs{hello(0x12, 0x8ee2d2, "10.0.0.1", 256, 0), 0x7f5e44010d60, 0x504, 256};
  write_seed(dir, "lesson05-client", {encode_qp_info(ours), encode_done()});
  write_seed(dir, "lesson05-server", {encode_qp_info(theirs), encode_ready(), encode_done()});
  write_seed(dir, "lesson05-full", {encode_error("server full: 10 clients connected; try again later")});
  // Lesson 06: the client's QP_INFO (its largest message and window, no buffer), the
  // server's (its ring), then one measurement: TEST, READY, DONE both ways.
  QpInfo client06{hello(0x13, 0x5a17c3, "10.0.0.2", 64, 64), 0, 0, 0};
  QpInfo server06{hello(0x13, 0x0be9f1, "10.0.0.1", 64, 64), 0x7f3c98001000, 0x1a2b, 4096};
  TestSpec stream;
  stream.op = TestOp::write_imm;
  stream.pattern = TestPattern::stream;
  stream.use_inline = true;
  stream.size = 64;
  stream.iters = 500;
  stream.window = 64;
  stream.number = 9;
  write_seed(dir, "lesson06-conversation", {encode_qp_info(client06), encode_qp_info(server06), encode_test(stream),
                                            encode_ready(), encode_done(), encode_done()});
  TestSpec ping;
  ping.op = TestOp::send;
  ping.pattern = TestPattern::ping_pong;
  ping.use_event = true;
  ping.size = 1;
  ping.iters = 1;
  ping.window = 1;
  ping.number = 1;
  write_seed(dir, "lesson06-client", {encode_qp_info(client06), encode_test(ping), encode_done(), encode_done()});
  write_seed(dir, "lesson06-refusal",
             {encode_error("TEST 3 asks for 128 x 65536 bytes, more than the ring of 4096 bytes (window 64) "
                           "registered for this client")});
  // Lesson 07: the client names its case (BREAK), then QP_INFO both ways; and the server
  // refusing a name no case has (server.cpp answers an ERROR).
  QpInfo client07{hello(0x14, 0x1f2e3d, "10.0.0.2", 64, 1), 0, 0, 0};
  QpInfo server07{hello(0x14, 0x6a5b4c, "10.0.0.1", 64, 1), 0x7f11d0002000, 0x2c3d, 64};
  write_seed(dir, "lesson07-client", {encode_break("bad-rkey"), encode_qp_info(client07), encode_done()});
  write_seed(dir, "lesson07-server", {encode_qp_info(server07), encode_ready(), encode_done()});
  write_seed(dir, "lesson07-unknown-case",
             {encode_break("no-such-case"), encode_error("no case named 'no-such-case'")});
  // The edges of the ranges: the largest QPN and PSN, MTU 4096, the longest ERROR text, a
  // buffer that ends at the top of the address space, the shortest and longest BREAK names.
  Hello edge = hello(kMax24Bit, kMax24Bit, "10.0.0.1", 0xffffffff, 0xffffffff);
  edge.mtu = IBV_MTU_4096;
  TestSpec widest;
  widest.op = TestOp::read;
  widest.use_inline = widest.use_event = true;
  widest.size = widest.iters = widest.window = widest.number = 0xffffffff;
  write_seed(dir, "edges", {encode_hello(edge), encode_qp_info({edge, 0xffffffff00000000, 0xffffffff, 0xffffffff}),
                            encode_test(widest), encode_error(std::string(kMaxErrorText, '~')),
                            encode_break("a"), encode_break("abcdefghijklmnopqrstuvwxyz-0189z")});
}

}  // namespace

int main(int argc, char** argv) { return fuzz_support::seed_main(argc, argv, "exchange_seed", write_seeds); }
#endif
