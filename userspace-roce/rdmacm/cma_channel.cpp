// Event channels: rdma_create/destroy_event_channel, rdma_get_cm_event, rdma_ack_cm_event,
// rdma_event_str, and the waits of synchronous ids (librdmacm's ucma_complete).
//
// The kernel's rdma_cm keeps each channel's events on a list behind /dev/infiniband/
// rdma_cm, readable while the list is not empty. Here the list is a deque under the
// library lock and the fd an eventfd in semaphore mode whose count equals the deque's
// length: it is changed only under the lock (one write per queued event, one read per
// event taken), so the fd is readable exactly while events wait, a read under the lock
// never blocks, and a program may poll() it or make it O_NONBLOCK as with the real one.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "cma.hpp"

namespace uroce::rdmacm {

ChannelPriv* channel_create() {
  int fd = eventfd(0, EFD_SEMAPHORE | EFD_CLOEXEC);
  if (fd < 0) return nullptr;
  auto* ch = new ChannelPriv;
  ch->ch.fd = fd;
  return ch;
}

void channel_destroy(ChannelPriv* ch) {
  for (EventPriv* e : ch->queue) delete e;
  close(ch->ch.fd);
  delete ch;
}

EventPriv* new_event(IdPriv* id, rdma_cm_event_type type, int status) {
  auto* e = new EventPriv;
  e->event.id = &id->id;
  e->event.event = type;
  e->event.status = status;
  e->owner = id;
  return e;
}

void queue_event(IdPriv* to, EventPriv* e) {
  ChannelPriv* ch = priv(to->id.channel);
  ch->queue.push_back(e);
  uint64_t one = 1;
  (void)!write(ch->ch.fd, &one, sizeof one);
}

// Takes `e` off its channel's queue and the fd's count with it. Lock held.
static void unqueue(ChannelPriv* ch, std::deque<EventPriv*>::iterator it) {
  ch->queue.erase(it);
  uint64_t v;
  (void)!read(ch->ch.fd, &v, sizeof v);  // count >= 1: never blocks
}

void drop_queued_events(IdPriv* id) {
  // As the kernel's ucma_destroy_id: events not yet reported vanish with the id; a
  // listener's pending connection requests take their new ids (and so a REJ) with them.
  ChannelPriv* ch = priv(id->id.channel);
  for (auto it = ch->queue.begin(); it != ch->queue.end();) {
    EventPriv* e = *it;
    if (e->owner != id && e->event.id != &id->id) {
      ++it;
      continue;
    }
    if (e->event.event == RDMA_CM_EVENT_CONNECT_REQUEST && e->event.id != &id->id) {
      IdPriv* child = priv(e->event.id);
      if (child->cm_id) device_if_open()->mgr->destroy(child->cm_id);
      free_id(child);
    }
    delete e;
    size_t pos = static_cast<size_t>(it - ch->queue.begin());
    unqueue(ch, it);
    it = ch->queue.begin() + static_cast<std::ptrdiff_t>(pos);
  }
}

// Pops the next event the application should see (lock held). 0, EAGAIN if none queued.
static int pop_event(ChannelPriv* ch, rdma_cm_event** out) {
  while (!ch->queue.empty()) {
    EventPriv* e = ch->queue.front();
    unqueue(ch, ch->queue.begin());
    if (!process_popped(e)) continue;
    e->owner->events_reported++;
    *out = &e->event;
    return 0;
  }
  return EAGAIN;
}

// Waits for the channel's fd to be readable, without the lock. `deadline_ms` < 0: none.
// Returns false if the deadline passed.
static bool wait_readable(ChannelPriv* ch, std::unique_lock<std::mutex>& lk,
                          std::chrono::steady_clock::time_point* deadline) {
  int fd = ch->ch.fd;
  lk.unlock();
  int timeout = -1;
  if (deadline) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(
                    *deadline - std::chrono::steady_clock::now())
                    .count();
    timeout = left < 0 ? 0 : static_cast<int>(left);
  }
  pollfd p{fd, POLLIN, 0};
  int r;
  do r = poll(&p, 1, timeout);
  while (r < 0 && errno == EINTR);
  lk.lock();
  return r != 0;
}

int complete_sync(IdPriv* id, std::unique_lock<std::mutex>& lk) {
  if (!id->sync) return 0;
  if (id->id.event) {
    EventPriv* old = reinterpret_cast<EventPriv*>(id->id.event);
    old->owner->events_completed++;
    delete old;
    id->id.event = nullptr;
    lib().acked.notify_all();
  }
  // No CM exchange outlasts cm_longest_exchange_ms for this id's REQ (the kernel's RoCE
  // ACK timeout 19 before any REQ: resolution completes at once), so an event that has
  // not come a margin after that never will.
  const unsigned ack = id->req_ack_timeout ? id->req_ack_timeout : kPacketLifeTime + 1;
  const auto limit = std::chrono::milliseconds(cm_longest_exchange_ms(ack)) +
                     std::chrono::seconds(kSyncDeadlineMarginSeconds);
  auto deadline = std::chrono::steady_clock::now() + limit;
  rdma_cm_event* ev = nullptr;
  ChannelPriv* ch = priv(id->id.channel);
  while (pop_event(ch, &ev) == EAGAIN) {
    if (exiting()) {
      // The CM stopped at exit (gsi_port.cpp): no event can come any more.
      errno = ENODEV;
      return -1;
    }
    if (!wait_readable(ch, lk, &deadline) || std::chrono::steady_clock::now() >= deadline) {
      say("a synchronous rdma_cm_id waited %lld s for its CM event, longer than the CM's "
          "resends and timeouts take (with an MRA's service timeout at most Linux's 24), "
          "and gave up (ETIMEDOUT): the event was lost, likely a bug of this librdmacm "
          "(the peer is %s; UROCE_LOG=1 shows the CM's messages)",
          static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(limit).count()),
          ip_str(id->peer_ip).c_str());
      errno = ETIMEDOUT;
      return -1;
    }
  }
  id->id.event = ev;
  if (ev->status) {
    // librdmacm's ucma_complete: a rejection is ECONNREFUSED, any other failure its
    // status as errno, negated if negative (a CONNECT_ERROR's -1 gives EPERM).
    if (ev->event == RDMA_CM_EVENT_REJECTED)
      errno = ECONNREFUSED;
    else
      errno = ev->status < 0 ? -ev->status : ev->status;
    return -1;
  }
  return 0;
}

