/**
 * @file userspace-roce/bench/endpoint.hpp
 * @brief roce_bench over verbs: one RC endpoint (device, PD, memory, CQ, QP), built with
 *        plain calls and torn down in reverse order by RAII; connecting it to the peer;
 *        posting work requests; and polling its CQ with a bound on the wait.
 */
#pragma once

#include <infiniband/verbs.h>
#include <sched.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "control.hpp"
#include "errors.hpp"
#include "messages.hpp"
#include "params.hpp"

namespace roce_bench {

/// Say (never throw) that a destroy call failed: for the deleters below.
void warn_rc(int rc, const char* call);
struct DeviceListDeleter { void operator()(ibv_device** l) const { ibv_free_device_list(l); } };
struct ContextDeleter { void operator()(ibv_context* c) const { warn_rc(ibv_close_device(c), "ibv_close_device"); } };
struct PdDeleter { void operator()(ibv_pd* p) const { warn_rc(ibv_dealloc_pd(p), "ibv_dealloc_pd"); } };
struct MrDeleter { void operator()(ibv_mr* m) const { warn_rc(ibv_dereg_mr(m), "ibv_dereg_mr"); } };
struct CqDeleter { void operator()(ibv_cq* c) const { warn_rc(ibv_destroy_cq(c), "ibv_destroy_cq"); } };
struct QpDeleter { void operator()(ibv_qp* q) const { warn_rc(ibv_destroy_qp(q), "ibv_destroy_qp"); } };
struct FreeDeleter { void operator()(std::uint8_t* p) const { std::free(p); } };

/// What a send/recv queue and the memory of one endpoint must hold.
struct EndpointShape {
  std::size_t buffer_bytes = 0;
  bool remote_write = false;  ///< the peer WRITEs into our buffer (write_bw, verify_rw server)
  bool remote_read = false;   ///< the peer READs our buffer (verify_rw server)
  std::uint32_t send_wr = 1;
  std::uint32_t recv_wr = 1;
  /// max_rd_atomic and max_dest_rd_atomic: READs this side may have outstanding as
  /// requester, and answers in flight as responder (1 unless the test READs)
  std::uint8_t rd_atomic = 1;
};

/// Members in creation order: C++ destroys them in reverse, the order verbs requires.
struct Endpoint {
  std::unique_ptr<ibv_device*, DeviceListDeleter> devices;
  std::unique_ptr<ibv_context, ContextDeleter> ctx;
  std::uint8_t port = 1;
  ibv_port_attr port_attr{};
  int gid_index = 0;
  ibv_gid gid{};
  std::uint32_t mtu_offer = 0;  ///< min(--mtu, active_mtu), bytes
  std::uint32_t path_mtu = 0;   ///< agreed with the peer at RTR, bytes
  std::unique_ptr<ibv_pd, PdDeleter> pd;
  std::unique_ptr<std::uint8_t, FreeDeleter> buffer;
  std::size_t buffer_bytes = 0;
  std::unique_ptr<ibv_mr, MrDeleter> mr;
  std::unique_ptr<ibv_cq, CqDeleter> cq;  ///< one CQ for both queues
  std::unique_ptr<ibv_qp, QpDeleter> qp;
  std::uint32_t psn = 0;
  bool use_inline = false;
  std::uint8_t rd_atomic = 1;  ///< max_rd_atomic = max_dest_rd_atomic at RTR/RTS

  std::uint8_t* buf() const { return buffer.get(); }

