/**
 * @file userspace-roce/bench/roce_bench.cpp
 * @brief RC WRITE bandwidth and SEND/RECV ping-pong latency, over verbs or over TCP, and a
 *        verified bulk WRITE + READ transfer over verbs.
 *
 * @code
 *   roce_bench server [options]          waits for one client, serves one measurement
 *   roce_bench client HOST [options]     connects, measures, prints one RESULT line
 * @endcode
 *
 * Two shapes, each over two transports (--transport verbs|tcp, --test write_bw|pingpong):
 *
 *  - write_bw: the client keeps --depth RDMA WRITEs of --size bytes (64 KiB) in flight
 *    towards the server's buffer and busy-polls its CQ; bandwidth = bytes / time from the
 *    first measured post to the last completion. The server's buffer has one slot per
 *    outstanding WRITE; every WRITE carries a pattern and its iteration number, and at the
 *    end a SEND hands the server the pattern's seed: the server checks every slot holds
 *    exactly the last WRITE aimed at it, so a transport that loses or misplaces data
 *    fails the run instead of reporting a number. Over TCP: the same chunks written to a
 *    socket, acknowledged by the server once all have arrived, then checked the same way.
 *  - pingpong: the client SENDs --size (64) bytes, the server echoes them; latency is the
 *    round trip / 2, median and p99 over --iters round trips. Every echo is compared with
 *    what was sent. Over TCP: a TCP_NODELAY socket, send then recv.
 *
 * And one correctness shape, verbs only (--test verify_rw), used by the tests under packet
 * loss: the client RDMA WRITEs --iters messages of --size bytes (default 16 x 1 MiB) into
 * consecutive regions of the server's buffer, --depth in flight; the bytes are a pattern of
 * (seed, iteration, offset). A SEND after the WRITEs tells the server they are complete and
 * gives it the seed: it checks its whole buffer and answers VERDICT over TCP. Then the
 * client RDMA READs the buffer back in --size chunks, min(depth, 16) in flight (its QP's
 * max_rd_atomic, the server's max_dest_rd_atomic), into a separate buffer and compares it
 * byte for byte with what it wrote. A difference on either side names the first differing
 * offset with the expected and the received byte, and both sides exit 1. Both print
 * @code
 *   RESULT transport=verbs test=verify_rw size=1048576 iters=16 bytes=16777216 write_gbytes_per_s=0.31 read_gbytes_per_s=0.50 verified=yes
 * @endcode
 * Meant to be run under faults (scripts/userspace-roce.sh --drop/--reorder/--duplicate):
 * RC must retransmit its way through; while the client waits for completions it sends
 * PROGRESS messages over TCP, so the server's --timeout counts from the client's last
 * completion, not from the start of a slow phase.
 *
 * The result goes to stdout as one machine-readable line, e.g.
 * @code
 *   RESULT transport=verbs test=write_bw size=65536 iters=5000 depth=16 mtu=4096 seconds=0.21 gbytes_per_s=1.56
 *   RESULT transport=tcp test=pingpong size=64 iters=20000 median_us=9.81 p99_us=14.20 min_us=8.90 mean_us=10.02
 * @endcode
 * (gbytes_per_s is 10^9 bytes per second.) Everything else (setup narrative, warnings,
 * errors with their remedy) goes to stderr.
 *
 * Verbs connection setup is done by hand, as lesson 01 does: the client opens its device
 * and creates its RC QP, connects over TCP (retrying until the server listens) and sends
 * a HELLO with the run's parameters and its QPN, PSN, GID and buffer address/rkey; the
 * server checks the parameters, builds its side, posts its RECVs, moves its QP
 * INIT -> RTR -> RTS and answers with its own HELLO; the client moves its QP to RTS and
 * starts. Every field crosses the wire in an explicit big-endian encoding (class Writer /
 * Reader in messages.hpp), never as a raw struct. The same TCP connection carries the
 * end-of-run messages (ACK, VERDICT, DONE) and an ERROR text if either side fails, so the
 * peer stops at once with the reason instead of waiting for its timeout.
 *
 * The client decides the run's shape; the server follows it, and any of --transport,
 * --test, --size, --iters, --warmup, --depth, --inline given to the server must match.
 *
 * Every wait is bounded by --timeout seconds without progress: TCP calls through
 * SO_RCVTIMEO/SO_SNDTIMEO, CQ polling by a clock check every few thousand empty polls.
 * --poll spin (default) busy-polls the CQ; --poll yield calls sched_yield() between empty
 * polls, for runtimes whose progress thread needs the CPU. The write_bw server, which only
 * waits, always yields (so do the verify_rw server's CQ waits).
 *
 * Self-contained on purpose: it links only libibverbs (and the header-only CLI11), so it
 * runs unchanged on kernel Soft-RoCE, on hardware, and on the userspace RoCE runtime.
 *
 * The parts, each a .hpp (and a .cpp but for params) in userspace-roce/bench/: errors
 * (failing with the remedy, logging), params (the run's parameters), messages (the control
 * messages' encoding), control (the TCP control connection), pattern (write_bw's and
 * pingpong's data and its checks), endpoint (the verbs RC endpoint, posting, polling),
 * results (RESULT lines), verbs_tests (write_bw and pingpong over verbs), verify_rw,
 * tcp_tests (the TCP reference); and this file: the two roles and the command line.
 */
