// uroce_rdmacm_api_check: RDMA CM calls whose answers the runtime's librdmacm must give the
// way rdma-core 44's librdmacm over the kernel's rdma_cm gives them, each checked on its
// own through the public API. Run on the runtime, at an address of its own:
//
//   scripts/userspace-roce.sh --addr ADDR -- uroce_rdmacm_api_check ADDR PORT
//
// ADDR is the process's device (IPv4), PORT the RDMA CM port its listener takes. Prints
// one "PASS name" or "FAIL name: what was seen, what was expected" line per check and
// exits 1 if any failed.
//
// 1. What the runtime does not build (IPv6 and AF_IB addresses, the port spaces of UD
//    and native IB, multicast, rsockets): each call fails with EOPNOTSUPP, and each
//    feature is named on stderr exactly once however often it is asked for. The runtime
//    writes its stderr lines from a thread of its own, so these calls run in a child
//    process whose stderr is a file: once the child has exited (the runtime's log empties
//    its buffer at exit) the file holds every line, and they are counted.
// 2. Private data limits. The CM's messages have fixed private data fields (IBA ch. 12):
//    a REQ 92 bytes, of which the kernel's rdma_cm takes 36 for its own header (struct
//    cma_hdr: ports and IP addresses), a REP 196, a REJ 148. librdmacm passes on any
//    length (a uint8_t; its command to the kernel holds 256 bytes); the kernel's
//    ib_send_cm_req, ib_send_cm_rep and ib_send_cm_rej refuse one byte more with EINVAL.
//    The listener and the connecting ids are in this one process, on its one device.
//
// Every wait is bounded: CM events are awaited with poll() for at most 10 s, the child
// for at most 30 s.
#include <arpa/inet.h>
#include <endian.h>
#include <infiniband/ib.h>  // AF_IB, sockaddr_ib
#include <netinet/in.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <rdma/rsocket.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "api_check.hpp"

