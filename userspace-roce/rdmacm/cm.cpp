// The CM's connection states and timers (cm.hpp), after the Linux kernel's
// drivers/infiniband/core/cm.c as rdma_cm (cma.c) drives it over RoCE v2. The names of
// the states and of the kernel functions each step follows are given where they happen.
#include "cm.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <map>
#include <random>

#include "cm_mad.hpp"

namespace uroce::cm {

LogSink log_sink;

namespace {

// ---- what rdma_cm asks of the CM over RoCE (cma.c, Linux 6.1) ---------------------------
/// CMA_CM_RESPONSE_TIMEOUT: both CM response timeouts of the REQ (4.096 us x 2^20).
constexpr uint8_t kCmResponseTimeout = 20;
/// CMA_MAX_CM_RETRIES: the REQ's Max CM Retries, the resends of a REQ, REP or DREQ.
constexpr uint8_t kMaxCmRetries = 15;
/// CMA_CM_MRA_SETTING without IB_CM_MRA_FLAG_DELAY: the service timeout of the MRA sent
/// for a duplicate REQ or REP that the consumer has not answered yet.
constexpr uint8_t kMraServiceTimeout = 24;
/// The REQ's path fields over RoCE v2, as the kernel fills them (lesson02.pcap frame 3):
/// P_Key 0xFFFF, both LIDs permissive (cm_format_req does so when the hop limit is above
/// 1), hop limit 64, traffic class, SL and packet rate 0.
constexpr uint16_t kPkey = 0xFFFF;
constexpr uint16_t kPermissiveLid = 0xFFFF;
constexpr uint8_t kHopLimit = 64;
constexpr uint32_t kQpnMask = 0xFFFFFF;

/// cm.c's cm_convert_to_ms: 4.096 us x 2^t approximated as 2^(t - 8) ms (t = 20 -> 4096
/// ms, where 4.096 us x 2^20 is 4295 ms).
uint32_t convert_to_ms(unsigned iba_time) {
  return 1u << (iba_time > 8 ? std::min(iba_time - 8, 31u) : 0u);
}

/// cm.c's cm_ack_timeout: the QP's ACK timeout for a path life time and the responder's
/// ACK delay, 4.096 us x 2^ack_delay + 2 x 4.096 us x 2^life_time rounded to one power of
/// two: the larger of ack_delay and life_time + 1, plus one if the other is within half.
uint8_t ack_timeout(uint8_t ca_ack_delay, uint8_t packet_life_time) {
  int t = packet_life_time + 1;
  if (t >= ca_ack_delay)
    t += (ca_ack_delay >= t - 1);
  else
    t = ca_ack_delay + (t >= ca_ack_delay - 1);
  return static_cast<uint8_t>(std::min(31, t));
}

/// The kernel's cm_id states (enum ib_cm_state) this Manager uses.
enum class State {
  req_sent,      ///< IB_CM_REQ_SENT: active, waiting for REP, REJ or MRA
  mra_req_rcvd,  ///< IB_CM_MRA_REQ_RCVD: active, the peer asked for more time
  /// IB_CM_REQ_RCVD: passive, the REQ is being delivered (req_received). Only inside
  /// on_req: a REJ from here (Event::refuse) carries local communication ID 0.
  req_rcvd,
  /// IB_CM_MRA_REQ_SENT: passive, the consumer has the REQ and has not answered. cma.c's
  /// cma_ib_req_handler enters it (ib_send_cm_mra with IB_CM_MRA_FLAG_DELAY) once its
  /// consumer has taken the event; no MRA is sent then, but a duplicate REQ is answered
  /// with one (cm_dup_req_handler).
  mra_req_sent,
  rep_sent,      ///< IB_CM_REP_SENT: passive, waiting for RTU
  mra_rep_rcvd,  ///< IB_CM_MRA_REP_RCVD
  /// Active, the consumer has the REP and has not answered: IB_CM_MRA_REP_SENT, which
  /// cma.c's cma_ib_handler enters as it takes the REP (ib_send_cm_mra with
  /// IB_CM_MRA_FLAG_DELAY; the kernel's REP_RCVD lasts no longer than that, and a REJ
  /// carries our local ID in both); a duplicate REP is answered with an MRA.
  rep_rcvd,
  established,   ///< IB_CM_ESTABLISHED
  dreq_sent,     ///< IB_CM_DREQ_SENT
  dreq_rcvd,     ///< IB_CM_DREQ_RCVD
  timewait,      ///< IB_CM_TIMEWAIT
  idle,          ///< IB_CM_IDLE: nothing left but the consumer's ID
};

const char* state_name(State s) {
  switch (s) {
    case State::req_sent: return "REQ_SENT";
    case State::mra_req_rcvd: return "MRA_REQ_RCVD";
    case State::req_rcvd: return "REQ_RCVD";
    case State::mra_req_sent: return "MRA_REQ_SENT";
    case State::rep_sent: return "REP_SENT";
    case State::mra_rep_rcvd: return "MRA_REP_RCVD";
    case State::rep_rcvd: return "MRA_REP_SENT";  // see State::rep_rcvd
    case State::established: return "ESTABLISHED";
    case State::dreq_sent: return "DREQ_SENT";
    case State::dreq_rcvd: return "DREQ_RCVD";
    case State::timewait: return "TIMEWAIT";
    case State::idle: return "IDLE";
  }
  return "?";
}

/// States in which the kernel keeps a connection in its remote-ID and remote-QPN tables
/// (inserted on the REQ at the passive side and on the REP at the active side, removed on
/// entering time-wait or idle): where a REQ is recognised as a duplicate or as stale.
bool has_remote(State s) {
  return s != State::req_sent && s != State::mra_req_rcvd && s != State::timewait &&
         s != State::idle;
}

/// A MAD that waits for an answer: resent every `wait_ms` until `retries_left` is spent
/// (the kernel's MAD layer with the send's timeout_ms and retries), then given up.
struct Pending {
  std::array<uint8_t, kMadSize> mad{};
  uint32_t wait_ms = 0;
  int retries_left = 0;
};

struct Conn {
  uint32_t id = 0;
  uint32_t remote_id = 0;  ///< 0 until the peer's REQ or REP told it
  uint32_t peer_ip = 0;
  /// The Local CA GUID of the peer's REQ or REP (cm.c's timewait_info->remote_ca_guid),
  /// which a timeout REJ's ARI names.
  uint64_t remote_ca_guid = 0;
  /// Passive: the REQ's Transport Service Type (0 RC); accept takes RC only.
  uint8_t transport_type = 0;
  bool active = false;
  uint64_t service_id = 0;
  void* ctx = nullptr;
  State state = State::idle;
  bool destroyed = false;  ///< the consumer called destroy: no more events
  /// cm_id_priv->tid: the REQ's transaction ID on both sides (REP, RTU, MRA and REJ
  /// answer in it), replaced by a received DREQ's (which the DREP answers).
  uint64_t tid = 0;

