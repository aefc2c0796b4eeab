// libFuzzer target for lesson 05's framed messages over TLS: TlsChannel::receive
// (lessons/05-tls-psn/tls.cpp), which reads exactly a 12-byte header from the TLS stream,
// validates it with decode_header and then reads exactly its body, however the peer's
// records cut the stream; and the bodies lesson 05's server and client then decode
// (decode_qp_info for QP_INFO, decode_error for ERROR). Built and run by run_fuzz.sh with
// ASan + UBSan, so an out-of-bounds access, an overflow or a leak is a crash.
//
// The receiver is a real TlsChannel, made by TlsChannel::accept (the server's side of
// lesson 05) with the lesson's own TLS 1.3 context (make_tls_context, certificates made by
// scripts/make-certs.sh) on one end of a socketpair; the peer is an OpenSSL client on
// the other end, verifying the server's certificate against the same CA. The handshake
// happens once and the connection serves input after input, until an input ends it;
// then the next input connects again.
//
// One input:
//   byte 0    how the peer ends: 0xFD its last record is corrupted in transit (a bit of
//             its authentication tag flipped), 0xFE it sends close_notify, 0xFF its
//             socket closes without close_notify; any other value: it stays connected
//             and silent
//   byte 1    how the peer cuts the stream into TLS records (one SSL_write each):
//               bits 0-3 = 0   one record per message, as TlsChannel::send writes them
//                              (cut where each header's length field says)
//               1..14          records of 1..2^k bytes, sizes drawn from a xorshift
//                              generator seeded by bits 4-7
//               15             the whole stream in one SSL_write
//   bytes 2-  the plaintext stream the peer sends
// The peer's records are all on the socket before the receiver looks (one write(), so a
// run does not depend on timing), and the receiver calls receive() with a timeout of 0
// until it throws: the peer then has nothing more to say (or has closed).
//
// Besides "no crash", these must hold; a violation traps, which libFuzzer reports like a
// crash. A model of the framing, computed from the plaintext alone, says what the
// receiver must get, and the receiver must get exactly that:
//   - every whole message of the stream, in order, type and body equal to its bytes,
//     until the first header that decode_header refuses; that refusal is the error
//     receive() throws, naming the peer ("... (from fuzz-peer)");
//   - a stream that ends inside a header or a body ends with the error the ending calls
//     for (no data within the deadline; closed; closed without close_notify; a TLS error)
//     and says which part and how many of its bytes arrived ("5 of 12 bytes");
//   - a body is never longer than kMaxErrorText bytes;
//   - an accepted QP_INFO has its fields in range and re-encodes to exactly its bytes; an
//     accepted ERROR text has one printable character per byte.
// After an input that leaves the connection open, every byte the peer sent has been read
// (the receiver drains what follows a refused header), so inputs do not leak into each
// other.
//
// Built with -DFUZZ_SEED_MODE instead, the file is a tool that writes the seed corpus:
// `lesson05_framing_seed OUT_DIR` writes lesson 05's conversations made with the lesson's
// encoders (the client's QP_INFO and DONE; the server's QP_INFO, READY and DONE; its
// "server full" ERROR), cut into records in several ways, with each ending. run_fuzz.sh
// adds the QP_INFO messages of the recorded run in captures/05-tls-psn/
// (capture_seeds.py: the pcap holds only ciphertext, so from the logged values).
//
// Speed: an input that keeps the connection costs a few SSL_write and SSL_read calls; an
// input that ends it costs the next input a full TLS 1.3 handshake (ECDHE and an ECDSA
// P-256 signature, a millisecond or so).
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/errors.hpp"
#include "common/exchange.hpp"
#include "fuzz_support.hpp"
#include "tls.hpp"

#ifndef FUZZ_CERTS_DIR
#error "build with -DFUZZ_CERTS_DIR=\"<directory where scripts/make-certs.sh made the certificates>\""
#endif

