/**
 * @file lessons/07-when-it-breaks/server.cpp
 * @brief Lesson 07 server: take part in the one case a client names.
 *
 * It accepts one client, reads its BREAK (the case name), builds its objects with that
 * case's Setup and runs the case's server half (cases.hpp), which reports what the
 * server saw and whether that is what the case predicts (exit 0) or not (exit 1). In
 * peer-killed it kills itself with SIGKILL after READY, as a crash would.
 */
#include <atomic>
#include <cstdio>
#include <string>

#include "cases.hpp"
#include "common/device.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/options.hpp"
#include "common/stop.hpp"
#include "common/tcp.hpp"
#include "session.hpp"

namespace {

/// What the server has done, for the line a stop signal prints (common/stop.hpp).
std::atomic<const char*> g_state{"server: no case run (stopped while waiting for a client)"};

int run_server(const common::Options& opts, double accept_timeout_s) {
  common::SummaryOnStop summary([] { return std::string(g_state.load()); });
  // The device first, before waiting for anyone: a host without RDMA is told at once.
  // It is closed again: the case opens it anew with its own Setup (step 2).
  common::open_port(opts.ib_dev, opts.ib_port, opts.gid_idx);
  LOG(slow, "step 3: wait for a client on TCP port %u (up to %.0f s)", opts.port, accept_timeout_s);
  common::Channel channel = common::Channel::accept_one(opts.port, accept_timeout_s);
  const common::Message m = channel.receive(opts.timeout_s);
  if (m.type != common::MessageType::break_case)
    common::fail("expected BREAK from " + channel.peer() + ", got " + common::message_type_name(m.type),
                 "run lesson 07's client against this server");
  const std::string name = common::decode_break(m.body);
  const lesson07::Case* c = nullptr;
  try {
    c = &lesson07::find_case(name);
  } catch (const common::Error& e) {
    channel.send(common::encode_error(e.what()), opts.timeout_s);
    throw;
  }
  LOG(info, "step 1: client %s asks for case %s: %s; predicted: %s", channel.peer().c_str(), c->name, c->title, c->fails);
  g_state = "server: stopped in the middle of a case";
  if (c->server_dies) lesson07::leave_witness(channel.fd(), opts.timeout_s);
  lesson07::Session s;
  s.server_side = true;
  s.opts = opts;
  s.setup = c->setup;
  try {
    lesson07::open_session(s);
  } catch (const common::Error& e) {
    // Tell the client, which would otherwise wait out -t for our QP_INFO.
    channel.send(common::encode_error(e.what()), opts.timeout_s);
    throw;
  }
  s.channel.emplace(std::move(channel));
  lesson07::exchange_info(s);
  return c->server(s);
}

}  // namespace

/// Parse the command line, then serve one client's case.
int main(int argc, char** argv) {
  CLI::App app{"Lesson 07 server: take part in the failure a client reproduces"};
  common::Options opts;
  opts.port = lesson07::kDefaultPort;
  opts.timeout_s = 10.0;
  common::add_common_options(app, opts);
  double accept_timeout_s = 60.0;
  app.add_option("--accept-timeout", accept_timeout_s, "how long to wait for the client, seconds")
      ->check(common::seconds_between(0.1, 3600.0))->capture_default_str();
  if (const auto rc = common::parse_options(app, opts, argc, argv)) return *rc;
  common::watch_stop_signals();  // before the device is opened: the runtime starts threads
  return common::run_main([&] { return run_server(opts, accept_timeout_s); });
}
