/**
 * @file userspace-roce/bench/roce_bench.cpp
 * @brief RC WRITE bandwidth and SEND/RECV ping-pong latency, over verbs or over TCP, and a
 *        verified bulk WRITE + READ transfer over verbs.
 *
 * @code
 *   roce_bench server [options]          waits for one client, serves one measurement
 *   roce_bench client HOST [options]     connects, measures, prints one RESULT line
 * @endcode
 *
 * Two shapes, each over two transports (--transport verbs|tcp, --test write_bw|pingpong):
 *
 *  - write_bw: the client keeps --depth RDMA WRITEs of --size bytes (64 KiB) in flight
 *    towards the server's buffer and busy-polls its CQ; bandwidth = bytes / time from the
 *    first measured post to the last completion. The server's buffer has one slot per
 *    outstanding WRITE; every WRITE carries a pattern and its iteration number, and at the
 *    end a SEND hands the server the pattern's seed: the server checks every slot holds
 *    exactly the last WRITE aimed at it, so a transport that loses or misplaces data
 *    fails the run instead of reporting a number. Over TCP: the same chunks written to a
 *    socket, acknowledged by the server once all have arrived, then checked the same way.
 *  - pingpong: the client SENDs --size (64) bytes, the server echoes them; latency is the
 *    round trip / 2, median and p99 over --iters round trips. Every echo is compared with
 *    what was sent. Over TCP: a TCP_NODELAY socket, send then recv.
 *
 * And one correctness shape, verbs only (--test verify_rw), used by the tests under packet
 * loss: the client RDMA WRITEs --iters messages of --size bytes (default 16 x 1 MiB) into
 * consecutive regions of the server's buffer, --depth in flight; the bytes are a pattern of
 * (seed, iteration, offset). A SEND after the WRITEs tells the server they are complete and
 * gives it the seed: it checks its whole buffer and answers VERDICT over TCP. Then the
 * client RDMA READs the buffer back in --size chunks, min(depth, 16) in flight (its QP's
 * max_rd_atomic, the server's max_dest_rd_atomic), into a separate buffer and compares it
 * byte for byte with what it wrote. A difference on either side names the first differing
 * offset with the expected and the received byte, and both sides exit 1. Both print
 * @code
 *   RESULT transport=verbs test=verify_rw size=1048576 iters=16 bytes=16777216 write_gbytes_per_s=0.31 read_gbytes_per_s=0.50 verified=yes
 * @endcode
 * Meant to be run under faults (scripts/userspace-roce.sh --drop/--reorder/--duplicate):
 * RC must retransmit its way through; while the client waits for completions it sends
 * PROGRESS messages over TCP, so the server's --timeout counts from the client's last
 * completion, not from the start of a slow phase.
 *
 * The result goes to stdout as one machine-readable line, e.g.
 * @code
 *   RESULT transport=verbs test=write_bw size=65536 iters=5000 depth=16 mtu=4096 seconds=0.21 gbytes_per_s=1.56
 *   RESULT transport=tcp test=pingpong size=64 iters=20000 median_us=9.81 p99_us=14.20 min_us=8.90 mean_us=10.02
 * @endcode
 * (gbytes_per_s is 10^9 bytes per second.) Everything else (setup narrative, warnings,
 * errors with their remedy) goes to stderr.
 *
 * Verbs connection setup is done by hand, as lesson 01 does: the client opens its device
 * and creates its RC QP, connects over TCP (retrying until the server listens) and sends
 * a HELLO with the run's parameters and its QPN, PSN, GID and buffer address/rkey; the
 * server checks the parameters, builds its side, posts its RECVs, moves its QP
 * INIT -> RTR -> RTS and answers with its own HELLO; the client moves its QP to RTS and
 * starts. Every field crosses the wire in an explicit big-endian encoding (class Writer /
 * Reader below), never as a raw struct. The same TCP connection carries the end-of-run
 * messages (ACK, VERDICT, DONE) and an ERROR text if either side fails, so the peer
 * stops at once with the reason instead of waiting for its timeout.
 *
 * The client decides the run's shape; the server follows it, and any of --transport,
 * --test, --size, --iters, --warmup, --depth, --inline given to the server must match.
 *
 * Every wait is bounded by --timeout seconds without progress: TCP calls through
 * SO_RCVTIMEO/SO_SNDTIMEO, CQ polling by a clock check every few thousand empty polls.
 * --poll spin (default) busy-polls the CQ; --poll yield calls sched_yield() between empty
 * polls, for runtimes whose progress thread needs the CPU. The write_bw server, which only
 * waits, always yields (so do the verify_rw server's CQ waits).
 *
 * Self-contained on purpose: it links only libibverbs (and the header-only CLI11), so it
 * runs unchanged on kernel Soft-RoCE, on hardware, and on the userspace RoCE runtime.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

// ---------------------------------------------------------------------------------------
// Failing with the value seen and the remedy; logging to stderr.
// ---------------------------------------------------------------------------------------

/// The one exception: what failed (with values) and what to do about it.
class Error : public std::runtime_error {
 public:
  Error(const std::string& what_failed, std::string remedy)
      : std::runtime_error(what_failed), remedy_(std::move(remedy)) {}
  const std::string& remedy() const { return remedy_; }

 private:
  std::string remedy_;
};

[[noreturn]] void fail(const std::string& what_failed, const std::string& remedy) {
  throw Error(what_failed, remedy);
}

std::string errno_text(int err) {
  const char* name = strerrorname_np(err);
  return std::string(name != nullptr ? name : "errno " + std::to_string(err)) + " (" +
         std::strerror(err) + ")";
}

/// Verbs calls returning an int give the errno value itself; POSIX calls give -1 + errno.
void check_rc(int rc, const std::string& call, const std::string& remedy) {
  if (rc == 0) return;
  const int err = rc > 0 ? rc : (errno != 0 ? errno : EIO);
  fail(call + " failed: " + errno_text(err), remedy);
}

template <class T>
T* check_ptr(T* p, const std::string& call, const std::string& remedy) {
  if (p == nullptr) check_rc(-1, call, remedy);
  return p;
}

const char* g_role = "roce_bench";
bool g_verbose = false;

__attribute__((format(printf, 1, 2))) void say(const char* fmt, ...) {
  std::fprintf(stderr, "%s: ", g_role);
  va_list args;
  va_start(args, fmt);
  std::vfprintf(stderr, fmt, args);
  va_end(args);
  std::fputc('\n', stderr);
}
#define DETAIL(...) \
  do {              \
    if (g_verbose) say(__VA_ARGS__); \
  } while (0)

std::string fmt_double(double v, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, v);
  return text;
}

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// ---------------------------------------------------------------------------------------
// Run parameters.
// ---------------------------------------------------------------------------------------

enum class Transport : std::uint8_t { verbs = 1, tcp = 2 };
enum class Test : std::uint8_t { write_bw = 1, pingpong = 2, verify_rw = 3 };
enum class PollMode { spin, yield };

const char* transport_name(Transport t) { return t == Transport::verbs ? "verbs" : "tcp"; }
const char* test_name(Test t) {
  switch (t) {
    case Test::write_bw: return "write_bw";
    case Test::pingpong: return "pingpong";
    case Test::verify_rw: return "verify_rw";
  }
  return "?";
}

/// Upper bounds, so a typo cannot ask for a terabyte.
constexpr std::uint32_t kMaxSize = 64u << 20;
constexpr std::uint64_t kMaxSlotBytes = 1ull << 30;
constexpr std::uint32_t kMaxIters = 10'000'000;
constexpr std::uint32_t kMaxDepth = 1024;
/// Ping-pong: SENDs that may wait for their ACK, and RECVs kept posted, per side.
constexpr std::uint32_t kPingRing = 16;
constexpr std::uint16_t kDefaultPort = 18600;

struct Params {
  Transport transport = Transport::verbs;
  Test test = Test::write_bw;
  std::uint32_t size = 0;    ///< 0 = the test's default (65536 / 64 / 1 MiB)
  std::uint32_t iters = 0;   ///< 0 = the test's default
  std::uint32_t warmup = 0;  ///< iterations before the clock starts (not counted)
  bool warmup_set = false;
  std::uint32_t depth = 16;  ///< write_bw, verify_rw: WRITEs in flight (verify_rw READs: min(depth, 16))
  bool use_inline = false;   ///< pingpong over verbs: IBV_SEND_INLINE
  std::uint32_t mtu = 4096;  ///< the largest path MTU we accept (bytes)
  PollMode poll = PollMode::spin;
  // Local only (not sent to the peer).
  std::string ib_dev;
  int ib_port = 1;
  int gid_idx = 0;
  std::uint16_t port = kDefaultPort;
  double timeout_s = 15;

  void apply_defaults() {
    switch (test) {
      case Test::write_bw:
        if (size == 0) size = 65536;
        if (iters == 0) iters = 5000;
        if (!warmup_set) warmup = 200;
        break;
      case Test::pingpong:
        if (size == 0) size = 64;
        if (iters == 0) iters = 20000;
        if (!warmup_set) warmup = 1000;
        break;
      case Test::verify_rw:  // one pass, no warmup: 16 x 1 MiB = 16 MiB
        if (size == 0) size = 1u << 20;
        if (iters == 0) iters = 16;
        if (!warmup_set) warmup = 0;
        break;
    }
  }
  std::uint64_t total() const { return std::uint64_t{warmup} + iters; }
};

// ---------------------------------------------------------------------------------------
// The wire format: explicit big-endian fields, never a raw struct.
// ---------------------------------------------------------------------------------------

class Writer {
 public:
  Writer& u8(std::uint8_t v) { out_.push_back(v); return *this; }
  Writer& u16(std::uint16_t v) { return be(v, 2); }
  Writer& u32(std::uint32_t v) { return be(v, 4); }
  Writer& u64(std::uint64_t v) { return be(v, 8); }
  Writer& bytes(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
    return *this;
  }
  const std::vector<std::uint8_t>& data() const { return out_; }

 private:
  Writer& be(std::uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    return *this;
  }
  std::vector<std::uint8_t> out_;
};

class Reader {
 public:
  Reader(const std::uint8_t* p, std::size_t n, const char* what) : p_(p), n_(n), what_(what) {}
  std::uint8_t u8() { return static_cast<std::uint8_t>(be(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(be(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(be(4)); }
  std::uint64_t u64() { return be(8); }
  void bytes(void* out, std::size_t n) {
    need(n);
    std::memcpy(out, p_ + off_, n);
    off_ += n;
  }
  void expect_end() const {
    if (off_ != n_)
      fail(std::string(what_) + " has " + std::to_string(n_) + " bytes, expected " +
               std::to_string(off_),
           "both sides must run the same roce_bench build");
  }

 private:
  void need(std::size_t n) const {
    if (off_ + n > n_)
      fail(std::string(what_) + " is truncated: " + std::to_string(n_) + " bytes",
           "both sides must run the same roce_bench build");
  }
  std::uint64_t be(int n) {
    need(static_cast<std::size_t>(n));
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = v << 8 | p_[off_++];
    return v;
  }
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t off_ = 0;
  const char* what_;
};

/// Control messages on the TCP connection: [magic u32][type u8][0 u8][body length u16][body].
constexpr std::uint32_t kMagic = 0x52424e31;  // "RBN1"
constexpr std::size_t kHeaderBytes = 8;
enum class Msg : std::uint8_t { hello = 1, ack = 2, verdict = 3, done = 4, error = 5, check = 6, progress = 7 };

const char* msg_name(Msg m) {
  switch (m) {
    case Msg::hello: return "HELLO";
    case Msg::ack: return "ACK";
    case Msg::verdict: return "VERDICT";
    case Msg::done: return "DONE";
    case Msg::error: return "ERROR";
    case Msg::check: return "CHECK";
    case Msg::progress: return "PROGRESS";
  }
  return "?";
}

/// What one side tells the other about its QP and memory (zero for TCP).
struct QpInfo {
  std::uint32_t qpn = 0;
  std::uint32_t psn = 0;
  std::uint16_t lid = 0;
  std::uint32_t mtu = 0;   ///< the path MTU this side accepts: min(--mtu, port active_mtu), bytes
  ibv_gid gid{};
  std::uint64_t addr = 0;  ///< write_bw server: the slots the client WRITEs into
  std::uint32_t rkey = 0;
  std::uint32_t length = 0;
};

/// HELLO body: the run's parameters, then the sender's QP details.
std::vector<std::uint8_t> encode_hello(const Params& p, const QpInfo& q) {
  Writer w;
  w.u8(static_cast<std::uint8_t>(p.transport)).u8(static_cast<std::uint8_t>(p.test))
      .u8(p.use_inline ? 1 : 0).u8(0);
  w.u32(p.size).u32(p.iters).u32(p.warmup).u32(p.depth);
  w.u32(q.qpn).u32(q.psn).u16(q.lid).u32(q.mtu).bytes(q.gid.raw, sizeof q.gid.raw);
  w.u64(q.addr).u32(q.rkey).u32(q.length);
  return w.data();
}

void decode_hello(const std::vector<std::uint8_t>& body, Params& p, QpInfo& q) {
  Reader r(body.data(), body.size(), "HELLO");
  const std::uint8_t transport = r.u8(), test = r.u8(), flags = r.u8();
  r.u8();
  if (transport != 1 && transport != 2) fail("HELLO names transport " + std::to_string(transport),
                                             "both sides must run the same roce_bench build");
  if (test < 1 || test > 3) fail("HELLO names test " + std::to_string(test),
                                   "both sides must run the same roce_bench build");
  p.transport = static_cast<Transport>(transport);
  p.test = static_cast<Test>(test);
  p.use_inline = (flags & 1) != 0;
  p.size = r.u32();
  p.iters = r.u32();
  p.warmup = r.u32();
  p.depth = r.u32();
  q.qpn = r.u32();
  q.psn = r.u32();
  q.lid = r.u16();
  q.mtu = r.u32();
  r.bytes(q.gid.raw, sizeof q.gid.raw);
  q.addr = r.u64();
  q.rkey = r.u32();
  q.length = r.u32();
  r.expect_end();
}

// ---------------------------------------------------------------------------------------
// The data pattern: a slot's bytes depend on (seed, slot, offset), and the first and last
// 8 bytes carry the iteration number, so stale, lost or misplaced data never matches.
// ---------------------------------------------------------------------------------------

constexpr std::uint32_t mix32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

void fill_slot(std::uint8_t* p, std::uint32_t size, std::uint32_t seed, std::uint32_t slot) {
  for (std::uint32_t off = 0; off < size; off += 4) {
    const std::uint32_t w = mix32(seed + slot * 0x9e3779b9U + off / 4);
    for (std::uint32_t j = 0; j < 4 && off + j < size; ++j)
      p[off + j] = static_cast<std::uint8_t>(w >> (8 * j));
  }
}

void stamp(std::uint8_t* p, std::uint32_t size, std::uint64_t iteration) {
  for (std::uint32_t b = 0; b < 8 && b < size; ++b)
    p[b] = static_cast<std::uint8_t>(iteration >> (8 * (7 - b)));
  if (size >= 16)
    for (std::uint32_t b = 0; b < 8; ++b)
      p[size - 8 + b] = static_cast<std::uint8_t>(iteration >> (8 * (7 - b)));
}

/// Compare @p got with slot @p slot of iteration @p iteration; "" if equal, else what differs.
std::string check_slot(const std::uint8_t* got, std::uint32_t size, std::uint32_t seed,
                       std::uint32_t slot, std::uint64_t iteration, std::uint32_t mtu,
                       std::vector<std::uint8_t>& scratch) {
  scratch.resize(size);
  fill_slot(scratch.data(), size, seed, slot);
  stamp(scratch.data(), size, iteration);
  if (std::memcmp(got, scratch.data(), size) == 0) return {};
  std::uint32_t off = 0;
  while (got[off] == scratch[off]) ++off;
  std::uint32_t bad = 0;
  for (std::uint32_t i = 0; i < size; ++i) bad += got[i] != scratch[i];
  std::string text = "slot " + std::to_string(slot) + " (iteration " + std::to_string(iteration) +
                     "): first difference at byte " + std::to_string(off);
  if (mtu > 0) text += " (packet " + std::to_string(off / mtu) + " of the message)";
  char bytes[64];
  std::snprintf(bytes, sizeof bytes, ": got 0x%02x, expected 0x%02x; ", got[off], scratch[off]);
  return text + bytes + std::to_string(bad) + " of " + std::to_string(size) + " bytes differ";
}

// ---------------------------------------------------------------------------------------
// TCP: the control connection (and the data connection of --transport tcp).
// ---------------------------------------------------------------------------------------

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd, std::string peer = {}) : fd_(fd), peer_(std::move(peer)) {}
  Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)), peer_(std::move(o.peer_)) {}
  Socket& operator=(Socket&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
      peer_ = std::move(o.peer_);
    }
    return *this;
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() { reset(); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }
  /// Give up ownership of the descriptor.
  int release() { return std::exchange(fd_, -1); }
  const std::string& peer() const { return peer_; }

  /// Bound every blocking send/recv to @p seconds (SO_SNDTIMEO / SO_RCVTIMEO).
  void set_timeouts(double seconds) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(seconds);
    tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    timeout_s_ = seconds;
  }
  void set_nodelay(bool on) {
    const int v = on ? 1 : 0;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v);
  }

  void send_all(const void* data, std::size_t n, const char* what) {
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

  /// Read exactly @p n bytes. @return false only if @p eof_ok and the peer closed first.
  bool recv_all(void* data, std::size_t n, const char* what, bool eof_ok = false) {
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

  void send_msg(Msg type, const std::vector<std::uint8_t>& body = {}) {
    Writer w;
    w.u32(kMagic).u8(static_cast<std::uint8_t>(type)).u8(0).u16(static_cast<std::uint16_t>(body.size()));
    w.bytes(body.data(), body.size());
    send_all(w.data().data(), w.data().size(), msg_name(type));
  }

  /// Receive one control message of type @p want; an ERROR from the peer becomes our failure.
  /// @param skip_progress  PROGRESS messages before it are read and dropped: each one
  ///                       restarts the --timeout wait (verify_rw's server waits that way)
  std::vector<std::uint8_t> expect_msg(Msg want, bool skip_progress = false) {
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

  /// Without blocking: read every PROGRESS message already waiting. @return how many. Stops
  /// at any other message (left in place for expect_msg / check_peer_alive).
  int drain_progress() {
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

 private:
  /// One message, whatever its type (an ERROR throws); @p want only names it in errors.
  std::pair<Msg, std::vector<std::uint8_t>> recv_msg(Msg want) {
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

 public:

  /// Without blocking: has the peer closed, or sent an ERROR? (Used while polling a CQ, so
  /// a failed peer stops us at once.) Any other pending message is left in place.
  void check_peer_alive() {
    if (fd_ < 0) return;
    std::uint8_t head[kHeaderBytes];
    const ssize_t r = ::recv(fd_, head, sizeof head, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0)
      fail("the peer " + peer_ + " closed the control connection in the middle of the run",
           "the peer failed or was stopped: check its log");
    if (r == static_cast<ssize_t>(sizeof head) && head[4] == static_cast<std::uint8_t>(Msg::error))
      expect_msg(Msg::done);  // reads the ERROR and throws with its text
  }

  /// Best effort, never throws: tell the peer why we stop.
  void send_error_quietly(const std::string& text) noexcept {
    if (fd_ < 0) return;
    try {
      const std::string t = text.substr(0, 1000);
      send_msg(Msg::error, std::vector<std::uint8_t>(t.begin(), t.end()));
    } catch (...) {
    }
  }

  static std::string hex32(std::uint32_t v) {
    char t[16];
    std::snprintf(t, sizeof t, "%08x", v);
    return t;
  }

 private:
  int fd_ = -1;
  std::string peer_;
  double timeout_s_ = 0;
};

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

/// The end-of-run check request: the pattern seed and how many iterations ran.
struct CheckRequest {
  std::uint32_t seed = 0;
  std::uint64_t total = 0;
  std::uint32_t depth = 0;
  std::uint32_t size = 0;
};
constexpr std::uint32_t kCheckMagic = 0x5242434b;  // "RBCK"
constexpr std::uint32_t kCheckBytes = 24;

std::vector<std::uint8_t> encode_check(const CheckRequest& c) {
  Writer w;
  w.u32(kCheckMagic).u32(c.seed).u64(c.total).u32(c.depth).u32(c.size);
  return w.data();
}

CheckRequest decode_check(const std::uint8_t* p, std::size_t n) {
  Reader r(p, n, "check request");
  if (const std::uint32_t magic = r.u32(); magic != kCheckMagic)
    fail("the check request starts with 0x" + Socket::hex32(magic) + ", expected 0x" +
             Socket::hex32(kCheckMagic),
         "the final SEND arrived corrupted: the transport delivered wrong bytes");
  CheckRequest c;
  c.seed = r.u32();
  c.total = r.u64();
  c.depth = r.u32();
  c.size = r.u32();
  r.expect_end();
  return c;
}

/// Check every slot of a write_bw target buffer against @p c: slot s must hold the last
/// iteration i < total with i % depth == s. "" when all match, else the first difference.
std::string verify_slots(const std::uint8_t* slots, const CheckRequest& c, std::uint32_t mtu) {
  std::vector<std::uint8_t> scratch;
  const std::uint64_t used = std::min<std::uint64_t>(c.depth, c.total);
  for (std::uint32_t s = 0; s < used; ++s) {
    const std::uint64_t last = s + (c.total - 1 - s) / c.depth * c.depth;
    const std::string diff = check_slot(slots + std::size_t{s} * c.size, c.size, c.seed, s, last, mtu, scratch);
    if (!diff.empty()) return diff;
  }
  return {};
}

// ---------------------------------------------------------------------------------------
// Verbs: one RC endpoint, built with plain calls, torn down in reverse order by RAII.
// ---------------------------------------------------------------------------------------

void warn_rc(int rc, const char* call) {
  if (rc != 0) say("warning: %s failed: %s", call, errno_text(rc > 0 ? rc : errno).c_str());
}
struct DeviceListDeleter { void operator()(ibv_device** l) const { ibv_free_device_list(l); } };
struct ContextDeleter { void operator()(ibv_context* c) const { warn_rc(ibv_close_device(c), "ibv_close_device"); } };
struct PdDeleter { void operator()(ibv_pd* p) const { warn_rc(ibv_dealloc_pd(p), "ibv_dealloc_pd"); } };
struct MrDeleter { void operator()(ibv_mr* m) const { warn_rc(ibv_dereg_mr(m), "ibv_dereg_mr"); } };
struct CqDeleter { void operator()(ibv_cq* c) const { warn_rc(ibv_destroy_cq(c), "ibv_destroy_cq"); } };
struct QpDeleter { void operator()(ibv_qp* q) const { warn_rc(ibv_destroy_qp(q), "ibv_destroy_qp"); } };
struct FreeDeleter { void operator()(std::uint8_t* p) const { std::free(p); } };

ibv_mtu mtu_enum(std::uint32_t bytes) {
  switch (bytes) {
    case 256: return IBV_MTU_256;
    case 512: return IBV_MTU_512;
    case 1024: return IBV_MTU_1024;
    case 2048: return IBV_MTU_2048;
    default: return IBV_MTU_4096;
  }
}
std::uint32_t mtu_bytes(ibv_mtu mtu) {
  return mtu >= IBV_MTU_256 && mtu <= IBV_MTU_4096 ? 128u << mtu : 0u;
}

std::string gid_text(const ibv_gid& gid) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, gid.raw, text, sizeof text);
  return text;
}

/// What a send/recv queue and the memory of one endpoint must hold.
struct EndpointShape {
  std::size_t buffer_bytes = 0;
  bool remote_write = false;  ///< the peer WRITEs into our buffer (write_bw, verify_rw server)
  bool remote_read = false;   ///< the peer READs our buffer (verify_rw server)
  std::uint32_t send_wr = 1;
  std::uint32_t recv_wr = 1;
  /// max_rd_atomic and max_dest_rd_atomic: READs this side may have outstanding as
  /// requester, and answers in flight as responder (1 unless the test READs)
  std::uint8_t rd_atomic = 1;
};

/// Members in creation order: C++ destroys them in reverse, the order verbs requires.
struct Endpoint {
  std::unique_ptr<ibv_device*, DeviceListDeleter> devices;
  std::unique_ptr<ibv_context, ContextDeleter> ctx;
  std::uint8_t port = 1;
  ibv_port_attr port_attr{};
  int gid_index = 0;
  ibv_gid gid{};
  std::uint32_t mtu_offer = 0;  ///< min(--mtu, active_mtu), bytes
  std::uint32_t path_mtu = 0;   ///< agreed with the peer at RTR, bytes
  std::unique_ptr<ibv_pd, PdDeleter> pd;
  std::unique_ptr<std::uint8_t, FreeDeleter> buffer;
  std::size_t buffer_bytes = 0;
  std::unique_ptr<ibv_mr, MrDeleter> mr;
  std::unique_ptr<ibv_cq, CqDeleter> cq;  ///< one CQ for both queues
  std::unique_ptr<ibv_qp, QpDeleter> qp;
  std::uint32_t psn = 0;
  bool use_inline = false;
  std::uint8_t rd_atomic = 1;  ///< max_rd_atomic = max_dest_rd_atomic at RTR/RTS

  std::uint8_t* buf() const { return buffer.get(); }

  QpInfo info() const {
    QpInfo q;
    q.qpn = qp->qp_num;
    q.psn = psn;
    q.lid = port_attr.lid;
    q.mtu = mtu_offer;
    q.gid = gid;
    return q;
  }
};

Endpoint open_endpoint(const Params& p, const EndpointShape& shape) {
  Endpoint ep;
  ep.port = static_cast<std::uint8_t>(p.ib_port);
  ep.gid_index = p.gid_idx;

  int count = 0;
  ep.devices.reset(ibv_get_device_list(&count));
  if (ep.devices == nullptr || count == 0)
    fail(ep.devices == nullptr ? "ibv_get_device_list failed: " + errno_text(errno)
                               : std::string("no RDMA device found (ibv_get_device_list returned 0)"),
         "run under scripts/userspace-roce.sh (the userspace runtime), or on a host with an "
         "RDMA device (Soft-RoCE: scripts/softroce-setup.sh; the lab VMs: scripts/lab/lab.sh)");
  ibv_device* device = nullptr;
  std::string present;
  for (int i = 0; i < count; ++i) {
    const char* name = ibv_get_device_name(ep.devices.get()[i]);
    present += (i ? ", " : "") + std::string(name);
    if (p.ib_dev.empty() || p.ib_dev == name) {
      device = ep.devices.get()[i];
      break;
    }
  }
  if (device == nullptr)
    fail("RDMA device '" + p.ib_dev + "' not found; devices present: " + present,
         "pass one of them with -d, or leave -d out to take the first");
  ep.ctx.reset(check_ptr(ibv_open_device(device), "ibv_open_device",
                         "check permissions on /dev/infiniband/uverbs*"));

  check_rc(ibv_query_port(ep.ctx.get(), ep.port, &ep.port_attr), "ibv_query_port(port " + std::to_string(p.ib_port) + ")",
           "the port (-i) must exist on the device: see `ibv_devinfo`");
  if (ep.port_attr.state != IBV_PORT_ACTIVE)
    fail("port " + std::to_string(p.ib_port) + " of " + ibv_get_device_name(device) + " is in state " +
             std::to_string(ep.port_attr.state) + ", not ACTIVE (4)",
         "bring the network interface under the RDMA device up");
  check_rc(ibv_query_gid(ep.ctx.get(), ep.port, p.gid_idx, &ep.gid),
           "ibv_query_gid(index " + std::to_string(p.gid_idx) + ")",
           "pass a GID index that exists with -g (see `ibv_devinfo -v`)");
  static const ibv_gid zero{};
  if (std::memcmp(ep.gid.raw, zero.raw, sizeof zero.raw) == 0)
    fail("GID index " + std::to_string(p.gid_idx) + " of port " + std::to_string(p.ib_port) + " is empty",
         "pass a filled GID index with -g (`ibv_devinfo -v` lists them; on rxe the RoCE v2 "
         "IPv4 GID is usually 1, on the userspace runtime it is 0)");
  const std::uint32_t active = mtu_bytes(ep.port_attr.active_mtu);
  ep.mtu_offer = std::min(p.mtu, active);
  if (active < p.mtu)
    say("note: port active_mtu is %u, below --mtu %u: offering %u", active, p.mtu, ep.mtu_offer);
  say("device %s port %u GID[%d] %s, mtu offer %u", ibv_get_device_name(device), p.ib_port,
      p.gid_idx, gid_text(ep.gid).c_str(), ep.mtu_offer);

  ep.pd.reset(check_ptr(ibv_alloc_pd(ep.ctx.get()), "ibv_alloc_pd", "the device ran out of resources"));

  const long page = sysconf(_SC_PAGESIZE);
  const std::size_t rounded = (shape.buffer_bytes + page - 1) / page * page;
  ep.buffer.reset(static_cast<std::uint8_t*>(std::aligned_alloc(page, rounded)));
  if (!ep.buffer) fail("out of memory for a " + std::to_string(rounded) + "-byte buffer",
                       "use a smaller --size or --depth");
  std::memset(ep.buffer.get(), 0, rounded);
  ep.buffer_bytes = shape.buffer_bytes;
  // The access flags are literal constants on purpose: with a constant, verbs.h's
  // ibv_reg_mr macro calls the classic ibv_reg_mr symbol, not ibv_reg_mr_iova2.
  const std::string mr_remedy = "registration pins memory against RLIMIT_MEMLOCK: raise it "
                                "(`ulimit -l unlimited`) or run as root";
  if (shape.remote_write && shape.remote_read)
    ep.mr.reset(check_ptr(ibv_reg_mr(ep.pd.get(), ep.buffer.get(), shape.buffer_bytes,
                                     IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ),
                          "ibv_reg_mr(" + std::to_string(shape.buffer_bytes) +
                              " bytes, LOCAL_WRITE|REMOTE_WRITE|REMOTE_READ)", mr_remedy));
  else if (shape.remote_write)
    ep.mr.reset(check_ptr(ibv_reg_mr(ep.pd.get(), ep.buffer.get(), shape.buffer_bytes,
                                     IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE),
                          "ibv_reg_mr(" + std::to_string(shape.buffer_bytes) + " bytes, LOCAL_WRITE|REMOTE_WRITE)", mr_remedy));
  else
    ep.mr.reset(check_ptr(ibv_reg_mr(ep.pd.get(), ep.buffer.get(), shape.buffer_bytes, IBV_ACCESS_LOCAL_WRITE),
                          "ibv_reg_mr(" + std::to_string(shape.buffer_bytes) + " bytes, LOCAL_WRITE)", mr_remedy));

  const int cqe = static_cast<int>(shape.send_wr + shape.recv_wr + 1);
  ep.cq.reset(check_ptr(ibv_create_cq(ep.ctx.get(), cqe, nullptr, nullptr, 0),
                        "ibv_create_cq(" + std::to_string(cqe) + " entries)",
                        "the device ran out of CQs or the depth is above its limit: lower --depth"));

  ibv_qp_init_attr init{};
  init.send_cq = ep.cq.get();
  init.recv_cq = ep.cq.get();
  init.qp_type = IBV_QPT_RC;
  init.sq_sig_all = 0;  // every WR we post asks for its completion with IBV_SEND_SIGNALED
  init.cap.max_send_wr = shape.send_wr;
  init.cap.max_recv_wr = shape.recv_wr;
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  // Inline SENDs only in ping-pong (--inline); the write_bw WRITEs are never inline.
  const bool want_inline = p.use_inline && p.test == Test::pingpong;
  init.cap.max_inline_data = want_inline ? p.size : 0;
  ep.qp.reset(check_ptr(ibv_create_qp(ep.pd.get(), &init), "ibv_create_qp(RC, send_wr " +
                            std::to_string(shape.send_wr) + ", recv_wr " + std::to_string(shape.recv_wr) +
                            ", inline " + std::to_string(init.cap.max_inline_data) + ")",
                        "a queue depth or the inline size is above the device's limits "
                        "(`ibv_devinfo -v`): lower --depth, or drop --inline"));
  if (want_inline && init.cap.max_inline_data < p.size)
    fail("--inline asks for " + std::to_string(p.size) + " inline bytes, the QP offers " +
             std::to_string(init.cap.max_inline_data),
         "drop --inline or use a smaller --size");
  ep.use_inline = want_inline;
  ep.rd_atomic = shape.rd_atomic;
  std::random_device entropy;
  ep.psn = entropy() & 0xffffffu;

  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_INIT;
  attr.pkey_index = 0;
  attr.port_num = ep.port;
  attr.qp_access_flags = (shape.remote_write ? IBV_ACCESS_REMOTE_WRITE : 0) |
                         (shape.remote_read ? IBV_ACCESS_REMOTE_READ : 0);
  check_rc(ibv_modify_qp(ep.qp.get(), &attr, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS),
           "ibv_modify_qp(RESET->INIT)", "check the port number (-i)");
  DETAIL("QP 0x%06x in INIT, first PSN 0x%06x", ep.qp->qp_num, ep.psn);
  return ep;
}

/// INIT -> RTR -> RTS towards @p remote. The path MTU is the smaller of both offers, so the
/// two sides agree without another round trip. RoCE: every packet carries a GRH.
void connect_endpoint(Endpoint& ep, const QpInfo& remote) {
  ep.path_mtu = std::min(ep.mtu_offer, remote.mtu);
  if (mtu_bytes(mtu_enum(ep.path_mtu)) != ep.path_mtu)
    fail("the peer offers path MTU " + std::to_string(remote.mtu) + " bytes",
         "both sides must run the same roce_bench build");
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_RTR;
  attr.path_mtu = mtu_enum(ep.path_mtu);
  attr.dest_qp_num = remote.qpn;
  attr.rq_psn = remote.psn;
  // READs we answer at once: 1 (what every example uses) unless the test READs (verify_rw).
  attr.max_dest_rd_atomic = ep.rd_atomic;
  attr.min_rnr_timer = 12;      // 0.64 ms: told to a sender we NAK for lack of a RECV
  attr.ah_attr.port_num = ep.port;
  attr.ah_attr.dlid = remote.lid;  // InfiniBand only; RoCE routes by GID
  attr.ah_attr.sl = 0;
  attr.ah_attr.is_global = 1;
  attr.ah_attr.grh.dgid = remote.gid;
  attr.ah_attr.grh.sgid_index = static_cast<std::uint8_t>(ep.gid_index);
  attr.ah_attr.grh.hop_limit = 64;
  attr.ah_attr.grh.traffic_class = 0;
  attr.ah_attr.grh.flow_label = 0;
  check_rc(ibv_modify_qp(ep.qp.get(), &attr,
                         IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                             IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER),
           "ibv_modify_qp(INIT->RTR, peer QPN 0x" + Socket::hex32(remote.qpn) + ", GID " +
               gid_text(remote.gid) + ", MTU " + std::to_string(ep.path_mtu) + ")",
           "EINVAL: a GID index of the wrong kind (-g) or an MTU above the port's; ETIMEDOUT: "
           "the peer's GID (IP address) does not answer ARP");
  attr = ibv_qp_attr{};
  attr.qp_state = IBV_QPS_RTS;
  attr.sq_psn = ep.psn;
  attr.timeout = 14;    // 4.096 us * 2^14 = 67 ms before a retransmission
  attr.retry_cnt = 7;
  attr.rnr_retry = 7;   // 7 = retry forever after an RNR NAK
  attr.max_rd_atomic = ep.rd_atomic;  // READs we may have outstanding
  check_rc(ibv_modify_qp(ep.qp.get(), &attr,
                         IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                             IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC),
           "ibv_modify_qp(RTR->RTS)", "check the device's log (dmesg)");
  say("QP 0x%06x (PSN 0x%06x) -> peer QP 0x%06x GID %s (PSN 0x%06x), path MTU %u: RTS",
      ep.qp->qp_num, ep.psn, remote.qpn, gid_text(remote.gid).c_str(), remote.psn, ep.path_mtu);
}

constexpr std::uint64_t kRecvTag = 1ull << 63;

void post_recv(Endpoint& ep, std::uint8_t* where, std::uint32_t length, std::uint64_t wr_id) {
  ibv_sge sge{};
  sge.addr = reinterpret_cast<std::uintptr_t>(where);
  sge.length = length;
  sge.lkey = ep.mr->lkey;
  ibv_recv_wr wr{};
  wr.wr_id = wr_id;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  check_rc(ibv_post_recv(ep.qp.get(), &wr, &bad), "ibv_post_recv", "the receive queue is full or the QP is not ready");
}

void post_send(Endpoint& ep, const std::uint8_t* from, std::uint32_t length, std::uint64_t wr_id, bool inline_ok) {
  ibv_sge sge{};
  sge.addr = reinterpret_cast<std::uintptr_t>(from);
  sge.length = length;
  sge.lkey = ep.mr->lkey;
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.opcode = IBV_WR_SEND;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.send_flags = IBV_SEND_SIGNALED;
  if (inline_ok && ep.use_inline) wr.send_flags |= IBV_SEND_INLINE;  // the payload is copied at post time
  ibv_send_wr* bad = nullptr;
  check_rc(ibv_post_send(ep.qp.get(), &wr, &bad), "ibv_post_send(SEND)", "the QP must be in RTS and its send queue not full");
}

void post_rdma(Endpoint& ep, ibv_wr_opcode opcode, const std::uint8_t* local, std::uint32_t length,
               std::uint64_t remote_addr, std::uint32_t rkey, std::uint64_t wr_id) {
  ibv_sge sge{};
  sge.addr = reinterpret_cast<std::uintptr_t>(local);
  sge.length = length;
  sge.lkey = ep.mr->lkey;
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.opcode = opcode;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = remote_addr;
  wr.wr.rdma.rkey = rkey;
  ibv_send_wr* bad = nullptr;
  check_rc(ibv_post_send(ep.qp.get(), &wr, &bad),
           opcode == IBV_WR_RDMA_READ ? "ibv_post_send(RDMA_READ)" : "ibv_post_send(RDMA_WRITE)",
           "the QP must be in RTS and its send queue not full");
}

void post_write(Endpoint& ep, const std::uint8_t* from, std::uint32_t length, std::uint64_t remote_addr,
                std::uint32_t rkey, std::uint64_t wr_id) {
  post_rdma(ep, IBV_WR_RDMA_WRITE, from, length, remote_addr, rkey, wr_id);
}

const char* wc_remedy(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_RETRY_EXC_ERR:
      return "no ACK came back after all retries: the peer's QP is gone, the GIDs do not "
             "match (-g), or the transport drops packets";
    case IBV_WC_RNR_RETRY_EXC_ERR: return "the peer had no RECV posted";
    case IBV_WC_REM_ACCESS_ERR: return "the peer refused the WRITE/READ: wrong rkey, address outside its MR, or an access right missing";
    case IBV_WC_LOC_LEN_ERR: return "a message was longer than the RECV buffer";
    case IBV_WC_WR_FLUSH_ERR: return "the QP went to the error state; the first failed completion has the cause";
    default: return "see `man ibv_poll_cq` for the status";
  }
}

const char* wc_opcode_name(ibv_wc_opcode op) {
  switch (op) {
    case IBV_WC_SEND: return "SEND";
    case IBV_WC_RDMA_WRITE: return "RDMA_WRITE";
    case IBV_WC_RECV: return "RECV";
    case IBV_WC_RDMA_READ: return "RDMA_READ";
    case IBV_WC_RECV_RDMA_WITH_IMM: return "RECV_RDMA_WITH_IMM";
    default: return "other";
  }
}

/**
 * Polls one CQ. Busy-polls (--poll spin) or yields the CPU between empty polls (--poll
 * yield, and always for the write_bw server, which has nothing to do but wait). Every few
 * thousand empty polls it reads the clock: more than --timeout without progress fails the
 * run, and it peeks at the control connection so a peer that failed stops us at once.
 */
