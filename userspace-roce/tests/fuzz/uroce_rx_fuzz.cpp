// libFuzzer target for the userspace RoCE runtime's receive path: what a hostile or broken
// peer can make the runtime do with UDP datagrams to port 4791. Every datagram goes
// through Device::handle_packet (wire::parse with the ICRC check, the QP lookup, the
// source address check) into qp_receive: the responder (SEND/WRITE/READ placement against
// MR keys, bounds and rights, RNR and sequence NAKs, duplicates) and the requester (ACKs,
// NAKs, READ responses for work this QP has posted). Built and run by run_fuzz.sh with
// ASan + UBSan, so an out-of-bounds access, overflow or leak is a crash. Besides that,
// a violation of these traps (libFuzzer reports it like a crash):
//   - a datagram the device must drop (parse error, bad ICRC, unknown QP, stranger,
//     another partition's P_Key) changes nothing: no QP state, no completion, no packet
//     sent in answer;
//   - the QP's invariants (check_invariants) hold after every step;
//   - every packet the runtime queues for the wire parses, ICRC included;
//   - crc32_update (carry-less multiply) agrees with zlib on every datagram.
//
// Each input starts from a fresh SocketlessRc (tests/unit/socketless_device.hpp): one
// device without a socket, one MR, two CQs, one RC QP in RTS whose peer is 127.0.0.9,
// three RECVs posted. What the QP queues for the wire is checked after every step (each
// packet must parse, with a valid ICRC, addressed to the peer's QP) and then flushed to
// nowhere.
//
// Input layout:
//   byte 0        setup
//                   bits 0-2  path MTU: 256 << (v % 5)
//                   bits 3-4  first PSN of both directions: 0x100, 0xFFFFF0, 0x7FFFF8, 0
//                   bit 5     the requester posts work first (SEND, WRITE_IMM, READ, ...)
//                   bit 6     max_dest_rd_atomic 0 (READ requests are refused)
//                   bit 7     retry_cnt 1 and rnr_retry 1 instead of 7 (seven retries)
//                             and 7 (no limit)
//   then records, each:
//   byte          flags
//                   bit 0  seal: overwrite the last 4 bytes with the correct ICRC
//                   bit 1  aim: overwrite the BTH DestQP with the test QP's number
//                   bit 2  the datagram comes from 127.0.0.10, a stranger
//                   bit 3  afterwards, run the timers as if hours had passed
//                   bit 4  afterwards, end the receive batch (send coalesced ACKs)
//                   bit 5  first, post one more RECV (of a kind that cycles)
//                   bit 6  afterwards, the application polls both CQs empty
//                   bit 7  shape: opcode taken mod 0x15 (an RC opcode or an atomic), TVer
//                          set to 0, P_Key 0xFFFF, a RETH aimed at the MR's edges (see
//                          shape())
//   2 bytes       length, big-endian, cut to what the input has left
//   length bytes  the UDP payload (BTH .. ICRC); an empty one is a command instead:
//                   flags % 4 = 0 post requester work (variant (flags >> 2) % 4),
//                   1 modify to ERROR, 2 RESET and connect again (RESET -> INIT ->
//                   RTR -> RTS), 3 timers
//
// Built with -DUROCE_SEED_MODE instead, the file is a tool that writes the seed
// corpus: `uroce_rx_seed OUT_DIR` writes inputs made of valid packets (encoded with
// wire::encode_headers): SENDs, WRITE FIRST/MIDDLE/LAST with the MR's rkey, READ
// requests, and ACKs, NAKs and READ responses for the requester's posted work.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include <zlib.h>

#include "socketless_device.hpp"

