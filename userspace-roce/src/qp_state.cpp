// The life of an RC queue pair (the kernel's rxe_qp.c, and the intake of rxe_recv.c): the
// ibv_modify_qp state machine with its attribute checks, the move to ERROR with its
// flushes, the completions both halves post, and the intake that hands each arriving
// packet to the half that wants it (responder.cpp for requests, completer.cpp for ACKs
// and READ responses) after checking its P_Key.
#include <endian.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "qp_internal.hpp"

namespace uroce::transport {

void complete_send(Qp& qp, const SendWqe& w, ibv_wc_status status) {
  if (status == IBV_WC_SUCCESS && !w.signaled) return;  // unsignaled: no completion
  ibv_wc wc{};
  wc.wr_id = w.wr_id;
  wc.status = status;
  switch (w.opcode) {
    case IBV_WR_RDMA_WRITE:
    case IBV_WR_RDMA_WRITE_WITH_IMM: wc.opcode = IBV_WC_RDMA_WRITE; break;
    case IBV_WR_RDMA_READ: wc.opcode = IBV_WC_RDMA_READ; break;
    default: wc.opcode = IBV_WC_SEND; break;
  }
  wc.qp_num = qp.qpn();
  // The spec defines byte_len for receive completions only; rxe (rxe_comp.c,
  // make_send_cqe) reports the work request's length on send completions as well, and
  // programs written on it (lesson 02's WRITE log) print it.
  wc.byte_len = w.length;
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

namespace {

using namespace wire;

/// The P_Key of every QP: pkey_index 0 is the only index modify_qp accepts, and the
/// port's table holds the default P_Key there (what ibv_query_pkey reports).
constexpr uint16_t kQpPkey = kDefaultPkey;

// Whether a packet's P_Key lets it reach a QP of partition `ours`: the same partition
// (low 15 bits, never 0) and at least one of the two a full member (top bit), the rule
// rxe_recv.c's check_keys applies (pkey_match).
bool pkey_matches(uint16_t theirs, uint16_t ours) {
  return (theirs & 0x7FFF) != 0 && (theirs & 0x7FFF) == (ours & 0x7FFF) &&
         ((theirs & 0x8000) || (ours & 0x8000));
}

uint32_t mtu_bytes(ibv_mtu m) { return 256u << (static_cast<int>(m) - 1); }

struct Rule {
  int required;
  int optional;
};

// Which attributes each RC transition requires and allows (IBA table 92, as the Linux
// kernel's ib_modify_qp_is_ok has it). found=false: the transition does not exist.
bool transition_rule(ibv_qp_state from, ibv_qp_state to, Rule& rule) {
  rule = {IBV_QP_STATE, 0};
  // RESET leads only to INIT (and RESET): a QP that never left RESET has nothing to
  // flush, and the kernel's table has no RESET -> ERR either.
  if (to == IBV_QPS_RESET) return true;
  if (to == IBV_QPS_ERR) return from != IBV_QPS_RESET;
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

int reject(const Qp& qp, const std::string& why) {
  if (logging(1)) log_line("QP 0x%x: modify_qp refused: %s (EINVAL)", qp.qpn(), why.c_str());
  return EINVAL;
}

// The attribute checks of one modify_qp, before anything changes: 0 or an errno.
int check_attributes(const Qp& qp, const ibv_qp_attr& a, int mask, ibv_qp_state from,
                     uint32_t& peer_ip) {
  if ((mask & IBV_QP_CUR_STATE) && a.cur_qp_state != from) return reject(qp, "cur_qp_state mismatch");
  // The kernel's _ib_modify_qp bans alternate paths (and so automatic path migration) on
  // RoCE ports: its core code handles them for InfiniBand only.
  if (mask & IBV_QP_ALT_PATH) return reject(qp, "RoCE has no alternate path (IBV_QP_ALT_PATH)");
  if ((mask & IBV_QP_PORT) && a.port_num != 1) return reject(qp, "port_num must be 1");
  if ((mask & IBV_QP_PKEY_INDEX) && a.pkey_index != 0) return reject(qp, "pkey_index must be 0");
  if ((mask & IBV_QP_ACCESS_FLAGS) &&
      (a.qp_access_flags & ~(IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                             IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC)))
    return reject(qp, "unknown qp_access_flags");
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
  if (mask & IBV_QP_PATH_MTU) {
    if (a.path_mtu < IBV_MTU_256 || a.path_mtu > IBV_MTU_4096) return reject(qp, "path_mtu out of range");
    // A path MTU above the port's active MTU makes packets the interface cannot carry:
    // sent with "don't fragment", they are refused by the kernel and lost for good. rxe's
    // rxe_qp_chk_attr refuses a path MTU above its port's max_mtu the same way (EINVAL);
    // its max_mtu is a constant 4096, so the stricter bound here is the active MTU, which
    // ibv_query_port reports and applications are told to use.
    if (a.path_mtu > qp.dev->active_mtu)
      return reject(qp, "path_mtu " + std::to_string(mtu_bytes(a.path_mtu)) +
                            " is above the port's active_mtu " +
                            std::to_string(mtu_bytes(qp.dev->active_mtu)));
  }
  if ((mask & IBV_QP_DEST_QPN) && a.dest_qp_num > kPsnMask) return reject(qp, "dest_qp_num over 24 bits");
  if ((mask & IBV_QP_MAX_DEST_RD_ATOMIC) && a.max_dest_rd_atomic > 16)
    return reject(qp, "max_dest_rd_atomic above the device's 16");
  if ((mask & IBV_QP_MAX_QP_RD_ATOMIC) && a.max_rd_atomic > 16)
    return reject(qp, "max_rd_atomic above the device's 16");
  if ((mask & IBV_QP_TIMEOUT) && a.timeout > 31) return reject(qp, "timeout above 31");
  if ((mask & IBV_QP_RETRY_CNT) && a.retry_cnt > 7) return reject(qp, "retry_cnt above 7");
  if ((mask & IBV_QP_RNR_RETRY) && a.rnr_retry > 7) return reject(qp, "rnr_retry above 7");
  if ((mask & IBV_QP_MIN_RNR_TIMER) && a.min_rnr_timer > 31) return reject(qp, "min_rnr_timer above 31");
  return 0;
}

void apply_attributes(Qp& qp, const ibv_qp_attr& a, int mask, uint32_t peer_ip) {
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
  if (mask & IBV_QP_MAX_DEST_RD_ATOMIC) {
    // As rxe_qp_from_attr does: the responder's READ resources are made anew.
    qp.max_dest_rd_atomic = a.max_dest_rd_atomic;
    reset_read_ring(qp, a.max_dest_rd_atomic);
  }
  if (mask & IBV_QP_MAX_QP_RD_ATOMIC) qp.max_rd_atomic = a.max_rd_atomic;
  if (mask & IBV_QP_MIN_RNR_TIMER) qp.min_rnr_timer = a.min_rnr_timer;
  if (mask & IBV_QP_TIMEOUT) qp.timeout = a.timeout;
  if (mask & IBV_QP_RETRY_CNT) qp.retry_cnt = a.retry_cnt;
  if (mask & IBV_QP_RNR_RETRY) qp.rnr_retry = a.rnr_retry;
}

// What the requester and responder forget: the queues, the timers, the message in
// progress, the saved READs. (Moving to ERROR flushes the queues first.)
void clear_transport(Qp& qp) {
  qp.sq.clear();
  qp.rq.clear();
  qp.tx_index = 0;
  qp.retransmit_at.reset();
  qp.rnr_resume_at.reset();
  qp.pending_failure.reset();
  qp.retrying = false;
  qp.in_msg = Qp::InMsg::none;
  qp.ack_pending = false;
  qp.ack_now = false;
  qp.ack_due.reset();
  qp.ping_pong = false;
  qp.acked_request_at.reset();
  qp.ack_answers = qp.ack_misses = qp.ack_hits = qp.ack_skip = 0;
}

}  // namespace
}  // namespace uroce::transport

namespace uroce {

void qp_enter_error(Qp& qp) {
  using namespace transport;
  qp_send_delayed_ack(qp);  // the messages it acknowledges did arrive
  qp.state = IBV_QPS_ERR;
  qp.ibv.state = IBV_QPS_ERR;
  // Everything still queued completes with "flushed" (IBV_WC_WR_FLUSH_ERR), in order.
  for (const SendWqe& w : qp.sq) complete_send(qp, w, IBV_WC_WR_FLUSH_ERR);
  for (const RecvWqe& r : qp.rq)
    complete_recv(qp, r, IBV_WC_WR_FLUSH_ERR, IBV_WC_RECV, 0, nullptr, false);
  clear_transport(qp);
}

int qp_modify(Qp& qp, const ibv_qp_attr& a, int mask) {
  using namespace transport;
  const ibv_qp_state from = qp.state;
  const ibv_qp_state to = (mask & IBV_QP_STATE) ? a.qp_state : from;
  Rule rule;
  if (!transition_rule(from, to, rule)) {
    if (to == IBV_QPS_SQD || to == IBV_QPS_SQE || from == IBV_QPS_SQD)
      return EOPNOTSUPP;  // send-queue drain is not implemented
    return reject(qp, std::string(state_name(from)) + " -> " + state_name(to) +
                          " is not a valid transition");
  }
  if (!(mask & IBV_QP_STATE)) rule.required &= ~IBV_QP_STATE;
  if ((mask & rule.required) != rule.required) return reject(qp, "a required attribute is missing");
  if (mask & ~(rule.required | rule.optional | IBV_QP_STATE))
    return reject(qp, "an attribute not allowed in this transition");
  uint32_t peer_ip = qp.peer_ip;
  if (int err = check_attributes(qp, a, mask, from, peer_ip)) return err;

  // All checked: apply. A delayed ACK goes first: the messages it acknowledges arrived
  // under the attributes they were sent for.
  qp_send_delayed_ack(qp);
  apply_attributes(qp, a, mask, peer_ip);
  if (to != from || (mask & IBV_QP_STATE)) {
    if (to == IBV_QPS_RESET || (to == IBV_QPS_INIT && from == IBV_QPS_RESET)) {
      clear_transport(qp);
      qp.nak_sent = false;
      qp.msn = 0;
      reset_read_ring(qp, qp.max_dest_rd_atomic);
    } else if (to == IBV_QPS_ERR) {
      qp_enter_error(qp);
    } else if (to == IBV_QPS_RTR && from == IBV_QPS_INIT) {
      qp.epsn = qp.last_ack_epsn = qp.rq_psn;
      qp.in_msg = Qp::InMsg::none;
    } else if (to == IBV_QPS_RTS && from == IBV_QPS_RTR) {
      qp.next_psn = qp.tx_psn = qp.una_psn = qp.sent_high = qp.acked_psn = qp.sq_psn;
      qp.retries_left = qp.retry_cnt;
      qp.rnr_left = qp.rnr_retry;
      qp.retrying = false;
    }
    qp.state = to;
    qp.ibv.state = to;
    if (logging(1) && to != from)
      log_line("QP 0x%x: %s -> %s", qp.qpn(), state_name(from), state_name(to));
  }
  return 0;
}

void qp_receive(Qp& qp, const wire::Packet& p) {
  using namespace transport;
  // A packet of another partition never reaches the QP (rxe_recv.c, check_keys).
  if (!pkey_matches(p.bth.pkey, kQpPkey)) {
    qp.bad_pkey_drops++;
    if (logging(1) && (qp.bad_pkey_drops <= 3 || qp.bad_pkey_drops % 1000 == 0))
      log_line("QP 0x%x: dropped a packet with P_Key 0x%04x, not the QP's 0x%04x (%llu so far)",
               qp.qpn(), p.bth.pkey, kQpPkey, static_cast<unsigned long long>(qp.bad_pkey_drops));
    return;
  }
  const wire::OpcodeInfo info = wire::opcode_info(p.bth.opcode);
  if (info.request) {
    // The responder works from RTR on; before that, and in ERROR, packets are dropped.
    if (qp.state == IBV_QPS_RTR || qp.state == IBV_QPS_RTS) on_request(qp, p);
    return;
  }
  if (qp.state != IBV_QPS_RTS) return;
  if (p.bth.opcode == wire::kAcknowledge)
    on_ack(qp, p);
  else
    on_read_response(qp, p);
  if (qp.state == IBV_QPS_RTS) tx_pump(qp);
}

}  // namespace uroce
