/**
 * @file cm.hpp
 * @brief RDMA CM (librdmacm) as the control plane: events with deadlines, the QP of a
 *        cm_id, listening, and connecting with retries.
 *
 * RDMA CM replaces lesson 01's TCP side channel. It resolves an IP address to a device,
 * port, GID and (on RoCE) the next hop's MAC address (rdma_resolve_addr: IP route and
 * ARP), builds the path record (rdma_resolve_route: on RoCE locally, nothing is sent),
 * and runs the InfiniBand connection protocol over the fabric itself: the ConnectRequest
 * and ConnectReply (MADs sent to QP 1, like the ReadyToUse that completes the handshake)
 * carry each side's QPN and starting PSN. librdmacm makes lesson 01's ibv_modify_qp calls itself, so none appears
 * in a CM program:
 * @code
 *   rdma_create_qp        QP -> INIT
 *   rdma_accept (server)  QP -> RTR -> RTS, then the ConnectReply is sent
 *   ConnectReply arrives  (client, inside rdma_get_cm_event) QP -> RTR -> RTS, then the
 *                         ReadyToUse is sent and the client gets ESTABLISHED
 *   ReadyToUse arrives    the server gets ESTABLISHED; no QP changes state
 * @endcode
 * So a server's QP can receive before the server sees ESTABLISHED: post RECVs before
 * rdma_accept.
 *
 * Everything librdmacm reports arrives as an event on an event channel. Each event must
 * be acknowledged (rdma_ack_cm_event), and rdma_destroy_id() blocks until every event of
 * that id is acknowledged: the CmEvent owner below acknowledges on scope exit, so copy
 * what you need out of an event and let it go before destroying its id.
 *
 * Lesson 02 spells these calls out one by one; later lessons use the helpers here.
 */
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/verbs_owners.hpp"

