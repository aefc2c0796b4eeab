/**
 * @file stop.hpp
 * @brief Ctrl-C (SIGINT) or `kill` (SIGTERM) ends a server with its summary line.
 *
 * A server's last line says what it did ("server: 3 client(s) served, 0 rejected"). By
 * default both signals end a process on the spot, so a learner who stops a --persistent
 * server never sees that line. With watch_stop_signals() a thread of its own takes both
 * signals (sigwait(): no signal handler, so ordinary code may run), prints the line the
 * server registered with a SummaryOnStop, and then lets the same signal end the process
 * as it would have: the shell, `timeout` or a service manager sees a process killed by
 * SIGINT or SIGTERM (status 130 or 143 in a shell). A second signal while the line is
 * being printed ends the process at once, and so does a watchdog if printing blocks (a
 * full pipe nobody reads).
 *
 * Nothing is torn down one by one: when the process ends the kernel releases its verbs
 * objects (QPs, MRs, PDs) and sockets. What a peer then sees depends on what connects
 * them: an RDMA CM peer gets DISCONNECTED (the kernel's CM sends a DREQ for a connected
 * cm_id it destroys), a TCP or TLS peer sees its socket close, and over RC alone only a
 * peer with a request outstanding notices, when its retries run out (RETRY_EXC_ERR).
 */
#pragma once

#include <functional>
#include <string>

namespace common {

/**
 * Block SIGINT and SIGTERM in this thread and every thread started after it, and start
 * the thread that waits for them. Call it in main() before anything starts a thread (the
 * userspace runtime starts one when the device is opened): a thread that does not block
 * the signals could take one and die of it without a summary.
 */
void watch_stop_signals();

/**
 * While this object lives, a stop signal prints `summary()` (one line, no newline
 * needed) before the process ends. The function runs on the signal thread: whatever it
 * reads must be safe to read from another thread (std::atomic counters).
 */
class SummaryOnStop {
 public:
  /// Register @p summary (replacing any other) until this object is destroyed.
  explicit SummaryOnStop(std::function<std::string()> summary);
  /// Unregister it: a stop signal from now on prints no summary.
  ~SummaryOnStop();
  SummaryOnStop(const SummaryOnStop&) = delete;
  SummaryOnStop& operator=(const SummaryOnStop&) = delete;
  /// The normal end: print the summary on stdout now, once (a stop signal arriving
  /// after this prints nothing more).
  void print();
};

}  // namespace common