  // What ib_cm_init_qp_attr returns (cm_id_priv's fields of the same names).
  uint32_t local_qpn = 0;
  uint32_t remote_qpn = 0;
  uint32_t sq_psn = 0;
  uint32_t rq_psn = 0;
  uint8_t path_mtu = 0;
  uint8_t responder_resources = 0;
  uint8_t initiator_depth = 0;
  uint8_t retry_count = 0;
  uint8_t rnr_retry_count = 0;
  /// cm_id_priv->av.timeout: the QPs' ACK timeout, and the length of time-wait.
  uint8_t av_timeout = 0;
  /// cm_id_priv->timeout_ms: how long a REQ, REP or DREQ waits for its answer.
  uint32_t timeout_ms = 0;
  uint8_t max_cm_retries = 0;

  /// cm_id_priv->private_data: the RTU's or DREP's, sent again with a duplicate's answer.
  std::vector<uint8_t> reply_private;

  std::optional<Pending> pending;
  /// When the pending MAD is resent or given up, or time-wait ends.
  std::optional<Clock::time_point> due;
};

std::string ip_text(uint32_t ip) {
  char b[20];
  std::snprintf(b, sizeof b, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255,
                ip & 255);
  return b;
}

__attribute__((format(printf, 1, 2))) void log1(const char* fmt, ...) {
  if (log_sink.level < 1 || !log_sink.write) return;
  char line[320];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  log_sink.write(line);
}

template <size_t N>
std::vector<uint8_t> vec(const std::array<uint8_t, N>& a) {
  return {a.begin(), a.end()};
}

}  // namespace

struct Manager::Impl {
  MadSender& out;
  uint32_t local_ip;
  std::function<void(const Event&)> deliver;
  std::function<Clock::time_point()> now = [] { return Clock::now(); };
  uint64_t ca_guid = 0;
  /// Local communication IDs: a counter XORed with a random word, as cm.c's
  /// cm_alloc_id_priv does (xa_alloc_cyclic ^ cm.random_id_operand): unique (the XOR is a
  /// bijection, and IDs still in use are skipped), and different in every process.
  uint32_t id_operand = 0;
  uint32_t id_counter = 0;
  std::map<uint64_t, void*> listeners;
  std::map<uint32_t, Conn> conns;

  Impl(MadSender& o, uint32_t ip, std::function<void(const Event&)> d)
      : out(o), local_ip(ip), deliver(std::move(d)) {
    std::random_device rd;
    id_operand = rd();
    id_counter = rd();
  }

  uint32_t new_id() {
    for (;;) {
      const uint32_t id = ++id_counter ^ id_operand;
      if (id != 0 && !conns.count(id)) return id;
    }
  }

  /// cm.c's cm_form_tid: the high half is the MAD agent's number (the kernel's
  /// ib_mad_client_id counter; a Manager is its device's one CM agent: 1), the low half
  /// the local communication ID as the kernel stores it, big-endian, read as a
  /// little-endian host's u64: comm ID 0x729a8ddd gives TID 0x00000002dd8d9a72 in
  /// lesson02.pcap frame 3 (agent 2 there).
  static uint64_t form_tid(uint32_t comm_id) {
    return uint64_t{1} << 32 | __builtin_bswap32(comm_id);
  }

  Conn* find(uint32_t id) {
    auto it = conns.find(id);
    return it == conns.end() ? nullptr : &it->second;
  }
  /// cm.c's cm_acquire_id(local, remote): our ID and the peer's must both match. The
  /// Manager also wants the message to come from the connection's peer, which cm.c does
  /// not check.
  Conn* find_pair(uint32_t local, uint32_t remote, uint32_t src) {
    Conn* c = find(local);
    return c && c->remote_id == remote && c->peer_ip == src ? c : nullptr;
  }

  // ---- sending --------------------------------------------------------------------------
  void transmit(uint32_t dst, const uint8_t* mad, const char* what, bool resend = false) {
    log1("cm: %s %s to %s", resend ? "resent" : "sent", what, ip_text(dst).c_str());
    out.send(dst, mad);
  }
  void send_once(uint32_t dst, const mad::Mad& m) {
    uint8_t buf[kMadSize];
    mad::encode(m, buf);
    transmit(dst, buf, mad::attr_name(mad::attr_id_of(buf)));
  }
  /// Sends `m` and resends it until answered (cm_alloc_priv_msg: the connection's
  /// timeout_ms and max_cm_retries).
  void send_expecting(Conn& c, const mad::Mad& m) {
    Pending p;
    mad::encode(m, p.mad.data());
    p.wait_ms = c.timeout_ms;
    p.retries_left = c.max_cm_retries;
    transmit(c.peer_ip, p.mad.data(), mad::attr_name(mad::attr_id_of(p.mad.data())));
    c.pending = p;
    c.due = now() + std::chrono::milliseconds(p.wait_ms);
  }
  void cancel(Conn& c) {
    c.pending.reset();
    c.due.reset();
  }

  void set_state(Conn& c, State s) {
    log1("cm: connection 0x%08x %s -> %s", c.id, state_name(c.state), state_name(s));
    c.state = s;
  }

  Event event(const Conn& c, EventType t) const {
    Event e;
    e.type = t;
    e.id = c.id;
    e.ctx = c.ctx;
    e.peer_ip = c.peer_ip;
    e.service_id = c.service_id;
    return e;
  }
  void emit(const Conn& c, Event e) {
    if (!c.destroyed) deliver(e);
  }

  /// cm.c's cm_enter_timewait: no more resends, and the connection leaves the remote-ID
  /// and remote-QPN tables (has_remote), so that neither a REQ nor a REP naming its peer's
  /// QP is any longer a duplicate or stale. Nothing is reserved: after
  /// cm_convert_to_ms(av.timeout) ms (2048 ms with the kernel's RoCE ACK timeout 19), long
  /// enough for the peer's last packets to die out, timewait_exit (cm_timewait_handler's
  /// IB_CM_TIMEWAIT_EXIT) tells the consumer that its QP may be reused.
  void enter_timewait(Conn& c) {
    cancel(c);
    set_state(c, State::timewait);
    c.due = now() + std::chrono::milliseconds(convert_to_ms(c.av_timeout));
  }

