/**
 * @file lessons/07-when-it-breaks/case_kit.hpp
 * @brief What every case does around the one thing it breaks: the ordinary server, the
 *        client's start and finish, and posting without throwing.
 *
 * The control connection keeps both sides in step without any timing: the server says
 * READY once its RECVs are posted and its QP is in RTS; the client posts, watches what
 * happens, and says DONE; the server then reports what arrived and answers DONE. A
 * case that needs one more meeting point (the server deregisters its MR, posts a late
 * RECV) adds a READY in between.
 */
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "observe.hpp"
#include "session.hpp"

namespace lesson07 {

/// What the ordinary server saw once the client said DONE.
struct ServerSeen {
  std::vector<ibv_wc> recvs;             ///< the RECV completions, in order
  ibv_qp_state qp_state = IBV_QPS_RESET; ///< its QP's state then
  std::vector<ibv_event_type> events;    ///< async events then
};

/// How the ordinary server prepares, and what it waits for once the client said DONE.
struct ServerPlan {
  unsigned recvs = 1;                        ///< RECVs posted before READY (0: none, for RNR)
  std::uint32_t recv_bytes = kMessageBytes;  ///< bytes of each
  /// RECV completions the case predicts, and the QP state: the device may still be
  /// finishing (flushing a RECV, moving the QP to ERR) when the client's DONE arrives, so
  /// the server waits for them, up to -t, before it reports.
  unsigned completions = 0;                  ///< RECV completions to wait for
  std::optional<ibv_qp_state> state;         ///< the QP state to wait for (unset: any)
};

/**
 * The ordinary server half: post the plan's RECVs, go to RTS (unless the Setup says the
 * case does it), say READY, wait for DONE, report what arrived (step 6), let @p predict
 * judge it and explain it (step 7), answer DONE. Returns the verdict.
 */
int ordinary_server(Session& s, const char* case_name, const ServerPlan& plan,
                    const std::function<void(Expect&, const ServerSeen&)>& predict);

/// Post one RECV of @p bytes at offset @p offset (wr_id = 100 + offset / 64). @throws on failure.
void post_recv_at(Session& s, std::size_t offset, std::uint32_t bytes);

/// The client's step 4 in the ordinary case: RTR/RTS, then wait for the server's READY.
void client_connect(Session& s);

/// The client's last words: DONE, and the server's DONE back.
void client_finish(Session& s);

/// One signaled work request of @p opcode (SEND, RDMA WRITE or RDMA READ) of @p bytes at
/// @p offset of our buffer; for a WRITE or a READ, to or from @p remote_addr with @p rkey.
/// The errno value ibv_post_send returned (0: posted). Not logged.
int post_one(Session& s, ibv_wr_opcode opcode, std::uint64_t wr_id, std::size_t offset, std::uint32_t bytes,
             std::uint64_t remote_addr, std::uint32_t rkey);

/// One SEND of @p bytes from our buffer (wr_id @p wr_id); the errno value ibv_post_send
/// returned (0: posted). Logged (step 5).
int post_send_msg(Session& s, std::uint64_t wr_id, std::uint32_t bytes);

/// One RDMA WRITE of @p bytes to @p remote_addr with @p rkey; the errno value (0: posted).
int post_write(Session& s, std::uint64_t wr_id, std::uint32_t bytes, std::uint64_t remote_addr, std::uint32_t rkey);

/// One RDMA READ of @p bytes from @p remote_addr with @p rkey into our buffer at offset 0;
/// the errno value (0: posted). Logged (step 5).
int post_read(Session& s, std::uint64_t wr_id, std::uint32_t bytes, std::uint64_t remote_addr, std::uint32_t rkey);

/// The ACK timeout as a duration: 4.096 us x 2^timeout.
double ack_timeout_s(std::uint8_t timeout);

/// The RNR timer code's duration in seconds (IBA table 45: 1 = 0.01 ms ... 31 = 491.52 ms, 0 = 655.36 ms).
double rnr_timer_s(std::uint8_t code);

}  // namespace lesson07
