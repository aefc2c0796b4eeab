// Connections: rdma_connect/accept/reject/disconnect/establish/notify/get_request, the
// Manager's events turned into rdma_cm events, the QP transitions librdmacm makes around
// them, rdma_init_qp_attr, rdma_create/destroy_qp(_ex) and _srq(_ex), ECE.
//
// Where each QP transition happens is librdmacm's (not the kernel's: the kernel never
// sees a userspace QP): rdma_create_qp -> INIT; active side, when rdma_get_cm_event takes
// the REP: RTR, RTS, then the RTU; passive rdma_accept: RTR, RTS, then the REP;
// rdma_disconnect: ERR, then the DREQ (or the DREP after a DREQ).
#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "cma.hpp"

namespace uroce::rdmacm {

namespace {

int fail(int e) {
  errno = e;
  return -1;
}

// The REQ's local ACK timeout (what the kernel's CM computes for it). IBA 12.7.34: the
// ACK timeout must cover a packet's round trip, 2 x the path's packet lifetime, plus the
// responder CA's ACK delay. All three are exponents (4.096 us x 2^n), so 2 x lifetime is
// lifetime + 1, and the sum of two powers of two is taken as the larger one, doubled once
// more (+1) when the smaller is at least half of it (its exponent within one). The field
// has 5 bits: at most 31.
uint8_t cm_ack_timeout(uint8_t ca_ack_delay, uint8_t packet_life_time) {
  const int round_trip = packet_life_time + 1;
  const int larger = std::max<int>(round_trip, ca_ack_delay);
  const int smaller = std::min<int>(round_trip, ca_ack_delay);
  const int sum = larger + (smaller + 1 >= larger ? 1 : 0);
  return static_cast<uint8_t>(std::min(sum, 31));
}

// The conn params of an event as cm.c reports a REQ or REP: its responder resources and
// initiator depth swapped (what the peer offers is what this side may use).
void fill_conn(EventPriv* e, const cm::ConnParams& r, bool req, const uint8_t* data,
               size_t len) {
  rdma_conn_param& c = e->event.param.conn;
  c.responder_resources = r.initiator_depth;
  c.initiator_depth = r.responder_resources;
  c.flow_control = r.flow_control;
  c.retry_count = req ? r.retry_count : 0;
  c.rnr_retry_count = r.rnr_retry_count;
  c.srq = r.srq;
  c.qp_num = r.qpn;
  if (data && len) {
    std::memcpy(e->private_data, data, len);
    c.private_data = e->private_data;
    c.private_data_len = static_cast<uint8_t>(len);
  }
}

// The kernel's cma_ib_req_handler failing a REQ: it returns non-zero to the CM, which
// destroys the connection in REQ_RCVD (cm_destroy_id), sending REJ reason 28 with local
// communication ID 0. The Manager does that when `deliver` sets Event::refuse; without
// one (never for a req_received, by the contract) the connection is destroyed as soon as
// the Manager call returns.
void refuse(const cm::Event& ev) {
  if (ev.refuse) {
    *ev.refuse = true;
    return;
  }
  uint32_t cm_id = ev.id;
  lib().deferred.push_back([cm_id] { device_if_open()->mgr->destroy(cm_id); });
}

// A REQ for one of our listeners: a new id, as the kernel's cma_ib_req_handler makes
// (addresses from the rdma_cm header, the listener's context, the path from the REQ),
// and CONNECT_REQUEST on the listener's channel carrying the user's part of the private
// data. A REQ the handler cannot take is refused (refuse above).
void on_req(const cm::Event& ev) {
  auto* listener = static_cast<IdPriv*>(ev.ctx);
  if (!lib().ids.count(listener) || listener->state != State::listen) {
    refuse(ev);  // the listener is going (cma_ib_req_handler: ECONNABORTED)
    return;
  }
  if (ev.transport_type != 0) {
    // cma_ib_check_req_qp_type: the listener's ids are RC (RDMA_PS_TCP).
    say("a REQ from %s for port %u asks for a QP of transport type %u/%u, not RC: "
        "rejected, as the kernel's rdma_cm rejects it",
        ip_str(ev.peer_ip).c_str(), listener->port, ev.transport_type,
        ev.extended_transport_type);
    refuse(ev);
    return;
  }
  const std::vector<uint8_t>& pd = ev.private_data;
  // struct cma_hdr: version 0, IP version in the high nibble of byte 1
  // (cma_ib_id_from_event -> cma_save_req_info, cma_match_private_data).
  if (pd.size() < kCmaHdrSize || pd[0] != 0 || (pd[1] >> 4) != 4) {
    say("a REQ from %s for port %u has no rdma_cm IPv4 header (version byte 0x%02x, IP "
        "version %d; the userspace runtime takes IPv4 only): rejected",
        ip_str(ev.peer_ip).c_str(), static_cast<unsigned>(ev.service_id & 0xffff),
        pd.empty() ? 0 : pd[0], pd.size() > 1 ? pd[1] >> 4 : 0);
    refuse(ev);
    return;
  }
  if (listener->id.route.addr.src_addr.sa_family == AF_INET6 && listener->afonly) {
    // cma_match_private_data: an AF_INET6-only listener takes no IPv4 request.
    say("a REQ from %s for port %u: the listener there is bound to :: and AF_INET6-only "
        "(RDMA_OPTION_ID_AFONLY or net.ipv6.bindv6only), so it takes no IPv4 client: "
        "rejected",
        ip_str(ev.peer_ip).c_str(), listener->port);
    refuse(ev);
    return;
  }
  uint16_t src_port = static_cast<uint16_t>(pd[2] << 8 | pd[3]);
  uint32_t src_ip = static_cast<uint32_t>(pd[16] << 24 | pd[17] << 16 | pd[18] << 8 | pd[19]);
  IdPriv* c = alloc_id(listener->sync ? nullptr : priv(listener->id.channel),
                       listener->id.context, listener->id.ps, listener->id.qp_type);
  if (!c) {
    refuse(ev);  // cma_ib_req_handler: ENOMEM
    return;
  }
  c->passive = true;
  c->state = State::connect;
  c->cm_id = ev.id;
  lib().by_cm[ev.id] = c;
  attach_device(c);  // the device is open: the REQ came through it
  c->peer_ip = src_ip ? src_ip : ev.peer_ip;
  set_sockaddr(c->id.route.addr.src_storage, c->local_ip, listener->port);
  set_sockaddr(c->id.route.addr.dst_storage, c->peer_ip, src_port);
  gid_from_ip(c->id.route.addr.addr.ibaddr.dgid, c->peer_ip);
  // The REQ's primary path (cm_format_paths_from_req): its MTU, its flow label, and the
  // packet lifetime one less than its local ACK timeout. Its traffic class is not among
  // what the Manager reports of a REQ (cm.hpp's ConnParams), so the path keeps the new
  // id's ToS, 0: the REQ's own when the peer set no ToS (this runtime's REQs carry 0).
  c->req_ack_timeout = ev.remote.local_ack_timeout;
  uint8_t life = static_cast<uint8_t>(ev.remote.local_ack_timeout -
                                      (ev.remote.local_ack_timeout > 0));
  fill_path(c, ev.remote.path_mtu, life, ev.remote.flow_label);

  EventPriv* e = new_event(c, RDMA_CM_EVENT_CONNECT_REQUEST);
  e->owner = listener;
  e->event.listen_id = &listener->id;
  size_t user = pd.size() > kCmaHdrSize ? std::min(pd.size(), kReqPrivate) - kCmaHdrSize : 0;
  fill_conn(e, ev.remote, true, pd.data() + kCmaHdrSize, user);
  // librdmacm's ucma_process_conn_req: the new id starts from what the REQ offers.
  c->initiator_depth = e->event.param.conn.initiator_depth;
  c->responder_resources = e->event.param.conn.responder_resources;
  queue_event(listener, e);
  trace("REQ from %s:%u for port %u: CONNECT_REQUEST", ip_str(c->peer_ip).c_str(), src_port,
        listener->port);
}

}  // namespace

void deliver(const cm::Event& ev) {
  if (ev.type == cm::EventType::req_received) {
    on_req(ev);
    return;
  }
  IdPriv* p = nullptr;
  auto it = lib().by_cm.find(ev.id);
  if (it != lib().by_cm.end()) {
    p = it->second;
  } else {
    // An event from inside Manager::connect, before rdma_connect learns its ID: only for
    // an active id that is connecting and has no connection yet (never a listener, whose
    // ctx a req_received carries, nor a passive id).
    auto* c = static_cast<IdPriv*>(ev.ctx);
    if (c && lib().ids.count(c) && !c->passive && c->state == State::connect &&
        c->cm_id == 0) {
      p = c;
      p->cm_id = ev.id;
      lib().by_cm[ev.id] = p;
    }
  }
  if (!p) return;  // the id is gone: nobody wants it
  // cma_ib_handler: TIMEWAIT_EXIT only in the DISCONNECT state, all else only in CONNECT.
  if (ev.type == cm::EventType::timewait_exit) {
    if (p->state == State::disconnect)
      queue_event(p, new_event(p, RDMA_CM_EVENT_TIMEWAIT_EXIT));
    return;
  }
  if (p->state != State::connect) return;
  EventPriv* e = nullptr;
  switch (ev.type) {
    case cm::EventType::rep_received:
      e = new_event(p, RDMA_CM_EVENT_CONNECT_RESPONSE);
      e->rep = true;
      fill_conn(e, ev.remote, false, ev.private_data.data(),
                std::min(ev.private_data.size(), kRepPrivate));
      break;
    case cm::EventType::rtu_received:
      p->cm_established = true;
      e = new_event(p, RDMA_CM_EVENT_ESTABLISHED);
      break;
    case cm::EventType::rej_received:
      p->cm_established = false;
      e = new_event(p, RDMA_CM_EVENT_REJECTED, ev.rej_reason);
      fill_conn(e, {}, false, ev.private_data.data(),
                std::min(ev.private_data.size(), kRejPrivate));
      e->event.param.conn = {};
      e->event.param.conn.private_data = e->private_data;
      e->event.param.conn.private_data_len =
          static_cast<uint8_t>(std::min(ev.private_data.size(), kRejPrivate));
      break;
    case cm::EventType::req_error:
    case cm::EventType::rep_error:
      e = new_event(p, RDMA_CM_EVENT_UNREACHABLE, -ETIMEDOUT);
      break;
    case cm::EventType::dreq_error:
    case cm::EventType::dreq_received:
    case cm::EventType::drep_received:
      p->state = State::disconnect;
      p->cm_established = false;
      e = new_event(p, RDMA_CM_EVENT_DISCONNECTED,
                    ev.type == cm::EventType::dreq_error ? -ETIMEDOUT : 0);
      break;
    default:
      return;
  }
  trace("%s from %s: %s", p->passive ? "passive" : "active", ip_str(p->peer_ip).c_str(),
        e->rep ? "REP (RTR, RTS and the RTU when rdma_get_cm_event takes it)"
               : rdma_event_str(e->event.event));
  queue_event(p, e);
}

// ---- QP transitions ------------------------------------------------------------------
int init_qp_attr_locked(IdPriv* p, ibv_qp_attr& attr, int& mask) {
  ibv_qp_state state = attr.qp_state;
  ibv_qp_attr a{};
  a.qp_state = state;
  int m = 0;
  if (!p->id.verbs) return EINVAL;
  if (!p->cm_id) {
    // cma_ib_init_qp_attr: before any CM exchange only INIT's attributes are known.
    a.pkey_index = 0;
    a.port_num = p->id.port_num;
    a.qp_access_flags = 0;
    m = IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
  } else {
    if (int e = device_if_open()->mgr->init_qp_attr(p->cm_id, state, a, m)) return e;
    if (state == IBV_QPS_RTR) {
      // The address vector is the address layer's: the kernel's CM builds it from the path
      // cma.c gave it (cm_init_av_by_path): the route's path record on the active side,
      // the REQ's primary path on the passive side (fill_path). RoCE v2 always has a GRH;
      // GID index 0 is the device's one GID.
      a.ah_attr = {};
      a.ah_attr.is_global = 1;
      a.ah_attr.grh.dgid = p->path.dgid;
      a.ah_attr.grh.flow_label = ntohl(p->path.flow_label);
      a.ah_attr.grh.sgid_index = 0;
      a.ah_attr.grh.hop_limit = p->path.hop_limit;
      a.ah_attr.grh.traffic_class = p->path.traffic_class;
      a.ah_attr.sl = p->path.sl;
      a.ah_attr.port_num = p->id.port_num;
      m |= IBV_QP_AV;
    }
    // Everything else as the CM computes it (ib_cm_init_qp_attr), the RTS's sq_psn
    // included: the starting PSN the peer announced in its REQ or REP.
  }
  // cma.c's rdma_init_qp_attr: at RTR our receive queue starts at the PSN this id
  // announces (id_priv->seq_num), not the CM's value: on the passive side the REP that
  // carries it has not been sent yet when librdmacm moves the QP to RTR.
  if (state == IBV_QPS_RTR) a.rq_psn = p->psn;
  // RDMA_OPTION_ID_ACK_TIMEOUT overrides the CM's value, as in the kernel.
  if ((m & IBV_QP_TIMEOUT) && p->timeout_set) a.timeout = p->timeout;
  attr = a;
  mask = m;
  return 0;
}

namespace {

int modify(IdPriv* p, ibv_qp_attr& a, int m) {
  int e = ibv_modify_qp(p->id.qp, &a, m);
  return e ? e : 0;
}

// librdmacm's ucma_modify_qp_rtr: INIT again (the attributes the CM now knows), then RTR
// with the responder resources the application chose, if it chose.
int modify_qp_rtr(IdPriv* p, uint8_t resp_res) {
  if (!p->id.qp) return 0;
  ibv_qp_attr a{};
  int m = 0;
  a.qp_state = IBV_QPS_INIT;
  if (int e = init_qp_attr_locked(p, a, m)) return e;
  if (int e = modify(p, a, m)) return e;
  a.qp_state = IBV_QPS_RTR;
  if (int e = init_qp_attr_locked(p, a, m)) return e;
  if (resp_res != RDMA_MAX_RESP_RES) a.max_dest_rd_atomic = resp_res;
  return modify(p, a, m);
}

int modify_qp_rts(IdPriv* p, uint8_t init_depth) {
  if (!p->id.qp) return 0;
  ibv_qp_attr a{};
  int m = 0;
  a.qp_state = IBV_QPS_RTS;
  if (int e = init_qp_attr_locked(p, a, m)) return e;
  if (init_depth != RDMA_MAX_INIT_DEPTH) a.max_rd_atomic = init_depth;
  return modify(p, a, m);
}

// The active side's answer to a REP: RTR, RTS, then the RTU (librdmacm's
// ucma_process_conn_resp). 0 or errno; on failure the QP is put in ERR.
int process_conn_resp(IdPriv* p) {
  int e = modify_qp_rtr(p, RDMA_MAX_RESP_RES);
  if (!e) e = modify_qp_rts(p, RDMA_MAX_INIT_DEPTH);
  if (!e) {
    e = device_if_open()->mgr->ready_to_use(p->cm_id);
    after_manager_call();
  }
  if (e)
    modify_qp_err(p);
  else
    p->cm_established = true;  // the RTU is sent
  return e;
}

}  // namespace

int modify_qp_err(IdPriv* p) {
  if (!p->id.qp) return 0;
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_ERR;
  return modify(p, a, IBV_QP_STATE);
}

bool process_popped(EventPriv* e) {
  IdPriv* p = priv(e->event.id);
  if (e->rep) {
    if (!p->id.qp) {
      e->event.event = RDMA_CM_EVENT_CONNECT_RESPONSE;  // the program calls rdma_establish
      return true;
    }
    int err = process_conn_resp(p);
    if (!err) {
      e->event.event = RDMA_CM_EVENT_ESTABLISHED;
    } else {
      say("the REP from %s came, but moving the QP to RTR/RTS failed: %s "
          "(RDMA_CM_EVENT_CONNECT_ERROR)",
          ip_str(p->peer_ip).c_str(), std::strerror(err));
      // librdmacm puts ucma_process_conn_resp_ece's return in the status: -1, the reason
      // in errno (a failed ibv_modify_qp or ACCEPT write; ibv_set_ece's EOPNOTSUPP on
      // this device is ignored, so its positive errors never occur here).
      e->event.event = RDMA_CM_EVENT_CONNECT_ERROR;
      e->event.status = -1;
      p->connect_error = true;
      errno = err;
    }
    return true;
  }
  switch (e->event.event) {
    case RDMA_CM_EVENT_REJECTED:
      if (p->connect_error) break;
      modify_qp_err(p);
      return true;
    case RDMA_CM_EVENT_DISCONNECTED:
      if (p->connect_error) break;
      return true;
    default:
      return true;
  }
  delete e;  // after a CONNECT_ERROR, librdmacm drops the connection's end quietly
  return false;
}

namespace {

// librdmacm's ucma_valid_param: RC needs a QP or a conn_param; depths within the device's.
int valid_param(IdPriv* p, const rdma_conn_param* param) {
  if (!p->id.qp && !param) return EINVAL;
  if (!param) return 0;
  Device* dev = device_if_open();
  if (param->responder_resources != RDMA_MAX_RESP_RES &&
      param->responder_resources > dev->attr.max_qp_rd_atom) {
    say("responder_resources %u is more than the device's max_qp_rd_atom %d (EINVAL): "
        "ask for at most that, or RDMA_MAX_RESP_RES for the device's maximum",
        param->responder_resources, dev->attr.max_qp_rd_atom);
    return EINVAL;
  }
  if (param->initiator_depth != RDMA_MAX_INIT_DEPTH &&
      param->initiator_depth > dev->attr.max_qp_init_rd_atom) {
    say("initiator_depth %u is more than the device's max_qp_init_rd_atom %d (EINVAL): "
        "ask for at most that, or RDMA_MAX_INIT_DEPTH for the device's maximum",
        param->initiator_depth, dev->attr.max_qp_init_rd_atom);
    return EINVAL;
  }
  return 0;
}

uint8_t cap7(uint8_t v) { return std::min<uint8_t>(7, v); }

void create_cqs_cleanup(rdma_cm_id* id) {
  if (id->recv_cq) {
    ibv_destroy_cq(id->recv_cq);
    if (id->send_cq && id->send_cq != id->recv_cq) {
      ibv_destroy_cq(id->send_cq);
      id->send_cq = nullptr;
    }
    id->recv_cq = nullptr;
  }
  if (id->recv_cq_channel) {
    ibv_destroy_comp_channel(id->recv_cq_channel);
    if (id->send_cq_channel && id->send_cq_channel != id->recv_cq_channel) {
      ibv_destroy_comp_channel(id->send_cq_channel);
      id->send_cq_channel = nullptr;
    }
    id->recv_cq_channel = nullptr;
  }
}

// librdmacm's ucma_create_cqs: a CQ and completion channel for each queue the program
// gave none (rdma_create_ep programs rely on id->send_cq/recv_cq).
int create_cqs(rdma_cm_id* id, uint32_t send_size, uint32_t recv_size) {
  if (recv_size) {
    id->recv_cq_channel = ibv_create_comp_channel(id->verbs);
    if (!id->recv_cq_channel) goto err;
    id->recv_cq = ibv_create_cq(id->verbs, static_cast<int>(recv_size), id,
                                id->recv_cq_channel, 0);
    if (!id->recv_cq) goto err;
  }
  if (send_size) {
    id->send_cq_channel = ibv_create_comp_channel(id->verbs);
    if (!id->send_cq_channel) goto err;
    id->send_cq = ibv_create_cq(id->verbs, static_cast<int>(send_size), id,
                                id->send_cq_channel, 0);
    if (!id->send_cq) goto err;
  }
  return 0;
err:
  create_cqs_cleanup(id);
  return -1;
}

}  // namespace

}  // namespace uroce::rdmacm

