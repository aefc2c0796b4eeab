/**
 * @file errors.hpp
 * @brief One way to fail: name the call, the value seen, and what to do next.
 *
 * Verbs calls report errors in four different styles, and beginners mix them up:
 *  - calls that return a pointer (ibv_alloc_pd, ibv_create_qp ...) return NULL and set errno;
 *  - ibv_modify_qp, ibv_post_send, ibv_post_recv, ibv_query_port, ibv_query_qp and
 *    ibv_query_device return the errno value itself (a positive number) and may leave
 *    errno untouched;
 *  - librdmacm and POSIX calls return -1 and set errno;
 *  - a few verbs calls (ibv_query_gid, ibv_query_pkey) return -1 and may leave errno
 *    unset (ibv_query_gid_ex returns the errno value and says more).
 *
 * check_rc() and check_ptr() cover all four, so the message carries the error text (for
 * the last style, whatever errno holds, or EIO if it holds nothing). A failed completion (struct ibv_wc with status != IBV_WC_SUCCESS) is
 * reported by completion.hpp, which adds ibv_wc_status_str() and a status-specific remedy.
 */
#pragma once

#include <functional>
#include <stdexcept>
#include <string>

namespace common {

/// The exception every helper throws: what failed (with values) plus the remedy.
class Error : public std::runtime_error {
 public:
  /// @param what_failed the call or check that failed, with the values seen
  /// @param remedy      what the user can do about it (may be empty)
  /// @param err         the errno value of the failed call (check_rc), 0 for other checks
  Error(std::string what_failed, std::string remedy, int err = 0);
  /// What the user can do about it.
  const std::string& remedy() const { return remedy_; }
  /// The errno value of the call that failed (EINVAL ...), or 0 when no call failed.
  int error_number() const { return err_; }

 private:
  std::string remedy_;
  int err_ = 0;
};

/// Throw common::Error. Use for checks that are not a single library call.
[[noreturn]] void fail(std::string what_failed, std::string remedy);

/// "EINVAL (Invalid argument)" for errno value @p err.
std::string errno_text(int err);

/**
 * Check an int-returning verbs/CM/POSIX call. 0 (or any non-negative value when
 * @p negative_only) is success. A positive return is taken as the errno value itself
 * (ibv_modify_qp style); -1 means "look at errno" (POSIX style).
 * @throws Error naming @p call, the errno text and @p remedy; Error::error_number() is
 *         the errno value.
 */
void check_rc(int rc, const char* call, const std::string& remedy, bool negative_only = false);

/// Check a pointer-returning call: NULL means failure, errno says why.
template <class T>
T* check_ptr(T* p, const char* call, const std::string& remedy) {
  if (p == nullptr) check_rc(-1, call, remedy);
  return p;
}

/**
 * Run a program's body and turn failures into exit codes: 0 success, 1 any
 * common::Error or other exception (logged as one ERROR line with the remedy on the
 * next line). Usage errors exit 2 before this is reached (see options.hpp).
 */
int run_main(const std::function<int()>& body);

}  // namespace common
