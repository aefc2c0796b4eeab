/**
 * @file lessons/03-write-with-imm/server.cpp
 * @brief Lesson 03 server: a ring of slots the client fills with RDMA WRITE_WITH_IMM; each
 *        message announces itself through a RECV completion carrying the slot index.
 *
 * A plain RDMA WRITE is silent: the data lands and the server program never learns of it
 * (lesson 02). WRITE_WITH_IMM adds a notification: the data still goes straight to the
 * address the client names, but the last packet also carries 32 bits of immediate data
 * and consumes one RECV the server posted, producing an IBV_WC_RECV_RDMA_WITH_IMM
 * completion with imm_data and byte_len. One-sided data, two-sided signal.
 *
 * The numbered steps are one story across server and client (log, README, capture).
 */
#include <endian.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
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
#include "lesson03.hpp"

namespace {

/// What the command line adds to the shared options.
struct ServerOptions {
  std::uint32_t slots = lesson03::kDefaultSlots;  ///< ring slots (and RECVs posted)
  double accept_timeout_s = 300;                  ///< how long to wait for the client
  bool no_recv = false;                           ///< post no RECVs: show RNR NAKs
  int rnr_retry = -1;                             ///< RNR retries granted to the client
};

/// Step 6 and after each message: post one RECV with no scatter list. A WRITE_WITH_IMM's
/// data goes where the client's RETH says, so the RECV needs no buffer; it exists to be
/// consumed and to carry the completion (imm_data, byte_len) back to us.
void post_recv(ibv_qp* qp, std::uint64_t wr_id, bool detail) {
  ibv_recv_wr wr{};
  wr.wr_id = wr_id;
  wr.sg_list = nullptr;
  wr.num_sge = 0;
  common::dump_recv_wr(wr, detail);
  ibv_recv_wr* bad = nullptr;
  common::check_rc(ibv_post_recv(qp, &wr, &bad), "ibv_post_recv", "the receive queue is full (max_recv_wr)");
}

int run_server(const common::Options& opts, const ServerOptions& sopts) {
  // The summary line, printed at the end or when Ctrl-C / SIGTERM stops us
  // (common/stop.hpp): on another thread then, hence the atomic counter.
  std::atomic<std::uint32_t> received{0};
  common::SummaryOnStop summary([&received, slots = sopts.slots] {
    return "server: " + std::to_string(received) + " message(s) received through " + std::to_string(slots) +
           " slots, each announced by its immediate value";
  });

  // Step 2: listen (lesson 02 spelled out these calls; common/cm.cpp makes them).
  LOG(slow, "step 2: create CM event channel + cm_id, bind port %u, listen", opts.port);
  common::CmListener listener = common::listen_on(opts.port);

  // Step 4: the client's ConnectRequest says how many messages of what size will come.
  LOG(slow, "step 4: wait for CONNECT_REQUEST (up to %.0f s)", sopts.accept_timeout_s);
  common::ConnectRequest req = common::wait_connect_request(listener.channel.get(), sopts.accept_timeout_s);
  common::ConnectIntent intent;
  try {
    intent = common::decode_connect(req.private_data.data(), req.private_data.size());
  } catch (const common::Error& e) {
    common::reject_with_reason(req.id.get(), e.what());
    throw;
  }
  LOG(slow, "step 4: CONNECT_REQUEST from %s: %u message(s) of %u bytes", req.peer.c_str(), intent.messages,
      intent.bytes);
  if (intent.bytes > opts.size) {
    const std::string reason = "messages of " + std::to_string(intent.bytes) + " bytes do not fit " +
                               std::to_string(opts.size) + "-byte slots (start the server with -s " +
                               std::to_string(intent.bytes) + ")";
    common::reject_with_reason(req.id.get(), reason);
    common::fail("rejected the client: " + reason, "run the client with a smaller -s, or the server with a larger one");
  }

  // Step 5: the QP (receive queue deep enough for one RECV per slot), the ring, and the
  // consumed counter the client READs to learn which slots it may reuse.
  LOG(slow, "step 5: build PD/CQ/QP with room for %u RECVs", sopts.slots);
  common::CmQpResources res = common::create_cm_qp(req.id.get(), {1, sopts.slots});
  std::vector<char> ring(std::size_t{sopts.slots} * opts.size, '\0');
  auto consumed = std::make_unique<std::uint64_t>(0);
  // Two MRs, because the client needs two different rights: it may WRITE the slots
  // (REMOTE_WRITE, which verbs pairs with LOCAL_WRITE) but only READ the counter
  // (REMOTE_READ). One MR over both would let it READ the slots and forge the counter.
  common::Mr ring_mr(common::check_ptr(ibv_reg_mr(res.pd.get(), ring.data(), ring.size(),
                                                  IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE),
                                       "ibv_reg_mr", common::reg_mr_remedy()));
  common::Mr counter_mr(common::check_ptr(ibv_reg_mr(res.pd.get(), consumed.get(), sizeof *consumed,
                                                     IBV_ACCESS_REMOTE_READ),
                                          "ibv_reg_mr", common::reg_mr_remedy()));
  LOG(slow, "step 5: register the ring (%u slots x %u bytes): addr=0x%llx rkey=0x%08x length=%zu (REMOTE_WRITE)",
      sopts.slots, opts.size, static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(ring.data())),
      ring_mr->rkey, ring.size());
  LOG(slow, "step 5: register the consumed counter: addr=0x%llx rkey=0x%08x length=%zu (REMOTE_READ)",
      static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(consumed.get())), counter_mr->rkey,
      sizeof *consumed);

  // Step 6: one RECV per slot, posted before we accept: a WRITE_WITH_IMM that finds no
  // RECV is answered with an RNR NAK ("receiver not ready") and retried later.
  if (sopts.no_recv) {
    LOG(warn, "step 6: --no-recv: posting no RECV, so the client's first WRITE_WITH_IMM will be RNR NAKed");
  } else {
    LOG(fast, "step 6: post %u RECVs (no scatter list: the data goes where the client writes it)", sopts.slots);
    for (std::uint32_t i = 0; i < sopts.slots; ++i) post_recv(res.get(), i, i > 0);
  }

  // Step 7: accept, advertising the ring.
  common::RingAdvert advert;
  advert.addr = reinterpret_cast<std::uintptr_t>(ring.data());
  advert.rkey = ring_mr->rkey;
  advert.slot_size = opts.size;
  advert.slot_count = sopts.slots;
  advert.consumed_addr = reinterpret_cast<std::uintptr_t>(consumed.get());
  advert.consumed_rkey = counter_mr->rkey;
  const std::vector<std::uint8_t> data = common::encode_ring(advert);
  rdma_conn_param conn{};
  conn.private_data = data.data();
  conn.private_data_len = static_cast<std::uint8_t>(data.size());
  conn.responder_resources = req.reads_wanted > 0 ? 1 : 0;  // the client READs the counter
  conn.initiator_depth = 0;
  // rnr_retry_count in OUR accept is how often the CLIENT's QP retries after an RNR NAK
  // from us (7 = forever). With --no-recv a small number ends the demonstration quickly.
  const int rnr_retry = sopts.rnr_retry >= 0 ? sopts.rnr_retry : (sopts.no_recv ? 1 : 7);
  conn.rnr_retry_count = static_cast<std::uint8_t>(rnr_retry);
  LOG(slow, "step 7: rdma_accept; private data: ring=0x%llx rkey=0x%08x slot_size=%u slots=%u consumed_at=0x%llx "
            "counter_rkey=0x%08x (%s); client rnr_retry=%d",
      static_cast<unsigned long long>(advert.addr), advert.rkey, advert.slot_size, advert.slot_count,
      static_cast<unsigned long long>(advert.consumed_addr), advert.consumed_rkey,
      common::hex_bytes(data.data(), data.size(), 36).c_str(), rnr_retry);
  common::check_rc(rdma_accept(req.id.get(), &conn), "rdma_accept", "");
  common::expect_cm_event(listener.channel.get(), RDMA_CM_EVENT_ESTABLISHED, opts.timeout_s, "ESTABLISHED");
  LOG(slow, "step 7: ESTABLISHED");
  common::dump_qp(res.get());

  if (sopts.no_recv) {
    // Nothing can arrive: wait for the client to give up and leave.
    common::expect_cm_event(listener.channel.get(), RDMA_CM_EVENT_DISCONNECTED, 60, "DISCONNECTED");
    const bool untouched = ring[0] == '\0';
    LOG(info, "step 10: the client left; slot 0 is %s: the device looks for a RECV before it writes, so an RNR "
              "NAKed WRITE ONLY WITH IMMEDIATE writes nothing",
        untouched ? "still empty" : "NOT empty");
    std::printf("server: posted no RECV; slot 0 %s; the client saw RNR NAKs\n", untouched ? "untouched" : "written");
    return untouched ? 0 : 1;
  }

  // Step 9: one RECV completion per message. imm_data says which slot, byte_len how much.
  while (received < intent.messages) {
    const std::string what = "message " + std::to_string(received + 1) + " (a RECV_RDMA_WITH_IMM completion)";
    const ibv_wc wc = common::wait_for_completion(res.cq.get(), opts.timeout_s, what);
    const bool detail = received > 0;
    common::dump_wc(wc, detail);
    if (wc.opcode != IBV_WC_RECV_RDMA_WITH_IMM || !(wc.wc_flags & IBV_WC_WITH_IMM))
      common::fail(std::string("expected a RECV_RDMA_WITH_IMM completion, got ") + common::wc_opcode_name(wc.opcode),
                   "the client must use IBV_WR_RDMA_WRITE_WITH_IMM");
    // The immediate value travels in network byte order, as the client put it there.
    const std::uint32_t slot = ntohl(wc.imm_data);
    if (slot >= sopts.slots || wc.byte_len > opts.size)
      common::fail("message " + std::to_string(received + 1) + " names slot " + std::to_string(slot) + " with " +
                       std::to_string(wc.byte_len) + " bytes; the ring has " + std::to_string(sopts.slots) +
                       " slots of " + std::to_string(opts.size),
                   "the client does not follow the ring it was given");
    ++received;
    const char* message = ring.data() + std::size_t{slot} * opts.size;
    const std::string expected = lesson03::make_message(received, intent.messages, intent.bytes);
    if (wc.byte_len != intent.bytes || std::memcmp(message, expected.data(), wc.byte_len) != 0)
      common::fail("message " + std::to_string(received) + " in slot " + std::to_string(slot) + " is '" +
                       common::printable(message, wc.byte_len) + "' (" + std::to_string(wc.byte_len) + " bytes)",
                   "this should never happen on RC; report it with both logs");
    LOG(data, "step 9: imm_data=%u -> slot %u holds message %u (%u bytes): '%s'", slot, slot, received.load(), wc.byte_len,
        common::printable(message, wc.byte_len).c_str());
    // Free the slot: first the RECV for the message that will reuse it, then publish the
    // count (big-endian, like everything the peer reads) so the client may write again.
    post_recv(res.get(), received + sopts.slots, detail);
    std::atomic_ref<std::uint64_t>(*consumed).store(htobe64(received), std::memory_order_release);
  }

  // Step 10: the client disconnects when its last WRITE_WITH_IMM has completed.
  common::expect_cm_event(listener.channel.get(), RDMA_CM_EVENT_DISCONNECTED, opts.timeout_s, "DISCONNECTED");
  LOG(slow, "step 10: DISCONNECTED; tearing down QP, MR, CQ, PD, cm_id");
  summary.print();
  return 0;
}

}  // namespace

