#include "plan.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "common/errors.hpp"
#include "common/log.hpp"
#include "connection.hpp"

namespace lesson06 {

std::uint32_t largest_size(const Settings& s) {
  std::uint32_t largest = s.size;
  if (s.steps.count(8))
    for (const std::uint32_t size : s.sizes) largest = std::max(largest, size);
  return largest;
}

std::set<int> parse_steps(const std::string& text) {
  std::set<int> steps;
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    const std::string part = text.substr(at, comma - at);
    int first = 0, last = 0;
    char tail = 0;
    if (std::sscanf(part.c_str(), "%d-%d%c", &first, &last, &tail) == 2 ||
        (std::sscanf(part.c_str(), "%d%c", &first, &tail) == 1 && (last = first, true))) {
      if (first < 1 || last > 8 || first > last)
        common::fail("--steps " + text + ": '" + part + "' is not within 1-8", "steps are 1-7 (techniques) and 8 (the sweep)");
      for (int n = first; n <= last; ++n) steps.insert(n);
    } else {
      common::fail("--steps " + text + ": '" + part + "' is not a step or a range", "write e.g. 1-7, 8 or 1,3,6");
    }
    at = comma + 1;
  }
  return steps;
}

std::vector<std::uint32_t> default_sweep_sizes() {
  std::vector<std::uint32_t> sizes;
  for (std::uint32_t size = 2; size <= (1u << 20); size *= 2) sizes.push_back(size);
  return sizes;
}

std::uint32_t sweep_iters(std::uint32_t size, std::uint32_t iters) {
  const std::uint32_t budget = (64u << 20) / size;
  return std::min(iters, std::max(100u, budget));
}

namespace {

/// A Technique with the window, chain and signaling adjusted to what can finish.
Technique make(int step, const char* name, const char* kind, common::TestOp op, common::TestPattern pattern,
               std::uint32_t size, std::uint32_t iters, std::uint32_t window, std::uint32_t signal_every,
               std::uint32_t chain, bool use_inline, bool use_event, std::size_t ring_bytes) {
  Technique t;
  t.step = step;
  t.name = name;
  t.kind = kind;
  t.spec.op = op;
  t.spec.pattern = pattern;
  t.spec.size = size;
  t.spec.iters = iters;
  t.spec.use_inline = use_inline;
  t.spec.use_event = use_event;
  t.spec.window = pattern == common::TestPattern::ping_pong ? 1 : window_for(size, window, ring_bytes);
  t.chain = std::max(1u, std::min(chain, t.spec.window));
  // A full window must hold a signaled request, or no completion would ever come to make
  // room. Posting stops when fewer than a chain's requests fit, i.e. with at least
  // window - chain + 1 in flight, counted from just after the last signaled one.
  t.signal_every = std::max(1u, std::min(signal_every, t.spec.window - t.chain + 1));
  return t;
}

}  // namespace

