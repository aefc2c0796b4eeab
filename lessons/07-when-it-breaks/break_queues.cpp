/**
 * @file lessons/07-when-it-breaks/break_queues.cpp
 * @brief Local misuse of the queues: more work requests than the send queue holds, more
 *        completions than the CQ holds, and posting to a QP that is not ready.
 *
 * These never reach the wire as an error: the library or the device refuses the call
 * (an errno from ibv_post_send), or loses what did not fit (a CQ overrun, reported as an
 * asynchronous event, because no completion can carry it).
 */
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "case_kit.hpp"
#include "cases.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/qp_state.hpp"

namespace lesson07 {
namespace {

/// A chain of @p count signaled SENDs of kMessageBytes, posted with one ibv_post_send.
/// Returns the errno value and, through @p posted, how many the queue took.
int post_chain(Session& s, unsigned count, unsigned& posted) {
  std::vector<ibv_sge> sges(count);
  std::vector<ibv_send_wr> wrs(count);
  for (unsigned i = 0; i < count; ++i) {
    sges[i] = s.sge(0, kMessageBytes);
    wrs[i].wr_id = i + 1;
    wrs[i].sg_list = &sges[i];
    wrs[i].num_sge = 1;
    wrs[i].opcode = IBV_WR_SEND;
    wrs[i].send_flags = IBV_SEND_SIGNALED;
    wrs[i].next = i + 1 < count ? &wrs[i + 1] : nullptr;
  }
  ibv_send_wr* bad = nullptr;
  const int rc = ibv_post_send(s.qp.get(), wrs.data(), &bad);
  posted = bad ? static_cast<unsigned>(bad - wrs.data()) : count;
  LOG(fast, "step 5: post a chain of %u SENDs with one ibv_post_send: %s; the queue took %u", count,
      rc == 0 ? "posted" : errno_name(rc).c_str(), posted);
  return rc;
}

int sq_client(Session& s) {
  client_connect(s);
  const unsigned depth = s.cap.max_send_wr;
  LOG(slow, "step 5: client: the send queue holds %u work requests (asked %u); posting %u", depth,
      s.setup.max_send_wr, depth + 1);
  const Stopwatch clock;
  unsigned posted = 0;
  const int rc = post_chain(s, depth + 1, posted);
  report_call("client", "ibv_post_send of a chain one longer than the send queue", rc, clock);
  unsigned ok = 0;
  for (unsigned i = 0; i < posted; ++i) {
    const std::optional<ibv_wc> wc = poll_one("client", s.send_cq.get(), s.timeout(), clock);
    if (wc && wc->status == IBV_WC_SUCCESS) ++ok;
  }
  const ibv_qp_state state = report_qp_state("client", s.qp.get());
  explain("client", "immediate: the queue is full before anything is sent",
          "the SENDs that fitted, each ACKed: the refused one never existed",
          "keep at most max_send_wr requests outstanding, counting a slot free only when its completion was polled "
          "(lesson 06's window), and ask ibv_create_qp for the depth you need");
  Expect expect("client");
  expect.call(rc, ENOMEM, "ibv_post_send beyond max_send_wr");
  expect.that(posted == depth, "the queue took " + std::to_string(posted) + " of the chain, predicted " +
                                   std::to_string(depth));
  expect.that(ok == posted, std::to_string(ok) + " of the " + std::to_string(posted) + " posted SENDs succeeded");
  expect.qp_state(state, IBV_QPS_RTS);
  expect.within(clock.seconds(), 0);  // the refusal is immediate; the SENDs that fitted, a round trip
  client_finish(s);
  return expect.verdict("sq-overflow");
}

int queue_server(Session& s, const char* name) {
  return ordinary_server(s, name, ServerPlan{16, kMessageBytes, 0, IBV_QPS_RTS}, [](Expect& e, const ServerSeen& seen) {
    for (const ibv_wc& wc : seen.recvs) e.status(wc, IBV_WC_SUCCESS, "a RECV");
  });
}
int sq_server(Session& s) { return queue_server(s, "sq-overflow"); }

int cq_client(Session& s) {
  client_connect(s);
  const int cqe = s.send_cq->cqe;
  // Two more than the CQ holds, and no more than the send queue holds.
  const unsigned count = std::min(static_cast<unsigned>(cqe) + 2, s.cap.max_send_wr);
  LOG(slow, "step 5: client: the send CQ holds %d completions (asked %d); posting %u signaled SENDs and not polling",
      cqe, s.setup.send_cqe, count);
  const Stopwatch clock;
  unsigned posted = 0;
  const int rc = post_chain(s, count, posted);
  // The overrun is reported as an asynchronous event: wait for it (or -t).
  const std::vector<ibv_event_type> events = take_async_events("client", s.port.ctx.get(), s.timeout());
  unsigned polled = 0;
  ibv_wc wc{};
  while (ibv_poll_cq(s.send_cq.get(), 1, &wc) == 1) {
    report_wc("client", wc, clock);
    ++polled;
  }
  const ibv_qp_state state = report_qp_state("client", s.qp.get());
  explain("client", "as soon as the completion that does not fit is generated",
          "all SENDs and their ACKs: the wire is fine, the loss is local",
          "size every CQ for all the completions that can be outstanding: the sum of the queue depths it serves");
  Expect expect("client");
  expect.call(rc, 0, "ibv_post_send");
  expect.event(events, IBV_EVENT_CQ_ERR);
  expect.that(polled <= static_cast<unsigned>(cqe), "polled " + std::to_string(polled) + " completions from a CQ of " +
                                                        std::to_string(cqe));
  // A lost send completion does not fail the QP (rxe_cq_post's caller ignores it).
  expect.qp_state(state, IBV_QPS_RTS);
  expect.within(clock.seconds(), 0);
  client_finish(s);
  return expect.verdict("cq-overflow");
}
int cq_server(Session& s) { return queue_server(s, "cq-overflow"); }

/// post-too-early: the client alone, no peer needed.
int early_post_client(Session& s) {
  Expect expect("client");
  const Stopwatch clock;
  ibv_sge sge = s.sge(0, kMessageBytes);
  ibv_recv_wr rwr{};
  rwr.wr_id = 1;
  rwr.sg_list = &sge;
  rwr.num_sge = 1;
  ibv_recv_wr* rbad = nullptr;
  ibv_send_wr swr{};
  swr.wr_id = 2;
  swr.sg_list = &sge;
  swr.num_sge = 1;
  swr.opcode = IBV_WR_SEND;
  swr.send_flags = IBV_SEND_SIGNALED;
  ibv_send_wr* sbad = nullptr;
  LOG(slow, "step 5: client: QP 0x%06x in %s", s.qp->qp_num, common::qp_state_name(common::query_qp_state(s.qp.get())));
  const int recv_reset = ibv_post_recv(s.qp.get(), &rwr, &rbad);
  report_call("client", "ibv_post_recv in RESET", recv_reset, clock);
  const int send_reset = ibv_post_send(s.qp.get(), &swr, &sbad);
  report_call("client", "ibv_post_send in RESET", send_reset, clock);
  common::qp_to_init(s.qp.get(), s.port.port, 0);
  LOG(slow, "step 5: client: QP 0x%06x in INIT", s.qp->qp_num);
  const int send_init = ibv_post_send(s.qp.get(), &swr, &sbad);
  report_call("client", "ibv_post_send in INIT", send_init, clock);
  const int recv_init = ibv_post_recv(s.qp.get(), &rwr, &rbad);
  report_call("client", "ibv_post_recv in INIT", recv_init, clock);
  explain("client",
          "immediate; on kernel rxe the provider has already written the SEND into the mmap'd send queue when the "
          "kernel refuses it (EINVAL from the doorbell), so a refused SEND is not necessarily gone",
          "nothing",
          "post RECVs from INIT on and SENDs from RTS on: RESET -> INIT -> RTR -> RTS first (common/qp_state.hpp)");
  expect.call(recv_reset, EINVAL, "ibv_post_recv in RESET");
  expect.call(send_reset, EINVAL, "ibv_post_send in RESET");
  expect.call(send_init, EINVAL, "ibv_post_send in INIT");
  expect.call(recv_init, 0, "ibv_post_recv in INIT");
  expect.within(clock.seconds(), 0);
  return expect.verdict("post-too-early");
}

int no_server(Session&) { return 0; }

}  // namespace

/// The cases of this file, in the README's order (declared in cases.hpp).
std::vector<Case> queue_cases() {
  Setup sq;
  sq.max_send_wr = 3;  // 2^2 - 1: Soft-RoCE rounds a queue up to 2^k - 1 slots, so 3 is exactly 3
  Setup cq;
  cq.send_cqe = 1;
  cq.max_send_wr = 16;
  Setup early;
  early.init_qp = false;
  return {
      {"sq-overflow", "a chain of work requests one longer than the send queue", "client: ibv_post_send ENOMEM", sq,
       sq_client, sq_server},
      {"cq-overflow", "more signaled completions than the send CQ holds, none polled",
       "client: async event IBV_EVENT_CQ_ERR", cq, cq_client, cq_server},
      {"post-too-early", "ibv_post_recv in RESET, ibv_post_send in RESET and INIT",
       "client: the calls fail (what each returns is the lesson)", early, early_post_client, no_server, false},
  };
}

}  // namespace lesson07
