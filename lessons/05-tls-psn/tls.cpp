#include "tls.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <mutex>
#include <thread>

#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/net.hpp"

namespace lesson05 {
// Deadlines, poll, addresses, the listening socket: shared with tcp.cpp.
using namespace common;
using namespace common::net;

namespace {

// This process's limit on open descriptors (what `ulimit -n` shows), for messages.
std::string open_files_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return "unknown";
  return r.rlim_cur == RLIM_INFINITY ? "unlimited" : std::to_string(r.rlim_cur);
}

const char* kCertsRemedy =
    "make the lab certificates with scripts/make-certs.sh (into build/certs/), or point "
    "--certs / --ca / --cert / --key at the right files";

// Every error on OpenSSL's (per-thread) queue, oldest first, as text, and the SSL library's
// reason codes among them (to recognise "certificate verify failed", "wrong version
// number" ...). Empties the queue.
struct TlsErrors {
  std::string text;
  std::vector<int> ssl_reasons;
  bool has(int reason) const {
    return std::find(ssl_reasons.begin(), ssl_reasons.end(), reason) != ssl_reasons.end();
  }
  // An alert the peer sent us ("tlsv1 alert unknown ca"): OpenSSL reports alert N as
  // reason SSL_AD_REASON_OFFSET + N.
  bool peer_alert() const {
    return std::any_of(ssl_reasons.begin(), ssl_reasons.end(),
                       [](int r) { return r > SSL_AD_REASON_OFFSET; });
  }
};

TlsErrors drain_errors() {
  TlsErrors out;
  const char* data = nullptr;
  int flags = 0;
  while (const unsigned long e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) {
    if (ERR_GET_LIB(e) == ERR_LIB_SSL) out.ssl_reasons.push_back(ERR_GET_REASON(e));
    const char* reason = ERR_reason_error_string(e);
    char code[32];
    std::snprintf(code, sizeof code, "error %lx", e);
    std::string piece = reason != nullptr ? reason : code;
    if ((flags & ERR_TXT_STRING) != 0 && data != nullptr && *data != '\0')
      piece += std::string(" (") + data + ")";
    if (out.text.find(piece) != std::string::npos) continue;  // the same reason, one layer up
    out.text += (out.text.empty() ? "" : ": ") + piece;
  }
  if (out.text.empty()) out.text = "no OpenSSL error";
  return out;
}

void ignore_sigpipe_once() {
  // SSL_write() writes with plain send(), without MSG_NOSIGNAL, so writing to a peer that
  // has gone would kill the whole process with SIGPIPE. Ignore that signal, once for the
  // process, unless the program installed a handler of its own: such a write then fails
  // with EPIPE, which send() below reports as "the peer is gone".
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL)
      ::signal(SIGPIPE, SIG_IGN);
  });
}

// A missing or unreadable file gets the plain reason (ENOENT, EACCES) before OpenSSL's
// less direct one ("system lib").
void require_readable(const std::string& path, const std::string& what) {
  if (path.empty()) fail("no " + what + " given", kCertsRemedy);
  if (::access(path.c_str(), R_OK) != 0)
    fail("cannot read " + what + " " + path + ": " + errno_text(errno), kCertsRemedy);
}

// Called in the handshake when the server asks for a client certificate and this client
// has none: note it (connect() reports it) and send none.
int note_certificate_request(SSL* ssl, X509** /*cert*/, EVP_PKEY** /*key*/) {
  if (auto* asked = static_cast<bool*>(SSL_get_app_data(ssl))) *asked = true;
  return 0;
}

