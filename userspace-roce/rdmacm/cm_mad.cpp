// CM MAD encode and decode (cm_mad.hpp): every field written and read bit by bit at its
// IBA position, so that no compiler layout or host byte order reaches the wire.
#include "cm_mad.hpp"

#include <cstdio>
#include <cstring>
#include <type_traits>

namespace uroce::cm::mad {
namespace {

/// A field: `width` bits starting at bit `bit` (0 = MSB) of byte `byte` of the MAD.
struct Field {
  uint16_t byte;
  uint8_t bit;
  uint8_t width;
};

void put(uint8_t* d, Field f, uint64_t v) {
  for (unsigned i = 0; i < f.width; ++i) {
    const unsigned at = f.byte * 8u + f.bit + i;
    const uint8_t mask = static_cast<uint8_t>(0x80u >> (at % 8));
    if ((v >> (f.width - 1 - i)) & 1)
      d[at / 8] |= mask;
    else
      d[at / 8] &= static_cast<uint8_t>(~mask);
  }
}

uint64_t get(const uint8_t* d, Field f) {
  uint64_t v = 0;
  for (unsigned i = 0; i < f.width; ++i) {
    const unsigned at = f.byte * 8u + f.bit + i;
    v = v << 1 | ((d[at / 8] >> (7 - at % 8)) & 1u);
  }
  return v;
}

template <size_t N>
void put_bytes(uint8_t* d, size_t at, const std::array<uint8_t, N>& a) {
  std::memcpy(d + at, a.data(), N);
}
template <size_t N>
void get_bytes(const uint8_t* d, size_t at, std::array<uint8_t, N>& a) {
  std::memcpy(a.data(), d + at, N);
}

// ---- the MAD common header (IBA vol 1 chapter 13; struct ib_mad_hdr) ----------------------
constexpr Field kBaseVersionF{0, 0, 8}, kMgmtClassF{1, 0, 8}, kClassVersionF{2, 0, 8},
    kMethodF{3, 0, 8}, kStatusF{4, 0, 16}, kClassSpecificF{6, 0, 16}, kTidF{8, 0, 64},
    kAttrIdF{16, 0, 16}, kAttrModF{20, 0, 32};

// ---- fields every message but the REQ starts with --------------------------------------------
constexpr Field kLocalCommId{24, 0, 32}, kRemoteCommId{28, 0, 32};

// ---- REQ (IBA table 106) -----------------------------------------------------------------
constexpr Field kReqServiceId{32, 0, 64}, kReqCaGuid{40, 0, 64}, kReqQkey{52, 0, 32},
    kReqQpn{56, 0, 24}, kReqRespRes{59, 0, 8}, kReqLocalEecn{60, 0, 24},
    kReqInitDepth{63, 0, 8}, kReqRemoteEecn{64, 0, 24}, kReqRemoteCmTimeout{67, 0, 5},
    kReqTransport{67, 5, 2}, kReqFlowCtrl{67, 7, 1}, kReqPsn{68, 0, 24},
    kReqLocalCmTimeout{71, 0, 5}, kReqRetry{71, 5, 3}, kReqPkey{72, 0, 16},
    kReqMtu{74, 0, 4}, kReqRdc{74, 4, 1}, kReqRnr{74, 5, 3}, kReqMaxCmRetries{75, 0, 4},
    kReqSrq{75, 4, 1}, kReqExtTransport{75, 5, 3};
constexpr size_t kReqPrimaryPath = 76, kReqAlternatePath = 120, kReqPrivateAt = 164;
// Within a path, from its start (the primary at REQ byte 52 of the data area, the
// alternate at 96): LIDs, GIDs, then flow label, rate, traffic class, hop limit, SL,
// subnet local, ACK timeout.
constexpr size_t kPathLocalGid = 4, kPathRemoteGid = 20;
constexpr Field kPathLocalLid{0, 0, 16}, kPathRemoteLid{2, 0, 16}, kPathFlowLabel{36, 0, 20},
    kPathRate{39, 2, 6}, kPathTrafficClass{40, 0, 8}, kPathHopLimit{41, 0, 8},
    kPathSl{42, 0, 4}, kPathSubnetLocal{42, 4, 1}, kPathAckTimeout{43, 0, 5};

// ---- MRA (table 107) ----------------------------------------------------------------------
constexpr Field kMraMessage{32, 0, 2}, kMraServiceTimeout{33, 0, 5};
constexpr size_t kMraPrivateAt = 34;

// ---- REJ (table 108) ----------------------------------------------------------------------
constexpr Field kRejMessage{32, 0, 2}, kRejAriLength{33, 0, 7}, kRejReason{34, 0, 16};
constexpr size_t kRejAriAt = 36, kRejPrivateAt = 108;

// ---- REP (table 110) ----------------------------------------------------------------------
constexpr Field kRepQkey{32, 0, 32}, kRepQpn{36, 0, 24}, kRepEecn{40, 0, 24},
    kRepPsn{44, 0, 24}, kRepRespRes{48, 0, 8}, kRepInitDepth{49, 0, 8},
    kRepTargetAckDelay{50, 0, 5}, kRepFailover{50, 5, 2}, kRepFlowCtrl{50, 7, 1},
    kRepRnr{51, 0, 3}, kRepSrq{51, 3, 1}, kRepCaGuid{52, 0, 64};
constexpr size_t kRepPrivateAt = 60;

// ---- RTU, DREQ, DREP (tables 111-113) -----------------------------------------------------
constexpr size_t kRtuPrivateAt = 32;
constexpr Field kDreqRemoteQpn{32, 0, 24};
constexpr size_t kDreqPrivateAt = 36;
constexpr size_t kDrepPrivateAt = 32;

Field in_path(size_t path, Field f) {
  return {static_cast<uint16_t>(path + f.byte), f.bit, f.width};
}

void put_path(uint8_t* d, size_t at, const Path& p) {
  put(d, in_path(at, kPathLocalLid), p.local_lid);
  put(d, in_path(at, kPathRemoteLid), p.remote_lid);
  put_bytes(d, at + kPathLocalGid, p.local_gid);
  put_bytes(d, at + kPathRemoteGid, p.remote_gid);
  put(d, in_path(at, kPathFlowLabel), p.flow_label);
  put(d, in_path(at, kPathRate), p.packet_rate);
  put(d, in_path(at, kPathTrafficClass), p.traffic_class);
  put(d, in_path(at, kPathHopLimit), p.hop_limit);
  put(d, in_path(at, kPathSl), p.sl);
  put(d, in_path(at, kPathSubnetLocal), p.subnet_local);
  put(d, in_path(at, kPathAckTimeout), p.local_ack_timeout);
}

void get_path(const uint8_t* d, size_t at, Path& p) {
  p.local_lid = static_cast<uint16_t>(get(d, in_path(at, kPathLocalLid)));
  p.remote_lid = static_cast<uint16_t>(get(d, in_path(at, kPathRemoteLid)));
  get_bytes(d, at + kPathLocalGid, p.local_gid);
  get_bytes(d, at + kPathRemoteGid, p.remote_gid);
  p.flow_label = static_cast<uint32_t>(get(d, in_path(at, kPathFlowLabel)));
  p.packet_rate = static_cast<uint8_t>(get(d, in_path(at, kPathRate)));
  p.traffic_class = static_cast<uint8_t>(get(d, in_path(at, kPathTrafficClass)));
  p.hop_limit = static_cast<uint8_t>(get(d, in_path(at, kPathHopLimit)));
  p.sl = static_cast<uint8_t>(get(d, in_path(at, kPathSl)));
  p.subnet_local = get(d, in_path(at, kPathSubnetLocal)) != 0;
  p.local_ack_timeout = static_cast<uint8_t>(get(d, in_path(at, kPathAckTimeout)));
}

void encode_body(uint8_t* d, const Req& m) {
  put(d, kLocalCommId, m.local_comm_id);
  put(d, kReqServiceId, m.service_id);
  put(d, kReqCaGuid, m.local_ca_guid);
  put(d, kReqQkey, m.local_qkey);
  put(d, kReqQpn, m.local_qpn);
  put(d, kReqRespRes, m.responder_resources);
  put(d, kReqLocalEecn, m.local_eecn);
  put(d, kReqInitDepth, m.initiator_depth);
  put(d, kReqRemoteEecn, m.remote_eecn);
  put(d, kReqRemoteCmTimeout, m.remote_cm_response_timeout);
  put(d, kReqTransport, m.transport_service_type);
  put(d, kReqFlowCtrl, m.end_to_end_flow_control);
  put(d, kReqPsn, m.starting_psn);
  put(d, kReqLocalCmTimeout, m.local_cm_response_timeout);
  put(d, kReqRetry, m.retry_count);
  put(d, kReqPkey, m.partition_key);
  put(d, kReqMtu, m.path_mtu);
  put(d, kReqRdc, m.rdc_exists);
  put(d, kReqRnr, m.rnr_retry_count);
  put(d, kReqMaxCmRetries, m.max_cm_retries);
  put(d, kReqSrq, m.srq);
  put(d, kReqExtTransport, m.extended_transport_type);
  put_path(d, kReqPrimaryPath, m.primary);
  put_path(d, kReqAlternatePath, m.alternate);
  put_bytes(d, kReqPrivateAt, m.private_data);
}

void encode_body(uint8_t* d, const Mra& m) {
  put(d, kLocalCommId, m.local_comm_id);
  put(d, kRemoteCommId, m.remote_comm_id);
  put(d, kMraMessage, static_cast<uint8_t>(m.message_mraed));
  put(d, kMraServiceTimeout, m.service_timeout);
  put_bytes(d, kMraPrivateAt, m.private_data);
}

void encode_body(uint8_t* d, const Rej& m) {
  put(d, kLocalCommId, m.local_comm_id);
  put(d, kRemoteCommId, m.remote_comm_id);
  put(d, kRejMessage, static_cast<uint8_t>(m.message_rejected));
  put(d, kRejAriLength, m.ari_length);
  put(d, kRejReason, m.reason);
  put_bytes(d, kRejAriAt, m.ari);
  put_bytes(d, kRejPrivateAt, m.private_data);
}

void encode_body(uint8_t* d, const Rep& m) {
  put(d, kLocalCommId, m.local_comm_id);
  put(d, kRemoteCommId, m.remote_comm_id);
  put(d, kRepQkey, m.local_qkey);
  put(d, kRepQpn, m.local_qpn);
  put(d, kRepEecn, m.local_eecn);
  put(d, kRepPsn, m.starting_psn);
  put(d, kRepRespRes, m.responder_resources);
  put(d, kRepInitDepth, m.initiator_depth);
  put(d, kRepTargetAckDelay, m.target_ack_delay);
  put(d, kRepFailover, m.failover_accepted);
  put(d, kRepFlowCtrl, m.end_to_end_flow_control);
  put(d, kRepRnr, m.rnr_retry_count);
  put(d, kRepSrq, m.srq);
  put(d, kRepCaGuid, m.local_ca_guid);
  put_bytes(d, kRepPrivateAt, m.private_data);
}

void encode_body(uint8_t* d, const Rtu& m) {
  put(d, kLocalCommId, m.local_comm_id);
  put(d, kRemoteCommId, m.remote_comm_id);
  put_bytes(d, kRtuPrivateAt, m.private_data);
}

void encode_body(uint8_t* d, const Dreq& m) {
  put(d, kLocalCommId, m.local_comm_id);
  put(d, kRemoteCommId, m.remote_comm_id);
  put(d, kDreqRemoteQpn, m.remote_qpn);
  put_bytes(d, kDreqPrivateAt, m.private_data);
}

void encode_body(uint8_t* d, const Drep& m) {
  put(d, kLocalCommId, m.local_comm_id);
  put(d, kRemoteCommId, m.remote_comm_id);
  put_bytes(d, kDrepPrivateAt, m.private_data);
}

template <typename T>
constexpr Attr attr_of() {
  if constexpr (std::is_same_v<T, Req>) return Attr::req;
  if constexpr (std::is_same_v<T, Mra>) return Attr::mra;
  if constexpr (std::is_same_v<T, Rej>) return Attr::rej;
  if constexpr (std::is_same_v<T, Rep>) return Attr::rep;
  if constexpr (std::is_same_v<T, Rtu>) return Attr::rtu;
  if constexpr (std::is_same_v<T, Dreq>) return Attr::dreq;
  return Attr::drep;
}

std::string text(const char* fmt, unsigned a, unsigned b = 0) {
  char buf[160];
  std::snprintf(buf, sizeof buf, fmt, a, b);
  return buf;
}

bool check_response(uint8_t v, const char* what, std::string& error) {
  if (v <= static_cast<uint8_t>(MsgResponse::other)) return true;
  char buf[96];
  std::snprintf(buf, sizeof buf, "%s %u (0 REQ, 1 REP, 2 other; 3 is reserved)", what, v);
  error = buf;
  return false;
}

}  // namespace

const char* attr_name(uint16_t attr_id) {
  switch (attr_id) {
    case 0x0010: return "REQ";
    case 0x0011: return "MRA";
    case 0x0012: return "REJ";
    case 0x0013: return "REP";
    case 0x0014: return "RTU";
    case 0x0015: return "DREQ";
    case 0x0016: return "DREP";
    case 0x0017: return "SIDR_REQ";
    case 0x0018: return "SIDR_REP";
    case 0x0019: return "LAP";
    case 0x001A: return "APR";
    case 0x0001: return "ClassPortInfo";
    default: return "unknown";
  }
}

Gid ipv4_gid(uint32_t ip) {
  Gid g{};
  g[10] = g[11] = 0xFF;
  g[12] = static_cast<uint8_t>(ip >> 24);
  g[13] = static_cast<uint8_t>(ip >> 16);
  g[14] = static_cast<uint8_t>(ip >> 8);
  g[15] = static_cast<uint8_t>(ip);
  return g;
}

void encode(const Mad& m, uint8_t* out) {
  std::memset(out, 0, kMadSize);
  put(out, kBaseVersionF, m.hdr.base_version);
  put(out, kMgmtClassF, m.hdr.mgmt_class);
  put(out, kClassVersionF, m.hdr.class_version);
  put(out, kMethodF, m.hdr.method);
  put(out, kStatusF, m.hdr.status);
  put(out, kClassSpecificF, m.hdr.class_specific);
  put(out, kTidF, m.hdr.tid);
  put(out, kAttrModF, m.hdr.attr_mod);
  std::visit(
      [&](const auto& body) {
        put(out, kAttrIdF, static_cast<uint16_t>(attr_of<std::decay_t<decltype(body)>>()));
        encode_body(out, body);
      },
      m.body);
}

bool decode(std::span<const uint8_t> bytes, Mad& out, std::string& error) {
  if (bytes.size() != kMadSize) {
    error = text("MAD of %u bytes, expected %u", static_cast<unsigned>(bytes.size()),
                 static_cast<unsigned>(kMadSize));
    return false;
  }
  const uint8_t* d = bytes.data();
  Header& h = out.hdr;
  h.base_version = static_cast<uint8_t>(get(d, kBaseVersionF));
  h.mgmt_class = static_cast<uint8_t>(get(d, kMgmtClassF));
  h.class_version = static_cast<uint8_t>(get(d, kClassVersionF));
  h.method = static_cast<uint8_t>(get(d, kMethodF));
  h.status = static_cast<uint16_t>(get(d, kStatusF));
  h.class_specific = static_cast<uint16_t>(get(d, kClassSpecificF));
  h.tid = get(d, kTidF);
  h.attr_id = static_cast<uint16_t>(get(d, kAttrIdF));
  h.attr_mod = static_cast<uint32_t>(get(d, kAttrModF));
  if (h.base_version != kBaseVersion) {
    error = text("MAD base version %u, expected %u", h.base_version, kBaseVersion);
    return false;
  }
  if (h.mgmt_class != kClassCm) {
    error = text("management class 0x%02x, expected 0x%02x (CM)", h.mgmt_class, kClassCm);
    return false;
  }
  if (h.class_version != kClassVersion) {
    error = text("CM class version %u, expected %u", h.class_version, kClassVersion);
    return false;
  }
  if (h.method != kMethodSend) {
    error = text("method 0x%02x, expected 0x%02x (Send)", h.method, kMethodSend);
    return false;
  }
  switch (static_cast<Attr>(h.attr_id)) {
    case Attr::req: {
      Req m;
      m.local_comm_id = static_cast<uint32_t>(get(d, kLocalCommId));
      m.service_id = get(d, kReqServiceId);
      m.local_ca_guid = get(d, kReqCaGuid);
      m.local_qkey = static_cast<uint32_t>(get(d, kReqQkey));
      m.local_qpn = static_cast<uint32_t>(get(d, kReqQpn));
      m.responder_resources = static_cast<uint8_t>(get(d, kReqRespRes));
      m.local_eecn = static_cast<uint32_t>(get(d, kReqLocalEecn));
      m.initiator_depth = static_cast<uint8_t>(get(d, kReqInitDepth));
      m.remote_eecn = static_cast<uint32_t>(get(d, kReqRemoteEecn));
      m.remote_cm_response_timeout = static_cast<uint8_t>(get(d, kReqRemoteCmTimeout));
      m.transport_service_type = static_cast<uint8_t>(get(d, kReqTransport));
      m.end_to_end_flow_control = get(d, kReqFlowCtrl) != 0;
      m.starting_psn = static_cast<uint32_t>(get(d, kReqPsn));
      m.local_cm_response_timeout = static_cast<uint8_t>(get(d, kReqLocalCmTimeout));
      m.retry_count = static_cast<uint8_t>(get(d, kReqRetry));
      m.partition_key = static_cast<uint16_t>(get(d, kReqPkey));
      m.path_mtu = static_cast<uint8_t>(get(d, kReqMtu));
      m.rdc_exists = get(d, kReqRdc) != 0;
      m.rnr_retry_count = static_cast<uint8_t>(get(d, kReqRnr));
      m.max_cm_retries = static_cast<uint8_t>(get(d, kReqMaxCmRetries));
      m.srq = get(d, kReqSrq) != 0;
      m.extended_transport_type = static_cast<uint8_t>(get(d, kReqExtTransport));
      get_path(d, kReqPrimaryPath, m.primary);
      get_path(d, kReqAlternatePath, m.alternate);
      get_bytes(d, kReqPrivateAt, m.private_data);
      out.body = m;
      return true;
    }
    case Attr::mra: {
      Mra m;
      m.local_comm_id = static_cast<uint32_t>(get(d, kLocalCommId));
      m.remote_comm_id = static_cast<uint32_t>(get(d, kRemoteCommId));
      const auto msg = static_cast<uint8_t>(get(d, kMraMessage));
      if (!check_response(msg, "MRA message MRAed", error)) return false;
      m.message_mraed = static_cast<MsgResponse>(msg);
      m.service_timeout = static_cast<uint8_t>(get(d, kMraServiceTimeout));
      get_bytes(d, kMraPrivateAt, m.private_data);
      out.body = m;
      return true;
    }
    case Attr::rej: {
      Rej m;
      m.local_comm_id = static_cast<uint32_t>(get(d, kLocalCommId));
      m.remote_comm_id = static_cast<uint32_t>(get(d, kRemoteCommId));
      const auto msg = static_cast<uint8_t>(get(d, kRejMessage));
      if (!check_response(msg, "REJ message REJected", error)) return false;
      m.message_rejected = static_cast<MsgResponse>(msg);
      m.ari_length = static_cast<uint8_t>(get(d, kRejAriLength));
      if (m.ari_length > kRejAriMax) {
        error = text("REJ rejection info length %u, at most %u", m.ari_length,
                     static_cast<unsigned>(kRejAriMax));
        return false;
      }
      m.reason = static_cast<uint16_t>(get(d, kRejReason));
      get_bytes(d, kRejAriAt, m.ari);
      get_bytes(d, kRejPrivateAt, m.private_data);
      out.body = m;
      return true;
    }
    case Attr::rep: {
      Rep m;
      m.local_comm_id = static_cast<uint32_t>(get(d, kLocalCommId));
      m.remote_comm_id = static_cast<uint32_t>(get(d, kRemoteCommId));
      m.local_qkey = static_cast<uint32_t>(get(d, kRepQkey));
      m.local_qpn = static_cast<uint32_t>(get(d, kRepQpn));
      m.local_eecn = static_cast<uint32_t>(get(d, kRepEecn));
      m.starting_psn = static_cast<uint32_t>(get(d, kRepPsn));
      m.responder_resources = static_cast<uint8_t>(get(d, kRepRespRes));
      m.initiator_depth = static_cast<uint8_t>(get(d, kRepInitDepth));
      m.target_ack_delay = static_cast<uint8_t>(get(d, kRepTargetAckDelay));
      m.failover_accepted = static_cast<uint8_t>(get(d, kRepFailover));
      m.end_to_end_flow_control = get(d, kRepFlowCtrl) != 0;
      m.rnr_retry_count = static_cast<uint8_t>(get(d, kRepRnr));
      m.srq = get(d, kRepSrq) != 0;
      m.local_ca_guid = get(d, kRepCaGuid);
      get_bytes(d, kRepPrivateAt, m.private_data);
      out.body = m;
      return true;
    }
    case Attr::rtu: {
      Rtu m;
      m.local_comm_id = static_cast<uint32_t>(get(d, kLocalCommId));
      m.remote_comm_id = static_cast<uint32_t>(get(d, kRemoteCommId));
      get_bytes(d, kRtuPrivateAt, m.private_data);
      out.body = m;
      return true;
    }
    case Attr::dreq: {
      Dreq m;
      m.local_comm_id = static_cast<uint32_t>(get(d, kLocalCommId));
      m.remote_comm_id = static_cast<uint32_t>(get(d, kRemoteCommId));
      m.remote_qpn = static_cast<uint32_t>(get(d, kDreqRemoteQpn));
      get_bytes(d, kDreqPrivateAt, m.private_data);
      out.body = m;
      return true;
    }
    case Attr::drep: {
      Drep m;
      m.local_comm_id = static_cast<uint32_t>(get(d, kLocalCommId));
      m.remote_comm_id = static_cast<uint32_t>(get(d, kRemoteCommId));
      get_bytes(d, kDrepPrivateAt, m.private_data);
      out.body = m;
      return true;
    }
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "CM attribute 0x%04x (%s) not supported", h.attr_id,
                attr_name(h.attr_id));
  error = buf;
  return false;
}

}  // namespace uroce::cm::mad
