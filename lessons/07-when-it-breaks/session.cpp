#include "session.hpp"

#include <algorithm>
#include <cstring>
#include <random>

#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/qp_state.hpp"

namespace lesson07 {

const char* implementation_name(Implementation impl) {
  switch (impl) {
    case Implementation::kernel_rxe: return "kernel rxe";
    case Implementation::runtime: return "userspace runtime";
    case Implementation::other: return "other device";
  }
  return "?";
}

ibv_sge Session::sge(std::size_t offset, std::uint32_t length) {
  ibv_sge s{};
  s.addr = reinterpret_cast<std::uintptr_t>(at(offset));
  s.length = length;
  s.lkey = local_mr->lkey;
  return s;
}

namespace {

Implementation implementation_of(ibv_context* ctx) {
  const std::string name = ibv_get_device_name(ctx->device);
  if (name.rfind("rxe", 0) == 0) return Implementation::kernel_rxe;
  if (name.rfind("uroce", 0) == 0) return Implementation::runtime;
  return Implementation::other;
}

/// gid-kinds: switch the port's source GID to its first RoCE v2 entry that is an IPv6
/// address (not ::ffff:a.b.c.d), if there is one; otherwise keep the IPv4 one.
void use_ipv6_gid(common::OpenPort& port) {
  for (int i = 0; i < port.attr.gid_tbl_len; ++i) {
    ibv_gid gid{};
    // Only a RoCE v2 entry (a device may list RoCE v1 ones too: same address, other wire).
    ibv_gid_entry entry{};
    if (ibv_query_gid_ex(port.ctx.get(), port.port, static_cast<std::uint32_t>(i), &entry, 0) != 0 ||
        entry.gid_type != IBV_GID_TYPE_ROCE_V2)
      continue;
    gid = entry.gid;
    static const std::uint8_t zero[16] = {};
    if (std::memcmp(gid.raw, zero, 16) == 0) continue;
    const bool v4_mapped = std::memcmp(gid.raw, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
    if (v4_mapped) continue;
    port.gid.index = i;
    port.gid.gid = gid;
    LOG(slow, "step 2: client: GID index %d %s, an IPv6 entry, on purpose (gid-kinds)", i,
        common::gid_to_string(gid).c_str());
    return;
  }
  LOG(warn, "step 2: client: no IPv6 GID on this port; keeping GID index %d", port.gid.index);
}

}  // namespace

void open_session(Session& s) {
  const Setup& set = s.setup;
  if (!s.port.ctx) s.port = common::open_port(s.opts.ib_dev, s.opts.ib_port, s.opts.gid_idx);
  if (!s.server_side && set.client_ipv6_gid) use_ipv6_gid(s.port);
  ibv_context* ctx = s.port.ctx.get();
  s.impl = implementation_of(ctx);
  common::check_rc(ibv_query_device(ctx, &s.device_attr), "ibv_query_device", "device error: check dmesg");
  LOG(slow, "step 2: %s on %s: active MTU %s, GID index %d %s", s.server_side ? "server" : "client",
      implementation_name(s.impl), common::mtu_name(s.port.attr.active_mtu), s.port.gid.index,
      common::gid_to_string(s.port.gid.gid).c_str());

  s.pd.reset(common::check_ptr(ibv_alloc_pd(ctx), "ibv_alloc_pd", "out of device resources: check dmesg"));
  s.buffer.assign(kBufferBytes, '\0');
  common::check_memlock(kBufferBytes);
  // Two MRs over one buffer: the local half with LOCAL_WRITE only (no rkey is ever handed
  // out for it), and on the server the exposed window with the case's remote rights.
  s.local_mr.reset(common::check_ptr(ibv_reg_mr(s.pd.get(), s.at(0), kExposedOffset, IBV_ACCESS_LOCAL_WRITE),
                                     "ibv_reg_mr", common::reg_mr_remedy()));
  if (s.server_side)
    s.exposed_mr.reset(common::check_ptr(
        ibv_reg_mr(s.pd.get(), s.at(kExposedOffset), kExposedBytes, static_cast<int>(set.server_mr_access)),
        "ibv_reg_mr", common::reg_mr_remedy()));

  s.send_cq.reset(common::check_ptr(ibv_create_cq(ctx, set.send_cqe, nullptr, nullptr, 0), "ibv_create_cq",
                                    "out of device resources: check dmesg"));
  s.recv_cq.reset(common::check_ptr(ibv_create_cq(ctx, 32, nullptr, nullptr, 0), "ibv_create_cq",
                                    "out of device resources: check dmesg"));
  ibv_qp_init_attr init{};
  init.send_cq = s.send_cq.get();
  init.recv_cq = s.recv_cq.get();
  init.qp_type = IBV_QPT_RC;
  init.cap.max_send_wr = set.max_send_wr;
  init.cap.max_recv_wr = 16;
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  init.sq_sig_all = 1;  // every work request completes on the CQ: each case sees each one
  s.qp.reset(common::check_ptr(ibv_create_qp(s.pd.get(), &init), "ibv_create_qp",
                               "the device refused the queue sizes: check ibv_devinfo -v (max_qp_wr)"));
  s.cap = init.cap;
  if (set.init_qp)
    common::qp_to_init(s.qp.get(), s.port.port,
                       s.server_side ? IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ : 0);
  LOG(slow, "step 2: QP 0x%06x created: max_send_wr %u (asked %u), send CQ of %d entries (asked %d)",
      s.qp->qp_num, s.cap.max_send_wr, set.max_send_wr, s.send_cq->cqe, set.send_cqe);
  std::random_device entropy;
  s.psn = entropy() & common::kMax24Bit;
  if (!s.server_side && set.client_psn_upper_half) {
    // psn-behind: a real first PSN (announced + shift) in [0x800000, 0xFFFFFF), so that
    // where rxe's answer lands relative to it is the same in every run (README).
    const std::uint32_t real = 0x800000 + entropy() % 0x7FF000;
    s.psn = static_cast<std::uint32_t>((static_cast<std::int64_t>(real) - set.client_psn_shift) & common::kMax24Bit);
  }
}

void exchange_info(Session& s) {
  common::QpInfo ours;
  ours.qp.qpn = s.qp->qp_num;
  ours.qp.psn = s.psn;
  ours.qp.lid = s.port.attr.lid;
  ours.qp.mtu = s.port.attr.active_mtu;
  ours.qp.gid = s.port.gid.gid;
  ours.qp.msg_size = kMessageBytes;
  ours.qp.msg_count = 1;
  if (s.exposed_mr) {
    ours.addr = reinterpret_cast<std::uintptr_t>(s.at(kExposedOffset));
    ours.rkey = s.exposed_mr->rkey;
    ours.length = static_cast<std::uint32_t>(kExposedBytes);
  }
  const char* side = s.server_side ? "server" : "client";
  LOG(slow, "step 3: %s sends QP_INFO: QPN 0x%06x PSN 0x%06x MTU %s GID %s window addr=0x%llx rkey=0x%08x length=%u",
      side, ours.qp.qpn, ours.qp.psn, common::mtu_name(ours.qp.mtu), common::gid_to_string(ours.qp.gid).c_str(),
      static_cast<unsigned long long>(ours.addr), ours.rkey, ours.length);
  s.channel->send(common::encode_qp_info(ours), s.timeout());
  const common::Message m = s.channel->receive(s.timeout());
  if (m.type == common::MessageType::error)
    common::fail("peer " + s.channel->peer() + " refused: " + common::decode_error(m.body), "see the peer's log");
  if (m.type != common::MessageType::qp_info)
    common::fail("expected QP_INFO from " + s.channel->peer() + ", got " + common::message_type_name(m.type),
                 "both sides must run lesson 07");
  s.peer = common::decode_qp_info(m.body);
  LOG(slow, "step 3: %s received QP_INFO: QPN 0x%06x PSN 0x%06x MTU %s GID %s window addr=0x%llx rkey=0x%08x "
      "length=%u", side, s.peer.qp.qpn, s.peer.qp.psn, common::mtu_name(s.peer.qp.mtu),
      common::gid_to_string(s.peer.qp.gid).c_str(), static_cast<unsigned long long>(s.peer.addr), s.peer.rkey,
      s.peer.length);
}

std::uint32_t real_first_psn(const Session& s) {
  const std::int64_t shift = s.server_side ? 0 : s.setup.client_psn_shift;
  return static_cast<std::uint32_t>((static_cast<std::int64_t>(s.psn) + shift) & common::kMax24Bit);
}

void connect_session(Session& s) {
  const Setup& set = s.setup;
  common::RtrParams rtr;
  rtr.port = s.port.port;
  rtr.sgid_index = s.port.gid.index;
  rtr.use_grh = s.port.attr.link_layer == IBV_LINK_LAYER_ETHERNET;
  rtr.path_mtu = std::min(s.port.attr.active_mtu, s.peer.qp.mtu);
  const std::optional<ibv_mtu>& forced = s.server_side ? set.server_path_mtu : set.client_path_mtu;
  if (forced) rtr.path_mtu = *forced;
  rtr.remote_qpn = s.peer.qp.qpn;
  rtr.remote_psn = s.peer.qp.psn;
  rtr.remote_lid = s.peer.qp.lid;
  rtr.remote_gid = s.peer.qp.gid;
  rtr.min_rnr_timer = set.min_rnr_timer;
  // Responder resources: how many READs the peer may have in flight to us (the client's
  // stay lesson 01's 1; its max_rd_atomic, at RTS, is 1 too).
  if (s.server_side) rtr.max_dest_rd_atomic = set.server_max_dest_rd_atomic;
  common::qp_to_rtr(s.qp.get(), rtr);
  common::RtsParams rts;
  rts.local_psn = real_first_psn(s);
  rts.timeout = set.timeout;
  rts.retry_cnt = set.retry_cnt;
  rts.rnr_retry = set.rnr_retry;
  common::qp_to_rts(s.qp.get(), rts);
  LOG(slow, "step 4: %s QP in RTS: path MTU %s, first PSN 0x%06x, expects PSN 0x%06x; timeout %u, retry_cnt %u, "
      "rnr_retry %u, min_rnr_timer %u", s.server_side ? "server" : "client", common::mtu_name(rtr.path_mtu),
      rts.local_psn, rtr.remote_psn, rts.timeout, rts.retry_cnt, rts.rnr_retry, rtr.min_rnr_timer);
}

}  // namespace lesson07