class Poller {
 public:
  Poller(Endpoint& ep, Socket& ctrl, double timeout_s, PollMode mode)
      : cq_(ep.cq.get()), ctrl_(ctrl), timeout_s_(timeout_s), mode_(mode) {}

  /// Name the work request of a failed completion in words (besides its wr_id).
  void describe_wr_ids(std::string (*describe)(std::uint64_t wr_id)) { describe_ = describe; }

  /// Up to @p max completions (at least one), each checked for success.
  /// @param progress  optional: called now and then; true means "the run moved on" (the
  ///                  write_bw server watches its buffer, where WRITEs leave no completion)
  template <class Progress>
  int poll(ibv_wc* wcs, int max, const char* what, Progress&& progress) {
    // The clock is read only after a few thousand empty polls, never on the fast path
    // (a ping-pong round trip is timed around this call).
    std::optional<Clock::time_point> last_progress;
    for (unsigned empty = 1;; ++empty) {
      const int n = ibv_poll_cq(cq_, max, wcs);
      if (n > 0) {
        for (int i = 0; i < n; ++i) check(wcs[i], what);
        return n;
      }
      if (n < 0)
        fail("ibv_poll_cq returned " + std::to_string(n) + " while waiting for " + what,
             "the CQ overflowed or the device failed");
      if (mode_ == PollMode::yield) sched_yield();
      if (empty % 4096 == 0) {
        const auto now = Clock::now();
        if (!last_progress || progress()) last_progress = now;
        if (seconds_between(*last_progress, now) > timeout_s_)
          fail("no completion for " + std::string(what) + " within " + fmt_double(timeout_s_, 1) + " s",
               "the peer stopped, or the transport lost the packets: check the peer's log; raise "
               "--timeout if the machine is just overloaded");
        if (seconds_between(last_peer_check_, now) > 0.01) {
          last_peer_check_ = now;
          ctrl_.check_peer_alive();
        }
      }
    }
  }
  int poll(ibv_wc* wcs, int max, const char* what) {
    return poll(wcs, max, what, [] { return false; });
  }

