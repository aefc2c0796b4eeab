/**
 * @file exchange.hpp
 * @brief The out-of-band wire format: how two sides tell each other their QP details.
 *
 * An RC QP can reach RTR only once it knows the peer's QP number, first PSN and address.
 * Those travel over an ordinary TCP connection first. Sending a C struct as raw bytes
 * (as many examples do) breaks between hosts of different endianness, compilers that pad
 * differently, or builds of different versions, and trusts whatever arrives. So every
 * message here has an explicit layout, all integers big-endian (network order):
 *
 * @code
 *  header (12 bytes)                    HELLO body (36 bytes)
 *  off size field                       off size field
 *   0   4   magic "RDMT"                  0   4   QPN        (24 bits used)
 *   4   1   version (1)                   4   4   PSN        (24 bits used)
 *   5   1   type (below)                  8   2   LID        (0 on RoCE)
 *   6   2   reserved, 0                  10   1   MTU        (ibv_mtu: 1=256 .. 5=4096)
 *   8   4   body length                  11   1   reserved, 0
 *                                        12  16   GID        (IPv6 byte order already)
 *  type 1 HELLO:   the body at right     28   4   message size in bytes
 *  type 2 READY:   empty body            32   4   message count (0 = interactive)
 *  type 3 ERROR:   1..512 bytes of text
 *  type 4 QP_INFO: HELLO's 36 bytes, then 8 addr, 4 rkey, 4 length (lesson 05)
 *  type 5 DONE:    empty body
 *  type 6 TEST:    20 bytes, lesson 06's next measurement (TestSpec, below)
 *  type 7 BREAK:   1..32 bytes, the name of the failure lesson 07 reproduces next
 * @endcode
 *
 * The decoder checks every field and throws common::Error with the value seen, so a
 * short, oversized, wrong-version or garbage message is refused before any of it is used.
 */
#pragma once

#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace common {

inline constexpr std::uint8_t kWireMagic[4] = {'R', 'D', 'M', 'T'};  ///< first 4 bytes of a message
inline constexpr std::uint8_t kWireVersion = 1;   ///< the layout version this build speaks
inline constexpr std::size_t kHeaderSize = 12;    ///< bytes in a header
inline constexpr std::size_t kHelloSize = 36;     ///< bytes in a HELLO body
inline constexpr std::size_t kQpInfoSize = 52;    ///< bytes in a QP_INFO body (HELLO's 36 + 16)
inline constexpr std::size_t kTestSize = 20;      ///< bytes in a TEST body (lesson 06)
inline constexpr std::size_t kMaxErrorText = 512; ///< longest ERROR body
inline constexpr std::size_t kMaxBreakName = 32;  ///< longest BREAK body (lesson 07)
inline constexpr std::uint32_t kMax24Bit = 0xFFFFFF;  ///< QPNs and PSNs are 24-bit numbers
static_assert(kMaxErrorText > kHelloSize, "the largest body is an ERROR text");

/// The kind of message (header byte 5).
enum class MessageType : std::uint8_t {
  hello = 1,  ///< my QP details (Hello)
  ready = 2,  ///< my QP is in RTR/RTS and my RECVs are posted: you may send
  error = 3,  ///< I refuse to go on; the body says why
  qp_info = 4, ///< my QP details and one buffer the peer may access (QpInfo; lesson 05)
  done = 5,   ///< all my RDMA work completed (every packet I sent was ACKed): you may tear down
  test = 6,   ///< the next measurement the client will run (TestSpec; lesson 06)
  break_case = 7  ///< the failure the client will reproduce next (lesson 07)
};

/// "HELLO", "READY", "ERROR", "QP_INFO", "DONE", "TEST", "BREAK" or "type 8".
std::string message_type_name(MessageType type);

/// What one side tells the other about its QP and the run it intends.
struct Hello {
  std::uint32_t qpn = 0;        ///< QP number (24 bits): the peer's dest_qp_num
  std::uint32_t psn = 0;        ///< first PSN this side sends (24 bits): the peer's rq_psn
  std::uint16_t lid = 0;        ///< port LID (InfiniBand; 0 on RoCE)
  ibv_mtu mtu = IBV_MTU_1024;   ///< this side's port active_mtu
  ibv_gid gid{};                ///< this side's GID: the peer's dgid
  std::uint32_t msg_size = 0;   ///< message size in bytes (>= 1)
  std::uint32_t msg_count = 0;  ///< number of messages, 0 = interactive
};

/**
 * A HELLO plus one remote buffer (lesson 05): the body is HELLO's 36 bytes followed by
 * addr (8), rkey (4) and length (4), big-endian. A side that exposes no buffer sends zeros.
 */
