/**
 * @file userspace-roce/bench/errors.hpp
 * @brief roce_bench: failing with the value seen and the remedy, logging to stderr, and
 *        the clock, for every part of the program.
 */
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace roce_bench {

/// The one exception: what failed (with values) and what to do about it.
class Error : public std::runtime_error {
 public:
  Error(const std::string& what_failed, std::string remedy)
      : std::runtime_error(what_failed), remedy_(std::move(remedy)) {}
  const std::string& remedy() const { return remedy_; }

 private:
  std::string remedy_;
};

/// Throw the Error: @p what_failed (with the values seen) and the @p remedy.
[[noreturn]] void fail(const std::string& what_failed, const std::string& remedy);

/// "ENOENT (No such file or directory)".
std::string errno_text(int err);

/// Verbs calls returning an int give the errno value itself; POSIX calls give -1 + errno.
void check_rc(int rc, const std::string& call, const std::string& remedy);

template <class T>
T* check_ptr(T* p, const std::string& call, const std::string& remedy) {
  if (p == nullptr) check_rc(-1, call, remedy);
  return p;
}

/// The prefix of every stderr line ("roce_bench server", "roce_bench client").
extern const char* g_role;
/// -v: DETAIL lines are printed too.
extern bool g_verbose;

/// One line on stderr: "<g_role>: <text>".
__attribute__((format(printf, 1, 2))) void say(const char* fmt, ...);
#define DETAIL(...) \
  do {              \
    if (g_verbose) say(__VA_ARGS__); \
  } while (0)

/// @p v with @p decimals digits after the point.
std::string fmt_double(double v, int decimals);
/// @p v as 8 hex digits.
std::string hex32(std::uint32_t v);

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b);
std::uint64_t ns_between(Clock::time_point a, Clock::time_point b);

}  // namespace roce_bench
