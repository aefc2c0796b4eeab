/**
 * @file lessons/02-cm-write-read/server.cpp
 * @brief Lesson 02 server: expose one buffer for one-sided RDMA WRITE and READ.
 *
 * The server's whole job is control path: listen, check the client's request, build a
 * QP, register a buffer that the remote side may read and write, and tell the client
 * where it is (addr, rkey, length) in the CM private data of its ConnectReply. Then it
 * waits for the client to leave. The client's WRITE and READ (steps 11-12) are executed
 * by the server's RDMA device alone: no RECV is posted, no completion is polled, no
 * server application code runs while its memory changes. (On Soft-RoCE the "device" is
 * the rxe driver, so the server host's CPU does the work in its kernel; on an RDMA NIC
 * no host CPU is involved at all.)
 *
 * The numbered steps are one story across server and client; the same numbers appear in
 * the log, the README walkthrough and the capture walkthrough.
 */
#include <atomic>
#include <arpa/inet.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "common/cm.hpp"
#include "common/device.hpp"
#include "common/dump.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/options.hpp"
#include "common/stop.hpp"
#include "common/private_data.hpp"
#include "common/qp_state.hpp"
#include "lesson02.hpp"

namespace {

/// What the command line adds to the shared options.
struct ServerOptions {
  double accept_timeout_s = 300;  ///< how long to wait for a (next) client
  double idle_timeout_s = 60;     ///< how long a connected client may take before it is dropped
  bool persistent = false;        ///< a failing client does not end the server
  unsigned clients = 0;           ///< clients to serve, then exit; 0: 1, or no limit with --persistent
  int responder_resources = -1;   ///< READs we serve at once; -1: what the client asks for
};

/// Step 2: an event channel and a cm_id, bound to the port, listening.
struct Listener {
  common::EventChannel channel;  ///< every CM event of the listener and its connections
  common::CmId id;               ///< the listening cm_id (destroyed before the channel)
};

Listener listen_for_clients(std::uint16_t port) {
  LOG(slow, "step 2: create CM event channel + cm_id, bind port %u, listen", port);
  Listener l;
  // All CM events (CONNECT_REQUEST, ESTABLISHED, DISCONNECTED ...) arrive on this
  // channel as messages from the kernel's RDMA CM (/dev/infiniband/rdma_cm).
  l.channel.reset(common::check_ptr(rdma_create_event_channel(), "rdma_create_event_channel",
                                    common::kNoRdmaCmRemedy));
  rdma_cm_id* raw = nullptr;
  // RDMA_PS_TCP: reliable-connection port space; its port numbers become the service ID
  // (0x0000000001060000 + port) that the client's ConnectRequest names.
  common::check_rc(rdma_create_id(l.channel.get(), &raw, nullptr, RDMA_PS_TCP), "rdma_create_id", "");
  l.id.reset(raw);
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;  // the wildcard address: any device, IPv4 or IPv6 clients
  any.sin6_port = htons(port);
  common::check_rc(rdma_bind_addr(l.id.get(), reinterpret_cast<sockaddr*>(&any)), "rdma_bind_addr",
                   "port " + std::to_string(port) + " may be in use by another RDMA CM program; choose another with -p");
  common::check_rc(rdma_listen(l.id.get(), 8), "rdma_listen", "");
  return l;
}

/// Step 14 (server side): wait until the client disconnects; log any device event meanwhile.
/// Returns false if the client stayed longer than @p idle_s (then we disconnect it).
/// (The DISCONNECTED event leaves our QP as it is: only our own rdma_disconnect moves it
/// to ERR, so its state here still shows what the client's operations did to it.)
bool wait_for_disconnect(rdma_event_channel* channel, rdma_cm_id* id, double idle_s) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(idle_s);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    // Two sources: CM events, and the device's asynchronous events. Some devices report
    // a client's bad rkey here as "QP access error" (Soft-RoCE does not: it only moves
    // our QP to ERR, which step 14 shows); either way the device refused the access
    // without us.
    pollfd fds[2] = {{channel->fd, POLLIN, 0}, {id->verbs->async_fd, POLLIN, 0}};
    const int rc = ::poll(fds, 2, static_cast<int>(std::min<long long>(left, 1000)));
    if (rc < 0 && errno != EINTR) common::check_rc(-1, "poll", "");
    if (rc <= 0) continue;
    if (fds[1].revents & POLLIN) common::log_async_event(id->verbs);
    if (fds[0].revents & POLLIN) {
      common::CmEvent ev = common::next_cm_event(channel, 0, "DISCONNECTED");
      if (ev->event == RDMA_CM_EVENT_DISCONNECTED) return true;
      LOG(warn, "ignoring CM event %s while connected", common::cm_event_text(*ev).c_str());
    }
  }
}

