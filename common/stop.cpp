#include "common/stop.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "common/errors.hpp"
#include "common/log.hpp"

namespace common {
namespace {

/// Seconds the stop thread may spend printing before SIGALRM ends the process anyway.
constexpr unsigned kStopWatchdogSeconds = 5;

// Never destroyed (allocated once, not freed): the detached stop thread may read them
// while the process is already running its exit handlers.
std::mutex& summary_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
std::function<std::string()>& current_summary() {  // guarded by summary_mutex()
  static auto* f = new std::function<std::string()>;
  return *f;
}

[[noreturn]] void stop(const sigset_t& set, int signo) {
  // From here a second SIGINT or SIGTERM, or printing that blocks for good, ends the
  // process by the default action: restore it, and let this thread take the signals.
  alarm(kStopWatchdogSeconds);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGINT, &dfl, nullptr);
  sigaction(SIGTERM, &dfl, nullptr);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);

  write_whole_line(stderr, signo == SIGINT ? "stopped by SIGINT (Ctrl-C)" : "stopped by SIGTERM");
  {
    const std::lock_guard<std::mutex> lock(summary_mutex());
    if (current_summary()) write_whole_line(stdout, current_summary()());
    current_summary() = nullptr;
  }
  // End as the signal would have ended us: the parent sees "killed by SIGTERM".
  raise(signo);
  std::_Exit(128 + signo);  // not reached: the default action of signo ends the process
}

}  // namespace

void watch_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  check_rc(pthread_sigmask(SIG_BLOCK, &set, nullptr), "pthread_sigmask", "");
  std::thread([set] {
    int signo = 0;
    if (sigwait(&set, &signo) == 0) stop(set, signo);
  }).detach();
}

SummaryOnStop::SummaryOnStop(std::function<std::string()> summary) {
  const std::lock_guard<std::mutex> lock(summary_mutex());
  current_summary() = std::move(summary);
}

void SummaryOnStop::print() {
  const std::lock_guard<std::mutex> lock(summary_mutex());
  if (current_summary()) write_whole_line(stdout, current_summary()());
  current_summary() = nullptr;
}

SummaryOnStop::~SummaryOnStop() {
  const std::lock_guard<std::mutex> lock(summary_mutex());
  current_summary() = nullptr;
}

}  // namespace common
