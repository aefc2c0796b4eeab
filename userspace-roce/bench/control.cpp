// roce_bench: the TCP control connection.
#include "control.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <memory>
#include <thread>

namespace roce_bench {

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = std::exchange(o.fd_, -1);
    peer_ = std::move(o.peer_);
  }
  return *this;
}

void Socket::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Socket::set_timeouts(double seconds) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  timeout_s_ = seconds;
}

void Socket::set_nodelay(bool on) {
  const int v = on ? 1 : 0;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v);
}

void Socket::send_all(const void* data, std::size_t n, const char* what) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  std::size_t sent = 0;
  while (sent < n) {
    // MSG_NOSIGNAL: a vanished peer gives EPIPE instead of killing us with SIGPIPE.
    const ssize_t r = ::send(fd_, p + sent, n - sent, MSG_NOSIGNAL);
    if (r > 0) {
      sent += static_cast<std::size_t>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      fail("sending the " + std::string(what) + " to " + peer_ + " made no progress for " +
               fmt_double(timeout_s_, 1) + " s (" + std::to_string(sent) + " of " +
               std::to_string(n) + " bytes sent)",
           "the peer stopped reading: check its log; raise --timeout if the machine is "
           "just overloaded");
    check_rc(-1, "send (" + std::string(what) + ") to " + peer_,
             "the peer closed the connection: check its log");
  }
}

bool Socket::recv_all(void* data, std::size_t n, const char* what, bool eof_ok) {
  auto* p = static_cast<std::uint8_t*>(data);
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::recv(fd_, p + got, n - got, 0);
    if (r > 0) {
      got += static_cast<std::size_t>(r);
      continue;
    }
    if (r == 0) {
      if (eof_ok && got == 0) return false;
      fail("peer " + peer_ + " closed the connection after " + std::to_string(got) + " of " +
               std::to_string(n) + " bytes of the " + what,
           "the peer stopped or failed: check its log");
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      fail("no " + std::string(what) + " from " + peer_ + " within " +
               fmt_double(timeout_s_, 1) + " s (" + std::to_string(got) + " of " +
               std::to_string(n) + " bytes arrived)",
           "the peer is stuck or gone: check its log; raise --timeout on both sides if the "
           "machine is just slow");
    check_rc(-1, "recv (" + std::string(what) + ") from " + peer_,
             "the connection broke: check the peer's log");
  }
  return true;
}

void Socket::send_msg(Msg type, const std::vector<std::uint8_t>& body) {
  Writer w;
  w.u32(kMagic).u8(static_cast<std::uint8_t>(type)).u8(0).u16(static_cast<std::uint16_t>(body.size()));
  w.bytes(body.data(), body.size());
  send_all(w.data().data(), w.data().size(), msg_name(type));
}

std::vector<std::uint8_t> Socket::expect_msg(Msg want, bool skip_progress) {
  for (;;) {
    auto [type, body] = recv_msg(want);
    if (skip_progress && type == Msg::progress && want != Msg::progress) continue;
    if (type != want)
      fail("expected " + std::string(msg_name(want)) + " from " + peer_ + ", got " +
               msg_name(type),
           "both sides must run the same roce_bench build");
    return body;
  }
}

int Socket::drain_progress() {
  int n = 0;
  for (;;) {
    std::uint8_t head[kHeaderBytes];
    const ssize_t r = ::recv(fd_, head, sizeof head, MSG_PEEK | MSG_DONTWAIT);
    if (r != static_cast<ssize_t>(sizeof head) || head[4] != static_cast<std::uint8_t>(Msg::progress) ||
        head[6] != 0 || head[7] != 0)
      return n;
    expect_msg(Msg::progress);
    ++n;
  }
}

std::pair<Msg, std::vector<std::uint8_t>> Socket::recv_msg(Msg want) {
  std::uint8_t head[kHeaderBytes];
  recv_all(head, sizeof head, msg_name(want));
  Reader r(head, sizeof head, "message header");
  const std::uint32_t magic = r.u32();
  const auto type = static_cast<Msg>(r.u8());
  r.u8();
  const std::uint16_t length = r.u16();
  if (magic != kMagic)
    fail("the peer at " + peer_ + " sent 0x" + hex32(magic) + " where a roce_bench message "
             "starts with 0x" + hex32(kMagic),
         "the peer is not roce_bench, or the two sides run different tests/transports "
         "(give both the same --transport and --test)");
  std::vector<std::uint8_t> body(length);
  recv_all(body.data(), body.size(), msg_name(want));
  if (type == Msg::error)
    fail("the peer reports: " + std::string(body.begin(), body.end()), "see the peer's log");
  return {type, std::move(body)};
}

void Socket::check_peer_alive() {
  if (fd_ < 0) return;
  std::uint8_t head[kHeaderBytes];
  const ssize_t r = ::recv(fd_, head, sizeof head, MSG_PEEK | MSG_DONTWAIT);
  if (r == 0)
    fail("the peer " + peer_ + " closed the control connection in the middle of the run",
         "the peer failed or was stopped: check its log");
  if (r == static_cast<ssize_t>(sizeof head) && head[4] == static_cast<std::uint8_t>(Msg::error))
    expect_msg(Msg::done);  // reads the ERROR and throws with its text
}