 private:
  void check(const ibv_wc& wc, const char* what) const {
    if (wc.status == IBV_WC_SUCCESS) return;
    char detail[256];
    std::snprintf(detail, sizeof detail, " (wr_id 0x%" PRIx64 "%s%s, opcode %s, vendor_err 0x%x)", wc.wr_id,
                  describe_ != nullptr ? " = " : "", describe_ != nullptr ? describe_(wc.wr_id).c_str() : "",
                  wc_opcode_name(wc.opcode), wc.vendor_err);
    fail("a completion while waiting for " + std::string(what) + " failed: status " +
             std::to_string(wc.status) + " (" + ibv_wc_status_str(wc.status) + ")" + detail,
         wc_remedy(wc.status));
  }
  ibv_cq* cq_;
  Socket& ctrl_;
  double timeout_s_;
  PollMode mode_;
  std::string (*describe_)(std::uint64_t) = nullptr;
  Clock::time_point last_peer_check_ = Clock::now();
};

// ---------------------------------------------------------------------------------------
// Results.
// ---------------------------------------------------------------------------------------

void print_bw(const Params& p, double seconds, std::uint32_t mtu) {
  const double bytes = static_cast<double>(p.size) * p.iters;
  std::string extra;
  if (p.transport == Transport::verbs)
    extra = " depth=" + std::to_string(p.depth) + " mtu=" + std::to_string(mtu);
  std::printf("RESULT transport=%s test=write_bw size=%u iters=%u%s seconds=%.4f gbytes_per_s=%.3f\n",
              transport_name(p.transport), p.size, p.iters, extra.c_str(), seconds, bytes / seconds / 1e9);
  std::fflush(stdout);
}

