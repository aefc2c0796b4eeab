/**
 * @file lessons/06-performance/server.cpp
 * @brief Lesson 06 server: serve every measurement one client asks for, and check the
 *        data it received.
 *
 * The client drives: before each measurement it sends a TEST (common/exchange.hpp) saying
 * what it will post; the server prepares its side (RECVs posted, its ring cleared or
 * filled), answers READY, takes part (echoes a ping-pong, completes the RECVs of a
 * stream, or nothing at all for WRITE and READ: one-sided), and after the client's DONE
 * checks the bytes and answers DONE, or ERROR with the first difference. The numbered
 * steps are the client's (client.cpp and the README); step 0 is the connection.
 */
#include <arpa/inet.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/options.hpp"
#include "common/stop.hpp"
#include "common/tcp.hpp"
#include "connection.hpp"
#include "measurement.hpp"
#include "message_bytes.hpp"
#include "waiting.hpp"

namespace {

using common::TestOp;
using common::TestPattern;
using common::TestSpec;
using lesson06::Connection;

/// How many RECVs each receiving measurement keeps posted at most: twice the window, so a
/// sender that fills its window still finds RECVs while we re-post the ones it consumed.
std::uint32_t recvs_for(const Connection& c, const TestSpec& t) {
  const std::uint32_t want = t.pattern == TestPattern::ping_pong ? 2 : 2 * t.window;
  return std::min({want, c.cap.max_recv_wr, t.iters});
}

/// The server's side of one measurement, from TEST to DONE.
class Measurement {
 public:
  Measurement(Connection& c, const TestSpec& t, std::vector<char>& reference, double timeout_s)
      : c_(c), t_(t), reference_(reference), timeout_s_(timeout_s) {}

  /// Check that the TEST fits this connection. @throws common::Error naming the limit.
  void check_fits() const {
    const std::string test = "TEST " + std::to_string(t_.number) + " asks for ";
    const char* remedy = "the client must ask only for sizes and windows it announced in its QP_INFO";
    if (t_.window > c_.max_window)
      common::fail(test + "a window of " + std::to_string(t_.window) + ", more than the " +
                       std::to_string(c_.max_window) + " this client announced",
                   remedy);
    if (std::size_t{t_.size} * t_.window > c_.ring_bytes)
      common::fail(test + std::to_string(t_.window) + " x " + std::to_string(t_.size) + " = " +
                       std::to_string(std::size_t{t_.size} * t_.window) + " bytes, more than the ring of " +
                       std::to_string(c_.ring_bytes) + " bytes registered for this client",
                   remedy);
  }

  /// Prepare our side before READY: the bytes to compare with, RECVs, our exposed ring.
  void prepare() {
    lesson06::fill_ring(reference_.data(), t_.size, t_.window, t_.number);
    const std::size_t ring = std::size_t{t_.size} * t_.window;
    switch (t_.op) {
      case TestOp::send:
      case TestOp::write_imm:
        if (t_.op == TestOp::write_imm) std::memset(c_.exposed.data(), 0, ring);
        for (std::uint32_t r = 0; r < recvs_for(c_, t_); ++r) post_recv(r);
        break;
      case TestOp::write: std::memset(c_.exposed.data(), 0, ring); break;  // a WRITE that never lands shows
      case TestOp::read: std::memcpy(c_.exposed.data(), reference_.data(), ring); break;  // what READs fetch
    }
    if (t_.use_event) lesson06::arm_both(c_);
  }

  /// Take part until the measurement's last message (nothing to do for WRITE and READ).
  void run() {
    if (t_.op == TestOp::write || t_.op == TestOp::read) return;  // one-sided: no server code at all
    ibv_wc wcs[16];
    for (std::uint32_t i = 0; i < t_.iters;) {
      const int n = lesson06::wait_for_completions(c_, c_.recv_cq.get(), wcs, 16, t_.use_event, timeout_s_, "message",
                                                   i + 1);
      for (int w = 0; w < n; ++w, ++i) receive(wcs[w], i);
      reap_echoes(false);
    }
    reap_echoes(true);
  }

