// Ids and addresses: rdma_create_id/destroy_id, rdma_bind_addr, rdma_listen,
// rdma_resolve_addr/route, ports and service IDs, rdma_get_devices, rdma_set_option,
// rdma_migrate_id.
//
// What the kernel's cma.c decides for a RoCE device, decided here for the process's one
// device: an IPv4 address is the device (its GID is ::ffff:a.b.c.d), RDMA_PS_TCP's ports
// are the process's own (each process has an address of its own, so its own port space).
// Address resolution asks no ARP: in 127.0.0.0/8 it waits (at most its timeout) until a
// process holds the destination (device_present, resolve_tick); route resolution asks no
// SA and completes at once.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "cma.hpp"
#include "gsi.h"

namespace uroce::rdmacm {

void set_sockaddr(sockaddr_storage& ss, uint32_t ip, uint16_t port) {
  std::memset(&ss, 0, sizeof ss);
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(ip);
  sin->sin_port = htons(port);
}

// RoCE v2 GIDs of IPv4 addresses are IPv4-mapped IPv6 (rdma_ip2gid).
void gid_from_ip(ibv_gid& gid, uint32_t ip) {
  std::memset(&gid, 0, sizeof gid);
  gid.raw[10] = gid.raw[11] = 0xff;
  uint32_t be = htonl(ip);
  std::memcpy(&gid.raw[12], &be, 4);
}

int attach_device(IdPriv* id) {
  Device* dev = device_locked();
  if (!dev) return errno ? errno : ENODEV;
  id->id.verbs = dev->ctx;
  id->id.pd = id->id.pd ? id->id.pd : dev->pd;
  id->id.port_num = 1;
  id->local_ip = dev->ip;
  gid_from_ip(id->id.route.addr.addr.ibaddr.sgid, dev->ip);
  id->id.route.addr.addr.ibaddr.pkey = htons(0xffff);
  return 0;
}

void fill_path(IdPriv* id, ibv_mtu mtu, uint8_t packet_life_time, uint32_t flow_label) {
  // Active side, cma_resolve_iboe_route: no SA on Ethernet, the path record is made up
  // from the addresses, the route's hop limit, the id's ToS, the netdev's MTU (here the
  // port's active MTU, already cut to what fits the interface with RoCE's headers), the
  // packet lifetime and the flow label hashed from the ports. Passive side: the path of
  // the REQ (cm_format_paths_from_req, handed to cma.c's cma_ib_new_conn_id), its hop
  // limit the route's again (cm_req_handler takes it from the response address vector).
  ibv_sa_path_rec& p = id->path;
  std::memset(&p, 0, sizeof p);
  gid_from_ip(p.sgid, id->local_ip);
  gid_from_ip(p.dgid, id->peer_ip);
  p.flow_label = htonl(flow_label & kFlowLabelMask);
  p.hop_limit = kHopLimit;
  p.traffic_class = id->tos;
  p.reversible = 1;
  p.pkey = htons(0xffff);
  p.sl = 0;
  p.mtu_selector = kSaEq;
  p.mtu = static_cast<uint8_t>(mtu);
  p.rate_selector = kSaEq;
  p.rate = 0;  // IB_RATE_PORT_CURRENT
  p.packet_life_time_selector = kSaEq;
  p.packet_life_time = packet_life_time;
  id->id.route.path_rec = &id->path;
  id->id.route.num_paths = 1;
}

IdPriv* alloc_id(ChannelPriv* ch, void* context, rdma_port_space ps, ibv_qp_type qpt) {
  auto* id = new IdPriv;
  if (!ch) {
    ch = channel_create();
    if (!ch) {
      delete id;
      return nullptr;
    }
    id->sync = true;
  }
  id->id.channel = &ch->ch;
  id->id.context = context;
  id->id.ps = ps;
  id->id.qp_type = qpt;
  // The starting PSN this id will announce in its REQ or REP, where its QP's receive
  // queue starts (the kernel's id_priv->seq_num: random, 24 bits).
  static std::mt19937 rng(std::random_device{}());
  id->psn = rng() & 0xffffff;
  lib().ids.insert(id);
  return id;
}

void release_port(IdPriv* id) {
  if (id->port) {
    auto it = lib().ports.find(id->port);
    if (it != lib().ports.end()) {
      std::erase(it->second, id);
      if (it->second.empty()) lib().ports.erase(it);
    }
    id->port = 0;
  }
}

void free_id(IdPriv* id) {
  lib().resolving.erase(id);
  if (id->cm_id) lib().by_cm.erase(id->cm_id);
  if (id->service_id) device_if_open()->mgr->stop_listening(id->service_id);
  release_port(id);
  lib().ids.erase(id);
  if (id->sync) channel_destroy(priv(id->id.channel));
  delete id;
}

// The local port range the kernel's cma_alloc_any_port draws from.
static void local_port_range(int& lo, int& hi) {
  lo = 32768;
  hi = 60999;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    int a, b;
    if (std::fscanf(f, "%d %d", &a, &b) == 2 && a > 0 && b >= a && b < 65536) {
      lo = a;
      hi = b;
    }
    std::fclose(f);
  }
}

