// The emulated HCA's life and its packet demultiplexer: opened (address chosen, socket
// bound, engine started) by the first ibv_open_device, closed by the last
// ibv_close_device; every received packet is checked and handed to its QP here.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "runtime.hpp"

namespace uroce {
namespace {

Device* g_device = nullptr;
std::mutex g_device_mu;

// Delayed ACKs (responder.cpp) still owed go out when the device closes or the process
// exits, and none is delayed from then on: the messages they acknowledge did arrive, and
// rxe would have ACKed them at once. Device::mu held.
void send_delayed_acks(Device& dev) {
  dev.no_delayed_acks = true;
  for (auto& [qpn, qp] : dev.qps) qp_send_delayed_ack(*qp);
  dev.flush_tx();
}

// At exit only in the process that opened the device (a forked child shares its socket,
// not its QPs), and only if the device lock is free within about 100 ms: exit() called
// from a signal handler may have interrupted the lock's holder on this very thread.
void send_delayed_acks_at_exit() {
  std::unique_lock<std::mutex> g(g_device_mu, std::try_to_lock);
  if (!g.owns_lock() || !g_device || g_device->owner_pid != getpid()) return;
  std::unique_lock<std::mutex> l(g_device->mu, std::defer_lock);
  for (int i = 0; i < 100 && !l.try_lock(); ++i) usleep(1000);
  if (l.owns_lock()) send_delayed_acks(*g_device);
}
uint32_t g_requested_ip = 0;  ///< uroce_request_address's, until the device opens

}  // namespace

union ibv_gid Device::gid() const {
  // The RoCE v2 GID of an IPv4 address is the IPv4-mapped IPv6 address ::ffff:a.b.c.d.
  union ibv_gid g{};
  g.raw[10] = 0xFF;
  g.raw[11] = 0xFF;
  uint32_t be = htonl(ip);
  std::memcpy(&g.raw[12], &be, 4);
  return g;
}

uint64_t Device::guid() const {
  // One made-up EUI-64 (locally administered) for every process: ibv_devices reports it
  // before any device is opened, so it cannot depend on the address a process gets.
  return htobe64(0x02005e00000000feull);
}

// The IPv4 addresses of interface `name`, host order, in the kernel's order (the primary
// address first). An address with a label ("eth0:1", as ifconfig's aliases have) is the
// interface's too.
static std::vector<uint32_t> interface_addresses(const std::string& name) {
  std::vector<uint32_t> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next)
    if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
        std::string(i->ifa_name).substr(0, std::string(i->ifa_name).find(':')) == name)
      out.push_back(ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr));
  freeifaddrs(list);
  return out;
}

static std::string dotted(uint32_t ip) {
  char a[INET_ADDRSTRLEN];
  in_addr ia{htonl(ip)};
  inet_ntop(AF_INET, &ia, a, sizeof a);
  return a;
}

int request_device_address(uint32_t ip) {
  std::lock_guard<std::mutex> g(g_device_mu);
  if (g_device) return g_device->ip == ip ? 0 : EADDRNOTAVAIL;
  const Config& cfg = Config::get();
  if (!cfg.iface.empty()) {
    const std::vector<uint32_t> have = interface_addresses(cfg.iface);
    if (std::find(have.begin(), have.end(), ip) == have.end()) return EADDRNOTAVAIL;
  } else if (!cfg.addr.empty()) {
    in_addr a{};
    inet_pton(AF_INET, cfg.addr.c_str(), &a);  // checked by Config::get
    return ntohl(a.s_addr) == ip ? 0 : EADDRNOTAVAIL;
  }
  if (g_requested_ip && g_requested_ip != ip) return EADDRNOTAVAIL;
  g_requested_ip = ip;
  return 0;
}