  /// After the client's DONE: every slot of our ring holds the last message WRITE (or
  /// WRITE_WITH_IMM) put there, stamp included.
  void check_written() const {
    if (t_.op != TestOp::write && t_.op != TestOp::write_imm) return;
    const std::uint32_t slots = std::min(t_.window, t_.iters);
    for (std::uint32_t s = 0; s < slots; ++s) {
      const std::uint32_t last = s + (t_.iters - 1 - s) / t_.window * t_.window;  // the last message of slot s
      const long at = lesson06::message_difference(lesson06::slot_at(c_.exposed.data(), t_.size, s), reference_.data(),
                                                   t_.size, s, last + 1);
      if (at >= 0)
        common::fail("TEST " + std::to_string(t_.number) + ": slot " + std::to_string(s) + " of our ring differs at offset " +
                         std::to_string(at) + " from message " + std::to_string(last + 1) +
                         " after the client's WRITEs completed",
                     "this should never happen on RC; report it with both logs");
    }
  }

 private:
  char* recv_slot(std::uint32_t r) { return lesson06::slot_at(c_.local.data(), t_.size, r); }

  void post_recv(std::uint32_t r) {
    // A WRITE_WITH_IMM's data goes where its RETH says; its RECV only completes with the
    // immediate, so it needs no buffer at all.
    ibv_sge sge{reinterpret_cast<std::uintptr_t>(recv_slot(r)), t_.size, c_.local_mr->lkey};
    ibv_recv_wr wr{};
    wr.wr_id = r;
    wr.sg_list = t_.op == TestOp::write_imm ? nullptr : &sge;
    wr.num_sge = t_.op == TestOp::write_imm ? 0 : 1;
    ibv_recv_wr* bad = nullptr;
    common::check_rc(ibv_post_recv(c_.qp.get(), &wr, &bad), "ibv_post_recv", "the receive queue is full");
    ++recvs_posted_;
  }

  /// "message 17 of TEST 3", for an error message.
  std::string message_name(std::uint32_t i) const {
    return "message " + std::to_string(i + 1) + " of TEST " + std::to_string(t_.number);
  }

  /// Whether a WRITE_WITH_IMM's slot may hold @p stamp when message @p i's RECV completes:
  /// message i's own (i + 1), or that of a later message of the same slot, which may
  /// already have overwritten it. A message under 4 bytes holds too little of its number
  /// to tell.
  bool stamp_fits(std::uint32_t stamp, std::uint32_t i) const {
    if (t_.size < 4) return true;
    return stamp >= i + 1 && stamp <= t_.iters && (stamp - (i + 1)) % t_.window == 0;
  }

  /// Message @p i arrived in @p wc: check it, echo it (ping-pong), re-post its RECV.
  void receive(const ibv_wc& wc, std::uint32_t i) {
    if (wc.status != IBV_WC_SUCCESS) lesson06::failed_completion(wc, "message", i + 1);
    const auto r = static_cast<std::uint32_t>(wc.wr_id);
    const std::uint32_t slot = i % t_.window;
    long at = -1;
    if (wc.byte_len != t_.size)
      common::fail(message_name(i) + " is " + std::to_string(wc.byte_len) + " bytes, expected " +
                       std::to_string(t_.size),
                   "the client's TEST and its requests disagree; report it with both logs");
    if (t_.op == TestOp::write_imm) {
      if (wc.opcode != IBV_WC_RECV_RDMA_WITH_IMM || !(wc.wc_flags & IBV_WC_WITH_IMM) || ntohl(wc.imm_data) != i)
        common::fail(message_name(i) + ": completion opcode " + std::to_string(wc.opcode) + ", immediate " +
                         std::to_string(ntohl(wc.imm_data)) + "; expected RECV_RDMA_WITH_IMM with immediate " +
                         std::to_string(i),
                     "WRITE_WITH_IMMs complete RECVs in order on RC; report it with both logs");
      // The slot's bytes after the stamp, and a stamp of this message or of a later one
      // of the same slot: the client may already have written that one (message i's
      // completion at the client frees the slot before our RECV completion is polled).
      const char* bytes = lesson06::slot_at(c_.exposed.data(), t_.size, slot);
      at = lesson06::message_difference(bytes, reference_.data(), t_.size, slot, 0);
      if (at < 0 && !stamp_fits(lesson06::read_stamp(bytes, t_.size), i)) at = 0;
    } else {
      at = lesson06::message_difference(recv_slot(r), reference_.data(), t_.size, slot, i + 1);
    }
    if (at >= 0)
      common::fail(message_name(i) + " differs from the bytes expected at offset " + std::to_string(at),
                   "this should never happen on RC; report it with both logs");
    if (t_.pattern == TestPattern::ping_pong) {
      // The echo is sent from the RECV buffer itself; the buffer is posted again only once
      // the echo completed, so that no message can land where the device still reads.
      echo(r);
      reap_echoes(true);
    }
    // Re-post the RECV for a later message, but never more than the measurement sends:
    // a RECV left posted would take the next measurement's first message.
    if (recvs_posted_ < t_.iters) post_recv(r);
  }

