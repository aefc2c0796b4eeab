// Shared by the unit tests: EXPECT that a call throws common::Error with a given text.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/errors.hpp"

/// EXPECT that calling @p f throws common::Error whose message contains @p needle and
/// which carries a remedy.
template <class F>
void expect_error_containing(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error thrown; expected one containing '" << needle << "'";
  } catch (const common::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_FALSE(e.remedy().empty());
  }
}
