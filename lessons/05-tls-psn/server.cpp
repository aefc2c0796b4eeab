/**
 * @file lessons/05-tls-psn/server.cpp
 * @brief Lesson 05 server: QP details with random PSNs exchanged over TLS 1.3, then a raw
 *        verbs RC connection per client; up to --max-clients clients at once, one thread each.
 *
 * Per client: TLS handshake (certificate verified; with --mutual the client's too) ->
 * receive its QP_INFO -> build its own PD, CQ, QP, buffers and slot (connection.hpp:
 * isolation) -> send our QP_INFO -> RTR/RTS with the exchanged random PSNs -> post a
 * RECV -> READY -> serve its SENDs until its goodbye. Nothing is allocated for a client
 * whose handshake or exchange fails, and everything it had is released when it leaves.
 * A client whose RDMA request our device refused (its QP is in ERR) is dropped; the
 * others carry on.
 */
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

#include "common/completion.hpp"
#include "common/device.hpp"
#include "common/errors.hpp"
#include "common/exchange.hpp"
#include "common/log.hpp"
#include "common/options.hpp"
#include "common/stop.hpp"
#include "common/qp_state.hpp"
#include "connection.hpp"
#include "tls.hpp"

namespace {

/// The pause after accept() fails (out of descriptors) before it is tried again.
constexpr std::chrono::seconds kAcceptBackoff{1};

struct ServerOptions {
  unsigned max_clients = lesson05::kDefaultMaxClients;  ///< clients served at once
  unsigned clients = 0;            ///< exit after this many sessions (0: no limit)
  double accept_timeout_s = 0;     ///< exit when idle this long (0: never)
  double idle_timeout_s = 600;     ///< how long a connected client may stay silent
  lesson05::TlsFiles tls;          ///< CA, certificate, key
  bool mutual = false;             ///< require and verify client certificates
};

/// What every client thread shares.
struct Shared {
  const common::OpenPort& port;     ///< the device and port, shared; PDs are per client
  const common::Options& opts;
  const ServerOptions& sopts;
  std::atomic<unsigned> active{0};    ///< clients holding a slot right now
  std::atomic<unsigned> finished{0};  ///< sessions ended (served or failed)
  std::atomic<unsigned> failed{0};    ///< sessions that ended in an error
  std::atomic<unsigned> refused{0};   ///< connections refused: server full
};

/// Steps 3-10 for one client, in its own thread.
void serve_client(Shared& s, SSL_CTX* ctx, common::Fd socket, std::string peer, bool slot_taken) {
  const double t = s.opts.timeout_s;
  try {
    // Step 3: the TLS handshake. Until it succeeds we know nothing about the peer, so
    // nothing RDMA has been allocated for it.
    lesson05::TlsChannel tls = lesson05::TlsChannel::accept(ctx, std::move(socket), peer, t);
    const std::string subject = tls.peer_subject();
    LOG(slow, "step 3: TLS with %s: %s%s%s", peer.c_str(), tls.describe().c_str(),
        subject.empty() ? "" : ", client certificate ", subject.c_str());
    if (!slot_taken) {
      // Client N+1: say why, over the verified channel, and hang up.
      const std::string reason = "server full: " + std::to_string(s.sopts.max_clients) +
                                 " clients connected; try again later";
      LOG(warn, "refusing %s: %s", peer.c_str(), reason.c_str());
      tls.send(common::encode_error(reason), t);
      tls.close();
      return;
    }
    // Step 4: the client's QP details. Garbage, a truncated frame or silence end here.
    const common::Message m = tls.receive(t);
    if (m.type != common::MessageType::qp_info)
      common::fail("expected QP_INFO from " + peer + ", got " + common::message_type_name(m.type),
                   "the client must run this lesson's client");
    const common::QpInfo remote = common::decode_qp_info(m.body);
    lesson05::log_info("step 4: received QP_INFO", remote);

    if (remote.qp.msg_size != s.opts.size) {
      // Both sides size their RECVs and areas with -s; a mismatch would only show later,
      // as a message that does not fit.
      const std::string reason = "the client's messages are " + std::to_string(remote.qp.msg_size) +
                                 " bytes, this server's slots " + std::to_string(s.opts.size) +
                                 "; use the same -s on both sides";
      tls.send(common::encode_error(reason), t);
      common::fail("refused " + peer + ": " + reason, "run the client with -s " + std::to_string(s.opts.size));
    }

    // Step 5: this client's own PD, buffers, slot, CQ and QP (connection.hpp: isolation).
    lesson05::Connection c = lesson05::open_connection(s.port, s.opts.size, true);
    LOG(slow, "step 5: PD, slot and QP 0x%06x for %s, our PSN 0x%06x (24 random bits from RAND_bytes)",
        c.qp->qp_num, peer.c_str(), c.psn);
    const common::QpInfo ours = lesson05::make_info(s.port, c);
    lesson05::log_info("step 6: sending QP_INFO", ours);
    tls.send(common::encode_qp_info(ours), t);

    // Step 7: RTR/RTS with the exchanged PSNs; a RECV before READY.
    common::connect_qp(c.qp.get(), s.port, remote.qp, c.psn);
    lesson05::post_recv(c);
    LOG(slow, "step 7: QP 0x%06x in RTS: we send from PSN 0x%06x, expect the client's from 0x%06x; READY",
        c.qp->qp_num, c.psn, remote.qp.psn);
    tls.send(common::encode_ready(), t);

    // Steps 8-9: serve SENDs until the goodbye. The client's WRITEs and READs of its slot
    // need no server application code: our device executes them, or refuses them.
    unsigned messages = 0;
    bool goodbye = false;
    for (;;) {
      ibv_wc wc{};
      const bool completed =
          lesson05::next_completion(c, wc, s.sopts.idle_timeout_s, "the next message from " + peer, tls.fd());
      if (completed && wc.status != IBV_WC_SUCCESS && wc.status != IBV_WC_WR_FLUSH_ERR)
        // One of our own requests failed (our acknowledging SEND: the client is gone).
        common::fail("completion for the next message from " + peer + " failed: " + ibv_wc_status_str(wc.status),
                     common::wc_status_remedy(wc.status));
      if (!completed || wc.status != IBV_WC_SUCCESS) {
        // The client closed its TLS connection, or our QP went to ERR without a request of
        // ours failing (its RECV was flushed). The responder of an RC QP that refuses a
        // request (an rkey of another PD, an address outside the slot) NAKs it and moves
        // its own QP to ERR: the state is how this side learns of it.
        if (common::query_qp_state(c.qp.get()) == IBV_QPS_ERR)
          common::fail("step 9: the QP of " + peer + " is in ERR: our device refused one of its requests "
                           "(a NAK went back) and the connection is over; the other clients are not affected",
                       "a client may touch its own slot only (the addr/rkey/length in its QP_INFO)");
        if (completed)
          common::fail("a RECV for " + peer + " was flushed but its QP is not in ERR", "report this with both logs");
        // Not a completed session: the client exited, was killed or lost its network
        // before its goodbye. It is counted with the failed ones.
        common::fail(peer + " closed its TLS connection after " + std::to_string(messages) +
                         " message(s), without a goodbye",
                     "the client exited or was killed mid-session; check its log");
      }
      if (wc.opcode != IBV_WC_RECV) continue;  // our acknowledgement's SEND completed
      if (wc.byte_len == 0) {
        LOG(slow, "step 10: goodbye from %s after %u message(s)", peer.c_str(), messages);
        goodbye = true;
        break;
      }
      ++messages;
      const std::string text = common::printable(c.recv_area(), wc.byte_len);
      LOG(data, "step 8: %s sent %u bytes: '%s'", peer.c_str(), wc.byte_len, text.c_str());
      lesson05::post_recv(c);
      // The acknowledgement quotes the message when it fits in one message of -s bytes,
      // else it is only "ack N bytes" (kMinSlotSize makes room for at least that).
      std::string ack = "ack " + std::to_string(wc.byte_len) + " bytes";
      if (ack.size() + text.size() + 4 <= c.size) ack += ": '" + text + "'";
      const std::size_t n = std::min<std::size_t>(ack.size(), c.size);
      std::memcpy(c.send_area(), ack.data(), n);
      lesson05::post_send(c, static_cast<std::uint32_t>(n));
    }
    if (goodbye) {
      // RC has no close: the client's goodbye completes only when our ACK reaches it. Were
      // that ACK lost after we destroyed the QP, the client would resend into nothing and
      // its goodbye would never complete (lesson 01). So we keep the QP until the client
      // says DONE (its goodbye completed), after telling it we are done too.
      tls.send(common::encode_done(), t);
      const common::Message bye = tls.receive(t);
      if (bye.type != common::MessageType::done)
        common::fail("expected DONE from " + peer + ", got " + common::message_type_name(bye.type),
                     "is this the lesson 05 client?");
      LOG(slow, "step 10: DONE exchanged with %s; releasing its QP, CQ, MRs, PD", peer.c_str());
    }
    tls.close();
    std::printf("server: client %s done: %u message(s)\n", peer.c_str(), messages);
  } catch (const std::exception& e) {
    // One client's failure is that client's only: its objects are already released.
    if (slot_taken) s.failed++;
    LOG(warn, "client %s dropped: %s", peer.c_str(), e.what());
  }
  if (slot_taken) {
    s.active--;
    s.finished++;
  }
}

int run_server(const common::Options& opts, const ServerOptions& sopts) {
  // Step 2: the device, opened once and shared (each client gets its own PD); TLS
  // context; listen.
  const common::OpenPort port = common::open_port(opts.ib_dev, opts.ib_port, opts.gid_idx);
  lesson05::SslCtx ctx = lesson05::make_tls_context(true, sopts.tls, sopts.mutual);
  lesson05::TlsListener listener(opts.port);
  LOG(slow, "step 2: TLS 1.3 with certificate %s%s; listening on TCP port %u for up to %u clients at once",
      sopts.tls.cert.c_str(), sopts.mutual ? ", client certificates required" : "", opts.port, sopts.max_clients);
  Shared s{port, opts, sopts};
  // The summary line, printed at the end or when Ctrl-C / SIGTERM stops us (common/stop.hpp).
  common::SummaryOnStop summary([&s] {
    return "server: " + std::to_string(s.finished) + " session(s), " + std::to_string(s.failed) + " failed, " +
           std::to_string(s.refused) + " refused (server full)";
  });
  // Each client's thread, and whether it has finished (finished ones are joined as we go,
  // so a long-running server does not pile up threads).
  std::list<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> threads;
  const auto reap = [&threads] {
    for (auto it = threads.begin(); it != threads.end();) {
      if (it->second->load()) {
        it->first.join();
        it = threads.erase(it);
      } else {
        ++it;
      }
    }
  };
  auto last_activity = std::chrono::steady_clock::now();
  unsigned accept_failures = 0;  // accept() errors in a row
  for (;;) {
    reap();
    if (sopts.clients && s.finished >= sopts.clients) break;
    const bool idle = s.active == 0;
    if (idle && sopts.accept_timeout_s > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - last_activity).count() > sopts.accept_timeout_s)
      break;
    std::string peer;
    common::Fd fd;
    try {
      fd = listener.try_accept_tcp(0.2, peer);  // short, so the exit conditions are checked often
    } catch (const common::Error& e) {
      // accept() itself failed, typically EMFILE: out of descriptors. The connection stays
      // queued and the listener readable, so trying again at once would spin a core
      // without end. Say it once, then try once a second until descriptors are free.
      if (accept_failures++ == 0)
        LOG(warn, "%s; remedy: %s. Retrying once a second", e.what(), e.remedy().c_str());
      std::this_thread::sleep_for(kAcceptBackoff);
      continue;
    }
    if (fd.get() < 0) continue;  // no connection in this period
    if (accept_failures > 0) {
      LOG(info, "accept works again after %u failed attempt(s)", accept_failures);
      accept_failures = 0;
    }
    last_activity = std::chrono::steady_clock::now();
    // Take a slot before the handshake, so at most max_clients ever hold RDMA resources.
    const bool slot = s.active.fetch_add(1) < sopts.max_clients;
    if (!slot) {
      s.active--;
      s.refused++;
    }
    LOG(slow, "step 3: connection from %s (%u active)%s", peer.c_str(), static_cast<unsigned>(s.active),
        slot ? "" : ": server full");
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::thread t([&s, c = ctx.get(), f = std::move(fd), peer, slot, done]() mutable {
      serve_client(s, c, std::move(f), peer, slot);
      done->store(true);
    });
    threads.emplace_back(std::move(t), done);
  }
  for (auto& t : threads) t.first.join();
  summary.print();
  return 0;
}

}  // namespace

