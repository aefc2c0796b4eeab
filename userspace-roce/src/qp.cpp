// The RC transport of one queue pair, both halves:
//   requester  posts SEND/WRITE/READ as packets, keeps them until acknowledged, retransmits
//              on timeout (go-back-N), waits out RNR NAKs, completes work requests in order;
//   responder  accepts packets in PSN order, places data (checking keys, bounds and
//              rights), consumes receive WQEs, answers READs, and sends ACKs and NAKs.
// The rules follow the InfiniBand Architecture Specification, volume 1, chapter 9.7, and
// what the Linux Soft-RoCE driver (rxe) does where the spec leaves a choice.
// Every function here runs with Device::mu held.
#include <endian.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "runtime.hpp"

namespace uroce {
namespace {

using namespace wire;

constexpr uint32_t kAckEveryPackets = 16;  // AckReq on every 16th packet of long messages

uint32_t mtu_bytes(ibv_mtu m) { return 256u << (static_cast<int>(m) - 1); }

std::chrono::microseconds timeout_of(const Qp& qp) {
  return std::chrono::microseconds(transport_timeout_us(qp.timeout));
}

// Translates [va, va+len) of MR `mr` to a pointer, or nullptr if it is not inside.
uint8_t* mr_ptr(const Mr* mr, uint64_t va, uint64_t len) {
  if (va < mr->iova || len > mr->ibv.length || va - mr->iova > mr->ibv.length - len)
    return nullptr;
  return static_cast<uint8_t*>(mr->ibv.addr) + (va - mr->iova);
}

// Finds the local MR an SGE names and checks it covers the SGE.
uint8_t* sge_ptr(Qp& qp, const ibv_sge& sge, uint64_t offset, uint64_t len, bool need_write) {
  Mr* mr = qp.dev->find_mr(sge.lkey);
  if (!mr || mr->pd != qp.pd) return nullptr;
  if (need_write && !(mr->access & IBV_ACCESS_LOCAL_WRITE)) return nullptr;
  return mr_ptr(mr, sge.addr + offset, len);
}

// Walks [off, off+len) of a message laid out over an SGE list: for each piece, the
// registered memory behind it (checked: key, PD, bounds, and local write if asked) and its
// length. Returns false on a bad piece or if the list is shorter than the range.
template <typename Piece>
bool for_each_piece(Qp& qp, const std::vector<ibv_sge>& sg, uint64_t off, size_t len,
                    bool need_write, Piece&& piece) {
  for (const ibv_sge& s : sg) {
    if (len == 0) break;
    if (off >= s.length) {
      off -= s.length;
      continue;
    }
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len, s.length - off));
    uint8_t* p = sge_ptr(qp, s, off, n, need_write);
    if (!p) return false;
    piece(p, n);
    len -= n;
    off = 0;
  }
  return len == 0;
}

// Copies `len` bytes at message offset `off` out of a WQE's gather list.
bool gather(Qp& qp, const SendWqe& w, uint64_t off, uint32_t len, uint8_t* out) {
  if (w.is_inline) {
    std::memcpy(out, w.inline_data.data() + off, len);
    return true;
  }
  return for_each_piece(qp, w.sg, off, len, false, [&](uint8_t* p, size_t n) {
    std::memcpy(out, p, n);
    out += n;
  });
}

// The registered memory behind [off, off+len) of the gather list if one SGE holds it all.
const uint8_t* single_sge_ptr(Qp& qp, const SendWqe& w, uint64_t off, uint32_t len) {
  for (const ibv_sge& s : w.sg) {
    if (off < s.length) return off + len <= s.length ? sge_ptr(qp, s, off, len, false) : nullptr;
    off -= s.length;
  }
  return nullptr;
}

// Copies into a scatter list at message offset `off`. Returns false on a bad key/range.
bool scatter(Qp& qp, const std::vector<ibv_sge>& sg, uint64_t off, const uint8_t* in,
             size_t len) {
  return for_each_piece(qp, sg, off, len, true, [&](uint8_t* p, size_t n) {
    std::memcpy(p, in, n);
    in += n;
  });
}

ibv_wc_opcode wc_opcode(ibv_wr_opcode op) {
  switch (op) {
    case IBV_WR_RDMA_WRITE:
    case IBV_WR_RDMA_WRITE_WITH_IMM: return IBV_WC_RDMA_WRITE;
    case IBV_WR_RDMA_READ: return IBV_WC_RDMA_READ;
    default: return IBV_WC_SEND;
  }
}

void complete_send(Qp& qp, const SendWqe& w, ibv_wc_status status) {
  if (status == IBV_WC_SUCCESS && !w.signaled) return;  // unsignaled: no completion
  ibv_wc wc{};
  wc.wr_id = w.wr_id;
  wc.status = status;
  wc.opcode = wc_opcode(w.opcode);
  wc.qp_num = qp.qpn();
  if (w.is_read()) wc.byte_len = w.length;
  cq_push(*qp.send_cq, wc, false);
}

void complete_recv(Qp& qp, const RecvWqe& r, ibv_wc_status status, ibv_wc_opcode op,
                   uint32_t byte_len, const uint32_t* imm, bool solicited) {
  ibv_wc wc{};
  wc.wr_id = r.wr_id;
  wc.status = status;
  wc.opcode = op;
  wc.qp_num = qp.qpn();
  wc.src_qp = qp.dest_qpn;
  wc.byte_len = byte_len;
  if (imm) {
    wc.wc_flags |= IBV_WC_WITH_IMM;
    wc.imm_data = htobe32(*imm);  // ibv_wc carries it in network order
  }
  cq_push(*qp.recv_cq, wc, solicited);
}

// ---- sending ---------------------------------------------------------------------------

void send_packet(Qp& qp, Packet& p, const uint8_t* payload, size_t len) {
  p.bth.dest_qp = qp.dest_qpn;
  p.bth.pad = pad_for(len);
  uint8_t hdr[kMaxHeaderSize];
  size_t h = encode_headers(p, hdr);
  qp.dev->transmit(qp.peer_ip, hdr, h, payload, len, p.bth.pad);
}

