/**
 * @file lessons/07-when-it-breaks/observe.hpp
 * @brief Steps 6-7: what the verbs said, how long it took, and whether that is what the
 *        case predicts.
 *
 * A failure reaches an RDMA program in one of four ways, and a case reports each one it
 * meets with the same words:
 *  - a work completion with a status other than IBV_WC_SUCCESS (and a vendor_err, which
 *    a hardware device fills and Soft-RoCE leaves 0);
 *  - a verbs call that returns an errno value (ibv_post_send, ibv_modify_qp) or NULL with
 *    errno set (ibv_reg_mr, ibv_create_qp);
 *  - an asynchronous event on the device's async fd (ibv_get_async_event): a CQ that
 *    overflowed, a QP that failed outside any work request;
 *  - nothing at all: a completion that does not come within a deadline.
 * A case compares what it saw with what it predicts (Expect) and the program exits 0
 * only when they agree, so the smoke test checks the prediction, not just a run.
 */
#pragma once

#include <infiniband/verbs.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace lesson07 {


/// A stopwatch started when a case posts the work that will fail (step 5).
class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  /// Seconds since construction or the last restart().
  double seconds() const;
  /// Start again from now.
  void restart() { start_ = std::chrono::steady_clock::now(); }

 private:
  std::chrono::steady_clock::time_point start_;
};

/// Step 6's line for a completion: wr_id, status name and number, vendor_err, the time
/// since @p clock started.
void report_wc(const char* side, const ibv_wc& wc, const Stopwatch& clock);

/// Step 6's line for a call that failed or succeeded: "ibv_post_send returned ENOMEM (12)".
void report_call(const char* side, const char* call, int err, const Stopwatch& clock);

/// Poll @p cq for one completion for at most @p timeout_s; nullopt if none came (logged).
std::optional<ibv_wc> poll_one(const char* side, ibv_cq* cq, double timeout_s, const Stopwatch& clock);

/// Wait at most @p timeout_s for asynchronous events on @p ctx, logging each one; returns
/// them. With @p timeout_s 0 it only takes those already there. Each is acknowledged.
std::vector<ibv_event_type> take_async_events(const char* side, ibv_context* ctx, double timeout_s);

/// The QP's state now (ibv_query_qp), logged: a QP that failed for good is in ERR.
ibv_qp_state report_qp_state(const char* side, ibv_qp* qp);

/// Step 7's three lines: why it took that long, what the wire shows, the remedy.
void explain(const char* side, const std::string& why_that_long, const std::string& on_the_wire,
             const std::string& remedy);

/**
 * What a case predicts; each check records a difference instead of throwing, so one run
 * reports every difference. verdict() logs "as predicted" or each difference, and is the
 * program's exit code (0 or 1).
 */
class Expect {
 public:
  /// Predictions of @p side ("client" or "server"), the word its verdict lines start with.
  explicit Expect(const char* side) : side_(side) {}
  /// The completion has @p status.
  void status(const ibv_wc& wc, ibv_wc_status status, const char* what);
  /// A completion came (not nullopt) with @p status.
  void status(const std::optional<ibv_wc>& wc, ibv_wc_status status, const char* what);
  /// No completion came.
  void none(const std::optional<ibv_wc>& wc, const char* what);
  /// A call returned @p err (0: succeeded).
  void call(int seen, int err, const char* call);
  /// The QP is in @p state.
  void qp_state(ibv_qp_state seen, ibv_qp_state state);
  /// @p events holds @p event.
  void event(const std::vector<ibv_event_type>& events, ibv_event_type event);
  /// Any other prediction: @p ok, described by @p what.
  void that(bool ok, const std::string& what);
  /// The case ended within its stated time: @p took seconds since step 5, against the
  /// @p stated seconds its explanation gives (0: immediate or one round trip). Logs
  /// "ended in X s, bound Y s" and predicts took <= bound_s(stated). The bound is
  /// generous on purpose: it catches a hang, not a slow machine.
  void within(double took, double stated);
  /// The upper bound a case is held to: 3 x its stated time + 10 s (a loaded machine
  /// running emulated guests may be many times slower than the lab's numbers).
  static double bound_s(double stated) { return 3 * stated + 10; }
  /// Log the verdict; 0 if every prediction held, else 1.
  int verdict(const std::string& case_name) const;

 private:
  const char* side_;
  std::vector<std::string> differences_;
};

/// "IBV_WC_REM_ACCESS_ERR" for a status (the enum's name; ibv_wc_status_str gives prose).
const char* wc_status_name(ibv_wc_status status);
/// "IBV_EVENT_CQ_ERR" for an async event type.
const char* event_name(ibv_event_type event);
/// "ENOMEM" for an errno value ("0" for 0).
std::string errno_name(int err);

}  // namespace lesson07
