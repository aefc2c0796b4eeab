// Lesson 01, steps 2-9 and 11, shared by server.cpp and client.cpp.
// Read this file top to bottom: each verbs call is spelled out, with why it is there.
#include "rc_endpoint.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "common/dump.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/qp_state.hpp"

namespace lesson01 {

RcEndpoint open_endpoint(const common::Options& opts) {
  RcEndpoint ep;
  ep.size = opts.size;
  ep.port = static_cast<std::uint8_t>(opts.ib_port);

  // Step 2: find and open the RDMA device. The list names every device the kernel
  // exposes (rxe0 for Soft-RoCE); opening one gives a context, the handle every other
  // object hangs off.
  LOG(slow, "step 2: open the RDMA device (ibv_get_device_list, ibv_open_device)");
  int num_devices = 0;
  ep.devices.reset(ibv_get_device_list(&num_devices));
  ibv_device* device = common::find_device(ep.devices.get(), num_devices, opts.ib_dev);
  ep.ctx.reset(common::check_ptr(ibv_open_device(device), "ibv_open_device",
                                 "check permissions on /dev/infiniband/uverbs*"));
  LOG(slow, "step 2: opened %s (node GUID 0x%016llx)", ibv_get_device_name(device),
      static_cast<unsigned long long>(be64toh(ibv_get_device_guid(device))));

  // Step 3: query the port. It must be ACTIVE (Soft-RoCE: the netdev is up); its
  // active_mtu is the largest payload per packet, which RTR will need. Never assume
  // 4096: rxe over an Ethernet MTU of 1500 reports 1024.
  LOG(slow, "step 3: query port %u and choose the GID (ibv_query_port, ibv_query_gid_ex)", ep.port);
  common::check_rc(ibv_query_port(ep.ctx.get(), ep.port, &ep.port_attr), "ibv_query_port",
                   "the port number (-i) must exist on the device: see `ibv_devinfo`");
  if (ep.port_attr.state != IBV_PORT_ACTIVE)
    common::fail("port " + std::to_string(ep.port) + " is " +
                     ibv_port_state_str(ep.port_attr.state) + ", not ACTIVE",
                 "bring the network interface under the RDMA device up (`ip link set <if> up`)");
  LOG(slow, "step 3: port %u ACTIVE, link layer %s, active_mtu %s, LID 0x%x", ep.port,
      ep.port_attr.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet (RoCE)" : "InfiniBand",
      common::mtu_name(ep.port_attr.active_mtu), ep.port_attr.lid);
  ep.gid = common::choose_gid(ep.ctx.get(), ep.port, ep.port_attr, opts.gid_idx);

  // Step 4: a protection domain groups the objects that may be used together: a QP can
  // only use memory registered in its own PD.
  LOG(slow, "step 4: allocate a protection domain (ibv_alloc_pd)");
  ep.pd.reset(common::check_ptr(ibv_alloc_pd(ep.ctx.get()), "ibv_alloc_pd",
                                "the device ran out of resources; close other RDMA programs"));

  // Step 5: register memory. The device reads and writes this buffer directly (no copy
  // through the kernel), so it must be pinned and the device must know where it is.
  // Registration returns an lkey (we quote it in our own work requests) and an rkey
  // (a peer would quote it for RDMA READ/WRITE; SEND/RECV does not need it).
  // LOCAL_WRITE: incoming messages are written into our memory by the device.
  // Pinning works on whole pages: the buffer starts on a page boundary, and the pages it
  // touches (here rounded up to whole pages) count against RLIMIT_MEMLOCK.
  const std::size_t bytes = 2 * static_cast<std::size_t>(ep.size);
  const long page = sysconf(_SC_PAGESIZE);
  const std::size_t rounded = (bytes + page - 1) / page * page;
  LOG(slow, "step 5: register %zu bytes (recv area + send area), which pins %zu bytes: whole %ld-byte pages "
            "(ibv_reg_mr)", bytes, rounded, page);
  common::check_memlock(rounded);
  ep.buffer.reset(static_cast<char*>(std::aligned_alloc(page, rounded)));
  if (!ep.buffer) common::fail("out of memory for " + std::to_string(rounded) + " bytes", "use a smaller -s");
  std::memset(ep.buffer.get(), 0, rounded);
  ep.mr.reset(common::check_ptr(ibv_reg_mr(ep.pd.get(), ep.buffer.get(), bytes, IBV_ACCESS_LOCAL_WRITE),
                                "ibv_reg_mr", common::reg_mr_remedy()));
  LOG(slow, "step 5: MR addr=%p length=%zu lkey=0x%x rkey=0x%x", ep.mr->addr, ep.mr->length,
      ep.mr->lkey, ep.mr->rkey);

  // Step 6: completion queues. The device reports each finished work request here.
  // A QP's send queue and receive queue may report to different CQs; two CQs let each
  // side wait for exactly the completion it expects next.
  LOG(slow, "step 6: create a send CQ and a receive CQ (ibv_create_cq)");
  constexpr int kCqDepth = 16;
  ep.send_cq.reset(common::check_ptr(ibv_create_cq(ep.ctx.get(), kCqDepth, nullptr, nullptr, 0),
                                     "ibv_create_cq(send)", "the device ran out of CQs"));
  ep.recv_cq.reset(common::check_ptr(ibv_create_cq(ep.ctx.get(), kCqDepth, nullptr, nullptr, 0),
                                     "ibv_create_cq(recv)", "the device ran out of CQs"));

  // Step 7: the queue pair. RC = Reliable Connected: one QP talks to exactly one peer QP,
  // and the device ACKs, retransmits and orders packets, like TCP does for a socket.
  // The caps bound how many work requests may be outstanding; this lesson has at most
  // one SEND and one RECV in flight at a time.
  LOG(slow, "step 7: create an RC queue pair (ibv_create_qp)");
  ibv_qp_init_attr init{};
  init.send_cq = ep.send_cq.get();
  init.recv_cq = ep.recv_cq.get();
  init.qp_type = IBV_QPT_RC;
  init.cap.max_send_wr = 4;
  init.cap.max_recv_wr = 4;
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  init.sq_sig_all = 0;  // we ask for a completion per WR with IBV_SEND_SIGNALED
  ep.qp.reset(common::check_ptr(ibv_create_qp(ep.pd.get(), &init), "ibv_create_qp",
                                "the device ran out of QPs, or a cap exceeds `ibv_devinfo -v` limits"));
  // The PSN (packet sequence number) of our first packet. Random, as rc_pingpong does:
  // a stale packet from an earlier connection that reused this QPN will not match.
  std::random_device entropy;
  ep.psn = entropy() & common::kMax24Bit;
  LOG(slow, "step 7: QP number 0x%06x, our first PSN 0x%06x (random, 24 bits)", ep.qp->qp_num, ep.psn);

  // Step 8: RESET -> INIT. SEND/RECV needs no remote access rights: the peer never
  // touches our memory directly, it only fills RECVs we posted ourselves.
  LOG(slow, "step 8: move the QP RESET -> INIT (ibv_modify_qp)");
  common::qp_to_init(ep.qp.get(), ep.port, 0);
  return ep;
}

void post_recv(RcEndpoint& ep) {
  // A RECV says "the next message that arrives may land here". RC delivers a SEND only
  // into a posted RECV; if none is posted the receiver answers with an RNR NAK (Receiver
  // Not Ready) and the sender retries after min_rnr_timer, up to rnr_retry times.
  ibv_sge sge{};
  sge.addr = reinterpret_cast<std::uintptr_t>(ep.recv_area());
  sge.length = ep.size;
  sge.lkey = ep.mr->lkey;
  ibv_recv_wr wr{};
  wr.wr_id = kRecvWrId;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  common::check_rc(ibv_post_recv(ep.qp.get(), &wr, &bad), "ibv_post_recv",
                   "the receive queue is full (max_recv_wr) or the QP is in RESET/ERR");
}

void post_send(RcEndpoint& ep, std::uint32_t length, bool detail) {
  ibv_sge sge{};
  sge.addr = reinterpret_cast<std::uintptr_t>(ep.send_area());
  sge.length = length;
  sge.lkey = ep.mr->lkey;
  ibv_send_wr wr{};
  wr.wr_id = kSendWrId;
  wr.opcode = IBV_WR_SEND;
  wr.sg_list = &sge;
  wr.num_sge = length > 0 ? 1 : 0;  // a zero-length SEND carries no SGE at all
  wr.send_flags = IBV_SEND_SIGNALED;  // ask for a completion once the peer has ACKed
  if (length > 0) common::dump_sge("SEND", sge, detail);
  common::dump_send_wr(wr, detail);
  ibv_send_wr* bad = nullptr;
  common::check_rc(ibv_post_send(ep.qp.get(), &wr, &bad), "ibv_post_send",
                   "the QP must be in RTS and the send queue not full");
}

common::Hello make_hello(const RcEndpoint& ep, std::uint32_t msg_size, std::uint32_t msg_count) {
  common::Hello h;
  h.qpn = ep.qp->qp_num;
  h.psn = ep.psn;
  h.lid = ep.port_attr.lid;
  h.mtu = ep.port_attr.active_mtu;
  h.gid = ep.gid.gid;
  h.msg_size = msg_size;
  h.msg_count = msg_count;
  return h;
}

void log_hello(const char* label, const common::Hello& h) {
  LOG(slow, "step 10: %s: QPN 0x%06x PSN 0x%06x LID 0x%x MTU %s GID %s size %u count %u", label,
      h.qpn, h.psn, h.lid, common::mtu_name(h.mtu), common::gid_to_string(h.gid).c_str(),
      h.msg_size, h.msg_count);
}

void connect_qp(RcEndpoint& ep, const common::Hello& remote) {
  // Step 11: INIT -> RTR -> RTS. The path MTU must not exceed either port's active_mtu,
  // so both sides take the smaller one and agree without another round trip.
  common::RtrParams rtr;
  rtr.port = ep.port;
  rtr.sgid_index = ep.gid.index;
  rtr.use_grh = ep.port_attr.link_layer == IBV_LINK_LAYER_ETHERNET;
  rtr.path_mtu = std::min(ep.port_attr.active_mtu, remote.mtu);
  rtr.remote_qpn = remote.qpn;
  rtr.remote_psn = remote.psn;
  rtr.remote_lid = remote.lid;
  rtr.remote_gid = remote.gid;
  LOG(slow, "step 11: move the QP INIT -> RTR -> RTS (ibv_modify_qp), path MTU %s",
      common::mtu_name(rtr.path_mtu));
  common::qp_to_rtr(ep.qp.get(), rtr);
  common::RtsParams rts;
  rts.local_psn = ep.psn;
  common::qp_to_rts(ep.qp.get(), rts);
}

std::string make_message(std::uint32_t index, std::uint32_t count, std::uint32_t size) {
  std::string text = "message " + std::to_string(index) + "/" + std::to_string(count) + " ";
  for (std::uint32_t i = 0; text.size() < size; ++i)
    text.push_back(static_cast<char>('a' + (index + i) % 26));
  text.resize(size);
  return text;
}

}  // namespace lesson01
