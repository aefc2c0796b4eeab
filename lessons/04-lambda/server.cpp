/**
 * @file lessons/04-lambda/server.cpp
 * @brief Lesson 04 server: hold a dataset, take functions to run on it, send back answers.
 *
 * A client ships a function to the data instead of fetching the data: either the name of
 * a function compiled into this server, with arguments, or a small program in the
 * lesson's bytecode (bytecode/vm.hpp). Requests arrive by RDMA WRITE_WITH_IMM into a registered
 * request region (lesson 03's data-plus-notification); answers go back the same way into
 * the client's registered reply buffer.
 *
 * What the server never does: treat bytes from the network as code. A program is copied
 * out of the RDMA-writable region, verified, and interpreted; nothing here maps memory
 * executable (the smoke test checks /proc/PID/maps).
 *
 * The server sleeps in poll() on two file descriptors, the CQ's completion channel and the
 * CM event channel, instead of spinning: an idle server costs no CPU.
 */
#include <atomic>
#include <arpa/inet.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/cm.hpp"
#include "common/completion.hpp"
#include "common/device.hpp"
#include "common/dump.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/options.hpp"
#include "common/stop.hpp"
#include "common/private_data.hpp"
#include "common/rdma_ops.hpp"
#include "bytecode/assembler.hpp"
#include "lesson04.hpp"
#include "protocol.hpp"
#include "bytecode/vm.hpp"

