// roce_bench over verbs: the RC endpoint, posting, and the CQ poller's failure report.
#include "endpoint.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>

namespace roce_bench {

void warn_rc(int rc, const char* call) {
  if (rc != 0) say("warning: %s failed: %s", call, errno_text(rc > 0 ? rc : errno).c_str());
}

namespace {

ibv_mtu mtu_enum(std::uint32_t bytes) {
  switch (bytes) {
    case 256: return IBV_MTU_256;
    case 512: return IBV_MTU_512;
    case 1024: return IBV_MTU_1024;
    case 2048: return IBV_MTU_2048;
    default: return IBV_MTU_4096;
  }
}
std::uint32_t mtu_bytes(ibv_mtu mtu) {
  return mtu >= IBV_MTU_256 && mtu <= IBV_MTU_4096 ? 128u << mtu : 0u;
}

std::string gid_text(const ibv_gid& gid) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, gid.raw, text, sizeof text);
  return text;
}

/// One SGE over @p length bytes of the endpoint's registered buffer.
ibv_sge local_sge(const Endpoint& ep, const std::uint8_t* where, std::uint32_t length) {
  ibv_sge sge{};
  sge.addr = reinterpret_cast<std::uintptr_t>(where);
  sge.length = length;
  sge.lkey = ep.mr->lkey;
  return sge;
}

/// Post @p wr (its opcode and opcode's fields set) with one SGE, signaled; @p call names it.
void post_signaled(Endpoint& ep, ibv_send_wr& wr, const std::uint8_t* local, std::uint32_t length,
                   std::uint64_t wr_id, const char* call) {
  ibv_sge sge = local_sge(ep, local, length);
  wr.wr_id = wr_id;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.send_flags |= IBV_SEND_SIGNALED;
  ibv_send_wr* bad = nullptr;
  check_rc(ibv_post_send(ep.qp.get(), &wr, &bad), call, "the QP must be in RTS and its send queue not full");
}

const char* wc_remedy(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_RETRY_EXC_ERR:
      return "no ACK came back after all retries: the peer's QP is gone, the GIDs do not "
             "match (-g), or the transport drops packets";
    case IBV_WC_RNR_RETRY_EXC_ERR: return "the peer had no RECV posted";
    case IBV_WC_REM_ACCESS_ERR: return "the peer refused the WRITE/READ: wrong rkey, address outside its MR, or an access right missing";
    case IBV_WC_LOC_LEN_ERR: return "a message was longer than the RECV buffer";
    case IBV_WC_WR_FLUSH_ERR: return "the QP went to the error state; the first failed completion has the cause";
    default: return "see `man ibv_poll_cq` for the status";
  }
}

}  // namespace