void wait_acked(IdPriv* id, std::unique_lock<std::mutex>& lk, const char* who) {
  // As rdma-core's: an event handed out but never acknowledged would let
  // rdma_ack_cm_event touch a freed id, so this waits as long as it takes. After
  // kAckDeadlineSeconds it says so, once, and goes on waiting.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kAckDeadlineSeconds);
  auto done = [id] { return id->events_completed >= id->events_reported; };
  if (lib().acked.wait_until(lk, deadline, done)) return;
  say("%s waits for %d event(s) of its rdma_cm_id to be acknowledged with "
      "rdma_ack_cm_event (%d of %d so far); still waiting",
      who, id->events_reported - id->events_completed, id->events_completed,
      id->events_reported);
  lib().acked.wait(lk, done);
}

}  // namespace uroce::rdmacm

using namespace uroce::rdmacm;

RDMACM_EXPORT rdma_event_channel* rdma_create_event_channel(void) {
  if (int e = lib_init()) {
    errno = e;
    return nullptr;
  }
  ChannelPriv* ch = channel_create();
  return ch ? &ch->ch : nullptr;
}

RDMACM_EXPORT void rdma_destroy_event_channel(rdma_event_channel* channel) {
  std::lock_guard<std::mutex> l(lib().mu);
  channel_destroy(priv(channel));
}

RDMACM_EXPORT int rdma_get_cm_event(rdma_event_channel* channel, rdma_cm_event** event) {
  if (!channel || !event) {
    errno = EINVAL;
    return -1;
  }
  ChannelPriv* ch = priv(channel);
  std::unique_lock<std::mutex> lk(lib().mu);
  for (;;) {
    if (pop_event(ch, event) == 0) return 0;
    // Nothing queued: the real library's read() of the rdma_cm fd would block, or fail
    // with EAGAIN if the program made the fd non-blocking (rping, perftest poll it).
    int fl = fcntl(channel->fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK)) {
      errno = EAGAIN;
      return -1;
    }
    wait_readable(ch, lk, nullptr);  // the program's own wait: no deadline, as the real one
  }
}

RDMACM_EXPORT int rdma_ack_cm_event(rdma_cm_event* event) {
  if (!event) {
    errno = EINVAL;
    return -1;
  }
  auto* e = reinterpret_cast<EventPriv*>(event);
  std::lock_guard<std::mutex> l(lib().mu);
  e->owner->events_completed++;
  delete e;
  lib().acked.notify_all();
  return 0;
}

RDMACM_EXPORT const char* rdma_event_str(rdma_cm_event_type event) {
  switch (event) {
    case RDMA_CM_EVENT_ADDR_RESOLVED: return "RDMA_CM_EVENT_ADDR_RESOLVED";
    case RDMA_CM_EVENT_ADDR_ERROR: return "RDMA_CM_EVENT_ADDR_ERROR";
    case RDMA_CM_EVENT_ROUTE_RESOLVED: return "RDMA_CM_EVENT_ROUTE_RESOLVED";
    case RDMA_CM_EVENT_ROUTE_ERROR: return "RDMA_CM_EVENT_ROUTE_ERROR";
    case RDMA_CM_EVENT_CONNECT_REQUEST: return "RDMA_CM_EVENT_CONNECT_REQUEST";
    case RDMA_CM_EVENT_CONNECT_RESPONSE: return "RDMA_CM_EVENT_CONNECT_RESPONSE";
    case RDMA_CM_EVENT_CONNECT_ERROR: return "RDMA_CM_EVENT_CONNECT_ERROR";
    case RDMA_CM_EVENT_UNREACHABLE: return "RDMA_CM_EVENT_UNREACHABLE";
    case RDMA_CM_EVENT_REJECTED: return "RDMA_CM_EVENT_REJECTED";
    case RDMA_CM_EVENT_ESTABLISHED: return "RDMA_CM_EVENT_ESTABLISHED";
    case RDMA_CM_EVENT_DISCONNECTED: return "RDMA_CM_EVENT_DISCONNECTED";
    case RDMA_CM_EVENT_DEVICE_REMOVAL: return "RDMA_CM_EVENT_DEVICE_REMOVAL";
    case RDMA_CM_EVENT_MULTICAST_JOIN: return "RDMA_CM_EVENT_MULTICAST_JOIN";
    case RDMA_CM_EVENT_MULTICAST_ERROR: return "RDMA_CM_EVENT_MULTICAST_ERROR";
    case RDMA_CM_EVENT_ADDR_CHANGE: return "RDMA_CM_EVENT_ADDR_CHANGE";
    case RDMA_CM_EVENT_TIMEWAIT_EXIT: return "RDMA_CM_EVENT_TIMEWAIT_EXIT";
    default: return "UNKNOWN EVENT";
  }
}
