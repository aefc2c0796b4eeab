/**
 * @file lessons/06-performance/connection.hpp
 * @brief Lesson 06, step 0: one RC connection sized for many requests in flight.
 *
 * Lessons 01 and 05 taught the objects and the way to RTS; they come from common/ here.
 * What lesson 06 changes is their *sizes*, because every technique it measures needs room:
 *
 *  - **Queue depths.** A window of N outstanding requests needs a send queue of at least
 *    N work requests (max_send_wr), and a stream of N SENDs in flight needs RECVs posted
 *    ahead on the other side: 2 N here (max_recv_wr), as perftest's ib_send_bw posts 512.
 *  - **max_inline_data.** Asked for at ibv_create_qp; the device answers with what it
 *    granted in init_attr.cap, and only messages up to that size may be posted inline.
 *  - **max_rd_atomic / max_dest_rd_atomic.** RDMA READs in flight at once. Lessons 02-05
 *    allow 1; a stream of READs with 1 waits a whole round trip per READ, whatever the
 *    window. Here the server accepts kReadsInFlight (or what its device allows) and says
 *    so in its QP_INFO, and the client issues no more than that (and its own device's
 *    limit): lesson 02's responder_resources and initiator_depth, agreed by hand.
 *  - **Buffers as rings of slots.** Message i uses slot i mod window, so a window of
 *    requests never shares bytes that are still in flight.
 *
 * Two CQs (one for the send queue, one for the receive queue) share one completion
 * channel, so a measurement can poll them (busy) or sleep on the channel (event) without
 * creating anything new.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/device.hpp"
#include "common/exchange.hpp"
#include "common/tcp.hpp"
#include "common/verbs_owners.hpp"

namespace lesson06 {

/// The TCP port of the control connection (lesson 01's 18515, plus one).
inline constexpr std::uint16_t kDefaultPort = 18516;
/// The largest message this lesson registers memory for (8 MiB).
inline constexpr std::uint32_t kMaxMessageSize = 8u << 20;
/// The most bytes a window keeps in flight: at 64 KiB the window may reach 128 (what
/// perftest's ib_write_bw keeps in flight), at 1 MiB it stops at 8.
inline constexpr std::size_t kMaxBytesInFlight = 8u << 20;
/// max_inline_data asked for at ibv_create_qp (perftest's latency tests ask for 220-236
/// bytes on devices it recognises).
inline constexpr std::uint32_t kRequestedInline = 256;
/// RDMA READs asked to be in flight at once (max_rd_atomic), if the device allows.
inline constexpr std::uint8_t kReadsInFlight = 16;

/**
 * One side's objects, in creation order (C++ destroys them in reverse: QP, CQs, channel,
 * MRs, buffers, PD, device).
 */
struct Connection {
  common::OpenPort port;                 ///< device, port, GID (lesson 01's steps 2-3)
  ibv_device_attr device_attr{};         ///< max_qp_wr, max_cqe, max_qp_rd_atom ...
  common::Pd pd;                         ///< protection domain
  std::vector<char> local;               ///< sources and landing slots (client); RECV ring (server)
  common::Mr local_mr;                   ///< LOCAL_WRITE only: no rkey is ever handed out
  std::vector<char> exposed;             ///< server: the slots the client may WRITE and READ
  common::Mr exposed_mr;                 ///< server: REMOTE_WRITE | REMOTE_READ, exactly `exposed`
  common::CompChannel channel;           ///< both CQs announce completions here
  common::Cq send_cq;                    ///< completions of SENDs, WRITEs, READs
  common::Cq recv_cq;                    ///< completions of RECVs
  common::Qp qp;                         ///< the RC QP
  ibv_qp_cap cap{};                      ///< what the device granted (max_inline_data!)
  std::uint32_t psn = 0;                 ///< our first PSN (random, 24 bits)
  std::size_t ring_bytes = 0;            ///< bytes of one ring of slots
  std::uint32_t max_window = 0;          ///< the most requests this connection keeps in flight
  std::uint8_t reads_in_flight = 1;      ///< max_rd_atomic granted
};

/// Bytes of one ring for messages of up to @p max_size and up to @p window in flight:
/// the same on both sides, computed from the client's QP_INFO.
std::size_t ring_bytes_for(std::uint32_t max_size, std::uint32_t window);

/// The window a measurement of @p size bytes really uses: @p window, or fewer so that no
/// more than the ring's bytes are in flight (at least 1).
std::uint32_t window_for(std::uint32_t size, std::uint32_t window, std::size_t ring_bytes);

/**
 * Step 0, both sides: on the device @p port opened (common::open_port, before anything
 * else, so that a host without RDMA is told at once), check the window against the
 * device's limits, build PD, buffers, MRs, the completion channel, two CQs and a QP sized
 * for @p max_window requests in flight and messages up to @p max_size, then RESET -> INIT.
 * @param port         the opened device, port and GID (moved into the Connection)
 * @param max_size     the largest message of the run
 * @param max_window   the most requests in flight (send queue depth; 2x in the RQ)
 * @param server_side  expose a ring the peer may WRITE and READ, and allow it on the QP
 * @throws common::Error naming the device limit a value exceeds, with the remedy.
 */
Connection open_connection(common::OpenPort port, std::uint32_t max_size, std::uint32_t max_window, bool server_side);

/**
 * Our QP_INFO: QPN, PSN, LID, MTU, GID, the run's largest message, and (on the server) the
 * exposed ring's addr/rkey/length. Its message count field carries, from the client, the
 * run's window (from which the server sizes its ring and queues) and, from the server,
 * the RDMA READs its QP accepts in flight (reads_in_flight), which bounds the client's.
 */
common::QpInfo make_info(const Connection& c, std::uint32_t max_size, std::uint32_t max_window, bool server_side);

/// Log a QP_INFO as "<label>: QPN 0x.. PSN 0x.. MTU .. GID .. ring addr=0x.. rkey=0x.. length=..".
void log_info(const char* label, const common::QpInfo& info);

/// Receive the peer's QP_INFO on @p channel. @throws common::Error on anything else.
common::QpInfo receive_info(common::Channel& channel, double timeout_s);

/**
 * INIT -> RTR -> RTS towards @p peer. As the responder we accept reads_in_flight READs
 * (max_dest_rd_atomic); as the requester (the client) we issue at most the smaller of
 * ours and what the server said it accepts (its QP_INFO's count), so that no READ is
 * refused for want of resources.
 */
void connect(Connection& c, const common::QpInfo& peer, bool server_side);

}  // namespace lesson06
