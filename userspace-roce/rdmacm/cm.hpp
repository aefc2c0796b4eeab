// The communication manager (CM): the connection protocol of IBA vol 1 chapter 12, as the
// Linux kernel's drivers/infiniband/core/cm.c speaks it over RoCE v2. Messages (REQ, MRA,
// REJ, REP, RTU, DREQ, DREP: cm_mad.hpp), each connection's state, and the timers that
// resend a lost message or give up. It knows nothing of IP addresses beyond the peer's
// IPv4 (the RoCE v2 GID ::ffff:a.b.c.d), of ports, of event channels or of rdma_cm_ids:
// that is the address layer's job (cma*.cpp), as the kernel keeps cma.c apart from cm.c.
//
// Threading: a Manager is not thread-safe. The library calls every method with its one
// lock held, from the application's threads (connect, accept ...) and from its CM thread
// (receive, run_timers). Events are delivered synchronously, from inside those calls,
// through the `deliver` callback, which must not call back into the Manager.
#pragma once

#include <infiniband/verbs.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

namespace uroce::cm {

using Clock = std::chrono::steady_clock;

constexpr size_t kMadSize = 256;

/// Where a Manager's MADs go: the device's QP 1 in the library (uroce_gsi_send), an
/// in-memory wire in the unit tests. Must not block, and must not call into the Manager.
struct MadSender {
  virtual ~MadSender() = default;
  virtual void send(uint32_t dst_ip, const uint8_t* mad /* kMadSize bytes */) = 0;
};

/// What one side puts into its REQ (active) or REP (passive), and what the other side
/// reads from it.
struct ConnParams {
  uint32_t qpn = 0;               ///< the sender's QP number (24 bits)
  /// The PSN the sender's QP expects first (its rq_psn, 24 bits): the *other* side's QP
  /// sends from it. In lesson 02's capture the client's first WRITE carries the REP's
  /// starting PSN; the kernel's cm_init_qp_rtr_attr/_rts_attr use it so (init_qp_attr).
  uint32_t starting_psn = 0;
  /// REQ: RDMA READs/atomics the active side will accept (its max_dest_rd_atomic);
  /// REP: what the passive side grants (its max_dest_rd_atomic). See cm.c's
  /// cm_format_req/cm_format_rep and how cm_init_qp_rtr_attr/_rts_attr use them.
  uint8_t responder_resources = 0;
  /// REQ: READs/atomics the active side will have outstanding (its max_rd_atomic);
  /// REP: the passive side's.
  uint8_t initiator_depth = 0;
  uint8_t retry_count = 7;        ///< REQ only: the QPs' retry_cnt (3 bits)
  uint8_t rnr_retry_count = 7;    ///< the rnr_retry the *other* side's QP uses (3 bits)
  bool flow_control = true;
  bool srq = false;
  ibv_mtu path_mtu = IBV_MTU_1024;  ///< REQ only: the path MTU both QPs use
  uint8_t local_ack_timeout = 14;   ///< REQ only: the QPs' ACK timeout exponent (5 bits)
  uint8_t target_ack_delay = 0;     ///< REP only (5 bits)
  /// The message's private data: at most 92 bytes in a REQ, 196 in a REP (the caller
  /// includes rdma_cm's header where there is one; the Manager pads with zeros).
  std::vector<uint8_t> private_data;
  /// REQ only: the primary path's flow label (20 bits). Over RoCE v2 the kernel's cma.c
  /// (cma_get_roce_udp_flow_label) puts (source port * 31 + destination port) & 0xFFFFF
  /// there, the rdma_cm ports of the connection.
  uint32_t flow_label = 0;
};

enum class EventType {
  /// passive: a new connection (`id` is new) for a listener (`ctx`), of any transport
  /// type (Event::transport_type): the consumer answers with accept, reject or destroy, or
  /// refuses it from inside `deliver` (Event::refuse)
  req_received,
  rep_received,   ///< active: the peer accepted (answer with ready_to_use, or reject)
  /// passive: the connection is established, by the RTU or by establish() (the kernel's
  /// IB_CM_USER_ESTABLISHED, which rdma_cm reports as the same ESTABLISHED)
  rtu_received,
  rej_received,   ///< either side: the peer rejected (`rej_reason`), or a stale connection
  dreq_received,  ///< the peer disconnects (answer with disconnect: that sends the DREP)
  drep_received,  ///< our DREQ was answered
  timewait_exit,  ///< the connection's time-wait is over: its QP number may be reused
  /// active: no REP or REJ after every resend of the REQ, an MRA having only lengthened
  /// the waits (rdma_cm: UNREACHABLE)
  req_error,
  rep_error,      ///< passive: no RTU after every retry (rdma_cm: UNREACHABLE)
  dreq_error,     ///< no DREP after every retry (rdma_cm: DISCONNECTED, ETIMEDOUT)
};

/// One thing that happened to a connection.
struct Event {
  EventType type{};
  uint32_t id = 0;             ///< the connection (its local communication ID)
  void* ctx = nullptr;         ///< connect()'s ctx, or for req_received the listener's ctx
  uint32_t peer_ip = 0;        ///< host order
  uint64_t service_id = 0;     ///< req_received: the service ID the REQ asked for
  ConnParams remote;           ///< req_received/rep_received: what the peer's message said
  /// rej_received: the REJ's Reason (IBA vol 1 section 12.6.7, REJ; the kernel's enum
  /// ib_cm_rej_reason: 8 invalid service ID, 28 consumer defined ...)
  uint16_t rej_reason = 0;
  /// The message's whole private-data field as received (REQ 92, REP 196, REJ 148, DREQ
  /// 220, DREP 224, RTU 224 bytes), zeros included; empty for the rtu_received that
  /// establish() delivers, which no message carried.
  std::vector<uint8_t> private_data;
  /// req_received: the REQ's Transport Service Type (0 RC, 1 UC, 2 RD, 3 see the extended
  /// transport type, where 1 is XRC). The Manager delivers every REQ, as cm.c does; only
  /// an RC one can be accepted (accept says EINVAL otherwise). A consumer acting as
  /// rdma_cm refuses any other, as the kernel's cma_ib_req_handler does for a listener of
  /// another QP type (cma_ib_check_req_qp_type), which cm.c answers with REJ reason 28:
  /// see `refuse`.
  uint8_t transport_type = 0;
  uint8_t extended_transport_type = 0;
  /// req_received, and only while `deliver` runs (never keep it): set `*refuse = true` to
  /// refuse the REQ as a kernel CM handler does by returning non-zero (cma_ib_req_handler
  /// for a QP type or a request its listener does not take). `deliver` cannot call back
  /// into the Manager, so this is how the consumer destroys the connection in IB_CM_REQ_RCVD:
  /// the Manager sends REJ reason 28 with local communication ID 0 (cm_destroy_id ->
  /// cm_send_rej_locked -> cm_format_rej, which writes 0 in REQ_RCVD) and delivers nothing
  /// more for it. Left false, the connection moves on to IB_CM_MRA_REQ_SENT when `deliver`
  /// returns, as cma.c marks every REQ whose CONNECT_REQUEST its consumer took
  /// (ib_send_cm_mra with IB_CM_MRA_FLAG_DELAY, which sends nothing yet): a reject or
  /// destroy from then on carries the connection's local ID (lesson02.pcap frame 27), and
  /// a resent REQ is answered with an MRA.
  bool* refuse = nullptr;
};

/// REJ reasons the library uses (IBA vol 1 section 12.6.7, REJ; the values of the kernel's
/// enum ib_cm_rej_reason).
enum RejReason : uint16_t {
  kRejTimeout = 4,  ///< cm_destroy_id: the consumer gave up on a REQ still unanswered
  kRejInvalidServiceId = 8,
  kRejStaleConn = 10,
  kRejConsumerDefined = 28,
};

/// Where the CM's log lines go: the library points `write` at the runtime's log
/// (uroce_log_text, stderr, never blocking) and sets `level` from UROCE_LOG; the unit tests
/// leave it unset and nothing is logged. Level 1: one line per message sent, resent or
/// received, and per connection state change; malformed MADs.
struct LogSink {
  int level = 0;
  void (*write)(const char* line) = nullptr;
};
extern LogSink log_sink;

/// The CM of one device (one IPv4 address).
class Manager {
 public:
  Manager(MadSender& out, uint32_t local_ip, std::function<void(const Event&)> deliver);
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // ---- passive side -------------------------------------------------------------------
  /// REQs for `service_id` become req_received events carrying `ctx`. EADDRINUSE if
  /// someone listens on it already. A REQ for a service nobody listens on is answered with
  /// REJ reason 8, as the kernel does.
  int listen(uint64_t service_id, void* ctx);
  void stop_listening(uint64_t service_id);
  /// After req_received: sends the REP, and resends it until the RTU comes (or establish(),
  /// a REJ or a DREQ ends the wait). 0, or EINVAL: not waiting for an answer to a REQ, too
  /// much private data, or a REQ for a transport other than RC (this CM computes RC QP
  /// attributes only).
  int accept(uint32_t id, const ConnParams& mine);

