/**
 * @file lessons/05-tls-psn/connection.hpp
 * @brief One RC connection of lesson 05: isolated from every other connection, with a
 *        first PSN from a CSPRNG, and a completion channel to sleep on.
 *
 * Lesson 01 taught the objects (device, PD, MR, CQ, QP) and the QP's way to RTS; they
 * come from common/ here. What is new is **isolation**. A server with many clients must
 * make sure that a client can reach its own slot and nothing else:
 *
 *  - **A protection domain per connection.** An rkey is honoured only on a QP of the PD
 *    its MR was registered in. The device checks that on every RDMA WRITE and READ, so a
 *    client that learns (or guesses) another client's slot address and rkey still gets
 *    nothing: its QP lives in another PD, and the request is refused with a NAK (remote
 *    access error) before a byte is touched.
 *  - **Remote rights only on the slot.** The slot is a separate buffer with its own MR,
 *    registered REMOTE_WRITE | REMOTE_READ. The buffers the server receives into and
 *    sends from are registered LOCAL_WRITE only: no rkey can name them, even through the
 *    client's own QP. The device checks every access against the MR's exact bounds, so
 *    a WRITE that reaches one byte past the slot is refused too.
 *
 * A refused request ends the connection on both sides: the requester completes it with
 * IBV_WC_REM_ACCESS_ERR and its QP goes to ERR, and the responder (the server's QP)
 * goes to ERR as well. The other connections do not notice.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/device.hpp"
#include "common/exchange.hpp"
#include "common/verbs_owners.hpp"

namespace lesson05 {

/// The TCP port of the TLS exchange (the usual port for TLS test servers).
inline constexpr std::uint16_t kDefaultPort = 4433;
/// Bytes a client may SEND, and the size of its slot on the server.
inline constexpr std::uint32_t kDefaultSlotSize = 256;
/// The smallest -s: the server's acknowledgement "ack N bytes" travels in one message of
/// at most -s bytes, and the client checks that prefix.
inline constexpr std::uint32_t kMinSlotSize = 16;
/// Why -s has that minimum, for the usage error.
inline constexpr const char* kMinSlotReason =
    "the server's acknowledgement (\"ack N bytes: ...\") must fit in one message";
/// Clients served at once when --max-clients is not given.
inline constexpr unsigned kDefaultMaxClients = 10;
inline constexpr std::uint64_t kRecvWrId = 1;   ///< wr_id of RECVs
inline constexpr std::uint64_t kSendWrId = 2;   ///< wr_id of SENDs
inline constexpr std::uint64_t kWriteWrId = 3;  ///< wr_id of RDMA WRITEs
inline constexpr std::uint64_t kReadWrId = 4;   ///< wr_id of RDMA READs

/**
 * One connection's objects, declared in creation order so that C++ destroys them in
 * reverse (QP, CQ, channel, MRs, buffers, PD): every object of one client, and only
 * those, is released when that client leaves.
 */
struct Connection {
  common::Pd pd;                ///< this connection's own protection domain
  std::vector<char> local;      ///< [recv area | send area | read-back area], `size` bytes each
  common::Mr local_mr;          ///< LOCAL_WRITE only: no rkey of it is ever handed out
  std::vector<char> slot;       ///< server only: the bytes this client may RDMA WRITE and READ
  common::Mr slot_mr;           ///< server only: REMOTE_WRITE | REMOTE_READ, exactly the slot
  common::CompChannel channel;  ///< where the CQ announces completions (we sleep on its fd)
  common::Cq cq;                ///< completions of both queues
  common::Qp qp;                ///< the RC QP, in INIT after open_connection()
  std::uint32_t size = 0;       ///< bytes of each area, and of the slot
  std::uint32_t psn = 0;        ///< our first PSN: 24 random bits from RAND_bytes

  char* recv_area() { return local.data(); }                        ///< where RECVs land
  char* send_area() { return local.data() + size; }                 ///< where SENDs and WRITEs come from
  char* read_area() { return local.data() + 2 * std::size_t{size}; }  ///< where READs land
};

/// A random 24-bit PSN from OpenSSL's CSPRNG (all 24 bits; RAND_bytes, not rand()).
std::uint32_t random_psn();

/**
 * A new PD, the local buffers and their MR, (with @p expose_slot) the slot and its MR,
 * a CQ with a completion channel (armed), an RC QP moved to INIT, and a random first PSN.
 * @param port         the opened device and port (shared by every connection)
 * @param size         bytes of each local area and of the slot
 * @param expose_slot  the server's side: a slot the peer may WRITE and READ, and a QP
 *                     that allows remote writes and reads
 * @throws common::Error with the remedy.
 */
Connection open_connection(const common::OpenPort& port, std::uint32_t size, bool expose_slot);

/// Our QP_INFO: QPN, PSN, LID, MTU, GID and, on the server, the slot's addr/rkey/length.
common::QpInfo make_info(const common::OpenPort& port, const Connection& c);

/// Log a QP_INFO as "<label>: QPN 0x.. PSN 0x.. MTU .. GID .. slot addr=0x.. rkey=0x.. length=..".
void log_info(const char* label, const common::QpInfo& info);

/// Post one RECV for up to `size` bytes into recv_area.
void post_recv(Connection& c);
/// Post one signaled SEND of @p length bytes from send_area (0: the goodbye).
void post_send(Connection& c, std::uint32_t length);

/**
 * The next completion of @p c, asleep on its completion channel meanwhile
 * (common::sleep_until_completion); also wakes up when @p tls_fd (if >= 0) becomes
 * readable: the peer spoke or closed its TLS connection.
 * @return true with @p wc filled (whatever its status), false if tls_fd woke us first.
 * @throws common::Error naming @p what when nothing happens within @p timeout_s.
 */
bool next_completion(Connection& c, ibv_wc& wc, double timeout_s, const std::string& what, int tls_fd);

}  // namespace lesson05