// "DNS:localhost, IP:10.0.0.1, ...": the names a certificate is valid for.
std::string names_in(X509* cert) {
  if (cert == nullptr) return "?";
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  std::string out;
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    std::string one;
    if (n->type == GEN_DNS) {
      one = "DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.dNSName)),
                                 static_cast<std::size_t>(ASN1_STRING_length(n->d.dNSName)));
    } else if (n->type == GEN_IPADD) {
      char text[INET6_ADDRSTRLEN] = "?";
      const int len = ASN1_STRING_length(n->d.iPAddress);
      if (len == 4 || len == 16)
        inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(n->d.iPAddress), text, sizeof text);
      one = std::string("IP:") + text;
    } else {
      continue;
    }
    out += (out.empty() ? "" : ", ") + one;
  }
  GENERAL_NAMES_free(names);
  return out.empty() ? "no subjectAltName" : out;
}

// What to do about a certificate that did not verify (X509_V_ERR_...).
std::string verify_remedy(long result) {
  switch (result) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return "the certificate is outside its validity period: make new ones with "
             "scripts/make-certs.sh, and check that both machines' clocks are right (date -u)";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return "connect with a name or address the server's certificate lists, or make a "
             "certificate that lists this one (scripts/make-certs.sh has the lab's)";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return "the certificate is not signed by the CA this side trusts (--ca): give both "
             "sides files from the same scripts/make-certs.sh run";
    case X509_V_ERR_INVALID_PURPOSE:
      return "the certificate is not for this role: the server presents server.pem "
             "(serverAuth), a --mutual client client.pem (clientAuth)";
    default:
      return "check the certificate with: openssl verify -CAfile ca.pem <certificate>";
  }
}

// The reasons OpenSSL gives when the bytes that arrive are not TLS records at all.
bool not_tls(const TlsErrors& errors) {
  for (const int r : {SSL_R_WRONG_VERSION_NUMBER, SSL_R_HTTP_REQUEST, SSL_R_HTTPS_PROXY_REQUEST,
                      SSL_R_UNKNOWN_PROTOCOL, SSL_R_PACKET_LENGTH_TOO_LONG,
                      SSL_R_RECORD_LENGTH_MISMATCH, SSL_R_LENGTH_TOO_SHORT, SSL_R_UNEXPECTED_RECORD})
    if (errors.has(r)) return true;
  return false;
}

// Explain a failed SSL_accept / SSL_connect and throw. @p err is SSL_get_error()'s value,
// @p saved_errno errno right after the call.
[[noreturn]] void handshake_failed(SSL* ssl, bool server, int err, int saved_errno,
                                   const std::string& peer, const std::string& host) {
  const TlsErrors errors = drain_errors();
  const long verify = SSL_get_verify_result(ssl);
  std::string what = "TLS handshake with " + peer + " failed: ";
  if (errors.has(SSL_R_CERTIFICATE_VERIFY_FAILED) && verify != X509_V_OK) {
    // The certificate the peer presented did not verify. OpenSSL says only "certificate
    // verify failed"; the verify result says why.
    what += std::string("certificate verify failed (") + X509_verify_cert_error_string(verify) + ")";
    if (server) what += " in the client's certificate";
    if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
      // The chain is there even though it did not verify; its first entry is the server's.
      STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
      X509* cert = chain != nullptr && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : nullptr;
      what += ": the certificate is not for '" + host + "'; it names " + names_in(cert);
    }
    fail(what, verify_remedy(verify));
  }
  if (errors.has(SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE))
    fail(what + "the client sent no certificate, and this server requires one (mutual TLS)",
         "start the client with --mutual, so that it presents client.pem");
  if (errors.has(SSL_R_UNSUPPORTED_PROTOCOL) || errors.has(SSL_R_TLSV1_ALERT_PROTOCOL_VERSION))
    fail(what + errors.text + ": the peer does not speak TLS 1.3",
         "this lesson accepts TLS 1.3 only; use the lesson's own client and server");
  if (not_tls(errors))
    fail(what + errors.text + ": is the peer not speaking TLS?",
         server ? "a client that is not TLS (plain TCP, an earlier lesson's client, HTTP) "
                  "connected to this port; use lesson 05's client"
                : "the server on that port is not TLS (an earlier lesson's server?); start "
                  "lesson 05's server there, or check -p");
  if (errors.peer_alert())
    fail(what + errors.text +
             (server ? ": the client did not accept our certificate" : ": the server did not accept us"),
         server ? "the client's log says why (a CA it does not trust, another name, expired?)"
                : "the server's log says why (does it require a client certificate, --mutual?)");
  if (err == SSL_ERROR_SYSCALL && saved_errno != 0)
    fail(what + errno_text(saved_errno), "the connection broke; check the peer's log");
  if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN ||
      errors.has(SSL_R_UNEXPECTED_EOF_WHILE_READING))
    fail(what + "the peer closed the connection during the handshake",
         server ? "the client gave up: its log says why (did it refuse our certificate?)"
                : "the server hung up: its log says why (is it lesson 05's server? does it "
                  "want a client certificate, --mutual?)");
  fail(what + errors.text, "check both sides' certificates and logs");
}