// cma.c's cma_check_port: may `id`, bound to `ip` (host order, 0 the wildcard) of family
// `family`, share a port with the ids already bound to it? Not if another id is there,
// unless both allow reuse (RDMA_OPTION_ID_REUSEADDR), or both are limited to their own
// address family and the families differ; then EADDRNOTAVAIL if either address is a
// wildcard (it covers the other), EADDRINUSE if both are the same address. 0 if it may.
static int check_port(const std::vector<IdPriv*>& owners, const IdPriv* id, uint32_t ip,
                      sa_family_t family, bool afonly, bool reuseaddr) {
  for (const IdPriv* cur : owners) {
    if (cur == id) continue;
    if (reuseaddr && cur->reuseaddr) continue;
    if (afonly && cur->afonly && family != cur->id.route.addr.src_addr.sa_family) continue;
    if (ip == INADDR_ANY || cur->local_ip == INADDR_ANY) return EADDRNOTAVAIL;
    if (ip == cur->local_ip) return EADDRINUSE;
  }
  return 0;
}

// cma.c's cma_get_port for RDMA_PS_TCP: binds `id` to `port`, or with port 0 to a free
// one of the local port range (cma_alloc_any_port). 0 or errno. Lock held.
static int reserve_port(IdPriv* id, uint32_t ip, sa_family_t family, uint16_t port) {
  auto& ports = lib().ports;
  if (port) {
    // cma_use_port: privileged ports need CAP_NET_BIND_SERVICE, as for a TCP socket
    // (here: root), then cma_check_port against the port's owners.
    if (port < 1024 && geteuid() != 0) return EACCES;
    auto it = ports.find(port);
    if (it != ports.end())
      if (int e = check_port(it->second, id, ip, family, id->afonly, id->reuseaddr)) return e;
    ports[port].push_back(id);
    id->port = port;
    return 0;
  }
  int lo, hi;
  local_port_range(lo, hi);
  static std::mt19937 rng(std::random_device{}());
  int n = hi - lo + 1;
  int start = static_cast<int>(rng() % static_cast<unsigned>(n));
  for (int i = 0; i < n; i++) {
    auto p = static_cast<uint16_t>(lo + (start + i) % n);
    if (!ports.count(p)) {
      ports[p].push_back(id);
      id->port = p;
      return 0;
    }
  }
  return EADDRNOTAVAIL;
}

// net.ipv6.bindv6only: whether an AF_INET6 id is IPv6-only unless RDMA_OPTION_ID_AFONLY
// says otherwise (cma.c reads the namespace's sysctl at bind time; 0 by default).
static bool bindv6only() {
  int v = 0;
  if (FILE* f = std::fopen("/proc/sys/net/ipv6/bindv6only", "r")) {
    if (std::fscanf(f, "%d", &v) != 1) v = 0;
    std::fclose(f);
  }
  return v != 0;
}