namespace {

constexpr int kEventTimeoutMs = 10000;  ///< any one CM event
constexpr auto kChildTimeout = std::chrono::seconds(30);

// The CM messages' private data fields (the kernel's IB_CM_*_PRIVATE_DATA_SIZE), and
// rdma_cm's header at the start of a REQ's (struct cma_hdr).
constexpr int kReqPrivate = 92;
constexpr int kCmaHeader = 36;
constexpr int kReqUser = kReqPrivate - kCmaHeader;  // 56
constexpr int kRepPrivate = 196;
constexpr int kRejPrivate = 148;
constexpr int kRejConsumerDefined = 28;  // IB_CM_REJ_CONSUMER_DEFINED

using api_check::check;
using api_check::errno_text;
using api_check::fail;

/// "-1 with errno 22 (Invalid argument)" or "0".
std::string call_text(int rc, int e) {
  return rc ? std::to_string(rc) + " with errno " + errno_text(e) : "0";
}

/// Private data whose bytes are i * 7 + 1 (mod 256), all different in the first 256: a
/// byte lost, moved or repeated on the way shows when they are compared on arrival.
std::vector<uint8_t> pattern(int len) {
  std::vector<uint8_t> v(static_cast<size_t>(len));
  for (int i = 0; i < len; i++) v[static_cast<size_t>(i)] = static_cast<uint8_t>(i * 7 + 1);
  return v;
}

// ---- CM plumbing ----------------------------------------------------------------------
struct Setup {
  sockaddr_in addr{};  ///< the listener's address and port
  rdma_event_channel* passive = nullptr;
  rdma_event_channel* active = nullptr;
  rdma_cm_id* listener = nullptr;
};

/// The next event on `ch` within 10 s, which must be of type `want`: true and *ev (to be
/// acknowledged), or false and `seen` saying what came instead.
bool next_event(rdma_event_channel* ch, rdma_cm_event_type want, rdma_cm_event** ev,
                std::string& seen) {
  pollfd p{ch->fd, POLLIN, 0};
  if (poll(&p, 1, kEventTimeoutMs) != 1) {
    seen = std::string("no event within 10 s, expected ") + rdma_event_str(want);
    return false;
  }
  if (rdma_get_cm_event(ch, ev)) {
    seen = "rdma_get_cm_event failed, errno " + errno_text(errno);
    return false;
  }
  if ((*ev)->event != want) {
    seen = std::string(rdma_event_str((*ev)->event)) + " (status " + std::to_string((*ev)->status) +
           "), expected " + rdma_event_str(want);
    rdma_ack_cm_event(*ev);
    return false;
  }
  return true;
}

/// An id and its QP, if it has one (nullptr: nothing).
void destroy(rdma_cm_id* id) {
  if (!id) return;
  if (id->qp) rdma_destroy_qp(id);
  rdma_destroy_id(id);
}

/// A QP for `id` on its device (the CQs made by rdma_create_qp).
bool make_qp(rdma_cm_id* id) {
  ibv_qp_init_attr a{};
  a.qp_type = IBV_QPT_RC;
  a.cap.max_send_wr = a.cap.max_recv_wr = 4;
  a.cap.max_send_sge = a.cap.max_recv_sge = 1;
  return rdma_create_qp(id, nullptr, &a) == 0;
}

/// An id on the active channel, its address and route resolved to the listener and its
/// QP made: ready for rdma_connect. nullptr (and `seen`) if a step failed.
rdma_cm_id* route_to_listener(Setup& s, std::string& seen) {
  rdma_cm_id* id = nullptr;
  rdma_cm_event* ev = nullptr;
  if (rdma_create_id(s.active, &id, nullptr, RDMA_PS_TCP)) {
    seen = "rdma_create_id failed, errno " + errno_text(errno);
    return nullptr;
  }
  bool ok = rdma_resolve_addr(id, nullptr, reinterpret_cast<sockaddr*>(&s.addr), 5000) == 0 &&
            next_event(s.active, RDMA_CM_EVENT_ADDR_RESOLVED, &ev, seen);
  if (ok) rdma_ack_cm_event(ev);
  ok = ok && rdma_resolve_route(id, 5000) == 0 &&
       next_event(s.active, RDMA_CM_EVENT_ROUTE_RESOLVED, &ev, seen);
  if (ok) rdma_ack_cm_event(ev);
  ok = ok && make_qp(id);
  if (!ok) {
    if (seen.empty())
      seen = "resolving the address or route, or rdma_create_qp failed, errno " + errno_text(errno);
    destroy(id);
    return nullptr;
  }
  return id;
}

rdma_conn_param conn_param(const std::vector<uint8_t>& data) {
  rdma_conn_param p{};
  p.private_data = data.empty() ? nullptr : data.data();
  p.private_data_len = static_cast<uint8_t>(data.size());
  p.responder_resources = 1;
  p.initiator_depth = 1;
  p.retry_count = 7;
  p.rnr_retry_count = 7;
  return p;
}

/// The listener's next CONNECT_REQUEST: its new id (the event acknowledged), nullptr on
/// failure. With `data`, the request must carry exactly those bytes.
rdma_cm_id* take_request(Setup& s, std::string& seen, const std::vector<uint8_t>* data = nullptr) {
  rdma_cm_event* ev = nullptr;
  if (!next_event(s.passive, RDMA_CM_EVENT_CONNECT_REQUEST, &ev, seen)) return nullptr;
  rdma_cm_id* id = ev->id;
  const auto& c = ev->param.conn;
  if (data && (c.private_data_len != data->size() || !c.private_data ||
               std::memcmp(c.private_data, data->data(), data->size()) != 0)) {
    seen = "CONNECT_REQUEST with private_data_len " + std::to_string(c.private_data_len) +
           (c.private_data_len == data->size() ? ", other bytes" : "");
    id = nullptr;
  }
  rdma_ack_cm_event(ev);
  return id;
}

/// The active side's REJECTED: status `reason`, and with `data` exactly those bytes.
bool expect_rejected(Setup& s, int reason, std::string& seen,
                     const std::vector<uint8_t>* data = nullptr) {
  rdma_cm_event* ev = nullptr;
  if (!next_event(s.active, RDMA_CM_EVENT_REJECTED, &ev, seen)) return false;
  const auto& c = ev->param.conn;
  bool ok = ev->status == reason;
  if (data)
    ok = ok && c.private_data_len == data->size() && c.private_data &&
         std::memcmp(c.private_data, data->data(), data->size()) == 0;
  seen = "REJECTED with status " + std::to_string(ev->status) + ", private_data_len " +
         std::to_string(c.private_data_len);
  rdma_ack_cm_event(ev);
  return ok;
}

// ---- 1. what is not built: EOPNOTSUPP and one stderr line per feature ------------------
// Each call, with the feature the runtime names on stderr for it (its not_built() text).
struct Unbuilt {
  const char* call;
  const char* feature;
  int (*run)();
};

sockaddr_in6 ipv6_loopback() {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  a.sin6_port = htons(18559);
  return a;
}
sockaddr_ib ib_address() {
  sockaddr_ib a{};
  a.sib_family = AF_IB;
  a.sib_pkey = htons(0xffff);
  a.sib_sid = htobe64(0x0000000001060000ull | 18559);  // RDMA_PS_TCP's service ID
  a.sib_sid_mask = htobe64(~0ull);
  return a;
}
int create_id(rdma_port_space ps) {
  rdma_cm_id* id = nullptr;
  int rc = rdma_create_id(nullptr, &id, nullptr, ps);
  if (rc == 0) rdma_destroy_id(id);
  return rc;
}
/// `f` on a fresh RDMA_PS_TCP id (synchronous: no channel), errno kept; kNoTcpId if
/// there is no id to call it on.
constexpr int kNoTcpId = -1000;
template <typename F>
int on_tcp_id(F f) {
  rdma_cm_id* id = nullptr;
  if (rdma_create_id(nullptr, &id, nullptr, RDMA_PS_TCP)) return kNoTcpId;
  int rc = f(id);
  int e = errno;
  rdma_destroy_id(id);
  errno = e;
  return rc;
}

template <typename Addr>
int bind_to(Addr a) {
  return on_tcp_id(
      [&](rdma_cm_id* id) { return rdma_bind_addr(id, reinterpret_cast<sockaddr*>(&a)); });
}
template <typename Addr>
int resolve_to(Addr a) {
  return on_tcp_id([&](rdma_cm_id* id) {
    return rdma_resolve_addr(id, nullptr, reinterpret_cast<sockaddr*>(&a), 2000);
  });
}
int join_multicast() {
  sockaddr_in group{};
  group.sin_family = AF_INET;
  group.sin_addr.s_addr = htonl(0xEF010203);  // 239.1.2.3
  return on_tcp_id([&](rdma_cm_id* id) {
    return rdma_join_multicast(id, reinterpret_cast<sockaddr*>(&group), nullptr);
  });
}

const Unbuilt kUnbuilt[] = {
    {"rdma_bind_addr to ::1 (AF_INET6)", "IPv6 addressing (AF_INET6)",
     [] { return bind_to(ipv6_loopback()); }},
    {"rdma_resolve_addr to ::1 (AF_INET6)", "IPv6 addressing (AF_INET6)",
     [] { return resolve_to(ipv6_loopback()); }},
    {"rdma_bind_addr to an AF_IB address", "AF_IB addressing (native InfiniBand service IDs)",
     [] { return bind_to(ib_address()); }},
    {"rdma_resolve_addr to an AF_IB address", "AF_IB addressing (native InfiniBand service IDs)",
     [] { return resolve_to(ib_address()); }},
    {"rdma_create_id with RDMA_PS_IB", "RDMA_PS_IB", [] { return create_id(RDMA_PS_IB); }},
    {"rdma_create_id with RDMA_PS_UDP", "RDMA_PS_UDP/RDMA_PS_IPOIB (UD QPs, multicast)",
     [] { return create_id(RDMA_PS_UDP); }},
    {"rdma_create_id with RDMA_PS_IPOIB", "RDMA_PS_UDP/RDMA_PS_IPOIB (UD QPs, multicast)",
     [] { return create_id(RDMA_PS_IPOIB); }},
    {"rdma_join_multicast to 239.1.2.3", "multicast (rdma_join_multicast, UD QPs)", join_multicast},
    {"rsocket(AF_INET, SOCK_STREAM, 0)", "rsockets (rsocket, rconnect, rsend ...)",
     [] { return rsocket(AF_INET, SOCK_STREAM, 0); }},
};
constexpr int kCalls = sizeof kUnbuilt / sizeof kUnbuilt[0];
constexpr int kTimes = 2;  ///< each call made twice: the second must add no stderr line

struct Answer {
  int rc;
  int err;
};

/// Makes every call of kUnbuilt twice in a child whose stderr goes to `err_file`; the
/// answers land in `answers` (shared memory). False (and `seen`) if the child failed.
bool run_unbuilt_in_child(FILE* err_file, Answer* answers, std::string& seen) {
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    seen = "fork failed, errno " + errno_text(errno);
    return false;
  }
  if (pid == 0) {
    dup2(fileno(err_file), STDERR_FILENO);
    for (int i = 0; i < kCalls; i++)
      for (int t = 0; t < kTimes; t++) {
        errno = 0;
        answers[i * kTimes + t].rc = kUnbuilt[i].run();
        answers[i * kTimes + t].err = errno;
      }
    std::exit(0);  // exit(), not _exit(): the runtime's log writes out its lines at exit
  }
  const auto deadline = std::chrono::steady_clock::now() + kChildTimeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      seen = "the child making the calls did not exit within 30 s (a hang)";
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    seen = "the child making the calls " +
           (WIFEXITED(status) ? "exited " + std::to_string(WEXITSTATUS(status))
                              : "was killed by signal " + std::to_string(WTERMSIG(status))) +
           ", expected exit 0";
    return false;
  }
  return true;
}