// Run SSL_accept / SSL_connect to the end on a non-blocking socket. OpenSSL says which
// way it is waiting (WANT_READ: the peer's next flight; WANT_WRITE: a full socket), and
// poll() waits for that, until the deadline.
void handshake(SSL* ssl, bool server, const std::string& peer, const std::string& host, double timeout_s) {
  const auto deadline = deadline_after(timeout_s);
  for (;;) {
    ERR_clear_error();
    errno = 0;
    const int rc = server ? SSL_accept(ssl) : SSL_connect(ssl);
    const int saved_errno = errno;
    if (rc == 1) return;
    const int err = SSL_get_error(ssl, rc);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
      handshake_failed(ssl, server, err, saved_errno, peer, host);
    if (!wait_fd(SSL_get_fd(ssl), err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
      const std::uint64_t got = BIO_number_read(SSL_get_rbio(ssl));
      fail("TLS handshake with " + peer + " timed out after " + seconds_text(timeout_s) +
               (got == 0 ? ": the peer sent nothing" : " (" + std::to_string(got) + " bytes arrived)"),
           server ? "a client connected but did not finish a TLS handshake: is it lesson 05's "
                    "client (not plain TCP)? Is it stuck?"
                  : "the server accepted the connection but did not finish a TLS handshake: "
                    "is it lesson 05's server? Is it stuck or overloaded?");
    }
  }
}

// Expect @p host in the server's certificate: an address among its IP subjectAltNames, a
// name among its DNS ones. OpenSSL checks this during the handshake, as part of
// verification, so a mismatch ends the handshake like an unknown CA does.
void expect_host(SSL* ssl, const std::string& host) {
  const std::string address = host.substr(0, host.find('%'));  // fe80::1%eth0: no zone
  in6_addr a6{};
  in_addr a4{};
  if (inet_pton(AF_INET, address.c_str(), &a4) == 1 || inet_pton(AF_INET6, address.c_str(), &a6) == 1) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), address.c_str()) != 1)
      fail("cannot check for address " + address + " in the certificate: " + tls_error_text(), "");
    return;  // SNI (below) carries names only, never addresses
  }
  if (SSL_set1_host(ssl, host.c_str()) != 1)
    fail("cannot check for name '" + host + "' in the certificate: " + tls_error_text(), "");
  // Server Name Indication: tells the server which name we want (in the clear, in the
  // ClientHello). Our server has one certificate, but this is what every client sends.
  if (SSL_set_tlsext_host_name(ssl, host.c_str()) != 1)
    fail("cannot set the TLS server name '" + host + "': " + tls_error_text(), "");
}

Ssl new_ssl(SSL_CTX* ctx, int fd) {
  ERR_clear_error();
  Ssl ssl{SSL_new(ctx)};
  if (!ssl) fail("SSL_new failed: " + tls_error_text(), "out of memory?");
  // A socket BIO that does not close the socket: Fd does that, after SSL_free.
  if (SSL_set_fd(ssl.get(), fd) != 1) fail("SSL_set_fd failed: " + tls_error_text(), "");
  return ssl;
}