/// Step 1: parse the command line, then run steps 2-10.
int main(int argc, char** argv) {
  common::Options opts;
  opts.port = lesson05::kDefaultPort;
  opts.size = lesson05::kDefaultSlotSize;
  ServerOptions sopts;
  std::string certs = "build/certs";
  CLI::App app{"Lesson 05 server: random PSNs exchanged over TLS 1.3, raw verbs RC, many clients at once.",
               "server"};
  common::add_common_options(app, opts);
  app.get_option("--port")->description("TCP port of the TLS exchange");
  app.get_option("--size")
      ->description("bytes per message and per client slot")
      ->check(common::size_at_least(lesson05::kMinSlotSize, lesson05::kMinSlotReason));
  app.add_option("--max-clients", sopts.max_clients, "clients served at once; the next one is refused")
      ->check(CLI::Range(1u, 1000u))->capture_default_str();
  app.add_option("--clients", sopts.clients, "exit after this many client sessions (0: never)")->capture_default_str();
  app.add_option("--accept-timeout", sopts.accept_timeout_s, "exit after this many seconds with no client (0: never)")
      ->check(common::seconds_between(0.0, 86400.0))->capture_default_str();
  app.add_option("--idle-timeout", sopts.idle_timeout_s, "seconds a connected client may stay silent")
      ->check(common::seconds_between(1.0, 86400.0))->capture_default_str();
  app.add_option("--certs", certs, "directory with ca.pem, server.pem, server.key (scripts/make-certs.sh)")
      ->capture_default_str();
  app.add_option("--ca", sopts.tls.ca, "CA certificate (default: CERTS/ca.pem)");
  app.add_option("--cert", sopts.tls.cert, "server certificate (default: CERTS/server.pem)");
  app.add_option("--key", sopts.tls.key, "server private key (default: CERTS/server.key)");
  app.add_flag("--mutual", sopts.mutual, "require and verify a client certificate (mutual TLS)");
  if (const auto code = common::parse_options(app, opts, argc, argv)) return *code;
  common::watch_stop_signals();
  if (sopts.tls.ca.empty()) sopts.tls.ca = certs + "/ca.pem";
  if (sopts.tls.cert.empty()) sopts.tls.cert = certs + "/server.pem";
  if (sopts.tls.key.empty()) sopts.tls.key = certs + "/server.key";
  LOG(slow, "step 1: server on TCP port %u, slots of %u bytes, up to %u clients", opts.port, opts.size,
      sopts.max_clients);
  return common::run_main([&] { return run_server(opts, sopts); });
}