/// Step 1: parse the command line, then run steps 2-10.
int main(int argc, char** argv) {
  common::Options opts;
  opts.port = lesson03::kDefaultPort;
  opts.size = lesson03::kDefaultSlotSize;
  ServerOptions sopts;
  CLI::App app{"Lesson 03 server: RDMA WRITE_WITH_IMM into a ring of slots; RECV completions as notifications.",
               "server"};
  common::add_common_options(app, opts);
  app.get_option("--size")->description("bytes per slot (the largest message)");
  app.get_option("--port")->description("RDMA CM port to listen on");
  app.add_option("--slots", sopts.slots, "slots in the ring (and RECVs posted)")
      ->check(CLI::Range(1u, 1024u))->capture_default_str();
  app.add_option("--accept-timeout", sopts.accept_timeout_s, "seconds to wait for the client to connect")
      ->check(common::seconds_between(1.0, 86400.0))->capture_default_str();
  app.add_flag("--no-recv", sopts.no_recv, "post no RECVs: demonstrates RNR NAKs and IBV_WC_RNR_RETRY_EXC_ERR");
  app.add_option("--rnr-retry", sopts.rnr_retry,
                 "RNR retries granted to the client, 0-7, 7 = forever (default: 7, or 1 with --no-recv)")
      ->check(CLI::Range(0, 7));
  if (const auto code = common::parse_options(app, opts, argc, argv)) return *code;
  common::watch_stop_signals();
  LOG(slow, "step 1: server on RDMA CM port %u, ring of %u slots x %u bytes", opts.port, sopts.slots, opts.size);
  return common::run_main([&] { return run_server(opts, sopts); });
}