// After SSL_ERROR_SSL or SSL_ERROR_SYSCALL OpenSSL forbids SSL_shutdown(); mark the
// connection as shut down both ways so close() sends nothing.
void mark_broken(SSL* ssl) { SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN); }

// Read exactly @p n bytes: SSL_read returns at most one record's worth at a time, and a
// record may hold part of a message or several messages.
void read_exactly(SSL* ssl, const std::string& peer, std::uint8_t* out, std::size_t n,
                  Clock::time_point deadline, double timeout_s, const char* what) {
  std::size_t got = 0;
  const auto progress = [&] {
    return std::to_string(got) + " of " + std::to_string(n) + " bytes of the " + what;
  };
  while (got < n) {
    ERR_clear_error();
    errno = 0;
    const int r = SSL_read(ssl, out + got, static_cast<int>(std::min<std::size_t>(n - got, INT_MAX)));
    const int saved_errno = errno;
    if (r > 0) {
      got += static_cast<std::size_t>(r);
      continue;
    }
    const int err = SSL_get_error(ssl, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait_fd(SSL_get_fd(ssl), err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline))
        fail("no " + std::string(what) + " from " + peer + " within " + seconds_text(timeout_s) +
                 " (" + std::to_string(got) + " of " + std::to_string(n) + " bytes arrived)",
             "the peer is stuck or gone; check its log");
      continue;
    }
    if (err == SSL_ERROR_ZERO_RETURN)  // close_notify: the peer ended the session properly
      fail("peer " + peer + " closed the connection after " + progress(),
           "the peer exited or refused us; check its log");
    const TlsErrors errors = drain_errors();
    mark_broken(ssl);
    if (errors.has(SSL_R_UNEXPECTED_EOF_WHILE_READING) || (err == SSL_ERROR_SYSCALL && saved_errno == 0))
      fail("peer " + peer + " closed the connection after " + progress() + " (without TLS close_notify)",
           "the peer exited or crashed; check its log");
    if (err == SSL_ERROR_SYSCALL)
      fail("receiving from " + peer + " failed after " + progress() + ": " + errno_text(saved_errno),
           "the connection broke; check the peer's log");
    if (errors.has(SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED))
      fail("peer " + peer + " ended the connection: " + errors.text +
               ": it requires a client certificate (mutual TLS)",
           "start the client with --mutual, so that it presents client.pem");
    fail("TLS error receiving from " + peer + " after " + progress() + ": " + errors.text,
         errors.peer_alert() ? "the peer refused us; its log says why" : "check the peer's log");
  }
}

}  // namespace

std::string tls_error_text() { return drain_errors().text; }

