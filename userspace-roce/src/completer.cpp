// The completer of an RC queue pair (the kernel's rxe_comp.c): what comes back for our
// requests. ACKs complete work requests in order; READ responses place data; an RNR NAK
// makes the requester wait and resend; a PSN sequence NAK or a local ACK timeout makes it
// go back N; any other NAK ends the connection with an error on the work request it names.
// Here too the retry budgets are kept and the two timers run (retransmission, RNR wait).
// IBA vol 1, ch. 9.7.
//
// Retry accounting (README: "Retry accounting"). retry_cnt counts go-back-N retries:
// each local ACK timeout and each PSN sequence NAK consumes one, as rxe_comp.c's
// COMPST_ERROR_RETRY does for both; a further sequence NAK while a retry is under way and
// nothing has been acknowledged since consumes none (rxe's started_retry). rnr_retry
// counts RNR NAKs. Both budgets start over whenever the responder acknowledges something
// new or a READ response arrives in order (rxe's reset_retry_counters), so they limit
// failures in a row, not over the QP's life. rnr_retry 7 means "no limit", as in the spec
// and rxe. retry_cnt 7 means 7 retries here, as the spec has it and a NIC does; rxe alone
// never counts a retry_cnt of 7 down (COMPST_ERROR_RETRY: "if (qp->comp.retry_cnt != 7)
// qp->comp.retry_cnt--") and resends for ever.
#include <chrono>

#include "qp_internal.hpp"