namespace {

using Bytes = std::vector<std::uint8_t>;

constexpr const char* kPeer = "fuzz-peer";
constexpr std::uint8_t kCorrupt = 0xFD, kCloseNotify = 0xFE, kCloseSocket = 0xFF;

using fuzz_support::check;
using fuzz_support::printable;

/// A failure of the harness itself (no certificates, no socket): not a finding, so say
/// what it is and stop.
[[noreturn]] void setup_failed(const std::string& what) {
  std::fprintf(stderr, "lesson05_framing_fuzz: setup failed: %s\n", what.c_str());
  std::abort();
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// ---- the two ends of one connection -----------------------------------------------------

SSL_CTX* context(bool server) {
  static const lesson05::SslCtx server_ctx = [] {
    try {
      return lesson05::make_tls_context(true, {FUZZ_CERTS_DIR "/ca.pem", FUZZ_CERTS_DIR "/server.pem",
                                               FUZZ_CERTS_DIR "/server.key"}, false);
    } catch (const common::Error& e) {
      setup_failed(std::string(e.what()) + "; " + e.remedy());
    }
  }();
  static const lesson05::SslCtx client_ctx = [] {
    try {
      return lesson05::make_tls_context(false, {FUZZ_CERTS_DIR "/ca.pem", "", ""}, false);
    } catch (const common::Error& e) {
      setup_failed(std::string(e.what()) + "; " + e.remedy());
    }
  }();
  return server ? server_ctx.get() : client_ctx.get();
}

struct Connection {
  std::optional<lesson05::TlsChannel> receiver;  ///< the lesson's own channel
  lesson05::Ssl peer;                            ///< the sending side: a TLS 1.3 client
  common::Fd peer_fd;                            ///< its socket (closed after `peer` is freed)

  Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    peer.reset();  // SSL_free before its socket closes
    peer_fd.reset();
  }
};

/// A fresh socketpair and a full TLS 1.3 handshake over it: the receiver in
/// TlsChannel::accept, the peer in SSL_connect on a thread of its own meanwhile.
std::unique_ptr<Connection> connect() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) setup_failed("socketpair: " + common::errno_text(errno));
  auto c = std::make_unique<Connection>();
  common::Fd receiver_fd(sv[0]);
  c->peer_fd.reset(sv[1]);
  // Room for a whole input's records in the socket at once (4096 one-byte records are
  // about 94 KB): the peer writes them all before the receiver reads (see send_input).
  const int bytes = 1 << 20;
  if (::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0)
    ::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  c->peer.reset(SSL_new(context(false)));
  if (!c->peer || SSL_set_fd(c->peer.get(), sv[1]) != 1) setup_failed("SSL_new: " + lesson05::tls_error_text());

  int connected = 0;
  std::string peer_error;
  std::thread handshake([&] {
    connected = SSL_connect(c->peer.get());
    if (connected != 1) peer_error = lesson05::tls_error_text();
  });
  try {
    c->receiver.emplace(lesson05::TlsChannel::accept(context(true), std::move(receiver_fd), kPeer, 10.0));
  } catch (const common::Error& e) {
    handshake.join();
    setup_failed(std::string("TLS handshake: ") + e.what() + "; peer: " + peer_error);
  }
  handshake.join();
  if (connected != 1) setup_failed("SSL_connect: " + peer_error);
  // From now on the peer's records collect in memory; send_input() puts them on the
  // socket with one write().
  SSL_set0_wbio(c->peer.get(), BIO_new(BIO_s_mem()));
  return c;
}

// ---- one input ---------------------------------------------------------------------------

/// Where the peer cuts the stream into records: the end offset of each SSL_write.
std::vector<std::size_t> record_ends(std::span<const std::uint8_t> stream, std::uint8_t rule) {
  std::vector<std::size_t> ends;
  const unsigned k = rule & 0x0F;
  std::uint32_t x = 0x9E3779B9u ^ (rule >> 4);  // xorshift32 state, never 0
  for (std::size_t at = 0; at < stream.size();) {
    std::size_t n = stream.size() - at;
    if (k == 0) {
      // One message per record: its header's length field says where it ends.
      if (n >= common::kHeaderSize) {
        const std::uint64_t body = std::uint64_t{stream[at + 8]} << 24 | std::uint64_t{stream[at + 9]} << 16 |
                                   std::uint64_t{stream[at + 10]} << 8 | stream[at + 11];
        n = std::min<std::uint64_t>(n, common::kHeaderSize + body);
      }
    } else if (k < 15) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      n = std::min<std::size_t>(n, 1 + x % (std::size_t{1} << k));
    }
    at += n;
    ends.push_back(at);
  }
  return ends;
}

