// An RC queue pair as the runtime keeps it: the work requests it holds, the attributes
// ibv_modify_qp gave it, and the state of both halves of its transport (requester and
// completer, responder). The transport's functions (qp_*) are what the rest of the
// runtime calls; their inside is split the way the kernel's rxe splits it:
//   requester.cpp  posting, segmentation into packets, transmission, go-back-N
//   completer.cpp  ACKs, NAKs, RNR NAKs, READ responses, retry accounting, timers
//   responder.cpp  incoming requests in stages, the READ-resource ring, ACK coalescing
//   qp_state.cpp   the modify_qp state machine, packet intake, completions, flushes
// Every qp_* function runs with Device::mu held.
#pragma once

#include <infiniband/verbs.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "wire.hpp"

namespace uroce {

using Clock = std::chrono::steady_clock;

struct Device;
struct Pd;
struct Cq;

/// One posted send work request, as the requester keeps it until it completes.
struct SendWqe {
  uint64_t wr_id = 0;           ///< the application's wr_id, returned in the completion
  /// SEND, SEND_WITH_IMM, RDMA_WRITE(_WITH_IMM) or RDMA_READ
  ibv_wr_opcode opcode = IBV_WR_SEND;
  bool signaled = false;        ///< success is reported (IBV_SEND_SIGNALED or sq_sig_all)
  bool solicited = false;       ///< IBV_SEND_SOLICITED: SE set on the last packet
  bool fence = false;           ///< IBV_SEND_FENCE: waits until every earlier READ has its data
  std::vector<ibv_sge> sg;      ///< the gather (or, for a READ, scatter) list
  std::vector<uint8_t> inline_data;  ///< IBV_SEND_INLINE: copied at post time
  bool is_inline = false;       ///< the payload is inline_data, not sg
  uint64_t remote_addr = 0;     ///< WRITE/READ: the peer's address (RETH VA)
  uint32_t rkey = 0;            ///< WRITE/READ: the peer's R_Key
  uint32_t imm = 0;  ///< as the application gave it (already big-endian)
  uint32_t length = 0;          ///< bytes of the message (the sum of the SGEs)
  uint32_t first_psn = 0;       ///< PSN of its first packet (a READ: of its first response)
  uint32_t npsn = 1;       ///< PSNs this WQE uses: packets, or READ response packets
  uint32_t sent = 0;       ///< packets sent in the current pass (a READ sends one request)
  uint32_t read_got = 0;   ///< READ: response packets received in order
  uint32_t rerequested = UINT32_MAX;  ///< READ: the PSN a repeated request last asked from
  /// READ: one past the last response packet (counted like read_got) the latest repeated
  /// request asked for; the next part is asked for when it arrives. 0: none asked.
  uint32_t rerequest_end = 0;
  /// An RDMA READ (the only operation whose data comes back to the requester).
  bool is_read() const { return opcode == IBV_WR_RDMA_READ; }
  /// The PSN after its last one.
  uint32_t end_psn() const { return wire::psn_add(first_psn, npsn); }
  /// Whether `psn` is one of the PSNs this WQE uses.
  bool holds(uint32_t psn) const {
    const int32_t d = wire::psn_diff(psn, first_psn);
    return d >= 0 && static_cast<uint32_t>(d) < npsn;
  }
};

/// One posted receive work request, waiting for a SEND (or WRITE_WITH_IMM) to consume it.
struct RecvWqe {
  uint64_t wr_id = 0;        ///< the application's wr_id, returned in the completion
  std::vector<ibv_sge> sg;   ///< where an incoming SEND's payload is scattered
  uint64_t total = 0;        ///< the sum of the SGE lengths: the largest SEND it takes
};

/// A READ the responder has executed, kept so that a duplicate of it can be answered again
/// (the "responder resources" of IBA; max_dest_rd_atomic of them per QP, as rxe keeps its
/// resp_res ring). Only a READ saved here is ever replayed.
struct ReadResource {
  bool valid = false;       ///< holds an executed READ
  uint32_t first_psn = 0;   ///< the READ request's PSN: that of its first response
  uint32_t npsn = 0;        ///< response packets (PSNs) it owns
  uint64_t va = 0;          ///< the RETH's address
  uint32_t rkey = 0;        ///< the RETH's R_Key
  uint32_t length = 0;      ///< the RETH's DMA length
};

/// An error for the WQE holding `psn` that must wait: an earlier READ still lacks data
/// that its responder sent before the error (completer.cpp, fail_at_psn).
struct PendingFailure {
  uint32_t psn = 0;                          ///< a PSN of the WQE the error belongs to
  ibv_wc_status status = IBV_WC_GENERAL_ERR;  ///< the status it completes with
};

/// An RC queue pair: the verbs state machine plus both halves of the transport.
struct Qp {
  ibv_qp ibv{};               ///< what the application holds (ibv_create_qp's result)
  Device* dev = nullptr;      ///< the device (and its lock) the QP belongs to
  Pd* pd = nullptr;           ///< its protection domain: keys must belong to it
  Cq* send_cq = nullptr;      ///< completions of send work requests
  Cq* recv_cq = nullptr;      ///< completions of receive work requests
  ibv_qp_cap cap{};           ///< the capacities granted at creation
  bool sq_sig_all = false;    ///< every send WR is signaled