/// @p half_rtt_ns: one sample (round trip / 2) per measured iteration.
void print_latency(const Params& p, std::vector<std::uint64_t>& half_rtt_ns, std::uint32_t mtu) {
  std::sort(half_rtt_ns.begin(), half_rtt_ns.end());
  const std::size_t n = half_rtt_ns.size();
  const double median = n % 2 ? static_cast<double>(half_rtt_ns[n / 2])
                              : (static_cast<double>(half_rtt_ns[n / 2 - 1]) + static_cast<double>(half_rtt_ns[n / 2])) / 2;
  // p99 by nearest rank: the smallest sample with at least 99% of samples at or below it.
  const std::size_t rank = std::max<std::size_t>(1, (n * 99 + 99) / 100);
  const double p99 = static_cast<double>(half_rtt_ns[rank - 1]);
  double sum = 0;
  for (const auto v : half_rtt_ns) sum += static_cast<double>(v);
  std::string extra;
  if (p.transport == Transport::verbs)
    extra = " mtu=" + std::to_string(mtu) + " inline=" + (p.use_inline ? "1" : "0");
  std::printf("RESULT transport=%s test=pingpong size=%u iters=%u%s median_us=%.2f p99_us=%.2f "
              "min_us=%.2f mean_us=%.2f\n",
              transport_name(p.transport), p.size, p.iters, extra.c_str(), median / 1e3, p99 / 1e3,
              static_cast<double>(half_rtt_ns.front()) / 1e3, sum / static_cast<double>(n) / 1e3);
  std::fflush(stdout);
}

