// uroce_verbs_api_check: verbs calls whose answers the userspace runtime must give the way
// rdma-core 44 and kernel rxe give them, each checked on its own. Run on the runtime
// (scripts/userspace-roce.sh -- uroce_verbs_api_check); prints one "PASS name" or
// "FAIL name: what was seen, what was expected" line per check and exits 1 if any failed.
// The runtime's stderr notes for what is not implemented are checked by
// rdma_core_suite.sh, which reads this program's log.
//
// Every wait is bounded: completions are polled until a deadline, and the calls that
// may block (ibv_destroy_cq, ibv_get_cq_event) run in threads whose end is awaited with a
// timeout; a call that never returns fails its check and ends the program.
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <infiniband/verbs.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "api_check.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kStepTimeout = std::chrono::seconds(10);  ///< any one step that can wait

using api_check::check;
using api_check::errno_text;
using api_check::fail;

/// A step that may block: runs `f` in a thread and waits for it at most kStepTimeout.
/// A step that does not return is a hang: said, and the program ends (the thread is stuck).
template <typename F>
auto bounded(const std::string& name, F&& f) -> decltype(f()) {
  auto fut = std::async(std::launch::async, std::forward<F>(f));
  if (fut.wait_for(kStepTimeout) != std::future_status::ready) {
    fail(name, "did not return within 10 s (a hang)");
    std::_Exit(api_check::tally());
  }
  return fut.get();
}

/// Polls `cq` until it yields one completion or 10 s pass; false on timeout.
bool poll_one(ibv_cq* cq, ibv_wc& wc) {
  const auto deadline = Clock::now() + kStepTimeout;
  while (Clock::now() < deadline) {
    int n = ibv_poll_cq(cq, 1, &wc);
    if (n < 0) return false;
    if (n == 1) return true;
  }
  return false;
}

