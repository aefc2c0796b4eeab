// The narrated log (see log.hpp for the format and the meaning of the tags).
#include "common/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace common {
namespace {

std::atomic<Verbosity> g_verbosity{Verbosity::normal};
std::atomic<unsigned> g_sequence{0};
std::mutex g_write_mutex;  // one line at a time, even from several threads

const char* tag_name(Tag tag) {
  switch (tag) {
    case Tag::slow: return "SLOW ";
    case Tag::fast: return "FAST ";
    case Tag::data: return "DATA ";
    case Tag::info: return "INFO ";
    case Tag::warn: return "WARN ";
    case Tag::error: return "ERROR";
  }
  return "?    ";
}

bool shown(Tag tag, bool detail) {
  const Verbosity v = g_verbosity.load();
  if (tag == Tag::warn || tag == Tag::error) return true;
  if (v == Verbosity::quiet) return false;
  return !detail || v == Verbosity::verbose;
}

void write_line(Tag tag, const char* function, const char* fmt, va_list args) {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  const std::time_t secs = system_clock::to_time_t(now);
  std::tm local{};
  localtime_r(&secs, &local);

  std::FILE* out = (tag == Tag::warn || tag == Tag::error) ? stderr : stdout;
  const std::lock_guard<std::mutex> lock(g_write_mutex);
  std::fprintf(out, "[%02d:%02d:%02d.%03lld #%04u %s] %s ", local.tm_hour, local.tm_min,
               local.tm_sec, static_cast<long long>(ms), ++g_sequence, function, tag_name(tag));
  std::vfprintf(out, fmt, args);
  std::fputc('\n', out);
  std::fflush(out);
}

}  // namespace

void set_verbosity(Verbosity v) { g_verbosity.store(v); }

void write_whole_line(std::FILE* out, const std::string& text) {
  const std::lock_guard<std::mutex> lock(g_write_mutex);
  std::fputs(text.c_str(), out);
  std::fputc('\n', out);
  std::fflush(out);
}

Verbosity verbosity() { return g_verbosity.load(); }

void vlog_line(Tag tag, const char* function, const char* fmt, va_list args) {
  if (shown(tag, false)) write_line(tag, function, fmt, args);
}

void log_line(Tag tag, const char* function, const char* fmt, ...) {
  if (!shown(tag, false)) return;
  va_list args;
  va_start(args, fmt);
  write_line(tag, function, fmt, args);
  va_end(args);
}

void log_detail(Tag tag, const char* function, const char* fmt, ...) {
  if (!shown(tag, true)) return;
  va_list args;
  va_start(args, fmt);
  write_line(tag, function, fmt, args);
  va_end(args);
}

std::string printable(const char* data, std::size_t length, std::size_t max) {
  std::string out;
  std::size_t i = 0;
  for (; i < length && i < max && data[i] != '\0'; ++i)
    out += (data[i] >= 0x20 && data[i] < 0x7f) ? data[i] : '.';
  if (i == max && i < length) out += "...";
  return out;
}

}  // namespace common