  // ---- message builders -----------------------------------------------------------------
  /// cm.c's cm_format_rej: our local ID, but 0 in REQ_RCVD (the REQ's sender has not
  /// learnt it yet), and "message REJected" naming what the REJ answers.
  mad::Mad rej_for(const Conn& c, uint16_t reason, std::span<const uint8_t> ari,
                   std::span<const uint8_t> priv) const {
    mad::Rej r;
    r.local_comm_id = c.state == State::req_rcvd ? 0 : c.id;
    r.remote_comm_id = c.remote_id;
    r.message_rejected = rejected_message(c.state);
    r.reason = reason;
    r.ari_length = static_cast<uint8_t>(ari.size());
    std::copy(ari.begin(), ari.end(), r.ari.begin());
    mad::set_private(r.private_data, priv);
    mad::Mad m;
    m.hdr.tid = c.tid;
    m.body = r;
    return m;
  }
  static mad::MsgResponse rejected_message(State s) {
    if (s == State::req_rcvd || s == State::mra_req_sent) return mad::MsgResponse::req;
    if (s == State::rep_rcvd) return mad::MsgResponse::rep;
    return mad::MsgResponse::other;
  }
  /// A timeout REJ (reason 4, IB_CM_REJ_TIMEOUT) carries the sender's CA GUID as its ARI
  /// (the kernel's cm_destroy_id sends device->node_guid), which the receiver matches
  /// against the Local CA GUID of the REQ or REP it had (cm_acquire_rejected_id).
  void send_timeout_rej(Conn& c) {
    uint8_t guid[8];
    for (int i = 0; i < 8; ++i) guid[i] = static_cast<uint8_t>(ca_guid >> (56 - 8 * i));
    send_once(c.peer_ip, rej_for(c, kRejTimeout, guid, {}));
  }
  /// cm.c's cm_issue_drep: a DREP for a DREQ that matches no connection of ours, built
  /// from the DREQ itself (its IDs swapped, its TID, no private data).
  void issue_drep(uint32_t dst, uint64_t tid, const mad::Dreq& r) {
    mad::Drep d;
    d.local_comm_id = r.remote_comm_id;
    d.remote_comm_id = r.local_comm_id;
    mad::Mad m;
    m.hdr.tid = tid;
    m.body = d;
    send_once(dst, m);
  }
  /// Manager::destroy: cm_destroy_id. on_req calls it too, in REQ_RCVD, for a REQ the
  /// consumer refused from inside req_received.
  void destroy(uint32_t id);
  /// A message of connection `c`: `body` with the connection's two communication IDs,
  /// under transaction ID `tid`.
  template <class Body>
  static mad::Mad message_of(const Conn& c, Body body, uint64_t tid) {
    body.local_comm_id = c.id;
    body.remote_comm_id = c.remote_id;
    mad::Mad m;
    m.hdr.tid = tid;
    m.body = std::move(body);
    return m;
  }
  mad::Mad mra_for(const Conn& c, mad::MsgResponse what) const {
    mad::Mra r;
    r.message_mraed = what;
    r.service_timeout = kMraServiceTimeout;
    return message_of(c, std::move(r), c.tid);
  }
  mad::Mad rtu_for(const Conn& c) const {
    mad::Rtu r;
    mad::set_private(r.private_data, c.reply_private);
    return message_of(c, std::move(r), c.tid);
  }
  mad::Mad drep_for(const Conn& c) const {
    mad::Drep r;
    mad::set_private(r.private_data, c.reply_private);
    return message_of(c, std::move(r), c.tid);
  }
  /// cm.c's cm_format_dreq: in a TID of its own making (cm_form_tid), naming the peer's QP.
  mad::Mad dreq_for(const Conn& c, std::span<const uint8_t> priv) const {
    mad::Dreq r;
    r.remote_qpn = c.remote_qpn;
    mad::set_private(r.private_data, priv);
    return message_of(c, std::move(r), form_tid(c.id));
  }
  /// cm.c's cm_issue_rej: a REJ for a message that matches no connection, built from the
  /// message itself (its IDs swapped, its TID).
  void issue_rej(uint32_t dst, uint64_t tid, uint32_t their_id, uint32_t our_id,
                 uint16_t reason, mad::MsgResponse msg) {
    mad::Rej r;
    r.local_comm_id = our_id;
    r.remote_comm_id = their_id;
    r.message_rejected = msg;
    r.reason = reason;
    mad::Mad m;
    m.hdr.tid = tid;
    m.body = r;
    send_once(dst, m);
  }

  /// cm.c's ib_send_cm_dreq from ESTABLISHED: the DREQ, resent until the DREP.
  void start_dreq(Conn& c, std::span<const uint8_t> priv) {
    send_expecting(c, dreq_for(c, priv));
    set_state(c, State::dreq_sent);
  }

  /// A REQ or REP whose QP number is already connected to a live connection of ours with
  /// the same peer: cm.c's "stale connection" check (cm_insert_remote_qpn). The message is
  /// rejected with reason 10 (cm_issue_rej, built from the message), then the old
  /// connection, if established, disconnected (ib_send_cm_dreq).
  bool stale(uint32_t src, uint32_t remote_qpn, const Conn* except, uint64_t tid,
             uint32_t their_id, uint32_t our_id, mad::MsgResponse msg) {
    for (auto& [id, c] : conns) {
      if (&c == except || c.peer_ip != src || !has_remote(c.state) || c.remote_qpn != remote_qpn)
        continue;
      log1("cm: QP 0x%06x of %s is still connected to connection 0x%08x: stale", remote_qpn,
           ip_text(src).c_str(), c.id);
      issue_rej(src, tid, their_id, our_id, kRejStaleConn, msg);
      if (c.state == State::established) start_dreq(c, {});
      return true;
    }
    return false;
  }

  // ---- received messages ----------------------------------------------------------------
  void on_req(uint32_t src, const mad::Header& h, const mad::Req& r);
  void on_mra(uint32_t src, const mad::Mra& r);
  void on_rej(uint32_t src, const mad::Rej& r);
  void on_rep(uint32_t src, const mad::Header& h, const mad::Rep& r);
  void on_rtu(uint32_t src, const mad::Rtu& r);
  void on_dreq(uint32_t src, const mad::Header& h, const mad::Dreq& r);
  void on_drep(uint32_t src, const mad::Drep& r);