// The IPv6 wildcard (::): a dual-stack listener, which the kernel lets IPv4 clients reach
// unless it is AF_INET6-only (RDMA_OPTION_ID_AFONLY, or net.ipv6.bindv6only); here it is
// the IPv4 wildcard, or (AF_INET6-only) reached by nobody, as this runtime has no IPv6.
static bool is_in6_any(const sockaddr* addr) {
  if (addr->sa_family != AF_INET6) return false;
  auto* s6 = reinterpret_cast<const sockaddr_in6*>(addr);
  static const in6_addr any = IN6ADDR_ANY_INIT;
  return std::memcmp(&s6->sin6_addr, &any, sizeof any) == 0;
}

// Refuses the address families this runtime does not build. 0 or errno.
static int check_family(const sockaddr* addr, const char* call, bool v6_wildcard_ok) {
  if (!addr) return EINVAL;
  if (addr->sa_family == AF_INET) return 0;
  if (v6_wildcard_ok && is_in6_any(addr)) return 0;
  if (addr->sa_family == AF_INET6) {
    not_built("IPv6 addressing (AF_INET6)",
              "use IPv4 addresses (or bind the wildcard ::, which takes IPv4 clients): each "
              "process's device is at an IPv4 address of its own");
    return EOPNOTSUPP;
  }
  if (addr->sa_family == AF_IB) {
    not_built("AF_IB addressing (native InfiniBand service IDs)",
              "use IPv4 addresses with RDMA_PS_TCP");
    return EOPNOTSUPP;
  }
  (void)call;
  return EAFNOSUPPORT;
}

int bind_locked(IdPriv* id, const sockaddr* addr) {
  if (int e = check_family(addr, "rdma_bind_addr", true)) return e;
  if (id->state != State::idle) return EINVAL;
  bool v6_any = addr->sa_family == AF_INET6;
  uint32_t ip = 0;
  uint16_t port;
  if (v6_any) {
    port = ntohs(reinterpret_cast<const sockaddr_in6*>(addr)->sin6_port);
  } else {
    auto* sin = reinterpret_cast<const sockaddr_in*>(addr);
    ip = ntohl(sin->sin_addr.s_addr);
    port = ntohs(sin->sin_port);
  }
  if (ip != INADDR_ANY) {
    // A specific address is this process's device: ask the runtime to put it there
    // (before the device is open, it can: that is how `rping -s -a 127.0.0.7` works).
    Device* dev = device_if_open();
    int e = uroce_request_address(ip);
    if (!e && !dev) {
      dev = device_locked();
      if (!dev) return errno ? errno : ENODEV;
    }
    if (e || dev->ip != ip) {
      if (!dev) dev = device_locked();
      std::string have = dev ? ip_str(dev->ip) : std::string("another address");
      say("rdma_bind_addr to %s: this process's device uroce0 is at %s, and a process has "
          "one address (EADDRNOTAVAIL); bind %s or 0.0.0.0, or start the program with "
          "UROCE_ADDR=%s (scripts/userspace-roce.sh --addr %s) so that its device is there",
          ip_str(ip).c_str(), have.c_str(), have.c_str(), ip_str(ip).c_str(),
          ip_str(ip).c_str());
      return EADDRNOTAVAIL;
    }
    if (int err = attach_device(id)) return err;
  }
  // rdma_bind_addr: an AF_INET id is AF_INET-only; an AF_INET6 one as the option or the
  // sysctl says.
  id->afonly = id->afonly_option >= 0 ? id->afonly_option != 0 : !v6_any || bindv6only();
  if (int err = reserve_port(id, ip, addr->sa_family, port)) return err;
  id->local_ip = ip != INADDR_ANY ? ip : 0;
  set_sockaddr(id->id.route.addr.src_storage, id->local_ip, id->port);
  if (v6_any) {  // the id keeps the address it was given, as the kernel's does
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&id->id.route.addr.src_storage);
    std::memset(s6, 0, sizeof *s6);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(id->port);
  }
  id->state = State::addr_bound;
  return 0;
}