SslCtx make_tls_context(bool server, const TlsFiles& files, bool require_peer_cert) {
  ignore_sigpipe_once();
  ERR_clear_error();
  SslCtx ctx{SSL_CTX_new(server ? TLS_server_method() : TLS_client_method())};
  if (!ctx) fail("SSL_CTX_new failed: " + tls_error_text(), "out of memory, or a broken OpenSSL install");
  // TLS 1.3 only: no older versions to negotiate down to, and its handshake encrypts the
  // certificates too.
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) != 1)
    fail("this OpenSSL cannot do TLS 1.3: " + tls_error_text(), "install OpenSSL 1.1.1 or later");
  // SSL_write may return after writing part of a buffer (send() loops for the rest).
  // NO_AUTO_CHAIN: present only our own certificate (what the cert file holds). Without it
  // OpenSSL completes the chain from the CA file and sends the CA certificate along,
  // bytes the peer cannot use: it must already have that CA to trust it.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_NO_AUTO_CHAIN);
  // No session resumption: every connection makes a full handshake with full certificate
  // verification (a resumed session would rest on an earlier verification). So the
  // server sends no session tickets, and nobody caches sessions.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  if (server) SSL_CTX_set_num_tickets(ctx.get(), 0);

  // The CA whose signature we require on the peer's certificate.
  require_readable(files.ca, "CA certificate");
  if (SSL_CTX_load_verify_locations(ctx.get(), files.ca.c_str(), nullptr) != 1)
    fail("cannot load CA certificate " + files.ca + ": " + tls_error_text(), kCertsRemedy);

  // Our own certificate and key: always for a server, for a client only with --mutual.
  if (server || !files.cert.empty() || !files.key.empty()) {
    require_readable(files.cert, server ? "server certificate" : "client certificate");
    require_readable(files.key, "private key");
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), files.cert.c_str()) != 1)
      fail("cannot load certificate " + files.cert + ": " + tls_error_text(), kCertsRemedy);
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), files.key.c_str(), SSL_FILETYPE_PEM) != 1)
      fail("cannot load private key " + files.key + " (for " + files.cert + "): " + tls_error_text(),
           kCertsRemedy + std::string("; the key must be the one made with that certificate"));
    if (SSL_CTX_check_private_key(ctx.get()) != 1)
      fail("private key " + files.key + " does not match certificate " + files.cert + ": " +
               tls_error_text(),
           kCertsRemedy + std::string("; the key must be the one made with that certificate"));
  } else {
    // Without a certificate of our own, note whether the server asks for one (connect()
    // then says so, instead of failing later with a bare alert).
    SSL_CTX_set_client_cert_cb(ctx.get(), note_certificate_request);
  }

  if (!server) {
    // A client always verifies the server: chain to the CA, validity dates, and (set per
    // connection in expect_host) the name or address it connected to.
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else if (require_peer_cert) {
    // Mutual TLS: ask for a client certificate, verify it, and refuse a client without one.
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  } else {
    // Server without --mutual: do not ask the client for a certificate. That is ordinary
    // TLS (as on the web), not verification turned off: the client still verifies us, and
    // nothing is accepted from a client that sends a certificate anyway.
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  return ctx;
}

TlsListener::TlsListener(std::uint16_t port) : fd_(listen_socket(port)) {
  // Backlog 64: clients that connect at the same moment wait in the kernel's queue until
  // accept_tcp() takes them.
  check_rc(::listen(fd_.get(), 64), ("listen(TCP port " + std::to_string(port) + ")").c_str(), "");
  set_nonblocking(fd_.get());  // a client that leaves between poll() and accept4() must not block us
}

Fd TlsListener::accept_tcp(double timeout_s, std::string& peer) {
  Fd fd = try_accept_tcp(timeout_s, peer);
  if (fd.get() < 0) {
    sockaddr_storage self{};
    socklen_t len = sizeof self;
    ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&self), &len);
    const unsigned port = ntohs(reinterpret_cast<const sockaddr_in*>(&self)->sin_port);  // same offset in sockaddr_in6
    fail("no client connected to TCP port " + std::to_string(port) + " within " + seconds_text(timeout_s),
         "start the client with this host's address, or give the server more time");
  }
  return fd;
}

Fd TlsListener::try_accept_tcp(double timeout_s, std::string& peer) {
  const auto deadline = deadline_after(timeout_s);
  for (;;) {
    if (!wait_fd(fd_.get(), POLLIN, deadline)) return Fd{};
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    Fd fd{::accept4(fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC)};
    if (fd.get() >= 0) {
      set_nodelay(fd.get());
      peer = address_text(reinterpret_cast<sockaddr*>(&addr));
      return fd;
    }
    // Gone before we took it, a signal, or a network error that accept(2) says to treat
    // like EAGAIN (it belongs to that one connection): wait for the next one.
    const int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK || err == ECONNABORTED || err == EINTR || err == EPROTO ||
        err == ENETDOWN || err == ENOPROTOOPT || err == EHOSTDOWN || err == ENONET || err == EHOSTUNREACH ||
        err == EOPNOTSUPP || err == ENETUNREACH)
      continue;
    // EMFILE/ENFILE leave the connection queued: the listener stays readable, so the
    // caller must not simply try again at once. Every connection holds a descriptor until
    // its session ends, refused ones and silent ones (no handshake) for up to -t.
    fail("accept failed: " + errno_text(err),
         err == EMFILE ? "this process may open " + open_files_limit() +
                             " files (ulimit -n): raise that limit, or lower --max-clients and -t"
         : err == ENFILE ? "the whole system is out of file descriptors (sysctl fs.file-max): close programs or raise it"
                         : "see accept(2) for " + errno_text(err));
  }
}