/// The peer sends the stream, record by record, then ends as asked. Returns how many
/// plaintext bytes the receiver can decrypt (all, but for a corrupted last record).
std::size_t send_input(Connection& c, std::span<const std::uint8_t> stream, std::uint8_t ending,
                       std::uint8_t rule) {
  SSL* ssl = c.peer.get();
  BIO* pending = SSL_get_wbio(ssl);
  std::size_t readable = stream.size();
  std::size_t at = 0;
  for (const std::size_t end : record_ends(stream, rule)) {
    if (SSL_write(ssl, stream.data() + at, static_cast<int>(end - at)) != static_cast<int>(end - at))
      setup_failed("SSL_write: " + lesson05::tls_error_text());
    readable = at;  // if this record is the last one and gets corrupted
    at = end;
  }
  if (ending == kCloseNotify && SSL_shutdown(ssl) < 0) setup_failed("SSL_shutdown: " + lesson05::tls_error_text());
  char* bytes = nullptr;
  const long length = BIO_get_mem_data(pending, &bytes);
  if (ending == kCorrupt && !stream.empty()) {
    bytes[length - 1] ^= 0x01;  // the last byte of the last record: its AEAD tag
  } else {
    readable = stream.size();
  }
  for (long sent = 0; sent < length;) {
    const ssize_t n = ::send(c.peer_fd.get(), bytes + sent, static_cast<std::size_t>(length - sent),
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) setup_failed("the socket does not take a whole input at once: " + common::errno_text(errno));
    sent += n;
  }
  (void)BIO_reset(pending);
  if (ending == kCloseSocket) ::shutdown(c.peer_fd.get(), SHUT_WR);
  return readable;
}

/// What the receiver must get from the first @p readable bytes of the stream.
struct Expected {
  std::vector<common::Message> messages;  ///< the whole messages, in order
  std::string refusal;                    ///< decode_header's reason for the header after them, or
  std::string part;                       ///< "message header" / "message body" the stream ends in
  std::size_t got = 0, need = 0;          ///< how much of that part there is
};

Expected model(std::span<const std::uint8_t> stream, std::size_t readable) {
  Expected e;
  for (std::size_t at = 0;;) {
    if (readable - at < common::kHeaderSize) {
      e.part = "message header";
      e.got = readable - at;
      e.need = common::kHeaderSize;
      return e;
    }
    common::Header h;
    try {
      h = common::decode_header(stream.subspan(at, common::kHeaderSize));
    } catch (const common::Error& err) {
      e.refusal = err.what();
      return e;
    }
    at += common::kHeaderSize;
    if (readable - at < h.body_length) {
      e.part = "message body";
      e.got = readable - at;
      e.need = h.body_length;
      return e;
    }
    e.messages.push_back({h.type, Bytes(stream.begin() + at, stream.begin() + at + h.body_length)});
    at += h.body_length;
  }
}

/// What lesson 05's server and client do with a body: decode_qp_info (both) and
/// decode_error (the client, for a refusal); the rest of the types carry no body.
void decode_body(const common::Message& m) {
  check(m.body.size() <= common::kMaxErrorText);
  try {
    if (m.type == common::MessageType::qp_info) {
      const common::QpInfo info = common::decode_qp_info(m.body);
      check(info.qp.qpn >= 2 && info.qp.qpn <= common::kMax24Bit && info.qp.psn <= common::kMax24Bit);
      check(info.qp.mtu >= IBV_MTU_256 && info.qp.mtu <= IBV_MTU_4096 && info.qp.msg_size >= 1);
      check(info.addr + info.length >= info.addr);
      check(info.length != 0 || (info.addr == 0 && info.rkey == 0));
      const Bytes again = common::encode_qp_info(info);
      check(Bytes(again.begin() + common::kHeaderSize, again.end()) == m.body);
    } else if (m.type == common::MessageType::error) {
      const std::string text = common::decode_error(m.body);
      check(text.size() == m.body.size());
      for (std::size_t i = 0; i < text.size(); ++i)
        check(static_cast<std::uint8_t>(text[i]) == (printable(m.body[i]) ? m.body[i] : '?'));
    }
  } catch (const common::Error& e) {
    fuzz_support::check_refusal(e);
  }
}

