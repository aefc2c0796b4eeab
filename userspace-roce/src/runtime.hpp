// The userspace RoCE runtime's inside: one emulated HCA per process ("uroce0"), the verbs
// objects it hands out, and the reliable-connection (RC) queue pairs whose transport runs
// over a UDP socket on port 4791.
//
// Threads and locks. The application's threads call verbs; one progress thread per
// process (the "engine") receives packets and runs timers. Both take Device::mu, which
// protects every QP, MR and PD. A CQ has its own small lock so that an application that
// busy-polls an empty CQ never contends with the engine (poll_cq reads an atomic count
// first). Lock order: Device::mu, then Cq::mu, then Channel::mu.
#pragma once

#include <infiniband/verbs.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "wire.hpp"

#define UROCE_EXPORT extern "C" __attribute__((visibility("default")))

namespace uroce {

using Clock = std::chrono::steady_clock;

/// Settings read once from the environment (see README: UROCE_*).
struct Config {
  std::string addr;        ///< UROCE_ADDR: the IPv4 address to bind; empty: first free 127.0.0.x
  double drop = 0;         ///< UROCE_DROP: probability a transmitted packet is dropped
  double duplicate = 0;    ///< UROCE_DUPLICATE: probability it is sent twice
  double reorder = 0;      ///< UROCE_REORDER: probability it is held back behind the next one
  uint64_t seed = 1;       ///< UROCE_SEED: the fault injector's random seed
  int log = 0;             ///< UROCE_LOG: 1 = connection events, 2 = every packet, 3 = responder decisions
  uint32_t window = 128;   ///< UROCE_WINDOW: unacknowledged packets a QP may have in flight
  /// One line per UROCE_* value refused (already said on stderr); the device list fails
  /// with EINVAL while there is any.
  std::vector<std::string> errors;
  static const Config& get();
};

void log_line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/// What ibv_wc_status_str says (kept here so the transport does not need the exported API).
const char* wc_status_text(ibv_wc_status s);

struct Device;
struct Cq;

struct Channel {
  ibv_comp_channel ibv{};
  std::mutex mu;
  std::deque<Cq*> events;  ///< CQs whose event is waiting; the eventfd counts them
  int refs = 0;            ///< CQs using this channel
};

struct Cq {
  ibv_cq ibv{};
  Channel* channel = nullptr;
  std::mutex mu;
  std::deque<ibv_wc> entries;
  std::atomic<int> ready{0};  ///< entries.size(), readable without the lock
  int capacity = 0;
  std::atomic<bool> armed{false};  ///< read without the lock by poll_cq
  bool solicited_only = false;
  bool overrun_reported = false;
  int qp_refs = 0;  ///< QPs that use this CQ (guarded by Device::mu)
};

struct Pd {
  ibv_pd ibv{};
  int refs = 0;  ///< MRs and QPs in this PD (guarded by Device::mu)
};

struct Mr {
  ibv_mr ibv{};
  Pd* pd = nullptr;
  int access = 0;
  uint64_t iova = 0;  ///< the address keys are checked against (== addr unless reg_mr_iova)
};

/// One posted send work request, as the requester keeps it until it completes.
struct SendWqe {
  uint64_t wr_id = 0;
  ibv_wr_opcode opcode = IBV_WR_SEND;
  bool signaled = false;
  bool solicited = false;
  bool fence = false;
  std::vector<ibv_sge> sg;
  std::vector<uint8_t> inline_data;  ///< IBV_SEND_INLINE: copied at post time
  bool is_inline = false;
  uint64_t remote_addr = 0;
  uint32_t rkey = 0;
  uint32_t imm = 0;  ///< as the application gave it (already big-endian)
  uint32_t length = 0;
  uint32_t first_psn = 0;
  uint32_t npsn = 1;       ///< PSNs this WQE uses: packets, or READ response packets
  uint32_t sent = 0;       ///< packets sent in the current pass (a READ sends one request)
  uint32_t read_got = 0;   ///< READ: response packets received in order
  uint32_t rerequested = UINT32_MAX;  ///< READ: the PSN a repeated request last asked from
  bool is_read() const { return opcode == IBV_WR_RDMA_READ; }
};

struct RecvWqe {
  uint64_t wr_id = 0;
  std::vector<ibv_sge> sg;
  uint64_t total = 0;
};

/// An RC queue pair: the verbs state machine plus both halves of the transport.
struct Qp {
  ibv_qp ibv{};
  Device* dev = nullptr;
  Pd* pd = nullptr;
  Cq* send_cq = nullptr;
  Cq* recv_cq = nullptr;
  ibv_qp_cap cap{};
  bool sq_sig_all = false;

