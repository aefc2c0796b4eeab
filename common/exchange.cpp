#include "common/exchange.hpp"

#include <cstring>

#include "common/errors.hpp"

namespace common {
namespace {

const char* kRemedy =
    "the peer is not this lesson's program of the same version: start both sides from "
    "the same build, and check that nothing else listens on that port";

void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}
void put16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}
std::uint32_t get32(std::span<const std::uint8_t> b, std::size_t off) {
  return std::uint32_t{b[off]} << 24 | std::uint32_t{b[off + 1]} << 16 |
         std::uint32_t{b[off + 2]} << 8 | std::uint32_t{b[off + 3]};
}
std::uint16_t get16(std::span<const std::uint8_t> b, std::size_t off) {
  return static_cast<std::uint16_t>(b[off] << 8 | b[off + 1]);
}

std::vector<std::uint8_t> header(MessageType type, std::size_t body_length) {
  std::vector<std::uint8_t> out(std::begin(kWireMagic), std::end(kWireMagic));
  out.push_back(kWireVersion);
  out.push_back(static_cast<std::uint8_t>(type));
  put16(out, 0);
  put32(out, static_cast<std::uint32_t>(body_length));
  return out;
}

[[noreturn]] void malformed(const std::string& what) {
  fail("malformed exchange message: " + what, kRemedy);
}

}  // namespace

std::string message_type_name(MessageType type) {
  switch (type) {
    case MessageType::hello: return "HELLO";
    case MessageType::ready: return "READY";
    case MessageType::error: return "ERROR";
    case MessageType::qp_info: return "QP_INFO";
    case MessageType::done: return "DONE";
    case MessageType::test: return "TEST";
    case MessageType::break_case: return "BREAK";
  }
  return "type " + std::to_string(static_cast<int>(type));
}

std::vector<std::uint8_t> encode_hello(const Hello& h) {
  std::vector<std::uint8_t> out = header(MessageType::hello, kHelloSize);
  put32(out, h.qpn);
  put32(out, h.psn);
  put16(out, h.lid);
  out.push_back(static_cast<std::uint8_t>(h.mtu));
  out.push_back(0);
  out.insert(out.end(), std::begin(h.gid.raw), std::end(h.gid.raw));
  put32(out, h.msg_size);
  put32(out, h.msg_count);
  return out;
}