namespace uroce::transport {

using namespace wire;

namespace {

std::chrono::microseconds timeout_of(const Qp& qp) {
  return std::chrono::microseconds(transport_timeout_us(qp.timeout));
}

// The responder acknowledged something new: both retry budgets start over and any retry
// under way has done its job (rxe_comp.c, reset_retry_counters).
void note_progress(Qp& qp) {
  qp.retries_left = qp.retry_cnt;
  qp.rnr_left = qp.rnr_retry;
  qp.retrying = false;
}

// An error waiting for an earlier READ's data (fail_at_psn) completes once that READ is
// done: its WQE is then the oldest.
void apply_pending_failure(Qp& qp) {
  if (!qp.pending_failure || qp.state != IBV_QPS_RTS) return;
  const PendingFailure f = *qp.pending_failure;
  if (!qp.sq.empty() && psn_diff(qp.sq.front().end_psn(), f.psn) <= 0) return;  // still waiting
  qp.pending_failure.reset();
  if (!qp.sq.empty() && qp.sq.front().holds(f.psn)) {
    fail_head(qp, f.status);
  } else if (logging(1)) {
    // Completed after all: an acknowledgement covered it before its turn came.
    log_line("QP 0x%x: %s for PSN %u: its work request completed meanwhile", qp.qpn(),
             wc_status_text(f.status), f.psn);
  }
}

// Completes, in order, the WQEs at the front that are done: SEND/WRITEs the responder
// has acknowledged, READs whose data has all arrived. Then moves una_psn, the oldest PSN
// still owed something.
void complete_done(Qp& qp) {
  const uint32_t old_una = qp.una_psn;
  while (!qp.sq.empty()) {
    SendWqe& w = qp.sq.front();
    if (w.is_read()) {
      if (w.read_got != w.npsn) break;
    } else if (psn_diff(w.end_psn(), qp.acked_psn) > 0) {
      break;  // its last packet is not acknowledged yet
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
    qp.retransmit_at.reset();
    arm_retransmit(qp);
  }
  apply_pending_failure(qp);
}

// Everything up to and including PSN `p` has been acknowledged.
void ack_upto(Qp& qp, uint32_t p) {
  const uint32_t next = psn_add(p, 1);
  if (psn_diff(p, qp.sent_high) >= 0) return;  // acknowledges what was never sent
  if (psn_diff(next, qp.acked_psn) > 0) {
    qp.acked_psn = next;
    note_progress(qp);
  }
  complete_done(qp);
}

// The WQE holding `psn` fails with `status`; the ones before it were acknowledged by the
// same packet and complete normally (ack_upto, already called), the ones after it are
// flushed. If an earlier READ still lacks data, the failure waits for it: the responder
// sent those responses before it sent the NAK, and the network may deliver them after.
void fail_at_psn(Qp& qp, uint32_t psn, ibv_wc_status status) {
  // Any WQE with packets sent, in this pass or an earlier one (go-back-N may not have
  // resent it yet).
  bool named = false;
  if (psn_diff(psn, qp.sent_high) < 0)
    for (const SendWqe& w : qp.sq)
      if ((named = w.holds(psn))) break;
  if (!named) {
    // A stale NAK (for something completed since) or one for a PSN never sent.
    if (logging(1))
      log_line("QP 0x%x: %s for PSN %u names no outstanding request; ignored", qp.qpn(),
               wc_status_text(status), psn);
    return;
  }
  qp.pending_failure = PendingFailure{psn, status};
  apply_pending_failure(qp);
  if (qp.pending_failure && logging(1))
    log_line("QP 0x%x: %s for PSN %u waits for the data of an earlier READ", qp.qpn(),
             wc_status_text(status), psn);
}

// Starts a go-back-N retry if the budget allows; otherwise the oldest WQE fails with
// "transport retry counter exceeded".
void start_retry(Qp& qp, const char* why) {
  if (qp.retries_left == 0) {
    if (logging(1))
      log_line("QP 0x%x: %s with no retry left (retry_cnt %u)", qp.qpn(), why, qp.retry_cnt);
    fail_head(qp, IBV_WC_RETRY_EXC_ERR);
    return;
  }
  qp.retries_left--;
  if (logging(1))
    log_line("QP 0x%x: %s: resending from PSN %u (retry %d of retry_cnt %u; %d left)",
             qp.qpn(), why, qp.una_psn, qp.retry_cnt - qp.retries_left, qp.retry_cnt,
             qp.retries_left);
  qp.retrying = true;
  rewind(qp);
  tx_pump(qp);
  if (!qp.retransmit_at) arm_retransmit(qp);
}

// RNR NAK: the responder had no RECV for the request at `psn`. Everything before it
// arrived; wait the time it names, then resend from there.
void on_rnr_nak(Qp& qp, uint32_t psn, uint8_t timer_code) {
  ack_upto(qp, psn_add(psn, kPsnMask));
  if (qp.state != IBV_QPS_RTS) return;
  if (qp.rnr_resume_at) return;  // a copy of the NAK this wait is for
  if (psn_diff(psn, qp.una_psn) < 0 || psn_diff(psn, qp.sent_high) >= 0) return;  // stale
  if (qp.rnr_retry != 7) {  // 7: no limit (IBA)
    if (qp.rnr_left == 0) {
      fail_at_psn(qp, psn, IBV_WC_RNR_RETRY_EXC_ERR);
      return;
    }
    qp.rnr_left--;
  }
  const uint32_t wait_us = rnr_timer_us(timer_code);
  if (logging(1)) {
    if (qp.rnr_retry == 7)
      log_line("QP 0x%x: RNR NAK for PSN %u: resending in %u us (rnr_retry 7: no limit)",
               qp.qpn(), psn, wait_us);
    else
      log_line("QP 0x%x: RNR NAK for PSN %u: resending in %u us (rnr_retry %u; %d left)",
               qp.qpn(), psn, wait_us, qp.rnr_retry, qp.rnr_left);
  }
  // The wait owns the QP's clock: no retransmission timer runs until it ends (qp_timers).
  qp.retransmit_at.reset();
  qp.rnr_resume_at = qp.now() + std::chrono::microseconds(wait_us);
  qp.dev->wake_engine_if_needed(*qp.rnr_resume_at);
}

// NAK PSN sequence error: the responder missed the packet at `psn` and drops what follows
// until it comes. Go back to it (a retry), unless one is under way already.
void on_sequence_nak(Qp& qp, uint32_t psn) {
  // A NAK implicitly acknowledges every PSN before it (rxe_comp.c, check_ack).
  ack_upto(qp, psn_add(psn, kPsnMask));
  if (qp.state != IBV_QPS_RTS) return;
  if (qp.rnr_resume_at) return;  // the RNR wait resends from there anyway
  // Stale (it asks for what was acknowledged since), or for a PSN never sent.
  if (psn_diff(psn, qp.una_psn) < 0 || psn_diff(psn, qp.sent_high) >= 0) return;
  if (qp.retrying) return;  // rxe_comp.c: a started retry is not started again but by a timeout
  start_retry(qp, "NAK PSN sequence error");
}

ibv_wc_status status_of_nak(uint8_t code) {
  switch (code) {
    case kNakInvalidRequest: return IBV_WC_REM_INV_REQ_ERR;
    case kNakRemoteAccess: return IBV_WC_REM_ACCESS_ERR;
    default: return IBV_WC_REM_OP_ERR;  // remote operational error, and codes IBA reserves
  }
}

}  // namespace

void fail_head(Qp& qp, ibv_wc_status status) {
  if (!qp.sq.empty()) {
    complete_send(qp, qp.sq.front(), status);
    qp.sq.pop_front();
  }
  if (logging(1)) log_line("QP 0x%x: %s, moving to ERROR", qp.qpn(), wc_status_text(status));
  qp_enter_error(qp);
}

void arm_retransmit(Qp& qp) {
  // timeout 0 means "wait forever" in the spec: no retransmission timer at all. During an
  // RNR wait the RNR timer decides when to resend (rxe_req.c waits for it the same way).
  if (qp.timeout == 0 || qp.state != IBV_QPS_RTS || qp.rnr_resume_at) {
    qp.retransmit_at.reset();
    return;
  }
  if (psn_diff(qp.tx_psn, qp.una_psn) > 0) {
    qp.retransmit_at = qp.now() + timeout_of(qp);
    qp.dev->wake_engine_if_needed(*qp.retransmit_at);
  } else {
    qp.retransmit_at.reset();
  }
}

void on_read_response(Qp& qp, const Packet& p) {
  // Which outstanding READ is this for? Each owns the PSNs of its response packets.
  SendWqe* w = nullptr;
  for (size_t i = 0; i < qp.tx_index && !w; ++i) {
    SendWqe& c = qp.sq[i];
    if (c.is_read() && c.holds(p.bth.psn)) w = &c;
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
    fail_at_psn(qp, p.bth.psn, IBV_WC_BAD_RESP_ERR);
    return;
  }
  if (p.payload_len && !scatter(qp, w->sg, off, p.payload, p.payload_len)) {
    fail_at_psn(qp, p.bth.psn, IBV_WC_LOC_PROT_ERR);
    return;
  }
  w->read_got++;
  // The part a repeated request asked for is all here, and more is missing: ask for the
  // next part (send_read_request).
  if (!last && w->read_got == w->rerequest_end) {
    w->rerequested = psn_add(w->first_psn, w->read_got);
    send_read_request(qp, *w);
  }
  // Progress: the retry budgets start over, the timer runs from now.
  note_progress(qp);
  qp.retransmit_at.reset();
  // A READ response means the responder executed everything before the READ.
  const uint32_t read_start = w->first_psn;
  if (psn_diff(read_start, qp.acked_psn) > 0) qp.acked_psn = read_start;
  complete_done(qp);
  arm_retransmit(qp);
}

void on_ack(Qp& qp, const Packet& p) {
  const uint8_t syn = p.aeth.syndrome;
  switch (aeth_kind(syn)) {
    case AethKind::ack:
      ack_upto(qp, p.bth.psn);
      break;
    case AethKind::rnr_nak:
      on_rnr_nak(qp, p.bth.psn, syn & 0x1F);
      break;
    case AethKind::nak:
      if ((syn & 0x1F) == kNakPsnSequence) {
        on_sequence_nak(qp, p.bth.psn);
      } else {
        // Invalid request, remote access or operational error: the responder's QP went to
        // ERROR (IBA class C or A). Everything before the NAK was executed.
        ack_upto(qp, psn_add(p.bth.psn, kPsnMask));
        if (qp.state == IBV_QPS_RTS) fail_at_psn(qp, p.bth.psn, status_of_nak(syn & 0x1F));
      }
      break;
    case AethKind::reserved:
      break;
  }
}

}  // namespace uroce::transport

namespace uroce {

std::optional<Clock::time_point> qp_deadline(const Qp& qp) {
  std::optional<Clock::time_point> d = qp.rnr_resume_at ? qp.rnr_resume_at : qp.retransmit_at;
  if (qp.ack_due && (!d || *qp.ack_due < *d)) d = qp.ack_due;
  return d;
}

void qp_timers(Qp& qp, Clock::time_point now) {
  using namespace transport;
  qp_ack_timer(qp, now);  // the responder's delayed ACK (responder.cpp)
  if (qp.state != IBV_QPS_RTS) return;
  if (qp.rnr_resume_at) {
    // While an RNR NAK's wait runs, the retransmission timer does not (arm_retransmit):
    // a timeout now would spend a retry on a resend the wait forbids.
    if (now < *qp.rnr_resume_at) return;
    qp.rnr_resume_at.reset();
    rewind(qp);
    tx_pump(qp);
    if (!qp.retransmit_at) arm_retransmit(qp);
    return;
  }
  if (qp.retransmit_at && now >= *qp.retransmit_at) {
    // No ACK within the local ACK timeout: the packets or their ACKs were lost.
    qp.retransmit_at.reset();
    start_retry(qp, "ACK timeout");
  }
}

}  // namespace uroce
