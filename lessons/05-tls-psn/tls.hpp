/**
 * @file lessons/05-tls-psn/tls.hpp
 * @brief TLS 1.3 (OpenSSL) for the out-of-band exchange: verified certificates, framed
 *        messages, deadlines on everything.
 *
 * Lesson 05 exchanges its QP details (QPN, random PSN, GID, buffer addr/rkey) over TLS
 * instead of plain TCP. What TLS adds is authentication and integrity of that exchange:
 * the client knows it talks to the server named in the certificate (and, with mutual TLS,
 * the server knows the client), and nobody on the path can read or change the PSNs and
 * the rkey. Verification is never turned off: a certificate that does not chain to the
 * configured CA, names another host, or has expired ends the handshake, before any RDMA
 * resource exists.
 *
 * Messages are the exchange format of exchange.hpp (12-byte header with magic, version,
 * type and length, then the body). SSL_read may return any part of a record stream, so
 * receive() reads exactly the header, then exactly the body, across as many reads as it
 * takes, each bounded by the deadline.
 */
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/exchange.hpp"
#include "common/tcp.hpp"
#include "common/verbs_owners.hpp"

namespace lesson05 {

using common::Deleter;
using common::Fd;
using common::Message;

/// Owns an SSL_CTX.
using SslCtx = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX, SSL_CTX_free, "SSL_CTX_free">>;
/// Owns an SSL (one connection).
using Ssl = std::unique_ptr<SSL, Deleter<SSL, SSL_free, "SSL_free">>;

/// Where the certificates are. Paths are PEM files (scripts/make-certs.sh makes them).
struct TlsFiles {
  std::string ca;    ///< the CA certificate that signs the peer's certificate (required)
  std::string cert;  ///< our certificate (server: required; client: only for mutual TLS)
  std::string key;   ///< our private key, matching cert
};

/**
 * A TLS 1.3-only context. Server: presents cert/key; with @p require_peer_cert also
 * demands and verifies a client certificate (mutual TLS). Client: always verifies the
 * server's certificate against the CA; presents cert/key if given.
 * @throws Error naming the file and OpenSSL's reason when a file is missing or does not
 *         load, or the key does not match the certificate.
 */
SslCtx make_tls_context(bool server, const TlsFiles& files, bool require_peer_cert);

/// OpenSSL's error queue as text ("certificate verify failed: certificate has expired"),
/// emptied; "no OpenSSL error" if there is none.
std::string tls_error_text();

/// A listening TCP socket (IPv6 and IPv4) from which TLS connections are accepted.
class TlsListener {
 public:
  /// Listen on @p port, all addresses. @throws Error if the port is taken.
  explicit TlsListener(std::uint16_t port);
  /**
   * Wait at most @p timeout_s for the next TCP connection. Returns the socket (the
   * handshake has not happened yet) and fills @p peer ("10.0.0.2:43120" or "[::1]:5000"),
   * or returns an empty Fd if no connection came.
   * @throws Error if accept() itself fails (EMFILE: this process is out of descriptors,
   *         with the remedy).
   */
  Fd try_accept_tcp(double timeout_s, std::string& peer);
  /// try_accept_tcp(), where no connection within @p timeout_s is an Error too.
  Fd accept_tcp(double timeout_s, std::string& peer);

 private:
  Fd fd_;
};

/// One TLS connection speaking the exchange format.
class TlsChannel {
 public:
  /**
   * Server side: run the TLS handshake on an accepted socket, at most @p timeout_s.
   * @throws Error naming the peer and OpenSSL's reason (a client with a bad or missing
   *         certificate under mutual TLS, a peer that is not speaking TLS, a timeout).
   */
  static TlsChannel accept(SSL_CTX* ctx, Fd socket, std::string peer, double timeout_s);
  /**
   * Client side: connect to @p host : @p port (IPv4, IPv6 or a name; retrying refused
   * attempts until @p timeout_s), then handshake and verify that the server's certificate
   * chains to the CA *and* names @p host (a DNS name or an IP address in its
   * subjectAltName).
   * @throws Error naming the reason (unknown CA, wrong name, expired, no server).
   */
  static TlsChannel connect(SSL_CTX* ctx, const std::string& host, std::uint16_t port, double timeout_s);

  /// Send one encoded message. @throws Error if the peer is gone or the send times out.
  void send(const std::vector<std::uint8_t>& bytes, double timeout_s);
  /**
   * Receive one message: the header (validated with decode_header), then exactly its body.
   * @throws Error on garbage, a truncated frame, a closed connection, or nothing within
   *         @p timeout_s.
   */
  Message receive(double timeout_s);
  /// Send close_notify (best effort, bounded by a short deadline).
  void close();

  /// The peer's address, e.g. "10.0.0.2:43120".
  const std::string& peer() const { return peer_; }
  /// "TLSv1.3 TLS_AES_256_GCM_SHA384", for the log.
  std::string describe() const;
  /// The peer certificate's subject ("CN=rdma-lab-client"), or "" if it sent none.
  std::string peer_subject() const;
  /// The socket (for poll()); readable when the peer sends or closes.
  int fd() const { return fd_.get(); }
  /// Whether OpenSSL holds already-decrypted bytes not yet returned by receive().
  bool pending() const;

 private:
  TlsChannel(Fd fd, Ssl ssl, std::string peer);
  Fd fd_;    ///< declared first: closed after the SSL object is freed
  Ssl ssl_;
  std::string peer_;
};

}  // namespace lesson05