namespace {

using namespace uroce;
using namespace uroce::wire;
using socketless::kLocalIp;
using socketless::kPeerIp;
using socketless::SocketlessRc;

constexpr uint32_t kStrangerIp = kPeerIp + 1;  // 127.0.0.10
constexpr uint32_t kPsnBases[4] = {0x000100, 0xFFFFF0, 0x7FFFF8, 0x000000};

enum Flag : uint8_t {
  kSeal = 0x01,
  kAim = 0x02,
  kStranger = 0x04,
  kTimers = 0x08,
  kEndBatch = 0x10,
  kPostRecv = 0x20,
  kPoll = 0x40,
  kShape = 0x80,
};

enum Setup : uint8_t {
  kPostWork = 0x20,
  kNoReads = 0x40,
  kFewRetries = 0x80,
};

void check(bool ok) {
  if (!ok) __builtin_trap();
}

socketless::RcSetup setup_from(uint8_t b) {
  socketless::RcSetup s;
  s.path_mtu = static_cast<ibv_mtu>(IBV_MTU_256 + (b & 7) % 5);
  s.rq_psn = s.sq_psn = kPsnBases[(b >> 3) & 3];
  s.max_dest_rd_atomic = (b & kNoReads) ? 0 : 16;
  s.retry_cnt = s.rnr_retry = (b & kFewRetries) ? 1 : 7;
  s.cq_capacity = 256;  // small enough that an input can overrun it
  // 32 KiB: a READ of all of it at MTU 256 is 128 response packets, not thousands.
  s.mr_bytes = 32 * 1024;
  s.max_wr = 32;
  return s;
}

/// Posts one signaled send WQE with the given gather list (ibv_post_send).
void post_wqe(SocketlessRc& h, uint64_t wr_id, ibv_wr_opcode opcode, ibv_sge* sg, int n,
              unsigned flags = 0) {
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.opcode = opcode;
  wr.sg_list = sg;
  wr.num_sge = n;
  wr.send_flags = IBV_SEND_SIGNALED | flags;
  wr.imm_data = 0x01020304;
  wr.wr.rdma.remote_addr = 0x40000;
  wr.wr.rdma.rkey = 0x99;
  ibv_send_wr* bad = nullptr;
  std::lock_guard<std::mutex> l(h.dev.mu);
  qp_post_send(h.qp, &wr, &bad);
}

/// What the requester posts, all signaled, from or into the MR's first half. Variant 0
/// (and the setup bit): a multi-packet SEND, a WRITE with immediate, a READ, an empty
/// SEND and an empty READ. 1: gather lists spanning SGEs and an inline SEND (packets
/// assembled in the scratch buffer). 2: a SEND whose SGE names no MR (local protection
/// error on the way out). 3: a long WRITE and a SEND with immediate.
void post_requester_work(SocketlessRc& h, unsigned variant = 0) {
  switch (variant & 3) {
    case 0:
      h.post_send(1, IBV_WR_SEND, 0, 3000);
      h.post_send(2, IBV_WR_RDMA_WRITE_WITH_IMM, 3000, 700, 0x10000, 0x99);
      h.post_send(3, IBV_WR_RDMA_READ, 4096, 2500, 0x20000, 0x99);
      h.post_send(4, IBV_WR_SEND, 0, 0);
      h.post_send(5, IBV_WR_RDMA_READ, 8192, 0, 0x30000, 0x99);
      break;
    case 1: {
      ibv_sge sg[3] = {h.sge(0, 300), h.sge(1000, 0), h.sge(2000, 1800)};
      post_wqe(h, 6, IBV_WR_SEND, sg, 3);
      ibv_sge rd[2] = {h.sge(6000, 700), h.sge(9000, 900)};
      post_wqe(h, 7, IBV_WR_RDMA_READ, rd, 2);
      // Inline data is copied from the application's pointer, not through the MR.
      ibv_sge in{reinterpret_cast<uintptr_t>(h.memory.data()), 200, 0};
      post_wqe(h, 8, IBV_WR_SEND_WITH_IMM, &in, 1, IBV_SEND_INLINE);
      break;
    }
    case 2: {
      ibv_sge sg = h.sge(0, 100);
      sg.lkey ^= 0x100;
      post_wqe(h, 9, IBV_WR_SEND, &sg, 1);
      break;
    }
    case 3:
      h.post_send(10, IBV_WR_RDMA_WRITE, 0, 9000, 0x50000, 0x99);
      h.post_send(11, IBV_WR_SEND_WITH_IMM, 100, 10);
      break;
  }
}

/// RECVs of four kinds in turn: one SGE, three SGEs (one empty), a small one, and one
/// whose SGE names a key that does not exist (a SEND into it is a local protection error).
void post_one_recv(SocketlessRc& h, unsigned& posted) {
  const unsigned kind = posted++ % 4;
  const size_t area = h.memory.size() / 2;
  const size_t slot = area + (posted % 4) * 4096;
  ibv_sge sg[3] = {h.sge(slot, 2048)};
  int n = 1;
  if (kind == 1) {
    sg[0] = h.sge(slot, 100);
    sg[1] = h.sge(slot + 100, 0);
    sg[2] = h.sge(slot + 200, 3000);
    n = 3;
  } else if (kind == 2) {
    sg[0] = h.sge(slot, 64);
  } else if (kind == 3) {
    sg[0].lkey ^= 0x100;
  }
  ibv_recv_wr wr{};
  wr.wr_id = 100 + posted;
  wr.sg_list = sg;
  wr.num_sge = n;
  ibv_recv_wr* bad = nullptr;
  std::lock_guard<std::mutex> l(h.dev.mu);
  qp_post_recv(h.qp, &wr, &bad);
}

/// RESET, then connect again with the same attributes (what an application does to
/// reuse a QP after an error).
void reconnect(SocketlessRc& h, const socketless::RcSetup& s) {
  std::lock_guard<std::mutex> l(h.dev.mu);
  check(h.to_reset() == 0);
  check(h.to_init(s) == 0 && h.to_rtr(s) == 0 && h.to_rts(s) == 0);
}

/// Everything a dropped packet must leave exactly as it was.
struct QpSnapshot {
  ibv_qp_state state;
  uint32_t epsn, msn, una_psn, tx_psn, next_psn;
  size_t sq, rq, tx_index, send_cqes, recv_cqes;
  Qp::InMsg in_msg;
  uint64_t in_offset;
  bool nak_sent, ack_pending;
  bool operator==(const QpSnapshot&) const = default;
};

QpSnapshot snapshot(const SocketlessRc& h) {
  const Qp& q = h.qp;
  return {q.state,    q.epsn,     q.msn,      q.una_psn,  q.tx_psn,
          q.next_psn, q.sq.size(), q.rq.size(), q.tx_index, h.send_cq.entries.size(),
          h.recv_cq.entries.size(), q.in_msg, q.in_offset, q.nak_sent, q.ack_pending};
}

/// Invariants of an RC QP that no packet may break (checked with Device::mu held).
void check_invariants(const SocketlessRc& h) {
  const Qp& q = h.qp;
  check(q.state == IBV_QPS_RTS || q.state == IBV_QPS_ERR);
  check(q.ibv.state == q.state);
  check(q.tx_index <= q.sq.size());
  check(q.sq.size() <= q.cap.max_send_wr && q.rq.size() <= q.cap.max_recv_wr);
  // READs sent and not yet completed each hold a max_rd_atomic slot: never more than that.
  int reads_outstanding = 0;
  for (size_t i = 0; i < q.tx_index; ++i) reads_outstanding += q.sq[i].is_read();
  check(reads_outstanding <= q.max_rd_atomic);
  // The requester's PSNs are ordered: acknowledged <= sent <= posted.
  check(psn_diff(q.tx_psn, q.una_psn) >= 0);
  check(psn_diff(q.next_psn, q.tx_psn) >= 0);
  check(((q.una_psn | q.tx_psn | q.next_psn | q.epsn | q.msn) & ~kPsnMask) == 0);
  // A SEND in progress is being placed into the RECV at the head of the queue.
  if (q.in_msg == Qp::InMsg::send) check(!q.rq.empty() && q.in_offset <= q.rq.front().total);
  if (q.state == IBV_QPS_ERR)
    check(q.sq.empty() && q.rq.empty() && q.in_msg == Qp::InMsg::none && !q.retransmit_at &&
          !q.rnr_resume_at && !q.pending_failure);
  // An RNR wait owns the QP's clock: no retransmission timer runs during it.
  if (q.rnr_resume_at) check(!q.retransmit_at);
  // The PSNs outstanding stay below half the PSN space.
  check(static_cast<uint32_t>(psn_diff(q.tx_psn, q.una_psn)) < (1u << 23));
  // The responder keeps exactly max_dest_rd_atomic READ resources.
  check(q.read_ring.size() == q.max_dest_rd_atomic &&
        (q.read_ring.empty() || q.read_ring_next < q.read_ring.size()));
  check(h.send_cq.entries.size() <= static_cast<size_t>(h.send_cq.capacity));
  check(h.recv_cq.entries.size() <= static_cast<size_t>(h.recv_cq.capacity));
}

/// Everything the device queued for the wire must be a packet the peer's HCA accepts:
/// it parses, its ICRC is right for this device -> peer, it goes to the peer's QP, and
/// no payload is longer than the path MTU. Reading each payload also lets ASan check
/// that the memory it points to (registered memory, or the scratch buffer) is alive.
void check_transmitted(SocketlessRc& h) {
  for (const auto& s : h.take_transmitted()) {
    check(s.dst == kPeerIp);
    Packet p;
    check(parse(s.bytes.data(), s.bytes.size(), socketless::flow_between(kLocalIp, s.dst), p) ==
          ParseStatus::ok);
    check(p.bth.dest_qp == socketless::kPeerQpn);
    check(p.payload_len <= h.qp.mtu);
  }
}

uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
  return v;
}
void put32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
void put64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}

