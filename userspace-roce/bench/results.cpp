// roce_bench: the RESULT lines of write_bw and pingpong.
#include "results.hpp"

#include <algorithm>
#include <cstdio>
#include <string>

namespace roce_bench {

void print_bw(const Params& p, double seconds, std::uint32_t mtu) {
  const double bytes = static_cast<double>(p.size) * p.iters;
  std::string extra;
  if (p.transport == Transport::verbs)
    extra = " depth=" + std::to_string(p.depth) + " mtu=" + std::to_string(mtu);
  std::printf("RESULT transport=%s test=write_bw size=%u iters=%u%s seconds=%.4f gbytes_per_s=%.3f\n",
              transport_name(p.transport), p.size, p.iters, extra.c_str(), seconds, bytes / seconds / 1e9);
  std::fflush(stdout);
}

/// @p half_rtt_ns: one sample (round trip / 2) per measured iteration.
void print_latency(const Params& p, std::vector<std::uint64_t>& half_rtt_ns, std::uint32_t mtu) {
  std::sort(half_rtt_ns.begin(), half_rtt_ns.end());
  const std::size_t n = half_rtt_ns.size();
  const double median = n % 2 ? static_cast<double>(half_rtt_ns[n / 2])
                              : (static_cast<double>(half_rtt_ns[n / 2 - 1]) + static_cast<double>(half_rtt_ns[n / 2])) / 2;
  // p99 by nearest rank: the smallest sample with at least 99% of samples at or below it.
  const std::size_t rank = std::max<std::size_t>(1, (n * 99 + 99) / 100);
  const double p99 = static_cast<double>(half_rtt_ns[rank - 1]);
  double sum = 0;
  for (const auto v : half_rtt_ns) sum += static_cast<double>(v);
  std::string extra;
  if (p.transport == Transport::verbs)
    extra = " mtu=" + std::to_string(mtu) + " inline=" + (p.use_inline ? "1" : "0");
  std::printf("RESULT transport=%s test=pingpong size=%u iters=%u%s median_us=%.2f p99_us=%.2f "
              "min_us=%.2f mean_us=%.2f\n",
              transport_name(p.transport), p.size, p.iters, extra.c_str(), median / 1e3, p99 / 1e3,
              static_cast<double>(half_rtt_ns.front()) / 1e3, sum / static_cast<double>(n) / 1e3);
  std::fflush(stdout);
}

}  // namespace roce_bench
