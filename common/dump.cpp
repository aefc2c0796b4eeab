#include "common/dump.hpp"

#include <arpa/inet.h>

#include "common/device.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/qp_state.hpp"

namespace common {
namespace {

// Dumps are INFO lines; `detail` ones show only with -v.
#define DUMP(detail, ...) \
  ((detail) ? ::common::log_detail(Tag::info, fn, __VA_ARGS__) \
            : ::common::log_line(Tag::info, fn, __VA_ARGS__))

}  // namespace

void dump_qp(ibv_qp* qp) {
  const char* fn = __func__;
  ibv_qp_attr attr{};
  ibv_qp_init_attr init{};
  check_rc(ibv_query_qp(qp, &attr,
                        IBV_QP_STATE | IBV_QP_PATH_MTU | IBV_QP_SQ_PSN | IBV_QP_RQ_PSN |
                            IBV_QP_DEST_QPN | IBV_QP_MAX_QP_RD_ATOMIC |
                            IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                            IBV_QP_TIMEOUT | IBV_QP_MIN_RNR_TIMER | IBV_QP_CAP,
                        &init),
           "ibv_query_qp", "the QP may already be destroyed");
  DUMP(false, "QP dump: qpn=0x%06x state=%s mtu=%s sq_psn=0x%06x rq_psn=0x%06x dest_qpn=0x%06x "
              "max_rd_atomic=%u max_dest_rd_atomic=%u retry=%u rnr_retry=%u timeout=%u min_rnr_timer=%u",
       qp->qp_num, qp_state_name(attr.qp_state), mtu_name(attr.path_mtu), attr.sq_psn,
       attr.rq_psn, attr.dest_qp_num, attr.max_rd_atomic, attr.max_dest_rd_atomic,
       attr.retry_cnt, attr.rnr_retry, attr.timeout, attr.min_rnr_timer);
  DUMP(true, "QP caps: max_send_wr=%u max_recv_wr=%u max_sge={s=%u,r=%u} max_inline_data=%u",
       init.cap.max_send_wr, init.cap.max_recv_wr, init.cap.max_send_sge, init.cap.max_recv_sge,
       init.cap.max_inline_data);
}

void dump_sge(const char* label, const ibv_sge& sge, bool detail) {
  const char* fn = __func__;
  DUMP(detail, "SGE(%s): addr=0x%llx len=%u lkey=0x%x", label,
       static_cast<unsigned long long>(sge.addr), sge.length, sge.lkey);
}

void dump_send_wr(const ibv_send_wr& wr, bool detail) {
  const char* fn = __func__;
  const bool rdma = wr.opcode == IBV_WR_RDMA_WRITE || wr.opcode == IBV_WR_RDMA_WRITE_WITH_IMM ||
                    wr.opcode == IBV_WR_RDMA_READ;
  const bool imm = wr.opcode == IBV_WR_SEND_WITH_IMM || wr.opcode == IBV_WR_RDMA_WRITE_WITH_IMM;
  char extra[96] = "";
  if (rdma)
    std::snprintf(extra, sizeof extra, " remote_addr=0x%llx rkey=0x%x",
                  static_cast<unsigned long long>(wr.wr.rdma.remote_addr), wr.wr.rdma.rkey);
  char imm_text[32] = "";
  if (imm) std::snprintf(imm_text, sizeof imm_text, " imm_data=0x%08x", ntohl(wr.imm_data));
  DUMP(detail, "WR: wr_id=%llu opcode=%s signaled=%d num_sge=%d inline=%d%s%s",
       static_cast<unsigned long long>(wr.wr_id), wr_opcode_name(wr.opcode),
       (wr.send_flags & IBV_SEND_SIGNALED) ? 1 : 0, wr.num_sge,
       (wr.send_flags & IBV_SEND_INLINE) ? 1 : 0, extra, imm_text);
}

void dump_recv_wr(const ibv_recv_wr& wr, bool detail) {
  const char* fn = __func__;
  DUMP(detail, "RECV WR: wr_id=%llu num_sge=%d", static_cast<unsigned long long>(wr.wr_id),
       wr.num_sge);
}

void dump_wc(const ibv_wc& wc, bool detail) {
  const char* fn = __func__;
  char imm_text[32] = "";
  // imm_data belongs to receive completions (opcode has the IBV_WC_RECV bit); some
  // providers also flag the sender's WRITE_WITH_IMM completion, where it means nothing.
  if ((wc.wc_flags & IBV_WC_WITH_IMM) && (wc.opcode & IBV_WC_RECV))
    std::snprintf(imm_text, sizeof imm_text, " imm_data=0x%08x", ntohl(wc.imm_data));
  if (wc.status == IBV_WC_SUCCESS)
    DUMP(detail, "WC: wr_id=%llu status=0 opcode=%s byte_len=%u qp_num=0x%06x%s",
         static_cast<unsigned long long>(wc.wr_id), wc_opcode_name(wc.opcode), wc.byte_len,
         wc.qp_num, imm_text);
  else  // on error only wr_id, status and qp_num are valid: the opcode is undefined
    DUMP(false, "WC: wr_id=%llu status=%d (%s) vendor_err=0x%x qp_num=0x%06x",
         static_cast<unsigned long long>(wc.wr_id), wc.status, ibv_wc_status_str(wc.status),
         wc.vendor_err, wc.qp_num);
}

const char* wr_opcode_name(ibv_wr_opcode op) {
  switch (op) {
    case IBV_WR_SEND: return "SEND";
    case IBV_WR_SEND_WITH_IMM: return "SEND_WITH_IMM";
    case IBV_WR_RDMA_WRITE: return "RDMA_WRITE";
    case IBV_WR_RDMA_WRITE_WITH_IMM: return "RDMA_WRITE_WITH_IMM";
    case IBV_WR_RDMA_READ: return "RDMA_READ";
    case IBV_WR_ATOMIC_CMP_AND_SWP: return "ATOMIC_CMP_AND_SWP";
    case IBV_WR_ATOMIC_FETCH_AND_ADD: return "ATOMIC_FETCH_AND_ADD";
    default: return "OTHER";
  }
}

const char* wc_opcode_name(ibv_wc_opcode op) {
  switch (op) {
    case IBV_WC_SEND: return "SEND";
    case IBV_WC_RDMA_WRITE: return "RDMA_WRITE";
    case IBV_WC_RDMA_READ: return "RDMA_READ";
    case IBV_WC_COMP_SWAP: return "COMP_SWAP";
    case IBV_WC_FETCH_ADD: return "FETCH_ADD";
    case IBV_WC_RECV: return "RECV";
    case IBV_WC_RECV_RDMA_WITH_IMM: return "RECV_RDMA_WITH_IMM";
    default: return "OTHER";
  }
}

}  // namespace common
