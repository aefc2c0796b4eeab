/**
 * @file completion.hpp
 * @brief Waiting for a work completion, with a deadline and a readable failure.
 *
 * Posting a work request only queues it; the CQ says when the device is done with it
 * (a SEND completes when the peer ACKed it, a RECV when a message landed). A lost peer
 * means a completion that never comes, so every wait here has a deadline, and a failed
 * completion is reported with ibv_wc_status_str() and what usually causes that status.
 */
#pragma once

#include <infiniband/verbs.h>

#include <string>

namespace common {

/// The default deadline for one completion, in seconds.
inline constexpr double kDefaultCompletionTimeout = 5.0;

/**
 * Poll @p cq until one completion arrives or @p timeout_s passes.
 *
 * This busy-polls (ibv_poll_cq is a memory read, no system call): the lowest latency,
 * at the price of a spinning core. After a while without a completion it pauses ~50 us
 * between polls so a long wait does not burn a whole core. (An event-driven wait uses a
 * completion channel instead; a later lesson shows it.)
 *
 * @param cq         the completion queue to poll
 * @param timeout_s  the deadline in seconds
 * @param what       what is awaited, for the messages ("echo of message 3")
 * @return the completion, status IBV_WC_SUCCESS
 * @throws Error on timeout (naming @p what and the deadline) or on a failed completion
 *         (status, ibv_wc_status_str, and the usual cause).
 */
ibv_wc wait_for_completion(ibv_cq* cq, double timeout_s, const std::string& what);

/**
 * Like wait_for_completion(), but return the completion whatever its status: for a
 * lesson that expects a failure (a bad rkey, a missing RECV) and explains it.
 * @throws Error only on timeout or when polling itself fails.
 */
ibv_wc poll_completion(ibv_cq* cq, double timeout_s, const std::string& what);

/**
 * wait_for_completion() for a long wait on a peer that also holds a TCP connection to us
 * which is otherwise silent meanwhile (lesson 01's interactive client, idle while its user
 * types). A peer that exits sends nothing over RC, so the completion would only stop
 * coming; its kernel does close the TCP connection, so @p peer_fd turning readable (end
 * of stream or a reset) means the peer is gone, and this fails at once instead of at the
 * deadline. @p peer_fd is checked between polls, about every 20 ms.
 * @throws Error as wait_for_completion(), or naming @p peer_name when @p peer_fd stirs.
 */
ibv_wc wait_for_completion_or_hangup(ibv_cq* cq, double timeout_s, const std::string& what, int peer_fd,
                                     const std::string& peer_name);

/// What ended a sleep_until_completion().
enum class Wakeup {
  completion,  ///< the CQ announced a completion: drain it with ibv_poll_cq
  other_fd,    ///< the other descriptor became readable (or hung up)
  timeout      ///< neither, within the time given
};

/**
 * The event-driven wait: sleep in poll() until the CQ bound to @p channel announces a
 * completion, @p other_fd (if >= 0: a TLS socket, an RDMA CM event channel) becomes
 * readable, or @p timeout_s passes. No CPU is spent while asleep, at the price of a
 * system call and a wake-up per event (busy polling, wait_for_completion(), has neither).
 *
 * A completion event is taken (ibv_get_cq_event), acknowledged (ibv_ack_cq_events) and
 * the CQ re-armed (ibv_req_notify_cq) before this returns, so that a completion arriving
 * while the caller drains the CQ raises the next event. The CQ must have been armed once
 * with ibv_req_notify_cq before the first call; the caller drains it with ibv_poll_cq
 * after every Wakeup::completion, and before sleeping again.
 * @throws Error when poll() or a verbs call fails.
 */
Wakeup sleep_until_completion(ibv_comp_channel* channel, int other_fd, double timeout_s);

/// What usually causes a completion @p status, and what to check.
const char* wc_status_remedy(ibv_wc_status status);

}  // namespace common