void send_ack(Qp& qp, uint8_t syndrome, uint32_t psn) {
  Packet p;
  p.bth.opcode = kAcknowledge;
  p.bth.psn = psn;
  p.aeth.syndrome = syndrome;
  p.aeth.msn = qp.msn;
  send_packet(qp, p, nullptr, 0);
}

uint8_t send_opcode(const SendWqe& w, uint32_t k) {
  const bool only = w.npsn == 1, first = k == 0, last = k + 1 == w.npsn;
  const bool imm = w.opcode == IBV_WR_SEND_WITH_IMM || w.opcode == IBV_WR_RDMA_WRITE_WITH_IMM;
  if (w.opcode == IBV_WR_SEND || w.opcode == IBV_WR_SEND_WITH_IMM) {
    if (only) return imm ? kSendOnlyImm : kSendOnly;
    if (first) return kSendFirst;
    if (last) return imm ? kSendLastImm : kSendLast;
    return kSendMiddle;
  }
  if (only) return imm ? kWriteOnlyImm : kWriteOnly;
  if (first) return kWriteFirst;
  if (last) return imm ? kWriteLastImm : kWriteLast;
  return kWriteMiddle;
}

void fail_head(Qp& qp, ibv_wc_status status);

// Sends packet k of a SEND/WRITE WQE. Returns false if the gather list is bad.
bool send_data_packet(Qp& qp, SendWqe& w, uint32_t k, bool window_edge) {
  const uint64_t off = static_cast<uint64_t>(k) * qp.mtu;
  const uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(qp.mtu, w.length - off));
  const uint8_t* payload = nullptr;
  if (len) {
    // The common case, a packet inside one SGE, goes straight from the registered
    // memory; anything else (inline data, a packet spanning SGEs) is assembled.
    if (!w.is_inline) payload = single_sge_ptr(qp, w, off, len);
    if (!payload) {
      uint8_t* scratch = qp.dev->tx_scratch();
      if (!gather(qp, w, off, len, scratch)) return false;
      payload = scratch;
    }
  }
  Packet p;
  p.bth.opcode = send_opcode(w, k);
  p.bth.psn = psn_add(w.first_psn, k);
  const bool last = k + 1 == w.npsn;
  // Ask for an ACK at the end of every message and now and then inside long ones, so
  // the window keeps moving; the responder coalesces what arrives in one batch.
  p.bth.ack_req = last || (k + 1) % kAckEveryPackets == 0 || window_edge;
  p.bth.solicited = last && w.solicited;
  if (opcode_info(p.bth.opcode).reth) p.reth = {w.remote_addr, w.rkey, w.length};
  if (opcode_info(p.bth.opcode).imm) p.imm = be32toh(w.imm);
  send_packet(qp, p, payload, len);
  return true;
}

// A READ request for what is still missing of w (all of it, or the tail after the
// responses that already arrived).
void send_read_request(Qp& qp, const SendWqe& w) {
  const uint64_t done = static_cast<uint64_t>(w.read_got) * qp.mtu;
  Packet p;
  p.bth.opcode = kReadRequest;
  p.bth.psn = psn_add(w.first_psn, w.read_got);
  p.bth.ack_req = true;
  p.reth = {w.remote_addr + done, w.rkey, static_cast<uint32_t>(w.length - done)};
  send_packet(qp, p, nullptr, 0);
}

void arm_retransmit(Qp& qp) {
  // timeout 0 means "wait forever" in the spec: no retransmission timer at all.
  if (qp.timeout == 0 || qp.state != IBV_QPS_RTS) {
    qp.retransmit_at.reset();
    return;
  }
  if (psn_diff(qp.tx_psn, qp.una_psn) > 0) {
    qp.retransmit_at = Clock::now() + timeout_of(qp);
    qp.dev->wake_engine_if_needed(*qp.retransmit_at);
  } else {
    qp.retransmit_at.reset();
  }
}

// Sends whatever the window, the READ limit and fences allow.
void tx_pump(Qp& qp) {
  if (qp.state != IBV_QPS_RTS || qp.rnr_resume_at) return;
  const uint32_t window = Config::get().window;
  const int max_reads = std::max<int>(1, qp.max_rd_atomic);
  bool sent_any = false;
  while (qp.tx_index < qp.sq.size()) {
    SendWqe& w = qp.sq[qp.tx_index];
    int32_t in_flight = psn_diff(qp.tx_psn, qp.una_psn);
    if (w.is_read() && w.read_got == w.npsn) {
      // All its data is here already (a resend pass over a READ that completed out of
      // order, behind an older one): nothing to ask for.
      w.sent = 1;
      qp.tx_psn = psn_add(w.first_psn, w.npsn);
      qp.tx_index++;
      continue;
    }
    if (w.is_read()) {
      if (qp.reads_in_flight >= max_reads) break;
      if (in_flight > 0 && static_cast<uint32_t>(in_flight) + w.npsn > window) break;
      send_read_request(qp, w);
      w.sent = 1;
      qp.reads_in_flight++;
      qp.tx_psn = psn_add(w.first_psn, w.npsn);
      if (psn_diff(qp.tx_psn, qp.sent_high) > 0) qp.sent_high = qp.tx_psn;
      qp.tx_index++;
      sent_any = true;
      continue;
    }
    if (w.fence && qp.reads_in_flight > 0) break;  // IBV_SEND_FENCE: after earlier READs
    while (w.sent < w.npsn && static_cast<uint32_t>(in_flight) < window) {
      if (!send_data_packet(qp, w, w.sent, static_cast<uint32_t>(in_flight) + 1 == window)) {
        // A bad lkey or range in the gather list: local protection error, QP to ERROR.
        // Earlier WQEs still in flight are flushed with it.
        if (Config::get().log >= 1) log_line("QP 0x%x: WQE %llu has a bad local key or range", qp.qpn(),
                                             static_cast<unsigned long long>(w.wr_id));
        while (qp.tx_index > 0) {
          complete_send(qp, qp.sq.front(), IBV_WC_WR_FLUSH_ERR);
          qp.sq.pop_front();
          qp.tx_index--;
        }
        fail_head(qp, IBV_WC_LOC_PROT_ERR);
        return;
      }
      w.sent++;
      qp.tx_psn = psn_add(qp.tx_psn, 1);
      if (psn_diff(qp.tx_psn, qp.sent_high) > 0) qp.sent_high = qp.tx_psn;
      in_flight++;
      sent_any = true;
    }
    if (w.sent < w.npsn) break;
    qp.tx_index++;
  }
  if (sent_any && !qp.retransmit_at) arm_retransmit(qp);
}

