/**
 * @file dump.hpp
 * @brief One-line dumps of the objects a learner must be able to read: QP, WR, SGE, WC.
 *
 * @code
 *   QP dump: qpn=0x000011 state=INIT mtu=1024 sq_psn=0x000000 rq_psn=0x000000 ...
 *   SGE(SEND): addr=0x55d0c2a4f000 len=18 lkey=0x79b
 *   WR: wr_id=1 opcode=SEND signaled=1 num_sge=1 inline=0
 *   WC: wr_id=1 status=0 opcode=SEND byte_len=0 qp_num=0x000011
 * @endcode
 * The field names are the struct members, so a line can be read against verbs.h.
 * Each dump takes `detail`: true logs it only with -v (use it for every message after
 * the first, so a run of 1000 messages does not print 4000 dumps).
 */
#pragma once

#include <infiniband/verbs.h>

namespace common {

/// Query @p qp (ibv_query_qp) and log its state, path and timer attributes and its caps.
void dump_qp(ibv_qp* qp);

/// Log a scatter/gather element: which registered bytes a WR reads or fills.
void dump_sge(const char* label, const ibv_sge& sge, bool detail = false);

/// Log a send-queue work request (SEND, RDMA WRITE/READ ...), with remote addr/rkey if any.
void dump_send_wr(const ibv_send_wr& wr, bool detail = false);

/// Log a receive-queue work request.
void dump_recv_wr(const ibv_recv_wr& wr, bool detail = false);

/// Log a work completion; a failed one also shows ibv_wc_status_str().
void dump_wc(const ibv_wc& wc, bool detail = false);

/// "SEND", "RDMA_WRITE", ... for a send WR opcode.
const char* wr_opcode_name(ibv_wr_opcode op);

/// "SEND", "RECV", "RECV_RDMA_WITH_IMM", ... for a completion opcode.
const char* wc_opcode_name(ibv_wc_opcode op);

}  // namespace common