  // ---- active side --------------------------------------------------------------------
  /// Sends a REQ to `peer_ip` for `service_id` and resends it until a REP or REJ arrives;
  /// an MRA only lengthens the wait before each further resend. When every resend is
  /// spent, req_error. Returns the new connection's ID, or 0 if the private data does not
  /// fit the REQ.
  uint32_t connect(uint32_t peer_ip, uint64_t service_id, const ConnParams& mine, void* ctx);
  /// After rep_received: sends the RTU; the connection is established. 0 or errno.
  int ready_to_use(uint32_t id, std::span<const uint8_t> private_data = {});

  /// rdma_notify(IBV_EVENT_COMM_EST) on the passive side: the QP received data before the
  /// RTU (lost, or late), so the connection is established now, as the kernel's
  /// cm_establish does: REP_SENT or MRA_REP_RCVD -> ESTABLISHED, the REP no longer resent,
  /// and an rtu_received event without private data (the kernel queues its
  /// IB_CM_USER_ESTABLISHED to its CM thread; here it is delivered from inside this call).
  /// An RTU arriving later is a duplicate and dropped. 0; EISCONN if already established;
  /// EINVAL in any other state, or for an ID destroyed or unknown.
  int establish(uint32_t id);

  // ---- either side --------------------------------------------------------------------
  /// Sends a REJ while the connection is being set up: after req_received or rep_received,
  /// or to give up on our own REQ or REP (cm_send_rej_locked). At most 148 bytes of private
  /// data. 0, or EINVAL (too much private data, or the wrong state).
  int reject(uint32_t id, uint16_t reason, std::span<const uint8_t> private_data = {});
  /// Established: sends a DREQ (resent until the DREP, then drep_received or dreq_error).
  /// After dreq_received: sends the DREP. Then time-wait. 0, or EINVAL in other states.
  int disconnect(uint32_t id, std::span<const uint8_t> private_data = {});
  /// The consumer is done with `id`: sends what cm.c's ib_destroy_cm_id sends in its state
  /// (a REJ while a REQ or REP is unanswered, one DREQ when established, a DREP after a
  /// DREQ) and delivers no more events for it. A connection left in time-wait stays until
  /// the time-wait ends, without its consumer (its ID is not reused meanwhile); a DREQ for
  /// it is answered as cm.c answers one for a connection it no longer has (cm_issue_drep).
  void destroy(uint32_t id);

