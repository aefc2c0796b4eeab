// The emulated HCA: one per process, its UDP socket, its engine thread, the packets on
// their way out, and the life of the device (device.cpp, socket_io.cpp, engine.cpp,
// faults.cpp).
#pragma once

#include <infiniband/verbs.h>

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

#include "gsi.h"
#include "wire.hpp"

namespace uroce {

using Clock = std::chrono::steady_clock;

struct Qp;
struct Mr;

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

/// One datagram laid out whole for sendmmsg: headers, payload, pad and ICRC in one
/// cache-line-aligned buffer (send_packets in socket_io.cpp says why).
struct alignas(64) TxDatagram {
  uint8_t bytes[wire::kMaxHeaderSize + 4096 + 8];
};
static_assert(sizeof(TxDatagram::bytes) >= wire::kMaxHeaderSize + sizeof(TxPacket::own) + 3 + wire::kIcrcSize,
              "a datagram of the largest header, a full path MTU of payload, pad and ICRC fits");

/// The emulated HCA of this process: one UDP socket bound to <addr>:4791 and the engine
/// thread. Created by the first ibv_open_device, torn down by the last ibv_close_device.
///
/// Nothing that can wait runs with `mu` held: sends never block (a full socket leaves its
/// packets in `backlog` for the engine), and logging only appends to a buffer.
struct Device {
  std::mutex mu;
  uint32_t ip = 0;  ///< host order
  /// The port's active MTU: the largest path MTU a QP may use. Derived from the MTU of the
  /// interface that holds `ip`, as rxe derives it (interface_active_mtu).
  ibv_mtu active_mtu = IBV_MTU_4096;
  /// That interface's index: the GID's net device (ibv_query_gid_ex's ndev_ifindex).
  uint32_t ifindex = 1;
  int sock = -1;
  int rcvbuf_bytes = 0;  ///< the receive buffer the kernel granted the socket (SO_RCVBUF)
  int wake_fd = -1;  ///< eventfd: tells the engine a timer moved earlier or packets wait
  std::thread engine;
  bool stopping = false;
  /// Closing, or the process exiting: ACKs go at once, none is delayed (responder.cpp).
  bool no_delayed_acks = false;
  pid_t owner_pid = 0;  ///< the process that opened the device (a forked child did not)
  int open_contexts = 0;

  std::map<uint32_t, Qp*> qps;
  std::map<uint32_t, Mr*> mrs;  ///< by key (lkey == rkey)
  uint32_t next_qpn = 0x11;
  uint32_t next_mr_index = 1;
  std::mt19937_64 fault_rng;
  std::uniform_real_distribution<double> unit{0.0, 1.0};
  static constexpr int kTxBatch = 32;
  std::vector<TxPacket> tx = std::vector<TxPacket>(kTxBatch);
  std::vector<TxDatagram> tx_datagrams = std::vector<TxDatagram>(kTxBatch);  ///< send_packets' copies
  int tx_count = 0;
  /// Packets the socket had no room for, in transmit order, with their payloads copied.
  std::deque<std::unique_ptr<TxPacket>> backlog;
  uint64_t backlog_dropped = 0;  ///< lost because the backlog was full (said at level 1)
  int send_errors_logged = 0;    ///< sendmmsg errors said so far (at most 10)
  std::unique_ptr<TxPacket> held;  ///< a packet held back by reorder injection
  std::optional<Clock::time_point> held_until;
  std::optional<Clock::time_point> engine_sleep_until;  ///< when the engine will wake
  bool engine_sleeping_forever = false;
  /// QP 1, the general services interface (gsi.h): who receives the CM's MADs (the
  /// runtime's librdmacm), and the PSN of the next MAD sent (QP 1 counts from 0 per
  /// packet, as rxe's does).
  uroce_gsi_receive_fn gsi_receive = nullptr;
  void* gsi_arg = nullptr;
  uint32_t gsi_psn = 0;

