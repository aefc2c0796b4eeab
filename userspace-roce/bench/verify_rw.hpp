/**
 * @file userspace-roce/bench/verify_rw.hpp
 * @brief roce_bench --test verify_rw (verbs only): a bulk RDMA WRITE of iters x size
 *        bytes, read back with RDMA READ and checked byte for byte on both sides; meant to
 *        run under injected packet loss.
 */
#pragma once

#include <cstddef>
#include <cstdint>

#include "control.hpp"
#include "endpoint.hpp"
#include "messages.hpp"
#include "params.hpp"

namespace roce_bench {

constexpr std::size_t kCheckArea = 64;           // >= kCheckBytes, keeps what follows aligned

/// The bytes the run moves: iters x size.
std::uint64_t verify_bytes(const Params& p);
/// READs in flight: min(depth, kMaxReadsInFlight).
std::uint8_t verify_reads(const Params& p);

void verbs_verify_rw_client(const Params& p, Socket& ctrl, Endpoint& ep, const QpInfo& remote);
void verbs_verify_rw_server(const Params& p, Socket& ctrl, Endpoint& ep);

}  // namespace roce_bench
