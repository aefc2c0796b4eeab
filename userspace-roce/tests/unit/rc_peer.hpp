// The peer of a SocketlessRc, played by hand in the RC transport tests: packets it "sends"
// to the QP under test (requests, ACKs and NAKs, READ responses, atomics), each sealed
// with a correct ICRC, and what the QP queued for the wire in answer, parsed and checked.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "socketless_device.hpp"

namespace uroce::rc_test {

using socketless::kLocalIp;
using socketless::kPeerIp;
using socketless::SocketlessRc;

/// The bytes of a string, as a payload.
inline std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

/// A packet from the peer to the QP under test, sealed with a correct ICRC. AckReq is set
/// on the last packet of a message, as a requester sets it.
inline std::vector<uint8_t> from_peer(const SocketlessRc& h, uint8_t opcode, uint32_t psn,
                                      const std::vector<uint8_t>& payload = {},
                                      wire::Reth reth = {}, uint32_t imm = 0,
                                      uint16_t pkey = wire::kDefaultPkey) {
  wire::Packet p;
  p.bth.opcode = opcode;
  p.bth.dest_qp = h.qp.ibv.qp_num;
  p.bth.psn = psn;
  p.bth.pkey = pkey;
  p.bth.ack_req = wire::opcode_info(opcode).last;
  p.reth = reth;
  p.imm = imm;
  return socketless::build_packet(p, payload, socketless::flow_between(kPeerIp, kLocalIp));
}

/// An atomic request (CMP_SWAP or FETCH_ADD) from the peer.
inline std::vector<uint8_t> atomic_from_peer(const SocketlessRc& h, uint8_t opcode,
                                             uint32_t psn, wire::AtomicEth eth) {
  wire::Packet p;
  p.bth.opcode = opcode;
  p.bth.dest_qp = h.qp.ibv.qp_num;
  p.bth.psn = psn;
  p.bth.ack_req = true;
  p.atomic = eth;
  return socketless::build_packet(p, {}, socketless::flow_between(kPeerIp, kLocalIp));
}

/// An ACK (or NAK, or RNR NAK: the syndrome says which) from the peer's responder.
inline std::vector<uint8_t> ack_from_peer(const SocketlessRc& h, uint32_t psn,
                                          uint8_t syndrome, uint32_t msn = 1) {
  wire::Packet p;
  p.bth.opcode = wire::kAcknowledge;
  p.bth.dest_qp = h.qp.ibv.qp_num;
  p.bth.psn = psn;
  p.aeth = {syndrome, msn};
  return socketless::build_packet(p, {}, socketless::flow_between(kPeerIp, kLocalIp));
}

/// A READ response from the peer's responder, carrying `payload`.
inline std::vector<uint8_t> read_response_from_peer(const SocketlessRc& h, uint8_t opcode,
                                                    uint32_t psn,
                                                    const std::vector<uint8_t>& payload) {
  wire::Packet p;
  p.bth.opcode = opcode;
  p.bth.dest_qp = h.qp.ibv.qp_num;
  p.bth.psn = psn;
  return socketless::build_packet(p, payload, socketless::flow_between(kPeerIp, kLocalIp));
}

/// The one completion `cq` holds, taken out (a test failure if it holds another number;
/// then a completion no test expects: wr_id ~0, IBV_WC_GENERAL_ERR).
inline ibv_wc only_completion(Cq& cq) {
  const auto wcs = SocketlessRc::drain(cq);
  EXPECT_EQ(wcs.size(), 1u);
  if (wcs.size() == 1) return wcs.front();
  ibv_wc none{};
  none.wr_id = ~0ull;
  none.status = IBV_WC_GENERAL_ERR;
  return none;
}

/// One packet the QP queued for the wire, parsed.
struct SentPacket {
  wire::Packet p;              ///< its headers, parsed
  std::vector<uint8_t> bytes;  ///< p.payload points in here
};

/// The packets the QP queued for the wire since the last call, parsed. Each must be
/// addressed to the peer, carry the peer's QP number and a valid ICRC for the flow from
/// this device to the peer (or the peer's HCA would drop it).
inline std::vector<SentPacket> sent_by(SocketlessRc& h) {
  std::vector<SentPacket> out;
  for (auto& s : h.take_transmitted()) {
    EXPECT_EQ(s.dst, kPeerIp);
    out.push_back({wire::Packet{}, std::move(s.bytes)});
    SentPacket& sp = out.back();
    EXPECT_EQ(wire::parse(sp.bytes.data(), sp.bytes.size(),
                          socketless::flow_between(kLocalIp, kPeerIp), sp.p),
              wire::ParseStatus::ok);
    EXPECT_EQ(sp.p.bth.dest_qp, socketless::kPeerQpn);
  }
  return out;
}

/// The one packet the QP queued since the last call (a test failure if not exactly one).
inline SentPacket only_sent(SocketlessRc& h) {
  auto sent = sent_by(h);
  EXPECT_EQ(sent.size(), 1u);
  return sent.empty() ? SentPacket{} : std::move(sent.front());
}

}  // namespace uroce::rc_test
