#include "common/cm.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/dump.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/private_data.hpp"

namespace common {
namespace {

using Clock = std::chrono::steady_clock;

/// The InfiniBand CM reject reason for "no one listens on this service ID" (IBTA 12.6.7.2).
constexpr int kRejectInvalidServiceId = 8;

std::string seconds_text(double s) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", s);
  return text;
}

int ms_until(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

/// The IB CM reject reasons a learner meets (IBTA spec, table "REJ reason codes").
const char* reject_reason_text(int status) {
  switch (status) {
    case 1: return "no QP available";
    case 3: return "no resources";
    case 4: return "timeout";
    case 5: return "unsupported request";
    case kRejectInvalidServiceId: return "invalid service ID: nobody listens on that port";
    case 10: return "stale connection";
    case 28: return "consumer defined: the server application called rdma_reject";
    default: return "see the IBTA reject reason codes";
  }
}

/// Why an event that is not the wanted one usually happens, and what to do.
const char* event_remedy(const rdma_cm_event& ev) {
  switch (ev.event) {
    case RDMA_CM_EVENT_ADDR_ERROR:
      return "the address did not resolve to an RDMA device: is it reachable (ping it), and is "
             "there an RDMA device on the interface that routes to it (rdma link show)?";
    case RDMA_CM_EVENT_ROUTE_ERROR:
      return "no path to the peer: check the route (ip route get ADDR) and that the RDMA link is up";
    case RDMA_CM_EVENT_UNREACHABLE:
      return "the peer did not answer the connection request: is the server running, is its "
             "RDMA device up, and does RoCE traffic (UDP 4791) pass between the hosts?";
    case RDMA_CM_EVENT_REJECTED:
      return ev.status == kRejectInvalidServiceId
                 ? "nobody listens on that port on the server: start the server first, or check -p"
                 : "the server refused the connection; its reason is above (and in its log)";
    case RDMA_CM_EVENT_CONNECT_ERROR:
      return "the connection failed while being set up: look at both sides' logs";
    case RDMA_CM_EVENT_DISCONNECTED:
      return "the peer disconnected (or exited) before this step";
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
      return "the RDMA device went away (rdma link delete, driver unloaded)";
    default:
      return "see `man rdma_get_cm_event` for this event";
  }
}

/// A new event channel and a cm_id whose events arrive on it.
void open_channel_and_id(EventChannel& channel, CmId& id) {
  channel.reset(check_ptr(rdma_create_event_channel(), "rdma_create_event_channel", kNoRdmaCmRemedy));
  rdma_cm_id* raw = nullptr;
  check_rc(rdma_create_id(channel.get(), &raw, nullptr, kCmPortSpace), "rdma_create_id", "");
  id.reset(raw);
}

}  // namespace

std::string cm_event_text(const rdma_cm_event& ev) {
  std::string text = std::string(rdma_event_str(ev.event)) + " (status " + std::to_string(ev.status);
  if (ev.event == RDMA_CM_EVENT_REJECTED) {
    text += std::string(": ") + reject_reason_text(ev.status);
    const std::string reason = decode_reject(ev.param.conn.private_data, ev.param.conn.private_data_len);
    if (!reason.empty()) text += "; the server says: " + reason;
  } else if (ev.status < 0) {
    text += ": " + errno_text(-ev.status);
  }
  return text + ")";
}

CmEvent next_cm_event(rdma_event_channel* channel, double timeout_s, const std::string& what) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  for (;;) {
    pollfd p{channel->fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, ms_until(deadline));
    if (rc > 0) break;
    if (rc == 0)
      fail("no RDMA CM event (waiting for " + what + ") within " + seconds_text(timeout_s) + " s",
           "the peer may have exited or be unreachable; check its log. Raise the deadline with -t "
           "if the link is just slow");
    if (errno != EINTR) check_rc(-1, "poll on the RDMA CM event channel", "");
  }
  rdma_cm_event* raw = nullptr;
  check_rc(rdma_get_cm_event(channel, &raw), "rdma_get_cm_event", "the event channel is broken");
  LOG(info, "CM event %s", cm_event_text(*raw).c_str());
  return CmEvent(raw);
}

void fail_cm_event(const rdma_cm_event& ev, const std::string& wanted) {
  fail("expected RDMA CM event " + wanted + ", got " + cm_event_text(ev), event_remedy(ev));
}