TlsChannel::TlsChannel(Fd fd, Ssl ssl, std::string peer)
    : fd_(std::move(fd)), ssl_(std::move(ssl)), peer_(std::move(peer)) {}

TlsChannel TlsChannel::accept(SSL_CTX* ctx, Fd sock, std::string peer, double timeout_s) {
  set_nonblocking(sock.get());
  set_nodelay(sock.get());
  Ssl ssl = new_ssl(ctx, sock.get());
  handshake(ssl.get(), true, peer, "", timeout_s);
  return TlsChannel(std::move(sock), std::move(ssl), std::move(peer));
}

TlsChannel TlsChannel::connect(SSL_CTX* ctx, const std::string& host, std::uint16_t port, double timeout_s) {
  // TCP first, retrying while the server is still starting (as Channel::connect_with_retry).
  const AddrList addrs = resolve(host, port);
  const auto deadline = deadline_after(timeout_s);
  int attempts = 0, last_error = 0;
  std::string target = address_text(addrs->ai_addr);
  LOG(slow, "connecting to %s (retrying for up to %s)", target.c_str(), seconds_text(timeout_s).c_str());
  Fd fd;
  for (;;) {
    for (const addrinfo* ai = addrs.get(); ai != nullptr && fd.get() < 0; ai = ai->ai_next) {
      ++attempts;
      target = address_text(ai->ai_addr);
      last_error = connect_once(ai, deadline, fd);  // fd stays non-blocking
      if (last_error != 0)
        LOG_DETAIL(info, "connect attempt %d to %s: %s", attempts, target.c_str(), errno_text(last_error).c_str());
    }
    if (fd.get() >= 0) break;
    if (ms_left(deadline) == 0)
      fail("could not connect to " + target + " after " + std::to_string(attempts) + " attempts in " +
               seconds_text(timeout_s) + ": " + errno_text(last_error),
           "is the server running on that host and port (-p)? Is the address right? A firewall "
           "must let TCP port " + std::to_string(port) + " through");
    // Retry pause: the server is probably still starting. Bounded by the deadline above.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(200, ms_left(deadline))));
  }
  set_nodelay(fd.get());
  LOG(slow, "connected to %s after %d attempt(s); TLS handshake", target.c_str(), attempts);

  // Then TLS, with its own deadline: verification of the chain, the dates and the host.
  Ssl ssl = new_ssl(ctx, fd.get());
  expect_host(ssl.get(), host);
  bool asked_for_certificate = false;
  SSL_set_app_data(ssl.get(), &asked_for_certificate);
  handshake(ssl.get(), false, target, host, timeout_s);
  SSL_set_app_data(ssl.get(), nullptr);

  // The handshake cannot succeed with a certificate that did not verify (SSL_VERIFY_PEER);
  // say so explicitly anyway, as a reader of this code would check.
  if (const long v = SSL_get_verify_result(ssl.get()); v != X509_V_OK)
    fail("TLS handshake with " + target + " failed: certificate verify failed (" +
             X509_verify_cert_error_string(v) + ")",
         verify_remedy(v));
  if (SSL_get0_peer_certificate(ssl.get()) == nullptr)
    fail("TLS server " + target + " presented no certificate", "use lesson 05's server");
  // In TLS 1.3 the client finishes its handshake before the server has looked at the
  // client's certificate; a server that requires one would refuse us only on our first
  // read, with a bare alert. Our servers ask only when they require one, so say it now.
  if (asked_for_certificate)
    fail("TLS server " + target + " requires a client certificate (mutual TLS), and we have none",
         "start the client with --mutual, so that it presents client.pem");
  return TlsChannel(std::move(fd), std::move(ssl), target);
}

