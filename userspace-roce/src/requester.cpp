// The requester of an RC queue pair (the kernel's rxe_req.c): ibv_post_send's checks, the
// cutting of messages into path-MTU packets with consecutive PSNs, and the transmit pump
// that decides what may go on the wire now: the window of unacknowledged packets, the
// READ limit (max_rd_atomic), fences, and the waits the completer imposes (an RNR NAK's
// timer, an error waiting for an earlier READ's data). Go-back-N resends start here too
// (rewind). IBA vol 1, ch. 9.7.
#include <endian.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>

#include "qp_internal.hpp"

namespace uroce::transport {

using namespace wire;

namespace {

constexpr uint32_t kAckEveryPackets = 16;  // AckReq on every 16th packet of long messages

/// The PSNs a QP may have outstanding stay below half the 24-bit PSN space: psn_diff can
/// then tell every PSN in flight from an older one, for the requester (which ACK is new)
/// and the responder (which request is a duplicate) alike. The window (at most UROCE_WINDOW,
/// itself at most 4096) keeps SENDs and WRITEs far below it; only a READ, whose response PSNs are
/// all outstanding at once, can approach it: a READ of 2^31 bytes (max_msg_sz) at path
/// MTU 256 needs exactly 2^23 PSNs. rxe admits such a READ (rxe_verbs.c validate_send_wr
/// checks only the length against 2^31, rxe_req.c's window test only the first PSN);
/// here ibv_post_send refuses it with EINVAL.
constexpr uint32_t kMaxOutstandingPsns = (1u << 23) - 1;

const char* wr_opcode_name(ibv_wr_opcode op) {
  switch (op) {
    case IBV_WR_ATOMIC_CMP_AND_SWP: return "IBV_WR_ATOMIC_CMP_AND_SWP";
    case IBV_WR_ATOMIC_FETCH_AND_ADD: return "IBV_WR_ATOMIC_FETCH_AND_ADD";
    case IBV_WR_LOCAL_INV: return "IBV_WR_LOCAL_INV";
    case IBV_WR_BIND_MW: return "IBV_WR_BIND_MW";
    case IBV_WR_SEND_WITH_INV: return "IBV_WR_SEND_WITH_INV";
    case IBV_WR_TSO: return "IBV_WR_TSO";
    case IBV_WR_DRIVER1: return "IBV_WR_DRIVER1";
    case IBV_WR_ATOMIC_WRITE: return "IBV_WR_ATOMIC_WRITE";
    default: return "an unknown opcode";
  }
}

// Says on stderr, once per opcode for the life of the process, that ibv_post_send cannot
// do it: a program fails loudly rather than silently (stubs.cpp does the same for the
// verbs calls that are not implemented).
void tell_once_unsupported(ibv_wr_opcode op) {
  static std::mutex mu;
  static std::set<int> told;
  std::lock_guard<std::mutex> l(mu);
  if (told.insert(static_cast<int>(op)).second)
    log_line("ibv_post_send with %s is not implemented by userspace-roce (EOPNOTSUPP)",
             wr_opcode_name(op));
}

bool supported(ibv_wr_opcode op) {
  return op == IBV_WR_SEND || op == IBV_WR_SEND_WITH_IMM || op == IBV_WR_RDMA_WRITE ||
         op == IBV_WR_RDMA_WRITE_WITH_IMM || op == IBV_WR_RDMA_READ;
}

// What ibv_post_send refuses before anything is queued; 0 if the WR may be posted.
int check_send_wr(const Qp& qp, const ibv_send_wr& wr, uint64_t& length) {
  // The send queue works from RTS on (and flushes what is posted in ERROR).
  if (qp.state != IBV_QPS_RTS && qp.state != IBV_QPS_ERR) return EINVAL;
  if (wr.num_sge < 0 || static_cast<uint32_t>(wr.num_sge) > qp.cap.max_send_sge) return EINVAL;
  if (qp.sq.size() >= qp.cap.max_send_wr) return ENOMEM;  // the send queue is full
  if (!supported(wr.opcode)) {
    // Atomics among them: the device reports atomic_cap IBV_ATOMIC_NONE.
    tell_once_unsupported(wr.opcode);
    return EOPNOTSUPP;
  }
  length = 0;
  for (int i = 0; i < wr.num_sge; ++i) length += wr.sg_list[i].length;
  if (length > (1ull << 31)) return EINVAL;  // above the port's max_msg_sz
  if ((wr.send_flags & IBV_SEND_INLINE) &&
      (wr.opcode == IBV_WR_RDMA_READ || length > qp.cap.max_inline_data))
    return EINVAL;
  if (wr.opcode == IBV_WR_RDMA_READ && packets_for(length, qp.mtu) > kMaxOutstandingPsns) {
    if (logging(1))
      log_line("QP 0x%x: RDMA READ of %llu bytes refused (EINVAL): at path MTU %u it needs "
               "%u PSNs, half the PSN space; post it in smaller pieces or raise path_mtu",
               qp.qpn(), static_cast<unsigned long long>(length), qp.mtu,
               packets_for(length, qp.mtu));
    return EINVAL;
  }
  return 0;
}

SendWqe make_wqe(const Qp& qp, const ibv_send_wr& wr, uint64_t length) {
  SendWqe w;
  w.wr_id = wr.wr_id;
  w.opcode = wr.opcode;
  w.signaled = qp.sq_sig_all || (wr.send_flags & IBV_SEND_SIGNALED);
  w.solicited = wr.send_flags & IBV_SEND_SOLICITED;
  w.fence = wr.send_flags & IBV_SEND_FENCE;
  w.length = static_cast<uint32_t>(length);
  if (wr.send_flags & IBV_SEND_INLINE) {
    // Inline: the data is copied now, so the buffer is free when post_send returns and
    // needs no memory registration.
    w.is_inline = true;
    w.inline_data.resize(length);
    size_t off = 0;
    for (int i = 0; i < wr.num_sge; ++i) {
      std::memcpy(w.inline_data.data() + off, reinterpret_cast<const void*>(wr.sg_list[i].addr),
                  wr.sg_list[i].length);
      off += wr.sg_list[i].length;
    }
  } else {
    w.sg.assign(wr.sg_list, wr.sg_list + wr.num_sge);
  }
  if (wr.opcode != IBV_WR_SEND && wr.opcode != IBV_WR_SEND_WITH_IMM) {
    w.remote_addr = wr.wr.rdma.remote_addr;
    w.rkey = wr.wr.rdma.rkey;
  }
  w.imm = wr.imm_data;
  // A READ's PSNs are those of its response packets; a SEND's or WRITE's its own packets.
  // Either way at least one, even for 0 bytes.
  w.npsn = packets_for(length, qp.mtu);
  return w;
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

// Sends packet k of a SEND/WRITE WQE. Returns false if the gather list is bad.
bool send_data_packet(Qp& qp, SendWqe& w, uint32_t k, bool window_edge) {
  const uint64_t off = static_cast<uint64_t>(k) * qp.mtu;
  const uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(qp.mtu, w.length - off));
  const uint8_t* payload = nullptr;
  if (len) {
    // The common case, a packet inside one SGE, is copied from the registered memory
    // when the datagram is laid out for sending (send_packets); anything else (inline
    // data, a packet spanning SGEs) is assembled here first.
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

// A bad L_Key or range in w's gather list, found while sending it: a local protection
// error, and the QP goes to ERROR. The earlier WQEs still in flight are flushed first.
void fail_on_gather(Qp& qp, const SendWqe& w) {
  if (logging(1))
    log_line("QP 0x%x: WQE %llu has a bad local key or range", qp.qpn(),
             static_cast<unsigned long long>(w.wr_id));
  while (qp.tx_index > 0) {
    complete_send(qp, qp.sq.front(), IBV_WC_WR_FLUSH_ERR);
    qp.sq.pop_front();
    qp.tx_index--;
  }
  fail_head(qp, IBV_WC_LOC_PROT_ERR);
}

// READs sent (or passed over by a resend, their data already here) and not yet completed.
// Each holds one of the responder's max_dest_rd_atomic resources until it completes, in
// order: until then it may have to be asked for again, and the responder answers a
// repeated READ only from the READs it still holds. A READ whose data came while an older
// one still waits keeps its slot, or a new READ would push the older one out of the
// responder's ring and its resends would go unanswered. (rxe frees the slot at the same
// point: complete_ack in rxe_comp.c.)
int reads_outstanding(const Qp& qp) {
  int n = 0;
  for (size_t i = 0; i < qp.tx_index && i < qp.sq.size(); ++i)
    if (qp.sq[i].is_read()) ++n;
  return n;
}

}  // namespace

void send_packet(Qp& qp, Packet& p, const uint8_t* payload, size_t len) {
  p.bth.dest_qp = qp.dest_qpn;
  p.bth.pad = pad_for(len);
  uint8_t hdr[kMaxHeaderSize];
  size_t h = encode_headers(p, hdr);
  qp.dev->transmit(qp.peer_ip, hdr, h, payload, len, p.bth.pad);
}

void send_read_request(Qp& qp, SendWqe& w) {
  const uint64_t done = static_cast<uint64_t>(w.read_got) * qp.mtu;
  uint64_t ask = w.length - done;
  if (w.read_got > 0) {
    // The responder has executed this READ (its responses arrived), so this request is a
    // repeat, answered from its READ resource for any part of the original: ask for at
    // most a window of packets. The responder sends a READ's responses in one burst, and
    // the whole tail of a long READ would overflow the receive buffer the window is sized
    // to, losing most of it again; a part at a time, each loss costs one window.
    const uint64_t part = uint64_t{qp.dev->window_packets(qp.mtu)} * qp.mtu;
    if (ask > part) ask = part;
    w.rerequest_end = w.read_got + static_cast<uint32_t>((ask + qp.mtu - 1) / qp.mtu);
  }
  Packet p;
  p.bth.opcode = kReadRequest;
  p.bth.psn = psn_add(w.first_psn, w.read_got);
  p.bth.ack_req = true;
  p.reth = {w.remote_addr + done, w.rkey, static_cast<uint32_t>(ask)};
  send_packet(qp, p, nullptr, 0);
}

void tx_pump(Qp& qp) {
  // During an RNR NAK's wait nothing is sent: its timer resends (completer.cpp).
  if (qp.state != IBV_QPS_RTS || qp.rnr_resume_at) return;
  // UROCE_WINDOW, or fewer packets if the receive buffer cannot hold that many.
  const uint32_t window = qp.dev->window_packets(qp.mtu);
  bool sent_any = false;
  while (qp.tx_index < qp.sq.size()) {
    SendWqe& w = qp.sq[qp.tx_index];
    // An error is waiting to complete the WQE holding its PSN (completer.cpp): that WQE
    // and the ones after it would only be flushed; earlier READs may still ask again.
    if (qp.pending_failure && psn_diff(qp.pending_failure->psn, w.end_psn()) < 0) break;
    uint32_t in_flight = static_cast<uint32_t>(psn_diff(qp.tx_psn, qp.una_psn));
    if (w.is_read() && w.read_got == w.npsn) {
      // All its data is here already (a resend pass over a READ that completed out of
      // order, behind an older one): nothing to ask for.
      w.sent = 1;
      qp.tx_psn = w.end_psn();
      qp.tx_index++;
      continue;
    }
    // IBV_SEND_FENCE: this WQE, a READ as much as any other, waits until every earlier
    // READ has its data (IBA 10.8.3.3, as rxe_req.c's rxe_wqe_is_fenced has it).
    if (w.fence && reads_outstanding(qp) > 0) break;
    if (w.is_read()) {
      // Each READ outstanding takes one of max_rd_atomic slots; with none it waits for
      // ever and never goes on the wire (rxe_req.c, check_init_depth).
      if (reads_outstanding(qp) >= qp.max_rd_atomic) break;
      // All its response PSNs are outstanding at once: past the window only when nothing
      // else is in flight (or a READ longer than the window could never go), and never
      // to half the PSN space (check_send_wr refuses a READ that alone would reach it).
      if (in_flight > 0 && in_flight + w.npsn > window) break;
      if (in_flight + w.npsn > kMaxOutstandingPsns) break;
      send_read_request(qp, w);
      w.sent = 1;
      qp.tx_psn = w.end_psn();
      if (psn_diff(qp.tx_psn, qp.sent_high) > 0) qp.sent_high = qp.tx_psn;
      qp.tx_index++;
      sent_any = true;
      continue;
    }
    while (w.sent < w.npsn && in_flight < window) {
      if (!send_data_packet(qp, w, w.sent, in_flight + 1 == window)) {
        fail_on_gather(qp, w);
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

void rewind(Qp& qp) {
  qp.tx_index = 0;
  qp.tx_psn = qp.una_psn;
  for (size_t i = 0; i < qp.sq.size(); ++i) {
    SendWqe& w = qp.sq[i];
    if (i == 0 && !w.is_read()) {
      // Only its unacknowledged packets go again.
      int32_t d = psn_diff(qp.una_psn, w.first_psn);
      w.sent = d > 0 ? static_cast<uint32_t>(d) : 0;
    } else {
      w.sent = 0;
    }
    // A READ at the front is owed data from its first PSN on: the cursor starts there,
    // and its request asks only for the responses still missing (from read_got).
    if (i == 0 && w.is_read()) qp.tx_psn = w.first_psn;
    w.rerequested = UINT32_MAX;
  }
}

}  // namespace uroce::transport

namespace uroce {

int qp_post_send(Qp& qp, ibv_send_wr* wr, ibv_send_wr** bad) {
  using namespace transport;
  int err = 0;
  bool posted = false;
  for (; wr; wr = wr->next) {
    uint64_t length = 0;
    if ((err = check_send_wr(qp, *wr, length)) != 0) {
      if (bad) *bad = wr;
      break;
    }
    SendWqe w = make_wqe(qp, *wr, length);
    if (qp.state == IBV_QPS_ERR) {
      complete_send(qp, w, IBV_WC_WR_FLUSH_ERR);  // a QP in ERROR flushes what is posted
      continue;
    }
    w.first_psn = qp.next_psn;
    qp.next_psn = w.end_psn();
    qp.sq.push_back(std::move(w));
    posted = true;
  }
  // The WRs before a refused one are posted: they go now, not at the next event.
  tx_pump(qp);
  if (posted) qp_piggyback_ack(qp);
  return err;
}

}  // namespace uroce