bool readable_now(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

std::unique_ptr<Connection> g_connection;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t ending = data[0], rule = data[1];
  const std::span<const std::uint8_t> stream(data + 2, size - 2);
  if (!g_connection) g_connection = connect();
  Connection& c = *g_connection;
  lesson05::TlsChannel& receiver = *c.receiver;

  const std::size_t readable = send_input(c, stream, ending, rule);
  const Expected want = model(stream, readable);
  std::size_t received = 0;
  std::string error;
  for (;;) {
    try {
      const common::Message m = receiver.receive(0);
      check(received < want.messages.size());
      check(m.type == want.messages[received].type && m.body == want.messages[received].body);
      ++received;
      decode_body(m);
    } catch (const common::Error& e) {
      error = e.what();
      check(!e.remedy().empty());
      break;
    }
  }
  check(received == want.messages.size());
  if (!want.refusal.empty()) {
    check(error == want.refusal + " (from " + kPeer + ")");
  } else {
    // The part the stream ends in, and how much of it arrived.
    check(contains(error, want.part));
    check(contains(error, std::to_string(want.got) + " of " + std::to_string(want.need) + " bytes"));
    const bool corrupted = ending == kCorrupt && !stream.empty();
    if (corrupted)
      check(error.rfind("TLS error receiving from " + std::string(kPeer), 0) == 0);
    else if (ending == kCloseSocket)
      check(contains(error, "closed the connection") && contains(error, "without TLS close_notify"));
    else if (ending == kCloseNotify)
      check(contains(error, "closed the connection") && !contains(error, "without TLS close_notify"));
    else
      check(error.rfind("no " + want.part + " from " + std::string(kPeer), 0) == 0);
  }

  if (ending == kCorrupt || ending == kCloseNotify || ending == kCloseSocket) {
    g_connection.reset();  // this conversation is over; the next input connects again
    return 0;
  }
  // The connection stays for the next input: read whatever followed a refused header,
  // the way a receiver that carried on would (each receive() takes at least a header's
  // worth, or the rest), until nothing is left in OpenSSL or in the socket.
  while (receiver.pending() || readable_now(receiver.fd())) {
    try {
      (void)receiver.receive(0);
    } catch (const common::Error&) {
      // a refused header or the end of the data: what is left is read on the next turn
    }
  }
  return 0;
}

#ifdef FUZZ_SEED_MODE
#include <filesystem>

namespace {

common::QpInfo info(std::uint32_t qpn, std::uint32_t psn, const char* ip, std::uint64_t addr, std::uint32_t rkey,
                    std::uint32_t length) {
  common::QpInfo i;
  i.qp.qpn = qpn;
  i.qp.psn = psn;
  i.qp.mtu = IBV_MTU_1024;
  i.qp.gid = fuzz_support::v4_mapped_gid(ip);
  i.qp.msg_size = 256;  // lesson 05's default slot size
  i.addr = addr;
  i.rkey = rkey;
  i.length = length;
  return i;
}

void write_seed(const std::filesystem::path& dir, const std::string& name, std::uint8_t ending, std::uint8_t rule,
                const std::vector<Bytes>& messages, std::size_t cut = 0) {
  Bytes seed{ending, rule};
  for (const Bytes& m : messages) seed.insert(seed.end(), m.begin(), m.end());
  seed.resize(seed.size() - cut);  // a peer that stops inside its last message
  fuzz_support::write_seed_file(dir, name, seed);
}

void write_seeds(const std::filesystem::path& dir) {
  using namespace common;
  const Bytes client = encode_qp_info(info(0x12, 0x22ace1, "10.0.0.2", 0, 0, 0));
  const Bytes server = encode_qp_info(info(0x12, 0x8ee2d2, "10.0.0.1", 0x7f5e44010d60, 0x504, 256));
  const Bytes full = encode_error("server full: 10 clients connected; try again later");
  // As the lesson sends them: one record per message, the connection left open.
  write_seed(dir, "client", 0, 0x00, {client, encode_done()});
  write_seed(dir, "server", 0, 0x00, {server, encode_ready(), encode_done()});
  write_seed(dir, "server-full", 0, 0x00, {full});
  // Records that cut headers and bodies: 1 or 2 bytes each, up to 16, up to 64, one.
  write_seed(dir, "server-tiny-records", 0, 0x01, {server, encode_ready(), encode_done()});
  write_seed(dir, "server-small-records", 0, 0x34, {server, encode_ready(), encode_done()});
  write_seed(dir, "client-records", 0, 0x76, {client, encode_done()});
  write_seed(dir, "server-one-record", 0, 0x0F, {server, encode_ready(), encode_done()});
  // Each ending, inside a body (the peer stops after 20 of QP_INFO's 52 bytes) and
  // between messages.
  write_seed(dir, "cut-close-notify", kCloseNotify, 0x00, {client}, 32);
  write_seed(dir, "cut-close-socket", kCloseSocket, 0x23, {client}, 32);
  write_seed(dir, "cut-silent", 0, 0x00, {client}, 32);
  write_seed(dir, "done-close-notify", kCloseNotify, 0x00, {server, encode_ready()});
  write_seed(dir, "corrupt-last", kCorrupt, 0x00, {server, encode_ready(), encode_done()});
  // A refusal in the middle: lesson 01's HELLO version byte set to 2.
  Bytes bad = encode_done();
  bad[4] = 2;
  write_seed(dir, "bad-version", 0, 0x00, {client, bad, encode_done()});
}

}  // namespace

int main(int argc, char** argv) { return fuzz_support::seed_main(argc, argv, "lesson05_framing_seed", write_seeds); }
#endif