std::uint64_t ns_between(Clock::time_point a, Clock::time_point b) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
}

std::uint32_t random_seed() {
  std::random_device entropy;
  return entropy();
}

// ---------------------------------------------------------------------------------------
// verbs write_bw
// ---------------------------------------------------------------------------------------

std::size_t slot_bytes(const Params& p) { return std::size_t{p.depth} * p.size; }

void verbs_write_bw_client(const Params& p, Socket& ctrl, Endpoint& ep, const QpInfo& remote) {
  if (remote.length < slot_bytes(p))
    fail("the server's buffer has " + std::to_string(remote.length) + " bytes, the run needs " +
             std::to_string(slot_bytes(p)),
         "both sides must run the same roce_bench build");
  const std::uint32_t seed = random_seed();
  for (std::uint32_t s = 0; s < p.depth; ++s) fill_slot(ep.buf() + std::size_t{s} * p.size, p.size, seed, s);
  Poller poller(ep, ctrl, p.timeout_s, p.poll);
  ibv_wc wcs[16];

  // Post WRITEs first..end-1, keeping `depth` in flight; WRITE i goes from local slot
  // i % depth to remote slot i % depth. Completions arrive in order on RC, so when WRITE i
  // is posted WRITE i - depth has completed and its slot may be stamped again.
  const auto run = [&](std::uint64_t first, std::uint64_t end) {
    std::uint64_t next = first, done = first;
    while (done < end) {
      while (next < end && next - done < p.depth) {
        const auto s = static_cast<std::uint32_t>(next % p.depth);
        std::uint8_t* slot = ep.buf() + std::size_t{s} * p.size;
        stamp(slot, p.size, next);
        post_write(ep, slot, p.size, remote.addr + std::uint64_t{s} * p.size, remote.rkey, next);
        ++next;
      }
      const int n = poller.poll(wcs, 16, "RDMA WRITE completions");
      for (int i = 0; i < n; ++i) {
        if (wcs[i].opcode != IBV_WC_RDMA_WRITE || wcs[i].wr_id != done)
          fail("expected the completion of WRITE " + std::to_string(done) + ", got opcode " +
                   wc_opcode_name(wcs[i].opcode) + " wr_id " + std::to_string(wcs[i].wr_id),
               "RC completes send-queue work in order: the transport reordered or invented a completion");
        ++done;
      }
    }
  };
  DETAIL("warmup: %u WRITEs", p.warmup);
  run(0, p.warmup);
  const auto t0 = Clock::now();
  run(p.warmup, p.total());
  const auto t1 = Clock::now();
  DETAIL("measured %u WRITEs in %.4f s", p.iters, seconds_between(t0, t1));

  // The check: a SEND after the WRITEs on the same RC QP arrives after their data is in
  // place, so the server may inspect its buffer as soon as this SEND completes there.
  CheckRequest c{seed, p.total(), p.depth, p.size};
  const auto body = encode_check(c);
  std::uint8_t* area = ep.buf() + slot_bytes(p);
  std::memcpy(area, body.data(), body.size());
  post_send(ep, area, kCheckBytes, p.total(), false);
  const int n = poller.poll(wcs, 1, "the check SEND");
  if (wcs[0].opcode != IBV_WC_SEND || n != 1) fail("the check SEND completed as " + std::string(wc_opcode_name(wcs[0].opcode)),
                                                   "the transport reported the wrong completion");
  ctrl.expect_msg(Msg::verdict);
  say("the server verified the contents of its %u slots",
      static_cast<std::uint32_t>(std::min<std::uint64_t>(p.depth, p.total())));
  done_barrier(ctrl);
  print_bw(p, seconds_between(t0, t1), ep.path_mtu);
}

void verbs_write_bw_server(const Params& p, Socket& ctrl, Endpoint& ep) {
  std::uint8_t* area = ep.buf() + slot_bytes(p);
  Poller poller(ep, ctrl, p.timeout_s, PollMode::yield);
  // WRITEs leave no completion on this side: watch the stamps they leave in the slots
  // (the first 8 bytes of each), so "no progress for --timeout" still means something.
  const std::uint32_t watched = std::min<std::uint32_t>(p.depth, 64);
  std::vector<std::uint64_t> seen(watched, 0);
  const auto progress = [&] {
    bool moved = false;
    for (std::uint32_t s = 0; s < watched; ++s) {
      const volatile std::uint8_t* q = ep.buf() + std::size_t{s} * p.size;
      std::uint64_t v = 0;
      for (std::uint32_t b = 0; b < 8 && b < p.size; ++b) v = v << 8 | q[b];
      if (v != seen[s]) moved = true;
      seen[s] = v;
    }
    return moved;
  };
  ibv_wc wc{};
  poller.poll(&wc, 1, "the client's WRITEs and its check SEND", progress);
  if (wc.opcode != IBV_WC_RECV)
    fail("expected the RECV of the check SEND, got " + std::string(wc_opcode_name(wc.opcode)),
         "the transport reported the wrong completion");
  const CheckRequest c = decode_check(area, wc.byte_len);
  if (c.total != p.total() || c.depth != p.depth || c.size != p.size)
    fail("the check request says " + std::to_string(c.total) + " WRITEs of " + std::to_string(c.size) +
             " bytes over " + std::to_string(c.depth) + " slots; the HELLO said " + std::to_string(p.total()) +
             " of " + std::to_string(p.size) + " over " + std::to_string(p.depth),
         "the transport delivered wrong bytes in the final SEND");
  if (const std::string diff = verify_slots(ep.buf(), c, ep.path_mtu); !diff.empty())
    fail("WRITE data check failed: " + diff,
         "the transport lost, misplaced or corrupted RDMA WRITE payload; no number is reported");
  say("verified %u slots after %" PRIu64 " WRITEs of %u bytes", static_cast<std::uint32_t>(std::min<std::uint64_t>(c.depth, c.total)),
      c.total, c.size);
  ctrl.send_msg(Msg::verdict);
  done_barrier(ctrl);
}

// ---------------------------------------------------------------------------------------
// verbs pingpong
// ---------------------------------------------------------------------------------------

// Buffer layout of both sides: [kPingRing send slots][kPingRing recv slots], `size` each.
std::uint8_t* send_slot(Endpoint& ep, const Params& p, std::uint64_t i) {
  return ep.buf() + (i % kPingRing) * p.size;
}
std::uint8_t* recv_slot(Endpoint& ep, const Params& p, std::uint64_t s) {
  return ep.buf() + (kPingRing + s) * p.size;
}

void verbs_pingpong_client(const Params& p, Socket& ctrl, Endpoint& ep) {
  const std::uint32_t seed = random_seed();
  for (std::uint32_t s = 0; s < kPingRing; ++s) fill_slot(send_slot(ep, p, s), p.size, seed, s);
  Poller poller(ep, ctrl, p.timeout_s, p.poll);
  std::vector<std::uint64_t> samples(p.iters);
  ibv_wc wcs[kPingRing + 1];
  std::uint32_t sends_in_flight = 0;
  const auto count_send = [&](const ibv_wc& wc) {
    if (wc.opcode != IBV_WC_SEND)
      fail("unexpected completion opcode " + std::string(wc_opcode_name(wc.opcode)), "the transport reported the wrong completion");
    --sends_in_flight;
  };
  for (std::uint64_t i = 0; i < p.total(); ++i) {
    // A send slot may be rewritten only once its SEND completed (it may be retransmitted).
    while (sends_in_flight >= kPingRing) {
      const int n = poller.poll(wcs, static_cast<int>(kPingRing), "SEND completions");
      for (int k = 0; k < n; ++k) {
        if (wcs[k].opcode == IBV_WC_RECV) fail("an echo arrived before its message was sent", "the transport invented a message");
        count_send(wcs[k]);
      }
    }
    std::uint8_t* msg = send_slot(ep, p, i);
    stamp(msg, p.size, i);
    const auto t0 = Clock::now();
    post_send(ep, msg, p.size, i, true);
    ++sends_in_flight;
    bool echoed = false;
    Clock::time_point t1;
    while (!echoed) {
      const int n = poller.poll(wcs, static_cast<int>(kPingRing + 1), "the echo");
      const auto now = Clock::now();
      for (int k = 0; k < n; ++k) {
        const ibv_wc& wc = wcs[k];
        if (wc.opcode != IBV_WC_RECV) {
          count_send(wc);
          continue;
        }
        if (echoed) fail("two echoes for message " + std::to_string(i), "the transport duplicated a message");
        echoed = true;
        t1 = now;
        const std::uint64_t slot = wc.wr_id & ~kRecvTag;
        if (wc.byte_len != p.size || std::memcmp(recv_slot(ep, p, slot), msg, p.size) != 0)
          fail("the echo of message " + std::to_string(i) + " differs from what was sent (" +
                   std::to_string(wc.byte_len) + " of " + std::to_string(p.size) + " bytes)",
               "the transport corrupted, truncated or reordered a SEND; no number is reported");
        post_recv(ep, recv_slot(ep, p, slot), p.size, wc.wr_id);
      }
    }
    if (i >= p.warmup) samples[i - p.warmup] = ns_between(t0, t1) / 2;
  }
  while (sends_in_flight > 0) {
    const int n = poller.poll(wcs, static_cast<int>(kPingRing), "the last SEND completions");
    for (int k = 0; k < n; ++k) count_send(wcs[k]);
  }
  done_barrier(ctrl);
  print_latency(p, samples, ep.path_mtu);
}

