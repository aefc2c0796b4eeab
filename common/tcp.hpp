/**
 * @file tcp.hpp
 * @brief The TCP connection that carries the out-of-band exchange (exchange.hpp).
 *
 * The server listens and accepts one peer; the client connects, retrying for a bounded
 * time because in practice the two sides start at nearly the same moment and the client
 * may be first. Every read and write has a deadline: a peer that stops talking produces
 * a clear error, never a hang.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/exchange.hpp"
#include "common/verbs_owners.hpp"

namespace common {

/// One received message: its validated header type and its body bytes.
struct Message {
  MessageType type = MessageType::hello;  ///< what it is
  std::vector<std::uint8_t> body;          ///< the body, length already checked
};

/// A connected TCP socket speaking the exchange format.
class Channel {
 public:
  /**
   * Listen on TCP @p port (all addresses, IPv6 and IPv4) and accept one peer.
   * @throws Error if the port is taken (with the remedy) or no peer came within @p timeout_s.
   */
  static Channel accept_one(std::uint16_t port, double timeout_s);

  /**
   * Connect to @p host : @p port, retrying refused or unreachable attempts until
   * @p timeout_s has passed (the server may still be starting).
   * @throws Error naming the address, the attempts made and the last errno.
   */
  static Channel connect_with_retry(const std::string& host, std::uint16_t port, double timeout_s);

  /// Send one encoded message. @throws Error if the peer is gone or the send times out.
  void send(const std::vector<std::uint8_t>& bytes, double timeout_s);

  /**
   * Receive one message: the header first (validated), then exactly its body.
   * Handles partial reads. @throws Error on a malformed header, a peer that closes
   * mid-message, or nothing arriving within @p timeout_s.
   */
  Message receive(double timeout_s);

  /// Receive a HELLO and decode it. An ERROR from the peer becomes an Error with its text.
  Hello receive_hello(double timeout_s);

  /// Receive a READY. An ERROR from the peer becomes an Error with its text.
  void receive_ready(double timeout_s);

  /// Receive a DONE. An ERROR from the peer becomes an Error with its text.
  void receive_done(double timeout_s);

  /// "10.0.0.2:43120", the peer's address.
  const std::string& peer() const { return peer_; }
  /// The socket, for poll(): it turns readable when the peer sends or closes.
  int fd() const { return fd_.get(); }

 private:
  Channel(Fd fd, std::string peer) : fd_(std::move(fd)), peer_(std::move(peer)) {}
  void read_exactly(std::uint8_t* out, std::size_t n, double timeout_s, const char* what);
  Message expect(MessageType type, double timeout_s);

  Fd fd_;
  std::string peer_;
};

}  // namespace common