using namespace uroce::rdmacm;
namespace cm = uroce::cm;

RDMACM_EXPORT int rdma_init_qp_attr(rdma_cm_id* id, ibv_qp_attr* qp_attr, int* qp_attr_mask) {
  if (!id || !qp_attr || !qp_attr_mask) return fail(EINVAL);
  std::lock_guard<std::mutex> l(lib().mu);
  int e = init_qp_attr_locked(priv(id), *qp_attr, *qp_attr_mask);
  return e ? fail(e) : 0;
}

RDMACM_EXPORT int rdma_create_qp_ex(rdma_cm_id* id, ibv_qp_init_attr_ex* attr) {
  if (!id || !attr) return fail(EINVAL);
  if (id->qp) return fail(EINVAL);
  if (!id->verbs) {
    // The kernel has no device for an unbound or wildcard id yet: nothing to put a QP on.
    say("rdma_create_qp on an rdma_cm_id with no device yet (EINVAL): create the QP after "
        "rdma_resolve_addr, or on the id of a CONNECT_REQUEST");
    return fail(EINVAL);
  }
  if (attr->qp_type != IBV_QPT_RC) {
    not_built("rdma_create_qp of a QP other than RC (UD, UC, XRC)",
              "RC QPs work (RDMA_PS_TCP)");
    return -1;
  }
  IdPriv* p = priv(id);
  if (!(attr->comp_mask & IBV_QP_INIT_ATTR_PD) || !attr->pd) {
    attr->comp_mask |= IBV_QP_INIT_ATTR_PD;
    attr->pd = id->pd;
  } else if (id->verbs != attr->pd->context) {
    return fail(EINVAL);
  }
  if ((id->recv_cq && attr->recv_cq && id->recv_cq != attr->recv_cq) ||
      (id->send_cq && attr->send_cq && id->send_cq != attr->send_cq))
    return fail(EINVAL);
  if (create_cqs(id, attr->send_cq || id->send_cq ? 0 : attr->cap.max_send_wr,
                 attr->recv_cq || id->recv_cq ? 0 : attr->cap.max_recv_wr))
    return -1;
  if (!attr->send_cq) attr->send_cq = id->send_cq;
  if (!attr->recv_cq) attr->recv_cq = id->recv_cq;
  if (id->srq && !attr->srq) attr->srq = id->srq;
  ibv_qp* qp = ibv_create_qp_ex(id->verbs, attr);
  if (!qp) {
    // -1 with libibverbs' errno, as librdmacm since v33 ("Don't overwrite errno returned
    // from libibverbs"; before, ENOMEM), kept across the CQ clean-up.
    int e = errno;
    create_cqs_cleanup(id);
    return fail(e);
  }
  // ECE: ibv_query_ece answers EOPNOTSUPP on this device, so the local ECE stays as it is
  // (librdmacm's init_ece ignores EOPNOTSUPP).
  std::lock_guard<std::mutex> l(lib().mu);
  ibv_qp_attr a{};
  int m = 0;
  a.qp_state = IBV_QPS_INIT;
  int e = init_qp_attr_locked(p, a, m);
  if (!e) e = ibv_modify_qp(qp, &a, m);
  if (e) {
    ibv_destroy_qp(qp);
    create_cqs_cleanup(id);
    return fail(e);
  }
  id->pd = qp->pd;
  id->qp = qp;
  return 0;
}

