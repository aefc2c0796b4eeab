/**
 * @file lessons/07-when-it-breaks/break_receiver.cpp
 * @brief Failures at the receiver: no RECV posted (RNR, with rnr_retry 0, 1 and 7), a
 *        RECV too small for the SEND, and a receiver whose process is killed.
 *
 * A SEND consumes a RECV the receiver posted. With none posted the responder answers an
 * RNR NAK (Receiver Not Ready) carrying its min_rnr_timer: "try again after this long".
 * The sender retries rnr_retry times (7: forever) and then completes with
 * IBV_WC_RNR_RETRY_EXC_ERR. With a RECV too small, the responder refuses the SEND for
 * good. With the receiver gone, nothing answers at all: the sender resends after every
 * ACK timeout, retry_cnt times, and completes with IBV_WC_RETRY_EXC_ERR.
 */
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "case_kit.hpp"
#include "cases.hpp"
#include "common/completion.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"

namespace lesson07 {
namespace {

/// The server's min_rnr_timer in the RNR cases: code 28, 163.84 ms, long enough to see
/// each retry in the log and on the wire (lesson 01's 12 is 0.64 ms).
constexpr std::uint8_t kRnrTimerCode = 28;
/// rnr-retry-7 watches this long for a completion that must not come: with rnr_retry 7
/// the sender retries forever, so none comes whatever the machine's speed.
constexpr double kForeverWatch_s = 2.0;

/// rnr-retry-0 and rnr-retry-1, the client: one SEND to a server with no RECV posted.
int rnr_client(Session& s, const char* name) {
  client_connect(s);
  const Stopwatch clock;
  post_send_msg(s, 1, kMessageBytes);
  const std::optional<ibv_wc> wc = poll_one("client", s.send_cq.get(), s.timeout(), clock);
  const double took = clock.seconds();
  const ibv_qp_state state = report_qp_state("client", s.qp.get());
  const unsigned retries = s.setup.rnr_retry;
  const double wait = rnr_timer_s(kRnrTimerCode);
  char why[300];
  if (retries == 0)
    std::snprintf(why, sizeof why, "rnr_retry 0: the first RNR NAK ends the SEND, one round trip");
  else
    std::snprintf(why, sizeof why,
                  "rnr_retry %u: %u RNR NAKs; after each but the last the sender waits the %.2f ms it asks for "
                  "(min_rnr_timer %u): at least %.3f s",
                  retries, retries + 1, wait * 1e3, kRnrTimerCode, retries * wait);
  explain("client", why,
          "SEND (PSN p), RNR NAK (AETH syndrome 0x20 | timer code 28 = 0x3c), and for each retry the same SEND "
          "again and another RNR NAK",
          common::wc_status_remedy(IBV_WC_RNR_RETRY_EXC_ERR));
  Expect expect("client");
  expect.status(wc, IBV_WC_RNR_RETRY_EXC_ERR, "the SEND");
  expect.qp_state(state, IBV_QPS_ERR);
  // A lower bound holds on any machine: each retry waits at least the timer.
  expect.that(took >= 0.9 * retries * wait,
              "the SEND failed after " + std::to_string(took) + " s, less than " + std::to_string(retries) +
                  " RNR waits of " + std::to_string(wait) + " s");
  expect.within(took, retries * wait);
  client_finish(s);
  return expect.verdict(name);
}

int rnr0_client(Session& s) { return rnr_client(s, "rnr-retry-0"); }
int rnr1_client(Session& s) { return rnr_client(s, "rnr-retry-1"); }

/// The server of rnr-retry-0 and -1: no RECV at all; it still answers, with RNR NAKs, and
/// its QP stays in RTS (an RNR is the sender's problem, not an error of the receiver's).
int rnr_server_named(Session& s, const char* name) {
  return ordinary_server(s, name, ServerPlan{0, kMessageBytes, 0, IBV_QPS_RTS}, [](Expect& e, const ServerSeen& seen) {
    e.that(seen.recvs.empty(), "a RECV completed on a server that posted none");
    e.qp_state(seen.qp_state, IBV_QPS_RTS);
    explain("server", "", "", "post RECVs before saying READY (lesson 01's step 9)");
  });
}
int rnr0_server(Session& s) { return rnr_server_named(s, "rnr-retry-0"); }
int rnr1_server(Session& s) { return rnr_server_named(s, "rnr-retry-1"); }

/// rnr-retry-7, the client: the SEND retries forever; once the server posts its RECV
/// (when we tell it to), the next retry lands and the SEND succeeds.
int rnr7_client(Session& s) {
  client_connect(s);
  const Stopwatch clock;
  post_send_msg(s, 1, kMessageBytes);
  const std::optional<ibv_wc> early = poll_one("client", s.send_cq.get(), kForeverWatch_s, clock);
  LOG(data, "step 5: client: telling the server to post its RECV now");
  s.channel->send(common::encode_ready(), s.timeout());
  const std::optional<ibv_wc> wc = poll_one("client", s.send_cq.get(), s.timeout(), clock);
  const double took = clock.seconds();
  char why[200];
  std::snprintf(why, sizeof why,
                "rnr_retry 7 means retry forever: the SEND waited %.2f ms after each RNR NAK until a RECV was there",
                rnr_timer_s(kRnrTimerCode) * 1e3);
  explain("client", why, "SEND, RNR NAK, SEND, RNR NAK ... every 164 ms, then SEND and ACK",
          "rnr_retry 7 hides a receiver that never posts: the sender hangs instead of failing; prefer a finite "
          "count and post RECVs before READY");
  Expect expect("client");
  expect.none(early, "the SEND, before the server posted a RECV");
  expect.status(wc, IBV_WC_SUCCESS, "the SEND");
  // The watch, then at most one more RNR wait before the retry that finds the RECV.
  expect.within(took, kForeverWatch_s + rnr_timer_s(kRnrTimerCode));
  client_finish(s);
  return expect.verdict("rnr-retry-7");
}

int rnr7_server(Session& s) {
  connect_session(s);
  s.channel->send(common::encode_ready(), s.timeout());
  LOG(slow, "step 4: server said READY with no RECV posted");
  s.channel->receive_ready(s.timeout());
  post_recv_at(s, 0, kMessageBytes);
  LOG(data, "step 5: server: posted the RECV the SEND has been waiting for");
  const Stopwatch clock;
  const std::optional<ibv_wc> wc = poll_one("server", s.recv_cq.get(), s.timeout(), clock);
  s.channel->receive_done(s.timeout());
  Expect expect("server");
  expect.status(wc, IBV_WC_SUCCESS, "the late RECV");
  s.channel->send(common::encode_done(), s.timeout());
  return expect.verdict("rnr-retry-7");
}

/// recv-too-small, the client: a 64-byte SEND into a 16-byte RECV.
int small_recv_client(Session& s) {
  client_connect(s);
  const Stopwatch clock;
  post_send_msg(s, 1, kMessageBytes);
  const std::optional<ibv_wc> wc = poll_one("client", s.send_cq.get(), s.timeout(), clock);
  const double took = clock.seconds();
  const ibv_qp_state state = report_qp_state("client", s.qp.get());
  const bool rxe = s.impl != Implementation::runtime;
  // The spec's answer is the runtime's: NAK invalid request. Kernel rxe 6.1 finds the
  // overflow while copying into the RECV and answers "remote operational error".
  const ibv_wc_status predicted = rxe ? IBV_WC_REM_OP_ERR : IBV_WC_REM_INV_REQ_ERR;
  explain("client", "one round trip: the responder refuses the SEND as soon as it sees it does not fit",
          rxe ? "SEND_ONLY of 64 bytes, NAK remote operational error (AETH syndrome 0x63)"
              : "SEND_ONLY of 64 bytes, NAK invalid request (AETH syndrome 0x61)",
          common::wc_status_remedy(predicted));
  Expect expect("client");
  expect.status(wc, predicted, "the SEND");
  expect.qp_state(state, IBV_QPS_ERR);
  expect.within(took, 0);
  client_finish(s);
  return expect.verdict("recv-too-small");
}

int small_recv_server(Session& s) {
  const ibv_wc_status predicted = s.impl != Implementation::runtime ? IBV_WC_LOC_QP_OP_ERR : IBV_WC_LOC_LEN_ERR;
  return ordinary_server(s, "recv-too-small", ServerPlan{1, 16, 1, IBV_QPS_ERR},
                         [predicted](Expect& e, const ServerSeen& seen) {
    e.that(!seen.recvs.empty(), "the 16-byte RECV did not complete");
    if (!seen.recvs.empty()) e.status(seen.recvs.front(), predicted, "the 16-byte RECV");
    e.qp_state(seen.qp_state, IBV_QPS_ERR);
    explain("server", "", "", common::wc_status_remedy(predicted));
  });
}

/// peer-killed, the client: wait until the server's process is gone (its TCP connection
/// closes when the server's witness exits, after the server's process), then SEND into
/// the void.
int killed_client(Session& s) {
  client_connect(s);
  LOG(slow, "step 5: client: waiting for the server's process to die (its TCP connection closes)");
  pollfd p{s.channel->fd(), POLLIN, 0};
  const int ready = ::poll(&p, 1, static_cast<int>(s.timeout() * 1000));
  if (ready <= 0)
    common::fail("the server's TCP connection did not close within -t " + std::to_string(s.timeout()) + " s",
                 "see the server's log: it should have killed itself after READY");
  char byte;
  const ssize_t got = ::read(s.channel->fd(), &byte, 1);
  if (got > 0) common::fail("the server sent more after READY", "both sides must run the same lesson 07 build");
  // got == 0: end of stream; got < 0 (ECONNRESET): the kernel reset it. Either way, gone.
  LOG(slow, "step 5: client: the server is gone; its QP with it");
  const Stopwatch clock;
  post_send_msg(s, 1, kMessageBytes);
  const std::optional<ibv_wc> wc = poll_one("client", s.send_cq.get(), s.timeout(), clock);
  const double took = clock.seconds();
  const ibv_qp_state state = report_qp_state("client", s.qp.get());
  const double each = ack_timeout_s(s.setup.timeout);
  const unsigned tries = s.setup.retry_cnt + 1u;
  char why[300];
  std::snprintf(why, sizeof why,
                "timeout %u = 4.096 us x 2^%u = %.1f ms per try (rxe counts it in whole kernel ticks); retry_cnt "
                "%u: the first send and %u resends, %u x %.1f ms = %.0f ms (measured %.0f ms)",
                s.setup.timeout, s.setup.timeout, each * 1e3, s.setup.retry_cnt, s.setup.retry_cnt, tries, each * 1e3,
                tries * each * 1e3, took * 1e3);
  explain("client", why, "the same SEND (same PSN) 1 + retry_cnt times, nothing back",
          common::wc_status_remedy(IBV_WC_RETRY_EXC_ERR));
  Expect expect("client");
  expect.status(wc, IBV_WC_RETRY_EXC_ERR, "the SEND");
  expect.qp_state(state, IBV_QPS_ERR);
  // rxe counts the timeout in whole kernel ticks (64 ms at HZ 250) and the first wait
  // may start mid-tick: 0.85 of the nominal total is a bound that holds for HZ >= 100.
  expect.that(took >= 0.85 * tries * each, "the SEND failed after " + std::to_string(took) + " s, less than " +
                                              std::to_string(tries) + " ACK timeouts");
  expect.within(took, tries * each);
  return expect.verdict("peer-killed");
}

[[noreturn]] int killed_server(Session& s) {
  // The TCP connection outlives this process (leave_witness, called by server.cpp before
  // the case opened the device), so the client SENDs only once our QP is destroyed. No
  // RECV is posted either: even a SEND that reached the QP would draw an RNR NAK, never
  // an ACK.
  connect_session(s);
  s.channel->send(common::encode_ready(), s.timeout());
  LOG(slow, "step 5: server: READY sent; now killing itself with SIGKILL, as a crash or `kill -9` would");
  std::fflush(stdout);
  std::fflush(stderr);
  ::kill(::getpid(), SIGKILL);
  ::pause();
  std::abort();
}

}  // namespace

void leave_witness(int tcp_fd, double timeout_s) {
  // A pidfd names this process for the witness. It becomes readable only once every
  // thread has exited, and a thread sets that state (do_exit: exit_notify) after it has
  // dropped its address space and its files and run the releases that queued: the last
  // release of the device's file destroys the QP (ib_uverbs_close, synchronously).
  const int self = static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0));
  if (self < 0)
    common::fail(std::string("pidfd_open: ") + std::strerror(errno), "peer-killed needs Linux 5.3 or later");
  const pid_t pid = ::fork();
  if (pid < 0) common::fail(std::string("fork: ") + std::strerror(errno), "see the error; then run the case again");
  if (pid == 0) {
    // The witness: it must hold no device file and map none, either of which would keep
    // the QP alive until the witness itself exits. It holds none: the start-up check has
    // closed the device again, and the case opens it only after this fork. It keeps the
    // TCP socket and the pidfd, nothing else, and takes signals as any process does (the
    // server blocks SIGINT and SIGTERM in all its threads so that one thread takes them;
    // fork copies that mask).
    const unsigned low = static_cast<unsigned>(std::min(tcp_fd, self));
    const unsigned high = static_cast<unsigned>(std::max(tcp_fd, self));
    if (low > 0) ::close_range(0, low - 1, 0);
    if (high > low + 1) ::close_range(low + 1, high - 1, 0);
    ::close_range(high + 1, ~0U, 0);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    pollfd p{self, POLLIN, 0};
    while (::poll(&p, 1, static_cast<int>(timeout_s * 10 * 1000)) < 0 && errno == EINTR) {
    }
    ::_exit(0);  // closes the TCP connection: after this process, or after 10 x -t
  }
  ::close(self);
  LOG(slow, "step 1: server: a witness process (pid %d) holds the TCP connection open until this process has exited",
      static_cast<int>(pid));
}