void check_unbuilt_answers(const Answer* answers) {
  for (int i = 0; i < kCalls; i++)
    for (int t = 0; t < kTimes; t++) {
      const Answer& a = answers[i * kTimes + t];
      check(a.rc == -1 && a.err == EOPNOTSUPP,
            std::string(kUnbuilt[i].call) + (t ? ", again" : "") + ": -1, EOPNOTSUPP",
            a.rc == kNoTcpId
                ? "not called: rdma_create_id of an RDMA_PS_TCP id to call it on failed, errno " +
                      errno_text(a.err)
                : call_text(a.rc, a.err) + "; expected -1 with EOPNOTSUPP");
    }
}

/// The child's stderr, its lines also shown (indented) on stdout.
std::vector<std::string> child_stderr(FILE* err_file) {
  std::vector<std::string> lines;
  std::rewind(err_file);
  char buf[1024];
  while (std::fgets(buf, sizeof buf, err_file)) lines.emplace_back(buf);
  std::printf("    the calls' stderr, %zu lines:\n", lines.size());
  for (const std::string& l : lines) std::printf("    | %s", l.c_str());
  return lines;
}

// Each feature on exactly one line "librdmacm: FEATURE is not built ... (EOPNOTSUPP)",
// and no other such line.
void check_unbuilt_stderr(const std::vector<std::string>& lines) {
  const std::string tail = " is not built in the userspace RoCE runtime (EOPNOTSUPP)";
  std::vector<std::string> features;
  for (const Unbuilt& u : kUnbuilt)
    if (features.empty() || features.back() != u.feature) features.emplace_back(u.feature);
  for (const std::string& f : features) {
    int n = 0;
    for (const std::string& l : lines) n += l.find("librdmacm: " + f + tail) != std::string::npos;
    check(n == 1, "stderr names '" + f + "' on exactly one line, however often it is asked for",
          std::to_string(n) + " lines say 'librdmacm: " + f + tail + "'; expected 1");
  }
  int all = 0;
  for (const std::string& l : lines) all += l.find(tail) != std::string::npos;
  check(all == static_cast<int>(features.size()), "stderr has no other 'is not built' line",
        std::to_string(all) + " such lines for " + std::to_string(features.size()) + " features");
}

