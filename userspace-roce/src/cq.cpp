// Completions arriving in a CQ, and the completion-channel event an armed CQ raises.
#include <unistd.h>

#include "runtime.hpp"

namespace uroce {

void cq_push(Cq& cq, const ibv_wc& wc, bool solicited) {
  std::lock_guard<std::mutex> l(cq.mu);
  if (static_cast<int>(cq.entries.size()) >= cq.capacity) {
    // CQ overrun: the completion is lost. As kernel rxe does (rxe_cq_post), raise
    // IBV_EVENT_CQ_ERR for each one lost, and say so once on stderr.
    if (!cq.overrun_reported)
      log_line("CQ overrun: more than %d completions not polled; completions are being lost",
               cq.capacity);
    cq.overrun_reported = true;
    ibv_async_event ev{};
    ev.element.cq = &cq.ibv;
    ev.event_type = IBV_EVENT_CQ_ERR;
    raise_async_event(cq.ibv.context, ev);
    return;
  }
  cq.entries.push_back(wc);
  cq.ready.store(static_cast<int>(cq.entries.size()), std::memory_order_release);
  if (cq.armed.load(std::memory_order_relaxed) && cq.channel &&
      (!cq.solicited_only || solicited || wc.status != IBV_WC_SUCCESS)) {
    cq.armed.store(false, std::memory_order_relaxed);
    std::lock_guard<std::mutex> c(cq.channel->mu);
    cq.channel->events.push_back(&cq);
    uint64_t one = 1;
    (void)!write(cq.channel->ibv.fd, &one, sizeof one);
  }
}

void raise_async_event(ibv_context* ctx, const ibv_async_event& event) {
  // A CQ made by ibv_create_cq belongs to a context; one the transport's own tests and
  // fuzzers build directly has none, and no one to tell.
  if (ctx == nullptr) return;
  Context* c = context_of(ctx);
  {
    std::lock_guard<std::mutex> l(c->async_mu);
    c->async_events.push_back(event);
  }
  uint64_t one = 1;
  (void)!write(ctx->async_fd, &one, sizeof one);
}

}  // namespace uroce
