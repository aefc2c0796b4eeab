/**
 * @file rc_endpoint.hpp
 * @brief Lesson 01, steps 2-9 and 11: one side of an RC connection, built by hand.
 *
 * Server and client build exactly the same objects, so the steps live here once:
 * device -> port/GID -> PD -> MR -> CQs -> QP -> INIT -> first RECV, then RTR/RTS once
 * the peer's HELLO is known. Every object is created with the plain verbs call and
 * handed at once to its RAII owner (common/verbs_owners.hpp), so teardown runs in the
 * reverse order on every exit path.
 */
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "common/device.hpp"
#include "common/exchange.hpp"
#include "common/options.hpp"
#include "common/verbs_owners.hpp"

namespace lesson01 {

/// The TCP port of the QP exchange (rc_pingpong's default, so learners recognise it).
inline constexpr std::uint16_t kDefaultPort = 18515;
/// wr_id of RECV work requests (every completion carries back the wr_id it was posted with).
inline constexpr std::uint64_t kRecvWrId = 1;
/// wr_id of SEND work requests.
inline constexpr std::uint64_t kSendWrId = 2;

/// Frees memory from std::aligned_alloc.
struct FreeDeleter {
  /// Release @p p.
  void operator()(char* p) const { std::free(p); }
};

/**
 * One side of the connection. Members are declared in creation order; C++ destroys
 * them in reverse, which is the teardown order verbs requires (QP, CQs, MR, buffer, PD,
 * context, device list).
 */
struct RcEndpoint {
  common::DeviceList devices;          ///< step 2: the device list (freed last)
  common::Context ctx;                 ///< step 2: the opened device
  std::uint8_t port = 1;               ///< step 3: the port we use
  ibv_port_attr port_attr{};           ///< step 3: its state, active_mtu, LID
  common::GidChoice gid;               ///< step 3: our source GID
  common::Pd pd;                       ///< step 4: protection domain
  std::unique_ptr<char, FreeDeleter> buffer;  ///< step 5: [recv area | send area]
  std::uint32_t size = 0;              ///< bytes in each area (the -s value)
  common::Mr mr;                       ///< step 5: the registration of buffer
  common::Cq send_cq;                  ///< step 6: completions of our SENDs
  common::Cq recv_cq;                  ///< step 6: completions of our RECVs
  common::Qp qp;                       ///< step 7: the RC queue pair
  std::uint32_t psn = 0;               ///< step 7: our random first PSN (24 bits)

  /// Where incoming messages land.
  char* recv_area() { return buffer.get(); }
  /// Where outgoing messages are built.
  char* send_area() { return buffer.get() + size; }
};

/// Steps 2-8: open the device, query the port, choose the GID, and build PD, MR, CQs and
/// an RC QP, then move the QP RESET -> INIT. @throws common::Error with the remedy.
RcEndpoint open_endpoint(const common::Options& opts);

/// Step 9 (and after every message): post one RECV for up to `size` bytes into recv_area.
void post_recv(RcEndpoint& ep);

/// Post one signaled SEND of @p length bytes from send_area (0 is allowed: the goodbye).
/// @param ep      the endpoint whose QP sends
/// @param length  bytes to send from the start of send_area
/// @param detail  dump the SGE and WR only with -v (true after the first message)
void post_send(RcEndpoint& ep, std::uint32_t length, bool detail);

/// Our HELLO for the peer: QPN, PSN, LID, MTU, GID and the run we intend.
common::Hello make_hello(const RcEndpoint& ep, std::uint32_t msg_size, std::uint32_t msg_count);

/// Log a HELLO as "<label>: QPN 0x.. PSN 0x.. LID .. MTU .. GID ..".
void log_hello(const char* label, const common::Hello& hello);

/// Step 11: INIT -> RTR -> RTS towards the peer described by @p remote.
void connect_qp(RcEndpoint& ep, const common::Hello& remote);

/// Message @p index (1-based) of @p count in a counted run, exactly @p size bytes:
/// "message 3/10 " followed by letters, so both sides can check every byte.
std::string make_message(std::uint32_t index, std::uint32_t count, std::uint32_t size);

}  // namespace lesson01
