// CM MAD encode/decode (userspace-roce/rdmacm/cm_mad.hpp) against the bytes a Linux 6.1
// kernel CM put on the wire (cm_vectors.hpp): every captured MAD decodes to the values
// Wireshark and include/rdma/ibta_vol1_c12.h read there, and encodes back to the same 256
// bytes; malformed MADs are refused with the value seen.
#include <gtest/gtest.h>

#include <cstring>

#include "cm_mad.hpp"
#include "cm_vectors.hpp"

namespace {

using namespace uroce::cm;
using namespace uroce::cm::mad;
namespace v = uroce::cm::vectors;

Mad decoded(const char* hex) {
  const auto b = v::bytes(hex);
  Mad m;
  std::string error;
  EXPECT_TRUE(decode(b, m, error)) << error;
  return m;
}

TEST(CmMad, EveryCapturedMadDecodesAndEncodesToTheSameBytes) {
  for (const char* hex : {v::kReqNoListener, v::kRejInvalidService, v::kReq, v::kRep, v::kRtu,
                          v::kDreq, v::kDrep, v::kReqRejected, v::kRejConsumer, v::kReqDepth0,
                          v::kRepDepth0}) {
    const auto b = v::bytes(hex);
    const Mad m = decoded(hex);
    uint8_t out[kMadSize];
    encode(m, out);
    EXPECT_EQ(0, std::memcmp(out, b.data(), kMadSize)) << hex;
  }
}

TEST(CmMad, HeaderOfTheKernelsReq) {
  const Mad m = decoded(v::kReq);
  EXPECT_EQ(m.hdr.base_version, 1);
  EXPECT_EQ(m.hdr.mgmt_class, 0x07);
  EXPECT_EQ(m.hdr.class_version, 2);
  EXPECT_EQ(m.hdr.method, 0x03);
  EXPECT_EQ(m.hdr.status, 0);
  EXPECT_EQ(m.hdr.class_specific, 0);
  EXPECT_EQ(m.hdr.tid, 0x00000002dd8d9a72ull);
  EXPECT_EQ(m.hdr.attr_id, 0x0010);
  EXPECT_EQ(m.hdr.attr_mod, 0u);
}

TEST(CmMad, ReqFieldsAsTheKernelSetsThemOverRoce) {
  const Req r = std::get<Req>(decoded(v::kReq).body);
  EXPECT_EQ(r.local_comm_id, 0x729a8dddu);
  EXPECT_EQ(r.service_id, 0x0000000001061d2full);  // RDMA_PS_TCP << 16 | port 7471
  EXPECT_EQ(r.local_ca_guid, 0x505400fffe000002ull);
  EXPECT_EQ(r.local_qkey, 0u);
  EXPECT_EQ(r.local_qpn, 0x12u);
  EXPECT_EQ(r.responder_resources, 0);
  EXPECT_EQ(r.local_eecn, 0u);
  EXPECT_EQ(r.initiator_depth, 1);
  EXPECT_EQ(r.remote_eecn, 0u);
  EXPECT_EQ(r.remote_cm_response_timeout, 20);
  EXPECT_EQ(r.transport_service_type, 0);
  EXPECT_FALSE(r.end_to_end_flow_control);
  EXPECT_EQ(r.starting_psn, 0x2845e0u);
  EXPECT_EQ(r.local_cm_response_timeout, 20);
  EXPECT_EQ(r.retry_count, 7);
  EXPECT_EQ(r.partition_key, 0xffff);
  EXPECT_EQ(r.path_mtu, 3);  // IBV_MTU_1024
  EXPECT_FALSE(r.rdc_exists);
  EXPECT_EQ(r.rnr_retry_count, 7);
  EXPECT_EQ(r.max_cm_retries, 15);
  EXPECT_FALSE(r.srq);
  EXPECT_EQ(r.extended_transport_type, 0);
  EXPECT_EQ(r.primary.local_lid, 0xffff);
  EXPECT_EQ(r.primary.remote_lid, 0xffff);
  EXPECT_EQ(r.primary.local_gid, ipv4_gid(0x0a000002));
  EXPECT_EQ(r.primary.remote_gid, ipv4_gid(0x0a000001));
  // cma.c's RoCE v2 flow label: (source port 0xbe0a * 31 + 7471) & 0xFFFFF.
  EXPECT_EQ(r.primary.flow_label, (0xbe0au * 31 + 7471) & 0xFFFFF);
  EXPECT_EQ(r.primary.packet_rate, 0);
  EXPECT_EQ(r.primary.traffic_class, 0);
  EXPECT_EQ(r.primary.hop_limit, 64);
  EXPECT_EQ(r.primary.sl, 0);
  EXPECT_FALSE(r.primary.subnet_local);
  EXPECT_EQ(r.primary.local_ack_timeout, 19);
  EXPECT_EQ(r.alternate.local_lid, 0);
  EXPECT_EQ(r.alternate.local_gid, Gid{});
  EXPECT_EQ(r.alternate.local_ack_timeout, 0);
  // rdma_cm's header (version 0, IPv4, source port), then the lesson's own bytes.
  EXPECT_EQ(r.private_data[0], 0x00);
  EXPECT_EQ(r.private_data[1], 0x40);
  EXPECT_EQ(r.private_data[2], 0xbe);
  EXPECT_EQ(r.private_data[3], 0x0a);
  EXPECT_EQ(r.private_data[36], 0x01);
}

TEST(CmMad, RepFields) {
  const Mad m = decoded(v::kRep);
  EXPECT_EQ(m.hdr.tid, 0x00000002dd8d9a72ull);  // the REQ's
  const Rep r = std::get<Rep>(m.body);
  EXPECT_EQ(r.local_comm_id, 0xceebc4bfu);
  EXPECT_EQ(r.remote_comm_id, 0x729a8dddu);
  EXPECT_EQ(r.local_qkey, 0u);
  EXPECT_EQ(r.local_qpn, 0x11u);
  EXPECT_EQ(r.local_eecn, 0u);
  EXPECT_EQ(r.starting_psn, 0x5b32a0u);
  EXPECT_EQ(r.responder_resources, 1);
  EXPECT_EQ(r.initiator_depth, 0);
  EXPECT_EQ(r.target_ack_delay, 15);  // rxe's local CA ACK delay
  EXPECT_EQ(r.failover_accepted, 0);
  EXPECT_FALSE(r.end_to_end_flow_control);
  EXPECT_EQ(r.rnr_retry_count, 7);
  EXPECT_FALSE(r.srq);
  EXPECT_EQ(r.local_ca_guid, 0x505400fffe000001ull);
  EXPECT_EQ(r.private_data[0], 0x01);
  EXPECT_EQ(r.private_data[1], 0x02);
}

TEST(CmMad, RejFields) {
  const Mad m8 = decoded(v::kRejInvalidService);
  EXPECT_EQ(m8.hdr.tid, 0x00000002dd8d9a73ull);  // the REQ's (frame 1)
  const Rej r8 = std::get<Rej>(m8.body);
  EXPECT_EQ(r8.local_comm_id, 0u);  // no connection was made for it
  EXPECT_EQ(r8.remote_comm_id, 0x739a8dddu);
  EXPECT_EQ(r8.message_rejected, MsgResponse::req);
  EXPECT_EQ(r8.ari_length, 0);
  EXPECT_EQ(r8.reason, 8);
  EXPECT_EQ(r8.private_data, (std::array<uint8_t, kRejPrivate>{}));

  const Rej r28 = std::get<Rej>(decoded(v::kRejConsumer).body);
  EXPECT_EQ(r28.local_comm_id, 0xc8ebc4bfu);
  EXPECT_EQ(r28.remote_comm_id, 0x709a8dddu);
  EXPECT_EQ(r28.message_rejected, MsgResponse::req);
  EXPECT_EQ(r28.reason, 28);
  EXPECT_EQ(0, std::memcmp(r28.private_data.data() + 4, "malformed CM private data", 25));
}

TEST(CmMad, RtuDreqDrepFields) {
  const Mad rtu = decoded(v::kRtu);
  EXPECT_EQ(rtu.hdr.tid, 0x00000002dd8d9a72ull);
  EXPECT_EQ(std::get<Rtu>(rtu.body).local_comm_id, 0x729a8dddu);
  EXPECT_EQ(std::get<Rtu>(rtu.body).remote_comm_id, 0xceebc4bfu);

  const Mad dreq = decoded(v::kDreq);
  // The active side's DREQ is in the TID cm_form_tid makes from its comm ID: its REQ's.
  EXPECT_EQ(dreq.hdr.tid, 0x00000002dd8d9a72ull);
  const Dreq d = std::get<Dreq>(dreq.body);
  EXPECT_EQ(d.local_comm_id, 0x729a8dddu);
  EXPECT_EQ(d.remote_comm_id, 0xceebc4bfu);
  EXPECT_EQ(d.remote_qpn, 0x11u);  // the server's QP

  const Mad drep = decoded(v::kDrep);
  EXPECT_EQ(drep.hdr.tid, dreq.hdr.tid);
  EXPECT_EQ(std::get<Drep>(drep.body).local_comm_id, 0xceebc4bfu);
  EXPECT_EQ(std::get<Drep>(drep.body).remote_comm_id, 0x729a8dddu);
}

TEST(CmMad, EncodesAReqFromScratchAsTheKernelDid) {
  const Req captured = std::get<Req>(decoded(v::kReqNoListener).body);
  Req r;
  r.local_comm_id = 0x739a8ddd;
  r.service_id = 0x1061d2f;
  r.local_ca_guid = 0x505400fffe000002;
  r.local_qpn = 0x11;
  r.initiator_depth = 1;
  r.remote_cm_response_timeout = 20;
  r.starting_psn = 0x42167d;
  r.local_cm_response_timeout = 20;
  r.retry_count = 7;
  r.partition_key = 0xffff;
  r.path_mtu = 3;
  r.rnr_retry_count = 7;
  r.max_cm_retries = 15;
  r.primary.local_lid = r.primary.remote_lid = 0xffff;
  r.primary.local_gid = ipv4_gid(0x0a000002);
  r.primary.remote_gid = ipv4_gid(0x0a000001);
  r.primary.flow_label = (0xcbc0u * 31 + 7471) & 0xFFFFF;
  r.primary.hop_limit = 64;
  r.primary.local_ack_timeout = 19;
  r.private_data = captured.private_data;
  Mad m;
  m.hdr.tid = 0x00000002dd8d9a73;
  m.body = r;
  uint8_t out[kMadSize];
  encode(m, out);
  EXPECT_EQ(0, std::memcmp(out, v::bytes(v::kReqNoListener).data(), kMadSize));
}

TEST(CmMad, FieldsAtTheirLimitsSurviveAndDoNotOverlap) {
  Req r;
  r.local_comm_id = 0xffffffff;
  r.service_id = ~0ull;
  r.local_ca_guid = ~0ull;
  r.local_qkey = 0xffffffff;
  r.local_qpn = r.local_eecn = r.remote_eecn = r.starting_psn = 0xffffff;
  r.responder_resources = r.initiator_depth = 0xff;
  r.remote_cm_response_timeout = r.local_cm_response_timeout = 31;
  r.transport_service_type = 3;
  r.end_to_end_flow_control = r.rdc_exists = r.srq = true;
  r.retry_count = r.rnr_retry_count = r.extended_transport_type = 7;
  r.partition_key = 0xffff;
  r.path_mtu = r.max_cm_retries = 15;
  for (Path* p : {&r.primary, &r.alternate}) {
    p->local_lid = p->remote_lid = 0xffff;
    p->local_gid.fill(0xff);
    p->remote_gid.fill(0xff);
    p->flow_label = 0xfffff;
    p->packet_rate = 63;
    p->traffic_class = p->hop_limit = 0xff;
    p->sl = 15;
    p->subnet_local = true;
    p->local_ack_timeout = 31;
  }
  Mad m;
  m.body = r;
  uint8_t out[kMadSize];
  encode(m, out);
  // Every bit of the data area except IBA table 106's reserved ones: bytes 4-7 and 24-27,
  // and per path 6 bits after the flow label, 3 after the subnet-local bit and 3 after the
  // ACK timeout (the alternate's first one being "SAP supported", not encoded here).
  int set = 0;
  for (size_t i = kHeaderSize; i < kHeaderSize + 140; ++i) set += __builtin_popcount(out[i]);
  EXPECT_EQ(set, 140 * 8 - 64 - 2 * (6 + 3 + 3));
  Mad back;
  std::string error;
  ASSERT_TRUE(decode({out, kMadSize}, back, error)) << error;
  const Req& b = std::get<Req>(back.body);
  EXPECT_EQ(b.local_qpn, 0xffffffu);
  EXPECT_EQ(b.starting_psn, 0xffffffu);
  EXPECT_EQ(b.path_mtu, 15);
  EXPECT_EQ(b.primary.flow_label, 0xfffffu);
  EXPECT_EQ(b.alternate.packet_rate, 63);
  EXPECT_EQ(b.alternate.local_ack_timeout, 31);

  Rep p;
  p.local_comm_id = p.remote_comm_id = p.local_qkey = 0xffffffff;
  p.local_qpn = p.local_eecn = p.starting_psn = 0xffffff;
  p.responder_resources = p.initiator_depth = 0xff;
  p.target_ack_delay = 31;
  p.failover_accepted = 3;
  p.end_to_end_flow_control = p.srq = true;
  p.rnr_retry_count = 7;
  p.local_ca_guid = ~0ull;
  m.body = p;
  encode(m, out);
  // Table 110's reserved bits: a byte after each 24-bit field (3) and 4 bits after SRQ.
  set = 0;
  for (size_t i = kHeaderSize; i < kHeaderSize + 36; ++i) set += __builtin_popcount(out[i]);
  EXPECT_EQ(set, 36 * 8 - 3 * 8 - 4);
}

TEST(CmMad, PrivateDataSizes) {
  EXPECT_EQ(sizeof(Req::private_data), 92u);
  EXPECT_EQ(sizeof(Mra::private_data), 222u);
  EXPECT_EQ(sizeof(Rej::private_data), 148u);
  EXPECT_EQ(sizeof(Rep::private_data), 196u);
  EXPECT_EQ(sizeof(Rtu::private_data), 224u);
  EXPECT_EQ(sizeof(Dreq::private_data), 220u);
  EXPECT_EQ(sizeof(Drep::private_data), 224u);
  std::array<uint8_t, 4> field{9, 9, 9, 9};
  const uint8_t two[] = {1, 2};
  EXPECT_TRUE(set_private(field, two));
  EXPECT_EQ(field, (std::array<uint8_t, 4>{1, 2, 0, 0}));
  const uint8_t five[5] = {};
  EXPECT_FALSE(set_private(field, five));
}

std::string refusal(std::array<uint8_t, 256> b, size_t len = kMadSize) {
  Mad m;
  std::string error;
  EXPECT_FALSE(decode({b.data(), len}, m, error));
  return error;
}

TEST(CmMad, MalformedMadsAreRefusedNamingTheValue) {
  auto b = v::bytes(v::kReq);
  EXPECT_EQ(refusal(b, 255), "MAD of 255 bytes, expected 256");
  auto x = b;
  x[0] = 2;
  EXPECT_EQ(refusal(x), "MAD base version 2, expected 1");
  x = b;
  x[1] = 0x81;
  EXPECT_EQ(refusal(x), "management class 0x81, expected 0x07 (CM)");
  x = b;
  x[2] = 1;
  EXPECT_EQ(refusal(x), "CM class version 1, expected 2");
  x = b;
  x[3] = 0x81;
  EXPECT_EQ(refusal(x), "method 0x81, expected 0x03 (Send)");
  x = b;
  x[17] = 0x19;
  EXPECT_EQ(refusal(x), "CM attribute 0x0019 (LAP) not supported");
  x = b;
  x[16] = 0x42;
  EXPECT_EQ(refusal(x), "CM attribute 0x4210 (unknown) not supported");

  auto rej = v::bytes(v::kRejConsumer);
  rej[24 + 9] = 73 << 1;
  EXPECT_EQ(refusal(rej), "REJ rejection info length 73, at most 72");
  rej = v::bytes(v::kRejConsumer);
  rej[24 + 8] = 0xC0;
  EXPECT_EQ(refusal(rej), "REJ message REJected 3 (0 REQ, 1 REP, 2 other; 3 is reserved)");

  Mra mra;
  Mad m;
  m.body = mra;
  std::array<uint8_t, 256> out{};
  encode(m, out.data());
  out[24 + 8] = 0xC0;
  EXPECT_EQ(refusal(out), "MRA message MRAed 3 (0 REQ, 1 REP, 2 other; 3 is reserved)");
}

TEST(CmMad, ReservedBitsAreIgnored) {
  auto b = v::bytes(v::kReq);
  b[24 + 4] = 0xff;  // REQ bytes 4-7 are reserved
  b[18] = 0xff;      // so is the header's word after the attribute ID
  Mad m;
  std::string error;
  ASSERT_TRUE(decode(b, m, error)) << error;
  EXPECT_EQ(std::get<Req>(m.body).local_qpn, 0x12u);
}

}  // namespace