// Is a device of the runtime at `ip` (host order)? Every process's device is a UDP socket
// bound to <its address>:4791, so the kernel's table of UDP sockets (/proc/net/udp, what
// `ss -lun` shows) says: a line whose local address is ip:4791. Reading it takes nothing
// from anybody (binding the port to find out would, for a moment, keep a server starting
// just then from binding it). Only 127.0.0.0/8 is asked about: any other address may be
// another host's, which this host cannot see; those resolve at once and a ConnectRequest
// nobody answers ends in UNREACHABLE.
static bool device_present(uint32_t ip) {
  if ((ip >> 24) != 127) return true;
  std::FILE* f = std::fopen("/proc/net/udp", "r");
  if (!f) return true;  // cannot tell: let the ConnectRequest find out
  char line[512];
  bool found = false;
  // "  sl  local_address rem_address   st ...": the address as the 32-bit word the kernel
  // holds in network order, printed in hex as this host reads it; the port in host order.
  const uint32_t want = htonl(ip);
  while (!found && std::fgets(line, sizeof line, f)) {
    unsigned slot, addr, port;
    if (std::sscanf(line, " %u: %8x:%4x", &slot, &addr, &port) == 3)
      found = addr == want && port == 4791;
  }
  std::fclose(f);
  return found;
}

// Where an rdma_resolve_addr ends: ADDR_RESOLVED, or ADDR_ERROR (ETIMEDOUT) when no
// process held the destination within the call's timeout_ms, as when nobody answers ARP.
static void finish_resolve(IdPriv* p, bool present, int waited_ms) {
  EventPriv* ev;
  if (present) {
    p->state = State::addr_resolved;
    ev = new_event(p, RDMA_CM_EVENT_ADDR_RESOLVED);
  } else {
    say("rdma_resolve_addr to %s: no process of the userspace runtime held %s:4791 within "
        "%d ms, as when nobody answers ARP (RDMA_CM_EVENT_ADDR_ERROR, ETIMEDOUT): start the "
        "peer first, or give the address its server bound",
        ip_str(p->peer_ip).c_str(), ip_str(p->peer_ip).c_str(), waited_ms);
    ev = new_event(p, RDMA_CM_EVENT_ADDR_ERROR, -ETIMEDOUT);
  }
  queue_event(p, ev);
  trace("%s:%u -> %s: %s", ip_str(p->local_ip).c_str(), p->port, ip_str(p->peer_ip).c_str(),
        rdma_event_str(ev->event.event));
}

// How often a pending resolution looks again: a process binding its address is seen
// within this, and reading /proc/net/udp this often for the length of a timeout costs
// little.
constexpr std::chrono::milliseconds kResolvePoll{10};

std::optional<cm::Clock::time_point> resolve_tick(cm::Clock::time_point now) {
  auto& pending = lib().resolving;
  for (auto it = pending.begin(); it != pending.end();) {
    IdPriv* p = it->first;
    const bool present = device_present(p->peer_ip);
    if (present || now >= it->second) {
      const int waited = static_cast<int>(p->resolve_timeout_ms);
      it = pending.erase(it);
      finish_resolve(p, present, waited);
    } else {
      ++it;
    }
  }
  if (pending.empty()) return std::nullopt;
  return now + kResolvePoll;
}

}  // namespace uroce::rdmacm

using namespace uroce::rdmacm;

static int fail(int e) {
  errno = e;
  return -1;
}

RDMACM_EXPORT int rdma_create_id(rdma_event_channel* channel, rdma_cm_id** id, void* context,
                                 rdma_port_space ps) {
  if (int e = lib_init()) return fail(e);
  if (!id) return fail(EINVAL);
  switch (ps) {
    case RDMA_PS_TCP:
      break;
    case RDMA_PS_UDP:
    case RDMA_PS_IPOIB:
      not_built("RDMA_PS_UDP/RDMA_PS_IPOIB (UD QPs, multicast)",
                "connected RC ids with RDMA_PS_TCP work");
      return -1;
    case RDMA_PS_IB:
      not_built("RDMA_PS_IB", "connected RC ids with RDMA_PS_TCP work");
      return -1;
    default:
      return fail(EINVAL);
  }
  std::lock_guard<std::mutex> l(lib().mu);
  IdPriv* p = alloc_id(channel ? priv(channel) : nullptr, context, ps, IBV_QPT_RC);
  if (!p) return -1;
  *id = &p->id;
  return 0;
}

