// The address layer of the runtime's librdmacm.so.1 (the kernel's cma.c + ucma.c and
// rdma-core's librdmacm/cma.c, folded into one process): rdma_cm_ids and their states,
// IPv4 addresses and TCP-space ports, event channels, and the QP transitions around the
// CM protocol (cm.hpp). One device per process (uroce0 at 127.0.0.x, GID ::ffff:127.0.0.x).
//
// Locking: one library lock (lib().mu) guards every id, channel, port and the Manager.
// The CM thread (gsi_port.cpp) takes it around Manager::receive/run_timers; application
// threads take it in every rdma_* call. Verbs (ibv_modify_qp ...) may be called under it:
// the runtime's GSI callback, the only code of the device's engine that reaches us, takes
// a separate queue lock and never this one.
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <rdma/rdma_verbs.h>

#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "cm.hpp"

#define RDMACM_EXPORT extern "C" __attribute__((visibility("default")))

namespace uroce::rdmacm {

// ---- constants of the kernel's cma.c / ib_cm.h, RoCE flavour --------------------------
/// RDMA_PS_TCP's service IDs: 0x0000000001060000 | port (IBA annex A11.2.1).
constexpr uint64_t kServiceIdTcp = static_cast<uint64_t>(RDMA_PS_TCP) << 16;
/// struct cma_hdr: version, IP version (high nibble), source port, source and destination
/// address as 16-byte fields (IPv4 in the last 4 bytes): the first 36 bytes of every REQ's
/// private data, which the active side's cma.c writes and the passive side's reads.
constexpr size_t kCmaHdrSize = 36;
constexpr size_t kReqPrivate = 92;   // IB_CM_REQ_PRIVATE_DATA_SIZE
constexpr size_t kRepPrivate = 196;  // IB_CM_REP_PRIVATE_DATA_SIZE
constexpr size_t kRejPrivate = 148;  // IB_CM_REJ_PRIVATE_DATA_SIZE
constexpr size_t kReqUser = kReqPrivate - kCmaHdrSize;  // 56 bytes left to the user
/// CMA_IBOE_PACKET_LIFETIME: RoCE has no SA to ask, so cma.c assumes 2^18 * 4.096 us.
constexpr uint8_t kPacketLifeTime = 18;
/// The hop limit cma.c takes from the IPv4 route (ip4_dst_hoplimit: 64 by default).
constexpr uint8_t kHopLimit = 64;
/// IBA SA selector "exactly" (IB_SA_EQ) for the path record's MTU, rate and lifetime.
constexpr uint8_t kSaEq = 2;
/// The flow label field of a GRH and a path record: 20 bits (IB_GRH_FLOWLABEL_MASK).
constexpr uint32_t kFlowLabelMask = 0xFFFFF;

/// cma.c's cma_get_roce_udp_flow_label for an IPv4 id: a flow label hashed from the
/// rdma_cm ports (host order), which RoCE v2 devices may use to spread the connection's
/// UDP source ports. Lesson 02's REQ (frame 3): 48650 x 31 + 7471 -> 0x72065.
constexpr uint32_t roce_udp_flow_label(uint16_t src_port, uint16_t dst_port) {
  return (static_cast<uint32_t>(src_port) * 31 + dst_port) & kFlowLabelMask;
}

// ---- how long the Manager's CM exchanges can last (cm.cpp, as the kernel's cm.c) -------
/// CMA_CM_RESPONSE_TIMEOUT, both CM response timeouts of every REQ (4.096 us x 2^20).
constexpr unsigned kCmResponseTimeout = 20;
/// CMA_MAX_CM_RETRIES: a REQ, REP or DREQ is resent at most this often.
constexpr unsigned kCmMaxRetries = 15;
/// The service timeout of the MRA a CM sends while its consumer has not answered a REQ
/// or REP yet (CMA_CM_MRA_SETTING's 24, Linux's and this Manager's).
constexpr unsigned kMraServiceTimeout = 24;
/// cm.c's cm_convert_to_ms: 4.096 us x 2^t taken as 2^(t - 8) ms.
constexpr uint64_t cm_ms(unsigned t) { return uint64_t{1} << (t > 8 ? t - 8 : 0); }
/// The longest a CM exchange can run before the Manager ends it itself (req_error,
/// rep_error, dreq_error), for the REQ's local ACK timeout exponent `ack` (19 over RoCE
/// by default; the Manager takes packet life time = ack - 1, av.timeout = ack). A REQ
/// waits W1 = 2 x 2^(life - 8) + 2^(20 - 8) ms for its answer; an MRA arriving just
/// before W1 ends makes it wait W2 = 2^(24 - 8) + 2^(ack - 8) ms once more and then W2
/// before each of its 15 resends: W1 + 16 x W2 = 6144 + 16 x 67584 = 1 087 488 ms (18 min
/// 7.5 s) with the defaults. An MRA coming later leaves fewer resends, so less; a REP waits
/// 2^(20 - 8) = 4096 ms before its MRA, less than W1; a DREQ gets no MRA.
constexpr uint64_t cm_longest_exchange_ms(unsigned ack) {
  const unsigned life = ack > 0 ? ack - 1 : 0;
  const uint64_t w1 = 2 * cm_ms(life) + cm_ms(kCmResponseTimeout);
  const uint64_t w2 = cm_ms(kMraServiceTimeout) + cm_ms(ack);
  return w1 + (1 + kCmMaxRetries) * w2;
}
static_assert(cm_longest_exchange_ms(19) == 1087488);
/// A synchronous id's wait for its event gives up (ETIMEDOUT) this long after the CM's
/// longest exchange would have ended: only a lost event (a bug) gets that far.
constexpr int kSyncDeadlineMarginSeconds = 60;
/// How long rdma_destroy_id/rdma_migrate_id wait for acknowledgements before they say so
/// on stderr (once; they go on waiting).
constexpr int kAckDeadlineSeconds = 10;

/// The kernel's enum rdma_cm_state, as far as a RoCE RC id travels.
enum class State { idle, addr_bound, addr_resolved, route_resolved, listen, connect, disconnect };

struct IdPriv;

/// One event, queued on a channel until rdma_get_cm_event hands it out, then owned by the
/// application until rdma_ack_cm_event. `event` first: rdma_cm_event* <-> EventPriv*.
struct EventPriv {
  rdma_cm_event event{};
  uint8_t private_data[256]{};  // librdmacm's RDMA_MAX_PRIVATE_DATA
  /// The id whose count of reported events this one belongs to: the listener for a
  /// CONNECT_REQUEST (as the kernel's ucma reports it on the listener's context).
  IdPriv* owner = nullptr;
  /// A REP that rdma_get_cm_event turns into ESTABLISHED (after RTR, RTS and the RTU) or,
  /// for an id without a QP, CONNECT_RESPONSE: librdmacm makes these transitions on the
  /// thread that takes the event, not in the kernel.
  bool rep = false;
};

/// rdma_event_channel: `ch.fd` is an eventfd in semaphore mode whose count is the number
/// of queued events (changed only under the library lock), so the fd is readable exactly
/// while an event waits, and a program may poll it or make it O_NONBLOCK.
struct ChannelPriv {
  rdma_event_channel ch{};  // first: rdma_event_channel* <-> ChannelPriv*
  std::deque<EventPriv*> queue;
};

struct IdPriv {
  rdma_cm_id id{};  // first: rdma_cm_id* <-> IdPriv*
  bool sync = false;  ///< created without a channel: it has a private one (rdma_create_ep)
  State state = State::idle;
  uint32_t cm_id = 0;          ///< the Manager's connection, 0 if none
  uint64_t service_id = 0;     ///< listening on it, 0 if not
  uint16_t port = 0;           ///< reserved local port (host order), 0 if none
  uint32_t local_ip = 0;       ///< host order; 0: wildcard
  uint32_t peer_ip = 0;        ///< host order
  /// The starting PSN this id announces in its REQ or REP (the kernel's id_priv->seq_num,
  /// random): our QP's receive queue starts there (RTR rq_psn, cma.c's rdma_init_qp_attr)
  /// and the peer's QP sends from it. Our QP sends from the PSN the peer announced (RTS
  /// sq_psn, from the Manager as from ib_cm_init_qp_attr).
  uint32_t psn = 0;
  bool passive = false;        ///< made by a REQ (a listener's CONNECT_REQUEST)
  unsigned resolve_timeout_ms = 0;  ///< the pending rdma_resolve_addr's timeout_ms
  ibv_ece local_ece{};         ///< rdma_set_local_ece (kept, as librdmacm does)
  ibv_ece remote_ece{};
  int events_reported = 0;     ///< handed to the application
  int events_completed = 0;    ///< acknowledged
  bool connect_error = false;  ///< a REP's transitions failed: later REJ/DISCONNECTED dropped
  /// The CM connection is established (RTU sent or received, or rdma_notify COMM_EST) and
  /// no DREQ has gone or come yet: the kernel CM's ESTABLISHED, which rdma_notify's
  /// IBV_EVENT_PATH_MIG asks for.
  bool cm_established = false;
  /// The REQ's local ACK timeout exponent (sent or received), 0 before any REQ: how long
  /// the Manager's exchanges may take (cm_longest_exchange_ms).
  uint8_t req_ack_timeout = 0;
  uint8_t initiator_depth = 0;
  uint8_t responder_resources = 0;
  uint8_t tos = 0;
  bool timeout_set = false;
  uint8_t timeout = 0;         ///< RDMA_OPTION_ID_ACK_TIMEOUT
  bool reuseaddr = false;      ///< RDMA_OPTION_ID_REUSEADDR
  /// RDMA_OPTION_ID_AFONLY if set (-1 if not): an id bound to AF_INET6 then takes only
  /// IPv6 peers and shares its port with AF_INET ids that are AF_INET-only too.
  int afonly_option = -1;
  bool afonly = false;         ///< as cma.c decides at bind time (cma_check_port uses it)
  ibv_sa_path_rec path{};      ///< id.route.path_rec points here once the route is known
  std::vector<uint8_t> connect_data;    ///< rdma_create_ep's ai_connect, ahead of the user's
  bool has_qp_init_attr = false;        ///< rdma_create_ep passive: QP made by get_request
  ibv_qp_init_attr qp_init_attr{};
};

inline IdPriv* priv(rdma_cm_id* id) { return reinterpret_cast<IdPriv*>(id); }
inline ChannelPriv* priv(rdma_event_channel* ch) { return reinterpret_cast<ChannelPriv*>(ch); }

/// Everything the library lock guards.
struct Lib {
  std::mutex mu;
  std::condition_variable acked;  ///< an event was acknowledged (rdma_destroy_id waits)
  std::set<IdPriv*> ids;
  std::unordered_map<uint32_t, IdPriv*> by_cm;  ///< Manager connection -> id
  /// TCP-space ports and the ids bound to each (the kernel's rdma_bind_list owners:
  /// several when RDMA_OPTION_ID_REUSEADDR or distinct addresses allow it).
  std::map<uint16_t, std::vector<IdPriv*>> ports;
  /// Work the Manager's deliver callback may not do itself (call into the Manager): run by
  /// whoever made the Manager call, once it returned, still under the lock.
  std::vector<std::function<void()>> deferred;
  /// rdma_resolve_addr calls still waiting for a process to hold their destination, and
  /// when each gives up (its timeout_ms): the runtime's stand-in for ARP (resolve_tick).
  std::map<IdPriv*, cm::Clock::time_point> resolving;
};
Lib& lib();
/// The CM thread's share of address resolution (cma_address.cpp): completes each pending
/// rdma_resolve_addr whose destination a process now holds (ADDR_RESOLVED) or whose
/// timeout has passed (ADDR_ERROR, ETIMEDOUT). Lock held. Returns when to look again.
std::optional<cm::Clock::time_point> resolve_tick(cm::Clock::time_point now);

// ---- the device and the CM thread (gsi_port.cpp) --------------------------------------
struct Device {
  ibv_context* ctx = nullptr;
  ibv_pd* pd = nullptr;        ///< shared by every id, as librdmacm's cma_dev->pd
  uint32_t ip = 0;             ///< host order
  ibv_device_attr attr{};
  ibv_port_attr port{};
  cm::Manager* mgr = nullptr;
};
/// The library's settings and checks (UROCE_CM_DROP, UROCE_CM_CONNECT_GATE): 0, or
/// EINVAL (said once on stderr).
int lib_init();
/// The test hook UROCE_CM_CONNECT_GATE=DIR: the process's Nth rdma_connect waits, before
/// anything but its null-id check, until the file DIR/N exists (N from 1; a call that then
/// fails counts too). 0, or ETIMEDOUT once 120 s have passed (said on stderr). Without the
/// variable: 0 at once. Lock not held (it may wait).
int wait_connect_gate();
/// The device, opened on first use (bind to an address, resolve, listen). Lock held.
/// nullptr with errno set if it cannot be opened.
Device* device_locked();
/// The device if it is open, else nullptr.
Device* device_if_open();
/// The process is exiting (stop_at_exit ran): the CM sends nothing and its thread has
/// stopped, so no CM event can come any more. Lock held.
bool exiting();
/// After a Manager call from an application thread: runs the deferred work and wakes the
/// CM thread, whose next deadline may have moved. Lock held.
void after_manager_call();

// ---- log -----------------------------------------------------------------------------
/// One line on the runtime's stderr log (prefixed like every runtime line).
void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/// `say` once per process per feature, then errno = EOPNOTSUPP.
void not_built(const char* feature, const char* what_works);
/// UROCE_LOG >= 1: a line about an id's progress.
void trace(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string ip_str(uint32_t ip);

// ---- channels (cma_channel.cpp) ------------------------------------------------------
ChannelPriv* channel_create();
void channel_destroy(ChannelPriv* ch);
/// Queues `e` for id's channel (the owner's, see EventPriv). Lock held.
void queue_event(IdPriv* to, EventPriv* e);
/// A fresh event for `id` of `type`, status 0.
EventPriv* new_event(IdPriv* id, rdma_cm_event_type type, int status = 0);
/// Removes `id`'s queued events, destroying the ids of CONNECT_REQUESTs it was listening
/// for. Lock held.
void drop_queued_events(IdPriv* id);
/// The next event of a synchronous id (librdmacm's ucma_complete): 0 or -1 with errno.
/// Lock held (released while waiting).
int complete_sync(IdPriv* id, std::unique_lock<std::mutex>& lk);
/// Wait with the lock until `id`'s reported events are all acknowledged.
void wait_acked(IdPriv* id, std::unique_lock<std::mutex>& lk, const char* who);

// ---- addresses (cma_address.cpp) -----------------------------------------------------
/// Puts the device into `id` (verbs, pd, port 1, sgid). Lock held. 0 or errno.
int attach_device(IdPriv* id);
/// Fills id's path record for RoCE as cma_resolve_iboe_route does (active side) or as
/// the CM's REQ makes it for the passive side, route.num_paths = 1. `flow_label` host order.
void fill_path(IdPriv* id, ibv_mtu mtu, uint8_t packet_life_time, uint32_t flow_label);
void set_sockaddr(sockaddr_storage& ss, uint32_t ip, uint16_t port);
void gid_from_ip(ibv_gid& gid, uint32_t ip);
void release_port(IdPriv* id);
IdPriv* alloc_id(ChannelPriv* ch, void* context, rdma_port_space ps, ibv_qp_type qpt);
/// Frees an id the application never saw or has finished with. Lock held.
void free_id(IdPriv* id);
/// rdma_bind_addr under the lock. 0 or errno.
int bind_locked(IdPriv* id, const sockaddr* addr);

// ---- connections (cma_connect.cpp) ---------------------------------------------------
/// The Manager's deliver callback. Lock held.
void deliver(const cm::Event& ev);
/// rdma_get_cm_event's per-event work on a popped event (REP transitions, dropped
/// events). Returns false if the event is not for the application (it was freed).
bool process_popped(EventPriv* e);
/// QP -> ERR (librdmacm's ucma_modify_qp_err). Lock held.
int modify_qp_err(IdPriv* id);
/// rdma_init_qp_attr under the lock. 0 or errno.
int init_qp_attr_locked(IdPriv* id, ibv_qp_attr& attr, int& mask);

}  // namespace uroce::rdmacm
