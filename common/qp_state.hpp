/**
 * @file qp_state.hpp
 * @brief Moving an RC queue pair RESET -> INIT -> RTR -> RTS, every attribute explained.
 *
 * A new QP is in RESET: it neither sends nor receives. Each ibv_modify_qp() call moves it
 * one state further. The attr_mask says which fields of ibv_qp_attr are filled: it must
 * name every attribute the transition requires and may add attributes the transition
 * allows as optional (the InfiniBand spec's table of QP state transitions, which the
 * kernel checks in ib_modify_qp_is_ok()). A required attribute left out, or one the
 * transition does not allow at all, fails with EINVAL.
 *
 * @code
 *   RESET --(port, pkey, access)--> INIT        RECVs may be posted from here on
 *   INIT  --(peer QPN, PSN, path)--> RTR        Ready To Receive: answers the peer
 *   RTR   --(our PSN, timers)------> RTS        Ready To Send: may post sends
 * @endcode
 *
 * RTR is where the two sides meet: it needs the peer's QP number, its first PSN and its
 * address (GID on RoCE, LID on InfiniBand), which is why they are exchanged out of band
 * (TCP here, RDMA CM in lesson 02) before the QP can get there.
 */
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>

#include "common/device.hpp"
#include "common/exchange.hpp"

namespace common {

/// What RTR needs to know about the remote side, and the local path choices.
struct RtrParams {
  std::uint8_t port = 1;          ///< local port (the same as at INIT)
  int sgid_index = 0;             ///< our GID index (device.hpp: choose_gid)
  bool use_grh = true;            ///< true on RoCE: every packet carries IP addresses (GRH)
  ibv_mtu path_mtu = IBV_MTU_1024;///< the smaller of both ports' active_mtu
  std::uint32_t remote_qpn = 0;   ///< the peer's QP number: where our packets are addressed
  std::uint32_t remote_psn = 0;   ///< the PSN the peer will send first: what we expect
  std::uint16_t remote_lid = 0;   ///< the peer's LID (InfiniBand only; 0 on RoCE)
  ibv_gid remote_gid{};           ///< the peer's GID: the destination IP on RoCE v2
  std::uint8_t max_dest_rd_atomic = 1;  ///< RDMA READs/atomics the peer may have in flight to us
  std::uint8_t min_rnr_timer = 12;      ///< how long a sender waits after our RNR NAK (12 = 0.64 ms;
                                        ///< rxe waits at least one kernel timer tick)
};

/// What RTS needs: our own sequence numbers and the retry policy.
struct RtsParams {
  std::uint32_t local_psn = 0;    ///< the PSN of the first packet we send (24 bits)
  std::uint8_t timeout = 14;      ///< ACK timeout: 4.096 us * 2^14 = 67 ms before a retry
  std::uint8_t retry_cnt = 7;     ///< resends after an ACK timeout (or a PSN sequence NAK) before
                                  ///< IBV_WC_RETRY_EXC_ERR
                                  ///< (Soft-RoCE treats 7 as "forever", as the spec does rnr_retry 7)
  std::uint8_t rnr_retry = 7;     ///< retries after an RNR NAK; 7 means "forever"
  std::uint8_t max_rd_atomic = 1; ///< RDMA READs/atomics we may have in flight
};

/// RESET -> INIT: bind the QP to @p port and say what the peer may do to our memory.
/// @throws Error with the errno text (EINVAL: a wrong attribute or mask).
void qp_to_init(ibv_qp* qp, std::uint8_t port, unsigned access_flags);

/// INIT -> RTR: connect the receive side to the peer (see RtrParams).
/// @throws Error; EINVAL here usually means GIDs of different kinds on the two sides.
void qp_to_rtr(ibv_qp* qp, const RtrParams& p);

/// RTR -> RTS: arm the send side (see RtsParams).
/// @throws Error with the errno text.
void qp_to_rts(ibv_qp* qp, const RtsParams& p);

/**
 * Lesson 01's step 11 for the raw-verbs lessons after it: INIT -> RTR -> RTS towards the
 * peer that @p peer describes (its QPN, first PSN, LID, GID and active MTU), with the
 * path MTU the smaller of both ports' active_mtu and @p local_psn as our first PSN. The
 * other attributes keep RtrParams' and RtsParams' defaults.
 * @throws Error as qp_to_rtr() and qp_to_rts().
 */
void connect_qp(ibv_qp* qp, const OpenPort& port, const Hello& peer, std::uint32_t local_psn);

/// "RESET", "INIT", "RTR", "RTS", "SQD", "SQE", "ERR".
const char* qp_state_name(ibv_qp_state state);

/// The QP's current state as the device reports it (ibv_query_qp). A QP can change state
/// without a call of ours: the device moves it to ERR when a request fails for good.
/// @throws Error if the query fails.
ibv_qp_state query_qp_state(ibv_qp* qp);

}  // namespace common
