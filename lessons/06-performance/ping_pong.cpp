#include "ping_pong.hpp"

#include <cstring>
#include <string>

#include "common/errors.hpp"
#include "common/log.hpp"
#include "message_bytes.hpp"
#include "waiting.hpp"

namespace lesson06 {

Result run_ping_pong(Connection& c, const Technique& t, double timeout_s) {
  const common::TestSpec& s = t.spec;
  char* source = c.local.data();                // slot 0 of the sources ring
  char* landing = c.local.data() + c.ring_bytes;  // slot 0 of the landing ring
  fill_ring(source, s.size, 1, s.number);
  std::memset(landing, 0, s.size);

  // The RECV for the first echo is posted before the first SEND: the echo may come back
  // before we would otherwise get round to it.
  ibv_sge recv_sge{reinterpret_cast<std::uintptr_t>(landing), s.size, c.local_mr->lkey};
  ibv_recv_wr recv{};
  recv.wr_id = 0;
  recv.sg_list = &recv_sge;
  recv.num_sge = 1;
  ibv_recv_wr* bad_recv = nullptr;
  common::check_rc(ibv_post_recv(c.qp.get(), &recv, &bad_recv), "ibv_post_recv", "the receive queue is full");

  ibv_sge sge{reinterpret_cast<std::uintptr_t>(source), s.size, c.local_mr->lkey};
  ibv_send_wr wr{};
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_SEND;
  if (s.use_event) arm_both(c);

  Meter meter;
  meter.reserve(s.iters);
  ibv_wc wc{};
  for (std::uint32_t i = 0; i < s.iters; ++i) {
    stamp(source, s.size, i + 1);  // the message's number in its first bytes (message_bytes.hpp)
    const Clock::time_point posted = Clock::now();
    const bool signaled = (i + 1) % t.signal_every == 0 || i + 1 == s.iters;
    wr.wr_id = i;
    // IBV_SEND_INLINE (step 4): the library copies the bytes into the work request now,
    // so the device need not fetch them from our buffer (on a NIC: one DMA read fewer).
    wr.send_flags = (signaled ? unsigned{IBV_SEND_SIGNALED} : 0u) | (s.use_inline ? unsigned{IBV_SEND_INLINE} : 0u);
    ibv_send_wr* bad = nullptr;
    common::check_rc(ibv_post_send(c.qp.get(), &wr, &bad), "ibv_post_send",
                     "ENOMEM: the send queue is full; EINVAL: a work request the QP cannot take (inline above "
                     "max_inline_data)");

    wait_for_completions(c, c.recv_cq.get(), &wc, 1, s.use_event, timeout_s, "the echo of message", i + 1);
    if (wc.status != IBV_WC_SUCCESS) failed_completion(wc, "the echo of message", i + 1);
    if (wc.byte_len != s.size || first_difference(landing, source, s.size, 0) >= 0)
      common::fail("the echo of message " + std::to_string(i + 1) + " differs from what was sent (" +
                       std::to_string(wc.byte_len) + " bytes)",
                   "this should never happen on RC; report it with both logs");
    // Re-post the RECV before the next SEND, so the next echo finds it; none after the
    // last echo: a RECV left posted would take the next measurement's first message.
    if (i + 1 < s.iters)
      common::check_rc(ibv_post_recv(c.qp.get(), &recv, &bad_recv), "ibv_post_recv", "the receive queue is full");
    if (signaled) {
      // The server's device ACKed our SEND when the message arrived, before the server's
      // program echoed it, so its completion is normally here already; an unsignaled SEND
      // gives none at all.
      wait_for_completions(c, c.send_cq.get(), &wc, 1, s.use_event, timeout_s, "SEND", i + 1);
      if (wc.status != IBV_WC_SUCCESS) failed_completion(wc, "SEND", i + 1);
    }
    meter.sample(micros(posted, Clock::now()) / 2);  // one way: half the round trip
  }
  return meter.finish(t, s.iters);
}

}  // namespace lesson06
