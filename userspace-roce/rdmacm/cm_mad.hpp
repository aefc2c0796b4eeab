// The communication manager's messages on the wire (IBA vol 1 chapter 12.6): the 24-byte
// MAD common header and the CM attributes REQ, MRA, REJ, REP, RTU, DREQ and DREP, each
// field at its IBA bit position, big-endian, in a 256-byte MAD. Pure encode and decode: no
// state, no policy (which values the kernel puts in them is cm.cpp's business).
//
// Field positions: the MAD common header of IBA vol 1 chapter 13 (the kernel's struct
// ib_mad_hdr), and the message contents of IBA vol 1 tables 106-113, the same tables the
// Linux kernel declares in include/rdma/ibta_vol1_c12.h (there, byte offsets count from
// the end of the 24-byte MAD header; here, the Field constants of cm_mad.cpp count from
// the start of the MAD). Bits are numbered from a byte's MSB, as both do: the REQ's
// Transport Service Type, "byte 43, bit 5, width 2" in the kernel's header (byte 67
// here), is the byte's bits 2..1 counting its LSB as bit 0.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <variant>

namespace uroce::cm::mad {

constexpr size_t kMadSize = 256;
constexpr size_t kHeaderSize = 24;  ///< the MAD common header

// The common header's fixed values for every CM message (IBA vol 1 chapter 13; the
// kernel's constants named below).
constexpr uint8_t kBaseVersion = 1;     ///< IB_MGMT_BASE_VERSION
constexpr uint8_t kClassCm = 0x07;      ///< IB_MGMT_CLASS_CM
constexpr uint8_t kClassVersion = 2;    ///< IB_CM_CLASS_VERSION
constexpr uint8_t kMethodSend = 0x03;   ///< IB_MGMT_METHOD_SEND: CM messages are all Sends

enum class Attr : uint16_t {
  req = 0x0010,
  mra = 0x0011,
  rej = 0x0012,
  rep = 0x0013,
  rtu = 0x0014,
  dreq = 0x0015,
  drep = 0x0016,
};
const char* attr_name(uint16_t attr_id);
/// The attribute ID of an encoded MAD (its bytes 16-17, big-endian).
inline uint16_t attr_id_of(const uint8_t* mad) {
  return static_cast<uint16_t>(mad[16] << 8 | mad[17]);
}

// Private-data sizes: what is left of the 232-byte MAD data area after each message's
// fields (IB_CM_*_PRIVATE_DATA_SIZE in the kernel's include/rdma/ib_cm.h).
constexpr size_t kReqPrivate = 92;
constexpr size_t kMraPrivate = 222;
constexpr size_t kRejPrivate = 148;
constexpr size_t kRepPrivate = 196;
constexpr size_t kRtuPrivate = 224;
constexpr size_t kDreqPrivate = 220;
constexpr size_t kDrepPrivate = 224;
constexpr size_t kRejAriMax = 72;  ///< the REJ's Additional Rejection Information field

/// What an MRA or REJ refers to (IBA table 107 "Message MRAed", table 108 "Message
/// REJected"; the kernel's enum cm_msg_response).
enum class MsgResponse : uint8_t { req = 0, rep = 1, other = 2 };

using Gid = std::array<uint8_t, 16>;

/// The MAD common header (IBA vol 1 chapter 13; the kernel's struct ib_mad_hdr).
struct Header {
  uint8_t base_version = kBaseVersion;
  uint8_t mgmt_class = kClassCm;
  uint8_t class_version = kClassVersion;
  uint8_t method = kMethodSend;
  uint16_t status = 0;
  uint16_t class_specific = 0;
  uint64_t tid = 0;
  uint16_t attr_id = 0;
  uint32_t attr_mod = 0;
};

/// One path of a REQ (primary or alternate).
struct Path {
  uint16_t local_lid = 0;
  uint16_t remote_lid = 0;
  Gid local_gid{};
  Gid remote_gid{};
  uint32_t flow_label = 0;  ///< 20 bits
  uint8_t packet_rate = 0;  ///< 6 bits
  uint8_t traffic_class = 0;
  uint8_t hop_limit = 0;
  uint8_t sl = 0;           ///< 4 bits
  bool subnet_local = false;
  uint8_t local_ack_timeout = 0;  ///< 5 bits
};

struct Req {  // IBA table 106
  uint32_t local_comm_id = 0;
  uint64_t service_id = 0;
  uint64_t local_ca_guid = 0;
  uint32_t local_qkey = 0;
  uint32_t local_qpn = 0;             ///< 24 bits
  uint8_t responder_resources = 0;
  uint32_t local_eecn = 0;            ///< 24 bits
  uint8_t initiator_depth = 0;
  uint32_t remote_eecn = 0;           ///< 24 bits
  uint8_t remote_cm_response_timeout = 0;  ///< 5 bits
  uint8_t transport_service_type = 0;  ///< 2 bits: 0 RC, 1 UC, 2 RD, 3 extended
  bool end_to_end_flow_control = false;
  uint32_t starting_psn = 0;          ///< 24 bits
  uint8_t local_cm_response_timeout = 0;   ///< 5 bits
  uint8_t retry_count = 0;            ///< 3 bits
  uint16_t partition_key = 0;
  uint8_t path_mtu = 0;               ///< 4 bits, enum ibv_mtu
  bool rdc_exists = false;
  uint8_t rnr_retry_count = 0;        ///< 3 bits
  uint8_t max_cm_retries = 0;         ///< 4 bits
  bool srq = false;
  uint8_t extended_transport_type = 0;  ///< 3 bits (1: XRC, with transport type 3)
  Path primary;
  Path alternate;
  std::array<uint8_t, kReqPrivate> private_data{};
};

struct Mra {  // IBA table 107
  uint32_t local_comm_id = 0;
  uint32_t remote_comm_id = 0;
  MsgResponse message_mraed = MsgResponse::req;  ///< 2 bits
  uint8_t service_timeout = 0;                   ///< 5 bits
  std::array<uint8_t, kMraPrivate> private_data{};
};

struct Rej {  // IBA table 108
  uint32_t local_comm_id = 0;
  uint32_t remote_comm_id = 0;
  MsgResponse message_rejected = MsgResponse::req;  ///< 2 bits
  uint8_t ari_length = 0;                           ///< 7 bits, at most 72
  uint16_t reason = 0;
  std::array<uint8_t, kRejAriMax> ari{};
  std::array<uint8_t, kRejPrivate> private_data{};
};

struct Rep {  // IBA table 110
  uint32_t local_comm_id = 0;
  uint32_t remote_comm_id = 0;
  uint32_t local_qkey = 0;
  uint32_t local_qpn = 0;           ///< 24 bits
  uint32_t local_eecn = 0;          ///< 24 bits
  uint32_t starting_psn = 0;        ///< 24 bits
  uint8_t responder_resources = 0;
  uint8_t initiator_depth = 0;
  uint8_t target_ack_delay = 0;     ///< 5 bits
  uint8_t failover_accepted = 0;    ///< 2 bits
  bool end_to_end_flow_control = false;
  uint8_t rnr_retry_count = 0;      ///< 3 bits
  bool srq = false;
  uint64_t local_ca_guid = 0;
  std::array<uint8_t, kRepPrivate> private_data{};
};

struct Rtu {  // IBA table 111
  uint32_t local_comm_id = 0;
  uint32_t remote_comm_id = 0;
  std::array<uint8_t, kRtuPrivate> private_data{};
};

struct Dreq {  // IBA table 112
  uint32_t local_comm_id = 0;
  uint32_t remote_comm_id = 0;
  uint32_t remote_qpn = 0;  ///< 24 bits: the QPN of the DREQ's receiver
  std::array<uint8_t, kDreqPrivate> private_data{};
};

struct Drep {  // IBA table 113
  uint32_t local_comm_id = 0;
  uint32_t remote_comm_id = 0;
  std::array<uint8_t, kDrepPrivate> private_data{};
};

using Body = std::variant<Req, Mra, Rej, Rep, Rtu, Dreq, Drep>;

/// One CM MAD. `hdr.attr_id` is set by encode() from the body's type.
struct Mad {
  Header hdr;
  Body body;
};

/// Writes `m` into `out` (kMadSize bytes, every byte written: reserved ones are 0).
void encode(const Mad& m, uint8_t* out);

/// Reads one CM MAD. On a malformed one (wrong size, base version, class, class version or
/// method, an attribute that is not one of the seven above, a REJ ARI length over 72, a
/// "message MRAed/REJected" of 3) returns false with
/// `error` naming the field and the value seen. Reserved bits are ignored, as IBA asks of
/// receivers.
bool decode(std::span<const uint8_t> bytes, Mad& out, std::string& error);

/// Copies `data` into a private-data field, zero-padding the rest; false if it is longer.
template <size_t N>
bool set_private(std::array<uint8_t, N>& field, std::span<const uint8_t> data) {
  if (data.size() > N) return false;
  field.fill(0);
  for (size_t i = 0; i < data.size(); ++i) field[i] = data[i];
  return true;
}

/// The RoCE v2 GID of an IPv4 address (host order): ::ffff:a.b.c.d.
Gid ipv4_gid(uint32_t ip);

}  // namespace uroce::cm::mad