std::vector<Technique> plan_steps(const Settings& s, const std::set<int>& steps, std::uint32_t size,
                                  std::uint32_t iters, std::uint32_t max_inline, std::size_t ring_bytes) {
  using common::TestOp;
  const auto pp = common::TestPattern::ping_pong;
  const auto st = common::TestPattern::stream;
  const std::uint32_t w = s.window, k = s.signal_every, c = s.chain;
  const bool fits = size <= max_inline;  // inline is possible at this size
  std::vector<Technique> plan;
  const auto add = [&](Technique t) { plan.push_back(std::move(t)); };
  if (steps.count(1)) add(make(1, "send ping-pong", "both", TestOp::send, pp, size, iters, 1, 1, 1, false, false, ring_bytes));
  if (steps.count(2)) add(make(2, "send window", "bandwidth", TestOp::send, st, size, iters, w, 1, 1, false, false, ring_bytes));
  if (steps.count(3)) add(make(3, "send unsignaled", "bandwidth", TestOp::send, st, size, iters, w, k, 1, false, false, ring_bytes));
  if (steps.count(4)) {
    if (fits) {
      add(make(4, "send inline", "bandwidth", TestOp::send, st, size, iters, w, k, 1, true, false, ring_bytes));
      add(make(4, "send ping-pong inline", "latency", TestOp::send, pp, size, iters, 1, 1, 1, true, false, ring_bytes));
    } else {
      LOG(info, "step 4: skipped at %u bytes: more than max_inline_data %u, what the device granted", size, max_inline);
    }
  }
  if (steps.count(5)) add(make(5, "send chain", "bandwidth", TestOp::send, st, size, iters, w, k, c, fits, false, ring_bytes));
  if (steps.count(6)) {
    add(make(6, "write", "bandwidth", TestOp::write, st, size, iters, w, k, c, fits, false, ring_bytes));
    add(make(6, "write-imm", "bandwidth", TestOp::write_imm, st, size, iters, w, k, c, fits, false, ring_bytes));
    add(make(6, "read", "bandwidth", TestOp::read, st, size, iters, w, k, c, false, false, ring_bytes));
    add(make(6, "write one at a time", "latency", TestOp::write, st, size, iters, 1, 1, 1, false, false, ring_bytes));
    add(make(6, "write-imm one at a time", "latency", TestOp::write_imm, st, size, iters, 1, 1, 1, false, false, ring_bytes));
    add(make(6, "read one at a time", "latency", TestOp::read, st, size, iters, 1, 1, 1, false, false, ring_bytes));
  }
  if (steps.count(7)) {
    add(make(7, "send ping-pong event", "latency", TestOp::send, pp, size, iters, 1, 1, 1, false, true, ring_bytes));
    add(make(7, "send chain event", "bandwidth", TestOp::send, st, size, iters, w, k, c, fits, true, ring_bytes));
  }
  return plan;
}

Technique plan_run(const Settings& s, std::uint32_t max_inline, std::size_t ring_bytes) {
  using common::TestOp;
  const auto st = common::TestPattern::stream;
  if (s.use_inline && s.size > max_inline)
    common::fail("--inline with -s " + std::to_string(s.size) + ": more than max_inline_data " +
                     std::to_string(max_inline) + ", what the device granted",
                 "use a smaller -s, or leave out --inline");
  const auto run = [&](const char* name, TestOp op, common::TestPattern pattern) {
    // The step whose technique this measurement shows (the latest one it uses).
    int step = 6;
    if (op == TestOp::send) {
      step = pattern == common::TestPattern::ping_pong ? 1 : s.chain > 1 ? 5 : s.use_inline ? 4 : s.signal_every > 1 ? 3 : 2;
      if (pattern == common::TestPattern::ping_pong && s.use_inline) step = 4;
    }
    if (s.use_event) step = 7;
    return make(step, name, pattern == common::TestPattern::ping_pong ? "both" : "bandwidth", op, pattern, s.size,
                s.iters, s.window, s.signal_every, s.chain, s.use_inline, s.use_event, ring_bytes);
  };
  if (s.run == "pingpong") {
    Technique t = run("ping-pong", TestOp::send, common::TestPattern::ping_pong);
    // Every SEND signaled, as in step 1 and ib_send_lat, unless --signal-every says
    // otherwise; never more unsignaled SENDs than the send queue holds (--window).
    t.signal_every = s.signal_every_given ? std::min(s.signal_every, s.window) : 1;
    if (t.signal_every > 1 && t.step == 1) t.step = 3;
    return t;
  }
  if (s.run == "send") return run("send", TestOp::send, st);
  if (s.run == "write") return run("write", TestOp::write, st);
  if (s.run == "write-imm") return run("write-imm", TestOp::write_imm, st);
  if (s.run == "read") return run("read", TestOp::read, st);
  common::fail("--run " + s.run + " is not a measurement", "use pingpong, send, write, write-imm or read");
}

}  // namespace lesson06
