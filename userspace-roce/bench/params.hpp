/**
 * @file userspace-roce/bench/params.hpp
 * @brief roce_bench: the run's parameters (the client decides them, the server follows),
 *        their defaults per test and their upper bounds.
 */
#pragma once

#include <cstdint>
#include <string>

namespace roce_bench {

enum class Transport : std::uint8_t { verbs = 1, tcp = 2 };
enum class Test : std::uint8_t { write_bw = 1, pingpong = 2, verify_rw = 3 };
enum class PollMode { spin, yield };

inline const char* transport_name(Transport t) { return t == Transport::verbs ? "verbs" : "tcp"; }
inline const char* test_name(Test t) {
  switch (t) {
    case Test::write_bw: return "write_bw";
    case Test::pingpong: return "pingpong";
    case Test::verify_rw: return "verify_rw";
  }
  return "?";
}

/// Upper bounds, so a typo cannot ask for a terabyte.
constexpr std::uint32_t kMaxSize = 64u << 20;
constexpr std::uint64_t kMaxSlotBytes = 1ull << 30;
constexpr std::uint32_t kMaxIters = 10'000'000;
constexpr std::uint32_t kMaxDepth = 1024;
/// Ping-pong: SENDs that may wait for their ACK, and RECVs kept posted, per side.
constexpr std::uint32_t kPingRing = 16;
constexpr std::uint16_t kDefaultPort = 18600;

struct Params {
  Transport transport = Transport::verbs;
  Test test = Test::write_bw;
  std::uint32_t size = 0;    ///< 0 = the test's default (65536 / 64 / 1 MiB)
  std::uint32_t iters = 0;   ///< 0 = the test's default
  std::uint32_t warmup = 0;  ///< iterations before the clock starts (not counted)
  bool warmup_set = false;
  std::uint32_t depth = 16;  ///< write_bw, verify_rw: WRITEs in flight (verify_rw READs: min(depth, 16))
  bool use_inline = false;   ///< pingpong over verbs: IBV_SEND_INLINE
  std::uint32_t mtu = 4096;  ///< the largest path MTU we accept (bytes)
  PollMode poll = PollMode::spin;
  // Local only (not sent to the peer).
  std::string ib_dev;
  int ib_port = 1;
  int gid_idx = 0;
  std::uint16_t port = kDefaultPort;
  double timeout_s = 15;

  void apply_defaults() {
    switch (test) {
      case Test::write_bw:
        if (size == 0) size = 65536;
        if (iters == 0) iters = 5000;
        if (!warmup_set) warmup = 200;
        break;
      case Test::pingpong:
        if (size == 0) size = 64;
        if (iters == 0) iters = 20000;
        if (!warmup_set) warmup = 1000;
        break;
      case Test::verify_rw:  // one pass, no warmup: 16 x 1 MiB = 16 MiB
        if (size == 0) size = 1u << 20;
        if (iters == 0) iters = 16;
        if (!warmup_set) warmup = 0;
        break;
    }
  }
  std::uint64_t total() const { return std::uint64_t{warmup} + iters; }
};

}  // namespace roce_bench
