// The device's UDP socket: binding it, what the interface behind it allows (active MTU,
// receive buffer), sending queued packets without ever waiting, and receiving in batches.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "runtime.hpp"

#ifndef SO_NO_CHECK
#define SO_NO_CHECK 11
#endif

namespace uroce {
namespace {

constexpr size_t kRxBuf = 9216;  // larger than any RoCE packet (4096 MTU + headers)
constexpr int kRxBatch = 32;
// Packets the socket had no room for, kept in order until it has. A NIC's transmit queue
// is finite too: beyond this many, packets are lost and RC's retransmission recovers them.
constexpr size_t kMaxBacklog = 16384;

}  // namespace

ibv_mtu ib_mtu_for(int interface_mtu) {
  // rxe's rule (rxe_param.h, eth_mtu_int_to_enum): the largest IB MTU that fits in the
  // interface MTU less RXE_MAX_HDR_LENGTH, 80 bytes of headers.
  const int room = interface_mtu - 80;
  if (room >= 4096) return IBV_MTU_4096;
  if (room >= 2048) return IBV_MTU_2048;
  if (room >= 1024) return IBV_MTU_1024;
  if (room >= 512) return IBV_MTU_512;
  return IBV_MTU_256;
}

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
  // kernel caps the plain request at net.core.[rw]mem_max, and window_packets() sizes
  // the send window to what was granted.
  int bytes = 8 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  return fd;
}

std::string interface_of(uint32_t ip) {
  // The interface whose address is `ip`, or failing that whose subnet holds it (the
  // 127.0.0.x addresses belong to lo through 127.0.0.1/8).
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return {};
  std::string name;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !i->ifa_netmask) continue;
    const uint32_t a = ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr);
    const uint32_t m = ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_netmask)->sin_addr.s_addr);
    if (a == ip) {
      name = i->ifa_name;
      break;
    }
    if (name.empty() && (a & m) == (ip & m)) name = i->ifa_name;
  }
  freeifaddrs(list);
  return name.substr(0, name.find(':'));  // "eth0:1", an address's label, is eth0
}

ibv_mtu interface_active_mtu(uint32_t ip) {
  const std::string name = interface_of(ip);
  int mtu = 0;
  if (!name.empty()) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq req{};
    std::strncpy(req.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (fd >= 0 && ioctl(fd, SIOCGIFMTU, &req) == 0) mtu = req.ifr_mtu;
    if (fd >= 0) close(fd);
  }
  // Not found (an address no interface admits to): the 1500-byte Ethernet default.
  return ib_mtu_for(mtu > 0 ? mtu : 1500);
}

uint32_t Device::window_packets(uint32_t mtu) const {
  const uint32_t asked = Config::get().window;
  if (rcvbuf_bytes <= 0) return asked;  // no socket (the unit tests' device): as asked
  // What one packet costs in a receive buffer: the kernel charges a datagram's whole
  // allocation (its length plus ~320 bytes of overhead, rounded up to a power of two,
  // plus the skb itself), not its length. The peer's socket was granted what ours was
  // (the same runtime on the same kind of host), and three quarters of it is left to
  // one QP's data; the rest holds ACKs and other QPs' packets.
  const uint64_t cost = std::bit_ceil(uint64_t{mtu} + 60 + 320) + 320;
  const uint64_t fit = std::max<uint64_t>(1, uint64_t(rcvbuf_bytes) * 3 / 4 / cost);
  return static_cast<uint32_t>(std::min<uint64_t>(asked, fit));
}

uint8_t* Device::tx_scratch() {
  if (tx_count == kTxBatch) flush_tx();
  return tx[tx_count].own;
}

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

void Device::queue_copy(const TxPacket& t) {
  if (tx_count == kTxBatch) flush_tx();
  copy_packet(tx[tx_count++], t);
}

void Device::transmit(uint32_t dst_ip, const uint8_t* hdr, size_t hdr_len,
                      const uint8_t* payload, size_t payload_len, uint8_t pad) {
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

  if (Config::get().log >= 2) {
    wire::Packet p;
    std::vector<uint8_t> all(t.hdr, t.hdr + hdr_len);
    all.insert(all.end(), payload, payload + payload_len);
    all.insert(all.end(), t.trailer, t.trailer + t.trailer_len);
    if (wire::parse(all.data(), all.size(), flow, p, false) == wire::ParseStatus::ok)
      log_line("tx %s qp 0x%x psn %u len %zu", wire::opcode_info(p.bth.opcode).name,
               p.bth.dest_qp, p.bth.psn, p.payload_len);
  }
  if (!inject_faults(t)) return;  // lost, or held back to be sent later
  tx_count++;
  after_queued(t);
}

