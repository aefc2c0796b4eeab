/**
 * @file userspace-roce/bench/control.hpp
 * @brief roce_bench: the TCP control connection (and the data connection of --transport
 *        tcp): bounded sends and receives, control messages, listening for one client and
 *        connecting with retries.
 */
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "messages.hpp"

namespace roce_bench {

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd, std::string peer = {}) : fd_(fd), peer_(std::move(peer)) {}
  Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)), peer_(std::move(o.peer_)) {}
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() { reset(); }
  void reset();
  int fd() const { return fd_; }
  /// Give up ownership of the descriptor.
  int release() { return std::exchange(fd_, -1); }
  const std::string& peer() const { return peer_; }

  /// Bound every blocking send/recv to @p seconds (SO_SNDTIMEO / SO_RCVTIMEO).
  void set_timeouts(double seconds);
  void set_nodelay(bool on);

  /// Send all @p n bytes (@p what names them in errors).
  void send_all(const void* data, std::size_t n, const char* what);
  /// Read exactly @p n bytes. @return false only if @p eof_ok and the peer closed first.
  bool recv_all(void* data, std::size_t n, const char* what, bool eof_ok = false);

  void send_msg(Msg type, const std::vector<std::uint8_t>& body = {});

  /// Receive one control message of type @p want; an ERROR from the peer becomes our failure.
  /// @param skip_progress  PROGRESS messages before it are read and dropped: each one
  ///                       restarts the --timeout wait (verify_rw's server waits that way)
  std::vector<std::uint8_t> expect_msg(Msg want, bool skip_progress = false);

  /// Without blocking: read every PROGRESS message already waiting. @return how many. Stops
  /// at any other message (left in place for expect_msg / check_peer_alive).
  int drain_progress();

  /// Without blocking: has the peer closed, or sent an ERROR? (Used while polling a CQ, so
  /// a failed peer stops us at once.) Any other pending message is left in place.
  void check_peer_alive();

  /// Best effort, never throws: tell the peer why we stop.
  void send_error_quietly(const std::string& text) noexcept;

 private:
  /// One message, whatever its type (an ERROR throws); @p want only names it in errors.
  std::pair<Msg, std::vector<std::uint8_t>> recv_msg(Msg want);

  int fd_ = -1;
  std::string peer_;
  double timeout_s_ = 0;
};

/// "10.0.0.2:43120" or "[fd00::2]:43120"; an IPv4 peer on a dual-stack socket as IPv4.
std::string address_text(const sockaddr* sa);

/// Listen on @p port (all addresses, IPv6 socket accepting IPv4 too, or IPv4 alone) and
/// accept one client within @p timeout_s.
Socket accept_one(std::uint16_t port, double timeout_s);

/// Connect to @p host:@p port, retrying (every 20 ms) while nobody listens yet, for at most
/// @p timeout_s. This retry is how a client started together with its server waits for it.
Socket connect_with_retry(const std::string& host, std::uint16_t port, double timeout_s);

/// Both sides: "I have all my completions", then wait for the peer to say the same. Only then
/// may either side destroy its QP: the peer may still need our ACK for its last message.
void done_barrier(Socket& ctrl);

}  // namespace roce_bench
