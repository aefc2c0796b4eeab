// What the exported verbs API is built from: the context an application holds, and the
// macros that give a C++ function its exported, versioned name (libibverbs.map).
#pragma once

#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>

#define UROCE_EXPORT extern "C" __attribute__((visibility("default")))

namespace uroce {

struct Device;

/// An open context: what ibv_open_device returns, laid out as rdma-core's verbs_context so
/// that the static inline wrappers in <infiniband/verbs.h> find their extended ops.
struct Context {
  verbs_context vctx{};
  Device* dev = nullptr;
  /// Asynchronous events not yet taken by ibv_get_async_event, oldest first; each one
  /// also counts 1 in the eventfd `vctx.context.async_fd` (a semaphore), which is what
  /// makes that fd readable for poll(). Guarded by `async_mu`, a leaf lock.
  std::mutex async_mu;
  std::deque<ibv_async_event> async_events;
};

/// Queue an asynchronous event for ibv_get_async_event (e.g. IBV_EVENT_CQ_ERR).
void raise_async_event(ibv_context* ctx, const ibv_async_event& event);
inline Context* context_of(ibv_context* c) {
  return reinterpret_cast<Context*>(reinterpret_cast<uint8_t*>(c) - offsetof(verbs_context, context));
}

}  // namespace uroce

/// Names a function whose exported name exists in two versions (see libibverbs.map).
#define UROCE_V1_1(name) uroce_1_1_##name
