/**
 * @file lessons/06-performance/client.cpp
 * @brief Lesson 06 client: the same transfer done progressively better, measured.
 *
 * Step 0 connects (lessons 01 and 05 taught it). Steps 1-7 each measure one technique at
 * the -s message size, every one on top of the previous ones; step 8 repeats them all at
 * every message size from 2 bytes to 1 MiB and writes the CSV the plots come from. The
 * numbers match the log lines and the README.
 */
#include <algorithm>
#include <cstdio>
#include <string>

#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/options.hpp"
#include "common/tcp.hpp"
#include "connection.hpp"
#include "measurement.hpp"
#include "ping_pong.hpp"
#include "plan.hpp"
#include "stream.hpp"

namespace {

using lesson06::Result;
using lesson06::Technique;

/// What each step adds, for its first log line.
const char* step_intro(int step) {
  switch (step) {
    case 1: return "the baseline: one SEND at a time, every one signaled, the server echoes it (lesson 01's way)";
    case 2: return "a window: many SENDs in flight, RECVs posted ahead in bulk on the server";
    case 3: return "unsignaled SENDs: one completion for every k requests";
    case 4: return "inline data: the bytes travel inside the work request";
    case 5: return "chains: several work requests per ibv_post_send call";
    case 6: return "RDMA WRITE, WRITE_WITH_IMM and READ, with the same settings; then each one at a time";
    case 7: return "a completion channel instead of busy polling: latency and CPU side by side";
    default: return "";
  }
}

/// One measurement: TEST, READY, the run, DONE both ways.
Result measure(lesson06::Connection& c, common::Channel& channel, const lesson06::RemoteRing& remote, Technique t,
               std::uint32_t number, double timeout_s) {
  t.spec.number = number;
  const common::TestSpec& s = t.spec;
  LOG(data, "step %d: %s: %u bytes x %u, window %u, signal every %u, chain %u, %s, %s", t.step, t.name.c_str(), s.size,
      s.iters, s.window, t.signal_every, t.chain, s.use_inline ? "inline" : "not inline",
      s.use_event ? "completion channel" : "busy poll");
  channel.send(common::encode_test(s), timeout_s);
  channel.receive_ready(timeout_s);
  LOG(data, "step %d: %s: the server is READY; measuring", t.step, t.name.c_str());
  const Result r = s.pattern == common::TestPattern::ping_pong ? lesson06::run_ping_pong(c, t, timeout_s)
                                                              : lesson06::run_stream(c, remote, t, timeout_s);
  // Every request of ours has completed; the server checks the bytes and says DONE (or
  // ERROR with the first difference, which receive_done turns into our error).
  channel.send(common::encode_done(), timeout_s);
  channel.receive_done(timeout_s);
  LOG(data, "step %d: %s: %.2f MiB/s, %.4f Mmsg/s, latency typical %.2f us, p99 %.2f us, CPU %.0f %%; verified",
      t.step, t.name.c_str(), r.mib_per_s, r.mmsg_per_s, r.lat_typical_us, r.lat_p99_us, r.cpu_percent);
  return r;
}

/// Step 7's comparison: the same ping-pong and the same stream, busy and asleep.
void compare_waits(const std::vector<Result>& results) {
  const auto find = [&](const char* name) -> const Result* {
    for (auto it = results.rbegin(); it != results.rend(); ++it)
      if (it->technique.name == name) return &*it;
    return nullptr;
  };
  const Result* busy = find("send ping-pong");
  const Result* sleep = find("send ping-pong event");
  if (busy && sleep)
    LOG(info, "step 7: ping-pong: busy poll %.2f us at %.0f %% CPU; completion channel %.2f us at %.0f %% CPU",
        busy->lat_typical_us, busy->cpu_percent, sleep->lat_typical_us, sleep->cpu_percent);
  const Result* busy_stream = find("send chain");
  const Result* sleep_stream = find("send chain event");
  if (busy_stream && sleep_stream)
    LOG(info, "step 7: stream: busy poll %.2f MiB/s at %.0f %% CPU; completion channel %.2f MiB/s at %.0f %% CPU",
        busy_stream->mib_per_s, busy_stream->cpu_percent, sleep_stream->mib_per_s, sleep_stream->cpu_percent);
}

int run_measurements(lesson06::Connection& c, common::Channel& channel, const lesson06::RemoteRing& remote,
                     const lesson06::Settings& settings, const common::Options& opts, lesson06::CsvFile& csv);

/// Step 0, then the measurements.
int run_client(const common::Options& opts, lesson06::Settings settings, const std::string& server,
               double connect_timeout_s, const std::string& csv_path) {
  lesson06::CsvFile csv(csv_path);
  // Step 0: our objects, sized for the largest message and the window; TCP; QP_INFO both
  // ways; RTS. The server sizes its ring from our QP_INFO.
  const std::uint32_t max_size = lesson06::largest_size(settings);
  lesson06::Connection c = lesson06::open_connection(common::open_port(opts.ib_dev, opts.ib_port, opts.gid_idx),
                                                     max_size, settings.window, false);
  LOG(slow, "step 0: connect to the server over TCP and exchange QP details");
  common::Channel channel = common::Channel::connect_with_retry(server, opts.port, connect_timeout_s);
  const common::QpInfo ours = lesson06::make_info(c, max_size, settings.window, false);
  lesson06::log_info("sending QP_INFO", ours);
  channel.send(common::encode_qp_info(ours), opts.timeout_s);
  const common::QpInfo srv = lesson06::receive_info(channel, opts.timeout_s);
  lesson06::log_info("received QP_INFO", srv);
  if (srv.length < c.ring_bytes)
    common::fail("the server's ring is " + std::to_string(srv.length) + " bytes, we need " + std::to_string(c.ring_bytes),
                 "run the server of the same build");
  lesson06::connect(c, srv, false);
  const lesson06::RemoteRing remote{srv.addr, srv.rkey, srv.length};

  // From here on, a failure of ours is told to the server before we go, so that its log
  // names the cause instead of a connection that closed.
  try {
    return run_measurements(c, channel, remote, settings, opts, csv);
  } catch (const common::Error& e) {
    try {
      channel.send(common::encode_error(e.what()), opts.timeout_s);
    } catch (const common::Error&) {
      LOG(warn, "could not tell the server why: the connection is gone");
    }
    throw;
  }
}

/// Steps 1-8 (or --run's one measurement), then DONE both ways.
int run_measurements(lesson06::Connection& c, common::Channel& channel, const lesson06::RemoteRing& remote,
                     const lesson06::Settings& settings, const common::Options& opts, lesson06::CsvFile& csv) {
  const std::uint32_t max_inline = c.cap.max_inline_data;
  std::vector<Result> results;
  std::uint32_t number = 0;
  const auto run = [&](const Technique& t) {
    results.push_back(measure(c, channel, remote, t, ++number, opts.timeout_s));
    lesson06::print_row(results.back());
    csv.write(results.back());
  };
  if (!settings.run.empty()) {
    lesson06::print_table_header();
    run(lesson06::plan_run(settings, max_inline, c.ring_bytes));
    const Result& r = results.back();
    std::printf("result: kind=%s size=%u iters=%u mib_per_s=%.3f mmsg_per_s=%.6f lat_min_us=%.3f "
                "lat_typical_us=%.3f lat_p99_us=%.3f cpu_percent=%.1f\n",
                r.technique.name.c_str(), r.technique.spec.size, r.technique.spec.iters, r.mib_per_s, r.mmsg_per_s,
                r.lat_min_us, r.lat_typical_us, r.lat_p99_us, r.cpu_percent);
  } else {
    std::set<int> techniques = settings.steps;
    techniques.erase(8);
    if (!techniques.empty()) {
      lesson06::print_table_header();
      int last_step = 0;
      for (const Technique& t :
           lesson06::plan_steps(settings, techniques, settings.size, settings.iters, max_inline, c.ring_bytes)) {
        if (t.step != last_step) LOG(info, "step %d: %s", t.step, step_intro(t.step));
        last_step = t.step;
        run(t);
      }
      compare_waits(results);
    }
    if (settings.steps.count(8)) {
      // Step 8: every technique at every size; the CSV feeds plot.sh.
      LOG(info, "step 8: the size sweep: steps 1-7 at %zu sizes from %u to %u bytes", settings.sizes.size(),
          settings.sizes.front(), settings.sizes.back());
      lesson06::print_table_header();
      for (const std::uint32_t size : settings.sizes) {
        const std::uint32_t iters = lesson06::sweep_iters(size, settings.iters);
        LOG(info, "step 8: %u bytes, %u messages per measurement", size, iters);
        for (const Technique& t :
             lesson06::plan_steps(settings, {1, 2, 3, 4, 5, 6, 7}, size, iters, max_inline, c.ring_bytes))
          run(t);
      }
    }
  }
  channel.send(common::encode_done(), opts.timeout_s);
  channel.receive_done(opts.timeout_s);
  LOG(slow, "done; tearing down QP, CQs, channel, MR, PD, device");
  std::printf("client: %zu measurement(s), the data of each checked\n", results.size());
  return 0;
}

}  // namespace

