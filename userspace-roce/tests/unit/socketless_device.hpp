// One emulated HCA with one RC queue pair, built in-process without a socket, for the
// transport unit tests and the receive-path fuzzer (tests/fuzz/uroce_rx_fuzz.cpp).
//
// It does by hand what verbs.cpp's ibv_alloc_pd / ibv_reg_mr / ibv_create_cq /
// ibv_create_qp do to the runtime's structs, then walks the QP RESET -> INIT -> RTR -> RTS
// with uroce::qp_modify exactly as an application's ibv_modify_qp calls would. The device
// has no socket (sock = -1): what the QP transmits (ACKs, NAKs, READ responses, its own
// requests) is queued in the device's transmit batch, where take_transmitted() finds it,
// and a flush sends it nowhere. So a test hands UDP payloads to Device::handle_packet as
// if they came from the peer, and looks at the completions, the QP's state and the
// packets queued in answer. The transport's timers go by a clock the test moves itself
// (advance), never by the wall clock, so a test of a timeout is exact.
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime.hpp"
#include "wire.hpp"

namespace uroce::socketless {

/// 127.0.0.8: the address of the device under test (the ICRC covers it as the IPv4 dst).
constexpr uint32_t kLocalIp = 0x7F000008;
/// 127.0.0.9: the peer named by the QP's address vector (GID ::ffff:127.0.0.9); only
/// packets from this source reach the QP.
constexpr uint32_t kPeerIp = 0x7F000009;
/// The peer's QP number, which the QP puts in the BTH of everything it sends.
constexpr uint32_t kPeerQpn = 0x000123;
/// The QP number the first QP of a fresh device gets (Device::next_qpn starts there).
constexpr uint32_t kFirstQpn = 0x000011;
/// The MR's key (lkey == rkey) and the address its first byte has for both sides, as
/// ibv_reg_mr_iova gives it: fixed, so that a fuzzer input or a test can name a valid
/// remote address without knowing where the heap put the buffer.
constexpr uint32_t kMrKey = 0x0001A5;
constexpr uint64_t kMrIova = 0x00007F0000000000ull;

/// The attributes the QP is created and connected with (each as ibv_modify_qp takes it).
struct RcSetup {
  ibv_mtu path_mtu = IBV_MTU_1024;  ///< the path MTU (INIT -> RTR)
  uint32_t rq_psn = 0x100;  ///< first PSN the responder expects
  uint32_t sq_psn = 0x500;  ///< first PSN the requester sends
  uint8_t max_dest_rd_atomic = 16;  ///< READs the responder keeps resources for
  uint8_t max_rd_atomic = 16;       ///< READs the requester may have outstanding
  uint8_t timeout = 14;   ///< 4.096 us * 2^14 = 67 ms retransmission timer
  uint8_t retry_cnt = 7;  ///< go-back-N retries without progress (7: seven)
  uint8_t rnr_retry = 7;  ///< 7: retry RNR NAKs forever
  uint8_t min_rnr_timer = 12;  ///< the RNR timer code our RNR NAKs carry (12: 0.64 ms)
  /// qp_access_flags: what the peer may do through the QP
  int qp_access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  size_t mr_bytes = 64 * 1024;  ///< the one MR; by convention RECVs scatter to its second half
  int cq_capacity = 1024;  ///< entries of each CQ
  uint32_t max_wr = 64;    ///< work requests each queue takes
};

/// Device + PD + one MR + send/recv CQs + one RC QP in RTS, connected to kPeerIp.
/// Members are destroyed in reverse order: the QP first, then what it refers to.
struct SocketlessRc {
  Device dev;  ///< the HCA, without a socket
  Pd pd;       ///< the one protection domain
  std::vector<uint8_t> memory;  ///< the bytes the MR covers
  Mr mr;       ///< registered over `memory` (key kMrKey, IOVA kMrIova)
  Cq send_cq;  ///< the QP's send completions
  Cq recv_cq;  ///< the QP's receive completions
  Qp qp;       ///< the RC QP under test, in RTS after construction
  /// The time as the QP's transport sees it (Qp::manual_clock points here). It starts at
  /// the real time of construction and moves only by advance().
  Clock::time_point clock = Clock::now();