CmEvent expect_cm_event(rdma_event_channel* channel, rdma_cm_event_type expected, double timeout_s,
                        const std::string& what) {
  CmEvent ev = next_cm_event(channel, timeout_s, what);
  if (ev->event != expected) fail_cm_event(*ev, rdma_event_str(expected));
  return ev;
}

std::vector<std::uint8_t> event_private_data(const rdma_cm_event& ev) {
  const auto* p = static_cast<const std::uint8_t*>(ev.param.conn.private_data);
  if (p == nullptr) return {};
  return std::vector<std::uint8_t>(p, p + ev.param.conn.private_data_len);
}

CmQpResources create_cm_qp(rdma_cm_id* id, const CmQpSizes& sizes) {
  CmQpResources r;
  const std::string dev = ibv_get_device_name(id->verbs->device);
  // The PD and CQ must be on the device the CM chose for this address (id->verbs); a
  // program does not open the device itself.
  r.pd.reset(check_ptr(ibv_alloc_pd(id->verbs), "ibv_alloc_pd", "out of device resources: check dmesg"));
  const int cqe = static_cast<int>(sizes.send_wr + sizes.recv_wr);
  if (sizes.completion_channel)
    r.channel.reset(check_ptr(ibv_create_comp_channel(id->verbs), "ibv_create_comp_channel", ""));
  r.cq.reset(check_ptr(ibv_create_cq(id->verbs, cqe, nullptr, r.channel.get(), 0), "ibv_create_cq",
                       "out of device resources, or the CQ size exceeds max_cqe (ibv_devinfo -v)"));
  ibv_qp_init_attr attr{};
  attr.send_cq = r.cq.get();
  attr.recv_cq = r.cq.get();
  attr.qp_type = IBV_QPT_RC;
  attr.cap.max_send_wr = sizes.send_wr;
  attr.cap.max_recv_wr = sizes.recv_wr;
  attr.cap.max_send_sge = 1;
  attr.cap.max_recv_sge = 1;
  attr.sq_sig_all = 0;  // each WR asks for its completion with IBV_SEND_SIGNALED
  // rdma_create_qp creates the QP in the PD and moves it to INIT; librdmacm moves it to
  // RTR and RTS with the peer's QPN and PSN during the connection (in rdma_accept on the
  // server, when the ConnectReply arrives on the client).
  check_rc(rdma_create_qp(id, r.pd.get(), &attr), "rdma_create_qp",
           "the queue sizes may exceed the device's limits (ibv_devinfo -v: max_qp_wr)");
  r.qp.reset(id);
  LOG(slow, "PD, CQ (%d entries) and RC QP 0x%06x on %s", cqe, id->qp->qp_num, dev.c_str());
  dump_qp(id->qp);
  return r;
}

CmListener listen_on(std::uint16_t port) {
  CmListener l;
  open_channel_and_id(l.channel, l.id);
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;  // the IPv6 wildcard also accepts IPv4 clients
  any.sin6_port = htons(port);
  check_rc(rdma_bind_addr(l.id.get(), reinterpret_cast<sockaddr*>(&any)), "rdma_bind_addr",
           "port " + std::to_string(port) + " may be in use by another RDMA CM program: choose another with -p");
  check_rc(rdma_listen(l.id.get(), 8), "rdma_listen", "");
  LOG(slow, "listening for RDMA CM connections on port %u", port);
  return l;
}

ConnectRequest wait_connect_request(rdma_event_channel* channel, double timeout_s) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  for (;;) {
    const double left = std::chrono::duration<double>(deadline - Clock::now()).count();
    CmEvent ev = next_cm_event(channel, left > 0 ? left : 0, "CONNECT_REQUEST");
    if (ev->event == RDMA_CM_EVENT_TIMEWAIT_EXIT) continue;  // an earlier connection's last word
    if (ev->event != RDMA_CM_EVENT_CONNECT_REQUEST) fail_cm_event(*ev, "CONNECT_REQUEST");
    ConnectRequest req;
    req.id.reset(ev->id);  // a new cm_id for this connection, ours to destroy
    req.private_data = event_private_data(*ev);
    req.reads_wanted = ev->param.conn.responder_resources;
    req.reads_offered = ev->param.conn.initiator_depth;
    char host[INET6_ADDRSTRLEN] = "?";
    const sockaddr* peer = rdma_get_peer_addr(ev->id);
    if (peer->sa_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(peer)->sin_addr, host, sizeof host);
    else if (peer->sa_family == AF_INET6)
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(peer)->sin6_addr, host, sizeof host);
    req.peer = host;
    return req;
  }
}

