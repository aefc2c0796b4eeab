#include "common/qp_state.hpp"

#include <algorithm>

#include "common/device.hpp"
#include "common/dump.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"

namespace common {

void qp_to_init(ibv_qp* qp, std::uint8_t port, unsigned access_flags) {
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_INIT;
  attr.pkey_index = 0;     // partition key table entry 0: the default partition (RoCE has one)
  attr.port_num = port;    // the physical port this QP sends and receives on
  attr.qp_access_flags = access_flags;  // what the PEER may do to our memory through this QP
                                        // (REMOTE_WRITE/READ); SEND/RECV needs none
  check_rc(ibv_modify_qp(qp, &attr,
                         IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS),
           "ibv_modify_qp(RESET->INIT)", "check the port number (-i) and the access flags");
  LOG(slow, "QP 0x%06x: RESET -> INIT (port %u, access 0x%x)", qp->qp_num, port, access_flags);
  dump_qp(qp);
}

void qp_to_rtr(ibv_qp* qp, const RtrParams& p) {
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_RTR;
  attr.path_mtu = p.path_mtu;          // largest payload per packet; longer messages are
                                       // split into FIRST/MIDDLE/LAST packets
  attr.dest_qp_num = p.remote_qpn;     // BTH DestQP of every packet we send
  attr.rq_psn = p.remote_psn;          // the PSN we expect first; anything else is a
                                       // duplicate or a sequence error
  attr.max_dest_rd_atomic = p.max_dest_rd_atomic;  // responder resources for incoming READs
  attr.min_rnr_timer = p.min_rnr_timer;  // told to a sender we NAK for lack of a RECV
  attr.ah_attr.port_num = p.port;
  attr.ah_attr.dlid = p.remote_lid;    // InfiniBand routes by LID; RoCE ignores it
  attr.ah_attr.sl = 0;                 // service level 0: default priority
  attr.ah_attr.src_path_bits = 0;
  if (p.use_grh) {
    // RoCE has no LIDs: every packet carries a Global Route Header, i.e. IP addresses.
    attr.ah_attr.is_global = 1;
    attr.ah_attr.grh.dgid = p.remote_gid;        // destination IP (IPv4-mapped on RoCE v2)
    attr.ah_attr.grh.sgid_index = static_cast<uint8_t>(p.sgid_index);  // our source IP
    // The IP TTL / hop limit. On RoCE the kernel ignores this value: for the address
    // resolution it does at RTR (the peer's MAC) it also takes the hop limit of the IP
    // route to the peer (64 on Linux by default), and that is what the packets carry.
    attr.ah_attr.grh.hop_limit = 64;
    attr.ah_attr.grh.traffic_class = 0;          // DSCP/ECN 0: default
    attr.ah_attr.grh.flow_label = 0;
  }
  check_rc(ibv_modify_qp(qp, &attr,
                         IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                             IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER),
           "ibv_modify_qp(INIT->RTR)",
           "EINVAL usually means our GID and the peer's are of different kinds (one IPv4, "
           "::ffff:a.b.c.d, the other IPv6, such as fe80::...: use the same kind of -g on both "
           "sides) or a GID index beyond the table; ENODATA an empty GID index; ETIMEDOUT "
           "means the peer's GID (its IP address) did not answer ARP: check the address the "
           "peer announced");
  LOG(slow, "QP 0x%06x: INIT -> RTR (peer QPN 0x%06x, expect PSN 0x%06x, MTU %s)", qp->qp_num,
      p.remote_qpn, p.remote_psn, mtu_name(p.path_mtu));
  dump_qp(qp);
}

void qp_to_rts(ibv_qp* qp, const RtsParams& p) {
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_RTS;
  attr.sq_psn = p.local_psn;          // the PSN of our first packet: the peer set its rq_psn
                                      // to this value, so both sides must agree
  attr.timeout = p.timeout;           // wait 4.096 us * 2^timeout for an ACK, then resend
  attr.retry_cnt = p.retry_cnt;       // give up after this many resends (the peer is gone);
                                      // Soft-RoCE never gives up when it is 7
  attr.rnr_retry = p.rnr_retry;       // resends after "receiver not ready" NAKs (7 = forever)
  attr.max_rd_atomic = p.max_rd_atomic;  // our outstanding READs/atomics
  check_rc(ibv_modify_qp(qp, &attr,
                         IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                             IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC),
           "ibv_modify_qp(RTR->RTS)", "check the timer and retry values");
  LOG(slow, "QP 0x%06x: RTR -> RTS (first PSN 0x%06x, timeout %u, retry %u, rnr_retry %u)",
      qp->qp_num, p.local_psn, p.timeout, p.retry_cnt, p.rnr_retry);
  dump_qp(qp);
}

void connect_qp(ibv_qp* qp, const OpenPort& port, const Hello& peer, std::uint32_t local_psn) {
  RtrParams rtr;
  rtr.port = port.port;
  rtr.sgid_index = port.gid.index;
  rtr.use_grh = port.attr.link_layer == IBV_LINK_LAYER_ETHERNET;
  rtr.path_mtu = std::min(port.attr.active_mtu, peer.mtu);
  rtr.remote_qpn = peer.qpn;
  rtr.remote_psn = peer.psn;
  rtr.remote_lid = peer.lid;
  rtr.remote_gid = peer.gid;
  qp_to_rtr(qp, rtr);
  RtsParams rts;
  rts.local_psn = local_psn;
  qp_to_rts(qp, rts);
}

ibv_qp_state query_qp_state(ibv_qp* qp) {
  ibv_qp_attr attr{};
  ibv_qp_init_attr init{};
  check_rc(ibv_query_qp(qp, &attr, IBV_QP_STATE, &init), "ibv_query_qp", "the QP may already be destroyed");
  return attr.qp_state;
}

const char* qp_state_name(ibv_qp_state state) {
  switch (state) {
    case IBV_QPS_RESET: return "RESET";
    case IBV_QPS_INIT: return "INIT";
    case IBV_QPS_RTR: return "RTR";
    case IBV_QPS_RTS: return "RTS";
    case IBV_QPS_SQD: return "SQD";
    case IBV_QPS_SQE: return "SQE";
    case IBV_QPS_ERR: return "ERR";
    case IBV_QPS_UNKNOWN: break;
  }
  return "UNKNOWN";
}

}  // namespace common