void Socket::send_error_quietly(const std::string& text) noexcept {
  if (fd_ < 0) return;
  try {
    const std::string t = text.substr(0, 1000);
    send_msg(Msg::error, std::vector<std::uint8_t>(t.begin(), t.end()));
  } catch (...) {
  }
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
    std::string text = host;
    if (text.rfind("::ffff:", 0) == 0 && text.find('.') != std::string::npos)
      return text.substr(7) + ":" + std::to_string(port);
    return "[" + text + "]:" + std::to_string(port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

/// Listen on @p port (all addresses, IPv6 socket accepting IPv4 too, or IPv4 alone) and
/// accept one client within @p timeout_s.
Socket accept_one(std::uint16_t port, double timeout_s) {
  const std::string remedy_busy = "another program (or an earlier run still exiting) uses TCP "
                                  "port " + std::to_string(port) + ": pick another with -p on "
                                  "both sides";
  const int one = 1, zero = 0;
  Socket listener{::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  bool bound = false;
  if (listener.fd() >= 0) {
    ::setsockopt(listener.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(listener.fd(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(port);
    bound = ::bind(listener.fd(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    if (!bound && errno == EADDRINUSE) check_rc(-1, "bind(TCP port " + std::to_string(port) + ")", remedy_busy);
  }
  if (!bound) {
    listener = Socket{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    check_rc(listener.fd() < 0 ? -1 : 0, "socket(AF_INET)", "");
    ::setsockopt(listener.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(port);
    check_rc(::bind(listener.fd(), reinterpret_cast<sockaddr*>(&a), sizeof a),
             "bind(TCP port " + std::to_string(port) + ")", remedy_busy);
  }
  check_rc(::listen(listener.fd(), 1), "listen", "");
  say("listening on TCP port %u; waiting up to %.1f s for the client", port, timeout_s);
  pollfd pfd{listener.fd(), POLLIN, 0};
  int rc;
  do rc = ::poll(&pfd, 1, static_cast<int>(timeout_s * 1000));
  while (rc < 0 && errno == EINTR);
  check_rc(rc < 0 ? -1 : 0, "poll", "");
  if (rc == 0)
    fail("no client connected to TCP port " + std::to_string(port) + " within " +
             fmt_double(timeout_s, 1) + " s",
         "start `roce_bench client HOST` with the same -p, or raise --timeout");
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  const int fd = ::accept4(listener.fd(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
  check_rc(fd < 0 ? -1 : 0, "accept", "");
  // The listener closes on return: one client per run.
  return Socket(fd, address_text(reinterpret_cast<sockaddr*>(&peer)));
}

/// Connect to @p host:@p port, retrying (every 20 ms) while nobody listens yet, for at most
/// @p timeout_s. This retry is how a client started together with its server waits for it.
Socket connect_with_retry(const std::string& host, std::uint16_t port, double timeout_s) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0)
    fail("cannot resolve server address '" + host + "': " + gai_strerror(rc),
         "pass the server's IP address (127.0.0.1 when both sides run on this machine)");
  const std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addrs(found, ::freeaddrinfo);
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_s));
  const auto ms_left = [&] {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return std::max<long long>(0, left.count());
  };
  int attempts = 0, last_error = 0;
  std::string target = address_text(addrs->ai_addr);
  do {
    for (const addrinfo* ai = addrs.get(); ai != nullptr; ai = ai->ai_next) {
      ++attempts;
      target = address_text(ai->ai_addr);
      Socket s{::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
      if (s.fd() < 0) { last_error = errno; continue; }
      if (::connect(s.fd(), ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) { last_error = errno; continue; }
        // A host that does not answer at all would block a plain connect for minutes.
        pollfd pfd{s.fd(), POLLOUT, 0};
        if (::poll(&pfd, 1, static_cast<int>(std::min<long long>(1000, ms_left()))) <= 0) {
          last_error = ETIMEDOUT;
          continue;
        }
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) { last_error = err; continue; }
      }
      const int flags = ::fcntl(s.fd(), F_GETFL);
      ::fcntl(s.fd(), F_SETFL, flags & ~O_NONBLOCK);
      DETAIL("connected to %s after %d attempt(s)", target.c_str(), attempts);
      return Socket(s.release(), target);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min<long long>(20, ms_left())));
  } while (ms_left() > 0);
  fail("could not connect to " + target + " after " + std::to_string(attempts) + " attempts in " +
           fmt_double(timeout_s, 1) + " s: " + errno_text(last_error),
       "start `roce_bench server` first (with the same -p " + std::to_string(port) +
           "), check the address, or raise --timeout");
}

/// Both sides: "I have all my completions", then wait for the peer to say the same. Only then
/// may either side destroy its QP: the peer may still need our ACK for its last message.
void done_barrier(Socket& ctrl) {
  ctrl.send_msg(Msg::done);
  ctrl.expect_msg(Msg::done);
}

}  // namespace roce_bench