// ---- 2. private data limits ------------------------------------------------------------
// REQ: 57 user bytes are refused and the id stays ready to connect; 56 reach the listener.
// Returns the listener's id of that request, still unanswered, for the REJ check.
rdma_cm_id* check_req_limit(Setup& s, rdma_cm_id*& active) {
  std::string seen;
  active = route_to_listener(s, seen);
  if (!active) {
    fail("an id resolved to the listener for the REQ checks", seen);
    return nullptr;
  }
  auto too_long = pattern(kReqUser + 1);
  rdma_conn_param p = conn_param(too_long);
  errno = 0;
  int rc = rdma_connect(active, &p);
  int e = errno;
  check(rc == -1 && e == EINVAL,
        "rdma_connect with 57 bytes of private data: -1, EINVAL (a REQ holds 92, 36 of them "
        "rdma_cm's header)",
        call_text(rc, e) + "; expected -1 with EINVAL");

  auto fits = pattern(kReqUser);
  p = conn_param(fits);
  errno = 0;
  rc = rdma_connect(active, &p);
  e = errno;
  rdma_cm_id* request = rc == 0 ? take_request(s, seen, &fits) : nullptr;
  check(request != nullptr,
        "rdma_connect with 56 bytes of private data on the same id: 0, the listener's "
        "CONNECT_REQUEST carries them",
        rc ? "rdma_connect returned " + call_text(rc, e) : seen + "; expected 56 bytes, as sent");
  return request;
}