  /// Send message in RECV slot @p r back (ping-pong), signaled, inline if asked and possible.
  void echo(std::uint32_t r) {
    if (echoes_in_flight_ == c_.cap.max_send_wr) reap_echoes_one();
    ibv_sge sge{reinterpret_cast<std::uintptr_t>(recv_slot(r)), t_.size, c_.local_mr->lkey};
    ibv_send_wr wr{};
    wr.wr_id = r;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_SEND;
    wr.send_flags = IBV_SEND_SIGNALED | (t_.use_inline && t_.size <= c_.cap.max_inline_data ? unsigned{IBV_SEND_INLINE} : 0u);
    ibv_send_wr* bad = nullptr;
    common::check_rc(ibv_post_send(c_.qp.get(), &wr, &bad), "ibv_post_send", "the send queue is full");
    ++echoes_in_flight_;
  }

  void reap_echoes_one() {
    ibv_wc wc{};
    lesson06::wait_for_completions(c_, c_.send_cq.get(), &wc, 1, t_.use_event, timeout_s_, "the echo of RECV slot",
                                   wc.wr_id);
    if (wc.status != IBV_WC_SUCCESS) lesson06::failed_completion(wc, "the echo of RECV slot", wc.wr_id);
    --echoes_in_flight_;
  }

  /// Take the echoes' completions that are there (@p all: wait for every one).
  void reap_echoes(bool all) {
    ibv_wc wcs[16];
    while (echoes_in_flight_ > 0) {
      const int n = lesson06::poll_now(c_.send_cq.get(), wcs, 16);
      for (int w = 0; w < n; ++w)
        if (wcs[w].status != IBV_WC_SUCCESS) lesson06::failed_completion(wcs[w], "the echo of RECV slot", wcs[w].wr_id);
      echoes_in_flight_ -= static_cast<std::uint32_t>(n);
      if (n == 0) {
        if (!all) return;
        reap_echoes_one();
      }
    }
  }

