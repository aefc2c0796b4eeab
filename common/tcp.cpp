#include "common/tcp.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include "common/errors.hpp"
#include "common/log.hpp"

namespace common {
namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point deadline_after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(seconds));
}

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
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

// Wait until @p fd is readable/writable or the deadline passes. Returns false on timeout.
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

}  // namespace

Channel Channel::accept_one(std::uint16_t port, double timeout_s) {
  Fd listener = listen_socket(port);
  check_rc(::listen(listener.get(), 1), "listen", "");
  LOG(slow, "listening on TCP port %u; waiting up to %s for a client", port,
      seconds_text(timeout_s).c_str());
  if (!wait_fd(listener.get(), POLLIN, deadline_after(timeout_s)))
    fail("no client connected to TCP port " + std::to_string(port) + " within " +
             seconds_text(timeout_s),
         "start the client with this host's address, or give the server more time");
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  Fd fd{::accept4(listener.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC)};
  check_rc(fd.get() < 0 ? -1 : 0, "accept", "");
  set_nodelay(fd.get());
  // The listener closes here: this lesson serves one client per run.
  return Channel(std::move(fd), address_text(reinterpret_cast<sockaddr*>(&peer)));
}

Channel Channel::connect_with_retry(const std::string& host, std::uint16_t port, double timeout_s) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0)
    fail("cannot resolve server address '" + host + "': " + gai_strerror(rc),
         "pass the server's IP address or a resolvable host name");
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addrs(found, ::freeaddrinfo);

  const auto deadline = deadline_after(timeout_s);
  int attempts = 0, last_error = 0;
  std::string target = address_text(addrs->ai_addr);
  LOG(slow, "connecting to %s (retrying for up to %s)", target.c_str(),
      seconds_text(timeout_s).c_str());
  do {
    for (addrinfo* ai = addrs.get(); ai != nullptr; ai = ai->ai_next) {
      ++attempts;
      Fd fd{::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
      if (fd.get() < 0) { last_error = errno; continue; }
      // Non-blocking connect bounded by poll: a host that does not answer at all
      // (no ARP reply) would otherwise block for minutes.
      int rc = ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS) {
        const auto attempt_deadline = std::min(deadline, deadline_after(1.0));
        if (wait_fd(fd.get(), POLLOUT, attempt_deadline)) {
          int err = 0;
          socklen_t len = sizeof err;
          ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
          rc = err == 0 ? 0 : -1;
          errno = err;
        } else {
          rc = -1;
          errno = ETIMEDOUT;
        }
      }
      if (rc == 0) {
        ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
        set_nodelay(fd.get());
        LOG(slow, "connected to %s after %d attempt(s)", address_text(ai->ai_addr).c_str(), attempts);
        return Channel(std::move(fd), address_text(ai->ai_addr));
      }
      last_error = errno;
      target = address_text(ai->ai_addr);
      LOG_DETAIL(info, "connect attempt %d to %s: %s", attempts, target.c_str(),
                 errno_text(last_error).c_str());
    }
    // Retry pause: the server is probably still starting. Bounded by the deadline above.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(200, ms_left(deadline))));
  } while (ms_left(deadline) > 0);
  fail("could not connect to " + target + " after " + std::to_string(attempts) +
           " attempts in " + seconds_text(timeout_s) + ": " + errno_text(last_error),
       "is the server running on that host and port (-p)? Is the address right? A firewall "
       "must let TCP port " + service + " through");
}

void Channel::send(const std::vector<std::uint8_t>& bytes, double timeout_s) {
  const auto deadline = deadline_after(timeout_s);
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    if (!wait_fd(fd_.get(), POLLOUT, deadline))
      fail("sending to " + peer_ + " timed out after " + seconds_text(timeout_s),
           "the peer stopped reading; check its log");
    // MSG_NOSIGNAL: a vanished peer gives EPIPE here instead of killing us with SIGPIPE.
    const ssize_t n = ::send(fd_.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    check_rc(n < 0 ? -1 : 0, ("send to " + peer_).c_str(), "the peer closed the connection; check its log");
    sent += static_cast<std::size_t>(n);
  }
}

void Channel::read_exactly(std::uint8_t* out, std::size_t n, double timeout_s, const char* what) {
  const auto deadline = deadline_after(timeout_s);
  std::size_t got = 0;
  while (got < n) {  // TCP is a byte stream: one recv() may return any part of a message
    if (!wait_fd(fd_.get(), POLLIN, deadline))
      fail("no " + std::string(what) + " from " + peer_ + " within " + seconds_text(timeout_s) +
               " (" + std::to_string(got) + " of " + std::to_string(n) + " bytes arrived)",
           "the peer is stuck or gone; check its log");
    const ssize_t r = ::recv(fd_.get(), out + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    check_rc(r < 0 ? -1 : 0, ("recv from " + peer_).c_str(), "the connection broke; check the peer's log");
    if (r == 0)
      fail("peer " + peer_ + " closed the connection after " + std::to_string(got) + " of " +
               std::to_string(n) + " bytes of the " + what,
           "the peer exited or refused us; check its log");
    got += static_cast<std::size_t>(r);
  }
}

Message Channel::receive(double timeout_s) {
  std::uint8_t head[kHeaderSize];
  read_exactly(head, sizeof head, timeout_s, "message header");
  const Header h = decode_header(head);
  Message m;
  m.type = h.type;
  m.body.resize(h.body_length);  // bounded by decode_header (at most kMaxErrorText)
  read_exactly(m.body.data(), m.body.size(), timeout_s, "message body");
  return m;
}

Message Channel::expect(MessageType type, double timeout_s) {
  Message m = receive(timeout_s);
  if (m.type == MessageType::error)
    fail("peer " + peer_ + " refused: " + decode_error(m.body), "see the peer's log for details");
  if (m.type != type)
    fail("expected " + message_type_name(type) + " from " + peer_ + ", got " +
             message_type_name(m.type),
         "both sides must run the same lesson");
  return m;
}

Hello Channel::receive_hello(double timeout_s) {
  return decode_hello(expect(MessageType::hello, timeout_s).body);
}

void Channel::receive_ready(double timeout_s) { expect(MessageType::ready, timeout_s); }

}  // namespace common