  /// Builds everything and connects the QP (RESET -> INIT -> RTR -> RTS) with `s`.
  explicit SocketlessRc(const RcSetup& s = {}) : memory(s.mr_bytes) {
    dev.ip = kLocalIp;  // dev.sock stays -1: nothing is ever really sent

    // ibv_reg_mr: lkey == rkey, an index in the high 24 bits and a varying low byte.
    mr.pd = &pd;
    mr.access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
    mr.ibv.addr = memory.data();
    mr.ibv.length = memory.size();
    mr.iova = kMrIova;  // SGEs and RETHs both address the MR through its IOVA
    mr.ibv.lkey = mr.ibv.rkey = kMrKey;
    dev.mrs[mr.ibv.lkey] = &mr;
    pd.refs++;

    // ibv_create_cq.
    for (Cq* cq : {&send_cq, &recv_cq}) {
      cq->capacity = s.cq_capacity;
      cq->ibv.cqe = s.cq_capacity;
    }

    // ibv_create_qp: caps granted, QP number assigned, QP registered with the device.
    qp.dev = &dev;
    qp.pd = &pd;
    qp.send_cq = &send_cq;
    qp.recv_cq = &recv_cq;
    qp.cap.max_send_wr = qp.cap.max_recv_wr = s.max_wr;
    qp.cap.max_send_sge = qp.cap.max_recv_sge = 4;
    qp.cap.max_inline_data = 256;
    qp.ibv.qp_num = dev.next_qpn++;
    qp.ibv.qp_type = IBV_QPT_RC;
    qp.ibv.state = IBV_QPS_RESET;
    dev.qps[qp.qpn()] = &qp;
    pd.refs++;
    send_cq.qp_refs++;
    recv_cq.qp_refs++;

    // The transport reads the time from `clock`, which only the test moves (advance).
    qp.manual_clock = &clock;

    std::lock_guard<std::mutex> l(dev.mu);
    connect(s);
  }

  SocketlessRc(const SocketlessRc&) = delete;
  SocketlessRc& operator=(const SocketlessRc&) = delete;

  ~SocketlessRc() {
    dev.qps.erase(qp.qpn());
    dev.mrs.erase(mr.ibv.lkey);
  }

