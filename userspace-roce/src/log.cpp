// The runtime's log: lines on stderr that never make the caller wait.
//
// The transport logs while it holds Device::mu (a dropped packet, a QP moving to ERROR,
// at UROCE_LOG=2 every packet). Writing to stderr can block for as long as whoever reads
// it pleases: a pipe nobody drains blocks its writer for ever. A device lock held across
// such a write silences the whole device: no ACK goes out, no packet is taken in, and the
// peer's requester runs out of retries against a QP that is still in RTS. So log_line only
// appends the formatted line to a bounded buffer in memory and returns; a writer thread of
// its own, holding no other lock, copies the buffer to stderr. When stderr is read too
// slowly the buffer fills and lines are dropped (counted, and the count is said in the
// next line that fits): a log is worth less than a working device.
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "config.hpp"

namespace uroce {
namespace {

// Lines waiting for the writer: at most this many bytes (several thousand lines).
constexpr size_t kMaxPendingBytes = 1 << 20;
// At exit, how long the process waits for the writer to empty the buffer.
constexpr auto kExitFlushLimit = std::chrono::seconds(2);

struct Log {
  std::mutex mu;  ///< never held across a write()
  std::condition_variable has_lines;
  std::condition_variable drained;
  std::string pending;         ///< lines not yet handed to write()
  unsigned long long dropped = 0;  ///< lines lost since the last one that fitted
  bool writing = false;        ///< the writer is inside write() with a batch
  bool writer_started = false;
};

// Never destroyed: other threads may still log while static objects are torn down.
Log& the_log() {
  static Log* log = new Log;
  return *log;
}

void write_all(const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(STDERR_FILENO, s.data() + off, s.size() - off);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return;  // stderr closed or broken: nowhere to log to
    }
  }
}

void writer_loop() {
  Log& log = the_log();
  std::unique_lock<std::mutex> lk(log.mu);
  for (;;) {
    log.has_lines.wait(lk, [&] { return !log.pending.empty(); });
    std::string batch;
    batch.swap(log.pending);
    log.writing = true;
    lk.unlock();
    write_all(batch);  // may block for as long as the reader pleases: no lock held
    lk.lock();
    log.writing = false;
    log.drained.notify_all();
  }
}

// At exit the lines still buffered are written if the reader takes them within a bounded
// time (a final error line must not be lost; a reader that never reads must not hang the
// program's exit).
void flush_at_exit() {
  Log& log = the_log();
  std::unique_lock<std::mutex> lk(log.mu);
  log.drained.wait_for(lk, kExitFlushLimit,
                       [&] { return log.pending.empty() && !log.writing; });
}

// A child made by fork() has no writer thread: it starts its own on its first line. The
// lock is taken across fork() so that the child never inherits it held by a thread that
// does not exist there.
void before_fork() { the_log().mu.lock(); }
void after_fork_parent() { the_log().mu.unlock(); }
void after_fork_child() {
  Log& log = the_log();
  log.writer_started = false;
  log.writing = false;
  log.mu.unlock();
}

void start_writer_locked(Log& log) {
  if (log.writer_started) return;
  log.writer_started = true;
  static std::once_flag registered;
  std::call_once(registered, [] {
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    std::atexit(flush_at_exit);
  });
  std::thread(writer_loop).detach();
}

}  // namespace

void log_line(const char* fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  char line[640];
  const int n = std::snprintf(line, sizeof line, "userspace-roce[%d] %ld.%06ld: %s\n",
                              static_cast<int>(getpid()), static_cast<long>(ts.tv_sec),
                              ts.tv_nsec / 1000, text);
  const size_t len = n < 0 ? 0 : std::min(static_cast<size_t>(n), sizeof line - 1);

  Log& log = the_log();
  std::lock_guard<std::mutex> lk(log.mu);
  if (log.pending.size() + len + 128 > kMaxPendingBytes) {
    log.dropped++;
    return;
  }
  if (log.dropped) {
    char note[128];
    std::snprintf(note, sizeof note,
                  "userspace-roce[%d]: %llu log lines dropped: stderr was not read fast "
                  "enough\n",
                  static_cast<int>(getpid()), log.dropped);
    log.pending += note;
    log.dropped = 0;
  }
  log.pending.append(line, len);
  start_writer_locked(log);
  log.has_lines.notify_one();
}

const char* wc_status_text(ibv_wc_status s) {
  static const char* const names[] = {"success", "local length error",
                                      "local QP operation error", "local EE context operation error",
                                      "local protection error", "Work Request Flushed Error",
                                      "memory management operation error", "bad response error",
                                      "local access error", "remote invalid request error",
                                      "remote access error", "remote operation error",
                                      "transport retry counter exceeded", "RNR retry counter exceeded",
                                      "local RDD violation error", "remote invalid RD request",
                                      "aborted error", "invalid EE context number",
                                      "invalid EE context state", "fatal error",
                                      "response timeout error", "general error",
                                      "TM error", "TM rendezvous error"};
  return s >= 0 && s < static_cast<int>(std::size(names)) ? names[s] : "unknown";
}

}  // namespace uroce
