// The responder of an RC queue pair (the kernel's rxe_resp.c): every request packet from
// the peer passes the same stages in order, each of which may end its journey:
//   PSN          a duplicate is answered again (or dropped), a gap earns one sequence NAK
//   sequence     a message in progress must continue, or a new one must start
//   operation    the QP must allow it (qp_access_flags); atomics are never allowed
//   resources    a SEND needs a posted RECV (else RNR NAK), a READ a responder resource
//   length       packet sizes against the path MTU, DMA lengths against 2^31
//   execute      the R_Key is checked, then the data placed or read (for every packet)
//   acknowledge  the ACK is owed, coalesced to one per receive batch (qp_flush_ack)
// Errors the requester must hear about end the connection (IBA class A/C): a NAK, then
// ERROR. READs are saved in a ring of max_dest_rd_atomic "responder resources", and only a
// READ found there is answered again when its request is repeated. IBA vol 1, ch. 9.7.
#include <cstring>

#include "qp_internal.hpp"

namespace uroce::transport {

using namespace wire;

namespace {

constexpr uint32_t kMaxMessageBytes = 1u << 31;  // IBA's largest DMA length (max_msg_sz)

void send_ack(Qp& qp, uint8_t syndrome, uint32_t psn) {
  // An ACK for the PSN before the one expected, and a NAK or RNR NAK for the expected PSN
  // itself, acknowledge every PSN before it: a delayed ACK (qp_flush_ack) is owed no
  // more. (A NAK for an older PSN, a repeated READ's, does not.)
  if (psn == qp.epsn || psn_add(psn, 1) == qp.epsn) {
    qp.ack_due.reset();
    qp.last_ack_epsn = qp.epsn;
  }
  Packet p;
  p.bth.opcode = kAcknowledge;
  p.bth.psn = psn;
  p.aeth.syndrome = syndrome;
  p.aeth.msn = qp.msn;
  send_packet(qp, p, nullptr, 0);
}

// A responder error the requester must hear about (IBA class C): NAK it, then ERROR.
bool responder_fatal(Qp& qp, uint8_t nak_code, uint32_t psn, const char* why) {
  if (logging(1)) log_line("QP 0x%x: %s; NAK and moving to ERROR", qp.qpn(), why);
  // No delayed ACK after the NAK either (qp_enter_error would send one): one for a later
  // PSN than a repeated READ's NAK names would contradict it.
  qp.ack_due.reset();
  send_ack(qp, kAethNak | nak_code, psn);
  qp_enter_error(qp);
  return false;
}

bool is_send(uint8_t op) { return op <= kSendOnlyImm; }
bool is_write(uint8_t op) { return op >= kWriteFirst && op <= kWriteOnlyImm; }
bool is_atomic(uint8_t op) { return op == kCompareSwap || op == kFetchAdd; }

// Sends the responses of a READ of [va, va+length) under `rkey`, from PSN `psn` on, as
// the memory holds it now. False, with nothing sent, if the memory is no longer there.
bool answer_read(Qp& qp, uint32_t psn, uint64_t va, uint32_t rkey, uint32_t length) {
  const uint8_t* base = nullptr;
  if (length > 0 && !(base = remote_ptr(qp, rkey, va, length, IBV_ACCESS_REMOTE_READ)))
    return false;
  const uint32_t n = packets_for(length, qp.mtu);
  for (uint32_t k = 0; k < n; ++k) {
    const uint64_t off = static_cast<uint64_t>(k) * qp.mtu;
    const uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(qp.mtu, length - off));
    Packet p;
    p.bth.opcode = n == 1 ? kReadResponseOnly
                   : k == 0 ? kReadResponseFirst
                   : k + 1 == n ? kReadResponseLast
                                : kReadResponseMiddle;
    p.bth.psn = psn_add(psn, k);
    p.aeth.syndrome = kAethAck | kAckNoCreditLimit;
    p.aeth.msn = qp.msn;
    // Copied now: the owner of the memory may be writing it while we read it (that is
    // allowed), and the ICRC must describe exactly the bytes that go out.
    uint8_t* data = nullptr;
    if (len) {
      data = qp.dev->tx_scratch();
      std::memcpy(data, base + off, len);
    }
    send_packet(qp, p, data, len);
  }
  return true;
}

// ---- the READ-resource ring ------------------------------------------------------------

void save_read(Qp& qp, const Packet& req) {
  if (qp.read_ring.empty()) return;  // max_dest_rd_atomic 0: check_resources refused it
  ReadResource& r = qp.read_ring[qp.read_ring_next];
  r = {true, req.bth.psn, packets_for(req.reth.length, qp.mtu), req.reth.va, req.reth.rkey,
       req.reth.length};
  // The oldest is replaced: it is the requester's job not to have more READs outstanding
  // than max_dest_rd_atomic (rxe_resp.c, check_resource).
  qp.read_ring_next = (qp.read_ring_next + 1) % qp.read_ring.size();
}

ReadResource* find_read(Qp& qp, uint32_t psn) {
  for (ReadResource& r : qp.read_ring) {
    const int32_t d = psn_diff(psn, r.first_psn);
    if (r.valid && d >= 0 && static_cast<uint32_t>(d) < r.npsn) return &r;
  }
  return nullptr;
}

// Whether a repeated READ request asks for a part of the saved one: the same R_Key, a
// range inside the original, and response PSNs inside the original's (a requester that
// lost some responses asks for the tail from the first missing PSN).
bool repeats(const Qp& qp, const ReadResource& r, const Packet& req) {
  const Reth& q = req.reth;
  const uint32_t psn_offset = static_cast<uint32_t>(psn_diff(req.bth.psn, r.first_psn));
  return q.rkey == r.rkey && q.va >= r.va && q.length <= r.length &&
         q.va - r.va <= r.length - q.length &&
         psn_offset + packets_for(q.length, qp.mtu) <= r.npsn;
}

// A request the responder has seen before (its PSN is behind the expected one).
void on_duplicate(Qp& qp, const Packet& p) {
  if (p.bth.opcode == kReadRequest) {
    // Its responses were lost: answer again, but only a READ still saved in the ring, and
    // only for a part of it (rxe_resp.c, duplicate_request). Anything else is dropped
    // without a word (IBA class D).
    ReadResource* r = find_read(qp, p.bth.psn);
    if (!r || !repeats(qp, *r, p)) {
      if (logging(3))
        log_line("QP 0x%x: repeated READ at PSN %u is not a saved READ; dropped", qp.qpn(),
                 p.bth.psn);
      return;
    }
    // Answered from memory as it is now, looked up by key again: if the MR is gone the
    // requester hears so (rxe's read_reply: rxe_recheck_mr, then NAK remote access).
    if (!answer_read(qp, p.bth.psn, p.reth.va, p.reth.rkey, p.reth.length))
      responder_fatal(qp, kNakRemoteAccess, p.bth.psn, "repeated READ: its memory is gone");
    return;
  }
  if (is_send(p.bth.opcode) || is_write(p.bth.opcode)) {
    // A SEND/WRITE we already have: the ACK got lost. Acknowledge again (coalesced), at
    // once: the requester is resending, so it is waiting.
    qp.ack_pending = true;
    qp.ack_now = true;
  }
  // An atomic was never executed here, so it has no saved result to repeat: dropped.
}

// ---- the stages ----------------------------------------------------------------------------

// PSN: only the expected PSN goes on.
bool check_psn(Qp& qp, const Packet& p) {
  const int32_t d = psn_diff(p.bth.psn, qp.epsn);
  if (d < 0) {
    on_duplicate(qp, p);
    return false;
  }
  if (d > 0) {
    // A gap: a packet before this one was lost. One NAK says which PSN we expect; the
    // requester goes back to it. Until it arrives, later packets are dropped silently.
    if (!qp.nak_sent) {
      send_ack(qp, kAethNak | kNakPsnSequence, qp.epsn);
      qp.nak_sent = true;
    }
    return false;
  }
  qp.nak_sent = false;
  return true;
}

// Opcode sequence: a message in progress must continue; otherwise one must start.
bool check_op_sequence(Qp& qp, const Packet& p) {
  const uint8_t op = p.bth.opcode;
  const bool continues = !opcode_info(op).first;
  if ((qp.in_msg == Qp::InMsg::none && continues) ||
      (qp.in_msg == Qp::InMsg::send && !(is_send(op) && continues)) ||
      (qp.in_msg == Qp::InMsg::write && !(is_write(op) && continues)))
    return responder_fatal(qp, kNakInvalidRequest, p.bth.psn, "opcode out of sequence");
  return true;
}

// Operation: the QP's access flags say what the peer may do through it at all, whatever
// the length (rxe_resp.c, check_op_valid: a zero-length WRITE_WITH_IMM on a QP without
// REMOTE_WRITE is refused too). Refusal is "NAK invalid request".
bool check_op_valid(Qp& qp, const Packet& p) {
  const uint8_t op = p.bth.opcode;
  if (is_atomic(op))
    return responder_fatal(qp, kNakInvalidRequest, p.bth.psn,
                           "an atomic request, and this device implements no atomics");
  if (op == kReadRequest && !(qp.access_flags & IBV_ACCESS_REMOTE_READ))
    return responder_fatal(qp, kNakInvalidRequest, p.bth.psn,
                           "a READ, and the QP does not allow remote reads");
  if (is_write(op) && !(qp.access_flags & IBV_ACCESS_REMOTE_WRITE))
    return responder_fatal(qp, kNakInvalidRequest, p.bth.psn,
                           "a WRITE, and the QP does not allow remote writes");
  return true;
}

// Resources: a READ needs responder resources (max_dest_rd_atomic); an operation that
// consumes a receive WQE needs one now, or the answer is RNR NAK.
bool check_resources(Qp& qp, const Packet& p) {
  const uint8_t op = p.bth.opcode;
  if (op == kReadRequest && qp.max_dest_rd_atomic == 0)
    return responder_fatal(qp, kNakInvalidRequest, p.bth.psn,
                           "a READ, but max_dest_rd_atomic is 0");
  const bool needs_recv = (is_send(op) && opcode_info(op).first) || op == kWriteLastImm ||
                          op == kWriteOnlyImm;
  if (needs_recv && qp.rq.empty()) {
    send_ack(qp, kAethRnrNak | (qp.min_rnr_timer & 0x1F), p.bth.psn);
    qp.nak_sent = true;  // later packets of this burst are dropped without a sequence NAK
    return false;
  }
  return true;
}

// Length: every packet but the last of a message carries exactly one path MTU; no DMA
// length exceeds 2^31 (IBA C9-94, as rxe_resp.c checks it).
bool check_length(Qp& qp, const Packet& p) {
  const OpcodeInfo info = opcode_info(p.bth.opcode);
  if (!info.last && p.payload_len != qp.mtu)
    return responder_fatal(qp, kNakInvalidRequest, p.bth.psn,
                           "a middle packet is not path-MTU sized");
  if (info.last && p.payload_len > qp.mtu)
    return responder_fatal(qp, kNakInvalidRequest, p.bth.psn, "packet larger than the path MTU");
  if (info.reth && p.reth.length > kMaxMessageBytes)
    return responder_fatal(qp, kNakInvalidRequest, p.bth.psn, "a DMA length above 2^31");
  return true;
}

// ---- execution -----------------------------------------------------------------------------

bool execute_send(Qp& qp, const Packet& p) {
  const OpcodeInfo info = opcode_info(p.bth.opcode);
  if (info.first) {
    qp.in_msg = Qp::InMsg::send;
    qp.in_offset = 0;
  }
  RecvWqe& r = qp.rq.front();
  if (qp.in_offset + p.payload_len > r.total) {
    complete_recv(qp, r, IBV_WC_LOC_LEN_ERR, IBV_WC_RECV, 0, nullptr, false);
    qp.rq.pop_front();
    return responder_fatal(qp, kNakInvalidRequest, p.bth.psn, "SEND larger than the posted RECV");
  }
  if (p.payload_len && !scatter(qp, r.sg, qp.in_offset, p.payload, p.payload_len)) {
    complete_recv(qp, r, IBV_WC_LOC_PROT_ERR, IBV_WC_RECV, 0, nullptr, false);
    qp.rq.pop_front();
    return responder_fatal(qp, kNakRemoteOperational, p.bth.psn,
                           "RECV scatter list has a bad lkey");
  }
  qp.in_offset += p.payload_len;
  if (info.last) {
    complete_recv(qp, r, IBV_WC_SUCCESS, IBV_WC_RECV, static_cast<uint32_t>(qp.in_offset),
                  info.imm ? &p.imm : nullptr, p.bth.solicited);
    qp.rq.pop_front();
    qp.msn = psn_add(qp.msn, 1);
    qp.in_msg = Qp::InMsg::none;
  }
  return true;
}

bool execute_write(Qp& qp, const Packet& p) {
  const OpcodeInfo info = opcode_info(p.bth.opcode);
  if (info.first) {
    // A zero-length WRITE names no memory: its R_Key and VA are not checked (IBA C9-88,
    // as rxe_resp.c's check_rkey skips them).
    if (p.reth.length > 0 &&
        !remote_ptr(qp, p.reth.rkey, p.reth.va, p.reth.length, IBV_ACCESS_REMOTE_WRITE))
      return responder_fatal(qp, kNakRemoteAccess, p.bth.psn,
                             "WRITE with a bad rkey, range or right");
    qp.in_msg = Qp::InMsg::write;
    qp.in_rkey = p.reth.rkey;
    qp.in_va = p.reth.va;
    qp.in_remaining = p.reth.length;
    qp.in_offset = 0;
  }
  if (p.payload_len > qp.in_remaining || (info.last && p.payload_len != qp.in_remaining))
    return responder_fatal(qp, kNakInvalidRequest, p.bth.psn,
                           "WRITE payload does not match its RETH length");
  if (p.payload_len) {
    // Looked up by key, PD, right and range again for every packet: the MR may have been
    // deregistered since the first one, and its memory reused by another MR.
    uint8_t* dst = remote_ptr(qp, qp.in_rkey, qp.in_va, p.payload_len, IBV_ACCESS_REMOTE_WRITE);
    if (!dst)
      return responder_fatal(qp, kNakRemoteAccess, p.bth.psn,
                             "WRITE target deregistered or changed since its first packet");
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
  return true;
}

// A new READ: checked, saved in the ring, answered. It uses one PSN per response packet.
void execute_read(Qp& qp, const Packet& p) {
  // As for a WRITE, a zero-length READ names no memory.
  if (p.reth.length > 0 &&
      !remote_ptr(qp, p.reth.rkey, p.reth.va, p.reth.length, IBV_ACCESS_REMOTE_READ)) {
    responder_fatal(qp, kNakRemoteAccess, p.bth.psn, "READ with a bad rkey, range or right");
    return;
  }
  // A delayed ACK already due goes first, and is a miss, as it would be for any packet
  // taken in after its deadline (qp_flush_ack).
  qp_ack_timer(qp, qp.now());
  save_read(qp, p);
  qp.msn = psn_add(qp.msn, 1);  // a READ counts as done once executed (IBA C9-148, as rxe)
  answer_read(qp, p.bth.psn, p.reth.va, p.reth.rkey, p.reth.length);
  // Its responses acknowledge it and, implicitly, every request before it: a requester
  // takes a READ response as proof that the responder executed those (rxe_comp.c
  // check_psn completes an earlier SEND or WRITE on any later response; completer.cpp on
  // an in-order one). So nothing is owed after a READ: a delayed ACK still owed for the
  // messages before it has been answered by the responses, and is neither sent nor
  // counted as a miss. A READ's PSNs never count towards the 8 a delayed ACK may cover.
  qp.epsn = psn_add(qp.epsn, packets_for(p.reth.length, qp.mtu));
  qp.last_ack_epsn = qp.epsn;
  qp.ack_due.reset();
}

}  // namespace

bool scatter(Qp& qp, const std::vector<ibv_sge>& sg, uint64_t off, const uint8_t* in,
             size_t len) {
  return for_each_piece(qp, sg, off, len, true, [&](uint8_t* p, size_t n) {
    std::memcpy(p, in, n);
    in += n;
  });
}

void reset_read_ring(Qp& qp, size_t slots) {
  qp.read_ring.assign(slots, ReadResource{});
  qp.read_ring_next = 0;
}

void on_request(Qp& qp, const Packet& p) {
  if (logging(3))
    log_line("QP 0x%x: request psn %u epsn %u d %d ack_req %d rq %zu nak_sent %d", qp.qpn(),
             p.bth.psn, qp.epsn, psn_diff(p.bth.psn, qp.epsn), p.bth.ack_req, qp.rq.size(),
             qp.nak_sent);
  if (!check_psn(qp, p) || !check_op_sequence(qp, p) || !check_op_valid(qp, p) ||
      !check_resources(qp, p) || !check_length(qp, p))
    return;
  const uint8_t op = p.bth.opcode;
  if (op == kReadRequest) {
    execute_read(qp, p);  // moves epsn past its responses; READs are not ACKed
    return;
  }
  if (!(is_send(op) ? execute_send(qp, p) : execute_write(qp, p))) return;
  qp.epsn = psn_add(qp.epsn, 1);
  if (p.bth.ack_req) {
    qp.ack_pending = true;
    // AckReq inside a message: the requester is at the end of its window, or asks every
    // 16 packets of a long message. It waits for this ACK; the application cannot answer
    // a message it has not received whole. Never delayed.
    if (!opcode_info(op).last) qp.ack_now = true;
  }
}

}  // namespace uroce::transport