/// Steps 7-9 and 14 for one client. Returns false if the request was rejected.
bool serve_one(rdma_event_channel* channel, common::ConnectRequest req, const common::Options& opts,
               const ServerOptions& sopts) {
  LOG(slow, "step 7: CONNECT_REQUEST from %s; private data %s", req.peer.c_str(),
      common::hex_bytes(req.private_data.data(), req.private_data.size(), 12).c_str());
  common::ConnectIntent intent;
  try {
    intent = common::decode_connect(req.private_data.data(), req.private_data.size());
  } catch (const common::Error& e) {
    // Refuse with a reason the client can print. Nothing was allocated for it yet.
    common::reject_with_reason(req.id.get(), e.what());
    return false;
  }
  LOG(info, "step 7: the client will write %u byte(s)", intent.bytes);
  if (intent.bytes > opts.size) {
    common::reject_with_reason(req.id.get(), "the client wants to write " + std::to_string(intent.bytes) +
                                                 " bytes; the server's buffer is " + std::to_string(opts.size) +
                                                 " (start the server with -s " + std::to_string(intent.bytes) + ")");
    return false;
  }

  // Step 8: PD, CQ and QP on the device the CM picked for this connection (lesson 01
  // built these by hand; common/cm.cpp does the same), then the buffer the client may use.
  LOG(slow, "step 8: build PD/CQ/QP for this connection");
  common::CmQpResources res = common::create_cm_qp(req.id.get(), {1, 1});
  std::vector<char> buffer(opts.size, '\0');
  // REMOTE_WRITE and REMOTE_READ let the peer's WRITE and READ touch this memory with the
  // rkey; LOCAL_WRITE is required by verbs whenever REMOTE_WRITE is set.
  const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  common::Mr mr(common::check_ptr(ibv_reg_mr(res.pd.get(), buffer.data(), buffer.size(), access), "ibv_reg_mr",
                                  common::reg_mr_remedy()));
  LOG(slow, "step 8: register the buffer (%zu bytes) with REMOTE_READ | REMOTE_WRITE | LOCAL_WRITE: rkey=0x%08x",
      buffer.size(), mr->rkey);

  // Step 9: accept, telling the client where the buffer is. The rkey is a capability:
  // whoever holds it (and reaches this QP) may read and write these bytes.
  common::BufferAdvert advert;
  advert.addr = reinterpret_cast<std::uintptr_t>(buffer.data());
  advert.rkey = mr->rkey;
  advert.length = opts.size;
  const std::vector<std::uint8_t> data = common::encode_buffer(advert);
  rdma_conn_param conn{};
  conn.private_data = data.data();
  conn.private_data_len = static_cast<std::uint8_t>(data.size());
  // responder_resources: how many of the client's RDMA READs our QP serves at once. It
  // becomes our QP's max_dest_rd_atomic, and the ConnectReply carries it to the client,
  // whose CM makes it the client QP's max_rd_atomic. The event's responder_resources
  // holds what the client asked for (its initiator_depth).
  ibv_device_attr dev{};
  common::check_rc(ibv_query_device(req.id->verbs, &dev), "ibv_query_device", "");
  conn.responder_resources = static_cast<std::uint8_t>(
      sopts.responder_resources >= 0 ? sopts.responder_resources : std::min<int>(req.reads_wanted, dev.max_qp_rd_atom));
  if (sopts.responder_resources >= 0)
    LOG(warn, "step 9: --responder-resources %d: granting %u READ resource(s); the client asked for %u",
        sopts.responder_resources, conn.responder_resources, req.reads_wanted);
  conn.initiator_depth = 0;  // we issue no READs
  // How often the *client's* QP retries when our QP answers RNR NAK (no RECV posted). We
  // post no RECVs and the client sends nothing two-sided, so it never matters here.
  conn.rnr_retry_count = 7;
  LOG(slow, "step 9: rdma_accept; private data: addr=0x%llx rkey=0x%08x length=%u (%s)",
      static_cast<unsigned long long>(advert.addr), advert.rkey, advert.length,
      common::hex_bytes(data.data(), data.size(), 24).c_str());
  common::check_rc(rdma_accept(req.id.get(), &conn), "rdma_accept", "");
  // librdmacm's rdma_accept calls ibv_modify_qp itself: INIT -> RTR -> RTS with the
  // client's QPN and PSN from the ConnectRequest, and only then asks the kernel to send
  // the ConnectReply. So our QP can receive before we see ESTABLISHED.
  LOG(slow, "step 9: rdma_accept returned: librdmacm moved our QP to RTR and RTS before the ConnectReply left");
  common::dump_qp(res.get());
  common::expect_cm_event(channel, RDMA_CM_EVENT_ESTABLISHED, opts.timeout_s, "ESTABLISHED");
  LOG(slow, "step 9: ESTABLISHED: the client's ReadyToUse arrived (it changes no QP state)");

  // Steps 10-13 happen on the client and in our device; this process does nothing.
  LOG(data, "steps 10-13: the client WRITEs and READs our buffer; no code of ours runs on that path. "
            "Waiting for DISCONNECTED (up to %.0f s)", sopts.idle_timeout_s);
  if (!wait_for_disconnect(channel, req.id.get(), sopts.idle_timeout_s)) {
    LOG(warn, "the client stayed connected for %.0f s; disconnecting it (raise --idle-timeout for slow clients)",
        sopts.idle_timeout_s);
  } else {
    LOG(slow, "step 14: DISCONNECTED: the client is done");
    // Our QP's state now, before our own rdma_disconnect moves it to ERR: RTS after a
    // good client; ERR if our device refused one of its requests (a bad rkey, an access
    // outside the buffer), because the responder of an RC QP that NAKs a request with
    // "remote access error" moves its own QP to the error state too.
    const ibv_qp_state state = common::query_qp_state(res.get());
    if (state == IBV_QPS_ERR)
      LOG(warn, "step 14: our QP 0x%06x is in ERR: our device refused one of the client's requests and moved it "
                "there; this connection could carry nothing more", res.get()->qp_num);
    else
      LOG(slow, "step 14: our QP 0x%06x is still in %s", res.get()->qp_num, common::qp_state_name(state));
  }
  // Also the answer to the client's DisconnectRequest (the DisconnectReply).
  rdma_disconnect(req.id.get());
  LOG(data, "step 14: the buffer now starts with '%s'", common::printable(buffer.data(), buffer.size()).c_str());
  std::printf("server: buffer after the client: '%s'\n", common::printable(buffer.data(), buffer.size()).c_str());
  LOG(slow, "step 14: tearing down: QP, MR, CQ, PD, cm_id");
  // `mr`, then `res` (QP, CQ, PD), then req.id are destroyed here, in that order.
  return true;
}

