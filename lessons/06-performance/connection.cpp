#include "connection.hpp"

#include <algorithm>
#include <random>
#include <string>

#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/qp_state.hpp"

namespace lesson06 {

std::size_t ring_bytes_for(std::uint32_t max_size, std::uint32_t window) {
  const std::size_t wanted = std::size_t{max_size} * window;
  return std::max<std::size_t>(max_size, std::min(wanted, kMaxBytesInFlight));
}

std::uint32_t window_for(std::uint32_t size, std::uint32_t window, std::size_t ring_bytes) {
  const std::size_t fits = ring_bytes / size;
  return static_cast<std::uint32_t>(std::max<std::size_t>(1, std::min<std::size_t>(window, fits)));
}

namespace {

/// A device limit a value of ours must stay within, refused with both numbers named.
void require_within(std::uint64_t value, std::uint64_t limit, const std::string& what, const char* limit_name) {
  if (value > limit)
    common::fail(what + " needs " + std::to_string(value) + ", more than this device allows: " + limit_name + " " +
                     std::to_string(limit),
                 "use a smaller --window");
}

}  // namespace

Connection open_connection(common::OpenPort port, std::uint32_t max_size, std::uint32_t max_window, bool server_side) {
  Connection c;
  c.port = std::move(port);
  ibv_context* ctx = c.port.ctx.get();
  common::check_rc(ibv_query_device(ctx, &c.device_attr), "ibv_query_device", "device error: check dmesg");
  const ibv_device_attr& dev = c.device_attr;
  // The window is bounded by the device: the send queue holds it, the receive queue twice
  // it, and each CQ must hold a completion for every work request of its queue.
  require_within(max_window, static_cast<std::uint64_t>(dev.max_qp_wr), "a send queue of --window requests",
                 "max_qp_wr");
  require_within(2ull * max_window, static_cast<std::uint64_t>(dev.max_qp_wr), "a receive queue of 2 x --window RECVs",
                 "max_qp_wr");
  require_within(2ull * max_window, static_cast<std::uint64_t>(dev.max_cqe), "a CQ for 2 x --window completions",
                 "max_cqe");
  c.max_window = max_window;
  c.ring_bytes = ring_bytes_for(max_size, max_window);
  LOG(slow, "step 0: device %s: max_qp_wr %d, max_cqe %d, max_qp_rd_atom %d, max_qp_init_rd_atom %d",
      ibv_get_device_name(ctx->device), dev.max_qp_wr, dev.max_cqe, dev.max_qp_rd_atom, dev.max_qp_init_rd_atom);

  c.pd.reset(common::check_ptr(ibv_alloc_pd(ctx), "ibv_alloc_pd", "out of device resources: check dmesg"));
  // Client: [sources: one ring | landing: two rings] (echoes and READs land there).
  // Server: [RECV ring: two rings]. Both LOCAL_WRITE only.
  const std::size_t local_bytes = server_side ? 2 * c.ring_bytes : 3 * c.ring_bytes;
  const std::size_t exposed_bytes = server_side ? c.ring_bytes : 0;
  common::check_memlock(local_bytes + exposed_bytes);
  c.local.assign(local_bytes, '\0');
  c.local_mr.reset(common::check_ptr(ibv_reg_mr(c.pd.get(), c.local.data(), c.local.size(), IBV_ACCESS_LOCAL_WRITE),
                                     "ibv_reg_mr", common::reg_mr_remedy()));
  if (server_side) {
    // The one ring the client may touch: the target of its WRITEs and the source of its
    // READs. Nothing else of the server's has an rkey.
    c.exposed.assign(exposed_bytes, '\0');
    c.exposed_mr.reset(common::check_ptr(
        ibv_reg_mr(c.pd.get(), c.exposed.data(), c.exposed.size(),
                   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ),
        "ibv_reg_mr", common::reg_mr_remedy()));
  }
  LOG(slow, "step 0: buffers: ring of %zu bytes (messages up to %u bytes, up to %u in flight); %zu bytes registered",
      c.ring_bytes, max_size, max_window, local_bytes + exposed_bytes);

  c.channel.reset(common::check_ptr(ibv_create_comp_channel(ctx), "ibv_create_comp_channel",
                                    "out of file descriptors? raise ulimit -n"));
  const int cqe = static_cast<int>(2 * max_window);
  c.send_cq.reset(common::check_ptr(ibv_create_cq(ctx, cqe, nullptr, c.channel.get(), 0), "ibv_create_cq",
                                    "out of device resources: check dmesg"));
  c.recv_cq.reset(common::check_ptr(ibv_create_cq(ctx, cqe, nullptr, c.channel.get(), 0), "ibv_create_cq",
                                    "out of device resources: check dmesg"));

  ibv_qp_init_attr init{};
  init.send_cq = c.send_cq.get();
  init.recv_cq = c.recv_cq.get();
  init.qp_type = IBV_QPT_RC;
  init.cap.max_send_wr = max_window;       // the window: requests posted and not yet known complete
  init.cap.max_recv_wr = 2 * max_window;   // RECVs posted ahead of a stream of SENDs
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  init.cap.max_inline_data = kRequestedInline;
  init.sq_sig_all = 0;                     // each WR says itself whether it is signaled (step 3)
  c.qp.reset(common::check_ptr(ibv_create_qp(c.pd.get(), &init), "ibv_create_qp",
                               "the device refused the queue sizes or max_inline_data " +
                                   std::to_string(kRequestedInline) + ": try a smaller --window"));
  // ibv_create_qp writes back the capacities the device gave, which may be more than asked
  // (never less; Soft-RoCE, for one, rounds its queues up, and some kernels report the
  // size asked rather than the rounded one). max_inline_data is the number step 4 uses.
  c.cap = init.cap;
  LOG(slow, "step 0: QP 0x%06x created; ibv_create_qp reports max_send_wr %u, max_recv_wr %u, max_inline_data %u "
      "(asked %u)", c.qp->qp_num, c.cap.max_send_wr, c.cap.max_recv_wr, c.cap.max_inline_data, kRequestedInline);
  common::qp_to_init(c.qp.get(), c.port.port,
                     server_side ? IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ : 0);
  // READs in flight: what we may issue (max_qp_init_rd_atom) and what we may accept as the
  // responder (max_qp_rd_atom) both bound it.
  const int reads = std::min({static_cast<int>(kReadsInFlight), dev.max_qp_rd_atom, dev.max_qp_init_rd_atom});
  c.reads_in_flight = static_cast<std::uint8_t>(std::max(1, reads));
  std::random_device entropy;
  c.psn = entropy() & common::kMax24Bit;
  return c;
}

common::QpInfo make_info(const Connection& c, std::uint32_t max_size, std::uint32_t max_window, bool server_side) {
  common::QpInfo info;
  info.qp.qpn = c.qp->qp_num;
  info.qp.psn = c.psn;
  info.qp.lid = c.port.attr.lid;
  info.qp.mtu = c.port.attr.active_mtu;
  info.qp.gid = c.port.gid.gid;
  info.qp.msg_size = max_size;
  info.qp.msg_count = server_side ? c.reads_in_flight : max_window;  // see connection.hpp
  if (c.exposed_mr) {
    info.addr = reinterpret_cast<std::uintptr_t>(c.exposed.data());
    info.rkey = c.exposed_mr->rkey;
    info.length = static_cast<std::uint32_t>(c.exposed.size());
  }
  return info;
}

void log_info(const char* label, const common::QpInfo& info) {
  LOG(slow, "step 0: %s: QPN 0x%06x PSN 0x%06x MTU %s GID %s ring addr=0x%llx rkey=0x%08x length=%u", label,
      info.qp.qpn, info.qp.psn, common::mtu_name(info.qp.mtu), common::gid_to_string(info.qp.gid).c_str(),
      static_cast<unsigned long long>(info.addr), info.rkey, info.length);
}

common::QpInfo receive_info(common::Channel& channel, double timeout_s) {
  const common::Message m = channel.receive(timeout_s);
  if (m.type == common::MessageType::error)
    common::fail("peer " + channel.peer() + " refused: " + common::decode_error(m.body), "see the peer's log");
  if (m.type != common::MessageType::qp_info)
    common::fail("expected QP_INFO from " + channel.peer() + ", got " + common::message_type_name(m.type),
                 "both sides must run lesson 06");
  return common::decode_qp_info(m.body);
}

void connect(Connection& c, const common::QpInfo& peer, bool server_side) {
  common::RtrParams rtr;
  rtr.port = c.port.port;
  rtr.sgid_index = c.port.gid.index;
  rtr.use_grh = c.port.attr.link_layer == IBV_LINK_LAYER_ETHERNET;
  rtr.path_mtu = std::min(c.port.attr.active_mtu, peer.qp.mtu);
  rtr.remote_qpn = peer.qp.qpn;
  rtr.remote_psn = peer.qp.psn;
  rtr.remote_lid = peer.qp.lid;
  rtr.remote_gid = peer.qp.gid;
  rtr.max_dest_rd_atomic = c.reads_in_flight;  // READs the peer may have in flight to us
  // Code 1 asks a sender that outran our RECVs to wait 0.01 ms before it tries again (on
  // Soft-RoCE the wait is at least one kernel timer tick, 1-4 ms).
  rtr.min_rnr_timer = 1;
  common::qp_to_rtr(c.qp.get(), rtr);
  common::RtsParams rts;
  rts.local_psn = c.psn;
  // READs we may have in flight: no more than the server accepts (its QP_INFO says).
  const std::uint32_t accepted = server_side ? c.reads_in_flight : peer.qp.msg_count;
  rts.max_rd_atomic = static_cast<std::uint8_t>(std::max(1u, std::min<std::uint32_t>(c.reads_in_flight, accepted)));
  common::qp_to_rts(c.qp.get(), rts);
  LOG(slow, "step 0: QP in RTS: path MTU %s, up to %u READs in flight", common::mtu_name(rtr.path_mtu),
      rts.max_rd_atomic);
}

}  // namespace lesson06