Endpoint open_endpoint(const Params& p, const EndpointShape& shape) {
  Endpoint ep;
  ep.port = static_cast<std::uint8_t>(p.ib_port);
  ep.gid_index = p.gid_idx;

  int count = 0;
  ep.devices.reset(ibv_get_device_list(&count));
  if (ep.devices == nullptr || count == 0)
    fail(ep.devices == nullptr ? "ibv_get_device_list failed: " + errno_text(errno)
                               : std::string("no RDMA device found (ibv_get_device_list returned 0)"),
         "run under scripts/userspace-roce.sh (the userspace runtime), or on a host with an "
         "RDMA device (Soft-RoCE: scripts/softroce-setup.sh; the lab VMs: scripts/lab/lab.sh)");
  ibv_device* device = nullptr;
  std::string present;
  for (int i = 0; i < count; ++i) {
    const char* name = ibv_get_device_name(ep.devices.get()[i]);
    present += (i ? ", " : "") + std::string(name);
    if (p.ib_dev.empty() || p.ib_dev == name) {
      device = ep.devices.get()[i];
      break;
    }
  }
  if (device == nullptr)
    fail("RDMA device '" + p.ib_dev + "' not found; devices present: " + present,
         "pass one of them with -d, or leave -d out to take the first");
  ep.ctx.reset(check_ptr(ibv_open_device(device), "ibv_open_device",
                         "check permissions on /dev/infiniband/uverbs*"));

  check_rc(ibv_query_port(ep.ctx.get(), ep.port, &ep.port_attr), "ibv_query_port(port " + std::to_string(p.ib_port) + ")",
           "the port (-i) must exist on the device: see `ibv_devinfo`");
  if (ep.port_attr.state != IBV_PORT_ACTIVE)
    fail("port " + std::to_string(p.ib_port) + " of " + ibv_get_device_name(device) + " is in state " +
             std::to_string(ep.port_attr.state) + ", not ACTIVE (4)",
         "bring the network interface under the RDMA device up");
  check_rc(ibv_query_gid(ep.ctx.get(), ep.port, p.gid_idx, &ep.gid),
           "ibv_query_gid(index " + std::to_string(p.gid_idx) + ")",
           "pass a GID index that exists with -g (see `ibv_devinfo -v`)");
  static const ibv_gid zero{};
  if (std::memcmp(ep.gid.raw, zero.raw, sizeof zero.raw) == 0)
    fail("GID index " + std::to_string(p.gid_idx) + " of port " + std::to_string(p.ib_port) + " is empty",
         "pass a filled GID index with -g (`ibv_devinfo -v` lists them; on rxe the RoCE v2 "
         "IPv4 GID is usually 1, on the userspace runtime it is 0)");
  const std::uint32_t active = mtu_bytes(ep.port_attr.active_mtu);
  ep.mtu_offer = std::min(p.mtu, active);
  if (active < p.mtu)
    say("note: port active_mtu is %u, below --mtu %u: offering %u", active, p.mtu, ep.mtu_offer);
  say("device %s port %u GID[%d] %s, mtu offer %u", ibv_get_device_name(device), p.ib_port,
      p.gid_idx, gid_text(ep.gid).c_str(), ep.mtu_offer);

  ep.pd.reset(check_ptr(ibv_alloc_pd(ep.ctx.get()), "ibv_alloc_pd", "the device ran out of resources"));

  const long page = sysconf(_SC_PAGESIZE);
  const std::size_t rounded = (shape.buffer_bytes + page - 1) / page * page;
  ep.buffer.reset(static_cast<std::uint8_t*>(std::aligned_alloc(page, rounded)));
  if (!ep.buffer) fail("out of memory for a " + std::to_string(rounded) + "-byte buffer",
                       "use a smaller --size or --depth");
  std::memset(ep.buffer.get(), 0, rounded);
  ep.buffer_bytes = shape.buffer_bytes;
  // The access flags are literal constants on purpose: with a constant, verbs.h's
  // ibv_reg_mr macro calls the classic ibv_reg_mr symbol, not ibv_reg_mr_iova2.
  const std::string mr_remedy = "registration pins memory against RLIMIT_MEMLOCK: raise it "
                                "(`ulimit -l unlimited`) or run as root";
  if (shape.remote_write && shape.remote_read)
    ep.mr.reset(check_ptr(ibv_reg_mr(ep.pd.get(), ep.buffer.get(), shape.buffer_bytes,
                                     IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ),
                          "ibv_reg_mr(" + std::to_string(shape.buffer_bytes) +
                              " bytes, LOCAL_WRITE|REMOTE_WRITE|REMOTE_READ)", mr_remedy));
  else if (shape.remote_write)
    ep.mr.reset(check_ptr(ibv_reg_mr(ep.pd.get(), ep.buffer.get(), shape.buffer_bytes,
                                     IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE),
                          "ibv_reg_mr(" + std::to_string(shape.buffer_bytes) + " bytes, LOCAL_WRITE|REMOTE_WRITE)", mr_remedy));
  else
    ep.mr.reset(check_ptr(ibv_reg_mr(ep.pd.get(), ep.buffer.get(), shape.buffer_bytes, IBV_ACCESS_LOCAL_WRITE),
                          "ibv_reg_mr(" + std::to_string(shape.buffer_bytes) + " bytes, LOCAL_WRITE)", mr_remedy));

  const int cqe = static_cast<int>(shape.send_wr + shape.recv_wr + 1);
  ep.cq.reset(check_ptr(ibv_create_cq(ep.ctx.get(), cqe, nullptr, nullptr, 0),
                        "ibv_create_cq(" + std::to_string(cqe) + " entries)",
                        "the device ran out of CQs or the depth is above its limit: lower --depth"));

  ibv_qp_init_attr init{};
  init.send_cq = ep.cq.get();
  init.recv_cq = ep.cq.get();
  init.qp_type = IBV_QPT_RC;
  init.sq_sig_all = 0;  // every WR we post asks for its completion with IBV_SEND_SIGNALED
  init.cap.max_send_wr = shape.send_wr;
  init.cap.max_recv_wr = shape.recv_wr;
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  // Inline SENDs only in ping-pong (--inline); the write_bw WRITEs are never inline.
  const bool want_inline = p.use_inline && p.test == Test::pingpong;
  init.cap.max_inline_data = want_inline ? p.size : 0;
  ep.qp.reset(check_ptr(ibv_create_qp(ep.pd.get(), &init), "ibv_create_qp(RC, send_wr " +
                            std::to_string(shape.send_wr) + ", recv_wr " + std::to_string(shape.recv_wr) +
                            ", inline " + std::to_string(init.cap.max_inline_data) + ")",
                        "a queue depth or the inline size is above the device's limits "
                        "(`ibv_devinfo -v`): lower --depth, or drop --inline"));
  if (want_inline && init.cap.max_inline_data < p.size)
    fail("--inline asks for " + std::to_string(p.size) + " inline bytes, the QP offers " +
             std::to_string(init.cap.max_inline_data),
         "drop --inline or use a smaller --size");
  ep.use_inline = want_inline;
  ep.rd_atomic = shape.rd_atomic;
  std::random_device entropy;
  ep.psn = entropy() & 0xffffffu;

  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_INIT;
  attr.pkey_index = 0;
  attr.port_num = ep.port;
  attr.qp_access_flags = (shape.remote_write ? IBV_ACCESS_REMOTE_WRITE : 0) |
                         (shape.remote_read ? IBV_ACCESS_REMOTE_READ : 0);
  check_rc(ibv_modify_qp(ep.qp.get(), &attr, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS),
           "ibv_modify_qp(RESET->INIT)", "check the port number (-i)");
  DETAIL("QP 0x%06x in INIT, first PSN 0x%06x", ep.qp->qp_num, ep.psn);
  return ep;
}