  QpInfo info() const {
    QpInfo q;
    q.qpn = qp->qp_num;
    q.psn = psn;
    q.lid = port_attr.lid;
    q.mtu = mtu_offer;
    q.gid = gid;
    return q;
  }
};

/// Open the device (-d, -i, -g), allocate the PD, the buffer and its MR, the CQ and the RC
/// QP that @p shape asks for, and move the QP to INIT.
/// @throws Error naming the call that failed and the remedy.
Endpoint open_endpoint(const Params& p, const EndpointShape& shape);

/// INIT -> RTR -> RTS towards @p remote. The path MTU is the smaller of both offers, so the
/// two sides agree without another round trip. RoCE: every packet carries a GRH.
void connect_endpoint(Endpoint& ep, const QpInfo& remote);

/// wr_id bit of every RECV this program posts.
constexpr std::uint64_t kRecvTag = 1ull << 63;

/// Post one RECV of @p length bytes at @p where.
void post_recv(Endpoint& ep, std::uint8_t* where, std::uint32_t length, std::uint64_t wr_id);
/// Post one signaled SEND; inline (copied at post time) if @p inline_ok and --inline.
void post_send(Endpoint& ep, const std::uint8_t* from, std::uint32_t length, std::uint64_t wr_id, bool inline_ok);
/// Post one signaled RDMA WRITE or READ of @p length bytes between @p local and the peer's
/// @p remote_addr (@p rkey).
void post_rdma(Endpoint& ep, ibv_wr_opcode opcode, const std::uint8_t* local, std::uint32_t length,
               std::uint64_t remote_addr, std::uint32_t rkey, std::uint64_t wr_id);
void post_write(Endpoint& ep, const std::uint8_t* from, std::uint32_t length, std::uint64_t remote_addr,
                std::uint32_t rkey, std::uint64_t wr_id);

/// "SEND", "RDMA_WRITE", "RECV" ...
const char* wc_opcode_name(ibv_wc_opcode op);

/**
 * Polls one CQ. Busy-polls (--poll spin) or yields the CPU between empty polls (--poll
 * yield, and always for the write_bw server, which has nothing to do but wait). Every few
 * thousand empty polls it reads the clock: more than --timeout without progress fails the
 * run, and it peeks at the control connection so a peer that failed stops us at once.
 */
class Poller {
 public:
  Poller(Endpoint& ep, Socket& ctrl, double timeout_s, PollMode mode)
      : cq_(ep.cq.get()), ctrl_(ctrl), timeout_s_(timeout_s), mode_(mode) {}

  /// Name the work request of a failed completion in words (besides its wr_id).
  void describe_wr_ids(std::string (*describe)(std::uint64_t wr_id)) { describe_ = describe; }

  /// Up to @p max completions (at least one), each checked for success.
  /// @param progress  optional: called now and then; true means "the run moved on" (the
  ///                  write_bw server watches its buffer, where WRITEs leave no completion)
  template <class Progress>
  int poll(ibv_wc* wcs, int max, const char* what, Progress&& progress) {
    // The clock is read only after a few thousand empty polls, never on the fast path
    // (a ping-pong round trip is timed around this call).
    std::optional<Clock::time_point> last_progress;
    for (unsigned empty = 1;; ++empty) {
      const int n = ibv_poll_cq(cq_, max, wcs);
      if (n > 0) {
        for (int i = 0; i < n; ++i) check(wcs[i], what);
        return n;
      }
      if (n < 0)
        fail("ibv_poll_cq returned " + std::to_string(n) + " while waiting for " + what,
             "the CQ overflowed or the device failed");
      if (mode_ == PollMode::yield) sched_yield();
      if (empty % 4096 == 0) {
        const auto now = Clock::now();
        if (!last_progress || progress()) last_progress = now;
        if (seconds_between(*last_progress, now) > timeout_s_)
          fail("no completion for " + std::string(what) + " within " + fmt_double(timeout_s_, 1) + " s",
               "the peer stopped, or the transport lost the packets: check the peer's log; raise "
               "--timeout if the machine is just overloaded");
        if (seconds_between(last_peer_check_, now) > 0.01) {
          last_peer_check_ = now;
          ctrl_.check_peer_alive();
        }
      }
    }
  }
  int poll(ibv_wc* wcs, int max, const char* what) {
    return poll(wcs, max, what, [] { return false; });
  }

 private:
  /// Fail with the completion's status, its work request and the usual cause, unless it
  /// succeeded.
  void check(const ibv_wc& wc, const char* what) const;
  ibv_cq* cq_;
  Socket& ctrl_;
  double timeout_s_;
  PollMode mode_;
  std::string (*describe_)(std::uint64_t) = nullptr;
  Clock::time_point last_peer_check_ = Clock::now();
};

}  // namespace roce_bench
