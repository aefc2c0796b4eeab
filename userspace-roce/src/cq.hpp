// Completion queues and completion channels: where the transport leaves its work
// completions (cq_push) and how an application waits for them.
#pragma once

#include <infiniband/verbs.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>

namespace uroce {

struct Cq;

/// A completion channel: its fd is an eventfd whose counter always equals `events.size()`.
/// cq_push adds one to both while holding `mu`; only code that holds `mu` reads the
/// counter, and only to take back an event it is removing, so no read ever blocks.
/// ibv_get_cq_event waits with poll() (no lock held) and takes the event under `mu`; the
/// fd is readable exactly when an event is waiting, as on the kernel's completion-event file.
struct Channel {
  ibv_comp_channel ibv{};  ///< what the application holds; `ibv.fd` is the eventfd
  std::mutex mu;           ///< guards `events` and the eventfd's counter
  std::deque<Cq*> events;  ///< CQs whose event is waiting, oldest first
  int refs = 0;            ///< CQs using this channel (guarded by Device::mu)
};

/// A completion queue. Its completion events follow rdma-core's accounting: every event
/// ibv_get_cq_event returns counts in `events_reported`, ibv_ack_cq_events counts in
/// `ibv.comp_events_completed`, and ibv_destroy_cq waits (on `ibv.cond`) until the two agree.
/// `ibv.mutex` is taken alone, or after Channel::mu (ibv_get_cq_event).
struct Cq {
  ibv_cq ibv{};                ///< what the application holds
  Channel* channel = nullptr;  ///< where its events go; null: created without a channel
  std::mutex mu;               ///< guards `entries` and the notification state
  std::deque<ibv_wc> entries;  ///< completions not yet polled, oldest first
  std::atomic<int> ready{0};  ///< entries.size(), readable without the lock
  int capacity = 0;           ///< the cqe the CQ was created with
  std::atomic<bool> armed{false};  ///< ibv_req_notify_cq was called and no event followed yet
  bool solicited_only = false;     ///< the arming asked for solicited completions only
  bool overrun_reported = false;   ///< an overrun was already said on stderr
  int qp_refs = 0;  ///< QPs that use this CQ (guarded by Device::mu)
  /// Events ibv_get_cq_event has returned for this CQ (guarded by `ibv.mutex`).
  unsigned int events_reported = 0;
};

/// Adds one completion to a CQ and raises its channel event if it is armed.
void cq_push(Cq& cq, const ibv_wc& wc, bool solicited);

}  // namespace uroce
