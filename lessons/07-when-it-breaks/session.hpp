/**
 * @file lessons/07-when-it-breaks/session.hpp
 * @brief Lesson 07, steps 2-4: one ordinary RC connection, built so that a case can break
 *        exactly one thing in it.
 *
 * Everything here was taught by lessons 01-06 and comes from common/: the device, a PD,
 * one registered buffer, a CQ for each queue, an RC QP, the QP details over TCP, RESET ->
 * INIT -> RTR -> RTS. What is new is the `Setup`: the few values a failure needs changed
 * (an MR without REMOTE_WRITE, a send queue of 3, an RNR retry count of 0 ...), each one
 * a field whose comment says what the ordinary value is.
 *
 * The client tells the server which case it runs (a BREAK message, common/exchange.hpp)
 * before anything else, so that both sides build the same Setup.
 */
#pragma once

#include <infiniband/verbs.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/device.hpp"
#include "common/exchange.hpp"
#include "common/options.hpp"
#include "common/tcp.hpp"
#include "common/verbs_owners.hpp"

namespace lesson07 {

/// The TCP port of the control connection (lesson 01's 18515, plus two).
inline constexpr std::uint16_t kDefaultPort = 18517;
/// Bytes of the buffer each side registers: [0, 4 KiB) local sources and RECV slots,
/// [4 KiB, 8 KiB) the server's exposed window (the target of the client's WRITEs).
inline constexpr std::size_t kBufferBytes = 8192;
/// Where the server's exposed window starts in its buffer.
inline constexpr std::size_t kExposedOffset = 4096;
/// The exposed window's length: the MR whose rkey the client gets.
inline constexpr std::size_t kExposedBytes = 4096;
/// The message every SEND and WRITE of a case carries, unless the case says otherwise.
inline constexpr std::uint32_t kMessageBytes = 64;

/// Which implementation of RoCE v2 is under us: they differ in a few cases (README).
enum class Implementation {
  kernel_rxe,  ///< the kernel's Soft-RoCE driver (device rxe*)
  runtime,     ///< this project's userspace runtime (device uroce*)
  other        ///< a hardware device: the lesson runs, its expectations are rxe's
};

/// "kernel rxe", "userspace runtime" or "other device".
const char* implementation_name(Implementation impl);

/// What a case changes in the ordinary connection. The defaults are lesson 01's.
struct Setup {
  unsigned server_mr_access =            ///< the server's exposed window: READ and WRITE
      IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  std::uint32_t max_send_wr = 16;        ///< send queue depth asked at ibv_create_qp
  int send_cqe = 32;                     ///< send CQ entries asked at ibv_create_cq
  std::uint8_t timeout = 14;             ///< ACK timeout: 4.096 us x 2^14 = 67 ms
  std::uint8_t retry_cnt = 7;            ///< resends after an ACK timeout (7: rxe never gives up)
  std::uint8_t rnr_retry = 7;            ///< retries after an RNR NAK (7: forever)
  std::uint8_t min_rnr_timer = 12;       ///< the server's RNR NAK asks for 0.64 ms
  std::uint8_t server_max_dest_rd_atomic = 1;  ///< READs the server's QP serves at once (its
                                         ///< responder resources, set at RTR; 0: none)
  bool client_ipv6_gid = false;          ///< the client takes a RoCE v2 IPv6 GID if it has one
  std::optional<ibv_mtu> client_path_mtu;  ///< set: the client's path MTU, whatever the peer's
  std::optional<ibv_mtu> server_path_mtu;  ///< set: the server's path MTU, whatever the ports'
  std::int32_t client_psn_shift = 0;     ///< the client's real first PSN minus the one it announces
  bool client_psn_upper_half = false;    ///< the client's real first PSN is at least 0x800000
  bool init_qp = true;                   ///< false: the QP stays in RESET after step 2
  bool connect_server = true;            ///< false: the case moves the server's QP itself
};

/// One side's objects, in creation order (destroyed in reverse).
struct Session {
  bool server_side = false;             ///< which half of the case this process runs
  common::Options opts;                  ///< -d -i -g -p -t ...
  Setup setup;                           ///< the case's changes
  common::OpenPort port;                 ///< device, port, GID
  Implementation impl = Implementation::other;  ///< kernel rxe or the runtime: the predictions differ
  ibv_device_attr device_attr{};         ///< the device's limits (ibv_query_device)
  common::Pd pd;                         ///< the protection domain of both MRs and the QP
  std::vector<char> buffer;              ///< kBufferBytes
  common::Mr local_mr;                   ///< LOCAL_WRITE: sources and RECV slots
  common::Mr exposed_mr;                 ///< server: the window, with setup.server_mr_access
  common::Cq send_cq;                    ///< completions of SENDs and WRITEs
  common::Cq recv_cq;                    ///< completions of RECVs
  common::Qp qp;                         ///< the RC QP the case breaks something of
  ibv_qp_cap cap{};                      ///< what ibv_create_qp granted
  std::uint32_t psn = 0;                 ///< our first PSN (random, 24 bits), as announced
  std::optional<common::Channel> channel;  ///< the TCP control connection
  common::QpInfo peer;                   ///< the peer's QP_INFO

  /// The address of byte @p offset of our buffer.
  char* at(std::size_t offset) { return buffer.data() + offset; }
  /// An SGE of @p length bytes at @p offset of our buffer (local_mr's lkey).
  ibv_sge sge(std::size_t offset, std::uint32_t length);
  /// The deadline of every wait (-t), in seconds.
  double timeout() const { return opts.timeout_s; }
};

/// Step 2: open the device (common::open_port, unless the caller already did: the server
/// opens it before it waits for a client; the client takes an IPv6 GID in gid-kinds),
/// register the buffer, create two CQs and the QP with the case's sizes, and reach INIT.
/// @throws common::Error with the remedy.
void open_session(Session& s);

/// Step 3 (both sides after BREAK): send our QP_INFO, receive the peer's.
void exchange_info(Session& s);

/// Step 4: INIT -> RTR -> RTS towards the peer, with the case's path MTU, PSN, timers.
/// @throws common::Error from ibv_modify_qp (the cases that break here catch it).
void connect_session(Session& s);

/// Our first PSN as the QP really starts it: the announced one plus the case's shift.
std::uint32_t real_first_psn(const Session& s);

}  // namespace lesson07
