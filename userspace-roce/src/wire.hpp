// RoCE v2 on the wire: the headers a reliable-connection (RC) queue pair sends, how they
// are laid out in a UDP datagram to port 4791, and the invariant CRC (ICRC) that ends
// every packet. Everything here is pure: no sockets, no queue pairs, no globals, so the
// unit tests and the fuzzer exercise exactly what the runtime uses.
//
// A RoCE v2 datagram (the UDP payload) is
//     BTH (12) | extension headers | payload | pad (0-3) | ICRC (4)
// The extension headers an RC opcode carries are fixed by the opcode (IBA vol 1, 9.2):
//     RETH (16: VA, R_Key, DMA length)   first/only RDMA WRITE, RDMA READ request
//     ImmDt (4)                          *_WITH_IMMEDIATE
//     AETH (4: syndrome, MSN)            ACK, first/last/only READ response
//     AtomicETH (28: VA, R_Key, swap/add, compare)   CMP_SWAP and FETCH_ADD requests
// All fields are big-endian. Nothing here ever copies a C struct onto the wire.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace uroce::wire {

/// The IANA port of RoCE v2; both our source and destination port.
constexpr uint16_t kRoceV2Port = 4791;
constexpr size_t kBthSize = 12;
constexpr size_t kRethSize = 16;
constexpr size_t kImmSize = 4;
constexpr size_t kAethSize = 4;
constexpr size_t kIcrcSize = 4;
constexpr size_t kAtomicEthSize = 28;
constexpr size_t kDethSize = 8;
/// The largest header stack an RC packet has: BTH + AtomicETH (an atomic request). What
/// this runtime sends is at most BTH + RETH + ImmDt (32 bytes): it never sends atomics.
constexpr size_t kMaxHeaderSize = kBthSize + kAtomicEthSize;
static_assert(kMaxHeaderSize >= kBthSize + kRethSize + kImmSize);
constexpr uint16_t kDefaultPkey = 0xFFFF;

// ---- PSNs: 24-bit sequence numbers that wrap ------------------------------------------
constexpr uint32_t kPsnMask = 0x00FFFFFF;
/// psn + n, modulo 2^24.
constexpr uint32_t psn_add(uint32_t psn, uint32_t n) { return (psn + n) & kPsnMask; }
/// a - b as a signed distance in the 24-bit circle: in [-2^23, 2^23). Positive means a is
/// "after" b. This is how a responder tells a duplicate (negative) from a packet that
/// skipped ahead (positive) across the wrap from 0xFFFFFF to 0.
constexpr int32_t psn_diff(uint32_t a, uint32_t b) {
  uint32_t d = (a - b) & kPsnMask;
  return d >= 0x800000u ? static_cast<int32_t>(d) - 0x1000000 : static_cast<int32_t>(d);
}

// ---- opcodes (RC: transport bits 000) ---------------------------------------------------
enum Opcode : uint8_t {
  kSendFirst = 0x00,
  kSendMiddle = 0x01,
  kSendLast = 0x02,
  kSendLastImm = 0x03,
  kSendOnly = 0x04,
  kSendOnlyImm = 0x05,
  kWriteFirst = 0x06,
  kWriteMiddle = 0x07,
  kWriteLast = 0x08,
  kWriteLastImm = 0x09,
  kWriteOnly = 0x0A,
  kWriteOnlyImm = 0x0B,
  kReadRequest = 0x0C,
  kReadResponseFirst = 0x0D,
  kReadResponseMiddle = 0x0E,
  kReadResponseLast = 0x0F,
  kReadResponseOnly = 0x10,
  kAcknowledge = 0x11,
  kAtomicAcknowledge = 0x12,
  kCompareSwap = 0x13,
  kFetchAdd = 0x14,
  /// UD SEND_ONLY (transport bits 011): the only non-RC opcode here, for the MADs of the
  /// communication manager, which travel as UD datagrams to QP 1 (gsi.h).
  kUdSendOnly = 0x64,
};

/// What an opcode carries and where it sits in a message.
struct OpcodeInfo {
  bool valid = false;   ///< an RC opcode this runtime knows
  bool reth = false;    ///< RETH: first/only RDMA WRITE, RDMA READ request
  bool imm = false;     ///< ImmDt: the *_WITH_IMMEDIATE opcodes
  bool aeth = false;    ///< AETH: ACK, first/last/only READ response
  bool atomic_eth = false;  ///< AtomicETH: CMP_SWAP and FETCH_ADD requests
  bool first = false;   ///< FIRST or ONLY: starts a message
  bool last = false;    ///< LAST or ONLY: ends a message
  bool request = false; ///< sent by a requester (SEND/WRITE/READ request, atomic)
  bool payload = false; ///< may carry payload bytes
  const char* name = "?";  ///< the opcode's name in IBA vol 1 table 38 (SEND_FIRST ...)
  bool deth = false;    ///< DETH: UD SEND_ONLY (the datagrams of QP 1)
};
/// What `opcode` carries; `valid` is false for an opcode this runtime does not handle.
OpcodeInfo opcode_info(uint8_t opcode);