// Go back N: send again everything from the oldest unacknowledged PSN.
void rewind(Qp& qp) {
  qp.reads_in_flight = 0;
  qp.tx_index = 0;
  qp.tx_psn = qp.una_psn;
  for (size_t i = 0; i < qp.sq.size(); ++i) {
    SendWqe& w = qp.sq[i];
    if (i == 0 && !w.is_read()) {
      int32_t d = psn_diff(qp.una_psn, w.first_psn);
      w.sent = d > 0 ? static_cast<uint32_t>(d) : 0;
    } else {
      w.sent = 0;
    }
    if (i == 0 && w.is_read()) qp.tx_psn = w.first_psn;
    w.rerequested = UINT32_MAX;
  }
}

// Completes, in order, the WQEs at the front that are done: SEND/WRITEs the responder
// has acknowledged, READs whose data has all arrived. Then moves una_psn, the oldest PSN
// still owed something, and restarts the retry budget if that is progress.
void complete_done(Qp& qp) {
  const uint32_t old_una = qp.una_psn;
  while (!qp.sq.empty()) {
    SendWqe& w = qp.sq.front();
    if (w.is_read()) {
      if (w.read_got != w.npsn) break;
      } else {
      const uint32_t last = psn_add(w.first_psn, w.npsn - 1);
      if (psn_diff(last, qp.acked_psn) >= 0) break;  // not acknowledged yet
    }
    complete_send(qp, w, IBV_WC_SUCCESS);
    qp.sq.pop_front();
    if (qp.tx_index > 0) qp.tx_index--;
  }
  if (qp.sq.empty()) {
    qp.una_psn = qp.next_psn;
  } else {
    const SendWqe& w = qp.sq.front();
    // A READ is owed its data from its first PSN on; anything else from the first PSN the
    // responder has not acknowledged.
    uint32_t una = w.first_psn;
    if (!w.is_read() && psn_diff(qp.acked_psn, una) > 0) una = qp.acked_psn;
    if (psn_diff(una, qp.una_psn) > 0) qp.una_psn = una;
  }
  if (psn_diff(qp.una_psn, old_una) > 0) {
    // While resending (go back N), the cursor may be behind what the responder has now
    // acknowledged (it had the packets; only its ACK was lost): skip ahead.
    if (psn_diff(qp.tx_psn, qp.una_psn) < 0) rewind(qp);
    // Forward progress: the retry budget starts over (as rxe does).
    qp.retries_left = qp.retry_cnt;
    qp.retransmit_at.reset();
    arm_retransmit(qp);
  }
}

// Everything up to and including PSN `p` has been acknowledged.
void ack_upto(Qp& qp, uint32_t p) {
  const uint32_t next = psn_add(p, 1);
  if (psn_diff(p, qp.sent_high) >= 0) return;  // acknowledges what was never sent
  if (psn_diff(next, qp.acked_psn) > 0) qp.acked_psn = next;
  complete_done(qp);
}

void fail_head(Qp& qp, ibv_wc_status status) {
  if (!qp.sq.empty()) {
    complete_send(qp, qp.sq.front(), status);
    qp.sq.pop_front();
  }
  if (Config::get().log >= 1)
    log_line("QP 0x%x: %s, moving to ERROR", qp.qpn(), wc_status_text(status));
  qp_enter_error(qp);
}

void on_read_response(Qp& qp, const Packet& p) {
  // Which outstanding READ is this for? Each owns the PSNs of its response packets.
  SendWqe* w = nullptr;
  for (size_t i = 0; i < qp.tx_index && !w; ++i) {
    SendWqe& c = qp.sq[i];
    const int32_t d = psn_diff(p.bth.psn, c.first_psn);
    if (c.is_read() && d >= 0 && d < static_cast<int32_t>(c.npsn)) w = &c;
  }
  if (!w || w->read_got == w->npsn) return;  // a late duplicate
  const uint32_t expected = psn_add(w->first_psn, w->read_got);
  const int32_t d = psn_diff(p.bth.psn, expected);
  if (d < 0) return;  // a duplicate of a response already placed
  if (d > 0) {
    // A response went missing. Ask once for the rest, from the missing PSN: a READ
    // request with a PSN the responder has seen is answered again (IBA 9.7.5.1.3). The
    // later responses of the first request still arriving must not each ask again.
    if (w->rerequested != expected) {
      w->rerequested = expected;
      send_read_request(qp, *w);
    }
    return;
  }
  const bool last = w->read_got + 1 == w->npsn;
  const uint64_t off = static_cast<uint64_t>(w->read_got) * qp.mtu;
  const uint64_t want = std::min<uint64_t>(qp.mtu, w->length - off);
  const OpcodeInfo info = opcode_info(p.bth.opcode);
  if (info.last != last || p.payload_len != want) {
    fail_head(qp, IBV_WC_BAD_RESP_ERR);
    return;
  }
  if (p.payload_len && !scatter(qp, w->sg, off, p.payload, p.payload_len)) {
    fail_head(qp, IBV_WC_LOC_PROT_ERR);
    return;
  }
  w->read_got++;
  if (last) qp.reads_in_flight--;
  // Progress: the retry budget starts over, the timer runs from now.
  qp.retries_left = qp.retry_cnt;
  qp.retransmit_at.reset();
  // A READ response means the responder executed everything before the READ.
  const uint32_t read_start = w->first_psn;
  if (psn_diff(read_start, qp.acked_psn) > 0) qp.acked_psn = read_start;
  complete_done(qp);
  arm_retransmit(qp);
}