std::vector<std::uint8_t> encode_qp_info(const QpInfo& info) {
  std::vector<std::uint8_t> out = encode_hello(info.qp);
  // Same body as a HELLO, then the buffer; only the header's type and length differ.
  out[5] = static_cast<std::uint8_t>(MessageType::qp_info);
  const std::uint32_t length = kQpInfoSize;
  for (int i = 0; i < 4; ++i) out[8 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(length >> (24 - 8 * i));
  put32(out, static_cast<std::uint32_t>(info.addr >> 32));
  put32(out, static_cast<std::uint32_t>(info.addr));
  put32(out, info.rkey);
  put32(out, info.length);
  return out;
}

std::vector<std::uint8_t> encode_test(const TestSpec& t) {
  std::vector<std::uint8_t> out = header(MessageType::test, kTestSize);
  out.push_back(static_cast<std::uint8_t>(t.op));
  out.push_back(static_cast<std::uint8_t>(t.pattern));
  out.push_back(static_cast<std::uint8_t>((t.use_inline ? 1 : 0) | (t.use_event ? 2 : 0)));
  out.push_back(0);
  put32(out, t.size);
  put32(out, t.iters);
  put32(out, t.window);
  put32(out, t.number);
  return out;
}

std::vector<std::uint8_t> encode_ready() { return header(MessageType::ready, 0); }
std::vector<std::uint8_t> encode_done() { return header(MessageType::done, 0); }

std::vector<std::uint8_t> encode_error(const std::string& reason) {
  const std::string text = reason.empty() ? "refused" : reason.substr(0, kMaxErrorText);
  std::vector<std::uint8_t> out = header(MessageType::error, text.size());
  out.insert(out.end(), text.begin(), text.end());
  return out;
}

namespace {

/// Why @p name is not a BREAK name (1..kMaxBreakName of a-z, 0-9, '-'), or empty if it is one.
std::string break_name_problem(std::span<const std::uint8_t> name) {
  if (name.empty() || name.size() > kMaxBreakName)
    return "BREAK name of " + std::to_string(name.size()) + " bytes (1.." + std::to_string(kMaxBreakName) + ")";
  for (const std::uint8_t c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return "BREAK name has byte 0x" + [c] {
        char hex[3];
        std::snprintf(hex, sizeof hex, "%02x", c);
        return std::string(hex);
      }() + " (only a-z, 0-9 and '-')";
  return "";
}

}  // namespace

std::vector<std::uint8_t> encode_break(const std::string& name) {
  const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(name.data()), name.size());
  if (const std::string problem = break_name_problem(bytes); !problem.empty())
    fail(problem, "name a case that `client --list` shows");
  std::vector<std::uint8_t> out = header(MessageType::break_case, name.size());
  out.insert(out.end(), name.begin(), name.end());
  return out;
}

Header decode_header(std::span<const std::uint8_t> b) {
  if (b.size() < kHeaderSize)
    malformed("header is " + std::to_string(b.size()) + " bytes, needs " +
              std::to_string(kHeaderSize));
  if (std::memcmp(b.data(), kWireMagic, sizeof kWireMagic) != 0) {
    char seen[48];
    std::snprintf(seen, sizeof seen, "%02x %02x %02x %02x", b[0], b[1], b[2], b[3]);
    malformed(std::string("magic is ") + seen + ", expected 52 44 4d 54 (\"RDMT\")");
  }
  if (b[4] != kWireVersion)
    fail("exchange message has version " + std::to_string(b[4]) + ", this build speaks " +
             std::to_string(kWireVersion),
         "rebuild both sides from the same source tree");
  if (get16(b, 6) != 0) malformed("reserved bytes are not zero");
  Header h;
  h.type = static_cast<MessageType>(b[5]);
  h.body_length = get32(b, 8);
  const auto length_is = [&](bool ok) {
    if (!ok)
      malformed(message_type_name(h.type) + " with a body of " + std::to_string(h.body_length) +
                " bytes");
  };
  switch (h.type) {
    case MessageType::hello: length_is(h.body_length == kHelloSize); break;
    case MessageType::ready:
    case MessageType::done: length_is(h.body_length == 0); break;
    case MessageType::error: length_is(h.body_length >= 1 && h.body_length <= kMaxErrorText); break;
    case MessageType::qp_info: length_is(h.body_length == kQpInfoSize); break;
    case MessageType::test: length_is(h.body_length == kTestSize); break;
    case MessageType::break_case: length_is(h.body_length >= 1 && h.body_length <= kMaxBreakName); break;
    default: malformed("unknown message type " + std::to_string(b[5]));
  }
  return h;
}

Hello decode_hello(std::span<const std::uint8_t> b) {
  if (b.size() != kHelloSize)
    malformed("HELLO body is " + std::to_string(b.size()) + " bytes, expected " +
              std::to_string(kHelloSize));
  Hello h;
  h.qpn = get32(b, 0);
  h.psn = get32(b, 4);
  h.lid = get16(b, 8);
  const std::uint8_t mtu = b[10];
  std::memcpy(h.gid.raw, b.data() + 12, sizeof h.gid.raw);
  h.msg_size = get32(b, 28);
  h.msg_count = get32(b, 32);
  // QPN 0 and 1 are the special management QPs; a connected QP is never one of them.
  if (h.qpn < 2 || h.qpn > kMax24Bit) malformed("QPN " + std::to_string(h.qpn) + " is not a 24-bit RC QP number");
  if (h.psn > kMax24Bit) malformed("PSN " + std::to_string(h.psn) + " does not fit in 24 bits");
  if (mtu < IBV_MTU_256 || mtu > IBV_MTU_4096)
    malformed("MTU code " + std::to_string(mtu) + " is not 1..5 (256..4096 bytes)");
  h.mtu = static_cast<ibv_mtu>(mtu);
  if (b[11] != 0) malformed("HELLO reserved byte is not zero");
  if (h.msg_size == 0) malformed("message size 0");
  return h;
}

QpInfo decode_qp_info(std::span<const std::uint8_t> b) {
  if (b.size() != kQpInfoSize)
    malformed("QP_INFO body is " + std::to_string(b.size()) + " bytes, expected " + std::to_string(kQpInfoSize));
  QpInfo info;
  info.qp = decode_hello(b.subspan(0, kHelloSize));
  info.addr = (std::uint64_t{get32(b, 36)} << 32) | get32(b, 40);
  info.rkey = get32(b, 44);
  info.length = get32(b, 48);
  if (info.addr + info.length < info.addr) malformed("QP_INFO buffer wraps around the address space");
  if ((info.addr != 0 || info.rkey != 0) && info.length == 0) malformed("QP_INFO buffer of 0 bytes");
  return info;
}

TestSpec decode_test(std::span<const std::uint8_t> b) {
  if (b.size() != kTestSize)
    malformed("TEST body is " + std::to_string(b.size()) + " bytes, expected " + std::to_string(kTestSize));
  if (b[0] < 1 || b[0] > 4) malformed("TEST op " + std::to_string(b[0]) + " is not 1..4 (SEND, WRITE, WRITE_WITH_IMM, READ)");
  if (b[1] < 1 || b[1] > 2) malformed("TEST pattern " + std::to_string(b[1]) + " is not 1 (ping-pong) or 2 (stream)");
  if (b[2] > 3) malformed("TEST flags " + std::to_string(b[2]) + " have bits other than 0 (inline) and 1 (event)");
  if (b[3] != 0) malformed("TEST reserved byte is not zero");
  TestSpec t;
  t.op = static_cast<TestOp>(b[0]);
  t.pattern = static_cast<TestPattern>(b[1]);
  t.use_inline = (b[2] & 1) != 0;
  t.use_event = (b[2] & 2) != 0;
  t.size = get32(b, 4);
  t.iters = get32(b, 8);
  t.window = get32(b, 12);
  t.number = get32(b, 16);
  if (t.pattern == TestPattern::ping_pong && t.op != TestOp::send) malformed("TEST ping-pong with an op other than SEND");
  if (t.size == 0) malformed("TEST message size 0");
  if (t.iters == 0) malformed("TEST of 0 iterations");
  if (t.window == 0) malformed("TEST window 0");
  return t;
}

std::string decode_error(std::span<const std::uint8_t> b) {
  if (b.empty() || b.size() > kMaxErrorText)
    malformed("ERROR text of " + std::to_string(b.size()) + " bytes");
  std::string text;
  for (const std::uint8_t c : b) text.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  return text;
}

std::string decode_break(std::span<const std::uint8_t> b) {
  if (const std::string problem = break_name_problem(b); !problem.empty()) malformed(problem);
  return std::string(b.begin(), b.end());
}

}  // namespace common