/// Base Transport Header.
struct Bth {
  uint8_t opcode = 0;      ///< what the packet is (Opcode)
  bool solicited = false;  ///< SE: the responder should raise a solicited event
  bool migreq = true;      ///< M: path migration state. This runtime sends 1 on RC, rxe sends 0
                           ///< (lesson captures); neither looks at it on receive (no APM)
  uint8_t pad = 0;         ///< PadCnt: bytes added after the payload to reach 4-byte alignment
  uint16_t pkey = kDefaultPkey;  ///< P_Key: the partition (top bit: full member)
  uint32_t dest_qp = 0;    ///< 24 bits
  bool ack_req = false;    ///< A: the requester asks for an ACK of this packet
  uint32_t psn = 0;        ///< 24 bits
};

/// RDMA Extended Transport Header: where the one-sided operation goes.
struct Reth {
  uint64_t va = 0;      ///< the remote address
  uint32_t rkey = 0;    ///< the R_Key of the memory it is in
  uint32_t length = 0;  ///< of the whole message, not this packet
};

/// Datagram Extended Transport Header: what a UD packet carries in place of a connection.
/// The receiving QP accepts the datagram only if the Q_Key matches its own; the source QP
/// says where an answer goes.
struct Deth {
  uint32_t qkey = 0;
  uint32_t src_qp = 0;  ///< 24 bits
};

/// Atomic Extended Transport Header: the 8-byte word an atomic request works on and its
/// operands, in this order on the wire (as rxe_hdr.h's struct rxe_atmeth lays it out).
/// This runtime parses it only to answer the request: it implements no atomics (the
/// device's atomic_cap is IBV_ATOMIC_NONE).
struct AtomicEth {
  uint64_t va = 0;        ///< the remote address of the 8-byte word
  uint32_t rkey = 0;      ///< the R_Key of the memory that holds it
  uint64_t swap_add = 0;  ///< CMP_SWAP: the value to swap in; FETCH_ADD: the addend
  uint64_t compare = 0;   ///< CMP_SWAP: the value compared with; unused by FETCH_ADD
};

// AETH syndromes: top 3 bits say what it is, low 5 bits the detail.
constexpr uint8_t kAethAck = 0x00;      ///< 000 + credit count (0x1F: no credit information)
constexpr uint8_t kAethRnrNak = 0x20;   ///< 001 + RNR timer code
constexpr uint8_t kAethNak = 0x60;      ///< 011 + NAK code
constexpr uint8_t kNakPsnSequence = 0;
constexpr uint8_t kNakInvalidRequest = 1;
constexpr uint8_t kNakRemoteAccess = 2;
constexpr uint8_t kNakRemoteOperational = 3;
constexpr uint8_t kAckNoCreditLimit = 0x1F;

/// ACK Extended Transport Header: the responder's answer and its message count.
struct Aeth {
  /// What it is: ACK, RNR NAK or NAK (top 3 bits) and the detail (low 5)
  uint8_t syndrome = kAethAck | kAckNoCreditLimit;
  uint32_t msn = 0;  ///< 24 bits: how many messages the responder has completed
};
/// The kinds of AETH syndrome, by its top 3 bits.
enum class AethKind { ack, rnr_nak, nak, reserved };
/// The kind of an AETH syndrome.
AethKind aeth_kind(uint8_t syndrome);
/// "ACK", "RNR NAK", "NAK PSN sequence error", "NAK remote access error", ...
std::string aeth_text(uint8_t syndrome);

/// The RNR timer codes of IBA table 45, in microseconds (code 0 is the longest, 655.36 ms).
uint32_t rnr_timer_us(uint8_t code);
/// The retransmission timeout a QP's `timeout` attribute asks for: 4.096 us * 2^timeout
/// (0 means "infinite" in the spec; callers decide what to do with it).
uint64_t transport_timeout_us(uint8_t timeout);

/// One decoded packet. `payload` points into the buffer that was parsed.
struct Packet {
  Bth bth;      ///< always there
  Reth reth;    ///< valid if opcode_info(bth.opcode).reth
  uint32_t imm = 0;  ///< as on the wire (big-endian bytes read into host order)
  Aeth aeth;    ///< valid if opcode_info(bth.opcode).aeth
  AtomicEth atomic;  ///< valid if opcode_info(bth.opcode).atomic_eth
  Deth deth;    ///< valid if opcode_info(bth.opcode).deth
  const uint8_t* payload = nullptr;  ///< the payload bytes (pad and ICRC excluded)
  size_t payload_len = 0;            ///< how many
};

