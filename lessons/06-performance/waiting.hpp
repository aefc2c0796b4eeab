/**
 * @file lessons/06-performance/waiting.hpp
 * @brief Step 7: two ways to wait for a completion — spin on the CQ, or sleep on its
 *        completion channel.
 *
 * **Busy polling** calls ibv_poll_cq in a loop. On a NIC (and on Soft-RoCE's user-space
 * library) ibv_poll_cq reads completions from memory the device writes: no system call,
 * so a completion is seen within nanoseconds of its arrival, and the core spins at 100 %
 * meanwhile.
 *
 * **A completion channel** lets the thread sleep: ibv_req_notify_cq arms the CQ, the
 * next completion makes the channel's file descriptor readable, poll() wakes the thread,
 * ibv_get_cq_event takes the event, ibv_ack_cq_events acknowledges it, and the CQ is
 * armed again before it is drained (common::sleep_until_completion). That costs system
 * calls and a wake-up of a sleeping thread on every event, and saves the spinning core.
 *
 * Both CQs of a Connection share one channel, so an event may be the other CQ's: the
 * waiter simply polls again and, if its CQ is still empty, sleeps again.
 */
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>

#include "connection.hpp"

namespace lesson06 {

/// Arm both CQs of @p c for the next completion (before an event-driven measurement).
void arm_both(Connection& c);

/**
 * Take up to @p max completions from @p cq into @p wcs: spin until there is one (busy),
 * or sleep on the completion channel of @p c (event), for at most @p timeout_s seconds.
 * Every completion is returned whatever its status; the caller checks it.
 * @param c          the connection whose channel both CQs report to
 * @param cq         the CQ to take completions from
 * @param wcs        room for @p max completions
 * @param max        the most to take at once
 * @param event      sleep on the channel (true) or spin (false)
 * @param timeout_s  the longest wait for the first completion
 * @param what       what is awaited, for the message only ("echo of message")
 * @param number     its number (17): no string is built unless the wait fails, since
 *                   this runs once per message
 * @return how many completions were taken (>= 1)
 * @throws common::Error naming what and number when none came within @p timeout_s.
 */
int wait_for_completions(Connection& c, ibv_cq* cq, ibv_wc* wcs, int max, bool event, double timeout_s,
                         const char* what, std::uint64_t number);

/// Take what @p cq holds now (up to @p max), without waiting. @return how many (>= 0).
int poll_now(ibv_cq* cq, ibv_wc* wcs, int max);

/// Throw common::Error for a completion that did not succeed, naming @p what and
/// @p number, the status and its usual cause.
[[noreturn]] void failed_completion(const ibv_wc& wc, const char* what, std::uint64_t number);

}  // namespace lesson06
