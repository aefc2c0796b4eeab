/**
 * @file net.hpp
 * @brief Socket helpers shared by the plain TCP exchange (tcp.cpp) and lesson 05's TLS
 *        exchange (lessons/05-tls-psn/tls.cpp): deadlines, poll(), printable addresses, the
 *        dual-stack listening socket, one bounded connect attempt.
 *
 * Lessons use Channel (tcp.hpp) or lesson 05's TlsChannel, not these. Nothing here logs,
 * so the log lines keep naming the function a learner reads (connect_with_retry ...).
 */
#pragma once

#include <netdb.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/verbs_owners.hpp"

namespace common::net {

/// The clock of every deadline (never jumps with the wall clock).
using Clock = std::chrono::steady_clock;

/// The moment @p seconds from now.
Clock::time_point deadline_after(double seconds);

/// Milliseconds until @p deadline, 0 if it has passed (a poll() timeout).
int ms_left(Clock::time_point deadline);

/// "2.5 s", for messages.
std::string seconds_text(double s);

/// "10.0.0.2:43120" or "[fd00::2]:43120"; an IPv4 peer on a dual-stack socket
/// (an IPv4-mapped IPv6 address) is shown as plain IPv4.
std::string address_text(const sockaddr* sa);

/// Wait until @p fd has @p events (POLLIN / POLLOUT) or the deadline passes.
/// @return false on timeout. @throws Error if poll() itself fails.
bool wait_fd(int fd, short events, Clock::time_point deadline);

/// Turn off Nagle's algorithm: the exchange is a few small messages, each answered.
void set_nodelay(int fd);

/// Make @p fd non-blocking (or blocking again with @p on = false).
void set_nonblocking(int fd, bool on = true);

/**
 * A TCP socket bound to @p port on all addresses: one IPv6 socket that also accepts IPv4
 * (IPV6_V6ONLY=0), or IPv4 only where IPv6 is missing. SO_REUSEADDR is set, so a restarted
 * server does not wait for the old connections' TIME_WAIT. Not yet listening.
 * @throws Error naming the port and the remedy if it is taken.
 */
Fd listen_socket(std::uint16_t port);

/// Owns the list getaddrinfo() returns.
using AddrList = std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)>;

/// Resolve @p host (an IPv4/IPv6 literal or a name) for a TCP connection to @p port.
/// @throws Error naming the host if it does not resolve.
AddrList resolve(const std::string& host, std::uint16_t port);

/**
 * One non-blocking connect() to @p ai, bounded by poll() to 1 s or @p deadline, whichever
 * comes first (a host that does not answer at all would otherwise block for minutes).
 * @param ai       one of resolve()'s addresses
 * @param deadline the caller's overall deadline
 * @param out      on success, the connected socket; it is still non-blocking
 * @return 0 on success, else the errno value (ECONNREFUSED, ETIMEDOUT ...)
 */
int connect_once(const addrinfo* ai, Clock::time_point deadline, Fd& out);

}  // namespace common::net