/// The kShape fix-up: an RC opcode (atomics included), TVer 0, the default P_Key, and a
/// RETH aimed at the MR's edges. Random 64-bit VAs almost never land near the MR, so the
/// VA becomes an offset from 32 bytes before the MR to 32 bytes past its end; the R_Key
/// becomes the MR's unless its top bit is set; a WRITE ONLY's DMA length becomes the
/// payload length it carries (or stays random with its top bit set). The bounds checks
/// at the MR's first and last byte are then a mutation away.
void shape(const SocketlessRc& h, uint8_t* pkt, size_t len) {
  if (len < 2) return;
  pkt[0] = static_cast<uint8_t>(pkt[0] % (kFetchAdd + 1));
  pkt[1] &= 0xF0;
  if (len >= 4) pkt[2] = pkt[3] = 0xFF;  // P_Key 0xFFFF: the QP's partition
  const OpcodeInfo info = opcode_info(pkt[0]);
  const size_t hdr = kBthSize + kRethSize + (info.imm ? kImmSize : 0);
  if (!info.reth || len < hdr + kIcrcSize) return;
  uint8_t* reth = pkt + kBthSize;
  const uint64_t span = h.memory.size() + 64;
  put64(reth, h.mr.iova + get64(reth) % span - 32);
  if (!(reth[8] & 0x80)) put32(reth + 8, h.mr.ibv.rkey);
  const uint8_t pad = (pkt[1] >> 4) & 3;
  if (info.last && pkt[0] != kReadRequest && !(reth[12] & 0x80) &&
      len >= hdr + pad + kIcrcSize)
    put32(reth + 12, static_cast<uint32_t>(len - hdr - pad - kIcrcSize));
}

