// What the runtime's API check programs (verbs_api_check.cpp, rdmacm_api_check.cpp) print:
// one "PASS name" or "FAIL name: what was seen, what was expected" line per check, counted
// for the tally at the end, which also gives the program's exit status.
#pragma once

#include <cstdio>
#include <cstring>
#include <string>

namespace api_check {

inline int g_failed = 0;
inline int g_passed = 0;

inline void pass(const std::string& name) {
  ++g_passed;
  std::printf("PASS %s\n", name.c_str());
  std::fflush(stdout);
}
inline void fail(const std::string& name, const std::string& why) {
  ++g_failed;
  std::printf("FAIL %s: %s\n", name.c_str(), why.c_str());
  std::fflush(stdout);
}
/// PASS if `ok`, else FAIL with `why`; returns `ok`.
inline bool check(bool ok, const std::string& name, const std::string& why) {
  if (ok)
    pass(name);
  else
    fail(name, why);
  return ok;
}
/// "22 (Invalid argument)".
inline std::string errno_text(int e) {
  return std::to_string(e) + " (" + std::strerror(e) + ")";
}
/// "N passed, M failed"; the exit status: 1 if any check failed.
inline int tally() {
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  std::fflush(stdout);
  return g_failed ? 1 : 0;
}

}  // namespace api_check