#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "control.hpp"
#include "endpoint.hpp"
#include "errors.hpp"
#include "messages.hpp"
#include "params.hpp"
#include "pattern.hpp"
#include "tcp_tests.hpp"
#include "verbs_tests.hpp"
#include "verify_rw.hpp"

namespace roce_bench {
namespace {

EndpointShape shape_of(const Params& p, bool server) {
  EndpointShape s;
  if (p.test == Test::write_bw) {
    s.buffer_bytes = slot_bytes(p) + kCheckBytes;
    s.remote_write = server;
    s.send_wr = server ? 1 : p.depth + 1;
    s.recv_wr = 1;
  } else if (p.test == Test::verify_rw) {
    // Server: [the target of the WRITEs and READs][check RECV]; client: [source][readback][check SEND].
    s.buffer_bytes = (server ? 1 : 2) * verify_bytes(p) + kCheckArea;
    s.remote_write = server;
    s.remote_read = server;
    s.send_wr = server ? 1 : std::max<std::uint32_t>(p.depth, verify_reads(p)) + 1;
    s.recv_wr = 1;
    s.rd_atomic = verify_reads(p);
  } else {
    s.buffer_bytes = 2 * std::size_t{kPingRing} * p.size;
    s.send_wr = kPingRing;
    s.recv_wr = kPingRing;
  }
  return s;
}

void check_limits(const Params& p) {
  if (p.test == Test::verify_rw) {
    if (p.transport != Transport::verbs)
      fail("--test verify_rw runs over verbs only", "drop --transport tcp (or use --transport verbs)");
    if (p.warmup != 0)
      fail("--test verify_rw has no warmup (asked: " + std::to_string(p.warmup) + ")", "drop --warmup");
    if (verify_bytes(p) > kMaxSlotBytes)
      fail("--iters " + std::to_string(p.iters) + " x --size " + std::to_string(p.size) + " = " +
               std::to_string(verify_bytes(p)) + " bytes to transfer, above the 1 GiB limit",
           "lower --iters or --size");
  }
  if (p.test == Test::write_bw && slot_bytes(p) > kMaxSlotBytes)
    fail("--depth " + std::to_string(p.depth) + " x --size " + std::to_string(p.size) + " = " +
             std::to_string(slot_bytes(p)) + " bytes of buffer, above the 1 GiB limit",
         "lower --depth or --size");
}

/// Post the RECVs a side needs before its peer may send: the write_bw server's one RECV for
/// the check SEND, or kPingRing RECVs for ping-pong.
void post_initial_recvs(Endpoint& ep, const Params& p, bool server) {
  if (p.test == Test::write_bw) {
    if (server) post_recv(ep, ep.buf() + slot_bytes(p), kCheckBytes, kRecvTag);
    return;
  }
  if (p.test == Test::verify_rw) {
    if (server) post_recv(ep, ep.buf() + verify_bytes(p), kCheckBytes, kRecvTag);
    return;
  }
  for (std::uint64_t s = 0; s < kPingRing; ++s) post_recv(ep, recv_slot(ep, p, s), p.size, kRecvTag | s);
}

int run_client(Params p, const std::string& host) {
  p.apply_defaults();
  check_limits(p);
  std::optional<Endpoint> ep;
  Socket ctrl;
  try {
    if (p.transport == Transport::verbs) {
      ep.emplace(open_endpoint(p, shape_of(p, false)));
      post_initial_recvs(*ep, p, false);
    }
    ctrl = connect_with_retry(host, p.port, p.timeout_s);
    ctrl.set_timeouts(p.timeout_s);
    say("connected to %s: %s %s, %u x %u bytes after %u warmup%s", ctrl.peer().c_str(), transport_name(p.transport),
        test_name(p.test), p.iters, p.size, p.warmup,
        p.test != Test::pingpong ? (", depth " + std::to_string(p.depth)).c_str() : "");
    ctrl.send_msg(Msg::hello, encode_hello(p, ep ? ep->info() : QpInfo{}));
    Params echoed;
    QpInfo remote;
    decode_hello(ctrl.expect_msg(Msg::hello), echoed, remote);
    if (p.transport == Transport::tcp) {
      if (p.test == Test::pingpong) ctrl.set_nodelay(true);
      if (p.test == Test::write_bw) tcp_write_bw_client(p, ctrl);
      else tcp_pingpong_client(p, ctrl);
      return 0;
    }
    // The server's QP is in RTS and its RECVs are posted: once ours is in RTS we may send.
    connect_endpoint(*ep, remote);
    if (p.test == Test::write_bw) verbs_write_bw_client(p, ctrl, *ep, remote);
    else if (p.test == Test::verify_rw) verbs_verify_rw_client(p, ctrl, *ep, remote);
    else verbs_pingpong_client(p, ctrl, *ep);
    return 0;
  } catch (const Error& e) {
    ctrl.send_error_quietly(std::string("client: ") + e.what());
    throw;
  }
}

/// Which options the server was given explicitly: those must match the client's.
struct ServerExplicit {
  bool transport = false, test = false, size = false, iters = false, warmup = false, depth = false,
       inline_ = false;
};

int run_server(Params p, const ServerExplicit& given) {
  Socket ctrl = accept_one(p.port, p.timeout_s);
  ctrl.set_timeouts(p.timeout_s);
  try {
    Params c;
    QpInfo remote;
    decode_hello(ctrl.expect_msg(Msg::hello), c, remote);
    say("client %s asks for %s %s, %u x %u bytes after %u warmup", ctrl.peer().c_str(), transport_name(c.transport),
        test_name(c.test), c.iters, c.size, c.warmup);
    const auto mismatch = [&](const std::string& what, const std::string& ours, const std::string& theirs) {
      fail("the client asks for " + what + " " + theirs + ", this server runs " + what + " " + ours,
           "give both sides the same " + what + " (or leave it out on the server: it then follows the client)");
    };
    if (given.transport && c.transport != p.transport)
      mismatch("--transport", transport_name(p.transport), transport_name(c.transport));
    if (given.test && c.test != p.test) mismatch("--test", test_name(p.test), test_name(c.test));
    p.transport = c.transport;
    p.test = c.test;
    p.apply_defaults();
    if (given.size && c.size != p.size) mismatch("--size", std::to_string(p.size), std::to_string(c.size));
    if (given.iters && c.iters != p.iters) mismatch("--iters", std::to_string(p.iters), std::to_string(c.iters));
    if (given.warmup && c.warmup != p.warmup) mismatch("--warmup", std::to_string(p.warmup), std::to_string(c.warmup));
    if (given.depth && c.depth != p.depth) mismatch("--depth", std::to_string(p.depth), std::to_string(c.depth));
    if (given.inline_ && c.use_inline != p.use_inline) mismatch("--inline", p.use_inline ? "on" : "off", c.use_inline ? "on" : "off");
    if (c.size == 0 || c.size > kMaxSize || c.iters == 0 || c.iters > kMaxIters || c.warmup > kMaxIters ||
        c.depth == 0 || c.depth > kMaxDepth)
      fail("the client's HELLO has out-of-range values (size " + std::to_string(c.size) + ", iters " +
               std::to_string(c.iters) + ", warmup " + std::to_string(c.warmup) + ", depth " + std::to_string(c.depth) + ")",
           "both sides must run the same roce_bench build");
    p.size = c.size;
    p.iters = c.iters;
    p.warmup = c.warmup;
    p.depth = c.depth;
    p.use_inline = c.use_inline;
    check_limits(p);

    if (p.transport == Transport::tcp) {
      ctrl.send_msg(Msg::hello, encode_hello(p, QpInfo{}));
      if (p.test == Test::pingpong) ctrl.set_nodelay(true);
      if (p.test == Test::write_bw) tcp_write_bw_server(p, ctrl);
      else tcp_pingpong_server(p, ctrl);
      return 0;
    }
    Endpoint ep = open_endpoint(p, shape_of(p, true));
    // RECVs before RTR: the client may send as soon as it has our HELLO.
    post_initial_recvs(ep, p, true);
    connect_endpoint(ep, remote);
    QpInfo ours = ep.info();
    if (p.test == Test::write_bw) {
      ours.addr = reinterpret_cast<std::uintptr_t>(ep.buf());
      ours.rkey = ep.mr->rkey;
      ours.length = static_cast<std::uint32_t>(slot_bytes(p));
    } else if (p.test == Test::verify_rw) {
      ours.addr = reinterpret_cast<std::uintptr_t>(ep.buf());
      ours.rkey = ep.mr->rkey;
      ours.length = static_cast<std::uint32_t>(verify_bytes(p));  // <= 1 GiB (check_limits)
    }
    ctrl.send_msg(Msg::hello, encode_hello(p, ours));
    if (p.test == Test::write_bw) verbs_write_bw_server(p, ctrl, ep);
    else if (p.test == Test::verify_rw) verbs_verify_rw_server(p, ctrl, ep);
    else verbs_pingpong_server(p, ctrl, ep);
    return 0;
  } catch (const Error& e) {
    ctrl.send_error_quietly(std::string("server: ") + e.what());
    throw;
  }
}

}  // namespace
}  // namespace roce_bench

