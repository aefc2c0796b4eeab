#include "connection.hpp"

#include <openssl/rand.h>

#include "common/completion.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/qp_state.hpp"
#include "common/rdma_ops.hpp"

namespace lesson05 {

std::uint32_t random_psn() {
  unsigned char bytes[3];
  // RAND_bytes draws from OpenSSL's CSPRNG, so the PSN cannot be predicted from earlier
  // ones (rand() seeded with the time can). That rules out guessing, not searching: see
  // the README's security model for what an attacker on the network can still do.
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    common::fail("RAND_bytes failed: no random numbers", "the system's entropy source is broken");
  return (std::uint32_t{bytes[0]} << 16) | (std::uint32_t{bytes[1]} << 8) | bytes[2];
}

Connection open_connection(const common::OpenPort& port, std::uint32_t size, bool expose_slot) {
  Connection c;
  c.size = size;
  ibv_context* ctx = port.ctx.get();
  // Isolation, part 1: this connection's own PD. Its MRs' rkeys are valid on its QP only.
  c.pd.reset(common::check_ptr(ibv_alloc_pd(ctx), "ibv_alloc_pd", "out of device resources: check dmesg"));

  // The buffers we receive into, send from and READ into: LOCAL_WRITE (the device writes
  // RECVs and READ responses into them) and no remote right at all.
  c.local.assign(3 * std::size_t{size}, '\0');
  c.local_mr.reset(common::check_ptr(ibv_reg_mr(c.pd.get(), c.local.data(), c.local.size(), IBV_ACCESS_LOCAL_WRITE),
                                     "ibv_reg_mr", common::reg_mr_remedy()));
  if (expose_slot) {
    // Isolation, part 2: the slot is a buffer of its own, and the only memory with remote
    // rights. The device checks every RDMA WRITE and READ against this MR's exact bounds.
    c.slot.assign(size, '\0');
    c.slot_mr.reset(common::check_ptr(
        ibv_reg_mr(c.pd.get(), c.slot.data(), c.slot.size(),
                   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ),
        "ibv_reg_mr", common::reg_mr_remedy()));
  }

  // A CQ with a completion channel: a thread per client sleeps in poll() until its
  // client's work completes, instead of spinning.
  c.channel.reset(common::check_ptr(ibv_create_comp_channel(ctx), "ibv_create_comp_channel", "out of file descriptors?"));
  c.cq.reset(common::check_ptr(ibv_create_cq(ctx, 8, nullptr, c.channel.get(), 0), "ibv_create_cq",
                               "out of device resources: check dmesg"));
  common::check_rc(ibv_req_notify_cq(c.cq.get(), 0), "ibv_req_notify_cq", "");
  ibv_qp_init_attr init{};
  init.send_cq = c.cq.get();
  init.recv_cq = c.cq.get();
  init.qp_type = IBV_QPT_RC;
  init.cap.max_send_wr = 4;
  init.cap.max_recv_wr = 2;
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  c.qp.reset(common::check_ptr(ibv_create_qp(c.pd.get(), &init), "ibv_create_qp", "out of device resources"));
  // The QP's access flags say what the peer may do through it at all; the MR's flags
  // say what it may do to that memory. The server's QP allows WRITE and READ (the slot
  // needs both); the client's allows nothing: the server never touches its memory.
  common::qp_to_init(c.qp.get(), port.port, expose_slot ? IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ : 0);
  c.psn = random_psn();
  return c;
}

common::QpInfo make_info(const common::OpenPort& port, const Connection& c) {
  common::QpInfo info;
  info.qp.qpn = c.qp->qp_num;
  info.qp.psn = c.psn;
  info.qp.lid = port.attr.lid;
  info.qp.mtu = port.attr.active_mtu;
  info.qp.gid = port.gid.gid;
  info.qp.msg_size = c.size;
  info.qp.msg_count = 0;
  if (c.slot_mr) {
    info.addr = reinterpret_cast<std::uintptr_t>(c.slot.data());
    info.rkey = c.slot_mr->rkey;
    info.length = static_cast<std::uint32_t>(c.slot.size());
  }
  return info;
}

void log_info(const char* label, const common::QpInfo& info) {
  LOG(slow, "%s: QPN 0x%06x PSN 0x%06x MTU %s GID %s slot addr=0x%llx rkey=0x%08x length=%u", label, info.qp.qpn,
      info.qp.psn, common::mtu_name(info.qp.mtu), common::gid_to_string(info.qp.gid).c_str(),
      static_cast<unsigned long long>(info.addr), info.rkey, info.length);
}

void post_recv(Connection& c) {
  common::post_recv(c.qp.get(), kRecvWrId, {reinterpret_cast<std::uintptr_t>(c.recv_area()), c.size, c.local_mr->lkey});
}

void post_send(Connection& c, std::uint32_t length) {
  common::post_send(c.qp.get(), kSendWrId, {reinterpret_cast<std::uintptr_t>(c.send_area()), length, c.local_mr->lkey},
                    true);
}

bool next_completion(Connection& c, ibv_wc& wc, double timeout_s, const std::string& what, int tls_fd) {
  for (;;) {
    // Drain first: the CQ may hold a completion whose event an earlier call consumed.
    const int n = ibv_poll_cq(c.cq.get(), 1, &wc);
    if (n < 0) common::fail("ibv_poll_cq failed", "device error: check dmesg");
    if (n == 1) return true;
    switch (common::sleep_until_completion(c.channel.get(), tls_fd, timeout_s)) {
      case common::Wakeup::completion: break;  // poll the CQ again
      case common::Wakeup::other_fd: return false;
      case common::Wakeup::timeout:
        common::fail("no completion for " + what + " within " + std::to_string(static_cast<int>(timeout_s)) + " s",
                     "the peer may be gone; check its log");
    }
  }
}

}  // namespace lesson05