RDMACM_EXPORT int rdma_destroy_id(rdma_cm_id* id) {
  if (!id) return fail(EINVAL);
  IdPriv* p = priv(id);
  std::unique_lock<std::mutex> lk(lib().mu);
  // The kernel's ucma_destroy_id: the CM id goes (a REJ, DREQ or DREP as its state needs),
  // events not yet handed out vanish, and those handed out must be acknowledged first.
  if (p->cm_id) {
    device_if_open()->mgr->destroy(p->cm_id);
    lib().by_cm.erase(p->cm_id);
    p->cm_id = 0;
  }
  if (p->service_id) {
    device_if_open()->mgr->stop_listening(p->service_id);
    p->service_id = 0;
  }
  drop_queued_events(p);
  after_manager_call();
  release_port(p);
  if (p->id.event) {  // a synchronous id's last event (librdmacm acks it here too)
    auto* e = reinterpret_cast<EventPriv*>(p->id.event);
    e->owner->events_completed++;  // the owner may be a listener someone is destroying
    delete e;
    p->id.event = nullptr;
    lib().acked.notify_all();
  }
  p->state = State::idle;
  wait_acked(p, lk, "rdma_destroy_id");
  free_id(p);
  return 0;
}

RDMACM_EXPORT int rdma_bind_addr(rdma_cm_id* id, sockaddr* addr) {
  if (!id || !addr) return fail(EINVAL);
  std::lock_guard<std::mutex> l(lib().mu);
  int e = bind_locked(priv(id), addr);
  return e ? fail(e) : 0;
}

RDMACM_EXPORT int rdma_listen(rdma_cm_id* id, int backlog) {
  (void)backlog;  // the Manager queues no REQs: each becomes an event at once
  if (!id) return fail(EINVAL);
  IdPriv* p = priv(id);
  std::lock_guard<std::mutex> l(lib().mu);
  if (p->state != State::addr_bound) {
    // cma.c's rdma_listen: an id that is not ADDR_BOUND is bound to the wildcard address
    // and an ephemeral port, which only an IDLE one can be: any other state, LISTEN
    // included (a second rdma_listen), is EINVAL.
    sockaddr_in any{};
    any.sin_family = AF_INET;
    if (int e = bind_locked(p, reinterpret_cast<sockaddr*>(&any))) return fail(e);
  }
  if (p->reuseaddr) {
    // A listener may not share its port: cma_check_port without reuse, and the id is no
    // longer reusable once it listens.
    auto it = lib().ports.find(p->port);
    if (it != lib().ports.end())
      if (int e = check_port(it->second, p, p->local_ip, p->id.route.addr.src_addr.sa_family,
                             p->afonly, false))
        return fail(e);
    p->reuseaddr = false;
  }
  // A wildcard listener still needs the device: REQs arrive at its QP 1.
  Device* dev = device_locked();
  if (!dev) return -1;
  uint64_t sid = kServiceIdTcp | p->port;
  int e = dev->mgr->listen(sid, p);
  after_manager_call();
  if (e) return fail(e);
  p->service_id = sid;
  p->state = State::listen;
  trace("listening on %s:%u (service ID 0x%016llx)", ip_str(p->local_ip).c_str(), p->port,
        static_cast<unsigned long long>(sid));
  return 0;
}

