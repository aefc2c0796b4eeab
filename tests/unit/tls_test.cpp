// Lesson 05's TLS exchange (lessons/05-tls-psn/tls.hpp) over loopback, with the lab certificates from
// scripts/make-certs.sh: good handshakes by IPv4, IPv6 and name; messages that span TLS
// records or arrive a byte per record; and every way it must refuse: a server from another
// CA, the wrong name, an expired certificate, a missing client certificate under mutual
// TLS, a peer that is not speaking TLS, silence, a frame cut short, missing files.
// Each test is a server thread and a client in the test's own thread.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "common/errors.hpp"
#include "common/exchange.hpp"
#include "tls.hpp"

using Clock = std::chrono::steady_clock;

namespace {

std::string cert(const std::string& name) { return std::string(TLS_TEST_CERTS_DIR) + "/" + name; }

// The message of the common::Error that @p f throws (which must carry a remedy), or "".
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const common::Error& e) {
    EXPECT_FALSE(e.remedy().empty()) << "no remedy for: " << e.what();
    // SHOW_ERRORS=1 prints every error and remedy, to review their wording.
    if (std::getenv("SHOW_ERRORS")) std::fprintf(stderr, "ERROR: %s\n  remedy: %s\n", e.what(), e.remedy().c_str());
    return e.what();
  }
  ADD_FAILURE() << "no common::Error thrown";
  return "";
}

#define EXPECT_HAS(text, needle) \
  EXPECT_NE((text).find(needle), std::string::npos) << "'" << (text) << "' lacks '" << (needle) << "'"

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// The deadline of every wait that is expected to succeed: generous, so that a loaded
/// machine never turns a success into a timeout.
constexpr double kWait = 30.0;
/// How long past its own deadline a wait that must time out may take to give up: it
/// proves that it gives up, not how fast this machine is.
constexpr double kGiveUpSlack = 10.0;

lesson05::SslCtx server_ctx(const std::string& name = "server", bool mutual = false) {
  return lesson05::make_tls_context(true, {cert("ca.pem"), cert(name + ".pem"), cert(name + ".key")}, mutual);
}

lesson05::SslCtx client_ctx(const std::string& ca = "ca", bool with_cert = false) {
  lesson05::TlsFiles files{cert(ca + ".pem"), "", ""};
  if (with_cert) files = {cert(ca + ".pem"), cert("client.pem"), cert("client.key")};
  return lesson05::make_tls_context(false, files, false);
}

// A TlsListener on a free port (asked of the kernel with a throw-away socket).
struct Listening {
  std::unique_ptr<lesson05::TlsListener> listener;
  std::uint16_t port = 0;
};

