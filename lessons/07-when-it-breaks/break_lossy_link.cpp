/**
 * @file lessons/07-when-it-breaks/break_lossy_link.cpp
 * @brief A lossy link: what RC does about packets lost, duplicated and reordered, and
 *        what the application sees of it (nothing, if the link recovers in time).
 *
 * Every other case breaks something for good. Here nothing is broken: the client SENDs a
 * stream of numbered messages, and the server checks that each arrives exactly once and
 * in order. Run on the userspace runtime with its fault injection (UROCE_DROP,
 * UROCE_DUPLICATE, UROCE_REORDER; smoke.sh does), the link loses, repeats and reorders
 * packets, and RC's sequence numbers repair it: the responder NAKs a gap (PSN sequence
 * error) and drops a duplicate after ACKing it again, the requester resends from the
 * first PSN not acknowledged, after a NAK or an ACK timeout. The verbs say none of this;
 * only the runtime's log (UROCE_LOG) and the wire do, and the time it took.
 */
#include <arpa/inet.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "case_kit.hpp"
#include "cases.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"

namespace lesson07 {
namespace {

/// Messages in the stream, and how many the client keeps in flight.
constexpr std::uint32_t kStreamMessages = 200;
constexpr std::uint32_t kStreamWindow = 8;
/// RECVs the server keeps posted (it re-posts each one it completes).
constexpr std::uint32_t kStreamRecvs = 16;

int lossy_client(Session& s) {
  client_connect(s);
  const Stopwatch clock;
  std::uint32_t posted = 0, done = 0, failed = 0;
  // Message i carries i (big-endian) in its first 4 bytes; slot i % window holds it.
  while (done < kStreamMessages) {
    while (posted < kStreamMessages && posted - done < kStreamWindow) {
      const std::size_t slot = (posted % kStreamWindow) * kMessageBytes;
      const std::uint32_t number = htonl(posted);
      std::memcpy(s.at(slot), &number, sizeof number);
      common::check_rc(post_one(s, IBV_WR_SEND, posted, slot, kMessageBytes, 0, 0), "ibv_post_send",
                       "the send queue holds the window");
      ++posted;
    }
    // The next completion, within -t; only a failed one is logged (200 successes would
    // drown the story).
    ibv_wc wc{};
    int n = 0;
    const Stopwatch waiting;
    while ((n = ibv_poll_cq(s.send_cq.get(), 1, &wc)) == 0 && waiting.seconds() < s.timeout())
      ::usleep(100);  // leave the CPU to the device (the runtime's engine runs in this process)
    if (n < 0) common::fail("ibv_poll_cq returned " + std::to_string(n), "device error: check dmesg");
    if (n == 0) {
      LOG(data, "step 6: client: no completion within %.3f s after %u", s.timeout(), done);
      break;
    }
    ++done;
    if (wc.status != IBV_WC_SUCCESS) {
      report_wc("client", wc, clock);
      ++failed;
      break;
    }
  }
  const double took = clock.seconds();
  LOG(data, "step 6: client: %u of %u SENDs completed successfully in %.3f s", done - failed, kStreamMessages, took);
  explain("client",
          "as long as the link needs: each lost or reordered packet costs a NAK round trip or an ACK timeout "
          "(67 ms), and the verbs show only the total",
          "on a lossy link: the same PSN more than once (resends), NAK PSN sequence error (AETH syndrome 0x60) for "
          "gaps, ACKs for duplicates",
          "nothing to fix while the retries suffice; when they do not, IBV_WC_RETRY_EXC_ERR says so (peer-killed)");
  Expect expect("client");
  expect.that(done == kStreamMessages && failed == 0,
              std::to_string(done - failed) + " of " + std::to_string(kStreamMessages) + " SENDs succeeded");
  // The time the explanation allows a link that needs it: one ACK timeout per message
  // (a clean link needs a few round trips; each loss a NAK round trip or one timeout).
  expect.within(took, kStreamMessages * ack_timeout_s(s.setup.timeout));
  client_finish(s);
  return expect.verdict("lossy-link");
}

int lossy_server(Session& s) {
  for (std::uint32_t i = 0; i < kStreamRecvs; ++i) post_recv_at(s, i * kMessageBytes, kMessageBytes);
  connect_session(s);
  s.channel->send(common::encode_ready(), s.timeout());
  LOG(slow, "step 4: server: %u RECVs posted, READY; expecting messages 0..%u, each once, in order", kStreamRecvs,
      kStreamMessages - 1);
  const Stopwatch clock;
  Stopwatch since_last;  // -t bounds each wait for the next message, not the whole stream
  std::uint32_t next = 0;
  std::string problem;
  while (next < kStreamMessages && problem.empty()) {
    ibv_wc wc{};
    const int n = ibv_poll_cq(s.recv_cq.get(), 1, &wc);
    if (n < 0) common::fail("ibv_poll_cq returned " + std::to_string(n), "device error: check dmesg");
    if (n == 0) {
      ::usleep(100);
      if (since_last.seconds() > s.timeout()) problem = "message " + std::to_string(next) + " did not come within -t";
      continue;
    }
    if (wc.status != IBV_WC_SUCCESS) {
      report_wc("server", wc, clock);
      problem = std::string("a RECV completed with ") + wc_status_name(wc.status);
      break;
    }
    const std::size_t slot = (wc.wr_id - 100) * kMessageBytes;
    std::uint32_t number = 0;
    std::memcpy(&number, s.at(slot), sizeof number);
    number = ntohl(number);
    if (number != next)
      problem = "message " + std::to_string(number) + " arrived where " + std::to_string(next) + " was due";
    ++next;
    since_last.restart();
    post_recv_at(s, slot, kMessageBytes);
  }
  LOG(data, "step 6: server: %u messages received in %.3f s%s", next, clock.seconds(),
      problem.empty() ? ", each exactly once, in order" : "");
  s.channel->receive_done(s.timeout());
  Expect expect("server");
  expect.that(problem.empty(), problem);
  s.channel->send(common::encode_done(), s.timeout());
  return expect.verdict("lossy-link");
}

}  // namespace

/// The cases of this file, in the README's order (declared in cases.hpp).
std::vector<Case> lossy_link_cases() {
  Setup lossy;
  lossy.max_send_wr = kStreamWindow;
  return {{"lossy-link", "a stream of numbered SENDs over a link that loses, repeats and reorders packets",
           "nothing fails: every message arrives once, in order (run it with the runtime's fault injection)", lossy,
           lossy_client, lossy_server}};
}

}  // namespace lesson07
