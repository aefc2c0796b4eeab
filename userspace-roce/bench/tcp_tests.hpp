/**
 * @file userspace-roce/bench/tcp_tests.hpp
 * @brief roce_bench --transport tcp, the reference: write_bw's 64 KiB chunks and
 *        pingpong's round trips over the control socket itself (TCP loopback).
 */
#pragma once

#include "control.hpp"
#include "params.hpp"

namespace roce_bench {

void tcp_write_bw_client(const Params& p, Socket& sock);
void tcp_write_bw_server(const Params& p, Socket& sock);
void tcp_pingpong_client(const Params& p, Socket& sock);
void tcp_pingpong_server(const Params& p, Socket& sock);

}  // namespace roce_bench
