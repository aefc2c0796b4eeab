// The engine: the device's progress thread. Like a NIC, or rxe's tasks, it takes in
// every packet as it arrives and runs every timer on time, whatever the application is
// doing: polling a CQ, sleeping on a completion channel, or watching memory for a WRITE
// to land (as perftest's ib_write_lat does, calling no verb at all while it waits).
// An application thread that polls an empty CQ may also take in packets itself
// (poll_progress), which saves a thread wake-up when it wins the race for the lock.
#include <poll.h>
#include <unistd.h>

#include "runtime.hpp"

namespace uroce {

std::optional<Clock::time_point> Device::next_deadline() const {
  std::optional<Clock::time_point> best = held_until;
  for (const auto& [qpn, qp] : qps) {
    auto d = qp_deadline(*qp);
    if (d && (!best || *d < *best)) best = d;
  }
  return best;
}

void Device::wake_engine_if_needed(Clock::time_point deadline) {
  if (engine_sleeping_forever || (engine_sleep_until && deadline < *engine_sleep_until)) {
    uint64_t one = 1;
    (void)!write(wake_fd, &one, sizeof one);
    engine_sleeping_forever = false;
    engine_sleep_until = deadline;
  }
}

void Device::run_timers(Clock::time_point now) {
  release_held(now);
  // qp_timers may move a QP to ERROR but never adds or removes QPs.
  for (auto& [qpn, qp] : qps) qp_timers(*qp, now);
  flush_tx();
}

void Device::poll_progress() {
  std::unique_lock<std::mutex> lk(mu, std::try_to_lock);
  if (!lk.owns_lock()) return;  // the engine or another poller is at it
  receive_batch();
  run_timers(Clock::now());
}

void Device::engine_loop() {
  std::unique_lock<std::mutex> lk(mu);
  while (!stopping) {
    const auto deadline = next_deadline();
    engine_sleeping_forever = !deadline;
    engine_sleep_until = deadline;
    timespec ts{};
    timespec* tsp = nullptr;
    if (deadline) {
      auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - Clock::now());
      long long ns = wait.count() < 0 ? 0 : wait.count();
      ts.tv_sec = static_cast<time_t>(ns / 1000000000);
      ts.tv_nsec = static_cast<long>(ns % 1000000000);
      tsp = &ts;
    }
    // The socket is always watched for packets, and for room to send when packets wait
    // in the backlog. Idle means asleep here: no packet, no timer, no core used.
    const short sock_events = static_cast<short>(POLLIN | (backlog.empty() ? 0 : POLLOUT));
    lk.unlock();
    pollfd fds[2] = {{wake_fd, POLLIN, 0}, {sock, sock_events, 0}};
    ppoll(fds, 2, tsp, nullptr);
    lk.lock();
    engine_sleeping_forever = false;
    engine_sleep_until.reset();
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      (void)!read(wake_fd, &v, sizeof v);
    }
    if (!backlog.empty()) drain_backlog();
    receive_batch();
    run_timers(Clock::now());
  }
}

}  // namespace uroce