  Connection& c_;
  const TestSpec& t_;
  std::vector<char>& reference_;
  double timeout_s_;
  std::uint32_t recvs_posted_ = 0;
  std::uint32_t echoes_in_flight_ = 0;
};

/// Tell the peer why we give up (an ERROR message), if it still listens: a failure to
/// send it must not hide the cause being reported.
void tell_peer(common::Channel& channel, const std::string& why, double timeout_s) {
  try {
    channel.send(common::encode_error(why), timeout_s);
  } catch (const common::Error&) {
    LOG(warn, "could not tell the client why: the connection is gone");
  }
}

const char* pattern_name(TestPattern p) { return p == TestPattern::ping_pong ? "ping-pong" : "stream"; }

/// What the server checked of a measurement, for its log line.
const char* what_we_checked(TestOp op) {
  switch (op) {
    case TestOp::send: return "every message checked";
    case TestOp::write: return "every slot holds the last message written to it";
    case TestOp::write_imm: return "every immediate checked; every slot holds the last message written to it";
    case TestOp::read: return "the client checks what it read";
  }
  return "";
}

/// Step 0, then every measurement the client asks for.
int run_server(const common::Options& opts, double accept_timeout_s) {
  std::atomic<unsigned> served{0};
  common::SummaryOnStop summary([&] {
    return "server: " + std::to_string(served.load()) + " measurement(s) served, the data of each checked";
  });
  // Step 0: the connection (lessons 01 and 05 taught it): the device first (a host without
  // one is told at once, not when a client comes), then TCP, QP_INFO both ways, RTS.
  common::OpenPort port = common::open_port(opts.ib_dev, opts.ib_port, opts.gid_idx);
  common::Channel channel = common::Channel::accept_one(opts.port, accept_timeout_s);
  const common::QpInfo client = lesson06::receive_info(channel, opts.timeout_s);
  lesson06::log_info("received QP_INFO", client);
  const std::uint32_t max_size = client.qp.msg_size, max_window = client.qp.msg_count;
  if (max_size > lesson06::kMaxMessageSize || max_window == 0) {
    const std::string why = "the client announces messages of " + std::to_string(max_size) + " bytes and a window of " +
                            std::to_string(max_window) + "; this server takes 1.." +
                            std::to_string(lesson06::kMaxMessageSize) + " bytes and a window of 1 or more";
    tell_peer(channel, why, opts.timeout_s);
    common::fail(why, "run the client of the same build");
  }
  Connection c;
  try {
    c = lesson06::open_connection(std::move(port), max_size, max_window, true);
  } catch (const common::Error& e) {
    tell_peer(channel, std::string("the server cannot serve this: ") + e.what(), opts.timeout_s);
    throw;
  }
  const common::QpInfo ours = lesson06::make_info(c, max_size, max_window, true);
  lesson06::log_info("sending QP_INFO", ours);
  channel.send(common::encode_qp_info(ours), opts.timeout_s);
  lesson06::connect(c, client, true);
  std::vector<char> reference(c.ring_bytes);

  for (;;) {
    const common::Message m = channel.receive(opts.timeout_s + accept_timeout_s);
    if (m.type == common::MessageType::done) break;
    if (m.type == common::MessageType::error)
      common::fail("the client gave up: " + common::decode_error(m.body), "see the client's log");
    if (m.type != common::MessageType::test)
      common::fail("expected TEST or DONE from the client, got " + common::message_type_name(m.type),
                   "both sides must run lesson 06");
    TestSpec t;
    try {
      t = common::decode_test(m.body);
    } catch (const common::Error& e) {
      tell_peer(channel, e.what(), opts.timeout_s);
      throw;
    }
    Measurement measurement(c, t, reference, opts.timeout_s);
    try {
      measurement.check_fits();
      measurement.prepare();
      channel.send(common::encode_ready(), opts.timeout_s);
      measurement.run();
      // A WRITE or READ measurement runs without us: the DONE comes when the client is
      // through, however long that takes. A client that dies closes the connection, which
      // ends this wait at once.
      channel.receive_done(opts.timeout_s + accept_timeout_s);
      measurement.check_written();
    } catch (const common::Error& e) {
      // Tell the client why before we go, so its error names the cause, not a lost peer.
      tell_peer(channel, e.what(), opts.timeout_s);
      throw;
    }
    channel.send(common::encode_done(), opts.timeout_s);
    ++served;
    LOG(data, "TEST %u: %s %s of %u bytes x %u, window %u, %s%s: %s", t.number, lesson06::op_name(t.op),
        pattern_name(t.pattern), t.size, t.iters, t.window, t.use_event ? "event" : "busy",
        t.use_inline ? ", inline" : "", what_we_checked(t.op));
  }
  channel.send(common::encode_done(), opts.timeout_s);
  LOG(slow, "the client is done; tearing down QP, CQs, channel, MRs, PD, device");
  summary.print();
  return 0;
}

}  // namespace

/// Parse the command line, then serve one client.
int main(int argc, char** argv) {
  common::Options opts;
  opts.port = lesson06::kDefaultPort;
  double accept_timeout_s = 300;
  CLI::App app{"Lesson 06 server: serves the measurements of one lesson 06 client (RC over raw verbs,\n"
               "QP details over TCP) and checks the data they bring.",
               "server"};
  common::add_common_options(app, opts);
  app.add_option("--accept-timeout", accept_timeout_s, "seconds to wait for a client to connect")
      ->check(common::seconds_between(1.0, 86400.0))->capture_default_str();
  if (const auto code = common::parse_options(app, opts, argc, argv)) return *code;
  common::watch_stop_signals();
  LOG(slow, "step 0: server on TCP port %u", opts.port);
  return common::run_main([&] { return run_server(opts, accept_timeout_s); });
}