RDMACM_EXPORT int rdma_create_qp(rdma_cm_id* id, ibv_pd* pd, ibv_qp_init_attr* qp_init_attr) {
  if (!id || !qp_init_attr) return fail(EINVAL);
  ibv_qp_init_attr_ex ex{};
  std::memcpy(&ex, qp_init_attr, sizeof *qp_init_attr);
  ex.comp_mask = IBV_QP_INIT_ATTR_PD;
  ex.pd = pd ? pd : id->pd;
  int ret = rdma_create_qp_ex(id, &ex);
  std::memcpy(qp_init_attr, &ex, sizeof *qp_init_attr);
  return ret;
}

RDMACM_EXPORT void rdma_destroy_qp(rdma_cm_id* id) {
  ibv_destroy_qp(id->qp);
  id->qp = nullptr;
  create_cqs_cleanup(id);
}

RDMACM_EXPORT int rdma_create_srq_ex(rdma_cm_id* id, ibv_srq_init_attr_ex* attr) {
  if (!id || !attr) return fail(EINVAL);
  if (!(attr->comp_mask & IBV_SRQ_INIT_ATTR_TYPE)) return fail(EINVAL);
  if (attr->srq_type != IBV_SRQT_BASIC) {
    not_built("XRC (rdma_create_srq of an XRC SRQ)", "RC QPs work (RDMA_PS_TCP)");
    return -1;
  }
  if (!(attr->comp_mask & IBV_SRQ_INIT_ATTR_PD) || !attr->pd) {
    attr->pd = id->pd;
    attr->comp_mask |= IBV_SRQ_INIT_ATTR_PD;
  }
  // The runtime's libibverbs answers for SRQs (it says on stderr it has none).
  ibv_srq* srq = ibv_create_srq_ex(id->verbs, attr);
  if (!srq) return -1;
  if (!id->pd) id->pd = attr->pd;
  id->srq = srq;
  return 0;
}