int main(int argc, char** argv) {
  using namespace roce_bench;
  Params p;
  std::string host, transport = "verbs", test = "write_bw", poll = "spin";
  CLI::App app{"roce_bench: RC WRITE bandwidth and SEND/RECV ping-pong latency over verbs, with the\n"
               "same two shapes over TCP as the reference. Start `roce_bench server` first, then\n"
               "`roce_bench client HOST` with the same --transport and --test; the client prints\n"
               "one RESULT line on stdout.",
               "roce_bench"};
  app.require_subcommand(1, 1);
  CLI::App* server = app.add_subcommand(
      "server",
      "wait for one client and serve one measurement. The run's shape (--transport, --test, --size,\n"
      "--iters, --warmup, --depth, --inline) is the client's; any of them given here must match it");
  CLI::App* client = app.add_subcommand("client", "connect to HOST, measure, print a RESULT line");
  client->add_option("host", host, "the server's address (127.0.0.1 on this machine)")->required();
  ServerExplicit given;
  std::vector<std::pair<CLI::App*, std::array<CLI::Option*, 7>>> recorded;
  for (CLI::App* sub : {server, client}) {
    auto* o_transport = sub->add_option("--transport", transport, "verbs (RC QP) or tcp (the reference)")
                            ->check(CLI::IsMember({"verbs", "tcp"}))->capture_default_str();
    auto* o_test = sub->add_option("--test", test, "write_bw (RDMA WRITE bandwidth), pingpong (SEND/RECV latency) or "
                                                   "verify_rw (verbs only: iters x size bytes sent with RDMA WRITE, read back with "
                                                   "RDMA READ, checked byte for byte on both sides)")
                       ->check(CLI::IsMember({"write_bw", "pingpong", "verify_rw"}))->capture_default_str();
    auto* o_size = sub->add_option("-s,--size", p.size, "message size in bytes (default: 65536 for write_bw, 64 for pingpong, "
                                                        "1048576 for verify_rw)")
                       ->check(CLI::Range(1u, kMaxSize));
    auto* o_iters = sub->add_option("-n,--iters", p.iters, "measured iterations (default: 5000 for write_bw, 20000 for pingpong, "
                                                          "16 for verify_rw)")
                        ->check(CLI::Range(1u, kMaxIters));
    auto* o_warmup = sub->add_option("--warmup", p.warmup, "iterations run before the clock starts (default: 200 / 1000; "
                                                          "verify_rw has none)")
                         ->check(CLI::Range(0u, kMaxIters));
    auto* o_depth = sub->add_option("--depth", p.depth, "write_bw: WRITEs (or TCP chunks' slots) kept in flight; verify_rw: "
                                                        "WRITEs in flight, and min(depth, 16) READs")
                        ->check(CLI::Range(1u, kMaxDepth))->capture_default_str();
    auto* o_inline = sub->add_flag("--inline", p.use_inline, "verbs pingpong: post SENDs with IBV_SEND_INLINE");
    sub->add_option("-d,--ib-dev", p.ib_dev, "RDMA device (default: the first one)");
    sub->add_option("-i,--ib-port", p.ib_port, "port of the RDMA device")->check(CLI::Range(1, 255))->capture_default_str();
    sub->add_option("-g,--gid-idx", p.gid_idx, "GID index (the userspace runtime: 0; rxe: 1)")
        ->check(CLI::Range(0, 255))->capture_default_str();
    sub->add_option("-p,--port", p.port, "TCP port of the control (and TCP data) connection")
        ->check(CLI::Range(1, 65535))->capture_default_str();
    sub->add_option("--mtu", p.mtu, "largest path MTU to use (the port's active_mtu may lower it)")
        ->check(CLI::IsMember({1024u, 4096u}))->capture_default_str();
    sub->add_option("-t,--timeout", p.timeout_s, "seconds any wait may go without progress")
        ->check(CLI::Range(0.1, 3600.0))->capture_default_str();
    sub->add_option("--poll", poll, "verbs: spin (busy-poll the CQ) or yield (sched_yield between empty polls)")
        ->check(CLI::IsMember({"spin", "yield"}))->capture_default_str();
    sub->add_flag("-v,--verbose", g_verbose, "say more on stderr");
    recorded.push_back({sub, {o_size, o_iters, o_warmup, o_depth, o_inline, o_transport, o_test}});
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const bool is_server = server->parsed();
  g_role = is_server ? "roce_bench server" : "roce_bench client";
  for (const auto& [sub, opts] : recorded) {
    if (sub != (is_server ? server : client)) continue;
    p.warmup_set = opts[2]->count() > 0;
    given = ServerExplicit{opts[5]->count() > 0, opts[6]->count() > 0, opts[0]->count() > 0,
                           opts[1]->count() > 0, opts[2]->count() > 0, opts[3]->count() > 0,
                           opts[4]->count() > 0};
  }
  p.transport = transport == "tcp" ? Transport::tcp : Transport::verbs;
  p.test = test == "pingpong" ? Test::pingpong : test == "verify_rw" ? Test::verify_rw : Test::write_bw;
  p.poll = poll == "yield" ? PollMode::yield : PollMode::spin;
  try {
    return is_server ? run_server(p, given) : run_client(p, host);
  } catch (const Error& e) {
    say("ERROR: %s", e.what());
    if (!e.remedy().empty()) say("remedy: %s", e.remedy().c_str());
  } catch (const std::exception& e) {
    say("ERROR: %s", e.what());
  }
  return 1;
}