  union ibv_gid gid() const;
  uint64_t guid() const;
  /// Unacknowledged packets of `mtu` bytes a QP may have in flight: UROCE_WINDOW, or
  /// fewer if the receive buffer the kernel granted cannot hold that many (socket_io.cpp).
  uint32_t window_packets(uint32_t mtu) const;

  // Everything below runs with mu held.
  /// Queues one RoCE packet (headers + payload + pad + ICRC) for `dst_ip`, through the
  /// fault injector. `payload` must stay valid until flush_tx (registered memory, or
  /// tx_scratch()).
  void transmit(uint32_t dst_ip, const uint8_t* hdr, size_t hdr_len, const uint8_t* payload,
                size_t payload_len, uint8_t pad);
  /// A 4096-byte buffer that travels with the next queued packet: for payloads that must
  /// be assembled from several pieces.
  uint8_t* tx_scratch();
  /// Sends every queued packet (one sendmmsg per batch) without waiting: what the socket
  /// has no room for moves to the backlog. Called before mu is released.
  void flush_tx();
  /// Sends what the backlog holds, as far as the socket takes it.
  void drain_backlog();
  /// One sendmmsg of up to kTxBatch packets; returns how many the socket took (a packet
  /// lost to an error counts as taken).
  int send_packets(TxPacket* const* pkts, int count);
  /// Queues a copy of `t` (payload included) for the next sendmmsg.
  void queue_copy(const TxPacket& t);
  /// The fault injector's say on a packet about to be queued: false if it is dropped or
  /// held back (faults.cpp).
  bool inject_faults(const TxPacket& t);
  /// After `t` was queued: its duplicate, and the packet held back behind it, if any.
  void after_queued(const TxPacket& t);
  /// Sends a held-back packet whose time is up.
  void release_held(Clock::time_point now);
  void receive_batch();
  void handle_packet(const uint8_t* data, size_t len, uint32_t src_ip,
                     uint16_t src_port = wire::kRoceV2Port);
  /// A packet for QP 1: a CM MAD for the GSI receiver, if it is one (gsi.cpp).
  void handle_gsi_packet(const wire::Packet& p, uint32_t src_ip);
  /// Queues one MAD for QP 1 at `dst_ip` (gsi.cpp).
  void send_gsi_packet(uint32_t dst_ip, const uint8_t* mad);
  void run_timers(Clock::time_point now);
  std::optional<Clock::time_point> next_deadline() const;
  void wake_engine_if_needed(Clock::time_point deadline);
  Mr* find_mr(uint32_t key);
  void engine_loop();
  /// Called by poll_cq on an empty CQ: receive and handle whatever is waiting, if no
  /// other thread is doing so right now. Takes mu itself.
  void poll_progress();
};

/// dst = src, with the payload copied into dst's own buffer (src's may not live long).
void copy_packet(TxPacket& dst, const TxPacket& src);
/// A UDP socket bound to ip:4791, non-blocking, DF set, UDP checksum off, large buffers;
/// -1 and `error` set on failure.
int bind_socket(uint32_t ip, std::string& error);
/// The IB MTU an interface of `interface_mtu` bytes allows, by rxe's rule: the largest
/// that fits with 80 bytes of headers (1500 gives 1024; loopback's 65536 gives 4096).
ibv_mtu ib_mtu_for(int interface_mtu);
/// The IB MTU the interface holding `ip` allows (ib_mtu_for of its MTU; 1500 assumed if
/// no interface admits to the address).
ibv_mtu interface_active_mtu(uint32_t ip);
/// The name of the interface whose address is `ip` (or whose subnet holds it); empty if
/// none does.
std::string interface_of(uint32_t ip);

/// Asks that the device, when first opened, be bound to `ip` (gsi.h).
int request_device_address(uint32_t ip);
/// The process-wide device: opened (socket bound, engine started) on first use.
Device* device_open(std::string& error);
void device_close(Device* dev);

}  // namespace uroce