void TlsChannel::send(const std::vector<std::uint8_t>& bytes, double timeout_s) {
  const auto deadline = deadline_after(timeout_s);
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    ERR_clear_error();
    errno = 0;
    // With SSL_MODE_ENABLE_PARTIAL_WRITE, SSL_write returns after each record it wrote;
    // after WANT_WRITE it must be called again with the same bytes, which this loop does.
    const int n = SSL_write(ssl_.get(), bytes.data() + sent,
                            static_cast<int>(std::min<std::size_t>(bytes.size() - sent, INT_MAX)));
    const int saved_errno = errno;
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    const int err = SSL_get_error(ssl_.get(), n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait_fd(fd_.get(), err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline))
        fail("sending to " + peer_ + " timed out after " + seconds_text(timeout_s),
             "the peer stopped reading; check its log");
      continue;
    }
    if (err == SSL_ERROR_ZERO_RETURN)
      fail("sending to " + peer_ + " failed: the peer closed the connection",
           "the peer exited or refused us; check its log");
    const TlsErrors errors = drain_errors();
    mark_broken(ssl_.get());
    fail("sending to " + peer_ + " failed: " +
             (err == SSL_ERROR_SYSCALL && saved_errno != 0 ? errno_text(saved_errno) : errors.text),
         "the peer closed the connection; check its log");
  }
}

Message TlsChannel::receive(double timeout_s) {
  // One deadline for the whole message, header and body.
  const auto deadline = deadline_after(timeout_s);
  std::uint8_t head[kHeaderSize];
  read_exactly(ssl_.get(), peer_, head, sizeof head, deadline, timeout_s, "message header");
  Header h;
  try {
    h = decode_header(head);
  } catch (const Error& e) {
    fail(std::string(e.what()) + " (from " + peer_ + ")", e.remedy());
  }
  Message m;
  m.type = h.type;
  m.body.resize(h.body_length);  // bounded by decode_header (at most kMaxErrorText)
  read_exactly(ssl_.get(), peer_, m.body.data(), m.body.size(), deadline, timeout_s, "message body");
  return m;
}

void TlsChannel::close() {
  // One close_notify alert, so the peer can tell "done" from "connection cut". We do not
  // wait for the peer's own close_notify, and the socket is non-blocking: if it cannot
  // take the alert right now, the alert is dropped. Nothing after a failed handshake or a
  // broken connection (OpenSSL forbids it, see mark_broken).
  if (!ssl_) return;
  if (SSL_is_init_finished(ssl_.get()) && (SSL_get_shutdown(ssl_.get()) & SSL_SENT_SHUTDOWN) == 0)
    SSL_shutdown(ssl_.get());
  ERR_clear_error();
}

std::string TlsChannel::describe() const {
  return std::string(SSL_get_version(ssl_.get())) + " " + SSL_get_cipher_name(ssl_.get());
}

std::string TlsChannel::peer_subject() const {
  X509* cert = SSL_get1_peer_certificate(ssl_.get());  // a reference of our own: free it
  if (cert == nullptr) return "";
  std::string subject;
  if (BIO* bio = BIO_new(BIO_s_mem())) {
    // RFC 2253 style: "CN=rdma-lab-client"
    if (X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
      char* text = nullptr;
      const long len = BIO_get_mem_data(bio, &text);
      if (text != nullptr && len > 0) subject.assign(text, static_cast<std::size_t>(len));
    }
    BIO_free(bio);
  }
  X509_free(cert);
  return subject;
}

bool TlsChannel::pending() const { return SSL_pending(ssl_.get()) > 0; }

}  // namespace lesson05
