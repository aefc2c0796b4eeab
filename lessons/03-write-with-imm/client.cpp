/**
 * @file lessons/03-write-with-imm/client.cpp
 * @brief Lesson 03 client: write -n messages into the server's ring with RDMA
 *        WRITE_WITH_IMM, the slot index as immediate data.
 *
 * The ring has slot_count slots; message k goes to slot (k-1) % slot_count. A slot may
 * be reused only after the server has read it, and only the server knows when that is:
 * it keeps a count of consumed messages in its registered memory, and when every slot
 * is in flight the client RDMA READs that counter (one-sided credit: no server application
 * code runs for it).
 */
#include <arpa/inet.h>
#include <endian.h>

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
#include "common/private_data.hpp"
#include "common/rdma_ops.hpp"
#include "lesson03.hpp"

namespace {

/// wr_ids: messages use their number; the counter READ uses this one.
constexpr std::uint64_t kCounterReadWrId = 0;

/// Post one one-sided work request (common/rdma_ops.hpp) and wait for its completion,
/// whatever its status.
ibv_wc post_and_wait(common::CmClient& c, ibv_wr_opcode op, std::uint64_t wr_id, ibv_sge sge, std::uint64_t remote_addr,
                     std::uint32_t rkey, std::uint32_t imm_data, double timeout_s, bool detail) {
  common::post_rdma(c.res.get(), op, wr_id, sge, remote_addr, rkey, imm_data, detail);
  const ibv_wc wc = common::poll_completion(c.res.cq.get(), timeout_s, common::wr_opcode_name(op));
  common::dump_wc(wc, detail && wc.status == IBV_WC_SUCCESS);
  return wc;
}

int run_client(const common::Options& opts, const std::string& server, double connect_timeout_s) {
  // Steps 2-3: connect with RDMA CM as in lesson 02 (common/cm.cpp spells the same calls),
  // telling the server how many messages of what size will come.
  LOG(slow, "step 3: connect to %s:%u with RDMA CM (%u messages of %u bytes in the private data)", server.c_str(),
      opts.port, opts.iters, opts.size);
  common::ConnectParams params;
  params.private_data = common::encode_connect({opts.size, opts.iters});
  params.initiator_depth = 1;  // we READ the server's counter
  params.sizes = {2, 1};
  common::CmClient c = common::connect_to(server, opts.port, params, connect_timeout_s);
  LOG(slow, "step 7: ESTABLISHED");
  common::dump_qp(c.res.get());
  const common::RingAdvert ring = common::decode_ring(c.private_data.data(), c.private_data.size());
  LOG(slow, "step 7: private data: ring=0x%llx rkey=0x%08x slot_size=%u slots=%u consumed_at=0x%llx counter_rkey=0x%08x",
      static_cast<unsigned long long>(ring.addr), ring.rkey, ring.slot_size, ring.slot_count,
      static_cast<unsigned long long>(ring.consumed_addr), ring.consumed_rkey);
  if (opts.size > ring.slot_size)
    common::fail("messages of " + std::to_string(opts.size) + " bytes do not fit the server's " +
                     std::to_string(ring.slot_size) + "-byte slots",
                 "use -s " + std::to_string(ring.slot_size) + " or less");

  // Local memory: [8 bytes where the counter READ lands | the message being sent].
  std::vector<char> local(8 + opts.size, '\0');
  common::Mr mr(common::check_ptr(ibv_reg_mr(c.res.pd.get(), local.data(), local.size(), IBV_ACCESS_LOCAL_WRITE),
                                  "ibv_reg_mr", common::reg_mr_remedy()));
  char* message_area = local.data() + 8;

  std::uint64_t consumed = 0;  // what the server last told us it has read
  for (std::uint32_t k = 1; k <= opts.iters; ++k) {
    const bool detail = k > 1;
    // Credit: message k reuses slot (k-1) % slots, which message k - slots occupied. If
    // the server has not consumed that one yet, READ its counter until it has.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(opts.timeout_s);
    while (k > consumed + ring.slot_count) {
      const ibv_sge sge{reinterpret_cast<std::uintptr_t>(local.data()), 8, mr->lkey};
      const ibv_wc wc = post_and_wait(c, IBV_WR_RDMA_READ, kCounterReadWrId, sge, ring.consumed_addr, ring.consumed_rkey, 0,
                                      opts.timeout_s, true);
      if (wc.status != IBV_WC_SUCCESS)
        common::fail(std::string("RDMA_READ of the server's counter failed: ") + ibv_wc_status_str(wc.status),
                     common::wc_status_remedy(wc.status));
      std::uint64_t be = 0;
      std::memcpy(&be, local.data(), 8);
      consumed = be64toh(be);
      LOG(data, "step 8: all %u slots in flight; READ the server's consumed counter: %llu", ring.slot_count,
          static_cast<unsigned long long>(consumed));
      if (k > consumed + ring.slot_count && std::chrono::steady_clock::now() > deadline)
        common::fail("the server has consumed only " + std::to_string(consumed) + " messages after " +
                         std::to_string(opts.timeout_s) + " s; slot " + std::to_string((k - 1) % ring.slot_count) +
                         " is still in use",
                     "the server may be stuck or gone; check its log");
    }

    // Step 8: the message goes into its slot; the immediate value names the slot, in
    // network byte order like every value the peer reads.
    const std::uint32_t slot = (k - 1) % ring.slot_count;
    const std::string message = lesson03::make_message(k, opts.iters, opts.size);
    std::memcpy(message_area, message.data(), message.size());
    const ibv_sge sge{reinterpret_cast<std::uintptr_t>(message_area), opts.size, mr->lkey};
    LOG(data, "step 8: post RDMA_WRITE_WITH_IMM message %u/%u len=%u -> slot %u, imm_data=%u", k, opts.iters,
        opts.size, slot, slot);
    const ibv_wc wc = post_and_wait(c, IBV_WR_RDMA_WRITE_WITH_IMM, k, sge, ring.addr + std::uint64_t{slot} * ring.slot_size,
                                    ring.rkey, htonl(slot), opts.timeout_s, detail);
    if (wc.status == IBV_WC_RNR_RETRY_EXC_ERR) {
      LOG(info, "step 8: the server had no RECV posted: its QP answered RNR NAK, ours waited min_rnr_timer and "
                "retried rnr_retry times, then gave up");
      common::fail("message " + std::to_string(k) + ": " + ibv_wc_status_str(wc.status) +
                       " (IBV_WC_RNR_RETRY_EXC_ERR): no RECV was posted on the server",
                   common::wc_status_remedy(wc.status));
    }
    if (wc.status != IBV_WC_SUCCESS)
      common::fail("message " + std::to_string(k) + ": " + ibv_wc_status_str(wc.status),
                   common::wc_status_remedy(wc.status));
  }

  // Step 10: every WRITE_WITH_IMM has completed (was ACKed), so the server has all of
  // them; now the DisconnectRequest.
  LOG(slow, "step 10: rdma_disconnect");
  common::check_rc(rdma_disconnect(c.id.get()), "rdma_disconnect", "");
  common::expect_cm_event(c.channel.get(), RDMA_CM_EVENT_DISCONNECTED, opts.timeout_s, "DISCONNECTED");
  std::printf("client: %u message(s) of %u bytes written with immediate data through %u slots\n", opts.iters,
              opts.size, ring.slot_count);
  return 0;
}

}  // namespace

/// Step 1: parse the command line, then run steps 2-10.
int main(int argc, char** argv) {
  common::Options opts;
  opts.port = lesson03::kDefaultPort;
  opts.size = 32;
  std::string server;
  double connect_timeout_s = 30;
  CLI::App app{"Lesson 03 client: RDMA WRITE_WITH_IMM into the server's ring; the slot index is the immediate value.",
               "client"};
  app.add_option("server", server, "the server's IP address")->required();
  common::add_common_options(app, opts);
  app.get_option("--size")->description("bytes per message (at most the server's slot size)");
  app.get_option("--port")->description("the server's RDMA CM port");
  app.add_option("--connect-timeout", connect_timeout_s, "seconds to keep retrying while nobody listens")
      ->check(common::seconds_between(0.0, 86400.0))->capture_default_str();
  if (const auto code = common::parse_options(app, opts, argc, argv)) return *code;
  LOG(slow, "step 1: client for %s:%u, %u message(s) of %u bytes", server.c_str(), opts.port, opts.iters, opts.size);
  return common::run_main([&] { return run_client(opts, server, connect_timeout_s); });
}