RDMACM_EXPORT int rdma_create_srq(rdma_cm_id* id, ibv_pd* pd, ibv_srq_init_attr* attr) {
  if (!id || !attr) return fail(EINVAL);
  ibv_srq_init_attr_ex ex{};
  std::memcpy(&ex, attr, sizeof *attr);
  ex.comp_mask = IBV_SRQ_INIT_ATTR_TYPE | IBV_SRQ_INIT_ATTR_PD;
  ex.srq_type = id->qp_type == IBV_QPT_XRC_RECV ? IBV_SRQT_XRC : IBV_SRQT_BASIC;
  ex.pd = pd;
  int ret = rdma_create_srq_ex(id, &ex);
  std::memcpy(attr, &ex, sizeof *attr);
  return ret;
}

RDMACM_EXPORT void rdma_destroy_srq(rdma_cm_id* id) {
  ibv_destroy_srq(id->srq);
  id->srq = nullptr;
  create_cqs_cleanup(id);
}

RDMACM_EXPORT int rdma_connect(rdma_cm_id* id, rdma_conn_param* conn_param) {
  if (!id) return fail(EINVAL);
  if (int e = wait_connect_gate()) return fail(e);
  IdPriv* p = priv(id);
  std::unique_lock<std::mutex> lk(lib().mu);
  if (p->state != State::route_resolved) {
    say("rdma_connect on an rdma_cm_id whose route is not resolved (EINVAL): call "
        "rdma_resolve_addr, then rdma_resolve_route, and wait for ROUTE_RESOLVED first");
    return fail(EINVAL);
  }
  if (int e = valid_param(p, conn_param)) return fail(e);
  Device* dev = device_if_open();
  // librdmacm: RDMA_MAX_* (or no conn_param) means the device's maximum.
  p->initiator_depth = conn_param && conn_param->initiator_depth != RDMA_MAX_INIT_DEPTH
                           ? conn_param->initiator_depth
                           : static_cast<uint8_t>(dev->attr.max_qp_init_rd_atom);
  p->responder_resources = conn_param && conn_param->responder_resources != RDMA_MAX_RESP_RES
                               ? conn_param->responder_resources
                               : static_cast<uint8_t>(dev->attr.max_qp_rd_atom);
  size_t user_len = p->connect_data.size() +
                    (conn_param && conn_param->private_data ? conn_param->private_data_len : 0);
  if (user_len > kReqUser) {
    say("rdma_connect with %zu bytes of private data: a REQ carries at most %zu after the "
        "rdma_cm header (EINVAL)",
        user_len, kReqUser);
    return fail(EINVAL);
  }
  cm::ConnParams mine;
  mine.qpn = id->qp ? id->qp->qp_num : conn_param->qp_num;
  mine.srq = id->qp ? id->qp->srq != nullptr : conn_param->srq != 0;
  mine.starting_psn = p->psn;
  mine.responder_resources = p->responder_resources;
  mine.initiator_depth = p->initiator_depth;
  mine.flow_control = conn_param ? conn_param->flow_control != 0 : false;
  mine.retry_count = conn_param ? cap7(conn_param->retry_count) : 7;
  mine.rnr_retry_count = conn_param ? cap7(conn_param->rnr_retry_count) : 7;
  mine.path_mtu = static_cast<ibv_mtu>(p->path.mtu);
  mine.local_ack_timeout = cm_ack_timeout(dev->attr.local_ca_ack_delay, p->path.packet_life_time);
  // cm_format_req: the primary path's flow label, the one cma_resolve_iboe_route hashed
  // from the ports.
  mine.flow_label = ntohl(p->path.flow_label);
  // The kernel's struct cma_hdr, then the user's bytes (cma_format_hdr).
  std::vector<uint8_t>& pd = mine.private_data;
  pd.assign(kCmaHdrSize, 0);
  pd[0] = 0;         // cma_version
  pd[1] = 4 << 4;    // IP version 4 in the high nibble
  pd[2] = static_cast<uint8_t>(p->port >> 8);
  pd[3] = static_cast<uint8_t>(p->port);
  for (int i = 0; i < 4; i++) {
    pd[16 + i] = static_cast<uint8_t>(p->local_ip >> (24 - 8 * i));
    pd[32 + i] = static_cast<uint8_t>(p->peer_ip >> (24 - 8 * i));
  }
  pd.insert(pd.end(), p->connect_data.begin(), p->connect_data.end());
  if (conn_param && conn_param->private_data && conn_param->private_data_len) {
    auto* d = static_cast<const uint8_t*>(conn_param->private_data);
    pd.insert(pd.end(), d, d + conn_param->private_data_len);
  }
  p->connect_data.clear();
  uint16_t dport = ntohs(id->route.addr.dst_sin.sin_port);
  p->state = State::connect;
  p->req_ack_timeout = mine.local_ack_timeout;
  uint32_t cm_id = dev->mgr->connect(p->peer_ip, kServiceIdTcp | dport, mine, p);
  if (!cm_id) {  // the private data did not fit (checked above: never)
    p->state = State::route_resolved;
    after_manager_call();
    return fail(EINVAL);
  }
  if (!p->cm_id) {
    p->cm_id = cm_id;
    lib().by_cm[cm_id] = p;
  }
  after_manager_call();
  trace("REQ to %s:%u (QP 0x%x, PSN 0x%06x)", ip_str(p->peer_ip).c_str(), dport, mine.qpn,
        mine.starting_psn);
  return complete_sync(p, lk);
}