namespace {

/// RECVs kept posted: each request consumes one (its WRITE_WITH_IMM's notification).
constexpr std::uint32_t kRecvs = 4;
/// The request region's size: room for the largest request.
constexpr std::size_t kRequestRegionBytes = 4096;
static_assert(lambda::kMaxRequestBytes <= kRequestRegionBytes, "the largest request must fit the region");

struct ServerOptions {
  std::uint32_t elements = lesson04::kDefaultElements;  ///< dataset size
  unsigned clients = 1;           ///< clients to serve before exiting
  bool persistent = false;        ///< serve without end
  double accept_timeout_s = 300;  ///< how long to wait for a (next) client
  double idle_timeout_s = 60;     ///< how long a connected client may stay silent
  std::uint64_t step_budget = 1'000'000;  ///< the most instructions one program may run
};

/// Step 5 and after each request: post one RECV without buffers (lesson 03: the
/// WRITE_WITH_IMM's data goes to the request region; the RECV carries the notification).
void post_recv(ibv_qp* qp, std::uint64_t wr_id) {
  ibv_recv_wr wr{};
  wr.wr_id = wr_id;
  ibv_recv_wr* bad = nullptr;
  common::check_rc(ibv_post_recv(qp, &wr, &bad), "ibv_post_recv", "");
}

/// Steps 8-9: decode, verify and run one request (already copied out of the region).
lambda::Response execute(std::span<const std::uint8_t> bytes, std::uint32_t imm,
                         std::span<const std::uint8_t> dataset, const ServerOptions& sopts,
                         lambda::Request& request) {
  lambda::Response response;
  response.id = imm;
  std::string error;
  const auto decoded = lambda::decode_request(bytes, error, &request);
  if (!decoded) {
    LOG(warn, "step 8: request refused: %s", error.c_str());
    response.status = lambda::Status::bad_request;
    response.detail = error;
    request.out_slots = 0;  // the answer carries no slots
    return response;
  }
  request = *decoded;
  response.id = request.id;
  std::array<std::int64_t, lambda::kMaxOut> slots{};
  const std::span<std::int64_t> out(slots.data(), request.out_slots);
  lambda::RunResult result;
  if (request.kind == lambda::Kind::call) {
    const char* name = lambda::function_name(request.function);
    LOG(data, "step 9: call %s(%lld, %lld) by name: server code, no verification needed", name ? name : "?",
        static_cast<long long>(request.args[0]), static_cast<long long>(request.args[1]));
    result = lambda::call_function(request.function, request.args, dataset, out);
  } else {
    // Step 8: verify before anything runs. The bytes are our private copy: the client can
    // rewrite the request region at any moment, so checking the region and then running
    // from it would let it swap the program after the check.
    std::vector<lambda::Insn> program;
    const lambda::Verdict verdict = lambda::verify(request.program, program);
    if (verdict.status != lambda::Status::ok) {
      LOG(warn, "step 8: program refused by the verifier: %s: %s", lambda::status_name(verdict.status),
          verdict.detail.c_str());
      response.status = verdict.status;
      response.pc = verdict.pc;
      response.detail = verdict.detail;
      return response;
    }
    LOG(data, "step 8: program of %zu instructions verified; step 9: interpret it (budget %llu steps)",
        program.size(), static_cast<unsigned long long>(sopts.step_budget));
    const std::uint64_t budget =
        request.step_budget != 0 && request.step_budget < sopts.step_budget ? request.step_budget : sopts.step_budget;
    result = lambda::run(program, request.args, dataset, out, budget);
  }
  response.status = result.status;
  response.pc = result.pc;
  response.result = result.r0;
  response.steps = result.steps;
  response.detail = result.detail;
  response.out.assign(slots.begin(), slots.begin() + std::min<std::size_t>(result.out_used, request.out_slots));
  return response;
}

/// Steps 4-10 for one client. Returns false if its request was rejected.
bool serve_one(rdma_event_channel* cm, common::ConnectRequest req, const std::vector<std::uint8_t>& dataset,
               const common::Options& opts, const ServerOptions& sopts) {
  LOG(slow, "step 4: CONNECT_REQUEST from %s", req.peer.c_str());
  try {
    common::decode_connect(req.private_data.data(), req.private_data.size());
  } catch (const common::Error& e) {
    common::reject_with_reason(req.id.get(), e.what());
    return false;
  }

  // Step 5: the QP (with a completion channel: we sleep until work arrives), the dataset
  // (REMOTE_READ: a client may fetch it, to compare), the request region (REMOTE_WRITE:
  // requests land there) and the responses' staging buffers (local only).
  LOG(slow, "step 5: build PD/CQ/QP, register the dataset and the request region, post %u RECVs", kRecvs);
  common::CmQpResources res = common::create_cm_qp(req.id.get(), {kRecvs, kRecvs, true});
  std::vector<std::uint8_t> request_region(kRequestRegionBytes, 0);
  std::vector<std::uint8_t> staging(kRecvs * lambda::kMaxResponseBytes, 0);
  common::Mr data_mr(common::check_ptr(
      ibv_reg_mr(res.pd.get(), const_cast<std::uint8_t*>(dataset.data()), dataset.size(), IBV_ACCESS_REMOTE_READ),
      "ibv_reg_mr", common::reg_mr_remedy()));
  common::Mr request_mr(common::check_ptr(ibv_reg_mr(res.pd.get(), request_region.data(), request_region.size(),
                                                     IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE),
                                          "ibv_reg_mr", common::reg_mr_remedy()));
  common::Mr staging_mr(common::check_ptr(ibv_reg_mr(res.pd.get(), staging.data(), staging.size(), 0), "ibv_reg_mr",
                                          common::reg_mr_remedy()));
  LOG(slow, "step 5: dataset: addr=0x%llx rkey=0x%08x length=%zu (REMOTE_READ)",
      static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(dataset.data())), data_mr->rkey, dataset.size());
  LOG(slow, "step 5: request region: addr=0x%llx rkey=0x%08x length=%zu (REMOTE_WRITE)",
      static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(request_region.data())), request_mr->rkey,
      request_region.size());
  for (std::uint32_t i = 0; i < kRecvs; ++i) post_recv(res.get(), i);
  common::check_rc(ibv_req_notify_cq(res.cq.get(), 0), "ibv_req_notify_cq", "");

  // Step 6: accept, telling the client where the data and the request region are.
  common::RegionsAdvert advert;
  advert.data = {reinterpret_cast<std::uintptr_t>(dataset.data()), data_mr->rkey,
                 static_cast<std::uint32_t>(dataset.size())};
  advert.request = {reinterpret_cast<std::uintptr_t>(request_region.data()), request_mr->rkey,
                    static_cast<std::uint32_t>(request_region.size())};
  const std::vector<std::uint8_t> data = common::encode_regions(advert);
  rdma_conn_param conn{};
  conn.private_data = data.data();
  conn.private_data_len = static_cast<std::uint8_t>(data.size());
  conn.responder_resources = req.reads_wanted > 0 ? 1 : 0;  // the client may READ the dataset
  conn.rnr_retry_count = 7;
  LOG(slow, "step 6: rdma_accept; private data %s", common::hex_bytes(data.data(), data.size(), 36).c_str());
  common::check_rc(rdma_accept(req.id.get(), &conn), "rdma_accept", "");
  common::expect_cm_event(cm, RDMA_CM_EVENT_ESTABLISHED, opts.timeout_s, "ESTABLISHED");
  LOG(slow, "step 6: ESTABLISHED; waiting for requests (asleep in poll until one arrives)");

  unsigned served = 0, refused = 0;
  for (;;) {
    // Asleep until a completion (a request's notification) or a CM event (the client's
    // DISCONNECTED) arrives: common::sleep_until_completion polls both descriptors.
    const common::Wakeup wake = common::sleep_until_completion(res.channel.get(), cm->fd, sopts.idle_timeout_s);
    if (wake == common::Wakeup::timeout) {
      LOG(warn, "no request for %.0f s: disconnecting this client (raise --idle-timeout)", sopts.idle_timeout_s);
      break;
    }
    if (wake == common::Wakeup::other_fd) {
      common::CmEvent ev = common::next_cm_event(cm, 0, "DISCONNECTED");
      if (ev->event == RDMA_CM_EVENT_DISCONNECTED) {
        LOG(slow, "step 13: DISCONNECTED after %u request(s), %u refused or stopped", served, refused);
        break;
      }
      LOG(warn, "ignoring CM event %s", common::cm_event_text(*ev).c_str());
      continue;
    }
    ibv_wc wc{};
    while (ibv_poll_cq(res.cq.get(), 1, &wc) == 1) {
      if (wc.status != IBV_WC_SUCCESS) {
        common::dump_wc(wc);
        // A failed response WRITE: the client's reply buffer refused it (bad rkey or
        // bounds). Our QP is now in the error state; this client is done.
        common::fail(std::string("completion failed: ") + ibv_wc_status_str(wc.status),
                     common::wc_status_remedy(wc.status));
      }
      if (wc.opcode != IBV_WC_RECV_RDMA_WITH_IMM) continue;  // a response WRITE completed
      // Step 8: copy the request out of the RDMA-writable region, then work on the copy.
      const std::uint32_t imm = ntohl(wc.imm_data);
      const std::size_t length = std::min<std::size_t>(wc.byte_len, request_region.size());
      const std::vector<std::uint8_t> bytes(request_region.begin(), request_region.begin() + static_cast<std::ptrdiff_t>(length));
      LOG(data, "step 8: request %u arrived (%zu bytes); copied out of the request region", imm, length);
      lambda::Request request;
      const lambda::Response response = execute(bytes, imm, dataset, sopts, request);
      ++served;
      if (response.status != lambda::Status::ok) ++refused;
      LOG(data, "step 10: request %u: %s, result %lld, %llu steps, %zu slot(s)%s%s", response.id,
          lambda::status_name(response.status), static_cast<long long>(response.result),
          static_cast<unsigned long long>(response.steps), response.out.size(), response.detail.empty() ? "" : ": ",
          response.detail.c_str());
      post_recv(res.get(), kRecvs + served);
      if (request.reply_length < lambda::kResponseHeaderBytes) {
        // Nowhere to answer: the request was too broken to name a reply buffer.
        LOG(warn, "request %u names no reply buffer; it gets no answer", imm);
        continue;
      }
      // Step 10: the answer goes straight into the client's reply buffer, with the
      // request id as immediate data: the client's RECV completes with it.
      const std::vector<std::uint8_t> answer = lambda::encode_response(response);
      std::uint8_t* slot = staging.data() + (served % kRecvs) * lambda::kMaxResponseBytes;
      std::memcpy(slot, answer.data(), answer.size());
      const ibv_sge sge{reinterpret_cast<std::uintptr_t>(slot), static_cast<std::uint32_t>(answer.size()),
                        staging_mr->lkey};
      common::post_rdma(res.get(), IBV_WR_RDMA_WRITE_WITH_IMM, served, sge, request.reply_addr, request.reply_rkey,
                        htonl(response.id), served > 1);
    }
  }
  rdma_disconnect(req.id.get());
  std::printf("server: client %s: %u request(s) answered, %u refused or stopped\n", req.peer.c_str(), served, refused);
  return true;
}

