/**
 * @file lessons/02-cm-write-read/client.cpp
 * @brief Lesson 02 client: connect with RDMA CM, then RDMA WRITE into and RDMA READ from
 *        the server's buffer, whose addr/rkey/length came in the CM private data.
 *
 * Steps 2-6 are the RDMA CM control plane, spelled out call by call: event channel and
 * cm_id, resolve the address (which device, GID and destination MAC reach the server),
 * resolve the route, build the QP, connect. The connection protocol exchanges QPNs and
 * PSNs, and librdmacm makes the ibv_modify_qp calls of lesson 01 itself (INIT in
 * rdma_create_qp, RTR and RTS when the ConnectReply arrives), so none appears here.
 * Steps 10-13 are the data plane: one-sided operations that the server's device executes
 * without any server application code.
 */
#include <netdb.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "common/cm.hpp"
#include "common/completion.hpp"
#include "common/device.hpp"
#include "common/dump.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/options.hpp"
#include "common/private_data.hpp"
#include "common/qp_state.hpp"
#include "lesson02.hpp"

namespace {

/// wr_id of the RDMA WRITE and of the RDMA READ (completions carry them back).
constexpr std::uint64_t kWriteWrId = 1;
constexpr std::uint64_t kReadWrId = 2;
/// The IB CM reject reason "invalid service ID": nobody listens on that port (yet).
constexpr int kNoListener = 8;

/// What the command line adds to the shared options.
struct ClientOptions {
  std::string server;                ///< the server's IP address or name
  std::string message = lesson02::kDefaultMessage;  ///< what to write
  bool size_given = false;           ///< -s given: pad or cut the message to -s bytes
  std::string range;                 ///< --range START:END of the server's buffer to READ
  double connect_timeout_s = 30;     ///< how long to retry while nobody listens
  bool bad_rkey = false;             ///< demonstrate a remote access error
  bool disconnect_early = false;     ///< connect, then leave without writing
  std::string bad_private_data;      ///< demonstrate a rejection: short | version | none
  int initiator_depth = 1;           ///< READs we keep in flight (0: demonstrate none)
};

/// The connection: declared in creation order, destroyed in reverse (QP, CQ, PD, cm_id,
/// channel); the MR is declared after it by the caller and so released first.
struct Connection {
  common::EventChannel channel;
  common::CmId id;
  common::CmQpResources res;
  common::BufferAdvert remote;  ///< step 10: where the server's buffer is
};

/// Step 6's private data: our intent, or a broken one for --bad-private-data.
std::vector<std::uint8_t> connect_private_data(const ClientOptions& copts, std::uint32_t bytes) {
  std::vector<std::uint8_t> data = common::encode_connect({bytes, 1});
  if (copts.bad_private_data == "short") data = {1, 1, 0, 4, 0, 0, 0x10, 0};  // declares a 4-byte body
  if (copts.bad_private_data == "version") data[0] = 9;
  if (copts.bad_private_data == "none") data.clear();
  return data;
}

/// Steps 2-6, once. Returns std::nullopt when nobody listens on the port yet.
std::optional<Connection> try_connect(const addrinfo& server, const common::Options& opts,
                                      const ClientOptions& copts, std::uint32_t bytes, bool quiet_retry,
                                      std::chrono::steady_clock::time_point deadline) {
  Connection c;
  // Step 2: the event channel receives the CM's answers; the cm_id is our endpoint.
  if (!quiet_retry) LOG(slow, "step 2: create CM event channel + cm_id");
  c.channel.reset(common::check_ptr(rdma_create_event_channel(), "rdma_create_event_channel",
                                    common::kNoRdmaCmRemedy));
  rdma_cm_id* raw = nullptr;
  common::check_rc(rdma_create_id(c.channel.get(), &raw, nullptr, RDMA_PS_TCP), "rdma_create_id", "");
  c.id.reset(raw);
  const int timeout_ms = static_cast<int>(opts.timeout_s * 1000);
  // Wait a little longer than the CM's own timeout, so that its verdict (ADDR_ERROR,
  // ROUTE_ERROR: "no ARP answer") arrives rather than our plain "no event".
  const double event_wait_s = opts.timeout_s + 2;

  // Step 3: which local RDMA device and GID reach this IP address? On RoCE this is where
  // all the address work happens: the CM looks up the IP route (which interface, so which
  // device and source GID) and resolves the next hop's MAC address with ARP, then binds
  // the cm_id to that device (id->verbs).
  if (!quiet_retry) LOG(slow, "step 3: resolve address %s:%u (rdma_resolve_addr, %d ms)", copts.server.c_str(), opts.port, timeout_ms);
  common::check_rc(rdma_resolve_addr(c.id.get(), nullptr, server.ai_addr, timeout_ms), "rdma_resolve_addr", "");
  common::expect_cm_event(c.channel.get(), RDMA_CM_EVENT_ADDR_RESOLVED, event_wait_s, "ADDR_RESOLVED");

  // Step 4: the path record. On InfiniBand this asks the subnet administrator; on RoCE
  // the CM builds it locally from what step 3 found (GIDs, MAC, hop limit, MTU) and
  // nothing is sent.
  if (!quiet_retry) LOG(slow, "step 4: resolve route (rdma_resolve_route, %d ms)", timeout_ms);
  common::check_rc(rdma_resolve_route(c.id.get(), timeout_ms), "rdma_resolve_route", "");
  common::expect_cm_event(c.channel.get(), RDMA_CM_EVENT_ROUTE_RESOLVED, event_wait_s, "ROUTE_RESOLVED");

  // Step 5: PD, CQ and QP on the device the CM chose (lesson 01 built them by hand).
  if (!quiet_retry) LOG(slow, "step 5: build PD/CQ/QP on %s", ibv_get_device_name(c.id->verbs->device));
  c.res = common::create_cm_qp(c.id.get(), {4, 1});

  // Step 6: rdma_connect sends the ConnectRequest: our QPN, our starting PSN, and our
  // private data. initiator_depth: how many RDMA READs we want to keep in flight. The
  // server answers with the number it grants (its responder_resources), and our CM makes
  // that our QP's max_rd_atomic: with 0, our own QP never sends a READ.
  const std::vector<std::uint8_t> data = connect_private_data(copts, bytes);
  rdma_conn_param conn{};
  conn.private_data = data.empty() ? nullptr : data.data();
  conn.private_data_len = static_cast<std::uint8_t>(data.size());
  conn.initiator_depth = static_cast<std::uint8_t>(copts.initiator_depth);
  if (copts.initiator_depth != 1)
    LOG(warn, "step 6: --initiator-depth %d: asking for %d READ(s) in flight", copts.initiator_depth,
        copts.initiator_depth);
  conn.responder_resources = 0;  // we serve no READs
  conn.retry_count = 7;          // resends after an ACK timeout (Soft-RoCE: 7 = forever)
  conn.rnr_retry_count = 7;      // how often the server's QP retries an RNR NAK of ours
  LOG(slow, "step 6: rdma_connect; private data %s", common::hex_bytes(data.data(), data.size(), 12).c_str());
  common::check_rc(rdma_connect(c.id.get(), &conn), "rdma_connect", "");
  // The answer may take a while: if the server's host cannot answer yet (its RDMA device
  // is not up), no ConnectReject comes back and the kernel's CM resends the
  // ConnectRequest itself (about every 6 s on RoCE). So wait until --connect-timeout, not -t.
  const double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
  common::CmEvent ev = common::next_cm_event(c.channel.get(), std::max(opts.timeout_s, left), "ESTABLISHED");
  if (ev->event == RDMA_CM_EVENT_REJECTED && ev->status == kNoListener) return std::nullopt;
  if (ev->event != RDMA_CM_EVENT_ESTABLISHED) common::fail_cm_event(*ev, "ESTABLISHED");
  // The kernel delivered the ConnectReply; inside rdma_get_cm_event librdmacm moved our
  // QP to RTR and RTS (with the server's QPN and PSN) and had the kernel send ReadyToUse,
  // then reported ESTABLISHED.
  LOG(slow, "step 6: ESTABLISHED: librdmacm moved our QP to RTR and RTS on the ConnectReply, then sent ReadyToUse");
  common::dump_qp(c.res.get());

  // Step 10: the server's ConnectReply carried where its buffer is. Check every field
  // before trusting it: these bytes came from the network.
  const std::vector<std::uint8_t> reply = common::event_private_data(*ev);
  c.remote = common::decode_buffer(reply.data(), reply.size());
  LOG(slow, "step 10: private data: remote addr=0x%llx rkey=0x%08x length=%u",
      static_cast<unsigned long long>(c.remote.addr), c.remote.rkey, c.remote.length);
  return c;
}

/// Steps 2-6 and 10, retried while the server is not listening yet.
Connection connect(const common::Options& opts, const ClientOptions& copts, std::uint32_t bytes) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(copts.server.c_str(), std::to_string(opts.port).c_str(), &hints, &found); rc != 0)
    common::fail("cannot resolve '" + copts.server + "': " + gai_strerror(rc), "give the server's IP address");
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> ai(found, freeaddrinfo);
  using Clock = std::chrono::steady_clock;
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(copts.connect_timeout_s));
  for (int attempt = 1;; ++attempt) {
    if (auto c = try_connect(*ai, opts, copts, bytes, attempt > 1, deadline)) return std::move(*c);
    if (std::chrono::steady_clock::now() >= deadline)
      common::fail("nobody listens on " + copts.server + ":" + std::to_string(opts.port) + " after " +
                       std::to_string(attempt) + " attempts",
                   "start the server first, or check the address and -p");
    if (attempt == 1) LOG(info, "nobody listens on %s:%u yet (REJECTED, invalid service ID); retrying for up to %.0f s",
                          copts.server.c_str(), opts.port, copts.connect_timeout_s);
    // A short pause between attempts, not a synchronisation: the next attempt asks again.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

/// Parse --range START:END (END exclusive); empty when @p text is not of that form.
std::optional<std::pair<std::uint32_t, std::uint32_t>> parse_range(const std::string& text) {
  unsigned start = 0, end = 0;
  char extra = 0;
  if (std::sscanf(text.c_str(), "%u:%u%c", &start, &end, &extra) != 2 || start >= end) return std::nullopt;
  return std::pair{start, end};
}

/// The range to READ: --range checked against the advertised length, or all of it.
std::pair<std::uint32_t, std::uint32_t> read_range(const std::string& text, std::uint32_t length) {
  if (text.empty()) return {0, length};
  const auto [start, end] = *parse_range(text);  // the syntax was checked at parse time
  if (end > length)
    common::fail("--range " + text + " reaches byte " + std::to_string(end) + " but the server advertised only " +
                     std::to_string(length) + " bytes; nothing was posted",
                 "choose END <= " + std::to_string(length));
  return {static_cast<std::uint32_t>(start), static_cast<std::uint32_t>(end)};
}

/// Steps 11 and 12: post one one-sided work request and wait for its completion.
ibv_wc post_and_wait(Connection& c, ibv_wr_opcode op, std::uint64_t wr_id, ibv_sge sge, std::uint64_t remote_addr,
                     std::uint32_t rkey, double timeout_s) {
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.opcode = op;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.send_flags = IBV_SEND_SIGNALED;
  // The two fields a one-sided operation adds: where in the peer's memory, and the key
  // that proves we may touch it. The peer's device checks both against its MR.
  wr.wr.rdma.remote_addr = remote_addr;
  wr.wr.rdma.rkey = rkey;
  common::dump_sge(op == IBV_WR_RDMA_WRITE ? "WRITE" : "READ", sge);
  common::dump_send_wr(wr);
  ibv_send_wr* bad = nullptr;
  common::check_rc(ibv_post_send(c.res.get(), &wr, &bad), "ibv_post_send", "");
  LOG(data, "poll %s", common::wr_opcode_name(op));
  const ibv_wc wc = common::poll_completion(c.res.cq.get(), timeout_s, common::wr_opcode_name(op));
  common::dump_wc(wc);
  return wc;
}

int run_client(const common::Options& opts, const ClientOptions& copts) {
  std::string message = copts.message;
  if (copts.size_given) {
    // Pad with a letter pattern (or cut) to exactly -s bytes, so every byte is checkable.
    for (std::size_t i = message.size(); i < opts.size; ++i) message += static_cast<char>('a' + i % 26);
    message.resize(opts.size);
  }
  const auto bytes = static_cast<std::uint32_t>(message.size());
  Connection c = connect(opts, copts, bytes);

  if (copts.disconnect_early) {
    LOG(warn, "--disconnect-early: leaving without writing (the server cannot even tell)");
  } else {
    const auto [start, end] = read_range(copts.range, c.remote.length);
    if (bytes > c.remote.length)
      common::fail("the message is " + std::to_string(bytes) + " bytes but the server's buffer is " +
                       std::to_string(c.remote.length),
                   "use a smaller -s or start the server with a larger -s");
    // Local memory: [what we write | where the READ lands]. LOCAL_WRITE, because the
    // READ response is written into it by our device.
    LOG(slow, "step 11: register local memory (%u bytes to write, %u to read back)", bytes, end - start);
    std::vector<char> local(bytes + (end - start), '\0');
    std::memcpy(local.data(), message.data(), bytes);
    common::Mr mr(common::check_ptr(ibv_reg_mr(c.res.pd.get(), local.data(), local.size(), IBV_ACCESS_LOCAL_WRITE),
                                    "ibv_reg_mr", common::reg_mr_remedy()));

    // Step 11: RDMA WRITE our bytes to the start of the server's buffer.
    const std::uint32_t rkey = copts.bad_rkey ? c.remote.rkey ^ 0x00abcd00u : c.remote.rkey;
    if (copts.bad_rkey) LOG(warn, "--bad-rkey: using rkey 0x%08x instead of 0x%08x", rkey, c.remote.rkey);
    LOG(data, "step 11: post RDMA_WRITE len=%u to addr=0x%llx", bytes, static_cast<unsigned long long>(c.remote.addr));
    ibv_sge sge{reinterpret_cast<std::uintptr_t>(local.data()), bytes, mr->lkey};
    const ibv_wc wc = post_and_wait(c, IBV_WR_RDMA_WRITE, kWriteWrId, sge, c.remote.addr, rkey, opts.timeout_s);
    if (copts.bad_rkey) {
      if (wc.status != IBV_WC_REM_ACCESS_ERR)
        common::fail(std::string("--bad-rkey: expected IBV_WC_REM_ACCESS_ERR, got ") + ibv_wc_status_str(wc.status),
                     "a device must refuse an unknown rkey; report this with both logs");
      // Our device moves the QP to ERROR as it reports the failed completion (rxe 6.1 posts
      // the completion, then moves the QP): ask the device rather than assume it, and give
      // it up to -t seconds to finish that move.
      ibv_qp_state state = common::query_qp_state(c.res.get());
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::duration<double>(opts.timeout_s);
      while (state != IBV_QPS_ERR && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        state = common::query_qp_state(c.res.get());
      }
      LOG(info, "step 11: the server's device refused rkey 0x%08x: NAK (remote access error) on the wire, "
                "IBV_WC_REM_ACCESS_ERR here; our QP is in %s (ibv_query_qp), and the server's is in ERR too (its "
                "responder moved it there when it sent the NAK): this connection can carry nothing more",
          rkey, common::qp_state_name(state));
      std::printf("client: the server refused the bad rkey 0x%08x (IBV_WC_REM_ACCESS_ERR), as it must\n", rkey);
      return 0;
    }
    if (wc.status != IBV_WC_SUCCESS)
      common::fail(std::string("RDMA_WRITE failed: ") + ibv_wc_status_str(wc.status),
                   common::wc_status_remedy(wc.status));

    // Step 12: RDMA READ the range back into the second half of our memory. A READ needs
    // one of our QP's max_rd_atomic slots (what the CM negotiated from our initiator_depth
    // and the server's responder_resources); with none, our device holds it back.
    ibv_qp_attr qp_attr{};
    ibv_qp_init_attr qp_init{};
    common::check_rc(ibv_query_qp(c.res.get(), &qp_attr, IBV_QP_MAX_QP_RD_ATOMIC, &qp_init), "ibv_query_qp", "");
    if (qp_attr.max_rd_atomic == 0)
      LOG(warn, "step 12: our QP's max_rd_atomic is 0: it may have no READ in flight, so our own device will hold "
                "this READ back and nothing goes on the wire");
    LOG(data, "step 12: post RDMA_READ len=%u from offset %u", end - start, start);
    sge = {reinterpret_cast<std::uintptr_t>(local.data() + bytes), end - start, mr->lkey};
    ibv_wc rwc{};
    try {
      rwc = post_and_wait(c, IBV_WR_RDMA_READ, kReadWrId, sge, c.remote.addr + start, rkey, opts.timeout_s);
    } catch (const common::Error& e) {
      if (qp_attr.max_rd_atomic != 0) throw;
      common::fail(std::string(e.what()) + ": our QP's max_rd_atomic is 0, so our device never sent the READ",
                   "connect with initiator_depth >= 1 (leave out --initiator-depth 0), and have the server grant "
                   "responder_resources >= 1");
    }
    if (rwc.status != IBV_WC_SUCCESS)
      common::fail(std::string("RDMA_READ failed: ") + ibv_wc_status_str(rwc.status),
                   common::wc_status_remedy(rwc.status));

    // Step 13: the bytes we wrote must come back where the range covers them.
    const char* readback = local.data() + bytes;
    for (std::uint32_t i = start; i < end && i < bytes; ++i)
      if (readback[i - start] != message[i])
        common::fail("readback differs at byte " + std::to_string(i) + ": wrote '" + message.substr(i, 1) +
                         "', read back '" + std::string(1, readback[i - start]) + "'",
                     "another client may have written the same buffer at the same time");
    const std::string shown = common::printable(readback, end - start);
    LOG(data, "step 13: readback '%s'", shown.c_str());
    std::printf("client: wrote %u bytes, read back %u bytes [%u, %u), verified: '%s'\n", bytes, end - start, start,
                end, shown.c_str());
  }

  // Step 14: DisconnectRequest; the server's CM answers with a DisconnectReply.
  LOG(slow, "step 14: rdma_disconnect");
  common::check_rc(rdma_disconnect(c.id.get()), "rdma_disconnect", "");
  common::expect_cm_event(c.channel.get(), RDMA_CM_EVENT_DISCONNECTED, opts.timeout_s, "DISCONNECTED");
  LOG(slow, "step 14: DISCONNECTED; tearing down QP, CQ, PD, cm_id, channel");
  return 0;
}

}  // namespace