uint32_t get24(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 16 | static_cast<uint32_t>(p[1]) << 8 | p[2];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const socketless::RcSetup setup = setup_from(data[0]);
  auto h = std::make_unique<SocketlessRc>(setup);
  unsigned recvs_posted = 0;
  for (int i = 0; i < 3; ++i) post_one_recv(*h, recvs_posted);
  if (data[0] & kPostWork) post_requester_work(*h);
  check_transmitted(*h);

  size_t at = 1;
  while (at + 3 <= size) {
    const uint8_t flags = data[at];
    size_t len = static_cast<size_t>(data[at + 1]) << 8 | data[at + 2];
    at += 3;
    if (len > size - at) len = size - at;

    if (flags & kPostRecv) post_one_recv(*h, recvs_posted);
    if (len == 0) {
      switch (flags & 3) {
        case 0: post_requester_work(*h, flags >> 2); break;
        case 1: {
          std::lock_guard<std::mutex> l(h->dev.mu);
          ibv_qp_attr a{};
          a.qp_state = IBV_QPS_ERR;
          check(qp_modify(h->qp, a, IBV_QP_STATE) == 0);
          break;
        }
        case 2: reconnect(*h, setup); break;
        case 3: {
          std::lock_guard<std::mutex> l(h->dev.mu);
          h->clock += std::chrono::hours(1);  // the QP's own clock (SocketlessRc::advance)
          qp_timers(h->qp, h->clock);  // what Device::run_timers does, minus its flush
          break;
        }
      }
      check_transmitted(*h);
      continue;
    }

    // The datagram, in a block of exactly its size: ASan sees any read past its end.
    std::unique_ptr<uint8_t[]> pkt(new uint8_t[len]);
    std::memcpy(pkt.get(), data + at, len);
    at += len;
    const uint32_t src = (flags & kStranger) ? kStrangerIp : kPeerIp;
    if (flags & kShape) shape(*h, pkt.get(), len);
    if ((flags & kAim) && len >= kBthSize) {
      const uint32_t qpn = h->qp.qpn();
      pkt[5] = static_cast<uint8_t>(qpn >> 16);
      pkt[6] = static_cast<uint8_t>(qpn >> 8);
      pkt[7] = static_cast<uint8_t>(qpn);
    }
    const Ipv4Flow flow = socketless::flow_between(src, kLocalIp);
    if ((flags & kSeal) && len >= kIcrcSize) {
      const std::span<const uint8_t> parts[] = {{pkt.get(), len - kIcrcSize}};
      store_icrc(compute_icrc(flow, parts), pkt.get() + len - kIcrcSize);
    }

    // The ICRC's CRC-32 (carry-less multiply for the bulk) against zlib's, on bytes
    // nobody chose.
    check(crc32_update(0, pkt.get(), len) ==
          static_cast<uint32_t>(crc32(0, pkt.get(), static_cast<uInt>(len))));

    std::unique_lock<std::mutex> l(h->dev.mu);
    // Will the device drop it? Then nothing at all may change. (The device does not see
    // the IPv4 ID: it accepts an ICRC that is right for some ID, as parse does here.)
    Packet parsed;
    Ipv4Flow received = flow;
    received.ip_id_known = false;
    const bool dropped = parse(pkt.get(), len, received, parsed) != ParseStatus::ok ||
                         src != h->qp.peer_ip || get24(pkt.get() + 5) != h->qp.qpn() ||
                         (parsed.bth.pkey & 0x7FFF) != 0x7FFF;
    const QpSnapshot before = snapshot(*h);
    const int queued = h->dev.tx_count;
    h->dev.handle_packet(pkt.get(), len, src);
    if (dropped) check(snapshot(*h) == before && h->dev.tx_count == queued);
    check_invariants(*h);

    if (flags & kEndBatch) qp_flush_ack(h->qp);
    if (flags & kTimers) {
      h->clock += std::chrono::hours(1);
      qp_timers(h->qp, h->clock);
    }
    check_invariants(*h);
    l.unlock();
    check_transmitted(*h);
    if (flags & kPoll) {
      SocketlessRc::drain(h->send_cq);
      SocketlessRc::drain(h->recv_cq);
    }
  }
  return 0;
}