void verbs_pingpong_server(const Params& p, Socket& ctrl, Endpoint& ep) {
  Poller poller(ep, ctrl, p.timeout_s, p.poll);
  ibv_wc wcs[2 * kPingRing];
  std::vector<std::uint64_t> pending;  // recv slots received but not yet echoed
  std::uint64_t received = 0, echoed = 0;
  std::uint32_t sends_in_flight = 0;
  while (echoed < p.total() || sends_in_flight > 0) {
    const int n = poller.poll(wcs, static_cast<int>(2 * kPingRing), "the client's next message");
    for (int k = 0; k < n; ++k) {
      const ibv_wc& wc = wcs[k];
      if (wc.opcode == IBV_WC_RECV) {
        if (wc.byte_len != p.size)
          fail("message " + std::to_string(received) + " has " + std::to_string(wc.byte_len) +
                   " bytes, expected " + std::to_string(p.size),
               "the transport truncated or padded a SEND");
        if (++received > p.total())
          fail("more messages than the " + std::to_string(p.total()) + " announced", "the transport duplicated a message");
        pending.push_back(wc.wr_id & ~kRecvTag);
      } else if (wc.opcode == IBV_WC_SEND) {
        --sends_in_flight;
      } else {
        fail("unexpected completion opcode " + std::string(wc_opcode_name(wc.opcode)), "the transport reported the wrong completion");
      }
    }
    // Echo: copy into the next free send slot, give the RECV back, SEND.
    std::size_t used = 0;
    for (; used < pending.size() && sends_in_flight < kPingRing; ++used) {
      const std::uint64_t slot = pending[used];
      std::uint8_t* out = send_slot(ep, p, echoed);
      std::memcpy(out, recv_slot(ep, p, slot), p.size);
      post_recv(ep, recv_slot(ep, p, slot), p.size, kRecvTag | slot);
      post_send(ep, out, p.size, echoed, true);
      ++sends_in_flight;
      ++echoed;
    }
    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(used));
  }
  say("echoed %" PRIu64 " messages of %u bytes", echoed, p.size);
  done_barrier(ctrl);
}

// ---------------------------------------------------------------------------------------
// verbs verify_rw: a bulk RDMA WRITE of iters x size bytes, read back with RDMA READ and
// checked byte for byte on both sides
// ---------------------------------------------------------------------------------------
//
// The server's buffer holds iters regions of size bytes; WRITE i fills region i. Region
// i's byte o is byte o % 8 of splitmix64(key(seed, i) + o / 8 * golden): it depends on the
// seed, the iteration and the offset, is (practically) never zero for long, and does not
// repeat every 4 KiB, so a packet placed at the wrong offset or in the wrong region, a lost
// or duplicated payload, and stale zeros all show up.
//
// Client: WRITE all regions (--depth in flight), then a SEND on the same QP tells the
// server the WRITEs are complete (RC delivers it after their data) and gives it the seed;
// the server checks its buffer independently and answers VERDICT over TCP. Then the client
// READs the whole buffer back in --size chunks (min(depth, 16) in flight: the QP's
// max_rd_atomic / max_dest_rd_atomic) into a separate buffer and compares it with what it
// wrote. While the client works, it sends a PROGRESS message over TCP at most every
// 0.25 s when completions arrive: the server, which sees no completions of its own for
// WRITEs and READs, counts those as progress for its --timeout.

constexpr std::uint64_t kReadTag = 1ull << 62;
constexpr std::uint64_t kCheckSendTag = 1ull << 61;
constexpr std::uint32_t kMaxReadsInFlight = 16;  // the usual max_qp_rd_atom (and the runtime's)
constexpr std::size_t kCheckArea = 64;           // >= kCheckBytes, keeps what follows aligned
constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

std::uint64_t verify_bytes(const Params& p) { return std::uint64_t{p.iters} * p.size; }
std::uint8_t verify_reads(const Params& p) {
  return static_cast<std::uint8_t>(std::min(p.depth, kMaxReadsInFlight));
}

