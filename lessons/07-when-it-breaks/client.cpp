/**
 * @file lessons/07-when-it-breaks/client.cpp
 * @brief Lesson 07 client: break one thing on purpose and report what the verbs say.
 *
 *   client --break NAME SERVER     one case against a lesson 07 server
 *   client --list                  the cases, what each breaks and where it shows
 *
 * Step 1 names the case; step 2 builds the objects (session.hpp); step 3 tells the server
 * the case (BREAK) and exchanges QP_INFO over TCP; steps 4-7 are the case's (cases.hpp):
 * connect, break, what the verbs said, why and the remedy. Exit 0 when what happened is
 * what the case predicts, 1 when not (or on any other error), 2 on a usage error.
 */
#include <cstdio>
#include <string>

#include "cases.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/options.hpp"
#include "common/tcp.hpp"
#include "session.hpp"

namespace {

int list_cases() {
  for (const lesson07::Case& c : lesson07::all_cases())
    std::printf("%-20s %s\n%-20s   shows as: %s%s\n", c.name, c.title, "", c.fails,
                c.needs_server ? "" : " (no server needed)");
  return 0;
}

int run_client(const common::Options& opts, const std::string& name, const std::string& server, double connect_timeout_s) {
  const lesson07::Case& c = lesson07::find_case(name);
  if (c.needs_server && server.empty())
    common::fail("case " + name + " needs a server", "give the server's address: client --break " + name + " SERVER");
  LOG(info, "step 1: case %s: %s; predicted: %s", c.name, c.title, c.fails);
  lesson07::Session s;
  s.opts = opts;
  s.setup = c.setup;
  lesson07::open_session(s);
  if (c.needs_server) {
    LOG(slow, "step 3: connect to %s:%u over TCP, say BREAK %s, exchange QP_INFO", server.c_str(), opts.port, c.name);
    s.channel.emplace(common::Channel::connect_with_retry(server, opts.port, connect_timeout_s));
    s.channel->send(common::encode_break(c.name), opts.timeout_s);
    lesson07::exchange_info(s);
  }
  return c.client(s);
}

}  // namespace

/// Parse the command line, then list the cases or run the one --break names.
int main(int argc, char** argv) {
  CLI::App app{"Lesson 07 client: reproduce one RDMA failure on purpose and explain it"};
  common::Options opts;
  opts.port = lesson07::kDefaultPort;
  opts.timeout_s = 10.0;
  common::add_common_options(app, opts);
  std::string name;
  std::string server;
  bool list = false;
  double connect_timeout_s = 10.0;
  app.add_option("--break", name, "the failure to reproduce (--list shows them)");
  app.add_flag("--list", list, "list the cases and exit");
  app.add_option("server", server, "the server's address (not needed by memlock and post-too-early)");
  app.add_option("--connect-timeout", connect_timeout_s, "how long to retry connecting to the server, seconds")
      ->check(common::seconds_between(0.1, 3600.0))->capture_default_str();
  if (const auto rc = common::parse_options(app, opts, argc, argv)) return *rc;
  if (list) return list_cases();
  if (name.empty()) {
    std::fprintf(stderr, "client: --break NAME is required (one of: %s)\n", lesson07::case_names().c_str());
    return 2;
  }
  return common::run_main([&] { return run_client(opts, name, server, connect_timeout_s); });
}
