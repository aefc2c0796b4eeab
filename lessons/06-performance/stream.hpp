/**
 * @file lessons/06-performance/stream.hpp
 * @brief Steps 2-6: keep the wire busy — many requests in flight, few completions, inline
 *        data, chains of work requests, and one-sided operations.
 *
 * One loop does all of it; each technique is one setting of a Technique:
 *
 *  - **Step 2, a window** (`spec.window` = N): post up to N work requests before waiting
 *    for any completion. The device sends the next request while the earlier ones are
 *    still on the wire, so the round trip is paid once per window, not once per message.
 *  - **Step 3, unsignaled requests** (`signal_every` = k): only every k-th work request asks
 *    for a completion (IBV_SEND_SIGNALED). An RC send queue completes in order, so one
 *    completion says that it and every request before it are done, and their slots may be
 *    used again. That saves writing and polling k-1 completions. It is also why some must
 *    be signaled: a completion is the only way the program learns that a send-queue slot,
 *    and the bytes a request sends from, are free again. With the window full of requests
 *    that will never complete visibly, the program could only wait forever.
 *  - **Step 4, inline** (`spec.use_inline`): the bytes travel inside the work request
 *    (up to max_inline_data, what the device granted).
 *  - **Step 5, chains** (`chain` = C): C work requests linked by `next` are posted with one
 *    ibv_post_send call.
 *  - **Step 6, the operation** (`spec.op`): SEND (the server's RECVs take each message),
 *    RDMA WRITE (into the server's ring: no RECV, no server code), WRITE_WITH_IMM (a
 *    WRITE that also completes a RECV there, carrying the message number), RDMA READ
 *    (from the server's ring: the data flows towards us, up to Connection::reads_in_flight
 *    READs at once).
 *
 * Message i always uses slot i mod window of both rings, so no two requests in flight
 * share bytes.
 */
#pragma once

#include <cstdint>

#include "connection.hpp"
#include "measurement.hpp"

namespace lesson06 {

/// The server's exposed ring, from its QP_INFO: what WRITEs write and READs read.
struct RemoteRing {
  std::uint64_t addr = 0;   ///< its first byte
  std::uint32_t rkey = 0;   ///< its rkey
  std::uint32_t length = 0; ///< its length
};

/**
 * Run @p t as a stream (the server must have answered READY to the same TEST). Latency
 * samples: post to completion of every signaled request. READs are compared with the
 * server's bytes as their completions arrive; the server checks everything else.
 * Needs t.chain <= window and t.signal_every <= window - chain + 1, so that a full window
 * always holds a signaled request (plan.cpp adjusts them).
 * @throws common::Error on a refused post, a failed or missing completion, or wrong data.
 */
Result run_stream(Connection& c, const RemoteRing& remote, const Technique& t, double timeout_s);

}  // namespace lesson06
