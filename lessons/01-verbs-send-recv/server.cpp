/**
 * @file lessons/01-verbs-send-recv/server.cpp
 * @brief Lesson 01 server: receive each message over an RC QP, check it, echo it back.
 *
 * The numbered steps match the log lines, the README walkthrough and the capture
 * walkthrough. Steps 2-9 and 11 are in rc_endpoint.cpp, shared with the client.
 */
#include <atomic>
#include <cstring>
#include <string>

#include "common/completion.hpp"
#include "common/dump.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/stop.hpp"
#include "common/tcp.hpp"
#include "rc_endpoint.hpp"

namespace {

/// How long the server waits for the next line from an interactive client.
constexpr double kInteractiveIdleSeconds = 600;

/// Steps 2-14 of the server.
int run_server(const common::Options& opts, double accept_timeout_s) {
  // The summary line, printed at the end or when Ctrl-C / SIGTERM stops us (stop.hpp);
  // that may happen on another thread, hence the atomic counter.
  std::atomic<std::uint32_t> received{0};
  common::SummaryOnStop summary(
      [&received] { return "server: " + std::to_string(received) + " message(s) received, verified and echoed"; });

  // Steps 2-8: device, port and GID, PD, MR, CQs, QP, RESET -> INIT.
  lesson01::RcEndpoint ep = lesson01::open_endpoint(opts);

  // Step 9: post a RECV before anyone can send to us. The client may send only after
  // our READY (step 12), and by then this RECV is waiting: no RNR NAK ever happens.
  LOG(fast, "step 9: post a RECV for up to %u bytes before the client may send (ibv_post_recv)", ep.size);
  lesson01::post_recv(ep);

  // Step 10: the out-of-band exchange. RC needs the peer's QPN, PSN and GID before RTR,
  // and the QP cannot carry them itself yet, so they travel over plain TCP.
  LOG(slow, "step 10: wait for a client on TCP and exchange QP details");
  common::Channel channel = common::Channel::accept_one(opts.port, accept_timeout_s);
  LOG(slow, "step 10: client connected from %s", channel.peer().c_str());
  const common::Hello client = channel.receive_hello(opts.timeout_s);
  lesson01::log_hello("received HELLO", client);
  if (client.msg_size > ep.size) {
    const std::string reason = "client sends " + std::to_string(client.msg_size) +
                               "-byte messages but the server's RECV buffer is " +
                               std::to_string(ep.size) + " bytes";
    channel.send(common::encode_error(reason + "; start the server with -s " +
                                      std::to_string(client.msg_size) + " or more"),
                 opts.timeout_s);
    common::fail(reason, "start the server with -s " + std::to_string(client.msg_size) + " or more");
  }
  const common::Hello ours = lesson01::make_hello(ep, ep.size, client.msg_count);
  lesson01::log_hello("sending HELLO", ours);
  channel.send(common::encode_hello(ours), opts.timeout_s);

  // Step 11: INIT -> RTR -> RTS with the client's details.
  lesson01::connect_qp(ep, client);

  // Step 12: tell the client it may send. Our QP is in RTR (it accepts packets) and our
  // RECV is posted. Without this barrier the client could send while we are still in
  // INIT, and a QP in INIT silently drops what arrives.
  LOG(slow, "step 12: send READY (our QP is in RTS, our RECV is posted)");
  channel.send(common::encode_ready(), opts.timeout_s);

  // Step 13: receive, check, echo. Before echoing we re-post the RECV, so the client's
  // next message (sent only after our echo arrives) always finds one.
  // An interactive client waits for its user between lines, so we wait long. If it
  // exits meanwhile, RC tells us nothing (no request, no ACK is owed to anyone): only its
  // TCP connection, silent until step 14, closes. So that is watched while we wait.
  const bool interactive = client.msg_count == 0;
  const double wait_s = interactive ? kInteractiveIdleSeconds : opts.timeout_s;
  if (interactive)
    LOG(info, "interactive client: waiting up to %.0f s for each line, or until its TCP connection closes", wait_s);
  for (;;) {
    const std::uint32_t n = received + 1;  // the message we wait for
    const std::string what = "message " + std::to_string(n) + " from the client";
    const ibv_wc wc = interactive ? common::wait_for_completion_or_hangup(ep.recv_cq.get(), wait_s, what,
                                                                          channel.fd(), "the client " + channel.peer())
                                  : common::wait_for_completion(ep.recv_cq.get(), wait_s, what);
    const bool detail = n > 1;
    common::dump_wc(wc, detail);
    // Step 14 starts here: a zero-length SEND is the client's goodbye.
    if (wc.byte_len == 0) break;
    if (!interactive) {
      const std::string expected = lesson01::make_message(n, client.msg_count, client.msg_size);
      if (wc.byte_len != client.msg_size || std::memcmp(ep.recv_area(), expected.data(), wc.byte_len) != 0)
        common::fail("message " + std::to_string(n) + " is corrupt: got " +
                         std::to_string(wc.byte_len) + " bytes '" +
                         common::printable(ep.recv_area(), wc.byte_len) + "'",
                     "this should never happen on RC; report it with both logs");
    }
    LOG(data, "step 13: got message %u (%u bytes): '%s'", n, wc.byte_len,
        common::printable(ep.recv_area(), wc.byte_len).c_str());
    std::memcpy(ep.send_area(), ep.recv_area(), wc.byte_len);
    lesson01::post_recv(ep);  // for the next message (or the goodbye)
    LOG(data, "step 13: echo message %u (post SEND len=%u)", n, wc.byte_len);
    lesson01::post_send(ep, wc.byte_len, detail);
    common::dump_wc(common::wait_for_completion(ep.send_cq.get(), opts.timeout_s,
                                                "the echo of message " + std::to_string(n)),
                    detail);
    received = n;  // received, verified and echoed
  }

  // Step 14: done. Before anything is destroyed, both sides must know that the other
  // needs nothing more from its QP. Our last echo has completed (the client's device ACKed
  // it), but the client's goodbye SEND completes at the client only when OUR ACK reaches
  // it: if that ACK were lost and we had already destroyed the QP, the client would
  // resend into nothing and its goodbye would never complete (IBV_WC_RETRY_EXC_ERR on an
  // RDMA NIC; Soft-RoCE resends forever with retry_cnt 7). RC has no "close", so the TCP
  // channel says it: we send DONE, the client answers DONE once its goodbye completed.
  if (!interactive && received != client.msg_count)
    common::fail("client said goodbye after " + std::to_string(received) + " of " +
                     std::to_string(client.msg_count) + " messages",
                 "check the client's log");
  LOG(slow, "step 14: goodbye received (zero-length SEND); send DONE, wait for the client's DONE");
  channel.send(common::encode_done(), opts.timeout_s);
  channel.receive_done(opts.timeout_s);
  // Every object is released in reverse order of creation when `ep` goes out of scope.
  LOG(slow, "step 14: DONE received; tearing down QP, CQs, MR, PD, device");
  summary.print();
  return 0;
}

}  // namespace

/// Step 1: parse the command line, then run steps 2-14.
int main(int argc, char** argv) {
  common::Options opts;
  opts.port = lesson01::kDefaultPort;
  double accept_timeout_s = 300;
  CLI::App app{"Lesson 01 server: RC SEND/RECV over raw verbs; QP details exchanged over TCP.\n"
               "Waits for one client, receives its messages, checks and echoes each one.",
               "server"};
  common::add_common_options(app, opts);
  app.add_option("--accept-timeout", accept_timeout_s, "seconds to wait for a client to connect")
      ->check(common::seconds_between(1.0, 86400.0))->capture_default_str();
  if (const auto code = common::parse_options(app, opts, argc, argv)) return *code;
  common::watch_stop_signals();
  LOG(slow, "step 1: server on TCP port %u, RECV buffer %u bytes", opts.port, opts.size);
  return common::run_main([&] { return run_server(opts, accept_timeout_s); });
}
