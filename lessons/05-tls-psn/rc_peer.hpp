/**
 * @file lessons/05-tls-psn/rc_peer.hpp
 * @brief Lesson 05's RC connection, built as in lesson 01, with a random PSN from a CSPRNG
 *        and a buffer ("slot") the peer may RDMA WRITE and READ.
 *
 * The server opens the device once and shares its context and PD among all clients; each
 * client gets its own CQ (with a completion channel, so a thread can sleep until work
 * arrives), QP and MR, all released when that client leaves.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/device.hpp"
#include "common/exchange.hpp"
#include "common/options.hpp"
#include "common/verbs_owners.hpp"

namespace lesson05 {

/// The TCP port of the TLS exchange (the usual port for TLS test servers).
inline constexpr std::uint16_t kDefaultPort = 4433;
/// Bytes a client may SEND, and the size of its slot on the server.
inline constexpr std::uint32_t kDefaultSlotSize = 256;
/// Clients served at once when --max-clients is not given.
inline constexpr unsigned kDefaultMaxClients = 10;
inline constexpr std::uint64_t kRecvWrId = 1;   ///< wr_id of RECVs
inline constexpr std::uint64_t kSendWrId = 2;   ///< wr_id of SENDs
inline constexpr std::uint64_t kWriteWrId = 3;  ///< wr_id of RDMA WRITEs
inline constexpr std::uint64_t kReadWrId = 4;   ///< wr_id of RDMA READs

/// The opened device: shared by every connection of a process.
struct Device {
  common::DeviceList list;     ///< from ibv_get_device_list (freed last)
  common::Context ctx;         ///< the opened device
  std::uint8_t port = 1;       ///< our port
  ibv_port_attr port_attr{};   ///< its state, active_mtu, LID, link layer
  common::GidChoice gid;       ///< our RoCE v2 GID
  common::Pd pd;               ///< one PD: every connection's QP and MR live in it
};

/// Open the device (-d), query the port (-i), choose the GID (-g), allocate the PD.
Device open_device(const common::Options& opts);

/// One RC connection: declared in creation order, destroyed in reverse.
struct Peer {
  common::CompChannel channel;  ///< where the CQ announces completions
  common::Cq cq;                ///< completions of both queues
  common::Qp qp;                ///< the RC QP
  std::vector<char> buffer;     ///< [recv area | send area | slot], each slot_size bytes
  common::Mr mr;                ///< its registration
  std::uint32_t slot_size = 0;  ///< bytes in each area
  std::uint32_t psn = 0;        ///< our first PSN: 24 random bits from RAND_bytes
  char* recv_area() { return buffer.data(); }                  ///< where RECVs land
  char* send_area() { return buffer.data() + slot_size; }      ///< where SENDs are built
  char* slot() { return buffer.data() + 2 * std::size_t{slot_size}; }  ///< the peer's window
};

/// A random 24-bit PSN from OpenSSL's CSPRNG (all 24 bits; RAND_bytes, not rand()).
std::uint32_t random_psn();

/**
 * CQ with a completion channel, RC QP, buffer and MR, QP in INIT, first PSN drawn.
 * @param dev            the opened device (its context and PD)
 * @param slot_size      bytes of each of the three areas
 * @param remote_access  let the peer WRITE and READ our slot (the server's side)
 */
Peer make_peer(Device& dev, std::uint32_t slot_size, bool remote_access);

/// Our QP_INFO: QPN, PSN, GID, MTU and (if @p expose_slot) the slot's addr/rkey/length.
common::QpInfo make_info(const Device& dev, const Peer& peer, bool expose_slot);

/// Log a QP_INFO as "<label>: QPN 0x.. PSN 0x.. MTU .. GID .. slot addr=0x.. rkey=0x.. length=..".
void log_info(const char* label, const common::QpInfo& info);

/// INIT -> RTR -> RTS with the peer's QPN, PSN and GID (lesson 01's step 11).
void connect_peer(Peer& peer, const Device& dev, const common::QpInfo& remote);

/// Post one RECV for up to slot_size bytes into recv_area.
void post_recv(Peer& peer);
/// Post one signaled SEND of @p length bytes from send_area (0: the goodbye).
void post_send(Peer& peer, std::uint32_t length);

/**
 * Wait for the next completion on the peer's CQ, sleeping in poll() on the completion
 * channel (and, if @p also_fd >= 0, returning early when that fd becomes readable: the
 * TLS socket, whose peer has closed or spoken).
 * @return true with @p wc filled, or false if @p also_fd became readable first.
 * @throws Error on timeout (naming @p what) or a failed completion.
 */
bool wait_completion(Peer& peer, ibv_wc& wc, double timeout_s, const std::string& what, int also_fd = -1);

/// The first bytes of @p data, printable, for the log.
std::string preview(const char* data, std::size_t length);

}  // namespace lesson05