RDMACM_EXPORT int rdma_accept(rdma_cm_id* id, rdma_conn_param* conn_param) {
  if (!id) return fail(EINVAL);
  IdPriv* p = priv(id);
  std::unique_lock<std::mutex> lk(lib().mu);
  if (!p->passive || p->state != State::connect || !p->cm_id) return fail(EINVAL);
  if (int e = valid_param(p, conn_param)) return fail(e);
  size_t len = conn_param && conn_param->private_data ? conn_param->private_data_len : 0;
  Device* dev = device_if_open();
  // librdmacm: the REQ's offer, capped by the device, unless the program says otherwise.
  if (!conn_param || conn_param->initiator_depth == RDMA_MAX_INIT_DEPTH)
    p->initiator_depth = std::min<uint8_t>(
        p->initiator_depth, static_cast<uint8_t>(dev->attr.max_qp_init_rd_atom));
  else
    p->initiator_depth = conn_param->initiator_depth;
  if (!conn_param || conn_param->responder_resources == RDMA_MAX_RESP_RES)
    p->responder_resources = std::min<uint8_t>(
        p->responder_resources, static_cast<uint8_t>(dev->attr.max_qp_rd_atom));
  else
    p->responder_resources = conn_param->responder_resources;

  cm::ConnParams mine;
  mine.qpn = id->qp ? id->qp->qp_num : conn_param->qp_num;
  mine.srq = id->qp ? id->qp->srq != nullptr : conn_param->srq != 0;
  mine.starting_psn = p->psn;
  mine.responder_resources = p->responder_resources;
  mine.initiator_depth = p->initiator_depth;
  mine.flow_control = conn_param ? conn_param->flow_control != 0 : false;
  mine.rnr_retry_count = conn_param ? cap7(conn_param->rnr_retry_count) : 7;
  mine.target_ack_delay = dev->attr.local_ca_ack_delay;
  if (len && len <= kRepPrivate) {
    auto* d = static_cast<const uint8_t*>(conn_param->private_data);
    mine.private_data.assign(d, d + len);
  }
  // librdmacm: RTR and RTS before the REP goes, so that the QP is ready for the first
  // packet the active side may send right after its RTU. If either fails, rdma_accept
  // returns at once: nothing is sent and the REQ stays unanswered.
  int e = modify_qp_rtr(p, p->responder_resources);
  if (!e) e = modify_qp_rts(p, p->initiator_depth);
  if (e) return fail(e);
  // Then the kernel's rdma_accept: ib_send_cm_rep refuses more private data than a REP
  // holds (EINVAL), and when sending the REP fails the kernel rejects the REQ (REJ reason
  // 28, consumer defined) before it returns the error; librdmacm then moves the QP to ERR.
  if (len > kRepPrivate) {
    say("rdma_accept with %zu bytes of private data: a REP carries at most %zu (EINVAL); "
        "the connection is rejected",
        len, kRepPrivate);
    e = EINVAL;
  } else {
    e = dev->mgr->accept(p->cm_id, mine);
  }
  if (e) {
    dev->mgr->reject(p->cm_id, cm::kRejConsumerDefined);
    after_manager_call();
    modify_qp_err(p);
    return fail(e);
  }
  after_manager_call();
  trace("REP to %s (QP 0x%x, PSN 0x%06x)", ip_str(p->peer_ip).c_str(), mine.qpn,
        mine.starting_psn);
  return complete_sync(p, lk);
}