  void unmatched(const char* what, uint32_t src, uint32_t local, uint32_t remote) {
    log1("cm: %s from %s for no connection of ours (its local ID 0x%08x, remote ID "
         "0x%08x): dropped",
         what, ip_text(src).c_str(), local, remote);
  }
};

// ---- REQ: cm_req_handler, cm_match_req, cm_dup_req_handler --------------------------------
void Manager::Impl::on_req(uint32_t src, const mad::Header& h, const mad::Req& r) {
  // A REQ we have seen (cm_insert_remote_id finds the peer's ID): the peer resent it, so
  // it has not seen our answer.
  for (auto& [id, c] : conns) {
    if (c.active || c.peer_ip != src || c.remote_id != r.local_comm_id || !has_remote(c.state))
      continue;
    if (c.state == State::mra_req_sent) {
      // cm_dup_req_handler in MRA_REQ_SENT: the consumer is still deciding. The MRA's
      // service timeout 24 makes the active side wait cm_convert_to_ms(24) +
      // cm_convert_to_ms(its av.timeout) before each further resend of its REQ
      // (65536 + 2048 = 67584 ms with the kernel's values: on_mra).
      log1("cm: duplicate REQ for connection 0x%08x: the consumer has not answered; MRA",
           c.id);
      send_once(src, mra_for(c, mad::MsgResponse::req));
    } else {
      // Any other state, REP_SENT included: cm_dup_req_handler drops it. A REP that was
      // lost goes again on its own timer (timeout_ms: 4096 ms for the REQ's CM response
      // timeout 20), not in answer to the REQ.
      log1("cm: duplicate REQ for connection 0x%08x in %s: dropped", c.id,
           state_name(c.state));
    }
    return;
  }
  if (stale(src, r.local_qpn, nullptr, h.tid, r.local_comm_id, 0, mad::MsgResponse::req))
    return;
  auto l = listeners.find(r.service_id);
  if (l == listeners.end()) {
    // cm_match_req with no listener: cm_issue_rej, reason 8, our ID 0 (lesson02.pcap
    // frame 2).
    log1("cm: REQ from %s for service 0x%016llx: nobody listens; REJ (invalid service ID)",
         ip_text(src).c_str(), static_cast<unsigned long long>(r.service_id));
    issue_rej(src, h.tid, r.local_comm_id, 0, kRejInvalidServiceId, mad::MsgResponse::req);
    return;
  }
  // Whatever its transport type: cm.c's cm_req_handler hands every REQ to the listener's
  // handler (with the QP type cm_req_get_qp_type reads), and never sends REJ reason 9
  // (invalid transport type) itself. rdma_cm's handler refuses a QP type its listener does
  // not take (cma_ib_check_req_qp_type); here the consumer does (Event::refuse).
  Conn c;
  c.id = new_id();
  c.remote_id = r.local_comm_id;
  c.peer_ip = src;
  c.remote_ca_guid = r.local_ca_guid;
  c.transport_type = r.transport_service_type;
  c.service_id = r.service_id;
  c.ctx = l->second;
  c.state = State::req_rcvd;
  c.tid = h.tid;
  // cm_req_handler: the passive side's view of the REQ. The REQ's responder resources
  // (what the active side's QP accepts) bound our QP's outstanding READs/atomics, and its
  // initiator depth bounds what our QP must accept; the REP (accept) replaces both with
  // the consumer's choice.
  c.initiator_depth = r.responder_resources;
  c.responder_resources = r.initiator_depth;
  c.timeout_ms = convert_to_ms(r.local_cm_response_timeout);  // 4096 ms for 20
  c.max_cm_retries = r.max_cm_retries;
  c.remote_qpn = r.local_qpn;
  c.path_mtu = r.path_mtu;
  // The REQ's starting PSN is the one the active side's receive queue expects: our QP
  // sends from it (cm_req_handler: sq_psn; lesson02 server.log: sq_psn=0x2845e0, the REQ's
  // in frame 3).
  c.sq_psn = r.starting_psn;
  c.retry_count = r.retry_count;
  c.rnr_retry_count = r.rnr_retry_count;
  // cm_format_paths_from_req: packet life time = the REQ's ACK timeout - 1, and
  // cm_init_av_by_path: av.timeout = life time + 1 (19 -> 18 -> 19).
  const uint8_t life = static_cast<uint8_t>(r.primary.local_ack_timeout -
                                            (r.primary.local_ack_timeout > 0));
  c.av_timeout = static_cast<uint8_t>(life + 1);
  Conn& in = conns.emplace(c.id, c).first->second;
  log1("cm: REQ from %s (its ID 0x%08x, QP 0x%06x) for service 0x%016llx: connection "
       "0x%08x REQ_RCVD",
       ip_text(src).c_str(), r.local_comm_id, r.local_qpn,
       static_cast<unsigned long long>(r.service_id), in.id);

  Event e = event(in, EventType::req_received);
  e.remote.qpn = r.local_qpn;
  e.remote.starting_psn = r.starting_psn;
  e.remote.responder_resources = r.responder_resources;
  e.remote.initiator_depth = r.initiator_depth;
  e.remote.retry_count = r.retry_count;
  e.remote.rnr_retry_count = r.rnr_retry_count;
  e.remote.flow_control = r.end_to_end_flow_control;
  e.remote.srq = r.srq;
  e.remote.path_mtu = static_cast<ibv_mtu>(r.path_mtu);
  e.remote.local_ack_timeout = r.primary.local_ack_timeout;
  e.remote.flow_label = r.primary.flow_label;
  e.remote.private_data = vec(r.private_data);
  e.private_data = e.remote.private_data;
  e.transport_type = r.transport_service_type;
  e.extended_transport_type = r.extended_transport_type;
  bool refused = false;
  e.refuse = &refused;
  const uint32_t id = in.id;
  emit(in, e);  // `deliver` cannot call the Manager: `in` is still there
  if (refused) {
    // The consumer's handler failed: cm_process_work -> cm_destroy_id in REQ_RCVD, which
    // sends REJ reason 28 with local ID 0.
    log1("cm: connection 0x%08x: the consumer refused the REQ", id);
    destroy(id);
    return;
  }
  // cma_ib_req_handler, its consumer having taken the event: ib_send_cm_mra with
  // IB_CM_MRA_FLAG_DELAY, which only marks the connection.
  if (Conn* x = find(id); x && x->state == State::req_rcvd) set_state(*x, State::mra_req_sent);
}

// ---- MRA: cm_mra_handler -----------------------------------------------------------------
void Manager::Impl::on_mra(uint32_t src, const mad::Mra& r) {
  Conn* c = nullptr;
  if (r.message_mraed == mad::MsgResponse::req)
    c = find_pair(r.remote_comm_id, 0, src);  // cm_acquire_mraed_id: before the REP
  else
    c = find_pair(r.remote_comm_id, r.local_comm_id, src);
  if (!c) return unmatched("MRA", src, r.local_comm_id, r.remote_comm_id);
  const bool for_req = c->state == State::req_sent && r.message_mraed == mad::MsgResponse::req;
  const bool for_rep = c->state == State::rep_sent && r.message_mraed == mad::MsgResponse::rep;
  if ((!for_req && !for_rep) || !c->pending) {
    log1("cm: MRA for connection 0x%08x in %s: dropped", c->id, state_name(c->state));
    return;
  }
  // The peer needs more time: the pending REQ or REP is still resent, but now waits
  // cm_convert_to_ms(service timeout) + cm_convert_to_ms(av.timeout) before each resend
  // (ib_modify_mad): 65536 + 2048 = 67584 ms for the MRA's 24 and av.timeout 19 (the
  // packet life time 18, plus 1). Its retries are not renewed.
  c->pending->wait_ms = convert_to_ms(r.service_timeout) + convert_to_ms(c->av_timeout);
  c->due = now() + std::chrono::milliseconds(c->pending->wait_ms);
  log1("cm: MRA for connection 0x%08x: service timeout %u, waiting %u ms", c->id,
       r.service_timeout, c->pending->wait_ms);
  set_state(*c, for_req ? State::mra_req_rcvd : State::mra_rep_rcvd);
}

// ---- REJ: cm_rej_handler, cm_acquire_rejected_id ------------------------------------------
void Manager::Impl::on_rej(uint32_t src, const mad::Rej& r) {
  Conn* c = nullptr;
  if (r.reason == kRejTimeout) {
    // cm_find_remote_id: matched by the peer's ID and its CA GUID, which the ARI carries
    // (the peer may have timed out before it ever learnt our ID).
    uint64_t guid = 0;
    for (int i = 0; i < 8; ++i) guid = guid << 8 | r.ari[static_cast<size_t>(i)];
    for (auto& [id, x] : conns)
      if (x.peer_ip == src && x.remote_id == r.local_comm_id && x.remote_ca_guid == guid &&
          has_remote(x.state))
        c = &x;
  } else if (r.message_rejected == mad::MsgResponse::req) {
    c = find_pair(r.remote_comm_id, 0, src);
  } else {
    c = find_pair(r.remote_comm_id, r.local_comm_id, src);
  }
  if (!c) return unmatched("REJ", src, r.local_comm_id, r.remote_comm_id);
  log1("cm: REJ for connection 0x%08x, reason %u", c->id, r.reason);
  switch (c->state) {
    case State::req_sent:
    case State::mra_req_rcvd:
    case State::rep_sent:
    case State::mra_rep_rcvd:
    case State::req_rcvd:
    case State::mra_req_sent:
      cancel(*c);
      if (r.reason == kRejStaleConn)
        enter_timewait(*c);
      else
        set_state(*c, State::idle);
      break;
    case State::dreq_sent:
    case State::rep_rcvd:
    case State::established:
      enter_timewait(*c);
      break;
    default:
      log1("cm: REJ for connection 0x%08x in %s: dropped", c->id, state_name(c->state));
      return;
  }
  Event e = event(*c, EventType::rej_received);
  e.rej_reason = r.reason;
  e.private_data = vec(r.private_data);
  emit(*c, e);
}

// ---- REP: cm_rep_handler, cm_dup_rep_handler ------------------------------------------------
void Manager::Impl::on_rep(uint32_t src, const mad::Header& h, const mad::Rep& r) {
  Conn* c = find_pair(r.remote_comm_id, 0, src);
  if (!c) {
    // cm_dup_rep_handler: the peer resent its REP, so it has not seen our answer.
    c = find_pair(r.remote_comm_id, r.local_comm_id, src);
    if (!c) return unmatched("REP", src, r.local_comm_id, r.remote_comm_id);
    if (c->state == State::established) {
      log1("cm: duplicate REP for connection 0x%08x: RTU again", c->id);
      send_once(src, rtu_for(*c));
    } else if (c->state == State::rep_rcvd) {
      log1("cm: duplicate REP for connection 0x%08x: the consumer has not answered; MRA",
           c->id);
      send_once(src, mra_for(*c, mad::MsgResponse::rep));
    } else {
      log1("cm: duplicate REP for connection 0x%08x in %s: dropped", c->id,
           state_name(c->state));
    }
    return;
  }
  if (c->state != State::req_sent && c->state != State::mra_req_rcvd) {
    log1("cm: REP for connection 0x%08x in %s: dropped", c->id, state_name(c->state));
    return;
  }
  if (stale(src, r.local_qpn, c, h.tid, r.local_comm_id, r.remote_comm_id,
            mad::MsgResponse::rep))
    return;
  cancel(*c);
  c->remote_id = r.local_comm_id;
  c->remote_ca_guid = r.local_ca_guid;
  c->remote_qpn = r.local_qpn;
  // The REP's responder resources (what the passive QP accepts) bound our outstanding
  // READs/atomics; its initiator depth is what our QP must accept (lesson02 client.log:
  // max_rd_atomic=1 max_dest_rd_atomic=0 from frame 4's 1 and 0).
  c->initiator_depth = r.responder_resources;
  c->responder_resources = r.initiator_depth;
  // The REP's starting PSN is what the passive side's receive queue expects: our QP
  // sends from it (client.log: sq_psn=0x5b32a0, frame 4's).
  c->sq_psn = r.starting_psn;
  c->rnr_retry_count = r.rnr_retry_count;
  // Our QP's ACK timeout, now that the responder's ACK delay is known: cm_ack_timeout(
  // target ACK delay, life time) with life time = av.timeout - 1 (15 and 18 give 19).
  c->av_timeout = ack_timeout(r.target_ack_delay, static_cast<uint8_t>(c->av_timeout - 1));
  set_state(*c, State::rep_rcvd);

  Event e = event(*c, EventType::rep_received);
  e.remote.qpn = r.local_qpn;
  e.remote.starting_psn = r.starting_psn;
  e.remote.responder_resources = r.responder_resources;
  e.remote.initiator_depth = r.initiator_depth;
  e.remote.target_ack_delay = r.target_ack_delay;
  e.remote.rnr_retry_count = r.rnr_retry_count;
  e.remote.flow_control = r.end_to_end_flow_control;
  e.remote.srq = r.srq;
  e.remote.private_data = vec(r.private_data);
  e.private_data = e.remote.private_data;
  emit(*c, e);
}

// ---- RTU: cm_rtu_handler -------------------------------------------------------------------
void Manager::Impl::on_rtu(uint32_t src, const mad::Rtu& r) {
  Conn* c = find_pair(r.remote_comm_id, r.local_comm_id, src);
  if (!c) return unmatched("RTU", src, r.local_comm_id, r.remote_comm_id);
  if (c->state != State::rep_sent && c->state != State::mra_rep_rcvd) {
    log1("cm: RTU for connection 0x%08x in %s: duplicate, dropped", c->id,
         state_name(c->state));
    return;
  }
  cancel(*c);
  set_state(*c, State::established);
  Event e = event(*c, EventType::rtu_received);
  e.private_data = vec(r.private_data);
  emit(*c, e);
}

// ---- DREQ: cm_dreq_handler, cm_issue_drep ------------------------------------------------
void Manager::Impl::on_dreq(uint32_t src, const mad::Header& h, const mad::Dreq& r) {
  Conn* c = find_pair(r.remote_comm_id, r.local_comm_id, src);
  if (!c || c->destroyed) {
    // cm_issue_drep: the connection is gone (destroyed, time-wait over, or never ours);
    // the DREP still tells the peer to stop resending.
    log1("cm: DREQ from %s for no connection of ours (its ID 0x%08x, ours 0x%08x): DREP",
         ip_text(src).c_str(), r.local_comm_id, r.remote_comm_id);
    issue_drep(src, h.tid, r);
    return;
  }
  if (c->local_qpn != r.remote_qpn) {
    log1("cm: DREQ for connection 0x%08x names QP 0x%06x, ours is 0x%06x: dropped", c->id,
         r.remote_qpn, c->local_qpn);
    return;
  }
  switch (c->state) {
    case State::rep_sent:
    case State::mra_rep_rcvd:
    case State::dreq_sent:
      cancel(*c);
      break;
    case State::established:
      break;
    case State::timewait:
      // Our DREP was lost: the same DREP again (cm_dreq_handler in IB_CM_TIMEWAIT).
      log1("cm: DREQ for connection 0x%08x in time-wait: DREP again", c->id);
      send_once(src, drep_for(*c));
      return;
    default:
      log1("cm: DREQ for connection 0x%08x in %s: dropped", c->id, state_name(c->state));
      return;
  }
  c->tid = h.tid;
  set_state(*c, State::dreq_rcvd);
  Event e = event(*c, EventType::dreq_received);
  e.private_data = vec(r.private_data);
  emit(*c, e);
}

// ---- DREP: cm_drep_handler -----------------------------------------------------------------
void Manager::Impl::on_drep(uint32_t src, const mad::Drep& r) {
  Conn* c = find_pair(r.remote_comm_id, r.local_comm_id, src);
  if (!c) return unmatched("DREP", src, r.local_comm_id, r.remote_comm_id);
  if (c->state != State::dreq_sent && c->state != State::dreq_rcvd) {
    log1("cm: DREP for connection 0x%08x in %s: dropped", c->id, state_name(c->state));
    return;
  }
  enter_timewait(*c);
  Event e = event(*c, EventType::drep_received);
  e.private_data = vec(r.private_data);
  emit(*c, e);
}

// ---- the API ---------------------------------------------------------------------------------
Manager::Manager(MadSender& out, uint32_t local_ip, std::function<void(const Event&)> deliver)
    : impl_(new Impl(out, local_ip, std::move(deliver))) {}

Manager::~Manager() { delete impl_; }

void Manager::set_ca_guid(uint64_t guid) { impl_->ca_guid = guid; }
void Manager::set_clock(std::function<Clock::time_point()> now) { impl_->now = std::move(now); }

int Manager::listen(uint64_t service_id, void* ctx) {
  if (!impl_->listeners.emplace(service_id, ctx).second) return EADDRINUSE;
  return 0;
}

void Manager::stop_listening(uint64_t service_id) { impl_->listeners.erase(service_id); }

uint32_t Manager::connect(uint32_t peer_ip, uint64_t service_id, const ConnParams& mine,
                          void* ctx) {
  Impl& m = *impl_;
  if (mine.private_data.size() > mad::kReqPrivate) return 0;
  Conn c;
  c.id = m.new_id();
  c.peer_ip = peer_ip;
  c.active = true;
  c.service_id = service_id;
  c.ctx = ctx;
  c.tid = Impl::form_tid(c.id);
  c.local_qpn = mine.qpn & kQpnMask;
  // ib_send_cm_req keeps the REQ's values until the REP replaces them.
  c.responder_resources = mine.responder_resources;
  c.initiator_depth = mine.initiator_depth;
  c.retry_count = mine.retry_count & 7;
  c.path_mtu = static_cast<uint8_t>(mine.path_mtu);
  // Our QP receives from the REQ's starting PSN (ib_send_cm_req: rq_psn; lesson02
  // client.log: rq_psn=0x2845e0, the REQ's in frame 3).
  c.rq_psn = mine.starting_psn & kQpnMask;
  c.max_cm_retries = kMaxCmRetries;
  // The path's packet life time, taken back from the ACK timeout the REQ carries as the
  // passive side does (cm_format_paths_from_req): 18 for the kernel's 19, which is
  // cm_ack_timeout(rxe's ACK delay 15, CMA_IBOE_PACKET_LIFETIME) with the life time 18
  // of Linux 6.1 (lesson02.pcap; later kernels define 16).
  const uint8_t ack = mine.local_ack_timeout & 31;
  const uint8_t life = static_cast<uint8_t>(ack - (ack > 0));
  c.av_timeout = static_cast<uint8_t>(life + 1);  // cm_init_av_by_path
  // ib_send_cm_req: the REQ waits two packet life times plus the passive side's CM
  // response time: 2 x 1024 + 4096 = 6144 ms with the kernel's values.
  c.timeout_ms = 2 * convert_to_ms(life) + convert_to_ms(kCmResponseTimeout);

  mad::Req r;
  r.local_comm_id = c.id;
  r.service_id = service_id;
  r.local_ca_guid = m.ca_guid;
  r.local_qpn = c.local_qpn;
  r.responder_resources = mine.responder_resources;
  r.initiator_depth = mine.initiator_depth;
  r.remote_cm_response_timeout = kCmResponseTimeout;
  r.transport_service_type = 0;  // RC
  r.end_to_end_flow_control = mine.flow_control;
  r.starting_psn = c.rq_psn;
  r.local_cm_response_timeout = kCmResponseTimeout;
  r.retry_count = c.retry_count;
  r.partition_key = kPkey;
  r.path_mtu = c.path_mtu;
  r.rnr_retry_count = mine.rnr_retry_count & 7;
  r.max_cm_retries = kMaxCmRetries;
  r.srq = mine.srq;
  r.primary.local_lid = kPermissiveLid;
  r.primary.remote_lid = kPermissiveLid;
  r.primary.local_gid = mad::ipv4_gid(m.local_ip);
  r.primary.remote_gid = mad::ipv4_gid(peer_ip);
  r.primary.flow_label = mine.flow_label & 0xFFFFF;
  r.primary.hop_limit = kHopLimit;
  r.primary.subnet_local = false;  // cm_format_req: hop limit above 1
  r.primary.local_ack_timeout = ack;
  mad::set_private(r.private_data, mine.private_data);
  mad::Mad msg;
  msg.hdr.tid = c.tid;
  msg.body = r;

  Conn& in = m.conns.emplace(c.id, c).first->second;
  log1("cm: connection 0x%08x: REQ to %s for service 0x%016llx (QP 0x%06x)", in.id,
       ip_text(peer_ip).c_str(), static_cast<unsigned long long>(service_id), in.local_qpn);
  m.send_expecting(in, msg);
  in.state = State::req_sent;
  return in.id;
}

int Manager::accept(uint32_t id, const ConnParams& mine) {
  Impl& m = *impl_;
  Conn* c = m.find(id);
  // ib_send_cm_rep: in REQ_RCVD or MRA_REQ_SENT.
  if (!c || c->destroyed || (c->state != State::req_rcvd && c->state != State::mra_req_sent))
    return EINVAL;
  if (mine.private_data.size() > mad::kRepPrivate) return EINVAL;
  if (c->transport_type != 0) return EINVAL;  // not RC: see Event::transport_type
  mad::Rep r;
  r.local_comm_id = c->id;
  r.remote_comm_id = c->remote_id;
  r.local_qpn = mine.qpn & kQpnMask;
  r.starting_psn = mine.starting_psn & kQpnMask;
  r.responder_resources = mine.responder_resources;
  r.initiator_depth = mine.initiator_depth;
  r.target_ack_delay = mine.target_ack_delay & 31;
  r.end_to_end_flow_control = mine.flow_control;
  r.rnr_retry_count = mine.rnr_retry_count & 7;
  r.srq = mine.srq;
  r.local_ca_guid = m.ca_guid;
  mad::set_private(r.private_data, mine.private_data);
  mad::Mad msg;
  msg.hdr.tid = c->tid;
  msg.body = r;
  // ib_send_cm_rep: our QP takes the consumer's grant (lesson02 server.log:
  // max_dest_rd_atomic=1 max_rd_atomic=0, frame 4's REP values) and receives from the
  // REP's starting PSN (rq_psn=0x5b32a0).
  c->responder_resources = mine.responder_resources;
  c->initiator_depth = mine.initiator_depth;
  c->rq_psn = r.starting_psn;
  c->local_qpn = r.local_qpn;
  m.send_expecting(*c, msg);
  m.set_state(*c, State::rep_sent);
  return 0;
}

int Manager::ready_to_use(uint32_t id, std::span<const uint8_t> private_data) {
  Impl& m = *impl_;
  Conn* c = m.find(id);
  if (!c || c->destroyed || c->state != State::rep_rcvd) return EINVAL;
  if (private_data.size() > mad::kRtuPrivate) return EINVAL;
  // ib_send_cm_rtu: sent once; a duplicate REP gets it again (cm_dup_rep_handler).
  c->reply_private.assign(private_data.begin(), private_data.end());
  m.send_once(c->peer_ip, m.rtu_for(*c));
  m.set_state(*c, State::established);
  return 0;
}

int Manager::reject(uint32_t id, uint16_t reason, std::span<const uint8_t> private_data) {
  Impl& m = *impl_;
  Conn* c = m.find(id);
  if (!c || c->destroyed) return EINVAL;
  if (private_data.size() > mad::kRejPrivate) return EINVAL;
  // cm_send_rej_locked: before the connection is established; after a REP we sent, the
  // connection enters time-wait (cm_enter_timewait), else it is simply over
  // (cm_reset_to_idle).
  const State s = c->state;
  switch (s) {
    case State::req_sent:
    case State::mra_req_rcvd:
    case State::req_rcvd:
    case State::mra_req_sent:
    case State::rep_rcvd:
    case State::rep_sent:
    case State::mra_rep_rcvd:
      break;
    default:
      return EINVAL;
  }
  m.send_once(c->peer_ip, m.rej_for(*c, reason, {}, private_data));
  if (s == State::rep_sent || s == State::mra_rep_rcvd)
    m.enter_timewait(*c);
  else {
    m.cancel(*c);
    m.set_state(*c, State::idle);
  }
  return 0;
}

int Manager::disconnect(uint32_t id, std::span<const uint8_t> private_data) {
  Impl& m = *impl_;
  Conn* c = m.find(id);
  if (!c || c->destroyed) return EINVAL;
  if (c->state == State::established) {
    if (private_data.size() > mad::kDreqPrivate) return EINVAL;
    m.start_dreq(*c, private_data);
    return 0;
  }
  if (c->state == State::dreq_rcvd) {
    if (private_data.size() > mad::kDrepPrivate) return EINVAL;
    // cm_send_drep_locked: time-wait, then the DREP, kept for a resent DREQ.
    c->reply_private.assign(private_data.begin(), private_data.end());
    m.enter_timewait(*c);
    m.send_once(c->peer_ip, m.drep_for(*c));
    return 0;
  }
  return EINVAL;
}

void Manager::destroy(uint32_t id) { impl_->destroy(id); }

void Manager::Impl::destroy(uint32_t id) {
  Impl& m = *this;
  Conn* c = m.find(id);
  if (!c || c->destroyed) return;
  // cm_destroy_id: what each state leaves the peer.
  switch (c->state) {
    case State::req_sent:
    case State::mra_req_rcvd:
      // Our REQ is unanswered: REJ "timeout" with our CA GUID.
      m.cancel(*c);
      m.send_timeout_rej(*c);
      break;
    case State::req_rcvd:
      // REJ 28 with local ID 0 (cm_format_rej in REQ_RCVD). Only on_req destroys a
      // connection in this state, for a consumer that refused it from inside
      // req_received (Event::refuse): the consumer itself never sees it here.
    case State::mra_req_sent:
      // REJ 28 with our local ID, as lesson02.pcap frame 27 shows for a consumer's reject.
    case State::rep_rcvd:
      m.send_once(c->peer_ip, m.rej_for(*c, kRejConsumerDefined, {}, {}));
      break;
    case State::rep_sent:
    case State::mra_rep_rcvd:
      m.cancel(*c);
      m.send_once(c->peer_ip, m.rej_for(*c, kRejConsumerDefined, {}, {}));
      m.enter_timewait(*c);
      break;
    case State::established:
      // cm_send_dreq_locked sends the DREQ, then the retest finds DREQ_SENT: ib_cancel_mad
      // (so it is not resent) and cm_enter_timewait.
      m.send_once(c->peer_ip, m.dreq_for(*c, {}));
      m.enter_timewait(*c);
      break;
    case State::dreq_sent:
      m.enter_timewait(*c);
      break;
    case State::dreq_rcvd:
      c->reply_private.clear();
      m.enter_timewait(*c);
      m.send_once(c->peer_ip, m.drep_for(*c));
      break;
    case State::timewait:
    case State::idle:
      break;
  }
  if (c->state == State::timewait) {
    // The kernel frees the ID at once; here the connection waits out its time-wait
    // without the consumer (no events; a DREQ gets cm_issue_drep's answer: on_dreq).
    c->destroyed = true;
    return;
  }
  m.conns.erase(id);
}

int Manager::establish(uint32_t id) {
  Impl& m = *impl_;
  Conn* c = m.find(id);
  if (!c || c->destroyed) return EINVAL;
  // cm_establish: REP_SENT or MRA_REP_RCVD -> ESTABLISHED; then cm_establish_handler
  // cancels the REP's resends and delivers IB_CM_USER_ESTABLISHED.
  switch (c->state) {
    case State::rep_sent:
    case State::mra_rep_rcvd:
      break;
    case State::established:
      return EISCONN;
    default:
      return EINVAL;
  }
  m.cancel(*c);
  m.set_state(*c, State::established);
  log1("cm: connection 0x%08x established before its RTU (COMM_EST)", c->id);
  m.emit(*c, m.event(*c, EventType::rtu_received));
  return 0;
}

int Manager::init_qp_attr(uint32_t id, ibv_qp_state state, ibv_qp_attr& attr,
                          int& mask) const {
  const auto it = impl_->conns.find(id);
  if (it == impl_->conns.end()) return EINVAL;
  const Conn& c = it->second;
  const State s = c.state;
  const bool connecting = s == State::req_sent || s == State::mra_req_rcvd;
  const bool answered = s == State::req_rcvd || s == State::mra_req_sent ||
                        s == State::rep_rcvd || s == State::rep_sent ||
                        s == State::mra_rep_rcvd || s == State::established;
  switch (state) {
    case IBV_QPS_INIT:
      // cm_init_qp_init_attr: remote WRITEs always; READs and atomics only if our QP
      // accepts some (responder resources, our max_dest_rd_atomic).
      if (!connecting && !answered) return EINVAL;
      mask = IBV_QP_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_PKEY_INDEX | IBV_QP_PORT;
      attr.qp_access_flags = IBV_ACCESS_REMOTE_WRITE;
      if (c.responder_resources)
        attr.qp_access_flags |= IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;
      attr.pkey_index = 0;  // the P_Key 0xFFFF the REQ names
      attr.port_num = 1;
      break;
    case IBV_QPS_RTR:
      // cm_init_qp_rtr_attr: the peer's QP and where our receive queue starts. Passive,
      // before accept: rq_psn is 0, as in the kernel, until the REP's PSN is chosen
      // (cma.c's rdma_init_qp_attr puts its own starting PSN there).
      if (!answered) return EINVAL;
      mask = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
             IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
      attr.path_mtu = static_cast<ibv_mtu>(c.path_mtu);  // the REQ's, both sides
      attr.dest_qp_num = c.remote_qpn;
      attr.rq_psn = c.rq_psn;
      // READs/atomics our QP accepts: the REP's responder resources at the passive side
      // (its own grant), the REP's initiator depth at the active side (what the passive
      // QP will have in flight towards it).
      attr.max_dest_rd_atomic = c.responder_resources;
      attr.min_rnr_timer = 0;  // cm.c sets 0 (0 encodes the longest RNR NAK delay)
      break;
    case IBV_QPS_RTS:
      // cm_init_qp_rts_attr: where our send queue starts and how it retries.
      if (!answered) return EINVAL;
      mask = IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
             IBV_QP_MAX_QP_RD_ATOMIC | IBV_QP_TIMEOUT;
      attr.sq_psn = c.sq_psn;
      attr.retry_cnt = c.retry_count;          // the REQ's, both sides
      attr.rnr_retry = c.rnr_retry_count;      // the other side's message's
      attr.max_rd_atomic = c.initiator_depth;  // READs/atomics our QP may have in flight
      attr.timeout = c.av_timeout;
      break;
    default:
      return EINVAL;
  }
  attr.qp_state = state;
  return 0;
}

void Manager::receive(uint32_t src_ip, const uint8_t* mad_bytes, size_t len) {
  Impl& m = *impl_;
  mad::Mad msg;
  std::string error;
  if (!mad::decode({mad_bytes, len}, msg, error)) {
    log1("cm: dropped a malformed MAD from %s: %s", ip_text(src_ip).c_str(), error.c_str());
    return;
  }
  log1("cm: received %s from %s (TID 0x%016llx)", mad::attr_name(msg.hdr.attr_id),
       ip_text(src_ip).c_str(), static_cast<unsigned long long>(msg.hdr.tid));
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, mad::Req>) m.on_req(src_ip, msg.hdr, b);
        if constexpr (std::is_same_v<T, mad::Mra>) m.on_mra(src_ip, b);
        if constexpr (std::is_same_v<T, mad::Rej>) m.on_rej(src_ip, b);
        if constexpr (std::is_same_v<T, mad::Rep>) m.on_rep(src_ip, msg.hdr, b);
        if constexpr (std::is_same_v<T, mad::Rtu>) m.on_rtu(src_ip, b);
        if constexpr (std::is_same_v<T, mad::Dreq>) m.on_dreq(src_ip, msg.hdr, b);
        if constexpr (std::is_same_v<T, mad::Drep>) m.on_drep(src_ip, b);
      },
      msg.body);
}

