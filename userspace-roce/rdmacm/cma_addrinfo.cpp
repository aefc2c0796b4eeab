// rdma_getaddrinfo/rdma_freeaddrinfo and the synchronous endpoints built on them,
// rdma_create_ep/rdma_destroy_ep (rdma_server, rdma_client, rdma_xserver ...).
//
// As librdmacm's addrinfo.c: getaddrinfo() does the name work, the result becomes an
// rdma_addrinfo (QP type from the socket type, port space from the protocol). There is no
// ibacm here, so no route (ai_route) comes back: rdma_create_ep resolves it itself.
#include <netdb.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "cma.hpp"

using namespace uroce::rdmacm;

namespace {

int copy_addr(sockaddr** dst, socklen_t* dst_len, const sockaddr* src, socklen_t len) {
  *dst = static_cast<sockaddr*>(std::malloc(len));
  if (!*dst) {
    errno = ENOMEM;
    return -1;
  }
  std::memcpy(*dst, src, len);
  *dst_len = len;
  return 0;
}

// ucma_convert_to_ai: the rdma hints as getaddrinfo() hints.
void to_ai_hints(addrinfo& ai, const rdma_addrinfo* rai) {
  std::memset(&ai, 0, sizeof ai);
  if (rai->ai_flags & RAI_PASSIVE) ai.ai_flags = AI_PASSIVE;
  if (rai->ai_flags & RAI_NUMERICHOST) ai.ai_flags |= AI_NUMERICHOST;
  // IPv4 is what this runtime speaks: unless the program insists on a family, ask for it.
  ai.ai_family = rai->ai_family ? rai->ai_family : AF_INET;
  switch (rai->ai_qp_type) {
    case IBV_QPT_RC:
    case IBV_QPT_UC:
    case IBV_QPT_XRC_SEND:
    case IBV_QPT_XRC_RECV:
      ai.ai_socktype = SOCK_STREAM;
      break;
    case IBV_QPT_UD:
      ai.ai_socktype = SOCK_DGRAM;
      break;
    default:
      break;
  }
  switch (rai->ai_port_space) {
    case RDMA_PS_TCP:
      ai.ai_protocol = IPPROTO_TCP;
      break;
    case RDMA_PS_IPOIB:
    case RDMA_PS_UDP:
      ai.ai_protocol = IPPROTO_UDP;
      break;
    case RDMA_PS_IB:
      if (ai.ai_socktype == SOCK_STREAM) ai.ai_protocol = IPPROTO_TCP;
      else if (ai.ai_socktype == SOCK_DGRAM) ai.ai_protocol = IPPROTO_UDP;
      break;
    default:
      break;
  }
}

}  // namespace

RDMACM_EXPORT void rdma_freeaddrinfo(rdma_addrinfo* res) {
  while (res) {
    rdma_addrinfo* r = res;
    res = res->ai_next;
    std::free(r->ai_connect);
    std::free(r->ai_route);
    std::free(r->ai_src_canonname);
    std::free(r->ai_dst_canonname);
    std::free(r->ai_src_addr);
    std::free(r->ai_dst_addr);
    std::free(r);
  }
}

