#include "common/errors.hpp"

#include <cerrno>
#include <cstring>

#include "common/log.hpp"

namespace common {

Error::Error(std::string what_failed, std::string remedy, int err)
    : std::runtime_error(std::move(what_failed)), remedy_(std::move(remedy)), err_(err) {}

void fail(std::string what_failed, std::string remedy) {
  throw Error(std::move(what_failed), std::move(remedy));
}

std::string errno_text(int err) {
  const char* name = strerrorname_np(err);
  return std::string(name != nullptr ? name : "errno " + std::to_string(err)) + " (" +
         std::strerror(err) + ")";
}

void check_rc(int rc, const char* call, const std::string& remedy, bool negative_only) {
  if (rc == 0 || (negative_only && rc > 0)) return;
  // ibv_modify_qp and friends return the errno value; POSIX-style calls return -1.
  const int err = rc > 0 ? rc : (errno != 0 ? errno : EIO);
  throw Error(std::string(call) + " failed: " + errno_text(err), remedy, err);
}

int run_main(const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    LOG(error, "%s", e.what());
    if (!e.remedy().empty()) LOG(error, "remedy: %s", e.remedy().c_str());
  } catch (const std::exception& e) {
    LOG(error, "%s", e.what());
  }
  return 1;
}

}  // namespace common

// Declared in verbs_owners.hpp: the deleters cannot throw, so they warn.
#include "common/verbs_owners.hpp"

namespace common {

void warn_destroy_failed(const char* call, int rc) {
  const int err = rc > 0 ? rc : errno;
  LOG(warn, "%s failed: %s: an object created from it still exists; destroy in reverse "
            "order of creation (see common/verbs_owners.hpp)", call, errno_text(err).c_str());
}

}  // namespace common