void on_ack(Qp& qp, const Packet& p) {
  const uint8_t syn = p.aeth.syndrome;
  const uint32_t before = psn_add(p.bth.psn, kPsnMask);  // psn - 1
  switch (aeth_kind(syn)) {
    case AethKind::ack:
      ack_upto(qp, p.bth.psn);
      break;
    case AethKind::rnr_nak:
      // Receiver Not Ready: the responder had no RECV posted. Everything before this PSN
      // arrived; wait the timer it named, then resend from here.
      ack_upto(qp, before);
      if (qp.rnr_retry != 7) {
        if (qp.rnr_left == 0) {
          fail_head(qp, IBV_WC_RNR_RETRY_EXC_ERR);
          return;
        }
        qp.rnr_left--;
      }
      qp.retransmit_at.reset();
      qp.rnr_resume_at = Clock::now() + std::chrono::microseconds(rnr_timer_us(syn & 0x1F));
      qp.dev->wake_engine_if_needed(*qp.rnr_resume_at);
      break;
    case AethKind::nak:
      ack_upto(qp, before);
      switch (syn & 0x1F) {
        case kNakPsnSequence:
          // The responder missed a packet and expects this PSN: go back and resend.
          if (qp.rnr_resume_at) break;  // already waiting out an RNR NAK
          if (psn_diff(p.bth.psn, qp.una_psn) >= 0) {
            rewind(qp);
            tx_pump(qp);
          }
          break;
        case kNakInvalidRequest: fail_head(qp, IBV_WC_REM_INV_REQ_ERR); break;
        case kNakRemoteAccess: fail_head(qp, IBV_WC_REM_ACCESS_ERR); break;
        default: fail_head(qp, IBV_WC_REM_OP_ERR); break;
      }
      break;
    case AethKind::reserved:
      break;
  }
  if (qp.state == IBV_QPS_RTS) tx_pump(qp);
}

// ---- responder -------------------------------------------------------------------------

// A responder error the requester must hear about (IBA class C): NAK it, then ERROR.
void responder_fatal(Qp& qp, uint8_t nak_code, uint32_t psn, const char* why) {
  if (Config::get().log >= 1) log_line("QP 0x%x: %s; NAK and moving to ERROR", qp.qpn(), why);
  send_ack(qp, kAethNak | nak_code, psn);
  qp_enter_error(qp);
}

// Checks an incoming RETH against our MRs: key, protection domain, rights, bounds.
Mr* check_rkey(Qp& qp, const Reth& r, int right) {
  if (!(qp.access_flags & right)) return nullptr;  // the QP does not allow it at all
  Mr* mr = qp.dev->find_mr(r.rkey);
  if (!mr || mr->pd != qp.pd || !(mr->access & right)) return nullptr;
  if (!mr_ptr(mr, r.va, r.length)) return nullptr;
  return mr;
}

// Response packets a READ of `length` bytes takes (at least one, even for 0 bytes).
uint32_t read_packets(uint32_t length, uint32_t mtu) {
  return static_cast<uint32_t>(std::max<uint64_t>(1, (uint64_t{length} + mtu - 1) / mtu));
}

void answer_read(Qp& qp, const Packet& req, Mr* mr) {
  const uint32_t n = read_packets(req.reth.length, qp.mtu);
  for (uint32_t k = 0; k < n; ++k) {
    const uint64_t off = static_cast<uint64_t>(k) * qp.mtu;
    const uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(qp.mtu, req.reth.length - off));
    Packet p;
    p.bth.opcode = n == 1 ? kReadResponseOnly
                   : k == 0 ? kReadResponseFirst
                   : k + 1 == n ? kReadResponseLast
                                : kReadResponseMiddle;
    p.bth.psn = psn_add(req.bth.psn, k);
    p.aeth.syndrome = kAethAck | kAckNoCreditLimit;
    p.aeth.msn = qp.msn;
    // Copied now: the owner of the memory may be writing it while we read it (that is
    // allowed), and the ICRC must describe exactly the bytes that go out.
    uint8_t* data = nullptr;
    if (len) {
      data = qp.dev->tx_scratch();
      std::memcpy(data, mr_ptr(mr, req.reth.va + off, len), len);
    }
    send_packet(qp, p, data, len);
  }
}

void on_duplicate(Qp& qp, const Packet& p) {
  if (p.bth.opcode == kReadRequest) {
    // A READ request seen before: its responses were lost. Answer it again, from its
    // own RETH (it may ask for only the tail of the original).
    if (p.reth.length > (1u << 31)) return;
    if (Mr* mr = p.reth.length ? check_rkey(qp, p.reth, IBV_ACCESS_REMOTE_READ) : nullptr;
        mr || p.reth.length == 0)
      answer_read(qp, p, mr);
    return;
  }
  // A SEND/WRITE we already have: the ACK got lost. Acknowledge again (coalesced).
  qp.ack_pending = true;
}