/// Step 1: parse the command line, then run steps 2-14.
int main(int argc, char** argv) {
  common::Options opts;
  opts.port = lesson02::kDefaultPort;
  ClientOptions copts;
  CLI::App app{"Lesson 02 client: RDMA CM + one-sided RDMA WRITE and READ.\n"
               "Writes a message into the server's buffer, reads it back and checks it.",
               "client"};
  app.add_option("server", copts.server, "the server's IP address")->required();
  common::add_common_options(app, opts);
  app.get_option("--size")->description("write exactly this many bytes (the message, padded or cut)");
  app.get_option("--port")->description("the server's RDMA CM port");
  app.add_option("--message", copts.message, "what to write into the server's buffer")->capture_default_str();
  app.add_option("--range", copts.range, "READ only bytes START:END of the server's buffer (default: all of it)")
      ->check([](const std::string& text) {
        return parse_range(text) ? std::string() : "--range '" + text + "' is not START:END with START < END";
      });
  app.add_option("--connect-timeout", copts.connect_timeout_s, "seconds to keep retrying while nobody listens")
      ->check(common::seconds_between(0.0, 86400.0))->capture_default_str();
  app.add_flag("--bad-rkey", copts.bad_rkey, "demonstrate a remote access error: WRITE with a wrong rkey");
  app.add_flag("--disconnect-early", copts.disconnect_early, "connect, then leave without writing");
  app.add_option("--initiator-depth", copts.initiator_depth,
                 "demonstration: RDMA READs to ask to keep in flight (0: none, and the READ never leaves)")
      ->check(CLI::Range(0, 255))->capture_default_str();
  app.add_option("--bad-private-data", copts.bad_private_data,
                 "demonstrate a rejection: send private data that is short, of another version, or none")
      ->check(CLI::IsMember({"short", "version", "none"}));
  if (const auto code = common::parse_options(app, opts, argc, argv)) return *code;
  copts.size_given = app.count("--size") > 0;
  LOG(slow, "step 1: client for %s:%u", copts.server.c_str(), opts.port);
  return common::run_main([&] { return run_client(opts, copts); });
}