namespace uroce {

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
      transport::complete_recv(qp, r, IBV_WC_WR_FLUSH_ERR, IBV_WC_RECV, 0, nullptr, false);
      continue;
    }
    qp.rq.push_back(std::move(r));
  }
  return 0;
}

namespace {

// A delayed ACK may cover at most this many PSNs, and at most half the window (this
// device's, which the runtime assumes its peer's is too): a requester at the end of its
// window waits for it, and the window may end on a message's last packet.
constexpr int32_t kMaxDelayedPsns = 8;
// A QP is in ping-pong after this many messages in a row, each answered within the delay
// by the application's first request after it. A message left unanswered that long starts
// the count again, so an application that answers only some messages never gets there;
// nor does a short exchange (a handshake of a few messages, then something else), where
// the last message's ACK would wait for an answer that does not come, and its sender with
// it (perftest -R's two connections: the server, held up, listened again only after the
// client's second connect had been refused).
constexpr int kPingPongAfter = 8;
// After a delayed ACK had to go by its timer (a miss), ping-pong ends; once it is back,
// the next 2^misses ACKs that could wait go at once all the same (misses counts such
// timeouts, up to kMaxMisses), and kHitsToForget ACKs in a row that rode behind a request
// forget the misses. An application that answers runs of messages with a gap now and
// then so pays the delay once in 8 + 2^misses messages at most.
constexpr int kMaxMisses = 6;
constexpr int kHitsToForget = 64;

// The longest an ACK may wait: UROCE_ACK_DELAY, and at most an eighth of the QP's own
// local ACK timeout (its peer's is usually the same, and must not run out first).
std::chrono::microseconds ack_delay(const Qp& qp) {
  auto d = std::chrono::microseconds(Config::get().ack_delay_us);
  if (qp.timeout != 0) d = std::min(d, std::chrono::microseconds(wire::transport_timeout_us(qp.timeout) / 8));
  return d;
}

// One ACK covers everything before the PSN we expect next.
void send_owed_ack(Qp& qp) {
  transport::send_ack(qp, wire::kAethAck | wire::kAckNoCreditLimit,
                      wire::psn_add(qp.epsn, wire::kPsnMask));
}

}  // namespace