void on_request(Qp& qp, const Packet& p) {
  const OpcodeInfo info = opcode_info(p.bth.opcode);
  const int32_t d = psn_diff(p.bth.psn, qp.epsn);
  if (Config::get().log >= 3)
    log_line("QP 0x%x: request psn %u epsn %u d %d ack_req %d rq %zu nak_sent %d", qp.qpn(),
             p.bth.psn, qp.epsn, d, p.bth.ack_req, qp.rq.size(), qp.nak_sent);
  if (d < 0) {
    on_duplicate(qp, p);
    return;
  }
  if (d > 0) {
    // A gap: a packet before this one was lost. One NAK says which PSN we expect; the
    // requester goes back to it. Until it arrives, later packets are dropped silently.
    if (!qp.nak_sent) {
      send_ack(qp, kAethNak | kNakPsnSequence, qp.epsn);
      qp.nak_sent = true;
    }
    return;
  }
  qp.nak_sent = false;
  const uint8_t op = p.bth.opcode;
  const bool is_send = op <= kSendOnlyImm;
  const bool is_write = op >= kWriteFirst && op <= kWriteOnlyImm;

  // Opcode sequence: a message in progress must continue; otherwise one must start.
  const bool continues = !info.first;
  if ((qp.in_msg == Qp::InMsg::none && continues) ||
      (qp.in_msg == Qp::InMsg::send && !(is_send && continues)) ||
      (qp.in_msg == Qp::InMsg::write && !(is_write && continues))) {
    responder_fatal(qp, kNakInvalidRequest, p.bth.psn, "opcode out of sequence");
    return;
  }
  // Every packet but the last of a message carries exactly one path MTU.
  if (!info.last && p.payload_len != qp.mtu) {
    responder_fatal(qp, kNakInvalidRequest, p.bth.psn, "a middle packet is not path-MTU sized");
    return;
  }
  if (info.last && p.payload_len > qp.mtu) {
    responder_fatal(qp, kNakInvalidRequest, p.bth.psn, "packet larger than the path MTU");
    return;
  }

  if (op == kReadRequest) {
    if (p.reth.length > (1u << 31)) {  // above the port's max_msg_sz
      responder_fatal(qp, kNakInvalidRequest, p.bth.psn, "READ longer than 2^31 bytes");
      return;
    }
    if (qp.max_dest_rd_atomic == 0) {
      responder_fatal(qp, kNakInvalidRequest, p.bth.psn, "READ but max_dest_rd_atomic is 0");
      return;
    }
    Mr* mr = nullptr;
    if (p.reth.length > 0 && !(mr = check_rkey(qp, p.reth, IBV_ACCESS_REMOTE_READ))) {
      responder_fatal(qp, kNakRemoteAccess, p.bth.psn, "READ with a bad rkey, range or right");
      return;
    }
    qp.msn = psn_add(qp.msn, 1);
    answer_read(qp, p, mr);
    qp.epsn = psn_add(qp.epsn, read_packets(p.reth.length, qp.mtu));
    return;
  }

  // Operations that consume a receive WQE need one now, or the answer is RNR NAK.
  const bool needs_recv = (is_send && info.first) || op == kWriteLastImm || op == kWriteOnlyImm;
  if (needs_recv && qp.rq.empty()) {
    send_ack(qp, kAethRnrNak | (qp.min_rnr_timer & 0x1F), p.bth.psn);
    qp.nak_sent = true;  // later packets of this burst are dropped without a sequence NAK
    return;
  }

  if (is_send) {
    if (info.first) {
      qp.in_msg = Qp::InMsg::send;
      qp.in_offset = 0;
    }
    RecvWqe& r = qp.rq.front();
    if (qp.in_offset + p.payload_len > r.total) {
      complete_recv(qp, r, IBV_WC_LOC_LEN_ERR, IBV_WC_RECV, 0, nullptr, false);
      qp.rq.pop_front();
      responder_fatal(qp, kNakInvalidRequest, p.bth.psn, "SEND larger than the posted RECV");
      return;
    }
    if (p.payload_len && !scatter(qp, r.sg, qp.in_offset, p.payload, p.payload_len)) {
      complete_recv(qp, r, IBV_WC_LOC_PROT_ERR, IBV_WC_RECV, 0, nullptr, false);
      qp.rq.pop_front();
      responder_fatal(qp, kNakRemoteOperational, p.bth.psn, "RECV scatter list has a bad lkey");
      return;
    }
    qp.in_offset += p.payload_len;
    if (info.last) {
      complete_recv(qp, r, IBV_WC_SUCCESS, IBV_WC_RECV, static_cast<uint32_t>(qp.in_offset),
                    info.imm ? &p.imm : nullptr, p.bth.solicited);
      qp.rq.pop_front();
      qp.msn = psn_add(qp.msn, 1);
      qp.in_msg = Qp::InMsg::none;
    }
  } else if (is_write) {
    if (info.first) {
      Mr* mr = nullptr;
      if (p.reth.length > (1u << 31)) {
        responder_fatal(qp, kNakInvalidRequest, p.bth.psn, "WRITE longer than 2^31 bytes");
        return;
      }
      if (p.reth.length > 0 && !(mr = check_rkey(qp, p.reth, IBV_ACCESS_REMOTE_WRITE))) {
        responder_fatal(qp, kNakRemoteAccess, p.bth.psn, "WRITE with a bad rkey, range or right");
        return;
      }
      qp.in_msg = Qp::InMsg::write;
      qp.in_mr = mr;
      qp.in_va = p.reth.va;
      qp.in_remaining = p.reth.length;
      qp.in_offset = 0;
    }
    if (p.payload_len > qp.in_remaining || (info.last && p.payload_len != qp.in_remaining)) {
      responder_fatal(qp, kNakInvalidRequest, p.bth.psn, "WRITE payload does not match its RETH length");
      return;
    }
    if (p.payload_len) {
      // The MR may have been deregistered since the first packet: look it up again.
      uint8_t* dst = qp.in_mr && qp.dev->find_mr(qp.in_mr->ibv.rkey) == qp.in_mr
                         ? mr_ptr(qp.in_mr, qp.in_va, p.payload_len)
                         : nullptr;
      if (!dst) {
        responder_fatal(qp, kNakRemoteAccess, p.bth.psn, "WRITE target vanished");
        return;
      }
      std::memcpy(dst, p.payload, p.payload_len);
    }
    qp.in_va += p.payload_len;
    qp.in_remaining -= static_cast<uint32_t>(p.payload_len);
    qp.in_offset += p.payload_len;
    if (info.last) {
      if (info.imm) {
        complete_recv(qp, qp.rq.front(), IBV_WC_SUCCESS, IBV_WC_RECV_RDMA_WITH_IMM,
                      static_cast<uint32_t>(qp.in_offset), &p.imm, p.bth.solicited);
        qp.rq.pop_front();
      }
      qp.msn = psn_add(qp.msn, 1);
      qp.in_msg = Qp::InMsg::none;
    }
  } else {
    responder_fatal(qp, kNakInvalidRequest, p.bth.psn, "unsupported opcode");
    return;
  }
  qp.epsn = psn_add(qp.epsn, 1);
  if (p.bth.ack_req) qp.ack_pending = true;
}