  // Attributes set by ibv_modify_qp.
  ibv_qp_state state = IBV_QPS_RESET;  ///< the verbs state
  int access_flags = 0;       ///< qp_access_flags: what the peer may do through this QP
  uint16_t pkey_index = 0;    ///< always 0: the port's table has only the default P_Key
  uint8_t port = 1;           ///< always 1
  ibv_ah_attr ah{};           ///< the address vector (its GRH names the peer)
  ibv_mtu path_mtu = IBV_MTU_1024;  ///< the path MTU as an enum
  uint32_t mtu = 1024;        ///< the path MTU in bytes: the payload of a full packet
  uint32_t dest_qpn = 0;      ///< the peer's QP number, in every BTH we send
  uint32_t rq_psn = 0;        ///< the first PSN the responder expects (RTR)
  uint32_t sq_psn = 0;        ///< the first PSN the requester sends (RTS)
  uint8_t max_dest_rd_atomic = 0;  ///< READs the responder keeps resources for
  uint8_t min_rnr_timer = 0;  ///< the RNR timer code our RNR NAKs carry
  uint8_t timeout = 0;        ///< local ACK timeout: 4.096 us * 2^timeout; 0 = none
  uint8_t retry_cnt = 0;      ///< resends after a timeout or sequence NAK without progress
  uint8_t rnr_retry = 0;      ///< resends after RNR NAKs without progress; 7 = no limit
  uint8_t max_rd_atomic = 0;  ///< READs the requester may have outstanding; 0 = none
  uint32_t peer_ip = 0;  ///< host order, from the AV's destination GID

  // Requester (requester.cpp) and completer (completer.cpp).
  std::deque<SendWqe> sq;  ///< posted and not yet completed, in order
  uint32_t next_psn = 0;   ///< first PSN of the next posted WQE
  size_t tx_index = 0;     ///< sq[tx_index] is the next WQE with packets to send
  uint32_t tx_psn = 0;     ///< PSN of the next packet to send
  uint32_t una_psn = 0;    ///< oldest PSN not yet acknowledged
  uint32_t sent_high = 0;  ///< one past the highest PSN ever sent (tx_psn moves back on resend)
  uint32_t acked_psn = 0;  ///< one past the highest PSN the responder has acknowledged
  int retries_left = 0;     ///< of retry_cnt, since the last progress
  int rnr_left = 0;         ///< of rnr_retry, since the last progress
  /// A go-back-N retry (after a timeout or a sequence NAK) is under way and nothing has
  /// been acknowledged since: a further sequence NAK starts no second one (rxe's
  /// started_retry).
  bool retrying = false;
  std::optional<Clock::time_point> retransmit_at;  ///< when the local ACK timeout expires
  std::optional<Clock::time_point> rnr_resume_at;  ///< an RNR NAK's wait: resend then
  std::optional<PendingFailure> pending_failure;   ///< an error waiting for earlier READ data