// REJ: 149 bytes are refused and the request stays pending; 148 reach the active side.
void check_rej_limit(Setup& s, rdma_cm_id* request, rdma_cm_id* active) {
  auto too_long = pattern(kRejPrivate + 1);
  errno = 0;
  int rc = rdma_reject(request, too_long.data(), static_cast<uint8_t>(too_long.size()));
  int e = errno;
  check(rc == -1 && e == EINVAL,
        "rdma_reject with 149 bytes of private data: -1, EINVAL (a REJ holds 148)",
        call_text(rc, e) + "; expected -1 with EINVAL");

  auto fits = pattern(kRejPrivate);
  errno = 0;
  rc = rdma_reject(request, fits.data(), static_cast<uint8_t>(fits.size()));
  e = errno;
  std::string seen;
  check(rc == 0 && expect_rejected(s, kRejConsumerDefined, seen, &fits),
        "rdma_reject with 148 bytes on the same request: 0, the active side's REJECTED (status 28) "
        "carries them",
        rc ? "rdma_reject returned " + call_text(rc, e)
           : seen + "; expected status 28 and 148 bytes, as sent");
  destroy(request);
  destroy(active);
}

/// A connection up to the listener's CONNECT_REQUEST (no private data), a QP on each
/// side: `active` and `request` set, or false with `seen`.
bool pending_request(Setup& s, rdma_cm_id*& active, rdma_cm_id*& request, std::string& seen) {
  request = nullptr;
  active = route_to_listener(s, seen);
  if (!active) return false;
  rdma_conn_param p = conn_param({});
  if (rdma_connect(active, &p)) {
    seen = "rdma_connect failed, errno " + errno_text(errno);
    return false;
  }
  request = take_request(s, seen);
  if (request && !make_qp(request)) seen = "rdma_create_qp failed, errno " + errno_text(errno);
  return request && request->qp;
}

// REP, too long: rdma_accept with 197 bytes fails with EINVAL, and as in the kernel (whose
// rdma_accept rejects the request when its REP cannot be sent) the active side sees the
// request rejected, status 28.
void check_rep_too_long(Setup& s) {
  const std::string name =
      "rdma_accept with 197 bytes of private data: -1, EINVAL (a REP holds 196), the request "
      "rejected (status 28)";
  rdma_cm_id *active = nullptr, *request = nullptr;
  std::string seen;
  if (pending_request(s, active, request, seen)) {
    auto data = pattern(kRepPrivate + 1);
    rdma_conn_param p = conn_param(data);
    errno = 0;
    int rc = rdma_accept(request, &p);
    int e = errno;
    bool refused = rc == -1 && e == EINVAL;
    check(refused && expect_rejected(s, kRejConsumerDefined, seen), name,
          !refused ? call_text(rc, e) + "; expected -1 with EINVAL"
                   : seen + "; expected REJECTED with status 28");
  } else {
    fail(name, "setup: " + seen);
  }
  destroy(request);
  destroy(active);
}

