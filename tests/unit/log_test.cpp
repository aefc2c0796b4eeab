// The narrated log format: [HH:MM:SS.mmm #NNNN function] TAG  message
#include <gtest/gtest.h>

#include <regex>

#include "common/log.hpp"

TEST(Log, LineHasTimestampSequenceFunctionAndTag) {
  common::set_verbosity(common::Verbosity::normal);
  testing::internal::CaptureStdout();
  LOG(data, "post SEND len=%d", 18);
  LOG(slow, "step %d: open", 2);
  const std::string out = testing::internal::GetCapturedStdout();
  const std::regex line(
      R"(\[\d\d:\d\d:\d\d\.\d\d\d #(\d{4}) TestBody\] DATA  post SEND len=18\n)"
      R"(\[\d\d:\d\d:\d\d\.\d\d\d #(\d{4}) TestBody\] SLOW  step 2: open\n)");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(out, m, line)) << out;
  EXPECT_EQ(std::stoi(m[2]), std::stoi(m[1]) + 1);  // sequence numbers count up
}

TEST(Log, QuietShowsOnlyWarningsAndVerboseShowsDetail) {
  common::set_verbosity(common::Verbosity::quiet);
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  LOG(slow, "hidden");
  LOG(warn, "shown");
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "");
  EXPECT_NE(testing::internal::GetCapturedStderr().find("WARN  shown"), std::string::npos);

  common::set_verbosity(common::Verbosity::normal);
  testing::internal::CaptureStdout();
  LOG_DETAIL(info, "detail hidden");
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "");
  common::set_verbosity(common::Verbosity::verbose);
  testing::internal::CaptureStdout();
  LOG_DETAIL(info, "detail shown");
  EXPECT_NE(testing::internal::GetCapturedStdout().find("INFO  detail shown"), std::string::npos);
  common::set_verbosity(common::Verbosity::normal);
}
