#include "common/completion.hpp"

#include <poll.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <thread>

#include "common/dump.hpp"
#include "common/errors.hpp"

namespace common {

ibv_wc poll_completion(ibv_cq* cq, double timeout_s, const std::string& what) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration<double>(timeout_s);
  unsigned empty_polls = 0;
  ibv_wc wc{};
  for (;;) {
    const int n = ibv_poll_cq(cq, 1, &wc);
    if (n < 0) fail("ibv_poll_cq failed (returned " + std::to_string(n) + ")",
                    "the CQ is broken; this is a device or driver error: check dmesg");
    if (n == 1) break;
    if (clock::now() >= deadline) {
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%.1f", timeout_s);
      fail("no completion for " + what + " within " + seconds + " s",
           "the peer may have exited or stopped posting; check its log. Raise the deadline "
           "with -t if the link is just slow");
    }
    if (++empty_polls > 20000) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return wc;
}

ibv_wc wait_for_completion(ibv_cq* cq, double timeout_s, const std::string& what) {
  const ibv_wc wc = poll_completion(cq, timeout_s, what);
  if (wc.status != IBV_WC_SUCCESS) {
    dump_wc(wc);
    fail("completion for " + what + " failed: status " + std::to_string(wc.status) + " (" +
             ibv_wc_status_str(wc.status) + ")",
         wc_status_remedy(wc.status));
  }
  return wc;
}

Wakeup sleep_until_completion(ibv_comp_channel* channel, int other_fd, double timeout_s) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(timeout_s));
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
    if (left <= 0) return Wakeup::timeout;
    pollfd fds[2] = {{channel->fd, POLLIN, 0}, {other_fd, POLLIN, 0}};
    const int rc = ::poll(fds, other_fd >= 0 ? 2 : 1, static_cast<int>(std::min<long long>(left, 1 << 30)));
    if (rc < 0 && errno != EINTR) check_rc(-1, "poll", "");
    if (rc <= 0) continue;
    if (fds[0].revents & POLLIN) {
      ibv_cq* cq = nullptr;
      void* context = nullptr;
      check_rc(ibv_get_cq_event(channel, &cq, &context), "ibv_get_cq_event", "the completion channel is broken");
      ibv_ack_cq_events(cq, 1);
      check_rc(ibv_req_notify_cq(cq, 0), "ibv_req_notify_cq", "the CQ is broken: check dmesg");
      return Wakeup::completion;
    }
    if (other_fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) return Wakeup::other_fd;
  }
}

const char* wc_status_remedy(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_RETRY_EXC_ERR:
      return "no ACK came back after retry_cnt resends, each after the ACK timeout: the peer's QP is gone "
             "(its process exited or destroyed it), it never reached RTR, or the path between "
             "the two addresses drops RoCE (UDP port 4791)";
    case IBV_WC_RNR_RETRY_EXC_ERR:
      return "the peer had no RECV posted (Receiver Not Ready) for every retry: post RECVs "
             "before telling the peer it may send";
    case IBV_WC_REM_ACCESS_ERR:
      return "the peer refused the access: wrong rkey, an address outside its MR, or an MR "
             "without the needed REMOTE_* flag";
    case IBV_WC_LOC_LEN_ERR:
      return "a message did not fit: the RECV buffer is smaller than what the peer sent "
             "(use the same -s on both sides)";
    case IBV_WC_REM_INV_REQ_ERR:
      return "the responder refused a request as invalid: a SEND longer than its RECV buffer "
             "(Soft-RoCE reports that case so on both sides: use the same -s on both), a READ "
             "its QP has no resources for, or an operation its QP does not allow";
    case IBV_WC_LOC_PROT_ERR:
      return "a local SGE does not match its MR (wrong lkey, address or length)";
    case IBV_WC_WR_FLUSH_ERR:
      return "the QP went to the error state and flushed its queue: look at the first "
             "failed completion, it has the real cause";
    default:
      return "see ibv_wc_status_str in the message and the status list in `man ibv_poll_cq`";
  }
}

}  // namespace common
