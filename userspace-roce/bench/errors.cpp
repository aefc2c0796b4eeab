// roce_bench: failing with the value seen and the remedy; logging to stderr.
#include "errors.hpp"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace roce_bench {

[[noreturn]] void fail(const std::string& what_failed, const std::string& remedy) {
  throw Error(what_failed, remedy);
}

std::string errno_text(int err) {
  const char* name = strerrorname_np(err);
  return std::string(name != nullptr ? name : "errno " + std::to_string(err)) + " (" +
         std::strerror(err) + ")";
}

/// Verbs calls returning an int give the errno value itself; POSIX calls give -1 + errno.
void check_rc(int rc, const std::string& call, const std::string& remedy) {
  if (rc == 0) return;
  const int err = rc > 0 ? rc : (errno != 0 ? errno : EIO);
  fail(call + " failed: " + errno_text(err), remedy);
}

const char* g_role = "roce_bench";
bool g_verbose = false;

__attribute__((format(printf, 1, 2))) void say(const char* fmt, ...) {
  std::fprintf(stderr, "%s: ", g_role);
  va_list args;
  va_start(args, fmt);
  std::vfprintf(stderr, fmt, args);
  va_end(args);
  std::fputc('\n', stderr);
}

std::string fmt_double(double v, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, v);
  return text;
}

std::string hex32(std::uint32_t v) {
  char t[16];
  std::snprintf(t, sizeof t, "%08x", v);
  return t;
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::uint64_t ns_between(Clock::time_point a, Clock::time_point b) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
}

}  // namespace roce_bench