int run_server(const common::Options& opts, const ServerOptions& sopts) {
  // Step 2: the dataset, stored as 64-bit big-endian integers: it is readable over RDMA,
  // so it has a byte order of its own, not this host's.
  const std::vector<std::uint8_t> dataset = lesson04::make_dataset(sopts.elements);
  LOG(slow, "step 2: dataset of %u 64-bit big-endian integers, value[i] = (i * 7919 + 13) %% 1000", sopts.elements);

  LOG(slow, "step 2: create CM event channel + cm_id, bind port %u, listen", opts.port);
  common::CmListener listener = common::listen_on(opts.port);
  // The summary line, printed at the end or when Ctrl-C / SIGTERM stops us
  // (common/stop.hpp): on another thread then, hence the atomic counters.
  std::atomic<unsigned> served{0}, rejected{0};
  common::SummaryOnStop summary([&] {
    return "server: " + std::to_string(served) + " client(s) served, " + std::to_string(rejected) + " rejected";
  });
  do {
    LOG(slow, "step 4: wait for CONNECT_REQUEST (up to %.0f s)", sopts.accept_timeout_s);
    common::ConnectRequest req;
    try {
      req = common::wait_connect_request(listener.channel.get(), sopts.accept_timeout_s);
    } catch (const common::Error&) {
      if (!sopts.persistent) throw;
      LOG(info, "no further client within %.0f s: a persistent server ends here", sopts.accept_timeout_s);
      break;
    }
    try {
      if (serve_one(listener.channel.get(), std::move(req), dataset, opts, sopts)) ++served; else ++rejected;
    } catch (const common::Error& e) {
      // One client's failure (a reply buffer that refused our WRITE, a vanished peer)
      // ends that client only; its objects were released on the way out.
      LOG(warn, "client failed: %s; serving the next client", e.what());
      ++served;
    }
  } while (sopts.persistent || served < sopts.clients);
  summary.print();
  return 0;
}

}  // namespace