struct Rule {
  int required;
  int optional;
};

// Which attributes each RC transition requires and allows (IBA table 92, as the Linux
// kernel's ib_modify_qp_is_ok has it). found=false: the transition does not exist.
bool transition_rule(ibv_qp_state from, ibv_qp_state to, Rule& rule) {
  rule = {IBV_QP_STATE, 0};
  if (to == IBV_QPS_RESET || to == IBV_QPS_ERR) return true;
  if (from == IBV_QPS_RESET && to == IBV_QPS_INIT) {
    rule.required |= IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
    return true;
  }
  if (from == IBV_QPS_INIT && to == IBV_QPS_INIT) {
    rule.optional = IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
    return true;
  }
  if (from == IBV_QPS_INIT && to == IBV_QPS_RTR) {
    rule.required |= IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                     IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
    rule.optional = IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_PKEY_INDEX;
    return true;
  }
  if (from == IBV_QPS_RTR && to == IBV_QPS_RTS) {
    rule.required |= IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                     IBV_QP_MAX_QP_RD_ATOMIC;
    rule.optional = IBV_QP_CUR_STATE | IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS |
                    IBV_QP_MIN_RNR_TIMER | IBV_QP_PATH_MIG_STATE;
    return true;
  }
  if (from == IBV_QPS_RTS && to == IBV_QPS_RTS) {
    rule.optional = IBV_QP_CUR_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_ALT_PATH |
                    IBV_QP_PATH_MIG_STATE | IBV_QP_MIN_RNR_TIMER;
    return true;
  }
  return false;
}

const char* state_name(ibv_qp_state s) {
  switch (s) {
    case IBV_QPS_RESET: return "RESET";
    case IBV_QPS_INIT: return "INIT";
    case IBV_QPS_RTR: return "RTR";
    case IBV_QPS_RTS: return "RTS";
    case IBV_QPS_SQD: return "SQD";
    case IBV_QPS_SQE: return "SQE";
    case IBV_QPS_ERR: return "ERR";
    default: return "?";
  }
}

int reject(const Qp& qp, const char* why) {
  if (Config::get().log >= 1) log_line("QP 0x%x: modify_qp refused: %s (EINVAL)", qp.qpn(), why);
  return EINVAL;
}

void reset_transport(Qp& qp) {
  qp.sq.clear();
  qp.rq.clear();
  qp.tx_index = 0;
  qp.reads_in_flight = 0;
  qp.retransmit_at.reset();
  qp.rnr_resume_at.reset();
  qp.in_msg = Qp::InMsg::none;
  qp.nak_sent = false;
  qp.ack_pending = false;
  qp.msn = 0;
}

}  // namespace

void cq_push(Cq& cq, const ibv_wc& wc, bool solicited) {
  std::lock_guard<std::mutex> l(cq.mu);
  if (static_cast<int>(cq.entries.size()) >= cq.capacity) {
    // CQ overrun: a real device raises IBV_EVENT_CQ_ERR. Say so loudly and drop.
    if (!cq.overrun_reported)
      log_line("CQ overrun: more than %d completions not polled; completions are being lost",
               cq.capacity);
    cq.overrun_reported = true;
    return;
  }
  cq.entries.push_back(wc);
  cq.ready.store(static_cast<int>(cq.entries.size()), std::memory_order_release);
  if (cq.armed.load(std::memory_order_relaxed) && cq.channel &&
      (!cq.solicited_only || solicited || wc.status != IBV_WC_SUCCESS)) {
    cq.armed.store(false, std::memory_order_relaxed);
    std::lock_guard<std::mutex> c(cq.channel->mu);
    cq.channel->events.push_back(&cq);
    uint64_t one = 1;
    (void)!write(cq.channel->ibv.fd, &one, sizeof one);
  }
}

void qp_enter_error(Qp& qp) {
  qp.state = IBV_QPS_ERR;
  qp.ibv.state = IBV_QPS_ERR;
  // Everything still queued completes with "flushed" (IBV_WC_WR_FLUSH_ERR), in order.
  for (const SendWqe& w : qp.sq) complete_send(qp, w, IBV_WC_WR_FLUSH_ERR);
  for (const RecvWqe& r : qp.rq)
    complete_recv(qp, r, IBV_WC_WR_FLUSH_ERR, IBV_WC_RECV, 0, nullptr, false);
  qp.sq.clear();
  qp.rq.clear();
  qp.tx_index = 0;
  qp.reads_in_flight = 0;
  qp.retransmit_at.reset();
  qp.rnr_resume_at.reset();
  qp.ack_pending = false;
  qp.in_msg = Qp::InMsg::none;
}