void qp_flush_ack(Qp& qp) {
  if (!qp.ack_pending) return;
  qp.ack_pending = false;
  const bool urgent = qp.ack_now;
  qp.ack_now = false;
  if (qp.state != IBV_QPS_RTR && qp.state != IBV_QPS_RTS) return;
  if (urgent) {
    send_owed_ack(qp);
    return;
  }
  const Clock::time_point now = qp.now();
  // A delayed ACK already due is a miss, even if this batch came in before the engine ran
  // the timer (it takes packets in before it runs timers); it covers this batch too.
  qp_ack_timer(qp, now);
  const int32_t behind = wire::psn_diff(qp.epsn, qp.last_ack_epsn);
  if (behind == 0) return;  // an ACK or NAK in this batch already covers it
  const auto delay = ack_delay(qp);
  if (qp.acked_request_at && now - *qp.acked_request_at >= delay) {
    // The previous message went unanswered for the whole delay: no ping-pong (yet).
    qp.ack_answers = 0;
    qp.ping_pong = false;
  }
  qp.acked_request_at = now;
  // Ping-pong (ib_write_lat, an RPC): the application answers this message with a request
  // of its own, and the ACK goes out right behind that request (qp_piggyback_ack). A peer
  // busy-polling its CQ for this ACK then takes our request in with it, in its own
  // thread: if it next waits by watching memory, the WRITE is already placed, instead of
  // waiting for its engine thread to be woken. IBA lets a responder coalesce ACKs (one
  // ACK acknowledges every PSN before it) as long as the requester's ACK timer does not
  // run out (ack_delay keeps well below it).
  const int32_t max_psns =
      std::min<int32_t>(kMaxDelayedPsns, static_cast<int32_t>(qp.dev->window_packets(qp.mtu) / 2));
  const bool may_wait = qp.ping_pong && !qp.dev->no_delayed_acks && delay.count() > 0 &&
                        behind > 0 && behind <= max_psns;
  if (may_wait && qp.ack_skip > 0) {
    qp.ack_skip--;  // the backoff after a miss
  } else if (may_wait) {
    if (!qp.ack_due) {
      qp.ack_due = now + delay;
      qp.dev->wake_engine_if_needed(*qp.ack_due);
    }
    return;
  }
  send_owed_ack(qp);
}

