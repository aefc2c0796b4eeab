#include "common/net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>

#include "common/errors.hpp"

namespace common::net {

Clock::time_point deadline_after(double seconds) {
  // Options are checked when parsed (seconds_between); this is the last line of defence,
  // because turning NaN or a huge double into the clock's integer count is undefined
  // behaviour: NaN or anything not above 0 is "now", anything above a year is a year.
  constexpr double kYear = 365.0 * 24 * 3600;
  if (!(seconds > 0)) return Clock::now();
  if (seconds > kYear) seconds = kYear;
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(seconds));
}

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  // poll() takes an int: a deadline further than ~24 days away is capped there.
  return static_cast<int>(std::clamp<long long>(left.count(), 0, INT_MAX));
}

std::string seconds_text(double s) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", s);
  return text;
}

std::string address_text(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
    // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d; print a.b.c.d.
    const std::string text = host;
    if (text.rfind("::ffff:", 0) == 0 && text.find('.') != std::string::npos)
      return text.substr(7) + ":" + std::to_string(port);
    return "[" + text + "]:" + std::to_string(port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

bool wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, ms_left(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) check_rc(-1, "poll", "");
  }
}

void set_nodelay(int fd) {
  // The exchange is a few small messages, each answered: Nagle's algorithm would hold
  // each one back waiting for more data.
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void set_nonblocking(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
}

Fd listen_socket(std::uint16_t port) {
  // Prefer one IPv6 socket that also accepts IPv4 (dual stack); fall back to IPv4 only.
  Fd fd{::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  const int one = 1, zero = 0;
  if (fd.get() >= 0) {
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_any;
    addr.sin6_port = htons(port);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    if (errno == EADDRINUSE) check_rc(-1, ("bind(TCP port " + std::to_string(port) + ")").c_str(),
                                      "another program (or an earlier run) uses that port: "
                                      "stop it or pick another with -p on both sides");
  }
  fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  check_rc(fd.get() < 0 ? -1 : 0, "socket(AF_INET)", "");
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(port);
  check_rc(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr),
           ("bind(TCP port " + std::to_string(port) + ")").c_str(),
           "another program (or an earlier run) uses that port: stop it or pick another with "
           "-p on both sides");
  return fd;
}

AddrList resolve(const std::string& host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0)
    fail("cannot resolve server address '" + host + "': " + gai_strerror(rc),
         "pass the server's IP address or a resolvable host name");
  return AddrList(found, ::freeaddrinfo);
}

int connect_once(const addrinfo* ai, Clock::time_point deadline, Fd& out) {
  Fd fd{::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
  if (fd.get() < 0) return errno;
  // Non-blocking connect bounded by poll: a host that does not answer at all
  // (no ARP reply) would otherwise block for minutes.
  if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) return errno;
    if (!wait_fd(fd.get(), POLLOUT, std::min(deadline, deadline_after(1.0)))) return ETIMEDOUT;
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return err;
  }
  out = std::move(fd);
  return 0;
}

}  // namespace common::net
