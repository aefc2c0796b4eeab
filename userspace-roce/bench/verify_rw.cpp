// roce_bench --test verify_rw: a bulk RDMA WRITE of iters x size bytes, read back with RDMA
// READ and checked byte for byte on both sides.
//
// The server's buffer holds iters regions of size bytes; WRITE i fills region i. Region
// i's byte o is byte o % 8 of splitmix64(key(seed, i) + o / 8 * golden): it depends on the
// seed, the iteration and the offset, is (practically) never zero for long, and does not
// repeat every 4 KiB, so a packet placed at the wrong offset or in the wrong region, a lost
// or duplicated payload, and stale zeros all show up.
//
// Client: WRITE all regions (--depth in flight), then a SEND on the same QP tells the
// server the WRITEs are complete (RC delivers it after their data) and gives it the seed;
// the server checks its buffer independently and answers VERDICT over TCP. Then the client
// READs the whole buffer back in --size chunks (min(depth, 16) in flight: the QP's
// max_rd_atomic / max_dest_rd_atomic) into a separate buffer and compares it with what it
// wrote. While the client works, it sends a PROGRESS message over TCP at most every
// 0.25 s when completions arrive: the server, which sees no completions of its own for
// WRITEs and READs, counts those as progress for its --timeout.
#include "verify_rw.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "pattern.hpp"