void qp_piggyback_ack(Qp& qp) {
  const Clock::time_point now = qp.now();
  qp_ack_timer(qp, now);  // already due: a miss, even if the engine has not run the timer yet
  // The first request after a message answers it if it comes within the delay; one later
  // does not. Further requests before the next message (a WRITE, then a SEND, for one
  // answer) neither answer nor break the count.
  if (qp.acked_request_at) {
    const auto delay = ack_delay(qp);
    if (delay.count() > 0 && now - *qp.acked_request_at < delay) {
      if (qp.ack_answers < kPingPongAfter) qp.ack_answers++;
    } else {
      qp.ack_answers = 0;
    }
    qp.acked_request_at.reset();
  }
  qp.ping_pong = qp.ack_answers >= kPingPongAfter;
  if (!qp.ack_due) return;
  if (++qp.ack_hits >= kHitsToForget) qp.ack_hits = qp.ack_misses = 0;
  qp_send_delayed_ack(qp);
}

void qp_send_delayed_ack(Qp& qp) {
  if (qp.ack_due && (qp.state == IBV_QPS_RTR || qp.state == IBV_QPS_RTS)) send_owed_ack(qp);
  qp.ack_due.reset();
}

void qp_ack_timer(Qp& qp, Clock::time_point now) {
  if (!qp.ack_due || now < *qp.ack_due) return;
  // No request came in time: this is not ping-pong (any more). ACK at once until a request
  // follows a message closely again, and for the next 2^misses ACKs in any case.
  qp.ping_pong = false;
  qp.ack_answers = 0;
  qp.ack_hits = 0;
  if (qp.ack_misses < kMaxMisses) qp.ack_misses++;
  qp.ack_skip = 1 << qp.ack_misses;
  qp_send_delayed_ack(qp);
}

}  // namespace uroce