/// Writes BTH and the opcode's extension headers of p into out (at least kMaxHeaderSize
/// bytes); returns how many bytes were written. p.bth.pad must already be set.
size_t encode_headers(const Packet& p, uint8_t* out);

/// Pad bytes needed after a payload of n bytes.
constexpr uint8_t pad_for(size_t n) { return static_cast<uint8_t>((4 - (n & 3)) & 3); }

/// The IPv4 and UDP facts the ICRC covers. Addresses and ports are in host order.
/// `dont_fragment` and `ip_id` are as the packet carries them: they are NOT masked by the
/// ICRC. The runtime sends with DF set and ID 0. A UDP socket never sees a received
/// packet's ID, and other senders (the kernel's rxe) vary it: a receiver sets
/// `ip_id_known = false`, and parse() then accepts the packet if some ID makes its ICRC
/// right (icrc_ip_id()).
struct Ipv4Flow {
  uint32_t src = 0;                  ///< IPv4 source address
  uint32_t dst = 0;                  ///< IPv4 destination address
  uint16_t src_port = kRoceV2Port;   ///< UDP source port
  uint16_t dst_port = kRoceV2Port;   ///< UDP destination port
  uint16_t ip_id = 0;                ///< IPv4 Identification
  bool dont_fragment = true;         ///< IPv4 DF flag
  bool ip_id_known = true;           ///< false: ip_id is ignored and solved for (receive)
};

/// ICRC of a RoCE v2 IPv4 packet whose UDP payload is the concatenation of `parts`
/// followed by the 4 ICRC bytes. Returns the value in the byte order it is stored on the
/// wire: write it with store_icrc().
uint32_t compute_icrc(const Ipv4Flow& flow, std::span<const std::span<const uint8_t>> parts);
/// CRC-32 (IEEE, reflected) continued over p[0..len): zlib's crc32() convention (start
/// with 0), computed with carry-less multiplication where the CPU has it (crc_method()).
uint32_t crc32_update(uint32_t crc, const uint8_t* p, size_t len);
/// How a CRC-32 is computed: zlib's tables; PCLMULQDQ folding 128 bits a multiply (inputs
/// of 64 bytes and more); VPCLMULQDQ with AVX-512 folding four 128-bit lanes at once
/// (inputs of 256 bytes and more; shorter ones as with PCLMULQDQ).
enum class CrcMethod { table, clmul128, clmul512 };
/// The fastest method this CPU has: the one crc32_update uses.
CrcMethod crc_method();
bool crc_method_available(CrcMethod m);
const char* crc_method_name(CrcMethod m);
/// crc32_update with the given method, which must be available (for tests and benchmarks).
uint32_t crc32_update_with(CrcMethod m, uint32_t crc, const uint8_t* p, size_t len);
/// Stores an ICRC value as the wire has it (little-endian, as the Linux rxe driver and
/// hardware do).
void store_icrc(uint32_t icrc, uint8_t* out);
uint32_t load_icrc(const uint8_t* in);

/// The IPv4 Identification that makes the ICRC stored at the end of `udp_payload` (BTH ..
/// ICRC, `len` bytes) right for `flow` (whose ip_id is ignored), if there is one.
///
/// Why this works: the CRC is affine over GF(2). Changing the ID by d changes the ICRC by
/// M*d, where M (32 x 16 bits) depends only on how many bytes follow the ID field, and M
/// is injective (CRC-32 detects every burst of up to 32 bits, so no nonzero d leaves the
/// CRC unchanged). So ICRC(received) xor ICRC(ID 0) must equal M*id for exactly one id,
/// or for none: elimination over 16 unknowns finds it. A packet corrupted on the way then
/// still fails unless the corruption happens to look like an ID change: about 1 in 2^16
/// random corruptions instead of 1 in 2^32 when the ID is known. CRC-32's guarantees for
/// short error patterns are lost, though: some two-bit errors at fixed distances from the
/// ID field always pass (tests/unit/icrc_test.cpp, IcrcUnknownId).
std::optional<uint16_t> icrc_ip_id(const Ipv4Flow& flow, const uint8_t* udp_payload, size_t len);

enum class ParseStatus {
  ok,
  too_short,       ///< shorter than BTH + its headers + ICRC
  bad_version,     ///< BTH TVer not 0
  unknown_opcode,  ///< not an RC opcode (or UD SEND_ONLY) this runtime handles
  bad_pad,         ///< PadCnt larger than the payload area, or payload on an opcode without
  bad_icrc,
};
const char* parse_status_text(ParseStatus s);

/// Parses one UDP payload (BTH .. ICRC). Checks the ICRC against `flow` unless
/// `check_icrc` is false (with `flow.ip_id_known` false: against some IPv4 ID, see
/// icrc_ip_id). Never reads outside [data, data + len).
ParseStatus parse(const uint8_t* data, size_t len, const Ipv4Flow& flow, Packet& out,
                  bool check_icrc = true);

}  // namespace uroce::wire
