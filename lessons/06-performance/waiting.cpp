#include "waiting.hpp"

#include <chrono>
#include <string>

#include "common/completion.hpp"
#include "common/errors.hpp"
#include "common/net.hpp"

namespace lesson06 {

void arm_both(Connection& c) {
  common::check_rc(ibv_req_notify_cq(c.send_cq.get(), 0), "ibv_req_notify_cq", "the CQ is broken: check dmesg");
  common::check_rc(ibv_req_notify_cq(c.recv_cq.get(), 0), "ibv_req_notify_cq", "the CQ is broken: check dmesg");
}

int poll_now(ibv_cq* cq, ibv_wc* wcs, int max) {
  const int n = ibv_poll_cq(cq, max, wcs);
  if (n < 0) common::fail("ibv_poll_cq failed (" + std::to_string(n) + ")", "device error: check dmesg");
  return n;
}

int wait_for_completions(Connection& c, ibv_cq* cq, ibv_wc* wcs, int max, bool event, double timeout_s,
                         const char* what, std::uint64_t number) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (unsigned spins = 1;; ++spins) {
    const int n = poll_now(cq, wcs, max);
    if (n > 0) return n;
    if (event) {
      // Sleep until the channel says a CQ has something (it re-arms that CQ), then poll.
      const double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
      if (left > 0 && common::sleep_until_completion(c.channel.get(), -1, left) != common::Wakeup::timeout) continue;
    } else if (spins % 4096 != 0 || std::chrono::steady_clock::now() < deadline) {
      continue;  // spin: a poll is a memory read; the clock is read only every 4096 polls
    }
    common::fail(std::string("no completion for ") + what + " " + std::to_string(number) + " within " +
                     common::net::seconds_text(timeout_s),
                 "the peer may be gone or stuck; check its log (a slow machine needs a larger -t)");
  }
}

void failed_completion(const ibv_wc& wc, const char* what, std::uint64_t number) {
  common::fail(std::string("completion for ") + what + " " + std::to_string(number) + " failed: status " +
                   std::to_string(wc.status) + " (" +
                   ibv_wc_status_str(wc.status) + "), vendor_err 0x" + [&] {
                     char b[16];
                     std::snprintf(b, sizeof b, "%x", wc.vendor_err);
                     return std::string(b);
                   }(),
               common::wc_status_remedy(wc.status));
}

}  // namespace lesson06