  /// RESET -> INIT with the setup's access flags, as ibv_modify_qp would (Device::mu
  /// held). 0 or the errno qp_modify returns; so are the three below.
  int to_init(const RcSetup& s) {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_INIT;
    a.pkey_index = 0;
    a.port_num = 1;
    a.qp_access_flags = static_cast<unsigned>(s.qp_access);
    return qp_modify(qp, a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
  }
  /// INIT -> RTR: the peer's address (127.0.0.9's IPv4-mapped GID), QP number and PSN,
  /// the path MTU and the responder's READ resources.
  int to_rtr(const RcSetup& s) {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_RTR;
    // RoCE v2 addresses the peer by GID only: the IPv4-mapped ::ffff:127.0.0.9.
    a.ah_attr.is_global = 1;
    a.ah_attr.port_num = 1;
    a.ah_attr.grh.sgid_index = 0;
    a.ah_attr.grh.hop_limit = 64;
    a.ah_attr.grh.dgid.raw[10] = a.ah_attr.grh.dgid.raw[11] = 0xFF;
    const uint32_t peer_be = htonl(kPeerIp);
    std::memcpy(&a.ah_attr.grh.dgid.raw[12], &peer_be, 4);
    a.path_mtu = s.path_mtu;
    a.dest_qp_num = kPeerQpn;
    a.rq_psn = s.rq_psn;
    a.max_dest_rd_atomic = s.max_dest_rd_atomic;
    a.min_rnr_timer = s.min_rnr_timer;
    return qp_modify(qp, a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                                IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
  }
  /// RTR -> RTS: the requester's PSN, timers, retry budgets and READ limit; `extra_mask`
  /// adds attribute bits (with zeroed values) a test wants refused.
  int to_rts(const RcSetup& s, int extra_mask = 0) {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_RTS;
    a.sq_psn = s.sq_psn;
    a.timeout = s.timeout;
    a.retry_cnt = s.retry_cnt;
    a.rnr_retry = s.rnr_retry;
    a.max_rd_atomic = s.max_rd_atomic;
    return qp_modify(qp, a, IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                                IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC | extra_mask);
  }
  /// RESET -> INIT -> RTR -> RTS with the setup's attributes (Device::mu held); throws if
  /// a step is refused.
  void connect(const RcSetup& s) {
    const char* step = "INIT";
    int rc = to_init(s);
    if (rc == 0) rc = to_rtr(s), step = "RTR";
    if (rc == 0) rc = to_rts(s), step = "RTS";
    if (rc != 0)
      throw std::runtime_error(std::string("qp_modify to ") + step + " failed with errno " +
                               std::to_string(rc));
  }
  /// Any state -> RESET (what an application does before reusing a QP).
  int to_reset() {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_RESET;
    return qp_modify(qp, a, IBV_QP_STATE);
  }

  /// Moves the QP's clock forward by `d` and runs its timers at the new time, as the
  /// engine's run_timers would, except that what they send stays queued for
  /// take_transmitted.
  void advance(Clock::duration d) {
    std::lock_guard<std::mutex> l(dev.mu);
    clock += d;
    qp_timers(qp, clock);
  }

  /// An address in the MR as the peer names it in a RETH (VA and rkey).
  uint64_t remote_va(size_t offset = 0) const { return mr.iova + offset; }
  /// The MR's R_Key.
  uint32_t rkey() const { return mr.ibv.rkey; }
  /// The second half of the MR, where receive WQEs scatter to.
  uint8_t* recv_area() { return memory.data() + memory.size() / 2; }
  /// An SGE over `bytes` of the MR at `offset` (addresses are IOVAs, like the RETH's).
  ibv_sge sge(size_t offset, uint32_t bytes) const {
    return {mr.iova + offset, bytes, mr.ibv.lkey};
  }

  /// Posts one receive WQE of `bytes` at `offset` into the receive area (ibv_post_recv).
  int post_recv(uint64_t wr_id, uint32_t bytes, size_t offset = 0) {
    ibv_sge s = sge(memory.size() / 2 + offset, bytes);
    ibv_recv_wr wr{};
    wr.wr_id = wr_id;
    wr.sg_list = &s;
    wr.num_sge = 1;
    ibv_recv_wr* bad = nullptr;
    std::lock_guard<std::mutex> l(dev.mu);
    return qp_post_recv(qp, &wr, &bad);
  }

  /// Posts one signaled send WQE over `bytes` of the MR at `offset` (ibv_post_send). For
  /// WRITE and READ the remote side is (remote_addr, rkey) at the peer; `flags` adds
  /// IBV_SEND_* flags (FENCE, SOLICITED, ...). Returns what qp_post_send returns, and
  /// throws if it refuses the WR without naming it in *bad.
  int post_send(uint64_t wr_id, ibv_wr_opcode opcode, size_t offset, uint32_t bytes,
                uint64_t remote_addr = 0, uint32_t remote_rkey = 0, unsigned flags = 0) {
    ibv_sge s = sge(offset, bytes);
    ibv_send_wr wr{};
    wr.wr_id = wr_id;
    wr.opcode = opcode;
    wr.sg_list = &s;
    wr.num_sge = 1;
    wr.send_flags = IBV_SEND_SIGNALED | flags;
    wr.wr.rdma.remote_addr = remote_addr;
    wr.wr.rdma.rkey = remote_rkey;
    ibv_send_wr* bad = nullptr;
    std::lock_guard<std::mutex> l(dev.mu);
    const int rc = qp_post_send(qp, &wr, &bad);
    // ibv_post_send's contract: a refused WR is named in *bad.
    if (rc != 0 && bad != &wr)
      throw std::logic_error("qp_post_send returned " + std::to_string(rc) +
                             " without naming the refused WR");
    return rc;
  }

  /// Hands one UDP payload to the device as if it arrived from `src_ip`, then queues the
  /// ACKs it earned, as the engine's receive_batch does after each batch (what was queued
  /// stays there for take_transmitted).
  void deliver(std::span<const uint8_t> udp_payload, uint32_t src_ip = kPeerIp) {
    std::lock_guard<std::mutex> l(dev.mu);
    dev.handle_packet(udp_payload.data(), udp_payload.size(), src_ip);
    qp_flush_ack(qp);
  }

  /// What the device queued for the wire since the last call, each packet as the UDP
  /// payload it would be (headers, payload, pad, ICRC), with its destination; then the
  /// queue is flushed (to nowhere). This reads Device::tx, the runtime's transmit batch:
  /// it holds at most Device::kTxBatch packets, because transmit flushes a full batch
  /// itself, so a burst longer than that (a long READ answered) shows only its tail.
  struct Sent {
    uint32_t dst;                ///< the IPv4 address it goes to
    std::vector<uint8_t> bytes;  ///< the UDP payload
  };
  /// See Sent.
  std::vector<Sent> take_transmitted() {
    std::lock_guard<std::mutex> l(dev.mu);
    std::vector<Sent> out;
    for (int i = 0; i < dev.tx_count; ++i) {
      const TxPacket& t = dev.tx[static_cast<size_t>(i)];
      Sent s{t.dst, std::vector<uint8_t>(t.hdr, t.hdr + t.hdr_len)};
      if (t.len) s.bytes.insert(s.bytes.end(), t.payload, t.payload + t.len);
      s.bytes.insert(s.bytes.end(), t.trailer, t.trailer + t.trailer_len);
      out.push_back(std::move(s));
    }
    dev.flush_tx();
    return out;
  }

  /// Takes every completion out of `cq` (ibv_poll_cq without the progress side effects).
  static std::vector<ibv_wc> drain(Cq& cq) {
    std::lock_guard<std::mutex> l(cq.mu);
    std::vector<ibv_wc> out(cq.entries.begin(), cq.entries.end());
    cq.entries.clear();
    cq.ready.store(0);
    return out;
  }

};

/// The flow facts of a packet from `src` to `dst` as the runtime sends and assumes them:
/// both ports 4791, IPv4 ID 0, DF set.
inline wire::Ipv4Flow flow_between(uint32_t src, uint32_t dst) {
  wire::Ipv4Flow f;
  f.src = src;
  f.dst = dst;
  return f;
}

/// A complete RoCE v2 UDP payload: p's headers (with PadCnt set from the payload), the
/// payload, zero pad, and the ICRC for `flow`.
inline std::vector<uint8_t> build_packet(wire::Packet p, std::span<const uint8_t> payload,
                                         const wire::Ipv4Flow& flow) {
  p.bth.pad = wire::pad_for(payload.size());
  uint8_t hdr[wire::kMaxHeaderSize];
  const size_t h = wire::encode_headers(p, hdr);
  std::vector<uint8_t> out(hdr, hdr + h);
  out.insert(out.end(), payload.begin(), payload.end());
  out.insert(out.end(), p.bth.pad + wire::kIcrcSize, 0);
  const std::span<const uint8_t> covered(out.data(), out.size() - wire::kIcrcSize);
  const std::span<const uint8_t> parts[] = {covered};
  wire::store_icrc(wire::compute_icrc(flow, parts), out.data() + out.size() - wire::kIcrcSize);
  return out;
}

}  // namespace uroce::socketless