int qp_modify(Qp& qp, const ibv_qp_attr& a, int mask) {
  const ibv_qp_state from = qp.state;
  const ibv_qp_state to = (mask & IBV_QP_STATE) ? a.qp_state : from;
  Rule rule;
  if (!transition_rule(from, to, rule)) {
    if (to == IBV_QPS_SQD || to == IBV_QPS_SQE || from == IBV_QPS_SQD)
      return EOPNOTSUPP;  // send-queue drain is not implemented
    return reject(qp, (std::string(state_name(from)) + " -> " + state_name(to) +
                       " is not a valid transition").c_str());
  }
  if (!(mask & IBV_QP_STATE)) rule.required &= ~IBV_QP_STATE;
  if ((mask & rule.required) != rule.required) return reject(qp, "a required attribute is missing");
  if (mask & ~(rule.required | rule.optional | IBV_QP_STATE))
    return reject(qp, "an attribute not allowed in this transition");
  if ((mask & IBV_QP_CUR_STATE) && a.cur_qp_state != from) return reject(qp, "cur_qp_state mismatch");
  if ((mask & IBV_QP_PORT) && a.port_num != 1) return reject(qp, "port_num must be 1");
  if ((mask & IBV_QP_PKEY_INDEX) && a.pkey_index != 0) return reject(qp, "pkey_index must be 0");
  if ((mask & IBV_QP_ACCESS_FLAGS) &&
      (a.qp_access_flags & ~(IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                             IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC)))
    return reject(qp, "unknown qp_access_flags");
  uint32_t peer_ip = qp.peer_ip;
  if (mask & IBV_QP_AV) {
    // RoCE has no LIDs: the address is the GID in the GRH, which is therefore required.
    if (!a.ah_attr.is_global) return reject(qp, "RoCE needs a GRH (ah_attr.is_global = 1)");
    if (a.ah_attr.grh.sgid_index != 0) return reject(qp, "sgid_index must be 0 (the only GID)");
    if (a.ah_attr.port_num != 0 && a.ah_attr.port_num != 1) return reject(qp, "ah_attr.port_num must be 1");
    const uint8_t* g = a.ah_attr.grh.dgid.raw;
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (std::memcmp(g, kMapped, 12) != 0)
      return reject(qp, "the destination GID is not an IPv4-mapped RoCE v2 GID (::ffff:a.b.c.d)");
    peer_ip = static_cast<uint32_t>(g[12]) << 24 | static_cast<uint32_t>(g[13]) << 16 |
              static_cast<uint32_t>(g[14]) << 8 | g[15];
  }
  if ((mask & IBV_QP_PATH_MTU) && (a.path_mtu < IBV_MTU_256 || a.path_mtu > IBV_MTU_4096))
    return reject(qp, "path_mtu out of range");
  if ((mask & IBV_QP_DEST_QPN) && a.dest_qp_num > wire::kPsnMask) return reject(qp, "dest_qp_num over 24 bits");
  if ((mask & IBV_QP_MAX_DEST_RD_ATOMIC) && a.max_dest_rd_atomic > 16)
    return reject(qp, "max_dest_rd_atomic above the device's 16");
  if ((mask & IBV_QP_MAX_QP_RD_ATOMIC) && a.max_rd_atomic > 16)
    return reject(qp, "max_rd_atomic above the device's 16");
  if ((mask & IBV_QP_TIMEOUT) && a.timeout > 31) return reject(qp, "timeout above 31");
  if ((mask & IBV_QP_RETRY_CNT) && a.retry_cnt > 7) return reject(qp, "retry_cnt above 7");
  if ((mask & IBV_QP_RNR_RETRY) && a.rnr_retry > 7) return reject(qp, "rnr_retry above 7");
  if ((mask & IBV_QP_MIN_RNR_TIMER) && a.min_rnr_timer > 31) return reject(qp, "min_rnr_timer above 31");

  // All checked: apply.
  if (mask & IBV_QP_ACCESS_FLAGS) qp.access_flags = a.qp_access_flags;
  if (mask & IBV_QP_PKEY_INDEX) qp.pkey_index = a.pkey_index;
  if (mask & IBV_QP_PORT) qp.port = a.port_num;
  if (mask & IBV_QP_AV) {
    qp.ah = a.ah_attr;
    qp.peer_ip = peer_ip;
  }
  if (mask & IBV_QP_PATH_MTU) {
    qp.path_mtu = a.path_mtu;
    qp.mtu = mtu_bytes(a.path_mtu);
  }
  if (mask & IBV_QP_DEST_QPN) qp.dest_qpn = a.dest_qp_num;
  if (mask & IBV_QP_RQ_PSN) qp.rq_psn = a.rq_psn & kPsnMask;
  if (mask & IBV_QP_SQ_PSN) qp.sq_psn = a.sq_psn & kPsnMask;
  if (mask & IBV_QP_MAX_DEST_RD_ATOMIC) qp.max_dest_rd_atomic = a.max_dest_rd_atomic;
  if (mask & IBV_QP_MAX_QP_RD_ATOMIC) qp.max_rd_atomic = a.max_rd_atomic;
  if (mask & IBV_QP_MIN_RNR_TIMER) qp.min_rnr_timer = a.min_rnr_timer;
  if (mask & IBV_QP_TIMEOUT) qp.timeout = a.timeout;
  if (mask & IBV_QP_RETRY_CNT) qp.retry_cnt = a.retry_cnt;
  if (mask & IBV_QP_RNR_RETRY) qp.rnr_retry = a.rnr_retry;

  if (to != from || (mask & IBV_QP_STATE)) {
    if (to == IBV_QPS_RESET) {
      reset_transport(qp);
    } else if (to == IBV_QPS_ERR) {
      qp_enter_error(qp);
    } else if (to == IBV_QPS_INIT && from == IBV_QPS_RESET) {
      reset_transport(qp);
    } else if (to == IBV_QPS_RTR && from == IBV_QPS_INIT) {
      qp.epsn = qp.rq_psn;
      qp.in_msg = Qp::InMsg::none;
    } else if (to == IBV_QPS_RTS && from == IBV_QPS_RTR) {
      qp.next_psn = qp.tx_psn = qp.una_psn = qp.sent_high = qp.acked_psn = qp.sq_psn;
      qp.retries_left = qp.retry_cnt;
      qp.rnr_left = qp.rnr_retry;
    }
    qp.state = to;
    qp.ibv.state = to;
    if (Config::get().log >= 1 && to != from)
      log_line("QP 0x%x: %s -> %s", qp.qpn(), state_name(from), state_name(to));
    if (to == IBV_QPS_RTS) tx_pump(qp);  // work posted while the QP was in RTR? none: RTS only
  }
  return 0;
}

