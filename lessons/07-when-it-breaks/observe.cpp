#include "observe.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/qp_state.hpp"

namespace lesson07 {

double Stopwatch::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

const char* wc_status_name(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_SUCCESS: return "IBV_WC_SUCCESS";
    case IBV_WC_LOC_LEN_ERR: return "IBV_WC_LOC_LEN_ERR";
    case IBV_WC_LOC_QP_OP_ERR: return "IBV_WC_LOC_QP_OP_ERR";
    case IBV_WC_LOC_EEC_OP_ERR: return "IBV_WC_LOC_EEC_OP_ERR";
    case IBV_WC_LOC_PROT_ERR: return "IBV_WC_LOC_PROT_ERR";
    case IBV_WC_WR_FLUSH_ERR: return "IBV_WC_WR_FLUSH_ERR";
    case IBV_WC_MW_BIND_ERR: return "IBV_WC_MW_BIND_ERR";
    case IBV_WC_BAD_RESP_ERR: return "IBV_WC_BAD_RESP_ERR";
    case IBV_WC_LOC_ACCESS_ERR: return "IBV_WC_LOC_ACCESS_ERR";
    case IBV_WC_REM_INV_REQ_ERR: return "IBV_WC_REM_INV_REQ_ERR";
    case IBV_WC_REM_ACCESS_ERR: return "IBV_WC_REM_ACCESS_ERR";
    case IBV_WC_REM_OP_ERR: return "IBV_WC_REM_OP_ERR";
    case IBV_WC_RETRY_EXC_ERR: return "IBV_WC_RETRY_EXC_ERR";
    case IBV_WC_RNR_RETRY_EXC_ERR: return "IBV_WC_RNR_RETRY_EXC_ERR";
    case IBV_WC_LOC_RDD_VIOL_ERR: return "IBV_WC_LOC_RDD_VIOL_ERR";
    case IBV_WC_REM_INV_RD_REQ_ERR: return "IBV_WC_REM_INV_RD_REQ_ERR";
    case IBV_WC_REM_ABORT_ERR: return "IBV_WC_REM_ABORT_ERR";
    case IBV_WC_INV_EECN_ERR: return "IBV_WC_INV_EECN_ERR";
    case IBV_WC_INV_EEC_STATE_ERR: return "IBV_WC_INV_EEC_STATE_ERR";
    case IBV_WC_FATAL_ERR: return "IBV_WC_FATAL_ERR";
    case IBV_WC_RESP_TIMEOUT_ERR: return "IBV_WC_RESP_TIMEOUT_ERR";
    case IBV_WC_GENERAL_ERR: return "IBV_WC_GENERAL_ERR";
    default: return "IBV_WC_(unknown)";
  }
}

const char* event_name(ibv_event_type event) {
  switch (event) {
    case IBV_EVENT_CQ_ERR: return "IBV_EVENT_CQ_ERR";
    case IBV_EVENT_QP_FATAL: return "IBV_EVENT_QP_FATAL";
    case IBV_EVENT_QP_REQ_ERR: return "IBV_EVENT_QP_REQ_ERR";
    case IBV_EVENT_QP_ACCESS_ERR: return "IBV_EVENT_QP_ACCESS_ERR";
    case IBV_EVENT_COMM_EST: return "IBV_EVENT_COMM_EST";
    case IBV_EVENT_SQ_DRAINED: return "IBV_EVENT_SQ_DRAINED";
    case IBV_EVENT_PATH_MIG: return "IBV_EVENT_PATH_MIG";
    case IBV_EVENT_PATH_MIG_ERR: return "IBV_EVENT_PATH_MIG_ERR";
    case IBV_EVENT_DEVICE_FATAL: return "IBV_EVENT_DEVICE_FATAL";
    case IBV_EVENT_PORT_ACTIVE: return "IBV_EVENT_PORT_ACTIVE";
    case IBV_EVENT_PORT_ERR: return "IBV_EVENT_PORT_ERR";
    case IBV_EVENT_LID_CHANGE: return "IBV_EVENT_LID_CHANGE";
    case IBV_EVENT_PKEY_CHANGE: return "IBV_EVENT_PKEY_CHANGE";
    case IBV_EVENT_SM_CHANGE: return "IBV_EVENT_SM_CHANGE";
    case IBV_EVENT_SRQ_ERR: return "IBV_EVENT_SRQ_ERR";
    case IBV_EVENT_SRQ_LIMIT_REACHED: return "IBV_EVENT_SRQ_LIMIT_REACHED";
    case IBV_EVENT_QP_LAST_WQE_REACHED: return "IBV_EVENT_QP_LAST_WQE_REACHED";
    case IBV_EVENT_CLIENT_REREGISTER: return "IBV_EVENT_CLIENT_REREGISTER";
    case IBV_EVENT_GID_CHANGE: return "IBV_EVENT_GID_CHANGE";
    case IBV_EVENT_WQ_FATAL: return "IBV_EVENT_WQ_FATAL";
  }
  return "IBV_EVENT_(unknown)";
}

std::string errno_name(int err) {
  switch (err) {
    case 0: return "0";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case EPERM: return "EPERM";
    case EFAULT: return "EFAULT";
    case EAGAIN: return "EAGAIN";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EBUSY: return "EBUSY";
    case ENOSPC: return "ENOSPC";
    default: return "errno " + std::to_string(err);
  }
}

