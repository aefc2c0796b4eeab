#include "common/rdma_ops.hpp"

#include "common/dump.hpp"
#include "common/errors.hpp"

namespace common {

void post_rdma(ibv_qp* qp, ibv_wr_opcode op, std::uint64_t wr_id, const ibv_sge& sge, std::uint64_t remote_addr,
               std::uint32_t rkey, std::uint32_t imm_data, bool detail) {
  ibv_sge local = sge;
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.opcode = op;
  wr.sg_list = &local;
  wr.num_sge = 1;
  wr.send_flags = IBV_SEND_SIGNALED;
  if (op == IBV_WR_RDMA_WRITE_WITH_IMM) wr.imm_data = imm_data;
  wr.wr.rdma.remote_addr = remote_addr;
  wr.wr.rdma.rkey = rkey;
  dump_sge(wr_opcode_name(op), local, detail);
  dump_send_wr(wr, detail);
  ibv_send_wr* bad = nullptr;
  check_rc(ibv_post_send(qp, &wr, &bad), "ibv_post_send",
           "the send queue may be full (max_send_wr) or the QP not in RTS");
}

void post_send(ibv_qp* qp, std::uint64_t wr_id, const ibv_sge& sge, bool detail) {
  ibv_sge local = sge;
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.opcode = IBV_WR_SEND;
  wr.sg_list = local.length > 0 ? &local : nullptr;
  wr.num_sge = local.length > 0 ? 1 : 0;
  wr.send_flags = IBV_SEND_SIGNALED;
  if (local.length > 0) dump_sge("SEND", local, detail);
  dump_send_wr(wr, detail);
  ibv_send_wr* bad = nullptr;
  check_rc(ibv_post_send(qp, &wr, &bad), "ibv_post_send", "the QP must be in RTS and the send queue not full");
}

void post_recv(ibv_qp* qp, std::uint64_t wr_id, const ibv_sge& sge) {
  ibv_sge local = sge;
  ibv_recv_wr wr{};
  wr.wr_id = wr_id;
  wr.sg_list = &local;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  check_rc(ibv_post_recv(qp, &wr, &bad), "ibv_post_recv",
           "the receive queue is full (max_recv_wr) or the QP is in RESET or ERR");
}

}  // namespace common