int qp_post_send(Qp& qp, ibv_send_wr* wr, ibv_send_wr** bad) {
  for (; wr; wr = wr->next) {
    int err = 0;
    if (qp.state != IBV_QPS_RTS && qp.state != IBV_QPS_ERR)
      err = EINVAL;  // the send queue works from RTS on
    else if (wr->num_sge < 0 || static_cast<uint32_t>(wr->num_sge) > qp.cap.max_send_sge)
      err = EINVAL;
    else if (qp.sq.size() >= qp.cap.max_send_wr)
      err = ENOMEM;  // the send queue is full
    else if (wr->opcode != IBV_WR_SEND && wr->opcode != IBV_WR_SEND_WITH_IMM &&
             wr->opcode != IBV_WR_RDMA_WRITE && wr->opcode != IBV_WR_RDMA_WRITE_WITH_IMM &&
             wr->opcode != IBV_WR_RDMA_READ)
      err = EOPNOTSUPP;  // atomics, memory windows, send-with-invalidate: not implemented
    if (err) {
      if (bad) *bad = wr;
      return err;
    }
    SendWqe w;
    w.wr_id = wr->wr_id;
    w.opcode = wr->opcode;
    w.signaled = qp.sq_sig_all || (wr->send_flags & IBV_SEND_SIGNALED);
    w.solicited = wr->send_flags & IBV_SEND_SOLICITED;
    w.fence = wr->send_flags & IBV_SEND_FENCE;
    uint64_t len = 0;
    for (int i = 0; i < wr->num_sge; ++i) len += wr->sg_list[i].length;
    if (len > (1ull << 31)) {
      if (bad) *bad = wr;
      return EINVAL;  // above the port's max_msg_sz
    }
    w.length = static_cast<uint32_t>(len);
    if (wr->send_flags & IBV_SEND_INLINE) {
      if (w.is_read() || len > qp.cap.max_inline_data) {
        if (bad) *bad = wr;
        return EINVAL;
      }
      // Inline: the data is copied now, so the buffer is free when post_send returns
      // and needs no memory registration.
      w.is_inline = true;
      w.inline_data.resize(len);
      size_t off = 0;
      for (int i = 0; i < wr->num_sge; ++i) {
        std::memcpy(w.inline_data.data() + off,
                    reinterpret_cast<const void*>(wr->sg_list[i].addr), wr->sg_list[i].length);
        off += wr->sg_list[i].length;
      }
    } else {
      w.sg.assign(wr->sg_list, wr->sg_list + wr->num_sge);
    }
    if (wr->opcode != IBV_WR_SEND && wr->opcode != IBV_WR_SEND_WITH_IMM) {
      w.remote_addr = wr->wr.rdma.remote_addr;
      w.rkey = wr->wr.rdma.rkey;
    }
    w.imm = wr->imm_data;
    w.npsn = std::max<uint32_t>(1, static_cast<uint32_t>((len + qp.mtu - 1) / qp.mtu));
    if (qp.state == IBV_QPS_ERR) {
      complete_send(qp, w, IBV_WC_WR_FLUSH_ERR);  // a QP in ERROR flushes what is posted
      continue;
    }
    w.first_psn = qp.next_psn;
    qp.next_psn = psn_add(qp.next_psn, w.npsn);
    qp.sq.push_back(std::move(w));
  }
  tx_pump(qp);
  return 0;
}

int qp_post_recv(Qp& qp, ibv_recv_wr* wr, ibv_recv_wr** bad) {
  for (; wr; wr = wr->next) {
    int err = 0;
    if (qp.state == IBV_QPS_RESET)
      err = EINVAL;  // the receive queue works from INIT on
    else if (wr->num_sge < 0 || static_cast<uint32_t>(wr->num_sge) > qp.cap.max_recv_sge)
      err = EINVAL;
    else if (qp.rq.size() >= qp.cap.max_recv_wr)
      err = ENOMEM;
    if (err) {
      if (bad) *bad = wr;
      return err;
    }
    RecvWqe r;
    r.wr_id = wr->wr_id;
    r.sg.assign(wr->sg_list, wr->sg_list + wr->num_sge);
    for (const ibv_sge& s : r.sg) r.total += s.length;
    if (qp.state == IBV_QPS_ERR) {
      complete_recv(qp, r, IBV_WC_WR_FLUSH_ERR, IBV_WC_RECV, 0, nullptr, false);
      continue;
    }
    qp.rq.push_back(std::move(r));
  }
  return 0;
}

void qp_receive(Qp& qp, const Packet& p) {
  const OpcodeInfo info = opcode_info(p.bth.opcode);
  if (info.request) {
    // The responder works from RTR on; before that, and in ERROR, packets are dropped.
    if (qp.state == IBV_QPS_RTR || qp.state == IBV_QPS_RTS) on_request(qp, p);
    return;
  }
  if (qp.state != IBV_QPS_RTS) return;
  if (p.bth.opcode == kAcknowledge)
    on_ack(qp, p);
  else
    on_read_response(qp, p);
  if (qp.state == IBV_QPS_RTS) tx_pump(qp);
}

void qp_flush_ack(Qp& qp) {
  if (!qp.ack_pending) return;
  qp.ack_pending = false;
  if (qp.state != IBV_QPS_RTR && qp.state != IBV_QPS_RTS) return;
  // One ACK covers everything before the PSN we expect next.
  send_ack(qp, kAethAck | kAckNoCreditLimit, psn_add(qp.epsn, kPsnMask));
}

std::optional<Clock::time_point> qp_deadline(const Qp& qp) {
  if (qp.rnr_resume_at) return qp.rnr_resume_at;
  return qp.retransmit_at;
}

void qp_timers(Qp& qp, Clock::time_point now) {
  if (qp.state != IBV_QPS_RTS) return;
  if (qp.rnr_resume_at && now >= *qp.rnr_resume_at) {
    qp.rnr_resume_at.reset();
    rewind(qp);
    tx_pump(qp);
    return;
  }
  if (qp.retransmit_at && now >= *qp.retransmit_at) {
    qp.retransmit_at.reset();
    if (qp.retries_left == 0) {
      // No ACK after retry_cnt resends: the peer is gone or unreachable.
      fail_head(qp, IBV_WC_RETRY_EXC_ERR);
      return;
    }
    qp.retries_left--;
    if (Config::get().log >= 1)
      log_line("QP 0x%x: ACK timeout, resending from PSN %u (%d retries left)", qp.qpn(),
               qp.una_psn, qp.retries_left);
    rewind(qp);
    tx_pump(qp);
    if (!qp.retransmit_at) arm_retransmit(qp);
  }
}

}  // namespace uroce
