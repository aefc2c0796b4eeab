// QP 1 of the device: the communication manager's MADs in and out (for gsi.h). The
// kernel's CM sends each MAD as a UD SEND_ONLY to QP 1 with a DETH carrying QP 1's Q_Key
// (0x80010000) and source QP 1; the runtime does the same, so that a capture shows the
// headers a kernel Soft-RoCE host sends, but for the UDP source port (4791 here) and the
// IPv4 Identification (0 here, where rxe's IDs change from packet to packet).
#include <cerrno>
#include <cstring>

#include "runtime.hpp"

namespace uroce {

namespace {
constexpr uint32_t kGsiQpn = 1;
}

void Device::handle_gsi_packet(const wire::Packet& p, uint32_t src_ip) {
  const char* why = nullptr;
  if (p.bth.opcode != wire::kUdSendOnly)
    why = "not a UD SEND_ONLY";
  else if (p.deth.qkey != UROCE_QP1_QKEY)
    why = "wrong Q_Key";  // IBA 10.2.5: a UD QP silently drops a datagram with a wrong Q_Key
  else if (p.payload_len != UROCE_MAD_SIZE)
    why = "not a 256-byte MAD";
  else if (!gsi_receive)
    why = "nobody uses RDMA CM in this process";
  if (why) {
    if (Config::get().log >= 1)
      log_line("QP 1: dropped a %s packet from %u.%u.%u.%u (Q_Key 0x%x, %zu bytes): %s",
               wire::opcode_info(p.bth.opcode).name, src_ip >> 24, (src_ip >> 16) & 0xFF,
               (src_ip >> 8) & 0xFF, src_ip & 0xFF, p.deth.qkey, p.payload_len, why);
    return;
  }
  if (Config::get().log >= 2)
    log_line("rx UD_SEND_ONLY qp 0x1 psn %u from QP 0x%x: MAD attribute 0x%02x%02x", p.bth.psn,
             p.deth.src_qp, p.payload[16], p.payload[17]);
  gsi_receive(gsi_arg, src_ip, p.deth.src_qp, p.payload);
}

void Device::send_gsi_packet(uint32_t dst_ip, const uint8_t* mad) {
  wire::Packet p;
  p.bth.opcode = wire::kUdSendOnly;
  p.bth.migreq = false;  // as rxe's QP 1 sends it (lesson captures)
  p.bth.ack_req = true;  // idem; a UD receiver never acknowledges
  p.bth.dest_qp = kGsiQpn;
  p.bth.psn = gsi_psn;
  gsi_psn = wire::psn_add(gsi_psn, 1);
  p.deth.qkey = UROCE_QP1_QKEY;
  p.deth.src_qp = kGsiQpn;
  uint8_t hdr[wire::kMaxHeaderSize];
  const size_t hdr_len = wire::encode_headers(p, hdr);
  uint8_t* payload = tx_scratch();
  std::memcpy(payload, mad, UROCE_MAD_SIZE);
  if (Config::get().log >= 2)
    log_line("tx UD_SEND_ONLY qp 0x1 psn %u: MAD attribute 0x%02x%02x", p.bth.psn, mad[16],
             mad[17]);
  transmit(dst_ip, hdr, hdr_len, payload, UROCE_MAD_SIZE, 0);  // 256 bytes: no pad
  flush_tx();
}

}  // namespace uroce
