#include "common/options.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "common/log.hpp"

namespace common {

CLI::Validator seconds_between(double lo, double hi) {
  char bounds[64];
  std::snprintf(bounds, sizeof bounds, "%g to %g", lo, hi);
  const std::string range = bounds;
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || end == text.c_str() || *end != '\0' || !std::isfinite(v))
          return "'" + text + "' is not a number of seconds; give one from " + range;
        if (v < lo || v > hi) return "'" + text + "' seconds is out of range; give " + range;
        return "";
      },
      "SECONDS in [" + range + "]");
}

CLI::Validator size_at_least(std::uint32_t min, const std::string& why) {
  return CLI::Validator(
      [min, why](std::string& text) -> std::string {
        // Read as CLI11 reads the option itself (0x10 is 16); a text that is not a number
        // is left to that conversion's own message.
        std::uint32_t v = 0;
        if (!CLI::detail::lexical_cast(text, v) || v >= min) return "";
        return "-s " + text + " is too small: " + why + "; give -s " + std::to_string(min) + " or more";
      },
      "BYTES >= " + std::to_string(min));
}

void add_common_options(CLI::App& app, Options& opts) {
  app.add_option("-d,--ib-dev", opts.ib_dev, "RDMA device, e.g. rxe0 (default: the first one)");
  app.add_option("-i,--ib-port", opts.ib_port, "port of the RDMA device")
      ->check(CLI::Range(1, 255))->capture_default_str();
  app.add_option("-g,--gid-idx", opts.gid_idx,
                 "GID index (default: the RoCE v2 GID carrying an IPv4 address; on rxe that is 1)")
      ->check(CLI::Range(0, 255));
  app.add_option("-p,--port", opts.port, "TCP port of the control connection")
      ->check(CLI::Range(1, 65535))->capture_default_str();
  app.add_option("-s,--size", opts.size, "message size in bytes")
      ->check(CLI::Range(1u, 64u << 20))->capture_default_str();
  app.add_option("-n,--iters", opts.iters, "number of messages")
      ->check(CLI::Range(1u, 1000000u))->capture_default_str();
  app.add_option("-t,--timeout", opts.timeout_s,
                 "seconds any wait for the peer or for a completion may take")
      ->check(seconds_between(0.1, 3600.0))->capture_default_str();
  app.add_flag("-v,--verbose", opts.verbose, "also dump every work request, SGE and completion");
  app.add_flag("-q,--quiet", opts.quiet, "print only warnings, errors and the result");
}

std::optional<int> parse_options(CLI::App& app, Options& opts, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << app.get_name() << ": " << e.what() << "\n\n" << app.help();
    return 2;
  }
  if (opts.verbose && opts.quiet) {
    std::cerr << app.get_name() << ": -v and -q contradict each other; pick one\n\n" << app.help();
    return 2;
  }
  set_verbosity(opts.verbose ? Verbosity::verbose
                             : opts.quiet ? Verbosity::quiet : Verbosity::normal);
  return std::nullopt;
}

}  // namespace common