static int reject_with_reason(rdma_cm_id* id, const void* private_data, uint8_t len,
                              uint16_t reason) {
  if (!id) return fail(EINVAL);
  IdPriv* p = priv(id);
  std::lock_guard<std::mutex> l(lib().mu);
  if (!p->cm_id) return fail(EINVAL);
  if (len > kRejPrivate) {
    say("rdma_reject with %u bytes of private data: a REJ carries at most %zu (EINVAL)", len,
        kRejPrivate);
    return fail(EINVAL);
  }
  std::span<const uint8_t> data;
  if (private_data && len) data = {static_cast<const uint8_t*>(private_data), len};
  int e = device_if_open()->mgr->reject(p->cm_id, reason, data);
  after_manager_call();
  return e ? fail(e) : 0;
}

RDMACM_EXPORT int rdma_reject(rdma_cm_id* id, const void* private_data,
                              uint8_t private_data_len) {
  // The kernel's ucma_reject: reason 0 from the library means "consumer defined" (28).
  return reject_with_reason(id, private_data, private_data_len, cm::kRejConsumerDefined);
}

RDMACM_EXPORT int rdma_reject_ece(rdma_cm_id* id, const void* private_data,
                                  uint8_t private_data_len) {
  // IBTA's CM_REJ_VENDOR_OPTION_NOT_SUPPORTED, as librdmacm sends it.
  return reject_with_reason(id, private_data, private_data_len, 35);
}

