// The shared option parser: perftest-style names, defaults, usage errors exit 2.
#include <gtest/gtest.h>

#include "common/log.hpp"
#include "common/net.hpp"
#include "common/options.hpp"

#include <climits>
#include <cmath>

namespace {

// Parse `args` with the shared options; returns the exit code or -1 to go on.
int parse(std::vector<std::string> args, common::Options& opts) {
  CLI::App app{"test", "prog"};
  common::add_common_options(app, opts);
  std::vector<char*> argv;
  static std::string prog = "prog";
  argv.push_back(prog.data());
  for (auto& a : args) argv.push_back(a.data());
  const auto code = common::parse_options(app, opts, static_cast<int>(argv.size()), argv.data());
  return code ? *code : -1;
}

}  // namespace

TEST(Options, RcPingpongStyleNamesAreAccepted) {
  common::Options o;
  EXPECT_EQ(parse({"-d", "rxe0", "-i", "1", "-g", "1", "-p", "9999", "-s", "8192", "-n", "3", "-t", "2.5"}, o), -1);
  EXPECT_EQ(o.ib_dev, "rxe0");
  EXPECT_EQ(o.gid_idx, 1);
  EXPECT_EQ(o.port, 9999);
  EXPECT_EQ(o.size, 8192u);
  EXPECT_EQ(o.iters, 3u);
  EXPECT_DOUBLE_EQ(o.timeout_s, 2.5);
  common::Options l;
  EXPECT_EQ(parse({"--ib-dev=rxe1", "--gid-idx", "3", "--size", "1", "--iters", "7", "--verbose"}, l), -1);
  EXPECT_EQ(l.ib_dev, "rxe1");
  EXPECT_TRUE(l.verbose);
  EXPECT_EQ(common::verbosity(), common::Verbosity::verbose);
  common::set_verbosity(common::Verbosity::normal);
}

TEST(Options, DefaultsChooseTheGidAutomatically) {
  common::Options o;
  EXPECT_EQ(parse({}, o), -1);
  EXPECT_EQ(o.gid_idx, -1);
  EXPECT_EQ(o.ib_port, 1);
  EXPECT_DOUBLE_EQ(o.timeout_s, 5.0);
}

TEST(Options, UsageErrorsExit2) {
  common::Options o;
  EXPECT_EQ(parse({"--no-such-flag"}, o), 2);
  EXPECT_EQ(parse({"-s", "0"}, o), 2);         // a message needs at least one byte
  EXPECT_EQ(parse({"-p", "70000"}, o), 2);     // not a TCP port
  EXPECT_EQ(parse({"-n", "many"}, o), 2);
  EXPECT_EQ(parse({"-g", "256"}, o), 2);       // sgid_index is 8 bits
  EXPECT_EQ(parse({"-v", "-q"}, o), 2);
}

TEST(Options, HelpExits0) {
  common::Options o;
  testing::internal::CaptureStdout();
  EXPECT_EQ(parse({"--help"}, o), 0);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("--ib-dev"), std::string::npos);
  EXPECT_NE(out.find("--gid-idx"), std::string::npos);
}

// NaN compares false with every bound, so a plain range check would let `-t nan` through
// and make every deadline undefined; seconds_between refuses it, and infinities, by name.
TEST(Options, TimeoutsAreFiniteSecondsInRange) {
  for (const char* bad : {"nan", "NaN", "inf", "-inf", "1e999", "abc", "", "0.05", "3601", "-1"}) {
    common::Options o;
    testing::internal::CaptureStderr();
    EXPECT_EQ(parse({"-t", bad}, o), 2) << "-t '" << bad << "' was accepted";
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("--timeout: '" + std::string(bad) + "'"), std::string::npos) << err;
    EXPECT_NE(err.find("0.1 to 3600"), std::string::npos) << err;
  }
  for (const char* good : {"0.1", "2.5", "3600", "1e1"}) {
    common::Options o;
    EXPECT_EQ(parse({"-t", good}, o), -1) << "-t '" << good << "' was refused";
    EXPECT_DOUBLE_EQ(o.timeout_s, std::stod(good));
  }
}

TEST(Options, SizeAtLeastNamesTheValueAndTheReason) {
  common::Options o;
  CLI::App app{"test", "prog"};
  common::add_common_options(app, o);
  app.get_option("--size")->check(common::size_at_least(16, "the acknowledgement must fit"));
  std::string prog = "prog", flag = "-s", value = "15";
  char* argv[] = {prog.data(), flag.data(), value.data()};
  testing::internal::CaptureStderr();
  EXPECT_EQ(common::parse_options(app, o, 3, argv).value_or(-1), 2);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("-s 15 is too small: the acknowledgement must fit; give -s 16 or more"), std::string::npos) << err;
  value = "16";
  EXPECT_FALSE(common::parse_options(app, o, 3, argv).has_value());
  EXPECT_EQ(o.size, 16u);
}

// The last line of defence behind the option checks: a deadline from NaN, a negative or
// a huge number of seconds is well defined (now, now, a year away) and poll()'s int
// milliseconds never overflow.
TEST(Options, DeadlinesFromAbsurdSecondsAreDefined) {
  using common::net::deadline_after;
  using common::net::ms_left;
  EXPECT_EQ(ms_left(deadline_after(std::nan(""))), 0);
  EXPECT_EQ(ms_left(deadline_after(-5)), 0);
  EXPECT_EQ(ms_left(deadline_after(1e300)), INT_MAX);
  EXPECT_EQ(ms_left(deadline_after(HUGE_VAL)), INT_MAX);
  EXPECT_LE(ms_left(deadline_after(2.0)), 2000);
}