  // Attributes set by ibv_modify_qp.
  ibv_qp_state state = IBV_QPS_RESET;
  int access_flags = 0;
  uint16_t pkey_index = 0;
  uint8_t port = 1;
  ibv_ah_attr ah{};
  ibv_mtu path_mtu = IBV_MTU_1024;
  uint32_t mtu = 1024;
  uint32_t dest_qpn = 0;
  uint32_t rq_psn = 0;
  uint32_t sq_psn = 0;
  uint8_t max_dest_rd_atomic = 0;
  uint8_t min_rnr_timer = 0;
  uint8_t timeout = 0;
  uint8_t retry_cnt = 0;
  uint8_t rnr_retry = 0;
  uint8_t max_rd_atomic = 0;
  uint32_t peer_ip = 0;  ///< host order, from the AV's destination GID

  // Requester.
  std::deque<SendWqe> sq;  ///< posted and not yet completed, in order
  uint32_t next_psn = 0;   ///< first PSN of the next posted WQE
  size_t tx_index = 0;     ///< sq[tx_index] is the next WQE with packets to send
  uint32_t tx_psn = 0;     ///< PSN of the next packet to send
  uint32_t una_psn = 0;    ///< oldest PSN not yet acknowledged
  uint32_t sent_high = 0;  ///< one past the highest PSN ever sent (tx_psn moves back on resend)
  uint32_t acked_psn = 0;  ///< one past the highest PSN the responder has acknowledged
  int reads_in_flight = 0;
  int retries_left = 0;
  int rnr_left = 0;
  std::optional<Clock::time_point> retransmit_at;
  std::optional<Clock::time_point> rnr_resume_at;

  // Responder.
  uint32_t epsn = 0;  ///< the PSN it expects next
  uint32_t msn = 0;   ///< messages completed, echoed in every AETH
  std::deque<RecvWqe> rq;
  enum class InMsg { none, send, write } in_msg = InMsg::none;
  uint64_t in_offset = 0;  ///< bytes of the current message placed so far
  uint64_t in_va = 0;      ///< WRITE: next remote VA
  uint32_t in_remaining = 0;  ///< WRITE: bytes the RETH announced and not yet received
  Mr* in_mr = nullptr;
  bool nak_sent = false;  ///< a PSN sequence NAK is outstanding: do not repeat it
  bool ack_pending = false;
  uint32_t ack_psn = 0;

  uint32_t qpn() const { return ibv.qp_num; }
};

/// An open context: what ibv_open_device returns, laid out as rdma-core's verbs_context so
/// that the static inline wrappers in <infiniband/verbs.h> find their extended ops.
struct Context {
  verbs_context vctx{};
  Device* dev = nullptr;
};
inline Context* context_of(ibv_context* c) {
  return reinterpret_cast<Context*>(reinterpret_cast<uint8_t*>(c) - offsetof(verbs_context, context));
}

/// A packet queued for the next sendmmsg: its headers, a pointer to its payload (the
/// application's registered memory, valid until the batch is flushed, which happens before
/// Device::mu is released), and the pad + ICRC trailer.
struct TxPacket {
  uint32_t dst = 0;
  uint8_t hdr[wire::kMaxHeaderSize];
  uint8_t hdr_len = 0;
  const uint8_t* payload = nullptr;
  uint32_t len = 0;
  uint8_t trailer[8];
  uint8_t trailer_len = 0;
  uint8_t own[4096];  ///< the payload, when it had to be assembled (several SGEs, inline)
};

/// The emulated HCA of this process: one UDP socket bound to <addr>:4791 and the engine
/// thread. Created by the first ibv_open_device, torn down by the last ibv_close_device.
struct Device {
  std::mutex mu;
  uint32_t ip = 0;  ///< host order
  /// The port's active MTU: the largest path MTU a QP may use. Derived from the MTU of the
  /// interface that holds `ip`, as rxe derives it (see device_open).
  ibv_mtu active_mtu = IBV_MTU_4096;
  int sock = -1;
  int wake_fd = -1;  ///< eventfd: tells the engine a timer moved earlier
  std::thread engine;
  bool stopping = false;
  int open_contexts = 0;