int run_server(const common::Options& opts, const ServerOptions& sopts) {
  Listener listener = listen_for_clients(opts.port);
  const unsigned limit = sopts.clients != 0 ? sopts.clients : (sopts.persistent ? 0 : 1);
  // The summary line, printed at the end or when Ctrl-C / SIGTERM stops us
  // (common/stop.hpp): on another thread then, hence the atomic counters.
  std::atomic<unsigned> served{0}, rejected{0};
  common::SummaryOnStop summary([&] {
    return "server: " + std::to_string(served) + " client(s) served, " + std::to_string(rejected) + " rejected";
  });
  do {
    // Step 7: the client's ConnectRequest arrives as a CONNECT_REQUEST event carrying a
    // new cm_id (this connection's own) and the client's private data.
    LOG(slow, "step 7: wait for CONNECT_REQUEST (up to %.0f s)", sopts.accept_timeout_s);
    common::ConnectRequest req;
    try {
      req = common::wait_connect_request(listener.channel.get(), sopts.accept_timeout_s);
    } catch (const common::Error&) {
      if (!sopts.persistent) throw;
      LOG(info, "no further client within %.0f s: a persistent server ends here", sopts.accept_timeout_s);
      break;
    }
    try {
      if (serve_one(listener.channel.get(), std::move(req), opts, sopts)) ++served; else ++rejected;
    } catch (const common::Error& e) {
      // A persistent server outlives a client that misbehaves or vanishes mid-setup; all
      // of that client's objects were released on the way out of serve_one.
      if (!sopts.persistent) throw;
      LOG(warn, "client failed: %s; serving the next client", e.what());
    }
  } while (limit == 0 || served < limit);
  summary.print();
  return 0;
}

}  // namespace

/// Step 1: parse the command line, then run steps 2-14.
int main(int argc, char** argv) {
  common::Options opts;
  opts.port = lesson02::kDefaultPort;
  opts.size = lesson02::kDefaultBufferSize;
  ServerOptions sopts;
  CLI::App app{"Lesson 02 server: RDMA CM + one-sided RDMA WRITE and READ.\n"
               "Exposes one buffer (-s bytes) and tells each client its addr/rkey/length in the CM private data.",
               "server"};
  common::add_common_options(app, opts);
  app.get_option("--size")->description("size of the buffer the client may write and read");
  app.get_option("--port")->description("RDMA CM port to listen on");
  app.add_option("--accept-timeout", sopts.accept_timeout_s, "seconds to wait for a client to connect")
      ->check(common::seconds_between(1.0, 86400.0))->capture_default_str();
  app.add_option("--idle-timeout", sopts.idle_timeout_s, "seconds a connected client may stay before it is dropped")
      ->check(common::seconds_between(1.0, 86400.0))->capture_default_str();
  app.add_flag("--persistent",
               sopts.persistent, "keep serving when a client fails; without --clients, until none comes within --accept-timeout");
  app.add_option("--clients", sopts.clients,
                 "serve this many clients one after another, then exit (rejected ones do not count; default 1, "
                 "or no limit with --persistent)")
      ->check(CLI::Range(1u, 1000000u));
  app.add_option("--responder-resources", sopts.responder_resources,
                 "demonstration: grant this many READ resources instead of what the client asks for (0: none)")
      ->check(CLI::Range(0, 255));
  if (const auto code = common::parse_options(app, opts, argc, argv)) return *code;
  common::watch_stop_signals();
  LOG(slow, "step 1: server on RDMA CM port %u, buffer %u bytes%s", opts.port, opts.size,
      sopts.persistent ? ", persistent" : "");
  return common::run_main([&] { return run_server(opts, sopts); });
}
