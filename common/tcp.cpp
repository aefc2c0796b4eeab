#include "common/tcp.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>

#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/net.hpp"

namespace common {
// Deadlines, poll, addresses, the listening socket: shared with tls.cpp.
using namespace net;

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
  const AddrList addrs = resolve(host, port);
  const auto deadline = deadline_after(timeout_s);
  int attempts = 0, last_error = 0;
  std::string target = address_text(addrs->ai_addr);
  LOG(slow, "connecting to %s (retrying for up to %s)", target.c_str(),
      seconds_text(timeout_s).c_str());
  do {
    for (const addrinfo* ai = addrs.get(); ai != nullptr; ai = ai->ai_next) {
      ++attempts;
      Fd fd;
      // Non-blocking connect bounded by poll (see connect_once), then blocking again:
      // send and receive below wait with poll themselves.
      last_error = connect_once(ai, deadline, fd);
      if (last_error == 0) {
        set_nonblocking(fd.get(), false);
        set_nodelay(fd.get());
        LOG(slow, "connected to %s after %d attempt(s)", address_text(ai->ai_addr).c_str(), attempts);
        return Channel(std::move(fd), address_text(ai->ai_addr));
      }
      target = address_text(ai->ai_addr);
      LOG_DETAIL(info, "connect attempt %d to %s: %s", attempts, target.c_str(),
                 errno_text(last_error).c_str());
    }
    // Retry pause: the server is probably still starting. Bounded by the deadline above.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(200, ms_left(deadline))));
  } while (ms_left(deadline) > 0);
  // "Refused" is an answer: a host is there, but nothing listens on the port (or a
  // firewall rejects it). A server that takes one client (lesson 01) stops listening once
  // it has it, so a second client hears exactly that while the first is being served.
  fail("could not connect to " + target + " after " + std::to_string(attempts) +
           " attempts in " + seconds_text(timeout_s) + ": " + errno_text(last_error),
       last_error == ECONNREFUSED
           ? "nothing listens on TCP port " + std::to_string(port) + " there: the server is not running, "
             "is on another port (-p), or serves one client per run and is busy with another one "
             "(start a second server on another -p); or a firewall rejects that port"
           : "is the server running on that host and port (-p)? Is the address right? A firewall "
             "must let TCP port " + std::to_string(port) + " through");
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

void Channel::receive_done(double timeout_s) { expect(MessageType::done, timeout_s); }

}  // namespace common
