/**
 * @file lessons/06-performance/ping_pong.hpp
 * @brief Step 1, the baseline: one SEND at a time, and the server echoes it (lesson 01's
 *        way); step 4's and step 7's ping-pong rows are the same loop with inline data or
 *        a completion channel.
 *
 * One message is in flight at any moment, so the time per message is a whole round trip:
 * our SEND to the server, the server program's RECV completion, its echo SEND, our RECV
 * completion (the ACKs travel alongside). Half of that round trip is the latency
 * perftest's ib_send_lat reports. The wire is idle most of the time: this is what every
 * lesson so far did, and why such a program moves at most one message per round trip.
 */
#pragma once

#include "connection.hpp"
#include "measurement.hpp"

namespace lesson06 {

/**
 * Run a ping-pong of @p t.spec.iters SENDs of t.spec.size bytes (the server must have
 * answered READY to the same TEST). Every echo is compared with what was sent. Every
 * t.signal_every-th SEND is signaled (1: all, lesson 01's way), and the last.
 * @throws common::Error on a failed or missing completion or a wrong echo.
 */
Result run_ping_pong(Connection& c, const Technique& t, double timeout_s);

}  // namespace lesson06