/// INIT -> RTR -> RTS towards @p remote. The path MTU is the smaller of both offers, so the
/// two sides agree without another round trip. RoCE: every packet carries a GRH.
void connect_endpoint(Endpoint& ep, const QpInfo& remote) {
  ep.path_mtu = std::min(ep.mtu_offer, remote.mtu);
  if (mtu_bytes(mtu_enum(ep.path_mtu)) != ep.path_mtu)
    fail("the peer offers path MTU " + std::to_string(remote.mtu) + " bytes",
         "both sides must run the same roce_bench build");
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_RTR;
  attr.path_mtu = mtu_enum(ep.path_mtu);
  attr.dest_qp_num = remote.qpn;
  attr.rq_psn = remote.psn;
  // READs we answer at once: 1 (what every example uses) unless the test READs (verify_rw).
  attr.max_dest_rd_atomic = ep.rd_atomic;
  attr.min_rnr_timer = 12;      // 0.64 ms: told to a sender we NAK for lack of a RECV
  attr.ah_attr.port_num = ep.port;
  attr.ah_attr.dlid = remote.lid;  // InfiniBand only; RoCE routes by GID
  attr.ah_attr.sl = 0;
  attr.ah_attr.is_global = 1;
  attr.ah_attr.grh.dgid = remote.gid;
  attr.ah_attr.grh.sgid_index = static_cast<std::uint8_t>(ep.gid_index);
  attr.ah_attr.grh.hop_limit = 64;
  attr.ah_attr.grh.traffic_class = 0;
  attr.ah_attr.grh.flow_label = 0;
  check_rc(ibv_modify_qp(ep.qp.get(), &attr,
                         IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                             IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER),
           "ibv_modify_qp(INIT->RTR, peer QPN 0x" + hex32(remote.qpn) + ", GID " +
               gid_text(remote.gid) + ", MTU " + std::to_string(ep.path_mtu) + ")",
           "EINVAL: a GID index of the wrong kind (-g) or an MTU above the port's; ETIMEDOUT: "
           "the peer's GID (IP address) does not answer ARP");
  attr = ibv_qp_attr{};
  attr.qp_state = IBV_QPS_RTS;
  attr.sq_psn = ep.psn;
  attr.timeout = 14;    // 4.096 us * 2^14 = 67 ms before a retransmission
  attr.retry_cnt = 7;
  attr.rnr_retry = 7;   // 7 = retry forever after an RNR NAK
  attr.max_rd_atomic = ep.rd_atomic;  // READs we may have outstanding
  check_rc(ibv_modify_qp(ep.qp.get(), &attr,
                         IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                             IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC),
           "ibv_modify_qp(RTR->RTS)", "check the device's log (dmesg)");
  say("QP 0x%06x (PSN 0x%06x) -> peer QP 0x%06x GID %s (PSN 0x%06x), path MTU %u: RTS",
      ep.qp->qp_num, ep.psn, remote.qpn, gid_text(remote.gid).c_str(), remote.psn, ep.path_mtu);
}