  // Responder (responder.cpp).
  uint32_t epsn = 0;  ///< the PSN it expects next
  uint32_t msn = 0;   ///< messages completed, echoed in every AETH
  std::deque<RecvWqe> rq;  ///< posted receive WRs, consumed in order
  /// What kind of message is being received.
  enum class InMsg { none, send, write };
  InMsg in_msg = InMsg::none;  ///< none, a SEND (into rq.front()) or an RDMA WRITE
  uint64_t in_offset = 0;  ///< bytes of the current message placed so far
  uint64_t in_va = 0;      ///< WRITE: next remote VA
  uint32_t in_remaining = 0;  ///< WRITE: bytes the RETH announced and not yet received
  /// WRITE: the R_Key its RETH named. The MR is looked up by this key for every packet
  /// (it may be deregistered, and its memory reused, between two packets).
  uint32_t in_rkey = 0;
  std::vector<ReadResource> read_ring;  ///< max_dest_rd_atomic saved READs, oldest replaced first
  size_t read_ring_next = 0;  ///< the slot the next READ takes
  bool nak_sent = false;  ///< a PSN sequence NAK is outstanding: do not repeat it
  bool ack_pending = false;  ///< an ACK is owed at the end of this receive batch
  bool ack_now = false;  ///< ...and may not wait (a duplicate, or AckReq inside a message)
  /// Delayed ACKs (responder.cpp, qp_flush_ack): the application answers each message with
  /// a request of its own (ping-pong), so an ACK waits up to UROCE_ACK_DELAY for that
  /// request and leaves right behind it, in the same batch.
  bool ping_pong = false;
  std::optional<Clock::time_point> ack_due;  ///< a delayed ACK is owed: sent by then at the latest
  /// When the last message that earned an ACK arrived, until the application's first
  /// request after it (its answer) comes.
  std::optional<Clock::time_point> acked_request_at;
  uint32_t last_ack_epsn = 0;  ///< the expected PSN the last ACK we sent covered up to
  int ack_answers = 0;  ///< messages in a row each answered in time (ping-pong after 8)
  int ack_misses = 0;  ///< delayed ACKs that went by their timer, lately (responder.cpp)
  int ack_hits = 0;    ///< delayed ACKs in a row that rode behind a request
  int ack_skip = 0;    ///< ACKs that could wait still to send at once after the last miss
  uint64_t bad_pkey_drops = 0;  ///< packets dropped because their P_Key did not match

  /// Where the transport reads the time: Clock::now(), unless a test points this at a
  /// clock it moves itself (tests/unit/socketless_device.hpp), so that timer tests never
  /// depend on how fast the machine runs.
  const Clock::time_point* manual_clock = nullptr;

  /// The QP number.
  uint32_t qpn() const { return ibv.qp_num; }
  /// The time the transport goes by.
  Clock::time_point now() const { return manual_clock ? *manual_clock : Clock::now(); }
};

// ---- queue-pair operations; all with Device::mu held ----------------------------------
/// ibv_modify_qp: checks the transition and its attributes as the kernel's
/// ib_modify_qp_is_ok and rxe_qp_chk_attr do, then applies them. 0 or an errno.
int qp_modify(Qp& qp, const ibv_qp_attr& attr, int mask);
/// ibv_post_send: queues the work requests and sends what the window allows. 0 or an
/// errno, with *bad naming the first request not posted.
int qp_post_send(Qp& qp, ibv_send_wr* wr, ibv_send_wr** bad);
/// ibv_post_recv: queues receive work requests. 0 or an errno, *bad as for post_send.
int qp_post_recv(Qp& qp, ibv_recv_wr* wr, ibv_recv_wr** bad);
/// One packet from the peer, already parsed and checked (ICRC, QP number, source).
void qp_receive(Qp& qp, const wire::Packet& p);
/// The end of a receive batch: the one coalesced ACK the batch earned, if any, now or
/// (ping-pong) delayed until the application's next request or ack_due.
void qp_flush_ack(Qp& qp);
/// Sends a delayed ACK now, if one is owed: before the QP changes state or goes away, the
/// peer gets the ACK rxe would long have sent.
void qp_send_delayed_ack(Qp& qp);
/// The delayed ACK's timer: sends it once ack_due has come.
void qp_ack_timer(Qp& qp, Clock::time_point now);
/// A request was just posted: a delayed ACK goes with it (after it, in the same batch).
void qp_piggyback_ack(Qp& qp);
/// Runs the QP's timers (RNR wait, retransmission) as of `now`.
void qp_timers(Qp& qp, Clock::time_point now);
/// When qp_timers has something to do next, if ever.
std::optional<Clock::time_point> qp_deadline(const Qp& qp);
/// Moves the QP to ERROR: every queued work request completes as flushed.
void qp_enter_error(Qp& qp);

}  // namespace uroce
