#include "stream.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common/errors.hpp"
#include "message_bytes.hpp"
#include "waiting.hpp"

namespace lesson06 {
namespace {

ibv_wr_opcode verbs_opcode(common::TestOp op) {
  switch (op) {
    case common::TestOp::send: return IBV_WR_SEND;
    case common::TestOp::write: return IBV_WR_RDMA_WRITE;
    case common::TestOp::write_imm: return IBV_WR_RDMA_WRITE_WITH_IMM;
    case common::TestOp::read: return IBV_WR_RDMA_READ;
  }
  return IBV_WR_SEND;
}

}  // namespace

Result run_stream(Connection& c, const RemoteRing& remote, const Technique& t, double timeout_s) {
  const common::TestSpec& s = t.spec;
  const std::uint32_t window = s.window;
  const bool read = s.op == common::TestOp::read;
  char* sources = c.local.data();
  char* landing = c.local.data() + c.ring_bytes;
  // The bytes every message carries (for a READ: what the server's ring holds).
  fill_ring(sources, s.size, window, s.number);
  if (read) std::memset(landing, 0, std::size_t{s.size} * window);
  char* local_ring = read ? landing : sources;  // a READ's destination, anything else's source

  // The chain's work requests and their scatter/gather entries, linked once.
  std::vector<ibv_send_wr> wrs(t.chain);
  std::vector<ibv_sge> sges(t.chain);
  for (std::uint32_t j = 0; j < t.chain; ++j) {
    wrs[j].sg_list = &sges[j];
    wrs[j].num_sge = 1;
    wrs[j].opcode = verbs_opcode(s.op);
    wrs[j].wr.rdma.rkey = remote.rkey;  // ignored by SEND
    sges[j].length = s.size;
    sges[j].lkey = c.local_mr->lkey;
  }
  // When each signaled request was posted, by slot (one signaled request per slot at most).
  std::vector<Clock::time_point> posted_at(window);
  std::vector<ibv_wc> wcs(16);
  if (s.use_event) arm_both(c);

  Meter meter;
  meter.reserve(s.iters / t.signal_every + 2);
  std::uint64_t posted = 0;  // requests handed to the device
  std::uint64_t done = 0;    // requests known to be complete (every one before a completion)
  while (done < s.iters) {
    // Post whole chains while the window has room for one.
    while (posted < s.iters) {
      const auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(t.chain, s.iters - posted));
      if (posted - done + n > window) break;
      for (std::uint32_t j = 0; j < n; ++j) {
        const std::uint64_t i = posted + j;
        const auto slot = static_cast<std::uint32_t>(i % window);
        const bool signaled = (i + 1) % t.signal_every == 0 || i + 1 == s.iters;
        ibv_send_wr& wr = wrs[j];
        wr.wr_id = i;
        wr.send_flags = (signaled ? unsigned{IBV_SEND_SIGNALED} : 0u) | (s.use_inline ? unsigned{IBV_SEND_INLINE} : 0u);
        sges[j].addr = reinterpret_cast<std::uintptr_t>(slot_at(local_ring, s.size, slot));
        // The message's number in its first bytes; the slot is free: the message that used
        // it last (i - window) has completed, or the window would not have room.
        if (!read) stamp(slot_at(sources, s.size, slot), s.size, static_cast<std::uint32_t>(i + 1));
        wr.wr.rdma.remote_addr = remote.addr + std::uint64_t{s.size} * slot;
        wr.imm_data = htonl(static_cast<std::uint32_t>(i));  // WRITE_WITH_IMM: the message number
        wr.next = j + 1 < n ? &wrs[j + 1] : nullptr;
      }
      const Clock::time_point now = Clock::now();
      for (std::uint32_t j = 0; j < n; ++j)
        if (wrs[j].send_flags & IBV_SEND_SIGNALED) posted_at[(posted + j) % window] = now;
      ibv_send_wr* bad = nullptr;
      if (const int rc = ibv_post_send(c.qp.get(), wrs.data(), &bad); rc != 0)
        common::fail("ibv_post_send refused request " + std::to_string(bad ? bad->wr_id + 1 : posted + 1) + ": " +
                         common::errno_text(rc),
                     "ENOMEM: the send queue is full (more requests than max_send_wr " +
                         std::to_string(c.cap.max_send_wr) +
                         " not yet known complete); EINVAL: a work request the QP cannot take (inline above "
                         "max_inline_data)");
      posted += n;
    }
    // Take completions: each is a signaled request, and says every earlier one is done.
    const int got = wait_for_completions(c, c.send_cq.get(), wcs.data(), static_cast<int>(wcs.size()), s.use_event,
                                         timeout_s, op_name(s.op), done + 1);
    const Clock::time_point now = Clock::now();
    for (int w = 0; w < got; ++w) {
      const ibv_wc& wc = wcs[static_cast<std::size_t>(w)];
      if (wc.status != IBV_WC_SUCCESS) failed_completion(wc, op_name(s.op), wc.wr_id + 1);
      if (read) {
        // Every READ up to this one has landed: compare them before their slots are reused.
        for (std::uint64_t i = done; i <= wc.wr_id; ++i) {
          const auto slot = static_cast<std::uint32_t>(i % window);
          const long at = first_difference(slot_at(landing, s.size, slot), sources, s.size, slot);
          if (at >= 0)
            common::fail("READ " + std::to_string(i + 1) + " brought wrong bytes (first at offset " + std::to_string(at) + ")",
                         "this should never happen on RC; report it with both logs");
          std::memset(slot_at(landing, s.size, slot), 0, s.size);
        }
      }
      meter.sample(micros(posted_at[wc.wr_id % window], now));
      done = wc.wr_id + 1;
    }
  }
  return meter.finish(t, s.iters);
}

}  // namespace lesson06
