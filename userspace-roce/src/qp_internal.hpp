// What the four files of the RC transport share (requester.cpp, completer.cpp,
// responder.cpp, qp_state.cpp): memory lookups by key, the completion and packet helpers,
// and the entry points each half offers the others. Internal to the transport: the rest
// of the runtime uses qp.hpp. Everything here runs with Device::mu held.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "runtime.hpp"

namespace uroce::transport {

/// Whether UROCE_LOG asks for lines of `level` (1 connection events and errors, 2 every
/// packet, 3 responder decisions).
inline bool logging(int level) { return Config::get().log >= level; }

// ---- memory, by key -----------------------------------------------------------------

/// [va, va+len) of `mr` as a pointer, or nullptr if it is not inside the MR.
inline uint8_t* mr_ptr(const Mr* mr, uint64_t va, uint64_t len) {
  if (va < mr->iova || len > mr->ibv.length || va - mr->iova > mr->ibv.length - len)
    return nullptr;
  return static_cast<uint8_t*>(mr->ibv.addr) + (va - mr->iova);
}

/// The local memory [sge.addr + offset, + len) of an SGE: its L_Key must name an MR of the
/// QP's PD that covers the range (and allows local write if `need_write`); else nullptr.
inline uint8_t* sge_ptr(Qp& qp, const ibv_sge& sge, uint64_t offset, uint64_t len,
                        bool need_write) {
  Mr* mr = qp.dev->find_mr(sge.lkey);
  if (!mr || mr->pd != qp.pd) return nullptr;
  if (need_write && !(mr->access & IBV_ACCESS_LOCAL_WRITE)) return nullptr;
  return mr_ptr(mr, sge.addr + offset, len);
}

/// The memory a peer names with (R_Key, VA, length) for `right` (IBV_ACCESS_REMOTE_READ
/// or _WRITE): an MR registered under that key, in the QP's PD, with that right, covering
/// the range; else nullptr. The MR is looked up by key every time: it may have been
/// deregistered since the key was first seen, and its memory reused by another MR.
inline uint8_t* remote_ptr(Qp& qp, uint32_t rkey, uint64_t va, uint64_t len, int right) {
  Mr* mr = qp.dev->find_mr(rkey);
  if (!mr || mr->pd != qp.pd || !(mr->access & right)) return nullptr;
  return mr_ptr(mr, va, len);
}

/// Walks [off, off+len) of a message laid out over an SGE list: for each piece, the
/// registered memory behind it (checked as sge_ptr does) and its length. Returns false on a
/// bad piece or if the list is shorter than the range.
template <typename Piece>
bool for_each_piece(Qp& qp, const std::vector<ibv_sge>& sg, uint64_t off, size_t len,
                    bool need_write, Piece&& piece) {
  for (const ibv_sge& s : sg) {
    if (len == 0) break;
    if (off >= s.length) {
      off -= s.length;
      continue;
    }
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len, s.length - off));
    uint8_t* p = sge_ptr(qp, s, off, n, need_write);
    if (!p) return false;
    piece(p, n);
    len -= n;
    off = 0;
  }
  return len == 0;
}

/// Copies `len` bytes into a scatter list at message offset `off` (a RECV's, or a READ's
/// own). Returns false on a bad key or range.
bool scatter(Qp& qp, const std::vector<ibv_sge>& sg, uint64_t off, const uint8_t* in,
             size_t len);

/// Packets (PSNs) a message of `length` bytes takes at path MTU `mtu`: at least one, even
/// for 0 bytes. A READ's are those of its responses.
inline uint32_t packets_for(uint64_t length, uint32_t mtu) {
  return static_cast<uint32_t>(std::max<uint64_t>(1, (length + mtu - 1) / mtu));
}

// ---- completions (qp_state.cpp) --------------------------------------------------------

/// Completes a send WQE: always with an error, only if signaled on success (IBA 10.7.3.1).
void complete_send(Qp& qp, const SendWqe& w, ibv_wc_status status);
/// Completes a receive WQE.
void complete_recv(Qp& qp, const RecvWqe& r, ibv_wc_status status, ibv_wc_opcode op,
                   uint32_t byte_len, const uint32_t* imm, bool solicited);

// ---- requester (requester.cpp) -----------------------------------------------------------

/// Sends one packet to the peer: p's headers (DestQP and PadCnt filled in here), then the
/// payload, which must stay valid until the device flushes its batch.
void send_packet(Qp& qp, wire::Packet& p, const uint8_t* payload, size_t len);
/// Sends a READ request for what is still missing of w: all of it while nothing has
/// arrived; after that, a repeated request for the next part of the missing tail, at
/// most a window of packets (sets w.rerequest_end).
void send_read_request(Qp& qp, SendWqe& w);
/// Sends whatever the window, the READ limit, fences and waits allow.
void tx_pump(Qp& qp);
/// Go back N: the next packet to send is the oldest unacknowledged one again.
void rewind(Qp& qp);

// ---- completer (completer.cpp) -----------------------------------------------------------

/// An ACK, NAK or RNR NAK for our requests.
void on_ack(Qp& qp, const wire::Packet& p);
/// A READ response for one of our READs.
void on_read_response(Qp& qp, const wire::Packet& p);
/// (Re)starts the local ACK timeout if packets are outstanding; stops it otherwise.
void arm_retransmit(Qp& qp);
/// The oldest WQE fails with `status`; the QP goes to ERROR and flushes the rest.
void fail_head(Qp& qp, ibv_wc_status status);

// ---- responder (responder.cpp) -----------------------------------------------------------

/// A request packet (SEND, WRITE, READ, atomic) from the peer, the QP in RTR or RTS.
void on_request(Qp& qp, const wire::Packet& p);
/// Forgets every saved READ and gives the ring `slots` entries (max_dest_rd_atomic).
void reset_read_ring(Qp& qp, size_t slots);

}  // namespace uroce::transport