struct QpInfo {
  Hello qp;                  ///< QPN, PSN, LID, MTU, GID; msg_size / msg_count as in HELLO
  std::uint64_t addr = 0;    ///< a buffer the peer may RDMA WRITE/READ (0: none)
  std::uint32_t rkey = 0;    ///< its rkey
  std::uint32_t length = 0;  ///< its length in bytes
};

/// The operation a lesson 06 measurement posts (TEST byte 0).
enum class TestOp : std::uint8_t {
  send = 1,        ///< two-sided: each message consumes one of the server's RECVs
  write = 2,       ///< one-sided RDMA WRITE into the server's exposed buffer
  write_imm = 3,   ///< RDMA WRITE_WITH_IMM: a WRITE that also consumes a RECV (lesson 03)
  read = 4         ///< one-sided RDMA READ from the server's exposed buffer
};
/// How the server takes part in a lesson 06 measurement (TEST byte 1).
enum class TestPattern : std::uint8_t {
  ping_pong = 1,   ///< SEND only: the server echoes every message; one in flight
  stream = 2       ///< the client keeps up to `window` requests in flight; no echo
};
/**
 * TEST (lesson 06): the measurement the client runs next, so that the server can prepare
 * (post RECVs, fill or clear its exposed slots) before it answers READY. Body, big-endian:
 * @code
 *   off size field
 *    0   1   op        (TestOp: 1 SEND, 2 WRITE, 3 WRITE_WITH_IMM, 4 READ)
 *    1   1   pattern   (TestPattern: 1 ping-pong, 2 stream; ping-pong is SEND only)
 *    2   1   flags     (bit 0: inline, bit 1: sleep on the completion channel)
 *    3   1   reserved, 0
 *    4   4   message size in bytes (>= 1)
 *    8   4   iterations (>= 1)
 *   12   4   window: requests in flight at most, and slots used (>= 1)
 *   16   4   test number: the seed of the bytes every message carries
 * @endcode
 * The decoder checks what is true of every TEST; whether size and window fit the
 * server's buffers is the server's check.
 */
struct TestSpec {
  TestOp op = TestOp::send;                     ///< what the client posts
  TestPattern pattern = TestPattern::stream;    ///< ping-pong or stream
  bool use_inline = false;                      ///< post with IBV_SEND_INLINE (both sides)
  bool use_event = false;                       ///< wait on the completion channel (both sides)
  std::uint32_t size = 0;                       ///< bytes per message
  std::uint32_t iters = 0;                      ///< messages in the measurement
  std::uint32_t window = 1;                     ///< requests in flight at most (= slots)
  std::uint32_t number = 0;                     ///< test number, the data pattern's seed
};

/// A decoded header.
struct Header {
  MessageType type = MessageType::hello;  ///< the message kind (validated)
  std::uint32_t body_length = 0;          ///< body bytes that follow (validated per type)
};

/// HELLO message (header + body) ready to send.
std::vector<std::uint8_t> encode_hello(const Hello& hello);
/// QP_INFO message (header + body) ready to send.
std::vector<std::uint8_t> encode_qp_info(const QpInfo& info);
/// TEST message (header + body) ready to send.
std::vector<std::uint8_t> encode_test(const TestSpec& test);
/// READY message ready to send.
std::vector<std::uint8_t> encode_ready();
/// DONE message ready to send.
std::vector<std::uint8_t> encode_done();
/// ERROR message carrying @p reason (cut to kMaxErrorText bytes).
std::vector<std::uint8_t> encode_error(const std::string& reason);
/// BREAK message naming lesson 07's case @p name: 1..kMaxBreakName of a-z, 0-9 and '-'.
/// @throws Error if @p name is not such a name.
std::vector<std::uint8_t> encode_break(const std::string& name);

/// Validate and decode a header. @throws Error on a short header, wrong magic, other
/// version, unknown type, non-zero reserved bytes, or a length that does not fit the type.
Header decode_header(std::span<const std::uint8_t> bytes);
/// Validate and decode a HELLO body. @throws Error on a wrong length or any field out of range.
Hello decode_hello(std::span<const std::uint8_t> body);
/// Validate and decode a QP_INFO body: the HELLO checks, plus a buffer that does not wrap
/// around and is either all zero or has a non-zero length. @throws Error.
QpInfo decode_qp_info(std::span<const std::uint8_t> body);
/// Validate and decode a TEST body: op 1..4, pattern 1..2 (ping-pong only with SEND),
/// flags 0..3, reserved byte 0, size, iterations and window >= 1. @throws Error.
TestSpec decode_test(std::span<const std::uint8_t> body);
/// Decode an ERROR body; non-printable bytes are shown as '?'. @throws Error if empty or too long.
std::string decode_error(std::span<const std::uint8_t> body);
/// Decode a BREAK body: 1..kMaxBreakName bytes of a-z, 0-9 and '-'. Whether a case of that
/// name exists is lesson 07's check. @throws Error otherwise.
std::string decode_break(std::span<const std::uint8_t> body);

}  // namespace common