RDMACM_EXPORT int rdma_notify(rdma_cm_id* id, ibv_event_type event) {
  if (!id) return fail(EINVAL);
  IdPriv* p = priv(id);
  std::lock_guard<std::mutex> l(lib().mu);
  // The kernel's ucma_notify -> rdma_notify: EINVAL without a CM connection, else the
  // CM's answer (ib_cm_notify), its -errno the errno of librdmacm's failed write.
  if (!p->cm_id) return fail(EINVAL);
  switch (event) {
    case IBV_EVENT_COMM_EST: {
      // cm_establish: the passive side's QP received a packet before the RTU, which may
      // be lost (the active side sends it once, and again only in answer to a duplicate
      // REP) or late. The connection is established now (ESTABLISHED comes on the
      // channel); EISCONN if it already was, EINVAL in any other state.
      int e = device_if_open()->mgr->establish(p->cm_id);
      after_manager_call();
      return e ? fail(e) : 0;
    }
    case IBV_EVENT_PATH_MIG:
      // cm_migrate: only an established connection, whose alternate path would become
      // the primary one; this CM has no alternate path, so nothing changes. EINVAL in any
      // other state.
      return p->cm_established ? 0 : fail(EINVAL);
    default:
      return fail(EINVAL);
  }
}

RDMACM_EXPORT int rdma_disconnect(rdma_cm_id* id) {
  if (!id) return fail(EINVAL);
  IdPriv* p = priv(id);
  std::unique_lock<std::mutex> lk(lib().mu);
  if (!id->verbs) return fail(EINVAL);
  // ucma_shutdown: the QP to ERR first (its outstanding WRs flush), then the DREQ.
  if (int e = modify_qp_err(p)) return fail(e);
  if (!p->cm_id) return fail(EINVAL);
  // Manager::disconnect sends the DREQ, or the DREP if the peer's DREQ came first; in any
  // other state it sends nothing and the kernel's rdma_disconnect still returns 0.
  int e = device_if_open()->mgr->disconnect(p->cm_id);
  after_manager_call();
  if (!e) p->cm_established = false;  // DREQ sent (DREQ_SENT), or DREP (time-wait)
  if (e && p->sync) {
    bool queued = false;
    for (EventPriv* ev : priv(id->channel)->queue) queued |= ev->owner == p;
    if (!queued) return 0;  // no event will come to wait for
  }
  return complete_sync(p, lk);
}

