/**
 * @file rdma_ops.hpp
 * @brief Posting one work request: a SEND or a RECV as lesson 01 spells them out, a
 *        one-sided RDMA WRITE, WRITE_WITH_IMM or READ as lesson 02 does, for the lessons
 *        after them.
 *
 * A one-sided work request is a send-queue WR plus the two fields that name the peer's
 * memory: wr.rdma.remote_addr and wr.rdma.rkey, both learnt from the peer (lessons 02-04
 * get them from the CM private data). The peer's device checks the rkey, the bounds and
 * the access flags of its MR; the peer's program takes no part, except that a
 * WRITE_WITH_IMM also consumes one of its RECVs and hands it imm_data.
 */
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>

namespace common {

/**
 * Post one signaled one-sided work request and dump its SGE and WR.
 * @param qp           the QP (in RTS)
 * @param op           IBV_WR_RDMA_WRITE, IBV_WR_RDMA_WRITE_WITH_IMM or IBV_WR_RDMA_READ
 * @param wr_id        comes back in the completion
 * @param sge          the local bytes (registered; LOCAL_WRITE for a READ's destination)
 * @param remote_addr  the peer's virtual address
 * @param rkey         the rkey of the peer's MR that covers it
 * @param imm_data     for WRITE_WITH_IMM: the immediate value, already in network byte
 *                     order (htonl); ignored otherwise
 * @param detail       dump only with -v (true after the first of many)
 * @throws Error if ibv_post_send refuses it (send queue full, QP not in RTS).
 */
void post_rdma(ibv_qp* qp, ibv_wr_opcode op, std::uint64_t wr_id, const ibv_sge& sge, std::uint64_t remote_addr,
               std::uint32_t rkey, std::uint32_t imm_data, bool detail);

/**
 * Post one signaled SEND of @p sge (a zero-length SEND when sge.length is 0: no SGE at
 * all, just a header on the wire and a RECV completion with byte_len 0 at the peer).
 * @throws Error if ibv_post_send refuses it (send queue full, QP not in RTS).
 */
void post_send(ibv_qp* qp, std::uint64_t wr_id, const ibv_sge& sge, bool detail);

/**
 * Post one RECV for up to sge.length bytes at sge.addr: the next SEND that arrives may
 * land there (and a WRITE_WITH_IMM may consume it for its notification).
 * @throws Error if ibv_post_recv refuses it (receive queue full, QP in RESET).
 */
void post_recv(ibv_qp* qp, std::uint64_t wr_id, const ibv_sge& sge);

}  // namespace common