/// The cases of this file, in the README's order (declared in cases.hpp).
std::vector<Case> receiver_cases() {
  Setup rnr0;
  rnr0.rnr_retry = 0;
  rnr0.min_rnr_timer = kRnrTimerCode;
  Setup rnr1 = rnr0;
  rnr1.rnr_retry = 1;
  Setup rnr7 = rnr0;
  rnr7.rnr_retry = 7;
  Setup killed;
  killed.retry_cnt = 3;
  return {
      {"rnr-retry-0", "a SEND with no RECV posted, rnr_retry 0", "client: IBV_WC_RNR_RETRY_EXC_ERR at the first RNR NAK",
       rnr0, rnr0_client, rnr0_server},
      {"rnr-retry-1", "a SEND with no RECV posted, rnr_retry 1",
       "client: IBV_WC_RNR_RETRY_EXC_ERR after one RNR wait", rnr1, rnr1_client, rnr1_server},
      {"rnr-retry-7", "a SEND with no RECV posted, rnr_retry 7 (forever), then a late RECV",
       "nothing fails: the SEND waits until the RECV is posted", rnr7, rnr7_client, rnr7_server},
      {"recv-too-small", "a 64-byte SEND into a 16-byte RECV",
       "kernel rxe: server IBV_WC_LOC_QP_OP_ERR, client IBV_WC_REM_OP_ERR; the runtime: IBV_WC_LOC_LEN_ERR and "
       "IBV_WC_REM_INV_REQ_ERR", Setup{}, small_recv_client, small_recv_server},
      {"peer-killed", "the server's process is killed; the client SENDs",
       "client: IBV_WC_RETRY_EXC_ERR after (retry_cnt + 1) ACK timeouts", killed, killed_client, killed_server,
       /*needs_server=*/true, /*server_dies=*/true},
  };
}

}  // namespace lesson07
