/**
 * @file lessons/01-verbs-send-recv/client.cpp
 * @brief Lesson 01 client: send messages over an RC QP and check each echo.
 *
 * The numbered steps match the log lines, the README walkthrough and the capture
 * walkthrough. Steps 2-9 and 11 are in rc_endpoint.cpp, shared with the server.
 */
#include <cstring>
#include <iostream>
#include <string>

#include "common/completion.hpp"
#include "common/dump.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/tcp.hpp"
#include "rc_endpoint.hpp"

namespace {

/// Step 13 for one message: SEND it, wait for our SEND completion and for the echo,
/// and check the echo is byte for byte what we sent.
void send_and_check_echo(lesson01::RcEndpoint& ep, const common::Options& opts,
                         const std::string& message, std::uint32_t index) {
  const bool detail = index > 1;
  std::memcpy(ep.send_area(), message.data(), message.size());
  const auto length = static_cast<std::uint32_t>(message.size());
  LOG(data, "step 13: post SEND message %u len=%u: '%s'", index, length,
      common::printable(message.data(), length).c_str());
  lesson01::post_send(ep, length, detail);
  // The SEND completes when the server's device ACKed it (RC), not when the server's
  // program has looked at it. The echo then arrives into the RECV we posted earlier.
  const std::string name = "message " + std::to_string(index);
  common::dump_wc(common::wait_for_completion(ep.send_cq.get(), opts.timeout_s, "SEND of " + name), detail);
  const ibv_wc echo = common::wait_for_completion(ep.recv_cq.get(), opts.timeout_s, "echo of " + name);
  common::dump_wc(echo, detail);
  if (echo.byte_len != length || std::memcmp(ep.recv_area(), message.data(), length) != 0)
    common::fail("echo of " + name + " differs: got " + std::to_string(echo.byte_len) + " bytes '" +
                     common::printable(ep.recv_area(), echo.byte_len) + "'",
                 "this should never happen on RC; report it with both logs");
  LOG(data, "step 13: echo of message %u verified (%u bytes)", index, echo.byte_len);
  // Re-post the RECV before the next SEND, so the next echo finds it.
  lesson01::post_recv(ep);
}

/// Steps 2-14 of the client.
int run_client(const common::Options& opts, const std::string& server, bool interactive,
               double connect_timeout_s) {
  // Steps 2-8: device, port and GID, PD, MR, CQs, QP, RESET -> INIT.
  lesson01::RcEndpoint ep = lesson01::open_endpoint(opts);

  // Step 9: post the RECV for the first echo now, long before the server can send it.
  LOG(fast, "step 9: post a RECV for the first echo (ibv_post_recv)");
  lesson01::post_recv(ep);

  // Step 10: connect over TCP (retrying while the server starts) and swap HELLOs.
  LOG(slow, "step 10: connect to the server over TCP and exchange QP details");
  common::Channel channel = common::Channel::connect_with_retry(server, opts.port, connect_timeout_s);
  const common::Hello ours = lesson01::make_hello(ep, opts.size, interactive ? 0 : opts.iters);
  lesson01::log_hello("sending HELLO", ours);
  channel.send(common::encode_hello(ours), opts.timeout_s);
  const common::Hello srv = channel.receive_hello(opts.timeout_s);
  lesson01::log_hello("received HELLO", srv);

  // Step 11: INIT -> RTR -> RTS with the server's details.
  lesson01::connect_qp(ep, srv);

  // Step 12: wait until the server's QP can receive and its RECV is posted.
  LOG(slow, "step 12: wait for READY from the server");
  channel.receive_ready(opts.timeout_s);
  LOG(slow, "step 12: READY received: the server's RECV is posted, we may send");

  // Step 13: the messages.
  std::uint32_t sent = 0;
  if (!interactive) {
    for (std::uint32_t i = 1; i <= opts.iters; ++i) {
      send_and_check_echo(ep, opts, lesson01::make_message(i, opts.iters, opts.size), i);
      ++sent;
    }
  } else {
    std::cout << "type a line and press Enter to send it; end with Ctrl-D\n" << std::flush;
    std::string line;
    while (std::getline(std::cin, line)) {
      if (line.empty()) continue;  // an empty SEND is our goodbye, so skip empty lines
      if (line.size() > opts.size) {
        LOG(warn, "line of %zu bytes is longer than -s %u; not sent (start both sides with a larger -s)",
            line.size(), opts.size);
        continue;
      }
      send_and_check_echo(ep, opts, line, ++sent);
      std::cout << "server acknowledged #" << sent << ": echoed " << line.size() << " bytes '"
                << line << "'\n" << std::flush;
    }
  }

  // Step 14: say goodbye with a zero-length SEND (legal on RC: no SGE, no payload, just
  // a BTH on the wire and a RECV completion with byte_len 0 at the server).
  LOG(data, "step 14: post a zero-length SEND as goodbye");
  lesson01::post_send(ep, 0, false);
  common::dump_wc(common::wait_for_completion(ep.send_cq.get(), opts.timeout_s, "the goodbye SEND"));
  // The server's DONE says its last echo completed, i.e. our device ACKed it: nothing of
  // ours is needed any more. Our DONE tells it our goodbye completed, so it may go too.
  LOG(slow, "step 14: goodbye acknowledged; wait for the server's DONE, then send ours");
  channel.receive_done(opts.timeout_s);
  channel.send(common::encode_done(), opts.timeout_s);
  LOG(slow, "step 14: done; tearing down QP, CQs, MR, PD, device");
  std::printf("client: %u message(s) of up to %u bytes sent, echoed and verified\n", sent, opts.size);
  return 0;
}

}  // namespace

/// Step 1: parse the command line, then run steps 2-14.
int main(int argc, char** argv) {
  common::Options opts;
  opts.port = lesson01::kDefaultPort;
  std::string server;
  bool interactive = false;
  double connect_timeout_s = 10;
  CLI::App app{"Lesson 01 client: RC SEND/RECV over raw verbs; QP details exchanged over TCP.\n"
               "Sends -n messages of -s bytes to the server and checks each echo.",
               "client"};
  app.add_option("server", server, "the server's IP address or host name")->required();
  common::add_common_options(app, opts);
  app.add_flag("--interactive", interactive, "send each line typed on stdin; print the server's echo");
  app.add_option("--connect-timeout", connect_timeout_s, "seconds to keep retrying the TCP connect")
      ->check(common::seconds_between(0.1, 3600.0))->capture_default_str();
  if (const auto code = common::parse_options(app, opts, argc, argv)) return *code;
  LOG(slow, "step 1: client to %s TCP port %u, %s", server.c_str(), opts.port,
      interactive ? "interactive" : (std::to_string(opts.iters) + " x " + std::to_string(opts.size) + " bytes").c_str());
  return common::run_main([&] { return run_client(opts, server, interactive, connect_timeout_s); });
}
