// The CM's port to the device: the device context (opened once, when an id first needs
// it), QP 1 (the general services interface, src/gsi.h) through which the CM's MADs come
// and go, the CM thread that feeds received MADs and timer expiries to the Manager, and
// the test hooks UROCE_CM_DROP and UROCE_CM_CONNECT_GATE. Also the library's log and
// settings.
#include <endian.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "cma.hpp"
#include "gsi.h"

namespace uroce::rdmacm {

// Every global lives for the whole process and is never destroyed: the CM thread, and
// atexit handlers or static destructors calling rdma_* functions, may use them while the
// process exits and must never meet a destroyed lock.
Lib& lib() {
  static Lib* l = new Lib;
  return *l;
}

// ---- log -----------------------------------------------------------------------------
static void vsay(const char* fmt, va_list ap) {
  char line[512];
  int n = std::snprintf(line, sizeof line, "librdmacm: ");
  std::vsnprintf(line + n, sizeof line - static_cast<size_t>(n), fmt, ap);
  uroce_log_text(line);
}

void say(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsay(fmt, ap);
  va_end(ap);
}

void trace(const char* fmt, ...) {
  if (uroce_log_level() < 1) return;
  va_list ap;
  va_start(ap, fmt);
  vsay(fmt, ap);
  va_end(ap);
}

void not_built(const char* feature, const char* what_works) {
  static std::mutex mu;
  static std::set<std::string>* told = new std::set<std::string>;
  {
    std::lock_guard<std::mutex> l(mu);
    if (told->insert(feature).second)
      say("%s is not built in the userspace RoCE runtime (EOPNOTSUPP); %s", feature,
          what_works);
  }
  errno = EOPNOTSUPP;
}

std::string ip_str(uint32_t ip) {
  char b[16];
  std::snprintf(b, sizeof b, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255,
                ip & 255);
  return b;
}

// ---- UROCE_CM_DROP -------------------------------------------------------------------
// The CM message types by MAD attribute ID (IBA 12.6: 0x0010 REQ ... 0x0016 DREP).
namespace {
struct MadType {
  const char* name;
  uint16_t attr;
};
constexpr MadType kTypes[] = {{"req", 0x0010}, {"mra", 0x0011}, {"rej", 0x0012},
                              {"rep", 0x0013}, {"rtu", 0x0014}, {"dreq", 0x0015},
                              {"drep", 0x0016}};
constexpr const char* kDropNames = "req,rep,rtu,rej,dreq,drep";

struct Settings {
  int error = 0;
  /// Attribute IDs whose first transmission is still to be dropped (lock held to use).
  std::set<uint16_t> drop_first;
  /// UROCE_CM_CONNECT_GATE: the directory whose files open rdma_connect's gates ("": none).
  std::string connect_gate;
};

// UROCE_CM_CONNECT_GATE=DIR: an existing directory, or refused like a wrong UROCE_CM_DROP.
int read_connect_gate(Settings& st) {
  const char* v = std::getenv("UROCE_CM_CONNECT_GATE");
  if (!v || !*v) return 0;
  struct stat sb {};
  if (stat(v, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    say("UROCE_CM_CONNECT_GATE=%s refused: it must name an existing directory (each "
        "rdma_connect of this process waits for its file there, 1, 2, ...)",
        v);
    return EINVAL;
  }
  st.connect_gate = v;
  return 0;
}

Settings& settings() {
  static Settings* s = [] {
    auto* st = new Settings;
    st->error = read_connect_gate(*st);
    const char* v = std::getenv("UROCE_CM_DROP");
    if (!v || !*v) return st;
    std::string all(v);
    size_t pos = 0;
    while (pos <= all.size()) {
      size_t comma = all.find(',', pos);
      std::string name = all.substr(pos, comma == std::string::npos ? std::string::npos
                                                                    : comma - pos);
      bool found = false;
      for (const MadType& t : kTypes)
        if (name == t.name && std::strcmp(t.name, "mra") != 0) {
          st->drop_first.insert(t.attr);
          found = true;
        }
      if (!found) {
        say("UROCE_CM_DROP=%s: '%s' is not a CM message this hook can drop; give a comma "
            "list of %s (each drops the first transmission of that message type)",
            v, name.c_str(), kDropNames);
        st->error = EINVAL;
        st->drop_first.clear();
        break;
      }
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    return st;
  }();
  return *s;
}

const char* type_name(uint16_t attr) {
  for (const MadType& t : kTypes)
    if (t.attr == attr) return t.name;
  return "mad";
}
}  // namespace

int wait_connect_gate() {
  const std::string& dir = settings().connect_gate;
  if (dir.empty()) return 0;
  static std::atomic<unsigned> connects{0};
  const std::string path = dir + "/" + std::to_string(++connects);
  // The file, not a time, decides: a test makes it once the peer listens. Looked for
  // every 10 ms until 120 s have passed by the clock (a loaded machine's sleeps overrun).
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  do {
    if (access(path.c_str(), F_OK) == 0) {
      trace("UROCE_CM_CONNECT_GATE: %s is there: rdma_connect goes on", path.c_str());
      return 0;
    }
    usleep(10000);
  } while (std::chrono::steady_clock::now() < end);
  say("UROCE_CM_CONNECT_GATE: no %s within 120 s: rdma_connect fails with ETIMEDOUT",
      path.c_str());
  return ETIMEDOUT;
}

int lib_init() {
  static bool sink_set = [] {
    // The Manager's log lines go to the runtime's log, at the runtime's UROCE_LOG level.
    cm::log_sink.level = uroce_log_level();
    cm::log_sink.write = uroce_log_text;
    return true;
  }();
  (void)sink_set;
  return settings().error;
}

// ---- the device ----------------------------------------------------------------------
namespace {

/// MADs received on QP 1, copied by the engine's callback for the CM thread.
struct Inbox {
  std::mutex mu;
  struct Mad {
    uint32_t src_ip;
    uint8_t data[UROCE_MAD_SIZE];
  };
  std::vector<Mad> mads;
  int wake_fd = -1;  ///< eventfd: a MAD arrived, or an application call moved a deadline
};
Inbox& inbox() {
  static Inbox* i = new Inbox;
  return *i;
}

void wake_cm_thread() {
  uint64_t one = 1;
  if (inbox().wake_fd >= 0) (void)!write(inbox().wake_fd, &one, sizeof one);
}

// Runs on the device's engine thread with the device locked: copy and wake, nothing else.
void gsi_receive(void*, uint32_t src_ip, uint32_t, const uint8_t* mad) {
  Inbox& in = inbox();
  {
    std::lock_guard<std::mutex> l(in.mu);
    in.mads.push_back({});
    in.mads.back().src_ip = src_ip;
    std::memcpy(in.mads.back().data, mad, UROCE_MAD_SIZE);
  }
  wake_cm_thread();
}

Device* g_device = nullptr;
/// Set by stop_at_exit, under the library lock.
bool g_exiting = false;

/// The Manager's MADs go out through the device's QP 1 (a UD SEND to QP 1 of dst_ip).
struct GsiSender : cm::MadSender {
  ibv_context* ctx = nullptr;
  void send(uint32_t dst_ip, const uint8_t* mad) override {
    // Called with the library lock held (every Manager call is). Once the process exits
    // nothing is sent: the device may be going away.
    if (g_exiting) return;
    uint16_t attr = static_cast<uint16_t>(mad[16] << 8 | mad[17]);
    // A REQ, REP or DREQ waits for its answer and goes again when its timer runs out; an
    // MRA, RTU, REJ or DREP is sent once, and again only when the peer resends the message
    // it answers (cm.cpp).
    const bool timed = attr == 0x0010 || attr == 0x0013 || attr == 0x0015;
    const char* again = timed
        ? "the CM's timer sends it again while the connection waits for its answer"
        : "the CM sends it again only when the peer resends the message it answers";
    auto& drop = settings().drop_first;
    if (drop.erase(attr)) {
      say("UROCE_CM_DROP: dropped the first %s (to %s); %s", type_name(attr),
          ip_str(dst_ip).c_str(), again);
      return;
    }
    int err = uroce_gsi_send(ctx, dst_ip, mad);
    if (err)
      trace("sending a %s to %s failed: %s (%s)", type_name(attr), ip_str(dst_ip).c_str(),
            std::strerror(err), again);
  }
};

// Deferred work may itself call the Manager (a REJ for a malformed REQ) and defer more.
void run_deferred() {
  while (!lib().deferred.empty()) {
    auto work = std::move(lib().deferred);
    lib().deferred.clear();
    for (auto& w : work) w();
  }
}

void cm_thread_main(Device* dev) {
  Inbox& in = inbox();
  std::vector<Inbox::Mad> mads;
  for (;;) {
    int timeout_ms = -1;
    {
      std::lock_guard<std::mutex> l(lib().mu);
      if (g_exiting) return;
      auto d = dev->mgr->next_deadline();
      if (auto r = resolve_tick(cm::Clock::now()); r && (!d || *r < *d)) d = r;
      if (d) {
        auto now = cm::Clock::now();
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(*d - now).count();
        timeout_ms = ms <= 0 ? 0 : ms > 60000 ? 60000 : static_cast<int>(ms);
      }
    }
    pollfd p{in.wake_fd, POLLIN, 0};
    int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno != EINTR) {
      say("the CM thread's poll failed: %s; connections stop progressing",
          std::strerror(errno));
      return;
    }
    uint64_t count;
    if (r > 0) (void)!read(in.wake_fd, &count, sizeof count);
    {
      std::lock_guard<std::mutex> l(in.mu);
      mads.swap(in.mads);
    }
    std::lock_guard<std::mutex> l(lib().mu);
    if (g_exiting) return;
    for (const auto& m : mads) {
      dev->mgr->receive(m.src_ip, m.data, UROCE_MAD_SIZE);
      run_deferred();
    }
    mads.clear();
    dev->mgr->run_timers(cm::Clock::now());
    run_deferred();
  }
}

// At exit the runtime's libibverbs tears its device down (its destructors run after this
// handler, registered once the device is open). Stop the CM first, so that it no longer
// touches a device being destroyed: under the library lock, mark the exit (the CM thread
// returns when it next takes the lock, and the Manager's MADs are no longer sent) and
// detach from QP 1 (the engine's callback is no longer called). The lock is released: an
// atexit handler or static destructor that runs later may still call rdma_* functions
// (rdma_destroy_id ...); they return, with the CM silent, and a synchronous id's wait for
// an event that can no longer come fails at once (ENODEV, complete_sync).
void stop_at_exit() {
  {
    std::lock_guard<std::mutex> l(lib().mu);
    g_exiting = true;
    if (g_device) uroce_gsi_detach(g_device->ctx);
  }
  wake_cm_thread();
}

}  // namespace

void after_manager_call() {
  run_deferred();
  wake_cm_thread();
}

Device* device_if_open() { return g_device; }

bool exiting() { return g_exiting; }

Device* device_locked() {
  if (g_device) return g_device;
  int num = 0;
  ibv_device** list = ibv_get_device_list(&num);
  if (!list) return nullptr;  // the runtime said why (an invalid UROCE_* setting)
  if (num < 1) {
    ibv_free_device_list(list);
    say("no RDMA device: the runtime's libibverbs offers none (is LD_LIBRARY_PATH "
        "pointing at the userspace runtime's lib/?)");
    errno = ENODEV;
    return nullptr;
  }
  auto* dev = new Device;
  dev->ctx = ibv_open_device(list[0]);
  ibv_free_device_list(list);
  if (!dev->ctx) {
    int e = errno;
    delete dev;
    errno = e ? e : ENODEV;
    return nullptr;
  }
  dev->pd = ibv_alloc_pd(dev->ctx);
  if (!dev->pd || ibv_query_device(dev->ctx, &dev->attr) ||
      ibv_query_port(dev->ctx, 1, &dev->port)) {
    int e = errno ? errno : ENODEV;
    if (dev->pd) ibv_dealloc_pd(dev->pd);
    ibv_close_device(dev->ctx);
    delete dev;
    errno = e;
    return nullptr;
  }
  dev->ip = uroce_device_ipv4(dev->ctx);
  Inbox& in = inbox();
  in.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  auto* sender = new GsiSender;
  sender->ctx = dev->ctx;
  dev->mgr = new cm::Manager(*sender, dev->ip, [](const cm::Event& ev) { deliver(ev); });
  // The CA GUID of our REQs and REPs: the device's node GUID (big-endian in the verbs
  // attributes, host order for the Manager).
  dev->mgr->set_ca_guid(be64toh(dev->attr.node_guid));
  int err = in.wake_fd < 0 ? errno : uroce_gsi_attach(dev->ctx, gsi_receive, nullptr);
  if (err) {
    say("cannot attach the CM to the device's QP 1: %s", std::strerror(err));
    errno = err;
    return nullptr;  // leaks the half-made device: a process that gets here cannot use CM
  }
  std::thread(cm_thread_main, dev).detach();
  g_device = dev;
  std::atexit(stop_at_exit);
  trace("uroce0 at %s: CM on QP 1, port 1 active MTU %d", ip_str(dev->ip).c_str(),
        128 << dev->port.active_mtu);
  return dev;
}

}  // namespace uroce::rdmacm