void post_recv(Endpoint& ep, std::uint8_t* where, std::uint32_t length, std::uint64_t wr_id) {
  ibv_sge sge = local_sge(ep, where, length);
  ibv_recv_wr wr{};
  wr.wr_id = wr_id;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  check_rc(ibv_post_recv(ep.qp.get(), &wr, &bad), "ibv_post_recv", "the receive queue is full or the QP is not ready");
}

void post_send(Endpoint& ep, const std::uint8_t* from, std::uint32_t length, std::uint64_t wr_id, bool inline_ok) {
  ibv_send_wr wr{};
  wr.opcode = IBV_WR_SEND;
  if (inline_ok && ep.use_inline) wr.send_flags = IBV_SEND_INLINE;  // the payload is copied at post time
  post_signaled(ep, wr, from, length, wr_id, "ibv_post_send(SEND)");
}

void post_rdma(Endpoint& ep, ibv_wr_opcode opcode, const std::uint8_t* local, std::uint32_t length,
               std::uint64_t remote_addr, std::uint32_t rkey, std::uint64_t wr_id) {
  ibv_send_wr wr{};
  wr.opcode = opcode;
  wr.wr.rdma.remote_addr = remote_addr;
  wr.wr.rdma.rkey = rkey;
  post_signaled(ep, wr, local, length, wr_id,
                opcode == IBV_WR_RDMA_READ ? "ibv_post_send(RDMA_READ)" : "ibv_post_send(RDMA_WRITE)");
}

void post_write(Endpoint& ep, const std::uint8_t* from, std::uint32_t length, std::uint64_t remote_addr,
                std::uint32_t rkey, std::uint64_t wr_id) {
  post_rdma(ep, IBV_WR_RDMA_WRITE, from, length, remote_addr, rkey, wr_id);
}

const char* wc_opcode_name(ibv_wc_opcode op) {
  switch (op) {
    case IBV_WC_SEND: return "SEND";
    case IBV_WC_RDMA_WRITE: return "RDMA_WRITE";
    case IBV_WC_RECV: return "RECV";
    case IBV_WC_RDMA_READ: return "RDMA_READ";
    case IBV_WC_RECV_RDMA_WITH_IMM: return "RECV_RDMA_WITH_IMM";
    default: return "other";
  }
}

void Poller::check(const ibv_wc& wc, const char* what) const {
  if (wc.status == IBV_WC_SUCCESS) return;
  char detail[256];
  std::snprintf(detail, sizeof detail, " (wr_id 0x%" PRIx64 "%s%s, opcode %s, vendor_err 0x%x)", wc.wr_id,
                describe_ != nullptr ? " = " : "", describe_ != nullptr ? describe_(wc.wr_id).c_str() : "",
                wc_opcode_name(wc.opcode), wc.vendor_err);
  fail("a completion while waiting for " + std::string(what) + " failed: status " +
           std::to_string(wc.status) + " (" + ibv_wc_status_str(wc.status) + ")" + detail,
       wc_remedy(wc.status));
}

}  // namespace roce_bench
