/**
 * @file options.hpp
 * @brief One option parser for every lesson, with the names rc_pingpong and perftest use.
 *
 * A learner who has typed `ibv_rc_pingpong -d rxe0 -g 1` already knows these flags:
 * `-d/--ib-dev`, `-i/--ib-port`, `-g/--gid-idx`, `-p/--port`, `-s/--size`, `-n/--iters`,
 * `-v/--verbose`. Lessons add their own options to the same CLI::App (CLI11, a well-kept
 * header-only parser packaged by Debian) before calling parse_options().
 */
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>

namespace common {

/// The options every lesson shares. A lesson sets its own defaults before parsing.
struct Options {
  std::string ib_dev;        ///< -d: RDMA device name (rxe0); empty = the first device
  int ib_port = 1;           ///< -i: port of that device; RDMA ports count from 1
  int gid_idx = -1;          ///< -g: GID table index; -1 = choose the RoCE v2 IPv4 GID
  std::uint16_t port = 0;    ///< -p: TCP (or RDMA CM) port of the control connection
  std::uint32_t size = 64;   ///< -s: message size in bytes
  std::uint32_t iters = 10;  ///< -n: number of messages
  double timeout_s = 5.0;    ///< -t: how long any wait for the peer or a completion may take
  bool verbose = false;      ///< -v: also dump every WR, SGE and WC
  bool quiet = false;        ///< -q: only warnings and errors
};

/// Add the shared options to @p app, bound to @p opts (whose values are the defaults).
void add_common_options(CLI::App& app, Options& opts);

/**
 * The check for every option that is a number of seconds: a finite number from @p lo to
 * @p hi. CLI::Range alone is not enough: it compares, and every comparison with NaN is
 * false, so `-t nan` would pass it, and turning NaN seconds into the clock's integer
 * count is undefined behaviour (on x86-64 every deadline then passes at once).
 */
CLI::Validator seconds_between(double lo, double hi);

/**
 * A lesson's extra check on -s: at least @p min bytes, because @p why (a clause for the
 * message: "the acknowledgement ... must fit"). add_common_options() allows 1 and up.
 */
CLI::Validator size_at_least(std::uint32_t min, const std::string& why);

/**
 * Parse the command line and apply -v/-q to the log.
 * @return std::nullopt to go on, or the exit code to return from main():
 *         0 after --help, 2 after a usage error (the message and the usage text are
 *         printed on stderr).
 */
std::optional<int> parse_options(CLI::App& app, Options& opts, int argc, char** argv);

}  // namespace common
