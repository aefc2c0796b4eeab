#include "cases.hpp"

#include "common/errors.hpp"

namespace lesson07 {

const std::vector<Case>& all_cases() {
  static const std::vector<Case> cases = [] {
    std::vector<Case> all;
    for (auto part : {connect_cases, receiver_cases, memory_cases, queue_cases, lossy_link_cases})
      for (Case& c : part()) all.push_back(c);
    return all;
  }();
  return cases;
}

std::string case_names() {
  std::string names;
  for (const Case& c : all_cases()) names += (names.empty() ? "" : ", ") + std::string(c.name);
  return names;
}

const Case& find_case(const std::string& name) {
  for (const Case& c : all_cases())
    if (name == c.name) return c;
  common::fail("no case named '" + name + "'", "name one of: " + case_names() + " (client --list says what each does)");
}

}  // namespace lesson07