/// The channel's fd has an event waiting within `ms` milliseconds.
bool channel_readable(ibv_comp_channel* ch, int ms) {
  pollfd p{ch->fd, POLLIN, 0};
  return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

struct Env {
  ibv_device** list = nullptr;
  ibv_context* ctx = nullptr;
  ibv_pd* pd = nullptr;
  ibv_gid gid{};
};

ibv_qp* make_rc_qp(Env& env, ibv_cq* cq) {
  ibv_qp_init_attr init{};
  init.send_cq = cq;
  init.recv_cq = cq;
  init.qp_type = IBV_QPT_RC;
  init.cap.max_send_wr = 8;
  init.cap.max_recv_wr = 8;
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  return ibv_create_qp(env.pd, &init);
}

int to_init(ibv_qp* qp) {
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_INIT;
  a.pkey_index = 0;
  a.port_num = 1;
  a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
  return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
}

/// INIT -> RTR -> RTS, connected to itself (its own QPN at its own GID).
int connect_to_self(Env& env, ibv_qp* qp) {
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_RTR;
  a.path_mtu = IBV_MTU_1024;
  a.dest_qp_num = qp->qp_num;
  a.rq_psn = 0;
  a.max_dest_rd_atomic = 1;
  a.min_rnr_timer = 12;
  a.ah_attr.is_global = 1;
  a.ah_attr.grh.dgid = env.gid;
  a.ah_attr.grh.sgid_index = 0;
  a.ah_attr.grh.hop_limit = 64;
  a.ah_attr.port_num = 1;
  if (int rc = ibv_modify_qp(qp, &a,
                             IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                                 IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
    return rc;
  a = {};
  a.qp_state = IBV_QPS_RTS;
  a.timeout = 14;
  a.retry_cnt = 7;
  a.rnr_retry = 7;
  a.sq_psn = 0;
  a.max_rd_atomic = 1;
  return ibv_modify_qp(qp, &a,
                       IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                           IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
}

int to_error(ibv_qp* qp) {
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_ERR;
  return ibv_modify_qp(qp, &a, IBV_QP_STATE);
}

int post_one_recv(ibv_qp* qp, ibv_mr* mr) {
  ibv_sge sge{reinterpret_cast<uintptr_t>(mr->addr), 16, mr->lkey};
  ibv_recv_wr wr{};
  wr.wr_id = 7;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  return ibv_post_recv(qp, &wr, &bad);
}

/// An RDMA WRITE of 8 bytes from `src` to `dst` (both in `mr`) on a QP connected to itself,
/// and its completion: true if it completed successfully with the data at `dst`; `said`
/// tells what happened.
bool write_to_self(ibv_qp* qp, ibv_cq* cq, ibv_mr* mr, uint64_t* src, uint64_t* dst, std::string& said) {
  ibv_sge sge{reinterpret_cast<uintptr_t>(src), 8, mr->lkey};
  ibv_send_wr wr{};
  wr.wr_id = 2;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_RDMA_WRITE;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = reinterpret_cast<uintptr_t>(dst);
  wr.wr.rdma.rkey = mr->rkey;
  ibv_send_wr* bad = nullptr;
  ibv_wc wc{};
  const int rc = ibv_post_send(qp, &wr, &bad);
  const bool got = rc == 0 && poll_one(cq, wc);
  said = "post rc " + std::to_string(rc) +
         (got ? std::string(", completion status ") + ibv_wc_status_str(wc.status) +
                    (*dst == *src ? ", data arrived" : ", data missing")
              : std::string(", no completion within 10 s"));
  return got && wc.status == IBV_WC_SUCCESS && wc.wr_id == 2 && *dst == *src;
}

// ---- 1. vendor fields ------------------------------------------------------------------
void check_vendor(Env& env) {
  ibv_device_attr a{};
  int rc = ibv_query_device(env.ctx, &a);
  char seen[160];
  std::snprintf(seen, sizeof seen, "ibv_query_device rc %d, vendor_id 0x%x, vendor_part_id %u, hw_ver %u",
                rc, a.vendor_id, a.vendor_part_id, a.hw_ver);
  check(rc == 0 && a.vendor_id == 0xFFFFFF && a.vendor_part_id == 0 && a.hw_ver == 0,
        "ibv_query_device: vendor_id 0xFFFFFF, vendor_part_id 0, hw_ver 0 (as kernel rxe)",
        std::string(seen) + "; expected rc 0, 0xffffff, 0, 0");
}

// ---- 2. ibv_query_device_ex --------------------------------------------------------------
void check_query_device_ex(Env& env) {
  ibv_device_attr base{};
  ibv_query_device(env.ctx, &base);

  ibv_device_attr_ex ex;
  std::memset(&ex, 0xAB, sizeof ex);
  int rc = ibv_query_device_ex(env.ctx, nullptr, &ex);
  char seen[200];
  std::snprintf(seen, sizeof seen,
                "rc %d, phys_port_cnt_ex %u, orig_attr %s ibv_query_device's, "
                "device_cap_flags_ex 0x%llx (device_cap_flags 0x%x), comp_mask 0x%x, odp general_caps 0x%llx",
                rc, ex.phys_port_cnt_ex,
                std::memcmp(&ex.orig_attr, &base, sizeof base) == 0 ? "equal to" : "differs from",
                static_cast<unsigned long long>(ex.device_cap_flags_ex), base.device_cap_flags,
                ex.comp_mask, static_cast<unsigned long long>(ex.odp_caps.general_caps));
  check(rc == 0 && ex.phys_port_cnt_ex == 1 && std::memcmp(&ex.orig_attr, &base, sizeof base) == 0 &&
            ex.device_cap_flags_ex == base.device_cap_flags && ex.comp_mask == 0 &&
            ex.odp_caps.general_caps == 0 && ex.max_dm_size == 0,
        "ibv_query_device_ex: phys_port_cnt_ex 1, orig_attr as ibv_query_device, extensions zero",
        std::string(seen) + "; expected rc 0, 1, equal, the same flags, 0, 0");

  ibv_query_device_ex_input input{};
  input.comp_mask = 1;
  rc = ibv_query_device_ex(env.ctx, &input, &ex);
  check(rc == EINVAL, "ibv_query_device_ex with an unknown input comp_mask: EINVAL",
        "returned " + errno_text(rc));

  // The op itself, with the sizes an older or a newer caller's struct would have.
  verbs_context* vctx = verbs_get_ctx_op(env.ctx, query_device_ex);
  if (!vctx) {
    fail("verbs_context has a query_device_ex op", "verbs_get_ctx_op(query_device_ex) is NULL");
    return;
  }
  constexpr size_t kSlack = 64;
  std::vector<unsigned char> buf(sizeof(ibv_device_attr_ex) + kSlack);
  auto* attr = reinterpret_cast<ibv_device_attr_ex*>(buf.data());

  std::memset(buf.data(), 0xAB, buf.size());
  rc = vctx->query_device_ex(env.ctx, nullptr, attr, sizeof(ibv_device_attr));
  size_t touched = 0;
  for (size_t i = sizeof(ibv_device_attr); i < buf.size(); ++i) touched += buf[i] != 0xAB;
  check(rc == 0 && std::memcmp(&attr->orig_attr, &base, sizeof base) == 0 && touched == 0,
        "query_device_ex with a struct of orig_attr only: orig_attr filled, nothing written beyond it",
        "rc " + std::to_string(rc) + ", " + std::to_string(touched) +
            " bytes beyond orig_attr changed; expected rc 0 and 0 bytes");

  std::memset(buf.data(), 0xAB, buf.size());
  rc = vctx->query_device_ex(env.ctx, nullptr, attr, buf.size());
  size_t tail_nonzero = 0;
  for (size_t i = sizeof(ibv_device_attr_ex); i < buf.size(); ++i) tail_nonzero += buf[i] != 0;
  check(rc == 0 && attr->phys_port_cnt_ex == 1 && tail_nonzero == 0,
        "query_device_ex with a longer struct than this runtime knows: the rest cleared",
        "rc " + std::to_string(rc) + ", phys_port_cnt_ex " + std::to_string(attr->phys_port_cnt_ex) +
            ", " + std::to_string(tail_nonzero) + " unknown bytes not zero; expected 0, 1, 0");

  std::memset(buf.data(), 0xAB, buf.size());
  rc = vctx->query_device_ex(env.ctx, nullptr, attr, sizeof(ibv_device_attr) - 1);
  size_t changed = 0;
  for (unsigned char b : buf) changed += b != 0xAB;
  check(rc == EINVAL && changed == 0,
        "query_device_ex with a struct shorter than orig_attr: EINVAL, nothing written",
        "rc " + errno_text(rc) + ", " + std::to_string(changed) + " bytes changed; expected EINVAL, 0");
}

// ---- 3. ibv_rereg_mr ---------------------------------------------------------------------
void check_rereg(Env& env) {
  static char buf[4096];
  ibv_mr* mr = ibv_reg_mr(env.pd, buf, sizeof buf, IBV_ACCESS_LOCAL_WRITE);
  if (!mr) {
    fail("ibv_reg_mr for the rereg checks", "errno " + errno_text(errno));
    return;
  }
  const uint32_t lkey = mr->lkey;
  errno = 0;
  int rc = ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_ACCESS, nullptr, nullptr, 0,
                        IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
  int e = errno;
  check(rc == IBV_REREG_MR_ERR_CMD && e == EOPNOTSUPP && mr->lkey == lkey && mr->addr == buf,
        "ibv_rereg_mr: IBV_REREG_MR_ERR_CMD with errno EOPNOTSUPP (rdma-core 44, provider without rereg), MR unchanged",
        "returned " + std::to_string(rc) + " with errno " + errno_text(e) + "; expected " +
            std::to_string(IBV_REREG_MR_ERR_CMD) + " and EOPNOTSUPP");

  struct Bad {
    const char* what;
    int flags;
    void* addr;
    size_t length;
    int access;
  } bad[] = {
      {"an unknown flag (0x8)", 0x8, nullptr, 0, 0},
      {"access flags without IBV_REREG_MR_CHANGE_ACCESS", IBV_REREG_MR_CHANGE_PD, nullptr, 0,
       IBV_ACCESS_LOCAL_WRITE},
      {"IBV_REREG_MR_CHANGE_TRANSLATION without an address", IBV_REREG_MR_CHANGE_TRANSLATION,
       nullptr, 64, 0},
  };
  for (const Bad& b : bad) {
    errno = 0;
    rc = ibv_rereg_mr(mr, b.flags, env.pd, b.addr, b.length, b.access);
    e = errno;
    check(rc == IBV_REREG_MR_ERR_INPUT && e == EINVAL,
          std::string("ibv_rereg_mr with ") + b.what + ": IBV_REREG_MR_ERR_INPUT, EINVAL",
          "returned " + std::to_string(rc) + " with errno " + errno_text(e) + "; expected " +
              std::to_string(IBV_REREG_MR_ERR_INPUT) + " and EINVAL");
  }
  ibv_dereg_mr(mr);
}

// ---- 4. what is not built: EOPNOTSUPP ---------------------------------------------------
void check_not_built(Env& env, ibv_cq* cq) {
  for (ibv_qp_type t : {IBV_QPT_UC, IBV_QPT_UD, IBV_QPT_UC}) {  // UC twice: one note only
    ibv_qp_init_attr init{};
    init.send_cq = cq;
    init.recv_cq = cq;
    init.qp_type = t;
    init.cap.max_send_wr = init.cap.max_recv_wr = 1;
    init.cap.max_send_sge = init.cap.max_recv_sge = 1;
    errno = 0;
    ibv_qp* qp = ibv_create_qp(env.pd, &init);
    int e = errno;
    const char* name = t == IBV_QPT_UC ? "UC" : "UD";
    check(!qp && e == EOPNOTSUPP, std::string("ibv_create_qp of a ") + name + " QP: NULL, EOPNOTSUPP",
          std::string(qp ? "a QP" : "NULL") + " with errno " + errno_text(e));
    if (qp) ibv_destroy_qp(qp);
  }

  ibv_xrcd_init_attr xa{};
  xa.comp_mask = IBV_XRCD_INIT_ATTR_FD | IBV_XRCD_INIT_ATTR_OFLAGS;
  xa.fd = -1;
  xa.oflags = O_CREAT;
  errno = 0;
  ibv_xrcd* xrcd = ibv_open_xrcd(env.ctx, &xa);
  int e = errno;
  check(!xrcd && e == EOPNOTSUPP, "ibv_open_xrcd: NULL, EOPNOTSUPP",
        std::string(xrcd ? "an XRCD" : "NULL") + " with errno " + errno_text(e));

  // IBV_ACCESS_REMOTE_ATOMIC itself is accepted, as rxe and the kernel accept it: a right
  // no request can use here. Without LOCAL_WRITE it is refused, as the IBA says.
  static char buf[64];
  errno = 0;
  ibv_mr* mr = ibv_reg_mr(env.pd, buf, sizeof buf, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_ATOMIC);
  e = errno;
  check(mr != nullptr, "ibv_reg_mr with IBV_ACCESS_REMOTE_ATOMIC and LOCAL_WRITE: registered (as on rxe)",
        "NULL with errno " + errno_text(e));
  if (mr) ibv_dereg_mr(mr);
  errno = 0;
  mr = ibv_reg_mr(env.pd, buf, sizeof buf, IBV_ACCESS_REMOTE_ATOMIC);
  e = errno;
  check(!mr && e == EINVAL, "ibv_reg_mr with IBV_ACCESS_REMOTE_ATOMIC without LOCAL_WRITE: NULL, EINVAL (IBA)",
        std::string(mr ? "an MR" : "NULL") + " with errno " + errno_text(e));
  if (mr) ibv_dereg_mr(mr);
}

// Atomic work requests on a connected QP: refused at post time, the QP still works.
void check_atomic_post(Env& env) {
  ibv_cq* cq = ibv_create_cq(env.ctx, 16, nullptr, nullptr, 0);
  static uint64_t mem[64];
  ibv_mr* mr = ibv_reg_mr(env.pd, mem, sizeof mem,
                          IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC);
  ibv_qp* qp = cq && mr ? make_rc_qp(env, cq) : nullptr;
  if (!qp || to_init(qp) || connect_to_self(env, qp)) {
    fail("a self-connected RC QP for the atomic checks", "setup failed, errno " + errno_text(errno));
    return;
  }
  for (ibv_wr_opcode op : {IBV_WR_ATOMIC_FETCH_AND_ADD, IBV_WR_ATOMIC_CMP_AND_SWP}) {
    ibv_sge sge{reinterpret_cast<uintptr_t>(&mem[0]), 8, mr->lkey};
    ibv_send_wr wr{};
    wr.wr_id = 1;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = op;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.atomic.remote_addr = reinterpret_cast<uintptr_t>(&mem[8]);
    wr.wr.atomic.rkey = mr->rkey;
    wr.wr.atomic.compare_add = 1;
    ibv_send_wr* bad = nullptr;
    int rc = ibv_post_send(qp, &wr, &bad);
    const char* name = op == IBV_WR_ATOMIC_FETCH_AND_ADD ? "IBV_WR_ATOMIC_FETCH_AND_ADD"
                                                         : "IBV_WR_ATOMIC_CMP_AND_SWP";
    check(rc == EOPNOTSUPP && bad == &wr, std::string("ibv_post_send of ") + name + ": EOPNOTSUPP, bad_wr = it",
          "returned " + errno_text(rc) + (bad == &wr ? ", bad_wr = it" : ", bad_wr not it"));
  }
  // The refusal left the QP usable: an RDMA WRITE to itself completes.
  mem[0] = 0x1122334455667788ull;
  std::string said;
  check(write_to_self(qp, cq, mr, &mem[0], &mem[16], said),
        "after the refused atomics, an RDMA WRITE on the same QP completes with the data", said);
  ibv_destroy_qp(qp);
  ibv_dereg_mr(mr);
  ibv_destroy_cq(cq);
}

// ---- 5. ibv_req_notify_cq on a CQ without a channel --------------------------------------
void check_notify_without_channel(Env& env) {
  ibv_cq* cq = ibv_create_cq(env.ctx, 4, nullptr, nullptr, 0);
  if (!cq) {
    fail("ibv_create_cq without a channel", "errno " + errno_text(errno));
    return;
  }
  int rc = ibv_req_notify_cq(cq, 0);
  int rc_solicited = ibv_req_notify_cq(cq, 1);
  check(rc == 0 && rc_solicited == 0, "ibv_req_notify_cq on a CQ without a channel: 0 (as rxe and mlx5)",
        "returned " + errno_text(rc) + " and, solicited only, " + errno_text(rc_solicited));
  ibv_destroy_cq(cq);
}

// ---- 6. CQ events and ibv_destroy_cq ----------------------------------------------------
// A CQ on `ch` with an RC QP in INIT, one RECV posted and the CQ armed: moving the QP to
// ERROR flushes the RECV, and that completion raises the CQ's event.
struct EventSource {
  ibv_cq* cq = nullptr;
  ibv_qp* qp = nullptr;
};
bool make_source(Env& env, ibv_comp_channel* ch, ibv_mr* mr, EventSource& s) {
  s.cq = ibv_create_cq(env.ctx, 16, nullptr, ch, 0);
  s.qp = s.cq ? make_rc_qp(env, s.cq) : nullptr;
  return s.qp && to_init(s.qp) == 0 && post_one_recv(s.qp, mr) == 0 && ibv_req_notify_cq(s.cq, 0) == 0;
}
bool fire(EventSource& s) { return to_error(s.qp) == 0; }

void check_destroy_with_pending_event(Env& env, ibv_mr* mr) {
  const std::string name =
      "ibv_destroy_cq with its event still in the channel: returns, the event is dropped";
  ibv_comp_channel* ch = ibv_create_comp_channel(env.ctx);
  EventSource s;
  if (!ch || !make_source(env, ch, mr, s) || !fire(s)) {
    fail(name, "setup failed, errno " + errno_text(errno));
    return;
  }
  if (!channel_readable(ch, 10000)) {
    fail(name, "no event on the channel within 10 s after the flush completion");
    return;
  }
  ibv_destroy_qp(s.qp);
  int rc = bounded(name, [&] { return ibv_destroy_cq(s.cq); });
  bool readable = channel_readable(ch, 0);
  int fl = fcntl(ch->fd, F_GETFL);
  fcntl(ch->fd, F_SETFL, fl | O_NONBLOCK);
  ibv_cq* ev_cq = nullptr;
  void* ev_ctx = nullptr;
  errno = 0;
  int got = ibv_get_cq_event(ch, &ev_cq, &ev_ctx);
  int e = errno;
  int rc_ch = ibv_destroy_comp_channel(ch);
  check(rc == 0 && !readable && got == -1 && e == EAGAIN && rc_ch == 0, name,
        "ibv_destroy_cq " + std::to_string(rc) + ", channel fd afterwards " +
            (readable ? "readable" : "not readable") + ", non-blocking ibv_get_cq_event " +
            std::to_string(got) + " errno " + errno_text(e) + ", ibv_destroy_comp_channel " +
            std::to_string(rc_ch) + "; expected 0, not readable, -1 EAGAIN, 0");
}

void check_destroy_waits_for_ack(Env& env, ibv_mr* mr) {
  const std::string name =
      "ibv_destroy_cq waits until the event ibv_get_cq_event returned is acknowledged";
  ibv_comp_channel* ch = ibv_create_comp_channel(env.ctx);
  EventSource s;
  if (!ch || !make_source(env, ch, mr, s) || !fire(s)) {
    fail(name, "setup failed, errno " + errno_text(errno));
    return;
  }
  ibv_cq* ev_cq = nullptr;
  void* ev_ctx = nullptr;
  int got = bounded(name, [&] { return ibv_get_cq_event(ch, &ev_cq, &ev_ctx); });
  if (got != 0 || ev_cq != s.cq) {
    fail(name, "ibv_get_cq_event returned " + std::to_string(got) + (ev_cq == s.cq ? "" : " for another CQ"));
    return;
  }
  ibv_destroy_qp(s.qp);
  auto destroy = std::async(std::launch::async, [&] { return ibv_destroy_cq(s.cq); });
  // Negative check, bounded: with one event unacknowledged the destroy must not return.
  // (Waiting here does not synchronise with anything; it gives a wrong destroy the time
  // to show itself.)
  if (destroy.wait_for(std::chrono::milliseconds(300)) == std::future_status::ready) {
    // The CQ is gone: acknowledging now would write freed memory (what the wait prevents).
    fail(name, "ibv_destroy_cq returned " + std::to_string(destroy.get()) +
                   " with the event unacknowledged; expected it to wait for ibv_ack_cq_events");
    return;
  }
  ibv_ack_cq_events(s.cq, 1);
  if (destroy.wait_for(kStepTimeout) != std::future_status::ready) {
    fail(name, "ibv_destroy_cq did not return within 10 s of the acknowledgement (a hang)");
    std::_Exit(1);
  }
  int rc = destroy.get();
  ibv_destroy_comp_channel(ch);
  check(rc == 0, name, "it waited, then returned " + std::to_string(rc) + "; expected 0");
}

// One thread takes events from a channel (acknowledging each) while the main thread
// raises events on 8 CQs of that channel and destroys the CQs at once, the last raised
// first: taker and destroyer meet in the middle of the queue, so some destroys find their
// event waiting (and drop it) and others find it taken (and wait for its acknowledgement),
// and some meet the taker between seeing the channel readable and taking the event.
// Whatever the interleaving, no call may hang, and an event on another CQ raised
// afterwards must still reach the taker. 100 rounds.
void check_destroy_races_get_event(Env& env, ibv_mr* mr) {
  const std::string name =
      "ibv_destroy_cq racing a thread in ibv_get_cq_event on the same channel: no deadlock, no lost event";
  constexpr int kRounds = 100;
  constexpr int kCqs = 8;
  ibv_comp_channel* ch = ibv_create_comp_channel(env.ctx);
  ibv_cq* last = ch ? ibv_create_cq(env.ctx, 16, nullptr, ch, 0) : nullptr;  // wakes the taker
  ibv_qp* last_qp = last ? make_rc_qp(env, last) : nullptr;
  if (!last_qp || to_init(last_qp) || to_error(last_qp)) {
    fail(name, "setup failed, errno " + errno_text(errno));
    return;
  }
  long taken = 0;
  for (int round = 0; round < kRounds; ++round) {
    EventSource src[kCqs];
    for (EventSource& s : src) {
      if (!make_source(env, ch, mr, s)) {
        fail(name, "round " + std::to_string(round) + ": setup failed, errno " + errno_text(errno));
        return;
      }
    }
    auto taker = std::async(std::launch::async, [&]() -> int {
      int from_sources = 0;
      for (;;) {
        ibv_cq* ev_cq = nullptr;
        void* ev_ctx = nullptr;
        if (ibv_get_cq_event(ch, &ev_cq, &ev_ctx)) return -1;
        ibv_ack_cq_events(ev_cq, 1);  // a destroy of that CQ may be waiting for this
        if (ev_cq == last) return from_sources;
        ++from_sources;
      }
    });
    for (EventSource& s : src) fire(s);
    auto destroyer = std::async(std::launch::async, [&]() -> int {
      for (int k = kCqs - 1; k >= 0; --k) {
        ibv_destroy_qp(src[k].qp);
        if (int rc = ibv_destroy_cq(src[k].cq)) return rc;
      }
      return 0;
    });
    if (destroyer.wait_for(kStepTimeout) != std::future_status::ready) {
      fail(name, "round " + std::to_string(round) + ": ibv_destroy_cq did not return within 10 s (a deadlock)");
      std::_Exit(1);
    }
    int rc = destroyer.get();
    // Wake the taker through the last CQ: arm it, and a RECV posted to its QP in ERROR is
    // flushed at once.
    ibv_req_notify_cq(last, 0);
    post_one_recv(last_qp, mr);
    if (taker.wait_for(kStepTimeout) != std::future_status::ready) {
      fail(name, "round " + std::to_string(round) + ": the thread in ibv_get_cq_event never got the last CQ's event");
      std::_Exit(1);
    }
    int got = taker.get();
    if (rc != 0 || got < 0) {
      fail(name, "round " + std::to_string(round) + ": ibv_destroy_cq " + std::to_string(rc) +
                     ", ibv_get_cq_event " + (got < 0 ? "failed" : "ok"));
      return;
    }
    taken += got;
    ibv_wc wc[4];
    while (ibv_poll_cq(last, 4, wc) > 0) {
    }
  }
  ibv_destroy_qp(last_qp);
  int rc_cq = ibv_destroy_cq(last);
  int rc_ch = ibv_destroy_comp_channel(ch);
  if (check(rc_cq == 0 && rc_ch == 0, name,
            "ibv_destroy_cq " + std::to_string(rc_cq) + ", ibv_destroy_comp_channel " + std::to_string(rc_ch)))
    std::printf("    (%d events raised on CQs destroyed at once: %ld taken by the thread, %ld dropped by the destroy)\n",
                kRounds * kCqs, taken, kRounds * kCqs - taken);
}

// ---- the port's MTU -------------------------------------------------------------------
void check_port_mtu(Env& env) {
  ibv_port_attr pa{};
  int rc = ibv_query_port(env.ctx, 1, &pa);
  // The device's address is a loopback one (127.0.0.x, on lo, MTU 65536): rxe's rule
  // gives the largest IB MTU there.
  const bool loopback = env.gid.raw[12] == 127;
  check(rc == 0 && pa.max_mtu == IBV_MTU_4096 && pa.active_mtu >= IBV_MTU_256 &&
            pa.active_mtu <= IBV_MTU_4096 && (!loopback || pa.active_mtu == IBV_MTU_4096),
        "ibv_query_port: max_mtu 4096, active_mtu that of the interface (4096 on loopback)",
        "rc " + std::to_string(rc) + ", max_mtu enum " + std::to_string(pa.max_mtu) +
            ", active_mtu enum " + std::to_string(pa.active_mtu) + "; expected 0, 5, 5");
}

}  // namespace

// ---- 7. ibv_close_device in a forked child ------------------------------------------------
// fork() copies only the calling thread, so a child has the device's memory but not the
// runtime's engine thread. A child that closes every context (as a program's cleanup or
// an exit path may) must get 0 back at once, and the parent's device must go on working.
void check_close_in_forked_child(Env& env) {
  const std::string name = "ibv_close_device of every context in a forked child: 0, and the parent's QP still works";
  ibv_context* second = ibv_open_device(env.list[0]);
  ibv_cq* cq = ibv_create_cq(env.ctx, 16, nullptr, nullptr, 0);
  static uint64_t mem[32];
  ibv_mr* mr = ibv_reg_mr(env.pd, mem, sizeof mem, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
  ibv_qp* qp = second && cq && mr ? make_rc_qp(env, cq) : nullptr;
  if (!qp || to_init(qp) || connect_to_self(env, qp)) {
    fail(name, "setup failed (second context, CQ, MR or self-connected QP), errno " + errno_text(errno));
    return;
  }
  const pid_t child = fork();
  if (child == 0) {
    alarm(10);  // a close that hangs ends the child by SIGALRM, which the parent reports
    // A thread of the child's own, running across the closes: glibc may give it the
    // memory of a parent's thread, so the copied engine handle can name it, and a close
    // that detached or joined that handle would act on this thread (its join would fail).
    std::atomic<bool> closed{false};
    std::thread own([&closed] {
      while (!closed) usleep(1000);
    });
    const int rc_second = ibv_close_device(second);
    const int rc_first = ibv_close_device(env.ctx);
    closed = true;
    own.join();
    _exit(rc_second == 0 && rc_first == 0 ? 0 : 3);
  }
  int status = 0;
  pid_t done = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  while (child > 0 && (done = waitpid(child, &status, WNOHANG)) == 0 && Clock::now() < deadline)
    usleep(10000);
  if (child > 0 && done == 0) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
  }
  std::string child_said;
  if (child < 0)
    child_said = "fork failed: " + errno_text(errno);
  else if (done < 0)
    child_said = "waitpid failed: " + errno_text(errno);
  else if (done == 0)
    child_said = "the child was still running after 15 s";
  else if (WIFSIGNALED(status))
    child_said = std::string("the child was killed by ") + strsignal(WTERMSIG(status)) +
                 (WTERMSIG(status) == SIGALRM ? " (its ibv_close_device did not return within 10 s)" : "");
  else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    child_said = "an ibv_close_device in the child did not return 0";
  // The parent's engine and socket are untouched: an RDMA WRITE to itself completes.
  mem[0] = 0x0123456789abcdefull;
  std::string said;
  const bool parent_ok = write_to_self(qp, cq, mr, &mem[0], &mem[8], said);
  const int rc_close = ibv_close_device(second);
  check(child_said.empty() && parent_ok && rc_close == 0, name,
        (child_said.empty() ? std::string("the child's closes returned 0") : child_said) +
            "; the parent's WRITE: " + said + "; the parent's close of its second context returned " +
            std::to_string(rc_close));
  ibv_destroy_qp(qp);
  ibv_dereg_mr(mr);
  ibv_destroy_cq(cq);
}

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  Env env;
  int n = 0;
  env.list = ibv_get_device_list(&n);
  if (!env.list || n < 1) {
    std::printf("FAIL no device: ibv_get_device_list gave %d devices, errno %s (run on the runtime: "
                "scripts/userspace-roce.sh -- %s)\n", n, errno_text(errno).c_str(), "uroce_verbs_api_check");
    return 1;
  }
  env.ctx = ibv_open_device(env.list[0]);
  env.pd = env.ctx ? ibv_alloc_pd(env.ctx) : nullptr;
  if (!env.pd || ibv_query_gid(env.ctx, 1, 0, &env.gid)) {
    std::printf("FAIL cannot open %s: errno %s\n", ibv_get_device_name(env.list[0]), errno_text(errno).c_str());
    return 1;
  }
  static char recv_buf[4096];
  ibv_mr* mr = ibv_reg_mr(env.pd, recv_buf, sizeof recv_buf, IBV_ACCESS_LOCAL_WRITE);
  ibv_cq* cq = ibv_create_cq(env.ctx, 16, nullptr, nullptr, 0);
  if (!mr || !cq) {
    std::printf("FAIL setup: ibv_reg_mr or ibv_create_cq failed, errno %s\n", errno_text(errno).c_str());
    return 1;
  }

  check_vendor(env);
  check_query_device_ex(env);
  check_port_mtu(env);
  check_rereg(env);
  check_not_built(env, cq);
  check_atomic_post(env);
  check_notify_without_channel(env);
  check_destroy_with_pending_event(env, mr);
  check_destroy_waits_for_ack(env, mr);
  check_destroy_races_get_event(env, mr);
  check_close_in_forked_child(env);

  ibv_destroy_cq(cq);
  ibv_dereg_mr(mr);
  ibv_dealloc_pd(env.pd);
  ibv_close_device(env.ctx);
  ibv_free_device_list(env.list);
  return api_check::tally();
}