RDMACM_EXPORT int rdma_establish(rdma_cm_id* id) {
  if (!id) return fail(EINVAL);
  if (id->qp) return fail(EINVAL);  // librdmacm: only for ids without a QP
  IdPriv* p = priv(id);
  std::lock_guard<std::mutex> l(lib().mu);
  if (!p->cm_id || p->passive) return fail(EINVAL);
  int e = device_if_open()->mgr->ready_to_use(p->cm_id);
  after_manager_call();
  if (e) return fail(e);
  p->cm_established = true;
  return 0;
}

RDMACM_EXPORT int rdma_get_request(rdma_cm_id* listen, rdma_cm_id** id) {
  if (!listen || !id) return fail(EINVAL);
  IdPriv* lp = priv(listen);
  if (!lp->sync) return fail(EINVAL);
  if (listen->event) {
    rdma_ack_cm_event(listen->event);
    listen->event = nullptr;
  }
  rdma_cm_event* event = nullptr;
  if (rdma_get_cm_event(listen->channel, &event)) return -1;
  int ret = 0;
  if (event->event == RDMA_CM_EVENT_REJECTED) {
    ret = fail(ECONNREFUSED);
  } else if (event->status) {
    ret = fail(-event->status);
  } else if (event->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
    ret = fail(EINVAL);
  } else if (lp->has_qp_init_attr) {
    // rdma_create_ep's passive side: the QP of each new connection made here.
    ibv_qp_init_attr attr = lp->qp_init_attr;
    ret = rdma_create_qp(event->id, listen->pd, &attr);
  }
  if (ret) {
    listen->event = event;
    return ret;
  }
  *id = event->id;
  (*id)->event = event;
  return 0;
}

RDMACM_EXPORT int rdma_set_local_ece(rdma_cm_id* id, ibv_ece* ece) {
  if (!id || id->qp || !ece || !ece->vendor_id || ece->comp_mask) return fail(EINVAL);
  std::lock_guard<std::mutex> l(lib().mu);
  priv(id)->local_ece.vendor_id = ece->vendor_id;
  priv(id)->local_ece.options = ece->options;
  return 0;
}

RDMACM_EXPORT int rdma_get_remote_ece(rdma_cm_id* id, ibv_ece* ece) {
  if (!id || id->qp || !ece) return fail(EINVAL);
  std::lock_guard<std::mutex> l(lib().mu);
  // ECE options never travel in this runtime's CM messages (the device has no ECE): the
  // peer's are all zero, as librdmacm reports with a kernel or device without ECE.
  ece->vendor_id = priv(id)->remote_ece.vendor_id;
  ece->options = priv(id)->remote_ece.options;
  ece->comp_mask = 0;
  return 0;
}