#ifdef UROCE_SEED_MODE
// ---- the seed corpus -----------------------------------------------------------------------
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

/// One seed input under construction: the setup byte, then records.
struct Seed {
  std::vector<uint8_t> bytes;
  uint32_t psn_base;
  uint32_t mtu;

  explicit Seed(uint8_t setup)
      : bytes{setup}, psn_base(kPsnBases[(setup >> 3) & 3]), mtu(256u << ((setup & 7) % 5)) {}

  /// A valid packet to the test QP from the peer, sealed and aimed, ACKs flushed after.
  Seed& packet(Packet p, const std::vector<uint8_t>& payload, uint8_t extra_flags = 0) {
    p.bth.dest_qp = socketless::kFirstQpn;
    const auto pkt =
        socketless::build_packet(p, payload, socketless::flow_between(kPeerIp, kLocalIp));
    bytes.push_back(static_cast<uint8_t>(kSeal | kAim | kEndBatch | extra_flags));
    bytes.push_back(static_cast<uint8_t>(pkt.size() >> 8));
    bytes.push_back(static_cast<uint8_t>(pkt.size()));
    bytes.insert(bytes.end(), pkt.begin(), pkt.end());
    return *this;
  }
  Seed& request(uint8_t opcode, uint32_t psn_offset, size_t payload_len, Reth reth = {}) {
    Packet p;
    p.bth.opcode = opcode;
    p.bth.psn = psn_add(psn_base, psn_offset);
    p.bth.ack_req = opcode_info(opcode).last;
    p.reth = reth;
    p.imm = 0x1234;
    return packet(p, std::vector<uint8_t>(payload_len, 0x5A));
  }
  Seed& atomic(uint8_t opcode, uint32_t psn_offset, AtomicEth eth) {
    Packet p;
    p.bth.opcode = opcode;
    p.bth.psn = psn_add(psn_base, psn_offset);
    p.bth.ack_req = true;
    p.atomic = eth;
    return packet(p, {});
  }
  Seed& response(uint8_t opcode, uint32_t psn_offset, size_t payload_len, uint8_t syndrome,
                 uint8_t extra_flags = 0) {
    Packet p;
    p.bth.opcode = opcode;
    p.bth.psn = psn_add(psn_base, psn_offset);
    p.aeth = {syndrome, 1};
    return packet(p, std::vector<uint8_t>(payload_len, 0xA5), extra_flags);
  }
  Seed& command(uint8_t which) {
    bytes.insert(bytes.end(), {which, 0, 0});
    return *this;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  int written = 0;
  auto save = [&](const char* name, const Seed& s) {
    const std::string path = dir + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(s.bytes.data(), 1, s.bytes.size(), f) != s.bytes.size()) {
      std::perror(path.c_str());
      std::exit(1);
    }
    std::fclose(f);
    ++written;
  };
  const uint64_t va = socketless::kMrIova;
  const uint32_t key = socketless::kMrKey;
  constexpr uint8_t kMtu1024 = 2, kMtu256 = 0;
  constexpr uint8_t kBaseWrap = 1 << 3;  // PSNs from 0xFFFFF0: messages cross the wrap