// REP at the limit: rdma_accept with 196 bytes, and the active side's ESTABLISHED carries
// them. Then both ends disconnect: the active side's DREQ gives the passive side
// DISCONNECTED, and its rdma_disconnect answers with the DREP that gives the active side
// its own.
void check_rep_limit(Setup& s) {
  const std::string name =
      "rdma_accept with 196 bytes of private data: 0, the active side's ESTABLISHED carries them";
  rdma_cm_id *active = nullptr, *request = nullptr;
  std::string seen;
  if (!pending_request(s, active, request, seen)) {
    fail(name, "setup: " + seen);
    destroy(request);
    destroy(active);
    return;
  }
  auto data = pattern(kRepPrivate);
  rdma_conn_param p = conn_param(data);
  errno = 0;
  int rc = rdma_accept(request, &p);
  int e = errno;
  rdma_cm_event* ev = nullptr;
  bool ok = rc == 0 && next_event(s.active, RDMA_CM_EVENT_ESTABLISHED, &ev, seen);
  if (ok) {
    const auto& c = ev->param.conn;
    ok = c.private_data_len == data.size() && c.private_data &&
         std::memcmp(c.private_data, data.data(), data.size()) == 0;
    seen = "ESTABLISHED with private_data_len " + std::to_string(c.private_data_len);
    rdma_ack_cm_event(ev);
  }
  check(ok, name,
        rc ? "rdma_accept returned " + call_text(rc, e) : seen + "; expected 196 bytes, as sent");

  bool down = next_event(s.passive, RDMA_CM_EVENT_ESTABLISHED, &ev, seen);
  if (down) rdma_ack_cm_event(ev);
  down = down && rdma_disconnect(active) == 0 &&
         next_event(s.passive, RDMA_CM_EVENT_DISCONNECTED, &ev, seen);
  if (down) rdma_ack_cm_event(ev);
  down = down && rdma_disconnect(request) == 0 &&
         next_event(s.active, RDMA_CM_EVENT_DISCONNECTED, &ev, seen);
  if (down) rdma_ack_cm_event(ev);
  if (!down)
    fail("the connection accepted with 196 bytes: ESTABLISHED and DISCONNECTED on both sides",
         seen);
  destroy(request);
  destroy(active);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  Setup s;
  s.addr.sin_family = AF_INET;
  if (argc != 3 || inet_pton(AF_INET, argv[1], &s.addr.sin_addr) != 1 || std::atoi(argv[2]) <= 0 ||
      std::atoi(argv[2]) > 65535) {
    std::fprintf(stderr,
                 "usage: scripts/userspace-roce.sh --addr ADDR -- %s ADDR PORT\n"
                 "  ADDR: this process's IPv4 address (its listener's and device's), PORT: an RDMA "
                 "CM port\n",
                 argv[0]);
    return 2;
  }
  s.addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));

  // 1, in a child forked before this process has touched the runtime.
  auto* answers =
      static_cast<Answer*>(mmap(nullptr, sizeof(Answer) * kCalls * kTimes, PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  FILE* err_file = std::tmpfile();
  std::string seen;
  if (answers == MAP_FAILED || !err_file) {
    fail("setup of the not-built checks", "mmap or tmpfile failed, errno " + errno_text(errno));
  } else if (!run_unbuilt_in_child(err_file, answers, seen)) {
    fail("the not-built calls", seen);
    child_stderr(err_file);
  } else {
    check_unbuilt_answers(answers);
    check_unbuilt_stderr(child_stderr(err_file));
  }

  // 2: a listener at ADDR:PORT, and the active ids on a channel of their own.
  s.passive = rdma_create_event_channel();
  s.active = rdma_create_event_channel();
  if (!s.passive || !s.active || rdma_create_id(s.passive, &s.listener, nullptr, RDMA_PS_TCP) ||
      rdma_bind_addr(s.listener, reinterpret_cast<sockaddr*>(&s.addr)) ||
      rdma_listen(s.listener, 4)) {
    fail("a listener at " + std::string(argv[1]) + ":" + argv[2],
         "errno " + errno_text(errno) + " (run at that address: scripts/userspace-roce.sh --addr " +
             argv[1] + ")");
  } else {
    rdma_cm_id* active = nullptr;
    if (rdma_cm_id* request = check_req_limit(s, active))
      check_rej_limit(s, request, active);
    else
      destroy(active);
    check_rep_too_long(s);
    check_rep_limit(s);
    rdma_destroy_id(s.listener);
  }
  if (s.active) rdma_destroy_event_channel(s.active);
  if (s.passive) rdma_destroy_event_channel(s.passive);

  return api_check::tally();
}