Device* device_open(std::string& error) {
  std::lock_guard<std::mutex> g(g_device_mu);
  if (g_device) {
    std::lock_guard<std::mutex> l(g_device->mu);
    g_device->open_contexts++;
    return g_device;
  }
  const Config& cfg = Config::get();
  if (!cfg.errors.empty()) {
    // Only reachable by a program that opens a device it did not get from the list.
    error = "the UROCE_* settings refused above";
    return nullptr;
  }
  auto dev = std::make_unique<Device>();
  if (!cfg.addr.empty() || g_requested_ip) {
    // UROCE_ADDR, or the address an rdma_bind_addr asked for (uroce_request_address).
    in_addr a{};
    inet_pton(AF_INET, cfg.addr.c_str(), &a);  // checked by Config::get
    dev->ip = cfg.addr.empty() ? g_requested_ip : ntohl(a.s_addr);
    dev->sock = bind_socket(dev->ip, error);
    if (dev->sock < 0) {
      error += cfg.addr.empty()
                   ? "; another process may use this address: bind another one"
                   : "; another process may use this address: unset UROCE_ADDR to pick a free one";
      return nullptr;
    }
  } else if (!cfg.iface.empty()) {
    // UROCE_ADDR=<interface>: the first of its IPv4 addresses whose port 4791 is free, so
    // that several processes on one host (each a device with a GID of its own) can share
    // an interface that has several addresses.
    const std::vector<uint32_t> have = interface_addresses(cfg.iface);
    std::string tried;
    for (uint32_t a : have) {
      std::string e;
      dev->ip = a;
      dev->sock = bind_socket(a, e);
      if (dev->sock >= 0) break;
      if (errno != EADDRINUSE) {
        error = e;
        return nullptr;
      }
      tried += (tried.empty() ? "" : ", ") + dotted(a);
    }
    if (dev->sock < 0) {
      error = have.empty() ? "UROCE_ADDR=" + cfg.iface + ": the interface has no IPv4 address; "
                                 "give it one (ip addr add A.B.C.D/N dev " + cfg.iface + ")"
                           : "UROCE_ADDR=" + cfg.iface + ": every IPv4 address of it (" + tried +
                                 ") has UDP port 4791 in use (kernel rxe on this host, or "
                                 "other runtime processes); add an address or stop one";
      return nullptr;
    }
  } else {
    // Every process gets its own loopback address, so that each has its own UDP port
    // 4791 and its own GID: take the first 127.0.0.x (x = 2..254) nobody has bound yet.
    for (uint32_t x = 2; x <= 254 && dev->sock < 0; ++x) {
      std::string e;
      dev->ip = (127u << 24) | x;
      dev->sock = bind_socket(dev->ip, e);
      if (dev->sock < 0 && errno != EADDRINUSE) {
        error = e;
        return nullptr;
      }
    }
    if (dev->sock < 0) {
      error = "every address 127.0.0.2-254 has UDP port 4791 in use; stop other runtime processes";
      return nullptr;
    }
  }
  dev->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (dev->wake_fd < 0) {
    error = std::string("eventfd: ") + std::strerror(errno);
    close(dev->sock);
    return nullptr;
  }
  dev->active_mtu = interface_active_mtu(dev->ip);
  if (const unsigned index = if_nametoindex(interface_of(dev->ip).c_str())) dev->ifindex = index;
  socklen_t optlen = sizeof dev->rcvbuf_bytes;
  if (getsockopt(dev->sock, SOL_SOCKET, SO_RCVBUF, &dev->rcvbuf_bytes, &optlen) != 0)
    dev->rcvbuf_bytes = 0;
  dev->fault_rng.seed(cfg.seed ^ dev->ip);
  dev->open_contexts = 1;
  Device* d = dev.release();
  d->owner_pid = getpid();
  d->engine = std::thread([d] { d->engine_loop(); });
  if (cfg.log >= 1) {
    char a[INET_ADDRSTRLEN];
    in_addr ia{htonl(d->ip)};
    inet_ntop(AF_INET, &ia, a, sizeof a);
    log_line("uroce0 up on %s:4791 (GID ::ffff:%s), active MTU %u, receive buffer %d bytes "
             "(window at MTU 4096: %u packets)",
             a, a, 128u << d->active_mtu, d->rcvbuf_bytes, d->window_packets(4096));
  }
  g_device = d;
  static std::once_flag at_exit;
  std::call_once(at_exit, [] { std::atexit(send_delayed_acks_at_exit); });
  return d;
}