/// Parse the command line, then run step 0 and the steps asked for.
int main(int argc, char** argv) {
  common::Options opts;
  opts.port = lesson06::kDefaultPort;
  opts.iters = 5000;
  lesson06::Settings settings;
  std::string server, steps_text = "1-7", csv_path;
  double connect_timeout_s = 10;
  CLI::App app{"Lesson 06 client: what makes RDMA fast, measured. Steps 1-7 measure one technique each at\n"
               "-s bytes (a ping-pong, a window, unsignaled requests, inline data, chains, WRITE/READ,\n"
               "a completion channel); step 8 sweeps message sizes. Every byte moved is checked.",
               "client"};
  app.add_option("server", server, "the server's IP address or host name")->required();
  common::add_common_options(app, opts);
  // The device bounds the window (max_qp_wr, max_cqe): connection.cpp names the limit.
  app.add_option("--window", settings.window, "requests in flight at most (steps 2-7)")
      ->check(CLI::Range(1u, 1u << 20))->capture_default_str();
  CLI::Option* signal_every = app.add_option("--signal-every", settings.signal_every,
                                             "signal every k-th request (steps 3-7; with --run pingpong: 1)")
      ->check(CLI::Range(1u, 8192u))->capture_default_str();
  app.add_option("--chain", settings.chain, "requests per ibv_post_send call (steps 5-7)")
      ->check(CLI::Range(1u, 1024u))->capture_default_str();
  app.add_option("--steps", steps_text, "steps to run: 1-7 the techniques at -s, 8 the size sweep (e.g. 1-8, 6)")
      ->capture_default_str();
  app.add_option("--sizes", settings.sizes, "step 8's message sizes (default 2, 4, ... 1048576)")
      ->delimiter(',')->check(CLI::Range(1u, lesson06::kMaxMessageSize));
  app.add_option("--run", settings.run, "one measurement instead of the steps: pingpong, send, write, write-imm, read")
      ->check(CLI::IsMember({"pingpong", "send", "write", "write-imm", "read"}));
  app.add_flag("--inline", settings.use_inline, "with --run: post inline");
  app.add_flag("--event", settings.use_event, "with --run: sleep on the completion channel");
  app.add_option("--csv", csv_path, "write every measurement as a CSV row to this file (plot.sh draws it)");
  app.add_option("--connect-timeout", connect_timeout_s, "seconds to keep retrying the TCP connect")
      ->check(common::seconds_between(0.1, 3600.0))->capture_default_str();
  if (const auto code = common::parse_options(app, opts, argc, argv)) return *code;
  if (opts.size > lesson06::kMaxMessageSize) {
    std::fprintf(stderr, "-s %u: more than %u bytes, the largest message this lesson registers memory for\n", opts.size,
                 lesson06::kMaxMessageSize);
    return 2;
  }
  if ((settings.use_inline || settings.use_event) && settings.run.empty()) {
    std::fprintf(stderr, "--inline and --event go with --run; steps 4 and 7 use them on their own\n");
    return 2;
  }
  if (settings.use_inline && settings.run == "read") {
    std::fprintf(stderr, "--inline with --run read: a READ request carries no data to put inline; leave out --inline\n");
    return 2;
  }
  settings.size = opts.size;
  settings.iters = opts.iters;
  settings.signal_every_given = signal_every->count() > 0;
  if (settings.sizes.empty()) settings.sizes = lesson06::default_sweep_sizes();
  std::sort(settings.sizes.begin(), settings.sizes.end());
  return common::run_main([&] {
    settings.steps = lesson06::parse_steps(steps_text);
    LOG(slow, "step 0: client to %s TCP port %u: %s", server.c_str(), opts.port,
        settings.run.empty() ? ("steps " + steps_text).c_str() : ("--run " + settings.run).c_str());
    return run_client(opts, settings, server, connect_timeout_s, csv_path);
  });
}
