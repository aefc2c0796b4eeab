#include "rc_peer.hpp"

#include <openssl/rand.h>
#include <poll.h>

#include <algorithm>
#include <chrono>

#include "common/completion.hpp"
#include "common/dump.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/qp_state.hpp"

namespace lesson05 {

Device open_device(const common::Options& opts) {
  Device d;
  int count = 0;
  d.list.reset(ibv_get_device_list(&count));
  ibv_device* device = common::find_device(d.list.get(), count, opts.ib_dev);
  d.ctx.reset(common::check_ptr(ibv_open_device(device), "ibv_open_device", "check dmesg and `rdma link show`"));
  d.port = static_cast<std::uint8_t>(opts.ib_port);
  common::check_rc(ibv_query_port(d.ctx.get(), d.port, &d.port_attr), "ibv_query_port", "check -i (ports count from 1)");
  if (d.port_attr.state != IBV_PORT_ACTIVE)
    common::fail("port " + std::to_string(d.port) + " of " + ibv_get_device_name(device) + " is not ACTIVE",
                 "bring the link up: `ip link set <netdev> up`; `rdma link show`");
  d.gid = common::choose_gid(d.ctx.get(), d.port, d.port_attr, opts.gid_idx);
  d.pd.reset(common::check_ptr(ibv_alloc_pd(d.ctx.get()), "ibv_alloc_pd", "out of device resources"));
  LOG(slow, "device %s port %u: active MTU %s, GID[%d] %s", ibv_get_device_name(device), d.port,
      common::mtu_name(d.port_attr.active_mtu), d.gid.index, common::gid_to_string(d.gid.gid).c_str());
  return d;
}

std::uint32_t random_psn() {
  unsigned char bytes[3];
  // RAND_bytes draws from OpenSSL's CSPRNG; a PSN an attacker cannot guess is what makes
  // injecting packets into the connection hard. All 24 bits are used.
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    common::fail("RAND_bytes failed: no random numbers", "the system's entropy source is broken");
  return (std::uint32_t{bytes[0]} << 16) | (std::uint32_t{bytes[1]} << 8) | bytes[2];
}

Peer make_peer(Device& dev, std::uint32_t slot_size, bool remote_access) {
  Peer p;
  p.slot_size = slot_size;
  p.channel.reset(common::check_ptr(ibv_create_comp_channel(dev.ctx.get()), "ibv_create_comp_channel", ""));
  p.cq.reset(common::check_ptr(ibv_create_cq(dev.ctx.get(), 8, nullptr, p.channel.get(), 0), "ibv_create_cq", ""));
  common::check_rc(ibv_req_notify_cq(p.cq.get(), 0), "ibv_req_notify_cq", "");
  ibv_qp_init_attr init{};
  init.send_cq = p.cq.get();
  init.recv_cq = p.cq.get();
  init.qp_type = IBV_QPT_RC;
  init.cap.max_send_wr = 4;
  init.cap.max_recv_wr = 2;
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  p.qp.reset(common::check_ptr(ibv_create_qp(dev.pd.get(), &init), "ibv_create_qp", "out of device resources"));
  p.buffer.assign(3 * std::size_t{slot_size}, '\0');
  // The server's slot is the peer's to WRITE and READ; the client's READ lands in its
  // own memory, which needs LOCAL_WRITE only.
  const int access = IBV_ACCESS_LOCAL_WRITE | (remote_access ? IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ : 0);
  p.mr.reset(common::check_ptr(ibv_reg_mr(dev.pd.get(), p.buffer.data(), p.buffer.size(), access), "ibv_reg_mr",
                               common::reg_mr_remedy()));
  common::qp_to_init(p.qp.get(), dev.port,
                     remote_access ? IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ : 0);
  p.psn = random_psn();
  return p;
}

common::QpInfo make_info(const Device& dev, const Peer& peer, bool expose_slot) {
  common::QpInfo info;
  info.qp.qpn = peer.qp->qp_num;
  info.qp.psn = peer.psn;
  info.qp.lid = dev.port_attr.lid;
  info.qp.mtu = dev.port_attr.active_mtu;
  info.qp.gid = dev.gid.gid;
  info.qp.msg_size = peer.slot_size;
  info.qp.msg_count = 0;
  if (expose_slot) {
    info.addr = reinterpret_cast<std::uintptr_t>(peer.buffer.data() + 2 * std::size_t{peer.slot_size});
    info.rkey = peer.mr->rkey;
    info.length = peer.slot_size;
  }
  return info;
}

void log_info(const char* label, const common::QpInfo& info) {
  LOG(slow, "%s: QPN 0x%06x PSN 0x%06x MTU %s GID %s slot addr=0x%llx rkey=0x%08x length=%u", label, info.qp.qpn,
      info.qp.psn, common::mtu_name(info.qp.mtu), common::gid_to_string(info.qp.gid).c_str(),
      static_cast<unsigned long long>(info.addr), info.rkey, info.length);
}

void connect_peer(Peer& peer, const Device& dev, const common::QpInfo& remote) {
  common::RtrParams rtr;
  rtr.port = dev.port;
  rtr.sgid_index = dev.gid.index;
  rtr.use_grh = dev.port_attr.link_layer == IBV_LINK_LAYER_ETHERNET;
  rtr.path_mtu = std::min(dev.port_attr.active_mtu, remote.qp.mtu);
  rtr.remote_qpn = remote.qp.qpn;
  rtr.remote_psn = remote.qp.psn;  // the peer's random PSN: the first one we accept
  rtr.remote_lid = remote.qp.lid;
  rtr.remote_gid = remote.qp.gid;
  common::qp_to_rtr(peer.qp.get(), rtr);
  common::RtsParams rts;
  rts.local_psn = peer.psn;        // our random PSN: the first one we send
  common::qp_to_rts(peer.qp.get(), rts);
}

void post_recv(Peer& peer) {
  ibv_sge sge{reinterpret_cast<std::uintptr_t>(peer.recv_area()), peer.slot_size, peer.mr->lkey};
  ibv_recv_wr wr{};
  wr.wr_id = kRecvWrId;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  common::check_rc(ibv_post_recv(peer.qp.get(), &wr, &bad), "ibv_post_recv", "");
}

void post_send(Peer& peer, std::uint32_t length) {
  ibv_sge sge{reinterpret_cast<std::uintptr_t>(peer.send_area()), length, peer.mr->lkey};
  ibv_send_wr wr{};
  wr.wr_id = kSendWrId;
  wr.opcode = IBV_WR_SEND;
  wr.sg_list = length ? &sge : nullptr;
  wr.num_sge = length ? 1 : 0;
  wr.send_flags = IBV_SEND_SIGNALED;
  ibv_send_wr* bad = nullptr;
  common::check_rc(ibv_post_send(peer.qp.get(), &wr, &bad), "ibv_post_send", "");
}

bool wait_completion(Peer& peer, ibv_wc& wc, double timeout_s, const std::string& what, int also_fd) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  for (;;) {
    // Drain first: the CQ may already hold a completion whose event we consumed.
    const int n = ibv_poll_cq(peer.cq.get(), 1, &wc);
    if (n < 0) common::fail("ibv_poll_cq failed", "device error: check dmesg");
    if (n == 1) {
      if (wc.status != IBV_WC_SUCCESS) {
        common::dump_wc(wc);
        common::fail("completion for " + what + " failed: " + ibv_wc_status_str(wc.status),
                     common::wc_status_remedy(wc.status));
      }
      return true;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) common::fail("no completion for " + what + " in time", "the peer may be gone; check its log");
    pollfd fds[2] = {{peer.channel->fd, POLLIN, 0}, {also_fd, POLLIN, 0}};
    const int rc = ::poll(fds, also_fd >= 0 ? 2 : 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (rc < 0 && errno != EINTR) common::check_rc(-1, "poll", "");
    if (rc <= 0) continue;
    if (fds[0].revents & POLLIN) {
      // Take the event, acknowledge it, re-arm, then loop to poll the CQ.
      ibv_cq* cq = nullptr;
      void* ctx = nullptr;
      common::check_rc(ibv_get_cq_event(peer.channel.get(), &cq, &ctx), "ibv_get_cq_event", "");
      ibv_ack_cq_events(cq, 1);
      common::check_rc(ibv_req_notify_cq(cq, 0), "ibv_req_notify_cq", "");
    }
    if (also_fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) return false;
  }
}

std::string preview(const char* data, std::size_t length) {
  std::string out;
  for (std::size_t i = 0; i < length && i < 40 && data[i] != '\0'; ++i)
    out += (data[i] >= 0x20 && data[i] < 0x7f) ? data[i] : '.';
  if (length > 40) out += "...";
  return out;
}

}  // namespace lesson05