void device_close(Device* dev) {
  if (dev->owner_pid != getpid()) {
    // A child made by fork() has a copy of the device but not its engine thread (fork
    // copies only the calling thread), so there is nothing to join or detach (the copied
    // handle may even name a thread the child made since), and the QPs' traffic stays the
    // parent's business: no delayed ACK goes out from here. The device's lock is not
    // taken: a thread of the parent may have held it at fork(), and that thread does not
    // exist in the child. The child's copies of the socket and eventfd close (the
    // parent's stay open); the copied Device is left as it is, never destroyed, as its
    // lock may be held and its std::thread still looks joinable.
    if (--dev->open_contexts > 0) return;
    close(dev->sock);
    close(dev->wake_fd);
    if (g_device == dev) g_device = nullptr;
    return;
  }
  std::lock_guard<std::mutex> g(g_device_mu);
  {
    std::lock_guard<std::mutex> l(dev->mu);
    if (--dev->open_contexts > 0) return;
    send_delayed_acks(*dev);  // and the engine's last batches ACK at once
    dev->stopping = true;
  }
  uint64_t one = 1;
  (void)!write(dev->wake_fd, &one, sizeof one);
  dev->engine.join();
  close(dev->sock);
  close(dev->wake_fd);
  g_device = nullptr;
  delete dev;
}

Mr* Device::find_mr(uint32_t key) {
  auto it = mrs.find(key);
  return it == mrs.end() ? nullptr : it->second;
}

void Device::handle_packet(const uint8_t* data, size_t len, uint32_t src_ip, uint16_t src_port) {
  wire::Ipv4Flow flow;
  flow.src = src_ip;
  flow.dst = ip;
  // The peer's UDP source port is covered by the ICRC: this runtime sends from 4791, the
  // kernel's rxe from one derived from the QP's flow label (rdma_get_udp_sport: the GRH's
  // flow label, or one folded from both QP numbers), in 0xC000-0xFFFF.
  flow.src_port = src_port;
  // The socket does not tell us the IPv4 ID, which the ICRC also covers. This runtime
  // sends from port 4791 with ID 0, and its packets get the full check with that ID. Any
  // other sender (rxe: a counter, from ports 0xC000 and up) gets the check against the ID
  // that makes the ICRC right, if one does (wire::icrc_ip_id): weaker, see the README.
  flow.ip_id_known = src_port == wire::kRoceV2Port;
  wire::Packet p;
  wire::ParseStatus st = wire::parse(data, len, flow, p);
  if (st != wire::ParseStatus::ok) {
    // A real HCA silently drops what it cannot parse or whose ICRC is wrong.
    if (Config::get().log >= 1)
      log_line("dropped a %zu-byte packet from %u.%u.%u.%u: %s", len, src_ip >> 24,
               (src_ip >> 16) & 0xFF, (src_ip >> 8) & 0xFF, src_ip & 0xFF,
               wire::parse_status_text(st));
    return;
  }
  if (p.bth.dest_qp == 1) {
    handle_gsi_packet(p, src_ip);
    return;
  }
  if (wire::opcode_info(p.bth.opcode).deth) {
    if (Config::get().log >= 1)
      log_line("dropped a UD packet for QP 0x%x: this runtime's only UD QP is QP 1",
               p.bth.dest_qp);
    return;
  }
  auto it = qps.find(p.bth.dest_qp);
  if (it == qps.end()) {
    // Common after a QP is destroyed while its peer still resends: say it, not 1000 times.
    static uint64_t unknown = 0;
    if (Config::get().log >= 1 && (++unknown <= 3 || unknown % 1000 == 0))
      log_line("dropped a packet for unknown QP 0x%x (%llu so far)", p.bth.dest_qp,
               static_cast<unsigned long long>(unknown));
    return;
  }
  Qp& qp = *it->second;
  // An RC QP only accepts packets from the peer its address vector names.
  if (src_ip != qp.peer_ip) {
    if (Config::get().log >= 1) log_line("QP 0x%x: dropped a packet from a stranger", qp.qpn());
    return;
  }
  if (Config::get().log >= 2)
    log_line("rx %s qp 0x%x psn %u len %zu", wire::opcode_info(p.bth.opcode).name,
             p.bth.dest_qp, p.bth.psn, p.payload_len);
  qp_receive(qp, p);
}

}  // namespace uroce
