/**
 * @file lessons/06-performance/plan.hpp
 * @brief Which measurements a run makes: the README's steps 1-7 at one size, step 8's
 *        sweep over sizes, or one measurement (--run).
 */
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "measurement.hpp"

namespace lesson06 {

/// The client's choices that shape every measurement.
struct Settings {
  std::uint32_t size = 64;           ///< -s: message size of steps 1-7
  std::uint32_t iters = 5000;        ///< -n: messages per measurement (the sweep uses fewer for large ones)
  std::uint32_t window = 64;         ///< --window: requests in flight (steps 2-7)
  std::uint32_t signal_every = 16;   ///< --signal-every: every k-th request signaled (steps 3-7)
  bool signal_every_given = false;   ///< --signal-every was on the command line (--run pingpong: 1 if not)
  std::uint32_t chain = 8;           ///< --chain: requests per ibv_post_send call (steps 5-7)
  std::set<int> steps;               ///< --steps: which of 1-8
  std::vector<std::uint32_t> sizes;  ///< --sizes: step 8's message sizes
  std::string run;                   ///< --run KIND: one measurement instead of the steps
  bool use_inline = false;           ///< --inline (with --run)
  bool use_event = false;            ///< --event (with --run)
};

/// The largest message and the widest window of the run (what both sides register for).
std::uint32_t largest_size(const Settings& s);

/**
 * Parse "1-7", "8", "1,3,5-7" into step numbers 1..8.
 * @throws common::Error naming the part that is not a step.
 */
std::set<int> parse_steps(const std::string& text);

/// Step 8's default sizes: 2, 4, 8, ... 1048576 bytes.
std::vector<std::uint32_t> default_sweep_sizes();

/// Step 8's iterations at @p size: -n, or fewer so that a measurement moves about 64 MiB
/// (at least 100 messages).
std::uint32_t sweep_iters(std::uint32_t size, std::uint32_t iters);

/**
 * The measurements of steps @p steps (1-7) at @p size bytes, @p iters each, in order.
 * The window shrinks to what the ring holds at that size (at most kMaxBytesInFlight in
 * flight), the chain to the window, and signal_every to window - chain + 1, so that a full
 * window always holds a signaled request and every measurement can finish. Inline rows only where @p size fits
 * @p max_inline; a step with nothing to run at this size is logged and skipped.
 */
std::vector<Technique> plan_steps(const Settings& s, const std::set<int>& steps, std::uint32_t size,
                                  std::uint32_t iters, std::uint32_t max_inline, std::size_t ring_bytes);

/// The one measurement --run KIND asks for (KIND: pingpong, send, write, write-imm, read).
/// @throws common::Error for an unknown KIND, or inline that the device cannot do.
Technique plan_run(const Settings& s, std::uint32_t max_inline, std::size_t ring_bytes);

}  // namespace lesson06