/// Step 1: parse the command line, then run steps 2-13.
int main(int argc, char** argv) {
  common::Options opts;
  opts.port = lesson04::kDefaultPort;
  ServerOptions sopts;
  CLI::App app{"Lesson 04 server: ship the function to the data. Holds a dataset; runs catalogue functions "
               "and verified bytecode programs on it; answers by RDMA WRITE_WITH_IMM.",
               "server"};
  common::add_common_options(app, opts);
  app.get_option("--port")->description("RDMA CM port to listen on");
  app.add_option("--elements", sopts.elements, "number of 64-bit integers in the dataset")
      ->check(CLI::Range(1u, 1u << 24))->capture_default_str();
  app.add_option("--steps", sopts.step_budget, "the most instructions one program may execute")
      ->check(CLI::Range(std::uint64_t{1}, lambda::kMaxSteps))->capture_default_str();
  app.add_option("--clients", sopts.clients, "serve this many clients, then exit")
      ->check(CLI::Range(1u, 1000000u))->capture_default_str();
  app.add_flag("--persistent", sopts.persistent, "serve clients until none comes within --accept-timeout")
      ->excludes("--clients");
  app.add_option("--accept-timeout", sopts.accept_timeout_s, "seconds to wait for a client")
      ->check(common::seconds_between(1.0, 86400.0))->capture_default_str();
  app.add_option("--idle-timeout", sopts.idle_timeout_s, "seconds a client may stay silent")
      ->check(common::seconds_between(1.0, 86400.0))->capture_default_str();
  if (const auto code = common::parse_options(app, opts, argc, argv)) return *code;
  common::watch_stop_signals();
  LOG(slow, "step 1: server on RDMA CM port %u, %u elements, step budget %llu", opts.port, sopts.elements,
      static_cast<unsigned long long>(sopts.step_budget));
  return common::run_main([&] { return run_server(opts, sopts); });
}