namespace roce_bench {
namespace {

constexpr std::uint64_t kReadTag = 1ull << 62;
constexpr std::uint64_t kCheckSendTag = 1ull << 61;
constexpr std::uint32_t kMaxReadsInFlight = 16;  // the usual max_qp_rd_atom (and the runtime's)
constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

}  // namespace

std::uint64_t verify_bytes(const Params& p) { return std::uint64_t{p.iters} * p.size; }
std::uint8_t verify_reads(const Params& p) {
  return static_cast<std::uint8_t>(std::min(p.depth, kMaxReadsInFlight));
}

namespace {

constexpr std::uint64_t splitmix64(std::uint64_t x) {
  x += kGolden;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::uint64_t region_key(std::uint32_t seed, std::uint64_t iteration) {
  return splitmix64((std::uint64_t{seed} << 32 | 0x5652u) ^ splitmix64(iteration));
}

/// Region @p iteration's pattern, @p size bytes (little-endian 8-byte words).
void fill_region(std::uint8_t* p, std::uint32_t size, std::uint32_t seed, std::uint64_t iteration) {
  const std::uint64_t key = region_key(seed, iteration);
  std::uint32_t off = 0;
  for (std::uint64_t k = 0; off < size; ++k) {
    const std::uint64_t w = splitmix64(key + k * kGolden);
    for (std::uint32_t j = 0; j < 8 && off < size; ++j, ++off) p[off] = static_cast<std::uint8_t>(w >> (8 * j));
  }
}

/// Where @p got first differs from @p want over the whole transfer, in words; "" if nowhere.
/// @p want(i, scratch) yields region i's expected bytes (the source buffer, or a pattern
/// generated into scratch).
template <class Want>
std::string find_mismatch(const Params& p, const std::uint8_t* got, Want&& want, std::uint32_t mtu,
                          const char* got_what, const char* want_what) {
  std::vector<std::uint8_t> scratch;
  std::uint64_t bad_regions = 0, first_region = 0;
  std::string text;
  for (std::uint64_t i = 0; i < p.iters; ++i) {
    const std::uint8_t* g = got + i * p.size;
    const std::uint8_t* w = want(i, scratch);
    if (std::memcmp(g, w, p.size) == 0) continue;
    if (bad_regions++ > 0) continue;
    first_region = i;
    std::uint32_t off = 0;
    while (g[off] == w[off]) ++off;
    std::uint32_t bad = 0, zeros = 0;
    for (std::uint32_t b = 0; b < p.size; ++b) {
      bad += g[b] != w[b];
      zeros += g[b] != w[b] && g[b] == 0;
    }
    char bytes[160];
    std::snprintf(bytes, sizeof bytes, ": expected 0x%02x (%s), got 0x%02x (%s)", w[off], want_what, g[off], got_what);
    text = "first difference at byte offset " + std::to_string(i * p.size + off) + " (message " +
           std::to_string(i) + ", byte " + std::to_string(off) + " of it" +
           (mtu > 0 ? ", packet " + std::to_string(off / mtu) : std::string()) + ")" + bytes + "; " +
           std::to_string(bad) + " of its " + std::to_string(p.size) + " bytes differ" +
           (zeros == bad && bad >= 16 ? " (all of them zero: that data never arrived?)" : "");
  }
  if (bad_regions > 1)
    text += "; " + std::to_string(bad_regions) + " of " + std::to_string(p.iters) + " messages differ (first: " +
            std::to_string(first_region) + ")";
  return text;
}

std::string verify_wr_text(std::uint64_t wr_id) {
  if (wr_id == kCheckSendTag) return "the check SEND";
  if (wr_id & kRecvTag) return "the RECV of the check SEND";
  if (wr_id & kReadTag) return "RDMA READ " + std::to_string(wr_id & ~kReadTag);
  return "RDMA WRITE " + std::to_string(wr_id);
}

/// Client side: tells the server, over TCP, that completions keep arriving.
class ProgressBeacon {
 public:
  ProgressBeacon(Socket& ctrl, double timeout_s) : ctrl_(ctrl), every_(std::min(0.25, timeout_s / 4)) {}
  void tick() {
    const auto now = Clock::now();
    if (seconds_between(last_, now) < every_) return;
    ctrl_.send_msg(Msg::progress);
    last_ = now;
  }

 private:
  Socket& ctrl_;
  double every_;
  Clock::time_point last_ = Clock::now();
};

/// The DONE body of verify_rw: the client's two phase times, so the server can print the
/// same RESULT line.
std::vector<std::uint8_t> encode_times(std::uint64_t write_ns, std::uint64_t read_ns) {
  Writer w;
  w.u64(write_ns).u64(read_ns);
  return w.data();
}

void print_verify(const Params& p, std::uint64_t write_ns, std::uint64_t read_ns) {
  const double bytes = static_cast<double>(verify_bytes(p));
  const auto rate = [&](std::uint64_t ns) { return ns > 0 ? bytes / static_cast<double>(ns) : 0.0; };  // 10^9 B/s
  std::printf("RESULT transport=verbs test=verify_rw size=%u iters=%u bytes=%" PRIu64
              " write_gbytes_per_s=%.3f read_gbytes_per_s=%.3f verified=yes\n",
              p.size, p.iters, verify_bytes(p), rate(write_ns), rate(read_ns));
  std::fflush(stdout);
}

}  // namespace

void verbs_verify_rw_client(const Params& p, Socket& ctrl, Endpoint& ep, const QpInfo& remote) {
  const std::uint64_t total = verify_bytes(p);
  if (remote.length < total)
    fail("the server's buffer has " + std::to_string(remote.length) + " bytes, the run needs " +
             std::to_string(total),
         "both sides must run the same roce_bench build");
  // Layout: [source: what we WRITE, total][readback: what we READ, total][check SEND].
  std::uint8_t* source = ep.buf();
  std::uint8_t* readback = ep.buf() + total;
  std::uint8_t* check_area = ep.buf() + 2 * total;
  const std::uint32_t seed = random_seed();
  for (std::uint64_t i = 0; i < p.iters; ++i) fill_region(source + i * p.size, p.size, seed, i);
  Poller poller(ep, ctrl, p.timeout_s, p.poll);
  poller.describe_wr_ids(verify_wr_text);
  ProgressBeacon beacon(ctrl, p.timeout_s);
  ibv_wc wcs[16];

  // One phase: post op i (i < iters) with at most `limit` in flight; RC completes them in order.
  const auto phase = [&](ibv_wr_opcode opcode, std::uint32_t limit, std::uint64_t tag, const char* what) {
    const ibv_wc_opcode want = opcode == IBV_WR_RDMA_READ ? IBV_WC_RDMA_READ : IBV_WC_RDMA_WRITE;
    std::uint8_t* local = opcode == IBV_WR_RDMA_READ ? readback : source;
    std::uint64_t next = 0, done = 0;
    const auto t0 = Clock::now();
    while (done < p.iters) {
      while (next < p.iters && next - done < limit) {
        post_rdma(ep, opcode, local + next * p.size, p.size, remote.addr + next * p.size, remote.rkey, tag | next);
        ++next;
      }
      const int n = poller.poll(wcs, 16, what);
      for (int i = 0; i < n; ++i) {
        if (wcs[i].opcode != want || wcs[i].wr_id != (tag | done))
          fail("expected the completion of " + verify_wr_text(tag | done) + ", got opcode " +
                   wc_opcode_name(wcs[i].opcode) + " wr_id 0x" + hex32(static_cast<std::uint32_t>(wcs[i].wr_id >> 32)) +
                   hex32(static_cast<std::uint32_t>(wcs[i].wr_id)),
               "RC completes send-queue work in order: the transport reordered or invented a completion");
        ++done;
      }
      beacon.tick();
    }
    return ns_between(t0, Clock::now());
  };

  const std::uint64_t write_ns = phase(IBV_WR_RDMA_WRITE, p.depth, 0, "RDMA WRITE completions");
  say("wrote %u x %u bytes in %.3f s (up to %u in flight)", p.iters, p.size, static_cast<double>(write_ns) / 1e9, p.depth);

  // The SEND after the WRITEs on the same RC QP arrives after their data is in place.
  const auto body = encode_check(CheckRequest{seed, p.iters, p.depth, p.size});
  std::memcpy(check_area, body.data(), body.size());
  post_send(ep, check_area, kCheckBytes, kCheckSendTag, false);
  const int n = poller.poll(wcs, 1, "the check SEND");
  if (n != 1 || wcs[0].opcode != IBV_WC_SEND || wcs[0].wr_id != kCheckSendTag)
    fail("the check SEND completed as " + std::string(wc_opcode_name(wcs[0].opcode)),
         "the transport reported the wrong completion");
  ctrl.expect_msg(Msg::verdict);
  say("the server verified its %" PRIu64 "-byte buffer", total);

  const std::uint64_t read_ns = phase(IBV_WR_RDMA_READ, verify_reads(p), kReadTag, "RDMA READ completions");
  say("read back %u x %u bytes in %.3f s (up to %u in flight)", p.iters, p.size, static_cast<double>(read_ns) / 1e9,
      static_cast<unsigned>(verify_reads(p)));
  const auto from_source = [&](std::uint64_t i, std::vector<std::uint8_t>&) { return source + i * p.size; };
  if (const std::string diff = find_mismatch(p, readback, from_source, ep.path_mtu, "read back", "written");
      !diff.empty())
    fail("READ-back check failed: " + diff,
         "the server's buffer (checked fine by the server) came back wrong: the transport lost, misplaced or "
         "corrupted RDMA READ response payload; no number is reported");
  say("verified the %" PRIu64 " bytes read back", total);
  ctrl.send_msg(Msg::done, encode_times(write_ns, read_ns));
  ctrl.expect_msg(Msg::done);
  print_verify(p, write_ns, read_ns);
}

void verbs_verify_rw_server(const Params& p, Socket& ctrl, Endpoint& ep) {
  const std::uint64_t total = verify_bytes(p);
  std::uint8_t* area = ep.buf() + total;  // the check SEND's RECV, posted before RTR
  Poller poller(ep, ctrl, p.timeout_s, PollMode::yield);
  poller.describe_wr_ids(verify_wr_text);
  ibv_wc wc{};
  // WRITEs leave no completion here: the client's PROGRESS messages show it moves on.
  poller.poll(&wc, 1, "the client's WRITEs and its check SEND", [&] { return ctrl.drain_progress() > 0; });
  if (wc.opcode != IBV_WC_RECV)
    fail("expected the RECV of the check SEND, got " + std::string(wc_opcode_name(wc.opcode)),
         "the transport reported the wrong completion");
  const CheckRequest c = decode_check(area, wc.byte_len);
  if (c.total != p.iters || c.depth != p.depth || c.size != p.size)
    fail("the check request says " + std::to_string(c.total) + " WRITEs of " + std::to_string(c.size) +
             " bytes (depth " + std::to_string(c.depth) + "); the HELLO said " + std::to_string(p.iters) +
             " of " + std::to_string(p.size) + " (depth " + std::to_string(p.depth) + ")",
         "the transport delivered wrong bytes in the final SEND");
  const auto pattern = [&](std::uint64_t i, std::vector<std::uint8_t>& scratch) {
    scratch.resize(p.size);
    fill_region(scratch.data(), p.size, c.seed, i);
    return static_cast<const std::uint8_t*>(scratch.data());
  };
  if (const std::string diff = find_mismatch(p, ep.buf(), pattern, ep.path_mtu, "in the buffer", "the pattern");
      !diff.empty())
    fail("WRITE data check failed: " + diff,
         "the transport lost, misplaced or corrupted RDMA WRITE payload; no number is reported");
  say("verified my %" PRIu64 "-byte buffer after %u WRITEs of %u bytes; the client now READs it back", total,
      p.iters, p.size);
  ctrl.send_msg(Msg::verdict);
  // Our QP answers the READs without us; PROGRESS messages keep this wait alive.
  const auto body = ctrl.expect_msg(Msg::done, true);
  Reader r(body.data(), body.size(), "DONE");
  const std::uint64_t write_ns = r.u64(), read_ns = r.u64();
  r.expect_end();
  ctrl.send_msg(Msg::done);
  print_verify(p, write_ns, read_ns);
}

}  // namespace roce_bench