void report_wc(const char* side, const ibv_wc& wc, const Stopwatch& clock) {
  LOG(data, "step 6: %s: completion wr_id %llu: %s (%d, \"%s\"), vendor_err 0x%x, after %.3f s", side,
      static_cast<unsigned long long>(wc.wr_id), wc_status_name(wc.status), static_cast<int>(wc.status),
      ibv_wc_status_str(wc.status), wc.vendor_err, clock.seconds());
}

void report_call(const char* side, const char* call, int err, const Stopwatch& clock) {
  if (err == 0)
    LOG(data, "step 6: %s: %s succeeded, after %.3f s", side, call, clock.seconds());
  else
    LOG(data, "step 6: %s: %s returned %s (%d, \"%s\"), after %.3f s", side, call, errno_name(err).c_str(), err,
        std::strerror(err), clock.seconds());
}

std::optional<ibv_wc> poll_one(const char* side, ibv_cq* cq, double timeout_s, const Stopwatch& clock) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  ibv_wc wc{};
  for (;;) {
    const int n = ibv_poll_cq(cq, 1, &wc);
    if (n < 0) common::fail("ibv_poll_cq returned " + std::to_string(n), "device error: check dmesg");
    if (n == 1) {
      report_wc(side, wc, clock);
      return wc;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      LOG(data, "step 6: %s: no completion within %.3f s (after %.3f s)", side, timeout_s, clock.seconds());
      return std::nullopt;
    }
    // A wait measured in seconds: look about every 0.1 ms rather than spin a core.
    ::usleep(100);
  }
}

std::vector<ibv_event_type> take_async_events(const char* side, ibv_context* ctx, double timeout_s) {
  std::vector<ibv_event_type> seen;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    const double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
    pollfd p{ctx->async_fd, POLLIN, 0};
    const int ms = left > 0 ? static_cast<int>(left * 1000) + 1 : 0;
    const int ready = ::poll(&p, 1, seen.empty() ? ms : 0);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;
    ibv_async_event ev{};
    if (ibv_get_async_event(ctx, &ev) != 0) break;
    LOG(data, "step 6: %s: async event %s (%d, \"%s\")", side, event_name(ev.event_type),
        static_cast<int>(ev.event_type), ibv_event_type_str(ev.event_type));
    seen.push_back(ev.event_type);
    ibv_ack_async_event(&ev);
  }
  if (seen.empty()) LOG(data, "step 6: %s: no async event", side);
  return seen;
}

ibv_qp_state report_qp_state(const char* side, ibv_qp* qp) {
  const ibv_qp_state state = common::query_qp_state(qp);
  LOG(data, "step 6: %s: QP 0x%06x is in %s", side, qp->qp_num, common::qp_state_name(state));
  return state;
}

void explain(const char* side, const std::string& why_that_long, const std::string& on_the_wire,
             const std::string& remedy) {
  if (!why_that_long.empty()) LOG(info, "step 7: %s: why that long: %s", side, why_that_long.c_str());
  if (!on_the_wire.empty()) LOG(info, "step 7: %s: on the wire: %s", side, on_the_wire.c_str());
  if (!remedy.empty()) LOG(info, "step 7: %s: remedy: %s", side, remedy.c_str());
}

void Expect::status(const ibv_wc& wc, ibv_wc_status status, const char* what) {
  if (wc.status != status)
    differences_.push_back(std::string(what) + " completed with " + wc_status_name(wc.status) + ", predicted " +
                           wc_status_name(status));
}

void Expect::status(const std::optional<ibv_wc>& wc, ibv_wc_status status, const char* what) {
  if (!wc)
    differences_.push_back(std::string(what) + " never completed, predicted " + wc_status_name(status));
  else
    this->status(*wc, status, what);
}

void Expect::none(const std::optional<ibv_wc>& wc, const char* what) {
  if (wc)
    differences_.push_back(std::string(what) + " completed with " + wc_status_name(wc->status) +
                           ", predicted no completion");
}

void Expect::call(int seen, int err, const char* call) {
  if (seen != err)
    differences_.push_back(std::string(call) + " returned " + errno_name(seen) + ", predicted " + errno_name(err));
}

void Expect::qp_state(ibv_qp_state seen, ibv_qp_state state) {
  if (seen != state)
    differences_.push_back(std::string("the QP is in ") + common::qp_state_name(seen) + ", predicted " +
                           common::qp_state_name(state));
}

void Expect::event(const std::vector<ibv_event_type>& events, ibv_event_type event) {
  for (const ibv_event_type e : events)
    if (e == event) return;
  differences_.push_back(std::string("no async event ") + event_name(event));
}

void Expect::that(bool ok, const std::string& what) {
  if (!ok) differences_.push_back(what);
}

void Expect::within(double took, double stated) {
  const double bound = bound_s(stated);
  LOG(info, "step 7: %s: ended in %.3f s, bound %.1f s (the stated %.3f s x 3 + 10 s)", side_, took, bound, stated);
  if (took > bound)
    differences_.push_back("it ended after " + std::to_string(took) + " s, past its bound of " +
                           std::to_string(bound) + " s (3 x the stated " + std::to_string(stated) +
                           " s + 10 s): something waited far longer than the case explains");
}

int Expect::verdict(const std::string& case_name) const {
  if (differences_.empty()) {
    LOG(info, "%s: case %s: as predicted", side_, case_name.c_str());
    return 0;
  }
  for (const std::string& d : differences_)
    LOG(error, "%s: case %s: NOT as predicted: %s", side_, case_name.c_str(), d.c_str());
  return 1;
}

}  // namespace lesson07