RDMACM_EXPORT int rdma_getaddrinfo(const char* node, const char* service,
                                   const rdma_addrinfo* hints, rdma_addrinfo** res) {
  if (!service && !node && !hints) {
    errno = EINVAL;
    return -1;
  }
  if (int e = lib_init()) {
    errno = e;
    return -1;
  }
  rdma_addrinfo nohints{};
  if (!hints) hints = &nohints;
  if (hints->ai_family == AF_INET6 || hints->ai_family == AF_IB) {
    not_built(hints->ai_family == AF_IB ? "AF_IB addressing (native InfiniBand service IDs)"
                                        : "IPv6 addressing (AF_INET6)",
              "use IPv4 addresses: each process's device is at an IPv4 address of its own");
    return -1;
  }
  auto* rai = static_cast<rdma_addrinfo*>(std::calloc(1, sizeof(rdma_addrinfo)));
  if (!rai) {
    errno = ENOMEM;
    return -1;
  }
  int ret = 0;
  if (node || service) {
    addrinfo ai_hints;
    to_ai_hints(ai_hints, hints);
    addrinfo* ai = nullptr;
    ret = getaddrinfo(node, service, &ai_hints, &ai);
    if (ret) {
      std::free(rai);
      return ret;  // as librdmacm: getaddrinfo's EAI_* code
    }
    // ucma_convert_to_rai
    rai->ai_qp_type = hints->ai_qp_type ? hints->ai_qp_type
                      : ai->ai_socktype == SOCK_DGRAM ? IBV_QPT_UD
                                                      : IBV_QPT_RC;
    rai->ai_port_space = hints->ai_port_space ? hints->ai_port_space
                         : ai->ai_protocol == IPPROTO_UDP ? RDMA_PS_UDP
                                                          : RDMA_PS_TCP;
    rai->ai_family = ai->ai_family;
    if (ai->ai_flags & AI_PASSIVE) {
      rai->ai_flags = RAI_PASSIVE;
      if (ai->ai_canonname) rai->ai_src_canonname = strdup(ai->ai_canonname);
      ret = copy_addr(&rai->ai_src_addr, &rai->ai_src_len, ai->ai_addr, ai->ai_addrlen);
    } else {
      if (ai->ai_canonname) rai->ai_dst_canonname = strdup(ai->ai_canonname);
      ret = copy_addr(&rai->ai_dst_addr, &rai->ai_dst_len, ai->ai_addr, ai->ai_addrlen);
    }
    freeaddrinfo(ai);
  } else {
    rai->ai_flags = hints->ai_flags;
    rai->ai_family = hints->ai_family;
    rai->ai_qp_type = hints->ai_qp_type;
    rai->ai_port_space = hints->ai_port_space;
    if (hints->ai_dst_len)
      ret = copy_addr(&rai->ai_dst_addr, &rai->ai_dst_len, hints->ai_dst_addr,
                      hints->ai_dst_len);
  }
  if (!ret && !rai->ai_src_len && hints->ai_src_len)
    ret = copy_addr(&rai->ai_src_addr, &rai->ai_src_len, hints->ai_src_addr,
                    hints->ai_src_len);
  if (ret) {
    rdma_freeaddrinfo(rai);
    return ret;
  }
  *res = rai;
  return 0;
}

RDMACM_EXPORT int rdma_create_ep(rdma_cm_id** id, rdma_addrinfo* res, ibv_pd* pd,
                                 ibv_qp_init_attr* qp_init_attr) {
  if (!id || !res) {
    errno = EINVAL;
    return -1;
  }
  if (res->ai_qp_type != IBV_QPT_RC && res->ai_qp_type != 0) {
    not_built("rdma_create_ep of a QP other than RC (UD, UC, XRC)", "RC endpoints work");
    return -1;
  }
  rdma_cm_id* cm_id = nullptr;
  if (rdma_create_id(nullptr, &cm_id, nullptr, static_cast<rdma_port_space>(res->ai_port_space)))
    return -1;
  int ret = 0;
  if (res->ai_flags & RAI_PASSIVE) {
    ret = rdma_bind_addr(cm_id, res->ai_src_addr);
    if (!ret) {
      if (pd) cm_id->pd = pd;
      if (qp_init_attr) {
        std::lock_guard<std::mutex> l(lib().mu);
        IdPriv* p = priv(cm_id);
        p->qp_init_attr = *qp_init_attr;
        p->qp_init_attr.qp_type = static_cast<ibv_qp_type>(res->ai_qp_type);
        p->has_qp_init_attr = true;
      }
    }
  } else {
    ret = rdma_resolve_addr(cm_id, res->ai_src_addr, res->ai_dst_addr, 2000);
    if (!ret && res->ai_route_len) {
      ret = rdma_set_option(cm_id, RDMA_OPTION_IB, RDMA_OPTION_IB_PATH, res->ai_route,
                            res->ai_route_len);
    } else if (!ret) {
      ret = rdma_resolve_route(cm_id, 2000);
    }
    if (!ret && qp_init_attr) {
      qp_init_attr->qp_type = static_cast<ibv_qp_type>(res->ai_qp_type);
      ret = rdma_create_qp(cm_id, pd, qp_init_attr);
    }
    if (!ret && res->ai_connect_len) {
      std::lock_guard<std::mutex> l(lib().mu);
      auto* c = static_cast<const uint8_t*>(res->ai_connect);
      priv(cm_id)->connect_data.assign(c, c + res->ai_connect_len);
    }
  }
  if (ret) {
    int e = errno;
    rdma_destroy_ep(cm_id);
    errno = e;
    return ret;
  }
  *id = cm_id;
  return 0;
}

RDMACM_EXPORT void rdma_destroy_ep(rdma_cm_id* id) {
  if (id->qp) rdma_destroy_qp(id);
  if (id->srq) rdma_destroy_srq(id);
  rdma_destroy_id(id);
}