int Device::send_packets(TxPacket* const* pkts, int count) {
  mmsghdr msgs[kTxBatch];
  iovec iov[kTxBatch][3];
  sockaddr_in to[kTxBatch];
  count = std::min(count, kTxBatch);
  if (sock < 0) return count;  // no socket (the unit tests' device): the packets go nowhere
  for (int i = 0; i < count; ++i) {
    const TxPacket& t = *pkts[i];
    to[i] = {};
    to[i].sin_family = AF_INET;
    to[i].sin_port = htons(wire::kRoceV2Port);
    to[i].sin_addr.s_addr = htonl(t.dst);
    msgs[i] = {};
    msgs[i].msg_hdr.msg_name = &to[i];
    msgs[i].msg_hdr.msg_namelen = sizeof to[i];
    msgs[i].msg_hdr.msg_iov = iov[i];
    // Each datagram is first copied whole into one buffer of ours, and the kernel copies
    // that. Handing the kernel the headers, the payload (straight from registered memory)
    // and the trailer as three pieces saves that copy but costs more on the build machine
    // (a paravirtualised AMD Zen 5): behind a header of 4 to 16 bytes (a BTH alone, as in
    // every middle and last packet of a long message, or a BTH with an AETH or ImmDt),
    // the kernel's copy took 6.6-7.3 % of a udp_ceiling variant's profile against 1.7 %
    // for one contiguous datagram (2.5-3.4 % behind 20 to 48 bytes), while a copy here
    // first costs about 1.3 %. With it, ib_write_bw at 64 KiB went from 1.33-1.46 to
    // 1.44-1.54 GB/s in six alternating pairs of runs.
    const size_t whole = size_t{t.hdr_len} + t.len + t.trailer_len;
    if (whole <= sizeof tx_datagrams[i].bytes) {
      uint8_t* d = tx_datagrams[static_cast<size_t>(i)].bytes;
      std::memcpy(d, t.hdr, t.hdr_len);
      if (t.len) std::memcpy(d + t.hdr_len, t.payload, t.len);
      std::memcpy(d + t.hdr_len + t.len, t.trailer, t.trailer_len);
      iov[i][0] = {d, whole};
      msgs[i].msg_hdr.msg_iovlen = 1;
    } else {
      // Larger than any packet this runtime builds (a path MTU of 4096 at most: see the
      // static_assert in device.hpp); were one built, it would still go out, gathered.
      iov[i][0] = {const_cast<uint8_t*>(t.hdr), t.hdr_len};
      iov[i][1] = {const_cast<uint8_t*>(t.payload), t.len};
      iov[i][2] = {const_cast<uint8_t*>(t.trailer), t.trailer_len};
      msgs[i].msg_hdr.msg_iovlen = 3;
    }
  }
  int done = 0;
  while (done < count) {
    // The socket is non-blocking: this call never waits, whatever the kernel's queues do.
    const int n = sendmmsg(sock, msgs + done, static_cast<unsigned>(count - done), MSG_DONTWAIT);
    if (n > 0) {
      done += n;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == ENOBUFS) return done;  // no room now: the rest waits
    // Anything else (no route, a packet larger than the interface allows) loses this
    // packet, as a real network would; RC's retransmission takes care of it. Said at
    // level 1, since a lasting cause (EMSGSIZE: path_mtu above the interface's) would
    // otherwise look like a silent peer.
    const int e = errno;
    if (Config::get().log >= 1 && send_errors_logged < 10) {
      send_errors_logged++;
      log_line("sendmmsg of a %u-byte packet: %s (packet lost%s)",
               static_cast<unsigned>(pkts[done]->hdr_len + pkts[done]->len +
                                     pkts[done]->trailer_len),
               std::strerror(e), e == EMSGSIZE ? "; is path_mtu above the interface's MTU?" : "");
    }
    done++;
  }
  return done;
}

void Device::flush_tx() {
  if (tx_count == 0) return;
  TxPacket* pkts[kTxBatch];
  for (int i = 0; i < tx_count; ++i) pkts[i] = &tx[i];
  // Packets already waiting go first: order on the wire is the order of transmit().
  const int sent = backlog.empty() ? send_packets(pkts, tx_count) : 0;
  // What the socket did not take is copied (its payload may be the application's memory,
  // valid only until Device::mu is released) and sent when the socket has room again:
  // the engine watches for that (POLLOUT). Nobody waits here, so nothing waits under mu.
  const bool was_empty = backlog.empty();
  for (int i = sent; i < tx_count; ++i) {
    if (backlog.size() >= kMaxBacklog) {
      backlog_dropped++;
      continue;
    }
    auto copy = std::make_unique<TxPacket>();
    copy_packet(*copy, tx[i]);
    backlog.push_back(std::move(copy));
  }
  tx_count = 0;
  if (!backlog.empty()) {
    drain_backlog();
    if (was_empty && !backlog.empty()) {
      uint64_t one = 1;
      (void)!write(wake_fd, &one, sizeof one);  // the engine now also waits for POLLOUT
    }
  }
}

void Device::drain_backlog() {
  while (!backlog.empty()) {
    TxPacket* pkts[kTxBatch];
    const int n = static_cast<int>(std::min<size_t>(backlog.size(), kTxBatch));
    for (int i = 0; i < n; ++i) pkts[i] = backlog[static_cast<size_t>(i)].get();
    const int sent = send_packets(pkts, n);
    backlog.erase(backlog.begin(), backlog.begin() + sent);
    if (sent < n) break;
  }
  if (backlog_dropped && Config::get().log >= 1) {
    log_line("transmit queue full (%zu packets): %llu packets lost", kMaxBacklog,
             static_cast<unsigned long long>(backlog_dropped));
    backlog_dropped = 0;
  }
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
      // Any source port: RoCE v2 senders pick theirs (rxe derives it from the QP's flow
      // label, in 0xC000-0xFFFF, so that ECMP spreads QPs); the ICRC check covers it.
      handle_packet(static_cast<uint8_t*>(iov[i].iov_base), msgs[i].msg_len,
                    ntohl(from[i].sin_addr.s_addr), ntohs(from[i].sin_port));
    }
    for (auto& [qpn, qp] : qps) qp_flush_ack(*qp);
    flush_tx();
    if (n < kRxBatch) break;
  }
}

}  // namespace uroce
