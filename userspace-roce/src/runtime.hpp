// The userspace RoCE runtime's inside: one emulated HCA per process ("uroce0"), the verbs
// objects it hands out, and the reliable-connection (RC) queue pairs whose transport runs
// over a UDP socket on port 4791.
//
// Threads and locks. The application's threads call verbs; one progress thread per
// process (the "engine") receives packets and runs timers. Both take Device::mu, which
// protects every QP, MR and PD. A CQ has its own small lock so that an application that
// busy-polls an empty CQ never contends with the engine (poll_cq reads an atomic count
// first). Lock order: Device::mu, then Cq::mu, then Channel::mu.
#pragma once

#include "config.hpp"   // UROCE_* settings, log_line
#include "context.hpp"  // the context applications hold; exported-name macros
#include "cq.hpp"       // completion queues and channels, cq_push
#include "device.hpp"   // the HCA: socket, engine, transmit path
#include "mr.hpp"       // protection domains and memory regions
#include "qp.hpp"       // the RC queue pair and its transport (qp_*)
#include "wire.hpp"     // packet formats
