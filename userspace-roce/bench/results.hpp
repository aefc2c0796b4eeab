/**
 * @file userspace-roce/bench/results.hpp
 * @brief roce_bench: the RESULT line on stdout, the one line a run reports (gbytes_per_s
 *        is 10^9 bytes per second).
 */
#pragma once

#include <cstdint>
#include <vector>

#include "params.hpp"

namespace roce_bench {

/// "RESULT transport=... test=write_bw ... seconds=... gbytes_per_s=...".
void print_bw(const Params& p, double seconds, std::uint32_t mtu);

/// "RESULT transport=... test=pingpong ... median_us=... p99_us=... min_us=... mean_us=...".
/// @p half_rtt_ns: one sample (round trip / 2) per measured iteration.
void print_latency(const Params& p, std::vector<std::uint64_t>& half_rtt_ns, std::uint32_t mtu);

}  // namespace roce_bench