RDMACM_EXPORT int rdma_resolve_addr(rdma_cm_id* id, sockaddr* src_addr, sockaddr* dst_addr,
                                    int timeout_ms) {
  if (!id || !dst_addr) return fail(EINVAL);
  IdPriv* p = priv(id);
  std::unique_lock<std::mutex> lk(lib().mu);
  if (lib().resolving.count(p)) return fail(EINVAL);  // a resolution is under way
  if (int e = check_family(dst_addr, "rdma_resolve_addr", false)) return fail(e);
  if (p->state == State::idle) {
    // cma_bind_addr: the source, or the wildcard, and an ephemeral port.
    sockaddr_in any{};
    any.sin_family = AF_INET;
    const sockaddr* src = src_addr ? src_addr : reinterpret_cast<sockaddr*>(&any);
    if (int e = bind_locked(p, src)) return fail(e);
  }
  if (p->state != State::addr_bound) return fail(EINVAL);
  auto* dst = reinterpret_cast<const sockaddr_in*>(dst_addr);
  uint32_t dip = ntohl(dst->sin_addr.s_addr);
  std::memcpy(&p->id.route.addr.dst_storage, dst_addr, sizeof(sockaddr_in));
  if (int e = attach_device(p)) return fail(e);
  p->peer_ip = dip;
  set_sockaddr(p->id.route.addr.src_storage, p->local_ip, p->port);
  gid_from_ip(p->id.route.addr.addr.ibaddr.dgid, dip);
  if (dip == INADDR_ANY || dip == INADDR_LOOPBACK) {
    // The kernel would loop back to a device on this host; here every process is its own
    // device at an address of its own, and these two are refused outright, even where a
    // process's device is at 127.0.0.1 (UROCE_ADDR=127.0.0.1).
    say("rdma_resolve_addr to %s: the userspace runtime connects to no device there (each "
        "process's device is at an address of its own, this one at %s): give the peer's "
        "address, the one its server bound or printed (RDMA_CM_EVENT_ADDR_ERROR)",
        ip_str(dip).c_str(), ip_str(p->local_ip).c_str());
    queue_event(p, new_event(p, RDMA_CM_EVENT_ADDR_ERROR, -EADDRNOTAVAIL));
  } else if (device_present(dip)) {
    finish_resolve(p, true, 0);
  } else {
    // Nobody holds the address yet: like a host that has not answered ARP yet, it may
    // (a server starting this moment). The CM thread looks again until timeout_ms.
    p->resolve_timeout_ms = timeout_ms > 0 ? static_cast<unsigned>(timeout_ms) : 0;
    lib().resolving[p] = uroce::cm::Clock::now() + std::chrono::milliseconds(p->resolve_timeout_ms);
    after_manager_call();  // wakes the CM thread
  }
  return complete_sync(p, lk);
}

RDMACM_EXPORT int rdma_resolve_route(rdma_cm_id* id, int timeout_ms) {
  (void)timeout_ms;  // no SA on RoCE: the path is made up at once (cma_resolve_iboe_route)
  if (!id) return fail(EINVAL);
  IdPriv* p = priv(id);
  std::unique_lock<std::mutex> lk(lib().mu);
  if (p->state != State::addr_resolved) return fail(EINVAL);
  Device* dev = device_if_open();
  // cma_resolve_iboe_route: with RDMA_OPTION_ID_ACK_TIMEOUT the packet lifetime is one
  // less (IBA 12.7.34 with the CA's ACK delay taken as negligible), else
  // CMA_IBOE_PACKET_LIFETIME; the flow label from our port and the peer's.
  uint8_t life =
      p->timeout_set && p->timeout ? static_cast<uint8_t>(p->timeout - 1) : kPacketLifeTime;
  fill_path(p, dev->port.active_mtu, life,
            roce_udp_flow_label(p->port, ntohs(p->id.route.addr.dst_sin.sin_port)));
  p->state = State::route_resolved;
  queue_event(p, new_event(p, RDMA_CM_EVENT_ROUTE_RESOLVED));
  return complete_sync(p, lk);
}

RDMACM_EXPORT uint16_t rdma_get_src_port(rdma_cm_id* id) {
  switch (id->route.addr.src_addr.sa_family) {
    case AF_INET: return id->route.addr.src_sin.sin_port;
    case AF_INET6: return id->route.addr.src_sin6.sin6_port;
    default: return 0;
  }
}

RDMACM_EXPORT uint16_t rdma_get_dst_port(rdma_cm_id* id) {
  return id->route.addr.dst_addr.sa_family == AF_INET ? id->route.addr.dst_sin.sin_port : 0;
}

