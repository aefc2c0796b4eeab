/**
 * @file userspace-roce/bench/verbs_tests.hpp
 * @brief roce_bench over verbs: write_bw (RDMA WRITE bandwidth, the target's contents
 *        checked at the end) and pingpong (SEND/RECV latency, every echo compared).
 */
#pragma once

#include <cstddef>
#include <cstdint>

#include "control.hpp"
#include "endpoint.hpp"
#include "messages.hpp"
#include "params.hpp"

namespace roce_bench {

/// pingpong: both sides' buffers are [kPingRing send slots][kPingRing recv slots], `size` each.
std::uint8_t* send_slot(Endpoint& ep, const Params& p, std::uint64_t i);
std::uint8_t* recv_slot(Endpoint& ep, const Params& p, std::uint64_t s);

void verbs_write_bw_client(const Params& p, Socket& ctrl, Endpoint& ep, const QpInfo& remote);
void verbs_write_bw_server(const Params& p, Socket& ctrl, Endpoint& ep);
void verbs_pingpong_client(const Params& p, Socket& ctrl, Endpoint& ep);
void verbs_pingpong_server(const Params& p, Socket& ctrl, Endpoint& ep);

}  // namespace roce_bench