void reject_with_reason(rdma_cm_id* id, const std::string& reason) {
  const std::vector<std::uint8_t> data = encode_reject(reason);
  LOG(warn, "rejecting the connection: %s", reason.c_str());
  check_rc(rdma_reject(id, data.data(), static_cast<std::uint8_t>(data.size())), "rdma_reject", "");
}

CmClient connect_to(const std::string& host, std::uint16_t port, const ConnectParams& params,
                    double timeout_s) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0)
    fail("cannot resolve '" + host + "': " + gai_strerror(rc), "give the server's IP address");
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> ai(found, freeaddrinfo);
  const int step_ms = std::max(100, std::min(2000, static_cast<int>(timeout_s * 1000)));
  for (int attempt = 1;; ++attempt) {
    CmClient c;
    open_channel_and_id(c.channel, c.id);
    check_rc(rdma_resolve_addr(c.id.get(), nullptr, ai->ai_addr, step_ms), "rdma_resolve_addr", "");
    expect_cm_event(c.channel.get(), RDMA_CM_EVENT_ADDR_RESOLVED, timeout_s, "ADDR_RESOLVED");
    check_rc(rdma_resolve_route(c.id.get(), step_ms), "rdma_resolve_route", "");
    expect_cm_event(c.channel.get(), RDMA_CM_EVENT_ROUTE_RESOLVED, timeout_s, "ROUTE_RESOLVED");
    c.res = create_cm_qp(c.id.get(), params.sizes);
    rdma_conn_param conn{};
    conn.private_data = params.private_data.data();
    conn.private_data_len = static_cast<std::uint8_t>(params.private_data.size());
    conn.initiator_depth = params.initiator_depth;
    conn.responder_resources = 0;
    conn.retry_count = 7;
    conn.rnr_retry_count = params.rnr_retry_count;
    check_rc(rdma_connect(c.id.get(), &conn), "rdma_connect", "");
    CmEvent ev = next_cm_event(c.channel.get(), timeout_s, "ESTABLISHED");
    if (ev->event == RDMA_CM_EVENT_ESTABLISHED) {
      c.private_data = event_private_data(*ev);
      return c;
    }
    const bool no_listener = ev->event == RDMA_CM_EVENT_REJECTED && ev->status == kRejectInvalidServiceId;
    if (!no_listener || Clock::now() >= deadline) {
      if (no_listener)
        fail("nobody listens on " + host + ":" + std::to_string(port) + " after " + std::to_string(attempt) +
                 " attempts in " + seconds_text(timeout_s) + " s",
             "start the server first (it listens on port " + std::to_string(port) + "), or check -p");
      fail_cm_event(*ev, "ESTABLISHED");
    }
    LOG(info, "attempt %d: nobody listens on %s:%u yet; retrying", attempt, host.c_str(), port);
    ev.reset();  // acknowledge before the id is destroyed with `c`
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(200, ms_until(deadline))));
  }
}

bool log_async_event(ibv_context* ctx) {
  pollfd p{ctx->async_fd, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  ibv_async_event ev{};
  if (ibv_get_async_event(ctx, &ev) != 0) return false;
  const bool qp_event = ev.event_type == IBV_EVENT_QP_FATAL || ev.event_type == IBV_EVENT_QP_REQ_ERR ||
                        ev.event_type == IBV_EVENT_QP_ACCESS_ERR || ev.event_type == IBV_EVENT_COMM_EST ||
                        ev.event_type == IBV_EVENT_SQ_DRAINED || ev.event_type == IBV_EVENT_QP_LAST_WQE_REACHED;
  if (qp_event)
    LOG(warn, "device event: %s on QP 0x%06x", ibv_event_type_str(ev.event_type), ev.element.qp->qp_num);
  else
    LOG(warn, "device event: %s", ibv_event_type_str(ev.event_type));
  ibv_ack_async_event(&ev);
  return true;
}

}  // namespace common
