#include "measurement.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>

#include "common/errors.hpp"

namespace lesson06 {
namespace {

double cpu_seconds(const rusage& u) {
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/// The value below which @p q of the sorted @p v lie (nearest rank).
double quantile(const std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

}  // namespace

const char* op_name(common::TestOp op) {
  switch (op) {
    case common::TestOp::send: return "send";
    case common::TestOp::write: return "write";
    case common::TestOp::write_imm: return "write-imm";
    case common::TestOp::read: return "read";
  }
  return "?";
}

Meter::Meter() {
  getrusage(RUSAGE_SELF, &usage_);
  start_ = Clock::now();
}

Result Meter::finish(const Technique& technique, std::uint64_t messages) {
  const Clock::time_point end = Clock::now();
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  Result r;
  r.technique = technique;
  r.seconds = std::chrono::duration<double>(end - start_).count();
  const double msgs = static_cast<double>(messages);
  const double cpu = cpu_seconds(usage) - cpu_seconds(usage_);
  if (r.seconds > 0) {
    r.mib_per_s = msgs * technique.spec.size / r.seconds / (1024.0 * 1024.0);
    r.mmsg_per_s = msgs / r.seconds / 1e6;
    r.cpu_percent = 100.0 * cpu / r.seconds;
  }
  r.cpu_us_per_msg = messages ? cpu * 1e6 / msgs : 0;
  std::sort(samples_.begin(), samples_.end());
  r.lat_min_us = samples_.empty() ? 0 : samples_.front();
  r.lat_typical_us = quantile(samples_, 0.5);
  r.lat_p99_us = quantile(samples_, 0.99);
  return r;
}

void print_table_header() {
  std::printf("%-4s %-26s %8s %7s %6s %10s %8s %10s %10s %6s %9s\n", "step", "technique", "bytes", "iters", "window",
              "MiB/s", "Mmsg/s", "lat typ", "lat p99", "CPU", "CPU/msg");
  std::printf("%-4s %-26s %8s %7s %6s %10s %8s %10s %10s %6s %9s\n", "", "", "", "", "", "", "", "us", "us", "%", "us");
  std::fflush(stdout);
}

void print_row(const Result& r) {
  const Technique& t = r.technique;
  std::printf("%-4d %-26s %8u %7u %6u %10.2f %8.4f %10.2f %10.2f %6.0f %9.2f\n", t.step, t.name.c_str(), t.spec.size,
              t.spec.iters, t.spec.window, r.mib_per_s, r.mmsg_per_s, r.lat_typical_us, r.lat_p99_us, r.cpu_percent,
              r.cpu_us_per_msg);
  std::fflush(stdout);
}

CsvFile::CsvFile(const std::string& path) {
  if (path.empty()) return;
  file_ = std::fopen(path.c_str(), "w");
  if (!file_) common::fail("cannot write --csv " + path + ": " + common::errno_text(errno), "choose a writable path");
  std::fprintf(file_, "%s\n", kCsvHeader);
  std::fflush(file_);
}

CsvFile::~CsvFile() {
  if (file_) std::fclose(file_);
}

void CsvFile::write(const Result& r) {
  if (!file_) return;
  const Technique& t = r.technique;
  std::fprintf(file_, "%d,%s,%s,%s,%s,%u,%u,%u,%u,%u,%d,%s,%.6f,%.3f,%.6f,%.3f,%.3f,%.3f,%.1f\n", t.step,
               t.name.c_str(), t.kind, op_name(t.spec.op),
               t.spec.pattern == common::TestPattern::ping_pong ? "pingpong" : "stream", t.spec.size, t.spec.iters,
               t.spec.window, t.signal_every, t.chain, t.spec.use_inline ? 1 : 0, t.spec.use_event ? "event" : "busy",
               r.seconds, r.mib_per_s, r.mmsg_per_s, r.lat_typical_us, r.lat_p99_us, r.cpu_us_per_msg, r.cpu_percent);
  std::fflush(file_);
}

}  // namespace lesson06
