// udp_ceiling: how fast can this machine move RoCE-sized UDP datagrams over loopback at
// all? A reference for the runtime's bandwidth: every RoCE v2 packet of a 4096-byte path
// MTU is one UDP datagram of 4112 bytes (BTH 12 + payload 4096 + ICRC 4), and the kernel's
// cost per datagram — not the runtime's protocol work — bounds what any UDP-based RoCE can
// reach. TCP loopback is not bound by it: it moves 64 KiB segments.
//
//   udp_ceiling [--datagrams N] [--size BYTES]
//
// One process, two threads: a sender with sendmmsg batches of 32 from an unconnected
// socket with "don't fragment", as the runtime sends (but always 32 where the runtime
// sends what one post or receive batch produced, up to 32; one buffer per datagram where
// it gathers header, payload and ICRC; and a blocking socket with the UDP checksum on,
// which on loopback cost nothing), and a receiver that busy-polls recvmmsg and does
// nothing else: the best case for the runtime's engine, which sleeps when the socket is
// empty. Prints one line:
//   RESULT transport=udp test=datagram_ceiling size=4112 datagrams=N received=M gbytes_per_s=X
// where X counts 4096 payload bytes per received datagram. Exit 1 if nothing arrived.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "udp_ceiling: %s: %s\n", what.c_str(), std::strerror(errno));
  return 1;
}

// Binds a UDP socket to the first free 127.0.0.x:port (x from 200 up, away from the
// runtime's low addresses).
int bind_loopback(uint16_t port, sockaddr_in& addr) {
  for (uint32_t x = 200; x < 255; ++x) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    addr = {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl((127u << 24) | x);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    close(fd);
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  long datagrams = 200000;
  size_t size = 4112;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--datagrams" && i + 1 < argc) {
      datagrams = std::atol(argv[++i]);
    } else if (a == "--size" && i + 1 < argc) {
      size = static_cast<size_t>(std::atol(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: udp_ceiling [--datagrams N] [--size BYTES]\n");
      return 2;
    }
  }
  if (datagrams < 1000 || size < 16 || size > 9000) {
    std::fprintf(stderr, "udp_ceiling: --datagrams must be >= 1000 and --size 16..9000\n");
    return 2;
  }
  constexpr int kBatch = 32;
  sockaddr_in to{}, from{};
  int rx = bind_loopback(47910, to);
  int tx = bind_loopback(47911, from);
  if (rx < 0 || tx < 0) return fail("bind a 127.0.0.x address");
  int bytes = 8 << 20;
  if (setsockopt(rx, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0)
    setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  int pmtu = IP_PMTUDISC_DO;
  setsockopt(tx, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);

  std::atomic<long> received{0};
  std::atomic<bool> sending{true};
  auto last_rx = std::chrono::steady_clock::now();
  std::thread receiver([&] {
    std::vector<char> buf(kBatch * 9216);
    mmsghdr m[kBatch];
    iovec v[kBatch];
    auto idle_since = std::chrono::steady_clock::now();
    for (;;) {
      for (int i = 0; i < kBatch; ++i) {
        v[i] = {&buf[static_cast<size_t>(i) * 9216], 9216};
        m[i] = {};
        m[i].msg_hdr.msg_iov = &v[i];
        m[i].msg_hdr.msg_iovlen = 1;
      }
      int n = recvmmsg(rx, m, kBatch, MSG_DONTWAIT, nullptr);
      auto now = std::chrono::steady_clock::now();
      if (n > 0) {
        received += n;
        last_rx = idle_since = now;
      } else if (!sending && now - idle_since > std::chrono::milliseconds(200)) {
        return;  // the sender is done and nothing came for 200 ms: what was lost is lost
      } else if (sending) {
        idle_since = now;
      }
    }
  });

  std::vector<char> payload(size, 0x5a);
  mmsghdr m[kBatch];
  iovec v[kBatch];
  const auto start = std::chrono::steady_clock::now();
  for (long sent = 0; sent < datagrams;) {
    int k = static_cast<int>(std::min<long>(kBatch, datagrams - sent));
    for (int i = 0; i < k; ++i) {
      v[i] = {payload.data(), size};
      m[i] = {};
      m[i].msg_hdr.msg_iov = &v[i];
      m[i].msg_hdr.msg_iovlen = 1;
      m[i].msg_hdr.msg_name = &to;
      m[i].msg_hdr.msg_namelen = sizeof to;
    }
    int n = sendmmsg(tx, m, static_cast<unsigned>(k), 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ENOBUFS) continue;
      sending = false;
      receiver.join();
      return fail("sendmmsg");
    }
    sent += n;
  }
  sending = false;
  receiver.join();
  const double seconds = std::chrono::duration<double>(last_rx - start).count();
  const long got = received.load();
  if (got == 0 || seconds <= 0) {
    std::fprintf(stderr, "udp_ceiling: no datagram arrived\n");
    return 1;
  }
  const double payload_bytes = static_cast<double>(got) * static_cast<double>(size > 16 ? size - 16 : size);
  std::printf("RESULT transport=udp test=datagram_ceiling size=%zu datagrams=%ld received=%ld gbytes_per_s=%.3f\n",
              size, datagrams, got, payload_bytes / seconds / 1e9);
  return 0;
}
