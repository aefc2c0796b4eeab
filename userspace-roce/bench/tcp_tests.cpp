// roce_bench --transport tcp: the same two shapes over the control socket itself.
#include "tcp_tests.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <string>
#include <vector>

#include "pattern.hpp"
#include "results.hpp"

namespace roce_bench {

void tcp_write_bw_client(const Params& p, Socket& sock) {
  const std::uint32_t seed = random_seed();
  std::vector<std::uint8_t> slots(slot_bytes(p));
  for (std::uint32_t s = 0; s < p.depth; ++s) fill_slot(slots.data() + std::size_t{s} * p.size, p.size, seed, s);
  const auto run = [&](std::uint64_t first, std::uint64_t end) {
    for (std::uint64_t i = first; i < end; ++i) {
      std::uint8_t* slot = slots.data() + (i % p.depth) * p.size;
      stamp(slot, p.size, i);
      sock.send_all(slot, p.size, "data");
    }
  };
  run(0, p.warmup);
  if (p.warmup > 0) sock.expect_msg(Msg::ack);  // the warmup bytes have all arrived
  const auto t0 = Clock::now();
  run(p.warmup, p.total());
  sock.expect_msg(Msg::ack);
  const auto t1 = Clock::now();
  sock.send_msg(Msg::check, encode_check(CheckRequest{seed, p.total(), p.depth, p.size}));
  sock.expect_msg(Msg::verdict);
  done_barrier(sock);
  print_bw(p, seconds_between(t0, t1), 0);
}

void tcp_write_bw_server(const Params& p, Socket& sock) {
  std::vector<std::uint8_t> chunk(p.size);
  const auto run = [&](std::uint64_t first, std::uint64_t end) {
    for (std::uint64_t i = first; i < end; ++i) {
      sock.recv_all(chunk.data(), p.size, "data");
      // Every chunk: its stamps (first and last 8 bytes = its index). The last one: all bytes.
      std::uint8_t want[8];
      for (int b = 0; b < 8; ++b) want[b] = static_cast<std::uint8_t>(i >> (8 * (7 - b)));
      const std::size_t n = std::min<std::size_t>(8, p.size);
      if (std::memcmp(chunk.data(), want, n) != 0 || (p.size >= 16 && std::memcmp(chunk.data() + p.size - 8, want, 8) != 0))
        fail("chunk " + std::to_string(i) + " does not carry its own index", "the byte stream lost or reordered data");
    }
  };
  run(0, p.warmup);
  if (p.warmup > 0) sock.send_msg(Msg::ack);
  run(p.warmup, p.total());
  sock.send_msg(Msg::ack);
  const auto body = sock.expect_msg(Msg::check);
  CheckRequest c = decode_check(body.data(), body.size());
  if (c.total != p.total() || c.depth != p.depth || c.size != p.size)
    fail("the check request does not match the HELLO", "both sides must run the same roce_bench build");
  std::vector<std::uint8_t> scratch;
  const std::uint64_t last = c.total - 1;
  if (const std::string diff = check_slot(chunk.data(), c.size, c.seed, static_cast<std::uint32_t>(last % c.depth), last, 0, scratch);
      !diff.empty())
    fail("TCP data check failed: " + diff, "the byte stream delivered wrong data");
  sock.send_msg(Msg::verdict);
  say("received and checked %" PRIu64 " chunks of %u bytes", c.total, c.size);
  done_barrier(sock);
}

void tcp_pingpong_client(const Params& p, Socket& sock) {
  const std::uint32_t seed = random_seed();
  std::vector<std::uint8_t> msg(p.size), echo(p.size);
  fill_slot(msg.data(), p.size, seed, 0);
  std::vector<std::uint64_t> samples(p.iters);
  for (std::uint64_t i = 0; i < p.total(); ++i) {
    stamp(msg.data(), p.size, i);
    const auto t0 = Clock::now();
    sock.send_all(msg.data(), p.size, "message");
    sock.recv_all(echo.data(), p.size, "echo");
    const auto t1 = Clock::now();
    if (echo != msg) fail("the echo of message " + std::to_string(i) + " differs from what was sent", "the byte stream delivered wrong data");
    if (i >= p.warmup) samples[i - p.warmup] = ns_between(t0, t1) / 2;
  }
  done_barrier(sock);
  print_latency(p, samples, 0);
}

void tcp_pingpong_server(const Params& p, Socket& sock) {
  std::vector<std::uint8_t> msg(p.size);
  for (std::uint64_t i = 0; i < p.total(); ++i) {
    sock.recv_all(msg.data(), p.size, "message");
    sock.send_all(msg.data(), p.size, "echo");
  }
  say("echoed %" PRIu64 " messages of %u bytes", p.total(), p.size);
  done_barrier(sock);
}

}  // namespace roce_bench