constexpr std::uint64_t splitmix64(std::uint64_t x) {
  x += kGolden;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::uint64_t region_key(std::uint32_t seed, std::uint64_t iteration) {
  return splitmix64((std::uint64_t{seed} << 32 | 0x5652u) ^ splitmix64(iteration));
}

/// Region @p iteration's pattern, @p size bytes (little-endian 8-byte words).
void fill_region(std::uint8_t* p, std::uint32_t size, std::uint32_t seed, std::uint64_t iteration) {
  const std::uint64_t key = region_key(seed, iteration);
  std::uint32_t off = 0;
  for (std::uint64_t k = 0; off < size; ++k) {
    const std::uint64_t w = splitmix64(key + k * kGolden);
    for (std::uint32_t j = 0; j < 8 && off < size; ++j, ++off) p[off] = static_cast<std::uint8_t>(w >> (8 * j));
  }
}

/// Where @p got first differs from @p want over the whole transfer, in words; "" if nowhere.
/// @p want(i, scratch) yields region i's expected bytes (the source buffer, or a pattern
/// generated into scratch).
template <class Want>
std::string find_mismatch(const Params& p, const std::uint8_t* got, Want&& want, std::uint32_t mtu,
                          const char* got_what, const char* want_what) {
  std::vector<std::uint8_t> scratch;
  std::uint64_t bad_regions = 0, first_region = 0;
  std::string text;
  for (std::uint64_t i = 0; i < p.iters; ++i) {
    const std::uint8_t* g = got + i * p.size;
    const std::uint8_t* w = want(i, scratch);
    if (std::memcmp(g, w, p.size) == 0) continue;
    if (bad_regions++ > 0) continue;
    first_region = i;
    std::uint32_t off = 0;
    while (g[off] == w[off]) ++off;
    std::uint32_t bad = 0, zeros = 0;
    for (std::uint32_t b = 0; b < p.size; ++b) {
      bad += g[b] != w[b];
      zeros += g[b] != w[b] && g[b] == 0;
    }
    char bytes[160];
    std::snprintf(bytes, sizeof bytes, ": expected 0x%02x (%s), got 0x%02x (%s)", w[off], want_what, g[off], got_what);
    text = "first difference at byte offset " + std::to_string(i * p.size + off) + " (message " +
           std::to_string(i) + ", byte " + std::to_string(off) + " of it" +
           (mtu > 0 ? ", packet " + std::to_string(off / mtu) : std::string()) + ")" + bytes + "; " +
           std::to_string(bad) + " of its " + std::to_string(p.size) + " bytes differ" +
           (zeros == bad && bad >= 16 ? " (all of them zero: that data never arrived?)" : "");
  }
  if (bad_regions > 1)
    text += "; " + std::to_string(bad_regions) + " of " + std::to_string(p.iters) + " messages differ (first: " +
            std::to_string(first_region) + ")";
  return text;
}

std::string verify_wr_text(std::uint64_t wr_id) {
  if (wr_id == kCheckSendTag) return "the check SEND";
  if (wr_id & kRecvTag) return "the RECV of the check SEND";
  if (wr_id & kReadTag) return "RDMA READ " + std::to_string(wr_id & ~kReadTag);
  return "RDMA WRITE " + std::to_string(wr_id);
}

/// Client side: tells the server, over TCP, that completions keep arriving.
class ProgressBeacon {
 public:
  ProgressBeacon(Socket& ctrl, double timeout_s) : ctrl_(ctrl), every_(std::min(0.25, timeout_s / 4)) {}
  void tick() {
    const auto now = Clock::now();
    if (seconds_between(last_, now) < every_) return;
    ctrl_.send_msg(Msg::progress);
    last_ = now;
  }

 private:
  Socket& ctrl_;
  double every_;
  Clock::time_point last_ = Clock::now();
};

/// The DONE body of verify_rw: the client's two phase times, so the server can print the
/// same RESULT line.
std::vector<std::uint8_t> encode_times(std::uint64_t write_ns, std::uint64_t read_ns) {
  Writer w;
  w.u64(write_ns).u64(read_ns);
  return w.data();
}

void print_verify(const Params& p, std::uint64_t write_ns, std::uint64_t read_ns) {
  const double bytes = static_cast<double>(verify_bytes(p));
  const auto rate = [&](std::uint64_t ns) { return ns > 0 ? bytes / static_cast<double>(ns) : 0.0; };  // 10^9 B/s
  std::printf("RESULT transport=verbs test=verify_rw size=%u iters=%u bytes=%" PRIu64
              " write_gbytes_per_s=%.3f read_gbytes_per_s=%.3f verified=yes\n",
              p.size, p.iters, verify_bytes(p), rate(write_ns), rate(read_ns));
  std::fflush(stdout);
}

void verbs_verify_rw_client(const Params& p, Socket& ctrl, Endpoint& ep, const QpInfo& remote) {
  const std::uint64_t total = verify_bytes(p);
  if (remote.length < total)
    fail("the server's buffer has " + std::to_string(remote.length) + " bytes, the run needs " +
             std::to_string(total),
         "both sides must run the same roce_bench build");
  // Layout: [source: what we WRITE, total][readback: what we READ, total][check SEND].
  std::uint8_t* source = ep.buf();
  std::uint8_t* readback = ep.buf() + total;
  std::uint8_t* check_area = ep.buf() + 2 * total;
  const std::uint32_t seed = random_seed();
  for (std::uint64_t i = 0; i < p.iters; ++i) fill_region(source + i * p.size, p.size, seed, i);
  Poller poller(ep, ctrl, p.timeout_s, p.poll);
  poller.describe_wr_ids(verify_wr_text);
  ProgressBeacon beacon(ctrl, p.timeout_s);
  ibv_wc wcs[16];

  // One phase: post op i (i < iters) with at most `limit` in flight; RC completes them in order.
  const auto phase = [&](ibv_wr_opcode opcode, std::uint32_t limit, std::uint64_t tag, const char* what) {
    const ibv_wc_opcode want = opcode == IBV_WR_RDMA_READ ? IBV_WC_RDMA_READ : IBV_WC_RDMA_WRITE;
    std::uint8_t* local = opcode == IBV_WR_RDMA_READ ? readback : source;
    std::uint64_t next = 0, done = 0;
    const auto t0 = Clock::now();
    while (done < p.iters) {
      while (next < p.iters && next - done < limit) {
        post_rdma(ep, opcode, local + next * p.size, p.size, remote.addr + next * p.size, remote.rkey, tag | next);
        ++next;
      }
      const int n = poller.poll(wcs, 16, what);
      for (int i = 0; i < n; ++i) {
        if (wcs[i].opcode != want || wcs[i].wr_id != (tag | done))
          fail("expected the completion of " + verify_wr_text(tag | done) + ", got opcode " +
                   wc_opcode_name(wcs[i].opcode) + " wr_id 0x" + Socket::hex32(static_cast<std::uint32_t>(wcs[i].wr_id >> 32)) +
                   Socket::hex32(static_cast<std::uint32_t>(wcs[i].wr_id)),
               "RC completes send-queue work in order: the transport reordered or invented a completion");
        ++done;
      }
      beacon.tick();
    }
    return ns_between(t0, Clock::now());
  };

  const std::uint64_t write_ns = phase(IBV_WR_RDMA_WRITE, p.depth, 0, "RDMA WRITE completions");
  say("wrote %u x %u bytes in %.3f s (up to %u in flight)", p.iters, p.size, static_cast<double>(write_ns) / 1e9, p.depth);

  // The SEND after the WRITEs on the same RC QP arrives after their data is in place.
  const auto body = encode_check(CheckRequest{seed, p.iters, p.depth, p.size});
  std::memcpy(check_area, body.data(), body.size());
  post_send(ep, check_area, kCheckBytes, kCheckSendTag, false);
  const int n = poller.poll(wcs, 1, "the check SEND");
  if (n != 1 || wcs[0].opcode != IBV_WC_SEND || wcs[0].wr_id != kCheckSendTag)
    fail("the check SEND completed as " + std::string(wc_opcode_name(wcs[0].opcode)),
         "the transport reported the wrong completion");
  ctrl.expect_msg(Msg::verdict);
  say("the server verified its %" PRIu64 "-byte buffer", total);

  const std::uint64_t read_ns = phase(IBV_WR_RDMA_READ, verify_reads(p), kReadTag, "RDMA READ completions");
  say("read back %u x %u bytes in %.3f s (up to %u in flight)", p.iters, p.size, static_cast<double>(read_ns) / 1e9,
      static_cast<unsigned>(verify_reads(p)));
  const auto from_source = [&](std::uint64_t i, std::vector<std::uint8_t>&) { return source + i * p.size; };
  if (const std::string diff = find_mismatch(p, readback, from_source, ep.path_mtu, "read back", "written");
      !diff.empty())
    fail("READ-back check failed: " + diff,
         "the server's buffer (checked fine by the server) came back wrong: the transport lost, misplaced or "
         "corrupted RDMA READ response payload; no number is reported");
  say("verified the %" PRIu64 " bytes read back", total);
  ctrl.send_msg(Msg::done, encode_times(write_ns, read_ns));
  ctrl.expect_msg(Msg::done);
  print_verify(p, write_ns, read_ns);
}

void verbs_verify_rw_server(const Params& p, Socket& ctrl, Endpoint& ep) {
  const std::uint64_t total = verify_bytes(p);
  std::uint8_t* area = ep.buf() + total;  // the check SEND's RECV, posted before RTR
  Poller poller(ep, ctrl, p.timeout_s, PollMode::yield);
  poller.describe_wr_ids(verify_wr_text);
  ibv_wc wc{};
  // WRITEs leave no completion here: the client's PROGRESS messages show it moves on.
  poller.poll(&wc, 1, "the client's WRITEs and its check SEND", [&] { return ctrl.drain_progress() > 0; });
  if (wc.opcode != IBV_WC_RECV)
    fail("expected the RECV of the check SEND, got " + std::string(wc_opcode_name(wc.opcode)),
         "the transport reported the wrong completion");
  const CheckRequest c = decode_check(area, wc.byte_len);
  if (c.total != p.iters || c.depth != p.depth || c.size != p.size)
    fail("the check request says " + std::to_string(c.total) + " WRITEs of " + std::to_string(c.size) +
             " bytes (depth " + std::to_string(c.depth) + "); the HELLO said " + std::to_string(p.iters) +
             " of " + std::to_string(p.size) + " (depth " + std::to_string(p.depth) + ")",
         "the transport delivered wrong bytes in the final SEND");
  const auto pattern = [&](std::uint64_t i, std::vector<std::uint8_t>& scratch) {
    scratch.resize(p.size);
    fill_region(scratch.data(), p.size, c.seed, i);
    return static_cast<const std::uint8_t*>(scratch.data());
  };
  if (const std::string diff = find_mismatch(p, ep.buf(), pattern, ep.path_mtu, "in the buffer", "the pattern");
      !diff.empty())
    fail("WRITE data check failed: " + diff,
         "the transport lost, misplaced or corrupted RDMA WRITE payload; no number is reported");
  say("verified my %" PRIu64 "-byte buffer after %u WRITEs of %u bytes; the client now READs it back", total,
      p.iters, p.size);
  ctrl.send_msg(Msg::verdict);
  // Our QP answers the READs without us; PROGRESS messages keep this wait alive.
  const auto body = ctrl.expect_msg(Msg::done, true);
  Reader r(body.data(), body.size(), "DONE");
  const std::uint64_t write_ns = r.u64(), read_ns = r.u64();
  r.expect_end();
  ctrl.send_msg(Msg::done);
  print_verify(p, write_ns, read_ns);
}

// ---------------------------------------------------------------------------------------
// TCP reference: the same two shapes over the control socket itself.
// ---------------------------------------------------------------------------------------

void tcp_write_bw_client(const Params& p, Socket& sock) {
  const std::uint32_t seed = random_seed();
  std::vector<std::uint8_t> slots(slot_bytes(p));
  for (std::uint32_t s = 0; s < p.depth; ++s) fill_slot(slots.data() + std::size_t{s} * p.size, p.size, seed, s);
  const auto run = [&](std::uint64_t first, std::uint64_t end) {
    for (std::uint64_t i = first; i < end; ++i) {
      std::uint8_t* slot = slots.data() + (i % p.depth) * p.size;
      stamp(slot, p.size, i);
      sock.send_all(slot, p.size, "data");
    }
  };
  run(0, p.warmup);
  if (p.warmup > 0) sock.expect_msg(Msg::ack);  // the warmup bytes have all arrived
  const auto t0 = Clock::now();
  run(p.warmup, p.total());
  sock.expect_msg(Msg::ack);
  const auto t1 = Clock::now();
  sock.send_msg(Msg::check, encode_check(CheckRequest{seed, p.total(), p.depth, p.size}));
  sock.expect_msg(Msg::verdict);
  done_barrier(sock);
  print_bw(p, seconds_between(t0, t1), 0);
}

void tcp_write_bw_server(const Params& p, Socket& sock) {
  std::vector<std::uint8_t> chunk(p.size);
  const auto run = [&](std::uint64_t first, std::uint64_t end) {
    for (std::uint64_t i = first; i < end; ++i) {
      sock.recv_all(chunk.data(), p.size, "data");
      // Every chunk: its stamps (first and last 8 bytes = its index). The last one: all bytes.
      std::uint8_t want[8];
      for (int b = 0; b < 8; ++b) want[b] = static_cast<std::uint8_t>(i >> (8 * (7 - b)));
      const std::size_t n = std::min<std::size_t>(8, p.size);
      if (std::memcmp(chunk.data(), want, n) != 0 || (p.size >= 16 && std::memcmp(chunk.data() + p.size - 8, want, 8) != 0))
        fail("chunk " + std::to_string(i) + " does not carry its own index", "the byte stream lost or reordered data");
    }
  };
  run(0, p.warmup);
  if (p.warmup > 0) sock.send_msg(Msg::ack);
  run(p.warmup, p.total());
  sock.send_msg(Msg::ack);
  const auto body = sock.expect_msg(Msg::check);
  CheckRequest c = decode_check(body.data(), body.size());
  if (c.total != p.total() || c.depth != p.depth || c.size != p.size)
    fail("the check request does not match the HELLO", "both sides must run the same roce_bench build");
  std::vector<std::uint8_t> scratch;
  const std::uint64_t last = c.total - 1;
  if (const std::string diff = check_slot(chunk.data(), c.size, c.seed, static_cast<std::uint32_t>(last % c.depth), last, 0, scratch);
      !diff.empty())
    fail("TCP data check failed: " + diff, "the byte stream delivered wrong data");
  sock.send_msg(Msg::verdict);
  say("received and checked %" PRIu64 " chunks of %u bytes", c.total, c.size);
  done_barrier(sock);
}

void tcp_pingpong_client(const Params& p, Socket& sock) {
  const std::uint32_t seed = random_seed();
  std::vector<std::uint8_t> msg(p.size), echo(p.size);
  fill_slot(msg.data(), p.size, seed, 0);
  std::vector<std::uint64_t> samples(p.iters);
  for (std::uint64_t i = 0; i < p.total(); ++i) {
    stamp(msg.data(), p.size, i);
    const auto t0 = Clock::now();
    sock.send_all(msg.data(), p.size, "message");
    sock.recv_all(echo.data(), p.size, "echo");
    const auto t1 = Clock::now();
    if (echo != msg) fail("the echo of message " + std::to_string(i) + " differs from what was sent", "the byte stream delivered wrong data");
    if (i >= p.warmup) samples[i - p.warmup] = ns_between(t0, t1) / 2;
  }
  done_barrier(sock);
  print_latency(p, samples, 0);
}

void tcp_pingpong_server(const Params& p, Socket& sock) {
  std::vector<std::uint8_t> msg(p.size);
  for (std::uint64_t i = 0; i < p.total(); ++i) {
    sock.recv_all(msg.data(), p.size, "message");
    sock.send_all(msg.data(), p.size, "echo");
  }
  say("echoed %" PRIu64 " messages of %u bytes", p.total(), p.size);
  done_barrier(sock);
}

// ---------------------------------------------------------------------------------------
// The two roles.
// ---------------------------------------------------------------------------------------

EndpointShape shape_of(const Params& p, bool server) {
  EndpointShape s;
  if (p.test == Test::write_bw) {
    s.buffer_bytes = slot_bytes(p) + kCheckBytes;
    s.remote_write = server;
    s.send_wr = server ? 1 : p.depth + 1;
    s.recv_wr = 1;
  } else if (p.test == Test::verify_rw) {
    // Server: [the target of the WRITEs and READs][check RECV]; client: [source][readback][check SEND].
    s.buffer_bytes = (server ? 1 : 2) * verify_bytes(p) + kCheckArea;
    s.remote_write = server;
    s.remote_read = server;
    s.send_wr = server ? 1 : std::max<std::uint32_t>(p.depth, verify_reads(p)) + 1;
    s.recv_wr = 1;
    s.rd_atomic = verify_reads(p);
  } else {
    s.buffer_bytes = 2 * std::size_t{kPingRing} * p.size;
    s.send_wr = kPingRing;
    s.recv_wr = kPingRing;
  }
  return s;
}

void check_limits(const Params& p) {
  if (p.test == Test::verify_rw) {
    if (p.transport != Transport::verbs)
      fail("--test verify_rw runs over verbs only", "drop --transport tcp (or use --transport verbs)");
    if (p.warmup != 0)
      fail("--test verify_rw has no warmup (asked: " + std::to_string(p.warmup) + ")", "drop --warmup");
    if (verify_bytes(p) > kMaxSlotBytes)
      fail("--iters " + std::to_string(p.iters) + " x --size " + std::to_string(p.size) + " = " +
               std::to_string(verify_bytes(p)) + " bytes to transfer, above the 1 GiB limit",
           "lower --iters or --size");
  }
  if (p.test == Test::write_bw && slot_bytes(p) > kMaxSlotBytes)
    fail("--depth " + std::to_string(p.depth) + " x --size " + std::to_string(p.size) + " = " +
             std::to_string(slot_bytes(p)) + " bytes of buffer, above the 1 GiB limit",
         "lower --depth or --size");
}

/// Post the RECVs a side needs before its peer may send: the write_bw server's one RECV for
/// the check SEND, or kPingRing RECVs for ping-pong.
void post_initial_recvs(Endpoint& ep, const Params& p, bool server) {
  if (p.test == Test::write_bw) {
    if (server) post_recv(ep, ep.buf() + slot_bytes(p), kCheckBytes, kRecvTag);
    return;
  }
  if (p.test == Test::verify_rw) {
    if (server) post_recv(ep, ep.buf() + verify_bytes(p), kCheckBytes, kRecvTag);
    return;
  }
  for (std::uint64_t s = 0; s < kPingRing; ++s) post_recv(ep, recv_slot(ep, p, s), p.size, kRecvTag | s);
}

int run_client(Params p, const std::string& host) {
  p.apply_defaults();
  check_limits(p);
  std::optional<Endpoint> ep;
  Socket ctrl;
  try {
    if (p.transport == Transport::verbs) {
      ep.emplace(open_endpoint(p, shape_of(p, false)));
      post_initial_recvs(*ep, p, false);
    }
    ctrl = connect_with_retry(host, p.port, p.timeout_s);
    ctrl.set_timeouts(p.timeout_s);
    say("connected to %s: %s %s, %u x %u bytes after %u warmup%s", ctrl.peer().c_str(), transport_name(p.transport),
        test_name(p.test), p.iters, p.size, p.warmup,
        p.test != Test::pingpong ? (", depth " + std::to_string(p.depth)).c_str() : "");
    ctrl.send_msg(Msg::hello, encode_hello(p, ep ? ep->info() : QpInfo{}));
    Params echoed;
    QpInfo remote;
    decode_hello(ctrl.expect_msg(Msg::hello), echoed, remote);
    if (p.transport == Transport::tcp) {
      if (p.test == Test::pingpong) ctrl.set_nodelay(true);
      if (p.test == Test::write_bw) tcp_write_bw_client(p, ctrl);
      else tcp_pingpong_client(p, ctrl);
      return 0;
    }
    // The server's QP is in RTS and its RECVs are posted: once ours is in RTS we may send.
    connect_endpoint(*ep, remote);
    if (p.test == Test::write_bw) verbs_write_bw_client(p, ctrl, *ep, remote);
    else if (p.test == Test::verify_rw) verbs_verify_rw_client(p, ctrl, *ep, remote);
    else verbs_pingpong_client(p, ctrl, *ep);
    return 0;
  } catch (const Error& e) {
    ctrl.send_error_quietly(std::string("client: ") + e.what());
    throw;
  }
}

/// Which options the server was given explicitly: those must match the client's.
struct ServerExplicit {
  bool transport = false, test = false, size = false, iters = false, warmup = false, depth = false,
       inline_ = false;
};

int run_server(Params p, const ServerExplicit& given) {
  Socket ctrl = accept_one(p.port, p.timeout_s);
  ctrl.set_timeouts(p.timeout_s);
  try {
    Params c;
    QpInfo remote;
    decode_hello(ctrl.expect_msg(Msg::hello), c, remote);
    say("client %s asks for %s %s, %u x %u bytes after %u warmup", ctrl.peer().c_str(), transport_name(c.transport),
        test_name(c.test), c.iters, c.size, c.warmup);
    const auto mismatch = [&](const std::string& what, const std::string& ours, const std::string& theirs) {
      fail("the client asks for " + what + " " + theirs + ", this server runs " + what + " " + ours,
           "give both sides the same " + what + " (or leave it out on the server: it then follows the client)");
    };
    if (given.transport && c.transport != p.transport)
      mismatch("--transport", transport_name(p.transport), transport_name(c.transport));
    if (given.test && c.test != p.test) mismatch("--test", test_name(p.test), test_name(c.test));
    p.transport = c.transport;
    p.test = c.test;
    p.apply_defaults();
    if (given.size && c.size != p.size) mismatch("--size", std::to_string(p.size), std::to_string(c.size));
    if (given.iters && c.iters != p.iters) mismatch("--iters", std::to_string(p.iters), std::to_string(c.iters));
    if (given.warmup && c.warmup != p.warmup) mismatch("--warmup", std::to_string(p.warmup), std::to_string(c.warmup));
    if (given.depth && c.depth != p.depth) mismatch("--depth", std::to_string(p.depth), std::to_string(c.depth));
    if (given.inline_ && c.use_inline != p.use_inline) mismatch("--inline", p.use_inline ? "on" : "off", c.use_inline ? "on" : "off");
    if (c.size == 0 || c.size > kMaxSize || c.iters == 0 || c.iters > kMaxIters || c.warmup > kMaxIters ||
        c.depth == 0 || c.depth > kMaxDepth)
      fail("the client's HELLO has out-of-range values (size " + std::to_string(c.size) + ", iters " +
               std::to_string(c.iters) + ", warmup " + std::to_string(c.warmup) + ", depth " + std::to_string(c.depth) + ")",
           "both sides must run the same roce_bench build");
    p.size = c.size;
    p.iters = c.iters;
    p.warmup = c.warmup;
    p.depth = c.depth;
    p.use_inline = c.use_inline;
    check_limits(p);

    if (p.transport == Transport::tcp) {
      ctrl.send_msg(Msg::hello, encode_hello(p, QpInfo{}));
      if (p.test == Test::pingpong) ctrl.set_nodelay(true);
      if (p.test == Test::write_bw) tcp_write_bw_server(p, ctrl);
      else tcp_pingpong_server(p, ctrl);
      return 0;
    }
    Endpoint ep = open_endpoint(p, shape_of(p, true));
    // RECVs before RTR: the client may send as soon as it has our HELLO.
    post_initial_recvs(ep, p, true);
    connect_endpoint(ep, remote);
    QpInfo ours = ep.info();
    if (p.test == Test::write_bw) {
      ours.addr = reinterpret_cast<std::uintptr_t>(ep.buf());
      ours.rkey = ep.mr->rkey;
      ours.length = static_cast<std::uint32_t>(slot_bytes(p));
    } else if (p.test == Test::verify_rw) {
      ours.addr = reinterpret_cast<std::uintptr_t>(ep.buf());
      ours.rkey = ep.mr->rkey;
      ours.length = static_cast<std::uint32_t>(verify_bytes(p));  // <= 1 GiB (check_limits)
    }
    ctrl.send_msg(Msg::hello, encode_hello(p, ours));
    if (p.test == Test::write_bw) verbs_write_bw_server(p, ctrl, ep);
    else if (p.test == Test::verify_rw) verbs_verify_rw_server(p, ctrl, ep);
    else verbs_pingpong_server(p, ctrl, ep);
    return 0;
  } catch (const Error& e) {
    ctrl.send_error_quietly(std::string("server: ") + e.what());
    throw;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Params p;
  std::string host, transport = "verbs", test = "write_bw", poll = "spin";
  CLI::App app{"roce_bench: RC WRITE bandwidth and SEND/RECV ping-pong latency over verbs, with the\n"
               "same two shapes over TCP as the reference. Start `roce_bench server` first, then\n"
               "`roce_bench client HOST` with the same --transport and --test; the client prints\n"
               "one RESULT line on stdout.",
               "roce_bench"};
  app.require_subcommand(1, 1);
  CLI::App* server = app.add_subcommand(
      "server",
      "wait for one client and serve one measurement. The run's shape (--transport, --test, --size,\n"
      "--iters, --warmup, --depth, --inline) is the client's; any of them given here must match it");
  CLI::App* client = app.add_subcommand("client", "connect to HOST, measure, print a RESULT line");
  client->add_option("host", host, "the server's address (127.0.0.1 on this machine)")->required();
  ServerExplicit given;
  std::vector<std::pair<CLI::App*, std::array<CLI::Option*, 7>>> recorded;
  for (CLI::App* sub : {server, client}) {
    auto* o_transport = sub->add_option("--transport", transport, "verbs (RC QP) or tcp (the reference)")
                            ->check(CLI::IsMember({"verbs", "tcp"}))->capture_default_str();
    auto* o_test = sub->add_option("--test", test, "write_bw (RDMA WRITE bandwidth), pingpong (SEND/RECV latency) or "
                                                   "verify_rw (verbs only: iters x size bytes sent with RDMA WRITE, read back with "
                                                   "RDMA READ, checked byte for byte on both sides)")
                       ->check(CLI::IsMember({"write_bw", "pingpong", "verify_rw"}))->capture_default_str();
    auto* o_size = sub->add_option("-s,--size", p.size, "message size in bytes (default: 65536 for write_bw, 64 for pingpong, "
                                                        "1048576 for verify_rw)")
                       ->check(CLI::Range(1u, kMaxSize));
    auto* o_iters = sub->add_option("-n,--iters", p.iters, "measured iterations (default: 5000 for write_bw, 20000 for pingpong, "
                                                          "16 for verify_rw)")
                        ->check(CLI::Range(1u, kMaxIters));
    auto* o_warmup = sub->add_option("--warmup", p.warmup, "iterations run before the clock starts (default: 200 / 1000; "
                                                          "verify_rw has none)")
                         ->check(CLI::Range(0u, kMaxIters));
    auto* o_depth = sub->add_option("--depth", p.depth, "write_bw: WRITEs (or TCP chunks' slots) kept in flight; verify_rw: "
                                                        "WRITEs in flight, and min(depth, 16) READs")
                        ->check(CLI::Range(1u, kMaxDepth))->capture_default_str();
    auto* o_inline = sub->add_flag("--inline", p.use_inline, "verbs pingpong: post SENDs with IBV_SEND_INLINE");
    sub->add_option("-d,--ib-dev", p.ib_dev, "RDMA device (default: the first one)");
    sub->add_option("-i,--ib-port", p.ib_port, "port of the RDMA device")->check(CLI::Range(1, 255))->capture_default_str();
    sub->add_option("-g,--gid-idx", p.gid_idx, "GID index (the userspace runtime: 0; rxe: 1)")
        ->check(CLI::Range(0, 255))->capture_default_str();
    sub->add_option("-p,--port", p.port, "TCP port of the control (and TCP data) connection")
        ->check(CLI::Range(1, 65535))->capture_default_str();
    sub->add_option("--mtu", p.mtu, "largest path MTU to use (the port's active_mtu may lower it)")
        ->check(CLI::IsMember({1024u, 4096u}))->capture_default_str();
    sub->add_option("-t,--timeout", p.timeout_s, "seconds any wait may go without progress")
        ->check(CLI::Range(0.1, 3600.0))->capture_default_str();
    sub->add_option("--poll", poll, "verbs: spin (busy-poll the CQ) or yield (sched_yield between empty polls)")
        ->check(CLI::IsMember({"spin", "yield"}))->capture_default_str();
    sub->add_flag("-v,--verbose", g_verbose, "say more on stderr");
    recorded.push_back({sub, {o_size, o_iters, o_warmup, o_depth, o_inline, o_transport, o_test}});
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const bool is_server = server->parsed();
  g_role = is_server ? "roce_bench server" : "roce_bench client";
  for (const auto& [sub, opts] : recorded) {
    if (sub != (is_server ? server : client)) continue;
    p.warmup_set = opts[2]->count() > 0;
    given = ServerExplicit{opts[5]->count() > 0, opts[6]->count() > 0, opts[0]->count() > 0,
                           opts[1]->count() > 0, opts[2]->count() > 0, opts[3]->count() > 0,
                           opts[4]->count() > 0};
  }
  p.transport = transport == "tcp" ? Transport::tcp : Transport::verbs;
  p.test = test == "pingpong" ? Test::pingpong : test == "verify_rw" ? Test::verify_rw : Test::write_bw;
  p.poll = poll == "yield" ? PollMode::yield : PollMode::spin;
  try {
    return is_server ? run_server(p, given) : run_client(p, host);
  } catch (const Error& e) {
    say("ERROR: %s", e.what());
    if (!e.remedy().empty()) say("remedy: %s", e.remedy().c_str());
  } catch (const std::exception& e) {
    say("ERROR: %s", e.what());
  }
  return 1;
}