RDMACM_EXPORT ibv_context** rdma_get_devices(int* num_devices) {
  if (num_devices) *num_devices = 0;
  if (int e = lib_init()) {
    errno = e;
    return nullptr;
  }
  std::lock_guard<std::mutex> l(lib().mu);
  Device* dev = device_locked();
  if (!dev) return nullptr;
  auto** list = static_cast<ibv_context**>(calloc(2, sizeof(ibv_context*)));
  if (!list) return nullptr;
  list[0] = dev->ctx;
  if (num_devices) *num_devices = 1;
  return list;
}

RDMACM_EXPORT void rdma_free_devices(ibv_context** list) { free(list); }

RDMACM_EXPORT int rdma_set_option(rdma_cm_id* id, int level, int optname, void* optval,
                                  size_t optlen) {
  if (!id || !optval) return fail(EINVAL);
  IdPriv* p = priv(id);
  std::lock_guard<std::mutex> l(lib().mu);
  if (level == RDMA_OPTION_ID) {
    switch (optname) {
      case RDMA_OPTION_ID_TOS:
        if (optlen != sizeof(uint8_t)) return fail(EINVAL);
        p->tos = *static_cast<uint8_t*>(optval);
        return 0;
      case RDMA_OPTION_ID_REUSEADDR: {
        if (optlen != sizeof(int)) return fail(EINVAL);
        // rdma_set_reuseaddr: turned on in any state but LISTEN, off only while IDLE.
        bool reuse = *static_cast<int*>(optval) != 0;
        if (reuse ? p->state == State::listen : p->state != State::idle) return fail(EINVAL);
        p->reuseaddr = reuse;
        return 0;
      }
      case RDMA_OPTION_ID_AFONLY:
        if (optlen != sizeof(int)) return fail(EINVAL);
        // rdma_set_afonly: only while the id is IDLE or ADDR_BOUND.
        if (p->state != State::idle && p->state != State::addr_bound) return fail(EINVAL);
        p->afonly_option = *static_cast<int*>(optval) != 0;
        p->afonly = p->afonly_option != 0;
        return 0;
      case RDMA_OPTION_ID_ACK_TIMEOUT:
        if (optlen != sizeof(uint8_t)) return fail(EINVAL);
        // cma.c: the QPs' ACK timeout, and the path's packet lifetime one less.
        p->timeout = *static_cast<uint8_t*>(optval);
        p->timeout_set = true;
        return 0;
      default:
        return fail(ENOSYS);
    }
  }
  if (level == RDMA_OPTION_IB && optname == RDMA_OPTION_IB_PATH) {
    not_built("RDMA_OPTION_IB_PATH (path records from an SA or ibacm)",
              "rdma_resolve_route makes the RoCE path itself");
    return -1;
  }
  return fail(ENOSYS);
}

RDMACM_EXPORT int rdma_migrate_id(rdma_cm_id* id, rdma_event_channel* channel) {
  if (!id) return fail(EINVAL);
  IdPriv* p = priv(id);
  std::unique_lock<std::mutex> lk(lib().mu);
  if (p->sync && !channel) return fail(EINVAL);
  ChannelPriv* to = channel ? priv(channel) : channel_create();
  if (!to) return -1;
  // The kernel's ucma_migrate_id moves the id's queued events with it.
  ChannelPriv* from = priv(p->id.channel);
  std::deque<EventPriv*> keep;
  for (EventPriv* e : from->queue) {
    if (e->owner == p) {
      to->queue.push_back(e);
      uint64_t one = 1, v;
      (void)!write(to->ch.fd, &one, sizeof one);
      (void)!read(from->ch.fd, &v, sizeof v);
    } else {
      keep.push_back(e);
    }
  }
  from->queue.swap(keep);
  if (p->sync) {
    if (p->id.event) {
      auto* e = reinterpret_cast<EventPriv*>(p->id.event);
      e->owner->events_completed++;
      delete e;
      p->id.event = nullptr;
      lib().acked.notify_all();
    }
    channel_destroy(from);
  }
  p->sync = channel == nullptr;
  p->id.channel = &to->ch;
  wait_acked(p, lk, "rdma_migrate_id");
  return 0;
}