Listening listen_anywhere() {
  for (int attempt = 0;; ++attempt) {
    common::Fd probe{::socket(AF_INET6, SOCK_STREAM, 0)};
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    socklen_t len = sizeof addr;
    if (::bind(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error("cannot find a free port");
    const std::uint16_t port = ntohs(addr.sin6_port);
    probe.reset();
    try {
      return {std::make_unique<lesson05::TlsListener>(port), port};
    } catch (const common::Error&) {
      if (attempt > 20) throw;  // someone else took it in between: try another
    }
  }
}

// The server side in its own thread: accept one TCP connection, the TLS handshake, then
// @p after. Its exceptions come out of the future's get().
std::future<void> serve(lesson05::TlsListener& listener, SSL_CTX* ctx,
                        std::function<void(lesson05::TlsChannel&)> after = {}, double handshake_s = kWait) {
  return std::async(std::launch::async, [&listener, ctx, after, handshake_s] {
    std::string peer;
    common::Fd fd = listener.accept_tcp(kWait, peer);
    lesson05::TlsChannel channel = lesson05::TlsChannel::accept(ctx, std::move(fd), peer, handshake_s);
    if (after) after(channel);
  });
}

// A plain TCP client (no TLS at all) connected to 127.0.0.1:port.
common::Fd raw_connect(std::uint16_t port) {
  common::Fd fd{::socket(AF_INET, SOCK_STREAM, 0)};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::runtime_error("connect to 127.0.0.1 failed");
  return fd;
}

common::Hello sample_hello(std::uint32_t psn) {
  common::Hello h;
  h.qpn = 0x11;
  h.psn = psn;
  h.mtu = IBV_MTU_1024;
  h.msg_size = 64;
  h.msg_count = 3;
  return h;
}

bool ipv6_loopback_works() {
  common::Fd fd{::socket(AF_INET6, SOCK_STREAM, 0)};
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  return fd.get() >= 0 && ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

}  // namespace

class Tls : public ::testing::Test {
 protected:
  // Once per test process (ctest runs each test in its own): the script does nothing when
  // the certificates are already there and current, and serialises parallel callers.
  static void SetUpTestSuite() {
    static const int rc =
        std::system("'" MAKE_CERTS_SCRIPT "' '" TLS_TEST_CERTS_DIR "' >/dev/null");
    certs_made_ = rc == 0;
  }
  void SetUp() override { ASSERT_TRUE(certs_made_) << MAKE_CERTS_SCRIPT " failed"; }

  // A client that connects to @p host, sends a HELLO, and expects an ERROR back, against
  // a server that checks the HELLO and answers.
  static void round_trip(const std::string& host, const std::string& peer_prefix) {
    const auto sctx = server_ctx();
    const auto cctx = client_ctx();
    Listening l = listen_anywhere();
    auto server = serve(*l.listener, sctx.get(), [](lesson05::TlsChannel& ch) {
      EXPECT_EQ(ch.peer_subject(), "");  // no client certificate without --mutual
      const common::Message m = ch.receive(kWait);
      ASSERT_EQ(m.type, common::MessageType::hello);
      EXPECT_EQ(common::decode_hello(m.body).psn, 0xabcdefu);
      ch.send(common::encode_error("server full: try again later"), kWait);
      ch.close();
    });
    lesson05::TlsChannel client = lesson05::TlsChannel::connect(cctx.get(), host, l.port, kWait);
    EXPECT_EQ(client.peer().rfind(peer_prefix, 0), 0u) << client.peer();
    EXPECT_HAS(client.describe(), "TLSv1.3 TLS_");
    EXPECT_EQ(client.peer_subject(), "CN=rdma-lab-server");
    client.send(common::encode_hello(sample_hello(0xabcdef)), kWait);
    const common::Message m = client.receive(kWait);
    ASSERT_EQ(m.type, common::MessageType::error);
    EXPECT_EQ(common::decode_error(m.body), "server full: try again later");
    EXPECT_FALSE(client.pending());
    client.close();
    server.get();
  }

  static bool certs_made_;
};

bool Tls::certs_made_ = false;

// --- handshakes that must work -----------------------------------------------------

TEST_F(Tls, HandshakeAndRoundTripOverIpv4) { round_trip("127.0.0.1", "127.0.0.1:"); }

TEST_F(Tls, HandshakeAndRoundTripOverIpv6) {
  if (!ipv6_loopback_works()) GTEST_SKIP() << "no IPv6 loopback (::1) on this host";
  round_trip("::1", "[::1]:");
}

TEST_F(Tls, HandshakeAndRoundTripByName) {
  // "localhost" is a DNS subjectAltName of server.pem; the resolver may give ::1 or 127.0.0.1.
  round_trip("localhost", "");
}

TEST_F(Tls, ManyMessagesAcrossRecordsAndOneBytePerRecordArriveWhole) {
  const auto sctx = server_ctx();
  const auto cctx = client_ctx();
  Listening l = listen_anywhere();
  // 200 messages in one send(): ~60 KB, so TLS records (16 KB at most) end in the middle
  // of headers and bodies. Then one HELLO written a byte at a time: 48 records of 1 byte.
  constexpr int kMessages = 200;
  const std::string longest(common::kMaxErrorText, 'x');
  auto server = serve(*l.listener, sctx.get(), [&](lesson05::TlsChannel& ch) {
    for (int i = 0; i < kMessages; ++i) {
      const common::Message m = ch.receive(kWait);
      if (i % 2 == 0) {
        ASSERT_EQ(m.type, common::MessageType::hello) << "message " << i;
        EXPECT_EQ(common::decode_hello(m.body).psn, static_cast<std::uint32_t>(i));
      } else {
        ASSERT_EQ(m.type, common::MessageType::error) << "message " << i;
        EXPECT_EQ(common::decode_error(m.body), longest);
      }
    }
    const common::Message last = ch.receive(kWait);
    ASSERT_EQ(last.type, common::MessageType::hello);
    EXPECT_EQ(common::decode_hello(last.body).psn, 0x123456u);
    ch.send(common::encode_ready(), kWait);
  });
  lesson05::TlsChannel client = lesson05::TlsChannel::connect(cctx.get(), "127.0.0.1", l.port, kWait);
  std::vector<std::uint8_t> all;
  for (int i = 0; i < kMessages; ++i) {
    const auto m = i % 2 == 0 ? common::encode_hello(sample_hello(static_cast<std::uint32_t>(i)))
                              : common::encode_error(longest);
    all.insert(all.end(), m.begin(), m.end());
  }
  ASSERT_GT(all.size(), 3u * 16384);
  client.send(all, kWait);
  for (const std::uint8_t byte : common::encode_hello(sample_hello(0x123456))) client.send({byte}, kWait);
  EXPECT_EQ(client.receive(kWait).type, common::MessageType::ready);
  server.get();
}

TEST_F(Tls, MutualTlsWithAClientCertificateSucceeds) {
  const auto sctx = server_ctx("server", true);
  const auto cctx = client_ctx("ca", true);
  Listening l = listen_anywhere();
  std::string subject;
  auto server = serve(*l.listener, sctx.get(), [&](lesson05::TlsChannel& ch) {
    subject = ch.peer_subject();
    EXPECT_EQ(ch.receive(kWait).type, common::MessageType::ready);
  });
  lesson05::TlsChannel client = lesson05::TlsChannel::connect(cctx.get(), "127.0.0.1", l.port, kWait);
  client.send(common::encode_ready(), kWait);
  server.get();
  EXPECT_EQ(subject, "CN=rdma-lab-client");
}

// --- certificates that must be refused ----------------------------------------------

TEST_F(Tls, ServerFromAnotherCaIsRefused) {
  // The client trusts only other-ca.pem; the server's certificate comes from ca.pem.
  const auto sctx = server_ctx();
  const auto cctx = client_ctx("other-ca");
  Listening l = listen_anywhere();
  auto server = serve(*l.listener, sctx.get());
  const std::string client_error =
      error_of([&] { lesson05::TlsChannel::connect(cctx.get(), "127.0.0.1", l.port, kWait); });
  EXPECT_HAS(client_error, "TLS handshake with 127.0.0.1:");
  EXPECT_HAS(client_error, "certificate verify failed (unable to get local issuer certificate)");
  // The client's alert reaches the server (or, if the client's close overtook it, the
  // server sees the connection end): either way the server's handshake fails.
  const std::string server_error = error_of([&] { server.get(); });
  EXPECT_HAS(server_error, "TLS handshake with 127.0.0.1:");
}

TEST_F(Tls, CertificateForAnotherNameIsRefused) {
  const auto sctx = server_ctx("wrongname-server");
  const auto cctx = client_ctx();
  Listening l = listen_anywhere();
  {
    auto server = serve(*l.listener, sctx.get());
    const std::string e = error_of([&] { lesson05::TlsChannel::connect(cctx.get(), "localhost", l.port, kWait); });
    EXPECT_HAS(e, "certificate verify failed (hostname mismatch)");
    EXPECT_HAS(e, "not for 'localhost'");
    EXPECT_HAS(e, "DNS:not-this-host.example");
    error_of([&] { server.get(); });
  }
  {
    auto server = serve(*l.listener, sctx.get());
    const std::string e = error_of([&] { lesson05::TlsChannel::connect(cctx.get(), "127.0.0.1", l.port, kWait); });
    EXPECT_HAS(e, "certificate verify failed (IP address mismatch)");
    EXPECT_HAS(e, "not for '127.0.0.1'");
    error_of([&] { server.get(); });
  }
}

TEST_F(Tls, ExpiredCertificateIsRefused) {
  const auto sctx = server_ctx("expired-server");
  const auto cctx = client_ctx();
  Listening l = listen_anywhere();
  auto server = serve(*l.listener, sctx.get());
  const std::string e = error_of([&] { lesson05::TlsChannel::connect(cctx.get(), "127.0.0.1", l.port, kWait); });
  EXPECT_HAS(e, "certificate verify failed (certificate has expired)");
  error_of([&] { server.get(); });
}

TEST_F(Tls, MutualTlsWithoutAClientCertificateFailsOnBothSides) {
  const auto sctx = server_ctx("server", true);
  const auto cctx = client_ctx();
  Listening l = listen_anywhere();
  auto server = serve(*l.listener, sctx.get());
  const std::string client_error =
      error_of([&] { lesson05::TlsChannel::connect(cctx.get(), "127.0.0.1", l.port, kWait); });
  EXPECT_HAS(client_error, "requires a client certificate");
  const std::string server_error = error_of([&] { server.get(); });
  EXPECT_HAS(server_error, "the client sent no certificate");
}

// --- peers that are not (good) TLS peers --------------------------------------------

TEST_F(Tls, PlainTcpGarbageFailsTheHandshakeAtOnce) {
  const auto sctx = server_ctx();
  Listening l = listen_anywhere();
  auto server = serve(*l.listener, sctx.get());
  const auto start = Clock::now();
  common::Fd raw = raw_connect(l.port);
  const char request[] = "GET / HTTP/1.0\r\n\r\n";
  ASSERT_EQ(::write(raw.get(), request, sizeof request - 1), static_cast<ssize_t>(sizeof request - 1));
  const std::string e = error_of([&] { server.get(); });
  EXPECT_HAS(e, "is the peer not speaking TLS?");
  EXPECT_LT(seconds_since(start), kWait / 2);  // refused for what it sent, not at the deadline
}

TEST_F(Tls, SilentTcpClientTimesOutTheHandshake) {
  const auto sctx = server_ctx();
  Listening l = listen_anywhere();
  auto server = serve(*l.listener, sctx.get(), {}, 0.5);
  const auto start = Clock::now();
  common::Fd raw = raw_connect(l.port);
  const std::string e = error_of([&] { server.get(); });
  EXPECT_HAS(e, "timed out after 0.5 s: the peer sent nothing");
  EXPECT_GE(seconds_since(start), 0.45);
  EXPECT_LT(seconds_since(start), 0.5 + kGiveUpSlack);
}

TEST_F(Tls, ClientFacingANonTlsServerSaysSo) {
  Listening l = listen_anywhere();
  auto fake = std::async(std::launch::async, [&] {
    std::string peer;
    common::Fd fd = l.listener->accept_tcp(kWait, peer);
    const char banner[] = "SSH-2.0-OpenSSH_9.2\r\n";  // a different protocol on that port
    (void)!::write(fd.get(), banner, sizeof banner - 1);
    char buf[512];
    (void)!::read(fd.get(), buf, sizeof buf);  // the ClientHello
  });
  const auto cctx = client_ctx();
  const std::string e = error_of([&] { lesson05::TlsChannel::connect(cctx.get(), "127.0.0.1", l.port, kWait); });
  EXPECT_HAS(e, "is the peer not speaking TLS?");
  fake.get();
}

TEST_F(Tls, AcceptTimesOutWithoutAClient) {
  Listening l = listen_anywhere();
  std::string peer;
  const auto start = Clock::now();
  const std::string e = error_of([&] { l.listener->accept_tcp(0.2, peer); });
  EXPECT_HAS(e, "no client connected to TCP port " + std::to_string(l.port) + " within 0.2 s");
  EXPECT_LT(seconds_since(start), 0.2 + kGiveUpSlack);
}

TEST_F(Tls, ConnectToNobodyGivesUpWithinTheDeadline) {
  std::uint16_t port = 0;
  {
    Listening l = listen_anywhere();  // a port that was free, and is again
    port = l.port;
  }
  const auto cctx = client_ctx();
  const auto start = Clock::now();
  const std::string e = error_of([&] { lesson05::TlsChannel::connect(cctx.get(), "127.0.0.1", port, 0.3); });
  EXPECT_HAS(e, "could not connect to 127.0.0.1:" + std::to_string(port));
  EXPECT_LT(seconds_since(start), 0.3 + kGiveUpSlack);
}

// --- after the handshake: silence, a frame cut short, garbage, a clean close ----------

TEST_F(Tls, ReceiveTimesOutWhenThePeerSendsNothing) {
  const auto sctx = server_ctx();
  const auto cctx = client_ctx();
  Listening l = listen_anywhere();
  auto server = serve(*l.listener, sctx.get(), [](lesson05::TlsChannel& ch) {
    const auto start = Clock::now();
    const std::string e = error_of([&] { ch.receive(0.3); });
    EXPECT_HAS(e, "no message header from 127.0.0.1:");
    EXPECT_HAS(e, "within 0.3 s (0 of 12 bytes arrived)");
    EXPECT_GE(seconds_since(start), 0.25);
    EXPECT_LT(seconds_since(start), 0.3 + kGiveUpSlack);
  });
  lesson05::TlsChannel client = lesson05::TlsChannel::connect(cctx.get(), "127.0.0.1", l.port, kWait);
  server.get();  // the client stays connected, silent, until the server has given up
}

TEST_F(Tls, PeerClosingMidFrameIsReported) {
  const auto sctx = server_ctx();
  const auto cctx = client_ctx();
  Listening l = listen_anywhere();
  const auto hello = common::encode_hello(sample_hello(1));
  {
    // 6 of the 12 header bytes, then a proper TLS close (close_notify).
    auto server = serve(*l.listener, sctx.get(), [](lesson05::TlsChannel& ch) {
      const std::string e = error_of([&] { ch.receive(kWait); });
      EXPECT_HAS(e, "closed the connection after 6 of 12 bytes of the message header");
    });
    lesson05::TlsChannel client = lesson05::TlsChannel::connect(cctx.get(), "127.0.0.1", l.port, kWait);
    client.send({hello.begin(), hello.begin() + 6}, kWait);
    client.close();
    server.get();
  }
  {
    // The header and 8 of 36 body bytes, then the socket just closes (no close_notify).
    auto server = serve(*l.listener, sctx.get(), [](lesson05::TlsChannel& ch) {
      const std::string e = error_of([&] { ch.receive(kWait); });
      EXPECT_HAS(e, "closed the connection after 8 of 36 bytes of the message body (without TLS close_notify)");
    });
    {
      lesson05::TlsChannel client = lesson05::TlsChannel::connect(cctx.get(), "127.0.0.1", l.port, kWait);
      client.send({hello.begin(), hello.begin() + 20}, kWait);
    }
    server.get();
  }
}

TEST_F(Tls, GarbageFrameInsideTlsIsRefused) {
  const auto sctx = server_ctx();
  const auto cctx = client_ctx();
  Listening l = listen_anywhere();
  auto server = serve(*l.listener, sctx.get(), [](lesson05::TlsChannel& ch) {
    const std::string e = error_of([&] { ch.receive(kWait); });
    EXPECT_HAS(e, "malformed exchange message: magic is 47 45 54 20");
    EXPECT_HAS(e, "(from 127.0.0.1:");
  });
  lesson05::TlsChannel client = lesson05::TlsChannel::connect(cctx.get(), "127.0.0.1", l.port, kWait);
  const std::string garbage = "GET / HTTP/1.0\r\n\r\n";
  client.send({garbage.begin(), garbage.end()}, kWait);
  server.get();
}

TEST_F(Tls, CloseNotifyEndsTheStreamBetweenMessages) {
  const auto sctx = server_ctx();
  const auto cctx = client_ctx();
  Listening l = listen_anywhere();
  auto server = serve(*l.listener, sctx.get(), [](lesson05::TlsChannel& ch) {
    ch.send(common::encode_ready(), kWait);
    ch.close();
  });
  lesson05::TlsChannel client = lesson05::TlsChannel::connect(cctx.get(), "127.0.0.1", l.port, kWait);
  EXPECT_EQ(client.receive(kWait).type, common::MessageType::ready);
  const std::string e = error_of([&] { client.receive(kWait); });
  EXPECT_HAS(e, "closed the connection after 0 of 12 bytes of the message header");
  EXPECT_EQ(e.find("without TLS close_notify"), std::string::npos) << e;
  server.get();
}

// --- files -----------------------------------------------------------------------------

TEST_F(Tls, MissingOrWrongFilesAreNamed) {
  const std::string missing = cert("no-such-dir/server.pem");
  std::string e = error_of([&] {
    lesson05::make_tls_context(true, {cert("ca.pem"), missing, cert("server.key")}, false);
  });
  EXPECT_HAS(e, "cannot read server certificate " + missing + ": ENOENT");

  e = error_of([&] { lesson05::make_tls_context(false, {cert("nope.pem"), "", ""}, false); });
  EXPECT_HAS(e, "cannot read CA certificate " + cert("nope.pem"));

  // A key is no CA certificate.
  e = error_of([&] { lesson05::make_tls_context(false, {cert("ca.key"), "", ""}, false); });
  EXPECT_HAS(e, "cannot load CA certificate " + cert("ca.key"));

  // The client's key with the server's certificate.
  e = error_of([&] {
    lesson05::make_tls_context(true, {cert("ca.pem"), cert("server.pem"), cert("client.key")}, false);
  });
  EXPECT_HAS(e, cert("client.key"));
  EXPECT_HAS(e, "key values mismatch");

  e = error_of([&] { lesson05::make_tls_context(true, {cert("ca.pem"), "", ""}, false); });
  EXPECT_HAS(e, "no server certificate given");
}