namespace common {

/// Owns one event from rdma_get_cm_event(); acknowledges it (rdma_ack_cm_event) when done.
using CmEvent = std::unique_ptr<rdma_cm_event, Deleter<rdma_cm_event, rdma_ack_cm_event, "rdma_ack_cm_event">>;

/// What to do when rdma_create_event_channel fails: no /dev/infiniband/rdma_cm.
inline constexpr const char* kNoRdmaCmRemedy =
    "this host has no RDMA CM (/dev/infiniband/rdma_cm: the rdma_ucm module and an RDMA device). "
    "Set up Soft-RoCE with scripts/softroce-setup.sh, or run the lessons in the lab VMs: scripts/tour.sh";

/// The RDMA CM port space for reliable connections (its port numbers are like TCP's).
inline constexpr rdma_port_space kCmPortSpace = RDMA_PS_TCP;

/**
 * Wait for the next event on @p channel, at most @p timeout_s seconds (poll() on the
 * channel's fd, then rdma_get_cm_event, which then does not block).
 * @param channel    the event channel
 * @param timeout_s  the deadline in seconds
 * @param what       what is awaited, for the timeout message ("ROUTE_RESOLVED")
 * @throws Error on timeout or when the channel fails.
 */
CmEvent next_cm_event(rdma_event_channel* channel, double timeout_s, const std::string& what);

/**
 * Wait for an event of type @p expected. Any other event is a failure, explained: a
 * REJECTED event with the reason (and our reject text, if the peer is one of our
 * servers), UNREACHABLE, ADDR_ERROR, ROUTE_ERROR, CONNECT_ERROR ...
 * @param channel    the event channel
 * @param expected   the event type wanted
 * @param timeout_s  the deadline in seconds
 * @param what       what is awaited, for the timeout message
 * @throws Error naming the event, its status and what usually causes it.
 */
CmEvent expect_cm_event(rdma_event_channel* channel, rdma_cm_event_type expected, double timeout_s,
                        const std::string& what);

/// Throw the explained failure for an event that is not the one @p wanted.
[[noreturn]] void fail_cm_event(const rdma_cm_event& event, const std::string& wanted);

/// The private data an event carries (CONNECT_REQUEST, ESTABLISHED, REJECTED), copied out
/// so it outlives the event. On IB/RoCE it is zero-padded to the field's full size.
std::vector<std::uint8_t> event_private_data(const rdma_cm_event& event);

/// "REJECTED (status 8: invalid service ID, nobody listens on that port)" etc.
std::string cm_event_text(const rdma_cm_event& event);

/// Sizes of the queues of a CM QP.
struct CmQpSizes {
  std::uint32_t send_wr = 4;   ///< send-queue depth (WRITE, READ, SEND work requests)
  std::uint32_t recv_wr = 4;   ///< receive-queue depth (RECVs)
  /// Also create a completion channel for the CQ, so a program can sleep in poll()
  /// until a completion arrives instead of spinning on ibv_poll_cq (lesson 04 shows it).
  bool completion_channel = false;
};

/**
 * The verbs objects of one connection: PD, one CQ for both queues, and the RC QP that
 * rdma_create_qp() attaches to the cm_id. Declared in creation order, so the QP is
 * destroyed first (rdma_destroy_qp), then the CQ, then the PD; MRs registered in the PD
 * must be released before this struct (declare them after it).
 */
struct CmQpResources {
  Pd pd;     ///< protection domain on the cm_id's device (id->verbs)
  CompChannel channel;  ///< the CQ's completion channel, if asked for (outlives the CQ)
  Cq cq;     ///< completions of both the send and the receive queue
  CmQp qp;   ///< owns the QP of the cm_id (the pointer is the cm_id itself)
  /// The QP (id->qp).
  ibv_qp* get() const { return qp->qp; }
};

/**
 * Build PD, CQ and an RC QP on @p id (which must have resolved its route or come from a
 * CONNECT_REQUEST, so id->verbs is the device). rdma_create_qp moves the QP to INIT;
 * librdmacm moves it to RTR and RTS during the connection (see the file comment). Logs
 * each step and dumps the QP.
 * @throws Error naming the failed call and the remedy.
 */
CmQpResources create_cm_qp(rdma_cm_id* id, const CmQpSizes& sizes);

/// An event channel and a cm_id listening on a port.
struct CmListener {
  EventChannel channel;  ///< where CONNECT_REQUEST (and later DISCONNECTED) events arrive
  CmId id;               ///< the listening id (bound to the wildcard address)
};

/// rdma_create_event_channel, rdma_create_id, rdma_bind_addr (any address, @p port),
/// rdma_listen. @throws Error (e.g. the port is in use) with the remedy.
CmListener listen_on(std::uint16_t port);

/// A connection request: its new cm_id (owned) and the client's private data and
/// rdma_conn_param values, copied out of the (already acknowledged) event.
struct ConnectRequest {
  CmId id;                                ///< the connection's own cm_id
  std::vector<std::uint8_t> private_data; ///< the client's private data (zero-padded)
  /// RDMA READs the client wants to keep outstanding towards us: what we grant as our
  /// rdma_conn_param.responder_resources (the kernel reports the REQ's initiator depth
  /// in the event's responder_resources, already turned to our point of view).
  std::uint8_t reads_wanted = 0;
  /// RDMA READs the client will serve for us (our initiator_depth at most).
  std::uint8_t reads_offered = 0;
  std::string peer;                       ///< the client's IP address
};

/// Wait (at most @p timeout_s) for a CONNECT_REQUEST on @p channel.
/// @throws Error on timeout or on any other event.
ConnectRequest wait_connect_request(rdma_event_channel* channel, double timeout_s);

/// Refuse a request with a reason the client can print (rdma_reject with our reject layout).
void reject_with_reason(rdma_cm_id* id, const std::string& reason);

/// An outgoing connection: channel, cm_id, its verbs objects, and the server's private data.
struct CmClient {
  EventChannel channel;                   ///< events of this connection
  CmId id;                                ///< the connected cm_id
  CmQpResources res;                      ///< PD, CQ, QP (destroyed before the id)
  std::vector<std::uint8_t> private_data; ///< the server's ConnectReply private data
};

/// What the client asks for in rdma_connect.
struct ConnectParams {
  std::vector<std::uint8_t> private_data;  ///< our private data (at most 56 bytes)
  std::uint8_t initiator_depth = 1;        ///< RDMA READs we keep outstanding
  std::uint8_t rnr_retry_count = 7;        ///< RNR NAK retries (7 = forever; see lesson 03)
  CmQpSizes sizes;                         ///< queue sizes
};

/**
 * Resolve address and route, build the QP, and connect to @p host:@p port, retrying while
 * nobody listens there yet (REJECTED with status 8) until @p timeout_s has passed. Every
 * other failure ends at once with the explanation.
 */
CmClient connect_to(const std::string& host, std::uint16_t port, const ConnectParams& params,
                    double timeout_s);

/// Log one pending asynchronous event of @p ctx (QP or port errors the device reports
/// outside any completion), if there is one, and acknowledge it. Returns whether one was
/// handled. The context's async_fd must be readable (poll it first) or set non-blocking.
bool log_async_event(ibv_context* ctx);

}  // namespace common
