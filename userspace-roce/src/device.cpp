// The emulated HCA: its UDP socket, the engine thread that receives and runs timers, the
// transmit path with its fault injector, and the packet demultiplexer.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime.hpp"

#ifndef SO_NO_CHECK
#define SO_NO_CHECK 11
#endif

namespace uroce {
namespace {

// Every UROCE_* setting is checked once, when the program first asks for the device
// list. A value the runtime cannot use is refused, never replaced by a default: a run
// with UROCE_DROP=0,05 must not quietly become a run without faults. Each refusal is one
// stderr line naming the variable, the value and what is accepted, and the device list
// then fails with EINVAL (see ibv_get_device_list), so that the program can tell "the
// verbs library rejected its configuration" from "no device".

// The value as it may be shown on one line: control bytes escaped, long values cut.
std::string shown(const char* v) {
  std::string s;
  const char* p = v;
  for (; *p && s.size() < 64; ++p) {
    const auto c = static_cast<unsigned char>(*p);
    if (c >= 0x20 && c < 0x7F) {
      s += static_cast<char>(c);
    } else {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      s += esc;
    }
  }
  if (*p) s += "...";
  return s;
}

void refuse(std::vector<std::string>& errors, const char* name, const char* v,
            const char* accepted) {
  errors.push_back(std::string("userspace-roce: ") + name + "='" + shown(v) + "' refused: " +
                   accepted + "; the device list fails with EINVAL until it is fixed");
}

// A setting that is unset or set to "" keeps its default (a shell's `UROCE_LOG= prog`
// means "no setting", not "a bad one").
const char* env_value(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// A whole number: decimal digits only, or 0x and hex digits if hex is allowed. No sign,
// no spaces, no octal (strtoull's base 0 would read "010" as 8), no wrap-around
// (strtoull reads "-1" as 2^64 - 1).
bool parse_whole(const char* v, bool hex, uint64_t& out) {
  unsigned base = 10;
  if (hex && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
    base = 16;
    v += 2;
  }
  if (!*v) return false;
  uint64_t n = 0;
  for (; *v; ++v) {
    unsigned d;
    if (*v >= '0' && *v <= '9') d = static_cast<unsigned>(*v - '0');
    else if (base == 16 && *v >= 'a' && *v <= 'f') d = static_cast<unsigned>(*v - 'a' + 10);
    else if (base == 16 && *v >= 'A' && *v <= 'F') d = static_cast<unsigned>(*v - 'A' + 10);
    else return false;
    if (n > (UINT64_MAX - d) / base) return false;  // does not fit in 64 bits
    n = n * base + d;
  }
  out = n;
  return true;
}

// A probability: a number from 0 to 1 written as a plain decimal ("0.05", "1", ".5",
// "5e-2"). strtod alone would also take " 0.05", "nan" (which fails every comparison and
// would mean "never") and "inf".
void env_probability(std::vector<std::string>& errors, const char* name, double& out) {
  const char* v = env_value(name);
  if (!v) return;
  char* end = nullptr;
  const double d = (*v >= '0' && *v <= '9') || *v == '.' ? std::strtod(v, &end) : -1;
  if (!end || *end || !(d >= 0 && d <= 1)) {
    refuse(errors, name, v, "a probability is a number from 0 to 1, e.g. 0.05 (unset: 0)");
    return;
  }
  out = d;
}

void env_whole(std::vector<std::string>& errors, const char* name, bool hex, uint64_t lo,
               uint64_t hi, const char* accepted, uint64_t& out) {
  const char* v = env_value(name);
  if (!v) return;
  uint64_t n = 0;
  if (!parse_whole(v, hex, n) || n < lo || n > hi) {
    refuse(errors, name, v, accepted);
    return;
  }
  out = n;
}

// UROCE_ADDR: the address this process binds, and so its GID. It must be one unicast
// IPv4 address: 0.0.0.0 would bind every address and give the GID ::ffff:0.0.0.0, which
// no peer can send to; multicast and broadcast addresses are not an HCA's own.
void env_addr(std::vector<std::string>& errors, std::string& out) {
  const char* v = env_value("UROCE_ADDR");
  if (!v) return;
  in_addr a{};
  const uint32_t ip = inet_pton(AF_INET, v, &a) == 1 ? ntohl(a.s_addr) : 0;
  if (ip == 0 || ip == 0xFFFFFFFFu || (ip >> 28) == 0xE) {
    refuse(errors, "UROCE_ADDR", v,
           "an IPv4 unicast address of this host in dotted form, e.g. 127.0.0.2 "
           "(unset: the first free 127.0.0.x from 127.0.0.2)");
    return;
  }
  out = v;
}

Device* g_device = nullptr;
std::mutex g_device_mu;

constexpr size_t kRxBuf = 9216;  // larger than any RoCE packet (4096 MTU + headers)
constexpr int kRxBatch = 32;

}  // namespace

const Config& Config::get() {
  static const Config config = [] {
    Config c;
    env_addr(c.errors, c.addr);
    env_probability(c.errors, "UROCE_DROP", c.drop);
    env_probability(c.errors, "UROCE_DUPLICATE", c.duplicate);
    env_probability(c.errors, "UROCE_REORDER", c.reorder);
    env_whole(c.errors, "UROCE_SEED", true, 0, UINT64_MAX,
              "a seed is a whole number from 0 to 18446744073709551615, decimal or 0x-hex "
              "(unset: 1)", c.seed);
    uint64_t n = static_cast<uint64_t>(c.log);
    env_whole(c.errors, "UROCE_LOG", false, 0, 3,
              "the log level is 0 (quiet), 1 (connections and errors), 2 (every packet) or 3 "
              "(responder decisions) (unset: 0)", n);
    c.log = static_cast<int>(n);
    n = c.window;
    env_whole(c.errors, "UROCE_WINDOW", false, 1, 4096,
              "the window is a whole number of packets from 1 to 4096 (unset: 128)", n);
    c.window = static_cast<uint32_t>(n);
    // Said once, here, whichever call first reads the settings.
    for (const std::string& e : c.errors) std::fprintf(stderr, "%s\n", e.c_str());
    return c;
  }();
  return config;
}

void log_line(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  std::fprintf(stderr, "userspace-roce[%d] %ld.%06ld: %s\n", static_cast<int>(getpid()),
               static_cast<long>(ts.tv_sec), ts.tv_nsec / 1000, buf);
}

const char* wc_status_text(ibv_wc_status s) {
  static const char* const names[] = {"success", "local length error",
                                      "local QP operation error", "local EE context operation error",
                                      "local protection error", "Work Request Flushed Error",
                                      "memory management operation error", "bad response error",
                                      "local access error", "remote invalid request error",
                                      "remote access error", "remote operation error",
                                      "transport retry counter exceeded", "RNR retry counter exceeded",
                                      "local RDD violation error", "remote invalid RD request",
                                      "aborted error", "invalid EE context number",
                                      "invalid EE context state", "fatal error",
                                      "response timeout error", "general error",
                                      "TM error", "TM rendezvous error"};
  return s >= 0 && s < static_cast<int>(std::size(names)) ? names[s] : "unknown";
}

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

namespace {

int bind_socket(uint32_t ip, std::string& error) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) {
    error = std::string("socket(AF_INET, SOCK_DGRAM): ") + std::strerror(errno);
    return -1;
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(wire::kRoceV2Port);
  sa.sin_addr.s_addr = htonl(ip);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, a, sizeof a);
    error = std::string("bind(") + a + ":4791): " + std::strerror(e);
    return -1;
  }
  // The ICRC covers the IPv4 Identification and flags. An unconnected socket with
  // "don't fragment" makes Linux send ID 0 with DF set, which is what compute_icrc assumes
  // for every packet in both directions.
  int pmtu = IP_PMTUDISC_DO;
  setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
  // RoCE v2 senders leave the UDP checksum at 0: the ICRC protects the packet.
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_NO_CHECK, &one, sizeof one);
  // Room for a window of full-size packets per QP. FORCE works as root; otherwise the
  // kernel caps the plain request at net.core.[rw]mem_max.
  int bytes = 8 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  return fd;
}

}  // namespace

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
  if (!cfg.addr.empty()) {
    in_addr a{};
    inet_pton(AF_INET, cfg.addr.c_str(), &a);  // checked by Config::get
    dev->ip = ntohl(a.s_addr);
    dev->sock = bind_socket(dev->ip, error);
    if (dev->sock < 0) {
      error += "; another process may use this address: unset UROCE_ADDR to pick a free one";
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
  dev->fault_rng.seed(cfg.seed ^ dev->ip);
  dev->open_contexts = 1;
  Device* d = dev.release();
  d->engine = std::thread([d] { d->engine_loop(); });
  if (cfg.log >= 1) {
    char a[INET_ADDRSTRLEN];
    in_addr ia{htonl(d->ip)};
    inet_ntop(AF_INET, &ia, a, sizeof a);
    log_line("uroce0 up on %s:4791 (GID ::ffff:%s)", a, a);
  }
  g_device = d;
  return d;
}

void device_close(Device* dev) {
  std::lock_guard<std::mutex> g(g_device_mu);
  {
    std::lock_guard<std::mutex> l(dev->mu);
    if (--dev->open_contexts > 0) return;
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

namespace {
// dst = src, with the payload moved into dst's own buffer (src's may not live long).
void copy_packet(TxPacket& dst, const TxPacket& src) {
  dst.dst = src.dst;
  std::memcpy(dst.hdr, src.hdr, src.hdr_len);
  dst.hdr_len = src.hdr_len;
  if (src.len) std::memcpy(dst.own, src.payload, src.len);
  dst.payload = dst.own;
  dst.len = src.len;
  std::memcpy(dst.trailer, src.trailer, src.trailer_len);
  dst.trailer_len = src.trailer_len;
}
}  // namespace

void Device::queue_copy(const TxPacket& t) {
  if (tx_count == kTxBatch) flush_tx();
  copy_packet(tx[tx_count++], t);
}

uint8_t* Device::tx_scratch() {
  if (tx_count == kTxBatch) flush_tx();
  return tx[tx_count].own;
}

void Device::transmit(uint32_t dst_ip, const uint8_t* hdr, size_t hdr_len,
                      const uint8_t* payload, size_t payload_len, uint8_t pad) {
  const Config& cfg = Config::get();
  if (tx_count == kTxBatch) flush_tx();
  TxPacket& t = tx[tx_count];
  t.dst = dst_ip;
  std::memcpy(t.hdr, hdr, hdr_len);
  t.hdr_len = static_cast<uint8_t>(hdr_len);
  t.payload = payload;
  t.len = static_cast<uint32_t>(payload_len);
  std::memset(t.trailer, 0, pad);
  wire::Ipv4Flow flow;
  flow.src = ip;
  flow.dst = dst_ip;
  const std::span<const uint8_t> parts[] = {{t.hdr, hdr_len}, {payload, payload_len}, {t.trailer, pad}};
  wire::store_icrc(wire::compute_icrc(flow, parts), t.trailer + pad);
  t.trailer_len = static_cast<uint8_t>(pad + wire::kIcrcSize);

  if (cfg.log >= 2) {
    wire::Packet p;
    std::vector<uint8_t> all(t.hdr, t.hdr + hdr_len);
    all.insert(all.end(), payload, payload + payload_len);
    all.insert(all.end(), t.trailer, t.trailer + t.trailer_len);
    if (wire::parse(all.data(), all.size(), flow, p, false) == wire::ParseStatus::ok)
      log_line("tx %s qp 0x%x psn %u len %zu", wire::opcode_info(p.bth.opcode).name,
               p.bth.dest_qp, p.bth.psn, p.payload_len);
  }
  if (cfg.drop > 0 && unit(fault_rng) < cfg.drop) return;  // lost on the "wire"
  if (cfg.reorder > 0 && !held && unit(fault_rng) < cfg.reorder) {
    // Hold this packet back; it goes out right after the next one (or after 1 ms).
    held = std::make_unique<TxPacket>();
    copy_packet(*held, t);
    held_until = Clock::now() + std::chrono::milliseconds(1);
    wake_engine_if_needed(*held_until);
    return;
  }
  tx_count++;
  if (cfg.duplicate > 0 && unit(fault_rng) < cfg.duplicate) queue_copy(t);
  if (held) {
    queue_copy(*held);  // after this one: reordered
    held.reset();
    held_until.reset();
  }
}

void Device::flush_tx() {
  if (tx_count == 0) return;
  mmsghdr msgs[kTxBatch];
  iovec iov[kTxBatch][3];
  sockaddr_in to[kTxBatch];
  for (int i = 0; i < tx_count; ++i) {
    TxPacket& t = tx[i];
    to[i] = {};
    to[i].sin_family = AF_INET;
    to[i].sin_port = htons(wire::kRoceV2Port);
    to[i].sin_addr.s_addr = htonl(t.dst);
    // Gathered straight from the application's memory: no copy before the kernel's.
    iov[i][0] = {t.hdr, t.hdr_len};
    iov[i][1] = {const_cast<uint8_t*>(t.payload), t.len};
    iov[i][2] = {t.trailer, t.trailer_len};
    msgs[i] = {};
    msgs[i].msg_hdr.msg_name = &to[i];
    msgs[i].msg_hdr.msg_namelen = sizeof to[i];
    msgs[i].msg_hdr.msg_iov = iov[i];
    msgs[i].msg_hdr.msg_iovlen = 3;
  }
  int done = 0, stalls = 0;
  while (done < tx_count) {
    if (sock < 0) break;  // no socket (the fuzzer's device): the packets go nowhere
    int n = sendmmsg(sock, msgs + done, static_cast<unsigned>(tx_count - done), 0);
    if (n > 0) {
      done += n;
      continue;
    }
    if (errno == EINTR) continue;
    if ((errno == EAGAIN || errno == ENOBUFS) && ++stalls < 100) {
      // The socket's send buffer is full: wait (briefly) for room rather than drop a
      // packet the requester would then have to retransmit after a timeout.
      pollfd p{sock, POLLOUT, 0};
      poll(&p, 1, 10);
      continue;
    }
    // Anything else (no route, a closed socket) loses this packet, as a real network
    // would; RC's retransmission takes care of it.
    if (Config::get().log >= 2) log_line("sendmmsg: %s (packet lost)", std::strerror(errno));
    done++;
  }
  tx_count = 0;
}

void Device::handle_packet(const uint8_t* data, size_t len, uint32_t src_ip) {
  wire::Ipv4Flow flow;
  flow.src = src_ip;
  flow.dst = ip;
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

void Device::receive_batch() {
  // Drain what the socket holds, a batch at a time, then send the ACKs the batch earned:
  // one ACK per QP per batch, however many packets asked for one (ACK coalescing).
  static thread_local std::vector<uint8_t> bufs(kRxBuf * kRxBatch);
  mmsghdr msgs[kRxBatch];
  iovec iov[kRxBatch];
  sockaddr_in from[kRxBatch];
  for (int round = 0; round < 64; ++round) {
    for (int i = 0; i < kRxBatch; ++i) {
      iov[i] = {bufs.data() + static_cast<size_t>(i) * kRxBuf, kRxBuf};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    int n = recvmmsg(sock, msgs, kRxBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) break;
    for (int i = 0; i < n; ++i) {
      if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) continue;
      if (from[i].sin_port != htons(wire::kRoceV2Port)) continue;
      handle_packet(static_cast<uint8_t*>(iov[i].iov_base), msgs[i].msg_len,
                    ntohl(from[i].sin_addr.s_addr));
    }
    for (auto& [qpn, qp] : qps) qp_flush_ack(*qp);
    flush_tx();
    if (n < kRxBatch) break;
  }
}

std::optional<Clock::time_point> Device::next_deadline() const {
  std::optional<Clock::time_point> best = held_until;
  for (const auto& [qpn, qp] : qps) {
    auto d = qp_deadline(*qp);
    if (d && (!best || *d < *best)) best = d;
  }
  return best;
}

void Device::wake_engine_if_needed(Clock::time_point deadline) {
  if (engine_sleeping_forever || (engine_sleep_until && deadline < *engine_sleep_until)) {
    uint64_t one = 1;
    (void)!write(wake_fd, &one, sizeof one);
    engine_sleeping_forever = false;
    engine_sleep_until = deadline;
  }
}

void Device::run_timers(Clock::time_point now) {
  if (held_until && now >= *held_until && held) {
    queue_copy(*held);  // nothing came after it within 1 ms: send it anyway
    held.reset();
    held_until.reset();
  }
  // qp_timers may move a QP to ERROR but never adds or removes QPs.
  for (auto& [qpn, qp] : qps) qp_timers(*qp, now);
  flush_tx();
}

namespace {
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}
// How long after the last busy poll the engine leaves the socket to the poller.
constexpr int64_t kBusyPollGraceNs = 2'000'000;
}  // namespace

void Device::poll_progress(bool busy) {
  if (busy) last_busy_poll.store(now_ns(), std::memory_order_relaxed);
  std::unique_lock<std::mutex> lk(mu, std::try_to_lock);
  if (!lk.owns_lock()) return;  // the engine or another poller is at it
  receive_batch();
  run_timers(Clock::now());
}

void Device::engine_loop() {
  std::unique_lock<std::mutex> lk(mu);
  while (!stopping) {
    auto deadline = next_deadline();
    // An application thread busy-polling a CQ does the receiving (poll_progress). The
    // engine then watches only its timers and looks again shortly.
    const bool poller_active = now_ns() - last_busy_poll.load(std::memory_order_relaxed) <
                               kBusyPollGraceNs;
    if (poller_active) {
      auto soon = Clock::now() + std::chrono::nanoseconds(kBusyPollGraceNs);
      if (!deadline || soon < *deadline) deadline = soon;
    }
    engine_sleeping_forever = !deadline;
    engine_sleep_until = deadline;
    timespec ts{};
    timespec* tsp = nullptr;
    if (deadline) {
      auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - Clock::now());
      long long ns = wait.count() < 0 ? 0 : wait.count();
      ts.tv_sec = static_cast<time_t>(ns / 1000000000);
      ts.tv_nsec = static_cast<long>(ns % 1000000000);
      tsp = &ts;
    }
    lk.unlock();
    // Idle means asleep here: no packet, no timer, no core used.
    pollfd fds[2] = {{wake_fd, POLLIN, 0}, {sock, POLLIN, 0}};
    ppoll(fds, poller_active ? 1 : 2, tsp, nullptr);
    lk.lock();
    engine_sleeping_forever = false;
    engine_sleep_until.reset();
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      (void)!read(wake_fd, &v, sizeof v);
    }
    receive_batch();
    run_timers(Clock::now());
  }
}

}  // namespace uroce