  /// The QP attributes for moving the connection's QP to `state` (INIT, RTR or RTS), as
  /// the kernel's ib_cm_init_qp_attr computes them from the REQ and REP; `ah_attr` is left
  /// to the caller (the address layer knows the GIDs). 0, or EINVAL if the connection is
  /// not far enough along for that state.
  int init_qp_attr(uint32_t id, ibv_qp_state state, ibv_qp_attr& attr, int& mask) const;

  // ---- from the CM thread -------------------------------------------------------------
  /// One MAD received on QP 1 from `src_ip` (kMadSize bytes; anything malformed is
  /// dropped, with one log line at UROCE_LOG >= 1).
  void receive(uint32_t src_ip, const uint8_t* mad, size_t len);
  /// Resends or gives up on whatever is due at `now`.
  void run_timers(Clock::time_point now);
  /// When run_timers next has something to do.
  std::optional<Clock::time_point> next_deadline() const;

  // ---- settings -----------------------------------------------------------------------
  /// The local CA GUID (host order) the REQ and REP carry, and a timeout REJ's ARI: the
  /// device's node GUID. 0 until set.
  void set_ca_guid(uint64_t guid);
  /// Where the Manager reads the time when a timer starts outside run_timers (connect,
  /// accept, disconnect, receive ...): Clock::now unless replaced, as the unit tests do
  /// with a fake clock.
  void set_clock(std::function<Clock::time_point()> now);

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace uroce::cm