  save("send_only", Seed(kMtu1024).request(kSendOnly, 0, 100).request(kSendOnlyImm, 1, 7));
  save("send_first_middle_last",
       Seed(kMtu256 | kBaseWrap)
           .request(kSendFirst, 0, 256).request(kSendMiddle, 1, 256).request(kSendLast, 2, 3)
           .request(kSendLastImm, 3, 0));
  save("write_first_middle_last",
       Seed(kMtu256 | kBaseWrap)
           .request(kWriteFirst, 0, 256, {va + 64, key, 256 * 2 + 10})
           .request(kWriteMiddle, 1, 256)
           .request(kWriteLast, 2, 10)
           .request(kWriteOnlyImm, 3, 4, {va, key, 4}));
  save("write_only_bad_rkey", Seed(kMtu1024).request(kWriteOnly, 0, 8, {va, key + 1, 8}));
  save("read_request", Seed(kMtu1024)
                           .request(kReadRequest, 0, 0, {va + 100, key, 3000})
                           .request(kReadRequest, 0, 0, {va + 100, key, 3000})  // duplicate
                           .request(kReadRequest, 3, 0, {va, key, 0}));
  save("atomics", Seed(kMtu1024)
                      .request(kSendOnly, 0, 10)
                      .atomic(kCompareSwap, 1, {va + 8, key, 1, 0})
                      .atomic(kFetchAdd, 1, {va + 8, key, 1, 0}));
  save("rnr_then_gap", Seed(kMtu1024)
                           .request(kSendOnly, 0, 10).request(kSendOnly, 1, 10)
                           .request(kSendOnly, 2, 10).request(kSendOnly, 3, 10)
                           .request(kSendOnly, 5, 10));

  // The requester's work at MTU 1024: SEND 3000 (3 PSNs), WRITE_IMM 700 (1), READ 2500
  // (3 responses), SEND 0 (1), READ 0 (1): PSNs base+0 .. base+8.
  const uint8_t ack = kAethAck | kAckNoCreditLimit;
  save("acks_and_read_responses",
       Seed(kMtu1024 | kPostWork)
           .response(kAcknowledge, 3, 0, ack)
           .response(kReadResponseFirst, 4, 1024, ack)
           .response(kReadResponseMiddle, 5, 1024, 0)
           .response(kReadResponseLast, 6, 452, ack)
           .response(kAcknowledge, 7, 0, ack)
           .response(kReadResponseOnly, 8, 0, ack));
  save("naks", Seed(kMtu1024 | kPostWork | kBaseWrap)
                   .response(kAcknowledge, 1, 0, kAethNak | kNakPsnSequence)
                   .response(kAcknowledge, 2, 0, kAethRnrNak | 1, kTimers)
                   .response(kAcknowledge, 3, 0, kAethNak | kNakRemoteAccess));
  save("timeouts", Seed(kMtu256 | kPostWork | kFewRetries)
                       .command(3).command(3).command(2).command(0)
                       .response(kAcknowledge, 0, 0, ack));
  // Requester work of the other kinds: gather lists and inline data, a bad lkey, a
  // long WRITE; then time passes, and ACKs arrive.
  save("other_work", Seed(kMtu256 | kFewRetries)
                         .command(0x04).command(0x0C).command(0x08).command(3)
                         .response(kAcknowledge, 8, 0, ack));
  std::printf("uroce_rx_seed: %d seeds in %s\n", written, dir.c_str());
  return 0;
}
#endif
