// udp_ceiling: how fast can this machine move RoCE-sized UDP datagrams over loopback at
// all? A reference for the runtime's bandwidth: every RoCE v2 packet of a 4096-byte path
// MTU is one UDP datagram of 4112 bytes (BTH 12 + payload 4096 + ICRC 4), and the kernel's
// cost per datagram — not the runtime's protocol work — bounds what any UDP-based RoCE can
// reach. TCP loopback is not bound by it: it moves 64 KiB segments.
//
//   udp_ceiling [--datagrams N] [--size BYTES] [--icrc]
//
// One process, two threads: a sender with sendmmsg batches of 32 from an unconnected
// socket with "don't fragment", as the runtime sends (but always 32 where the runtime
// sends what one post or receive batch produced, up to 32; one buffer per datagram, as
// the runtime lays each one out before sending; and a blocking socket with the UDP checksum on,
// which on loopback cost nothing), and a receiver that busy-polls recvmmsg and does
// nothing else: the best case for the runtime's engine, which sleeps when the socket is
// empty. Prints one line:
//   RESULT transport=udp test=datagram_ceiling size=4112 datagrams=N received=M gbytes_per_s=X
// where X counts 4096 payload bytes per received datagram. Exit 1 if nothing arrived.
//
// --icrc: the same, but every datagram ends in an ICRC that the sender computes and the
// receiver checks, with the runtime's own code (wire::compute_icrc), over the datagram's
// other bytes (which begin with a running number, so no two ICRCs are alike). RoCE
// requires that work on every packet. The line then says test=datagram_ceiling_icrc and
// also bad_icrc=B and crc=M (the method crc32_update picks on this CPU: clmul512, VPCLMULQDQ with
// AVX-512; clmul128, PCLMULQDQ; table, zlib's); B > 0 (a datagram arrived cut short or
// changed) is exit 1. Both sides run the same CRC code, so B cannot show that code wrong:
// the unit tests compare each folding method this CPU has with zlib. Against this line the runtime's
// bandwidth shows what its work other than the ICRC costs (with one thread a side
// computing the ICRC in line, as the runtime does).
//
// Either way the sender cycles through 32 buffers, one per datagram of a batch, as the
// runtime sends from its 32 datagram buffers (into which it copies each payload from
// registered memory).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "wire.hpp"

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

// The ICRC's view of a datagram from `from` to `to`: the flow as the runtime sends (DF
// set, so Linux sends IPv4 ID 0).
uroce::wire::Ipv4Flow flow_of(const sockaddr_in& from, const sockaddr_in& to) {
  uroce::wire::Ipv4Flow f;
  f.src = ntohl(from.sin_addr.s_addr);
  f.dst = ntohl(to.sin_addr.s_addr);
  f.src_port = ntohs(from.sin_port);
  f.dst_port = ntohs(to.sin_port);
  return f;
}

// The ICRC of the first len - 4 bytes of d, as the wire stores it.
uint32_t icrc_of(const uroce::wire::Ipv4Flow& flow, const uint8_t* d, size_t len) {
  const std::span<const uint8_t> part(d, len - uroce::wire::kIcrcSize);
  return uroce::wire::compute_icrc(flow, std::span<const std::span<const uint8_t>>(&part, 1));
}

}  // namespace

int main(int argc, char** argv) {
  long datagrams = 200000;
  size_t size = 4112;
  bool icrc = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--icrc") {
      icrc = true;
    } else if (a == "--datagrams" && i + 1 < argc) {
      datagrams = std::atol(argv[++i]);
    } else if (a == "--size" && i + 1 < argc) {
      size = static_cast<size_t>(std::atol(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: udp_ceiling [--datagrams N] [--size BYTES] [--icrc]\n");
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

  // With --icrc both threads do what RoCE asks of every packet (see the top).
  const uroce::wire::Ipv4Flow rx_flow = flow_of(from, to);
  long bad = 0;  // the receiver's: datagrams of the wrong size or with a wrong ICRC
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
      if (icrc) {
        for (int i = 0; i < n; ++i) {
          const auto* d = reinterpret_cast<const uint8_t*>(v[i].iov_base);
          const size_t len = m[i].msg_len;
          if (len != size || icrc_of(rx_flow, d, len) != uroce::wire::load_icrc(d + len - 4)) ++bad;
        }
      }
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

  // One buffer per datagram of a batch (with --icrc each has its own number and ICRC).
  std::vector<uint8_t> payload(kBatch * size, 0x5a);
  const uroce::wire::Ipv4Flow tx_flow = flow_of(from, to);
  mmsghdr m[kBatch];
  iovec v[kBatch];
  const auto start = std::chrono::steady_clock::now();
  for (long sent = 0; sent < datagrams;) {
    int k = static_cast<int>(std::min<long>(kBatch, datagrams - sent));
    for (int i = 0; i < k; ++i) {
      uint8_t* d = payload.data() + static_cast<size_t>(i) * size;
      if (icrc) {
        const auto number = static_cast<uint32_t>(sent + i);
        std::memcpy(d, &number, sizeof number);
        uroce::wire::store_icrc(icrc_of(tx_flow, d, size), d + size - 4);
      }
      v[i] = {d, size};
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
  if (!icrc) {
    std::printf("RESULT transport=udp test=datagram_ceiling size=%zu datagrams=%ld received=%ld gbytes_per_s=%.3f\n",
                size, datagrams, got, payload_bytes / seconds / 1e9);
    return 0;
  }
  const auto method = uroce::wire::crc_method();
  const char* crc = method == uroce::wire::CrcMethod::clmul512   ? "clmul512"
                    : method == uroce::wire::CrcMethod::clmul128 ? "clmul128"
                                                                 : "table";
  std::printf("RESULT transport=udp test=datagram_ceiling_icrc size=%zu datagrams=%ld received=%ld bad_icrc=%ld crc=%s gbytes_per_s=%.3f\n",
              size, datagrams, got, bad, crc, payload_bytes / seconds / 1e9);
  if (bad > 0) {
    std::fprintf(stderr, "udp_ceiling: %ld of %ld datagrams arrived with a wrong size or ICRC\n", bad, got);
    return 1;
  }
  return 0;
}
