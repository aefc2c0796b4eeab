// roce_bench over verbs: write_bw and pingpong, client and server.
#include "verbs_tests.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <string>
#include <vector>

#include "pattern.hpp"
#include "results.hpp"

namespace roce_bench {

// ---------------------------------------------------------------------------------------
// verbs write_bw
// ---------------------------------------------------------------------------------------

void verbs_write_bw_client(const Params& p, Socket& ctrl, Endpoint& ep, const QpInfo& remote) {
  if (remote.length < slot_bytes(p))
    fail("the server's buffer has " + std::to_string(remote.length) + " bytes, the run needs " +
             std::to_string(slot_bytes(p)),
         "both sides must run the same roce_bench build");
  const std::uint32_t seed = random_seed();
  for (std::uint32_t s = 0; s < p.depth; ++s) fill_slot(ep.buf() + std::size_t{s} * p.size, p.size, seed, s);
  Poller poller(ep, ctrl, p.timeout_s, p.poll);
  ibv_wc wcs[16];

  // Post WRITEs first..end-1, keeping `depth` in flight; WRITE i goes from local slot
  // i % depth to remote slot i % depth. Completions arrive in order on RC, so when WRITE i
  // is posted WRITE i - depth has completed and its slot may be stamped again.
  const auto run = [&](std::uint64_t first, std::uint64_t end) {
    std::uint64_t next = first, done = first;
    while (done < end) {
      while (next < end && next - done < p.depth) {
        const auto s = static_cast<std::uint32_t>(next % p.depth);
        std::uint8_t* slot = ep.buf() + std::size_t{s} * p.size;
        stamp(slot, p.size, next);
        post_write(ep, slot, p.size, remote.addr + std::uint64_t{s} * p.size, remote.rkey, next);
        ++next;
      }
      const int n = poller.poll(wcs, 16, "RDMA WRITE completions");
      for (int i = 0; i < n; ++i) {
        if (wcs[i].opcode != IBV_WC_RDMA_WRITE || wcs[i].wr_id != done)
          fail("expected the completion of WRITE " + std::to_string(done) + ", got opcode " +
                   wc_opcode_name(wcs[i].opcode) + " wr_id " + std::to_string(wcs[i].wr_id),
               "RC completes send-queue work in order: the transport reordered or invented a completion");
        ++done;
      }
    }
  };
  DETAIL("warmup: %u WRITEs", p.warmup);
  run(0, p.warmup);
  const auto t0 = Clock::now();
  run(p.warmup, p.total());
  const auto t1 = Clock::now();
  DETAIL("measured %u WRITEs in %.4f s", p.iters, seconds_between(t0, t1));

  // The check: a SEND after the WRITEs on the same RC QP arrives after their data is in
  // place, so the server may inspect its buffer as soon as this SEND completes there.
  CheckRequest c{seed, p.total(), p.depth, p.size};
  const auto body = encode_check(c);
  std::uint8_t* area = ep.buf() + slot_bytes(p);
  std::memcpy(area, body.data(), body.size());
  post_send(ep, area, kCheckBytes, p.total(), false);
  const int n = poller.poll(wcs, 1, "the check SEND");
  if (wcs[0].opcode != IBV_WC_SEND || n != 1) fail("the check SEND completed as " + std::string(wc_opcode_name(wcs[0].opcode)),
                                                   "the transport reported the wrong completion");
  ctrl.expect_msg(Msg::verdict);
  say("the server verified the contents of its %u slots",
      static_cast<std::uint32_t>(std::min<std::uint64_t>(p.depth, p.total())));
  done_barrier(ctrl);
  print_bw(p, seconds_between(t0, t1), ep.path_mtu);
}

void verbs_write_bw_server(const Params& p, Socket& ctrl, Endpoint& ep) {
  std::uint8_t* area = ep.buf() + slot_bytes(p);
  Poller poller(ep, ctrl, p.timeout_s, PollMode::yield);
  // WRITEs leave no completion on this side: watch the stamps they leave in the slots
  // (the first 8 bytes of each), so "no progress for --timeout" still means something.
  const std::uint32_t watched = std::min<std::uint32_t>(p.depth, 64);
  std::vector<std::uint64_t> seen(watched, 0);
  const auto progress = [&] {
    bool moved = false;
    for (std::uint32_t s = 0; s < watched; ++s) {
      const volatile std::uint8_t* q = ep.buf() + std::size_t{s} * p.size;
      std::uint64_t v = 0;
      for (std::uint32_t b = 0; b < 8 && b < p.size; ++b) v = v << 8 | q[b];
      if (v != seen[s]) moved = true;
      seen[s] = v;
    }
    return moved;
  };
  ibv_wc wc{};
  poller.poll(&wc, 1, "the client's WRITEs and its check SEND", progress);
  if (wc.opcode != IBV_WC_RECV)
    fail("expected the RECV of the check SEND, got " + std::string(wc_opcode_name(wc.opcode)),
         "the transport reported the wrong completion");
  const CheckRequest c = decode_check(area, wc.byte_len);
  if (c.total != p.total() || c.depth != p.depth || c.size != p.size)
    fail("the check request says " + std::to_string(c.total) + " WRITEs of " + std::to_string(c.size) +
             " bytes over " + std::to_string(c.depth) + " slots; the HELLO said " + std::to_string(p.total()) +
             " of " + std::to_string(p.size) + " over " + std::to_string(p.depth),
         "the transport delivered wrong bytes in the final SEND");
  if (const std::string diff = verify_slots(ep.buf(), c, ep.path_mtu); !diff.empty())
    fail("WRITE data check failed: " + diff,
         "the transport lost, misplaced or corrupted RDMA WRITE payload; no number is reported");
  say("verified %u slots after %" PRIu64 " WRITEs of %u bytes", static_cast<std::uint32_t>(std::min<std::uint64_t>(c.depth, c.total)),
      c.total, c.size);
  ctrl.send_msg(Msg::verdict);
  done_barrier(ctrl);
}

// ---------------------------------------------------------------------------------------
// verbs pingpong
// ---------------------------------------------------------------------------------------

std::uint8_t* send_slot(Endpoint& ep, const Params& p, std::uint64_t i) {
  return ep.buf() + (i % kPingRing) * p.size;
}
std::uint8_t* recv_slot(Endpoint& ep, const Params& p, std::uint64_t s) {
  return ep.buf() + (kPingRing + s) * p.size;
}

void verbs_pingpong_client(const Params& p, Socket& ctrl, Endpoint& ep) {
  const std::uint32_t seed = random_seed();
  for (std::uint32_t s = 0; s < kPingRing; ++s) fill_slot(send_slot(ep, p, s), p.size, seed, s);
  Poller poller(ep, ctrl, p.timeout_s, p.poll);
  std::vector<std::uint64_t> samples(p.iters);
  ibv_wc wcs[kPingRing + 1];
  std::uint32_t sends_in_flight = 0;
  const auto count_send = [&](const ibv_wc& wc) {
    if (wc.opcode != IBV_WC_SEND)
      fail("unexpected completion opcode " + std::string(wc_opcode_name(wc.opcode)), "the transport reported the wrong completion");
    --sends_in_flight;
  };
  for (std::uint64_t i = 0; i < p.total(); ++i) {
    // A send slot may be rewritten only once its SEND completed (it may be retransmitted).
    while (sends_in_flight >= kPingRing) {
      const int n = poller.poll(wcs, static_cast<int>(kPingRing), "SEND completions");
      for (int k = 0; k < n; ++k) {
        if (wcs[k].opcode == IBV_WC_RECV) fail("an echo arrived before its message was sent", "the transport invented a message");
        count_send(wcs[k]);
      }
    }
    std::uint8_t* msg = send_slot(ep, p, i);
    stamp(msg, p.size, i);
    const auto t0 = Clock::now();
    post_send(ep, msg, p.size, i, true);
    ++sends_in_flight;
    bool echoed = false;
    Clock::time_point t1;
    while (!echoed) {
      const int n = poller.poll(wcs, static_cast<int>(kPingRing + 1), "the echo");
      const auto now = Clock::now();
      for (int k = 0; k < n; ++k) {
        const ibv_wc& wc = wcs[k];
        if (wc.opcode != IBV_WC_RECV) {
          count_send(wc);
          continue;
        }
        if (echoed) fail("two echoes for message " + std::to_string(i), "the transport duplicated a message");
        echoed = true;
        t1 = now;
        const std::uint64_t slot = wc.wr_id & ~kRecvTag;
        if (wc.byte_len != p.size || std::memcmp(recv_slot(ep, p, slot), msg, p.size) != 0)
          fail("the echo of message " + std::to_string(i) + " differs from what was sent (" +
                   std::to_string(wc.byte_len) + " of " + std::to_string(p.size) + " bytes)",
               "the transport corrupted, truncated or reordered a SEND; no number is reported");
        post_recv(ep, recv_slot(ep, p, slot), p.size, wc.wr_id);
      }
    }
    if (i >= p.warmup) samples[i - p.warmup] = ns_between(t0, t1) / 2;
  }
  while (sends_in_flight > 0) {
    const int n = poller.poll(wcs, static_cast<int>(kPingRing), "the last SEND completions");
    for (int k = 0; k < n; ++k) count_send(wcs[k]);
  }
  done_barrier(ctrl);
  print_latency(p, samples, ep.path_mtu);
}

void verbs_pingpong_server(const Params& p, Socket& ctrl, Endpoint& ep) {
  Poller poller(ep, ctrl, p.timeout_s, p.poll);
  ibv_wc wcs[2 * kPingRing];
  std::vector<std::uint64_t> pending;  // recv slots received but not yet echoed
  std::uint64_t received = 0, echoed = 0;
  std::uint32_t sends_in_flight = 0;
  while (echoed < p.total() || sends_in_flight > 0) {
    const int n = poller.poll(wcs, static_cast<int>(2 * kPingRing), "the client's next message");
    for (int k = 0; k < n; ++k) {
      const ibv_wc& wc = wcs[k];
      if (wc.opcode == IBV_WC_RECV) {
        if (wc.byte_len != p.size)
          fail("message " + std::to_string(received) + " has " + std::to_string(wc.byte_len) +
                   " bytes, expected " + std::to_string(p.size),
               "the transport truncated or padded a SEND");
        if (++received > p.total())
          fail("more messages than the " + std::to_string(p.total()) + " announced", "the transport duplicated a message");
        pending.push_back(wc.wr_id & ~kRecvTag);
      } else if (wc.opcode == IBV_WC_SEND) {
        --sends_in_flight;
      } else {
        fail("unexpected completion opcode " + std::string(wc_opcode_name(wc.opcode)), "the transport reported the wrong completion");
      }
    }
    // Echo: copy into the next free send slot, give the RECV back, SEND.
    std::size_t used = 0;
    for (; used < pending.size() && sends_in_flight < kPingRing; ++used) {
      const std::uint64_t slot = pending[used];
      std::uint8_t* out = send_slot(ep, p, echoed);
      std::memcpy(out, recv_slot(ep, p, slot), p.size);
      post_recv(ep, recv_slot(ep, p, slot), p.size, kRecvTag | slot);
      post_send(ep, out, p.size, echoed, true);
      ++sends_in_flight;
      ++echoed;
    }
    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(used));
  }
  say("echoed %" PRIu64 " messages of %u bytes", echoed, p.size);
  done_barrier(ctrl);
}

}  // namespace roce_bench