  std::map<uint32_t, Qp*> qps;
  std::map<uint32_t, Mr*> mrs;  ///< by key (lkey == rkey)
  uint32_t next_qpn = 0x11;
  uint32_t next_mr_index = 1;
  std::mt19937_64 fault_rng;
  std::uniform_real_distribution<double> unit{0.0, 1.0};
  static constexpr int kTxBatch = 32;
  std::vector<TxPacket> tx = std::vector<TxPacket>(kTxBatch);
  int tx_count = 0;
  std::unique_ptr<TxPacket> held;  ///< a packet held back by reorder injection
  std::optional<Clock::time_point> held_until;
  std::optional<Clock::time_point> engine_sleep_until;  ///< when the engine will wake
  bool engine_sleeping_forever = false;
  /// When an application thread last polled an empty CQ (steady-clock nanoseconds). While
  /// someone busy-polls, that thread receives packets itself (poll_progress) and the
  /// engine stays off the socket, so the two do not fight over a CPU.
  std::atomic<int64_t> last_busy_poll{0};

  union ibv_gid gid() const;
  uint64_t guid() const;

  // Everything below runs with mu held.
  /// Queues one RoCE packet (headers + payload + pad + ICRC) for `dst_ip`, through the
  /// fault injector. `payload` must stay valid until flush_tx (registered memory, or
  /// tx_scratch()).
  void transmit(uint32_t dst_ip, const uint8_t* hdr, size_t hdr_len, const uint8_t* payload,
                size_t payload_len, uint8_t pad);
  /// A 4096-byte buffer that travels with the next queued packet: for payloads that must
  /// be assembled from several pieces.
  uint8_t* tx_scratch();
  /// Sends every queued packet (one sendmmsg per batch). Called before mu is released.
  void flush_tx();
  /// Queues a copy of `t` (payload included) for the next sendmmsg.
  void queue_copy(const TxPacket& t);
  void receive_batch();
  void handle_packet(const uint8_t* data, size_t len, uint32_t src_ip);
  void run_timers(Clock::time_point now);
  std::optional<Clock::time_point> next_deadline() const;
  void wake_engine_if_needed(Clock::time_point deadline);
  Mr* find_mr(uint32_t key);
  void engine_loop();
  /// Called by poll_cq on an empty CQ: receive and handle whatever is waiting, if no
  /// other thread is doing so right now. Takes mu itself.
  /// `busy`: the caller spins on its CQ (it is not armed for an event), so the engine may
  /// leave the socket to it.
  void poll_progress(bool busy);
};

/// The process-wide device: opened (socket bound, engine started) on first use.
Device* device_open(std::string& error);
void device_close(Device* dev);

// ---- queue-pair operations (qp.cpp); all with Device::mu held --------------------------
int qp_modify(Qp& qp, const ibv_qp_attr& attr, int mask);
int qp_post_send(Qp& qp, ibv_send_wr* wr, ibv_send_wr** bad);
int qp_post_recv(Qp& qp, ibv_recv_wr* wr, ibv_recv_wr** bad);
void qp_receive(Qp& qp, const wire::Packet& p);
void qp_flush_ack(Qp& qp);
void qp_timers(Qp& qp, Clock::time_point now);
std::optional<Clock::time_point> qp_deadline(const Qp& qp);
void qp_enter_error(Qp& qp);

/// Adds one completion to a CQ and raises its channel event if it is armed.
void cq_push(Cq& cq, const ibv_wc& wc, bool solicited);

}  // namespace uroce

/// Names a function whose exported name exists in two versions (see libibverbs.map).
#define UROCE_V1_1(name) uroce_1_1_##name
