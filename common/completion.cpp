#include "common/completion.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <thread>

#include "common/dump.hpp"
#include "common/errors.hpp"
#include "common/net.hpp"

namespace common {

namespace {

// Whether the TCP connection @p fd has ended: end of stream or an error. Bytes waiting
// to be read are not an end (they are left for whoever reads the channel next).
bool hung_up(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLHUP | POLLERR)) return true;
  char byte = 0;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

// The busy poll behind poll_completion(); with @p peer_fd >= 0, that connection is
// checked every ~20 ms once the quick phase is over, and its end throws (after one last
// poll of the CQ, so a completion that came with the hang-up is not lost).
ibv_wc poll_until(ibv_cq* cq, double timeout_s, const std::string& what, int peer_fd,
                  const std::string& peer_name) {
  const auto deadline = net::deadline_after(timeout_s);
  unsigned empty_polls = 0;
  ibv_wc wc{};
  for (;;) {
    const int n = ibv_poll_cq(cq, 1, &wc);
    if (n < 0) fail("ibv_poll_cq failed (returned " + std::to_string(n) + ")",
                    "the CQ is broken; this is a device or driver error: check dmesg");
    if (n == 1) break;
    if (net::Clock::now() >= deadline)
      fail("no completion for " + what + " within " + net::seconds_text(timeout_s),
           "the peer may have exited or stopped posting; check its log. Raise the deadline "
           "with -t if the link is just slow");
    if (++empty_polls > 20000) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      if (peer_fd >= 0 && empty_polls % 200 == 0 && hung_up(peer_fd)) {
        if (ibv_poll_cq(cq, 1, &wc) == 1) break;
        fail(peer_name + " closed its TCP connection while we waited for " + what,
             "the peer exited or was killed before saying goodbye; check its log");
      }
    }
  }
  return wc;
}

ibv_wc checked(const ibv_wc& wc, const std::string& what) {
  if (wc.status != IBV_WC_SUCCESS) {
    dump_wc(wc);
    fail("completion for " + what + " failed: status " + std::to_string(wc.status) + " (" +
             ibv_wc_status_str(wc.status) + ")",
         wc_status_remedy(wc.status));
  }
  return wc;
}

}  // namespace

ibv_wc poll_completion(ibv_cq* cq, double timeout_s, const std::string& what) {
  return poll_until(cq, timeout_s, what, -1, "");
}

ibv_wc wait_for_completion(ibv_cq* cq, double timeout_s, const std::string& what) {
  return checked(poll_until(cq, timeout_s, what, -1, ""), what);
}

ibv_wc wait_for_completion_or_hangup(ibv_cq* cq, double timeout_s, const std::string& what, int peer_fd,
                                     const std::string& peer_name) {
  return checked(poll_until(cq, timeout_s, what, peer_fd, peer_name), what);
}

Wakeup sleep_until_completion(ibv_comp_channel* channel, int other_fd, double timeout_s) {
  const auto deadline = net::deadline_after(timeout_s);
  for (;;) {
    const int left = net::ms_left(deadline);
    if (left <= 0) return Wakeup::timeout;
    pollfd fds[2] = {{channel->fd, POLLIN, 0}, {other_fd, POLLIN, 0}};
    const int rc = ::poll(fds, other_fd >= 0 ? 2 : 1, left);
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
    case IBV_WC_LOC_QP_OP_ERR:
      return "the device could not carry out a work request of this QP; on a RECV, kernel "
             "Soft-RoCE (6.1) reports so a SEND longer than the RECV buffer (the spec's "
             "IBV_WC_LOC_LEN_ERR): post RECVs as large as the largest message";
    case IBV_WC_REM_INV_REQ_ERR:
      return "the responder refused a request as invalid: a SEND longer than its RECV buffer "
             "(the userspace runtime reports that case so), a READ its QP has no resources for, "
             "or an operation its QP does not allow";
    case IBV_WC_REM_OP_ERR:
      return "the responder could not carry out the request: kernel Soft-RoCE (6.1) reports "
             "so a SEND longer than the RECV buffer the peer posted (use the same -s on both "
             "sides); on other devices, look at the peer's completions and dmesg";
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