void Manager::run_timers(Clock::time_point now) {
  Impl& m = *impl_;
  for (auto it = m.conns.begin(); it != m.conns.end();) {
    Conn& c = it->second;
    if (!c.due || *c.due > now) {
      ++it;
      continue;
    }
    if (c.state == State::timewait) {
      // cm_timewait_handler: the QP number may be used again.
      c.due.reset();
      m.set_state(c, State::idle);
      if (c.destroyed) {
        it = m.conns.erase(it);
        continue;
      }
      m.emit(c, m.event(c, EventType::timewait_exit));
      ++it;
      continue;
    }
    if (c.pending && c.pending->retries_left > 0) {
      --c.pending->retries_left;
      m.transmit(c.peer_ip, c.pending->mad.data(),
                 mad::attr_name(mad::attr_id_of(c.pending->mad.data())), true);
      c.due = now + std::chrono::milliseconds(c.pending->wait_ms);
      ++it;
      continue;
    }
    // Every retry spent (cm_process_send_error).
    m.cancel(c);
    EventType t{};
    switch (c.state) {
      case State::req_sent:
      case State::mra_req_rcvd:
        m.set_state(c, State::idle);
        t = EventType::req_error;
        break;
      case State::rep_sent:
      case State::mra_rep_rcvd:
        // The RTU never came. As the kernel's cm_process_send_error, this is only
        // reported (rdma_cm: UNREACHABLE); nothing more goes on the wire.
        m.set_state(c, State::idle);
        t = EventType::rep_error;
        break;
      case State::dreq_sent:
        m.enter_timewait(c);
        t = EventType::dreq_error;
        break;
      default:
        ++it;
        continue;
    }
    log1("cm: connection 0x%08x: no answer after %u retries", c.id, c.max_cm_retries);
    m.emit(c, m.event(c, t));
    ++it;
  }
}

std::optional<Clock::time_point> Manager::next_deadline() const {
  std::optional<Clock::time_point> next;
  for (const auto& [id, c] : impl_->conns)
    if (c.due && (!next || *c.due < *next)) next = c.due;
  return next;
}

}  // namespace uroce::cm
