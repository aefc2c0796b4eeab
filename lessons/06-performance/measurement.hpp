/**
 * @file lessons/06-performance/measurement.hpp
 * @brief Timing a measurement the way perftest reports it: bandwidth, message rate,
 *        typical and 99th-percentile latency, and the CPU time it cost.
 *
 *  - **Bandwidth** is message bytes per second in one direction, in MiB/s (2^20 bytes),
 *    the unit perftest calls "MB/sec"; from the first post to the last completion.
 *  - **Latency** of a ping-pong is half its round trip, as ib_send_lat reports it; of any
 *    other measurement, the time from posting a signaled work request to polling its
 *    completion (in a window, that includes the time it waited behind the others).
 *    "Typical" is the median, as perftest's t_typical; p99 the 99th percentile; "min" the
 *    fastest sample, as perftest's t_min (only `--run`'s result line prints it).
 *  - **CPU** is user + system time of the client process (getrusage(RUSAGE_SELF): every
 *    thread, a userspace RoCE device's too) divided by the wall time: 100 % is one core
 *    kept busy. Not counted: the server's CPU, and work the kernel does for us outside the
 *    process's time (on Soft-RoCE, much of the packet processing runs in softirq context),
 *    so on Soft-RoCE a sleeping process's figure understates what the run cost.
 *
 * The timed loops also check the data (message_bytes.hpp): a memcmp per message received
 * (by the server for SEND, by the client for echoes and READs; a WRITE's ring after the
 * clock stops). That is part of every number here, as it is part of any program that uses
 * the data it receives; perftest checks nothing.
 */
#pragma once

#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "common/exchange.hpp"

namespace lesson06 {

/// The clock of every measurement: monotonic, unaffected by changes of the wall-clock time.
using Clock = std::chrono::steady_clock;

/// One measurement as the client runs it: the TEST it sends, plus what only the client
/// does (how often it signals, how many WRs it posts per call), and its name in the tables.
struct Technique {
  int step = 1;                      ///< the README step it belongs to (1-7)
  std::string name;                  ///< "send ping-pong", "write", ... (the plots' legend)
  const char* kind = "bandwidth";    ///< which plot: "latency", "bandwidth" or "both"
  common::TestSpec spec;             ///< op, pattern, inline, event, size, iters, window
  std::uint32_t signal_every = 1;    ///< every k-th send-queue WR is signaled (and the last)
  std::uint32_t chain = 1;           ///< WRs linked into one ibv_post_send call
};

/// What a measurement gave.
struct Result {
  Technique technique;            ///< what was measured
  double seconds = 0;             ///< first post to last completion
  double mib_per_s = 0;           ///< message bytes per second, one direction, 2^20 bytes
  double mmsg_per_s = 0;          ///< millions of messages per second
  double lat_min_us = 0;          ///< fastest sample, as perftest's t_min
  double lat_typical_us = 0;      ///< median latency (see the file comment)
  double lat_p99_us = 0;          ///< 99th percentile
  double cpu_percent = 0;         ///< CPU time / wall time, 100 = one core
  double cpu_us_per_msg = 0;      ///< CPU time per message
};

/// Starts the clocks when made; finish() turns samples into a Result.
class Meter {
 public:
  Meter();
  /// Record one latency sample in microseconds (reserve() first for long runs).
  void sample(double us) { samples_.push_back(us); }
  /// Make room for @p n samples, and touch it, so that recording neither allocates nor
  /// faults pages in while timing.
  void reserve(std::size_t n) {
    samples_.resize(n);
    samples_.clear();
  }
  /// Stop the clocks and compute @p technique's result over @p messages messages.
  Result finish(const Technique& technique, std::uint64_t messages);

 private:
  Clock::time_point start_;
  rusage usage_{};
  std::vector<double> samples_;
};

/// Microseconds between two time points.
inline double micros(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::micro>(to - from).count();
}

/// Print the table's two header lines (perftest-like) on stdout.
void print_table_header();
/// Print one row of the table on stdout.
void print_row(const Result& r);

/// The results as CSV, one row per measurement, for plot.sh (the columns: see kCsvHeader).
class CsvFile {
 public:
  /// Open (truncate) @p path and write the header; an empty path writes nothing.
  explicit CsvFile(const std::string& path);
  ~CsvFile();
  CsvFile(const CsvFile&) = delete;
  CsvFile& operator=(const CsvFile&) = delete;
  /// Append one row (flushed at once, so a failed run keeps the rows before it).
  void write(const Result& r);

 private:
  std::FILE* file_ = nullptr;
};

/// The CSV header line.
inline constexpr const char* kCsvHeader =
    "step,technique,kind,op,pattern,size,iters,window,signal_every,chain,inline,wait,seconds,mib_per_s,"
    "mmsg_per_s,lat_typical_us,lat_p99_us,cpu_us_per_msg,cpu_percent";

/// "send", "write", "write-imm", "read".
const char* op_name(common::TestOp op);

}  // namespace lesson06
