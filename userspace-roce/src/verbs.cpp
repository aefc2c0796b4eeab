// The libibverbs API this runtime implements: devices, contexts, PDs, MRs, CQs,
// completion channels and RC QPs, with the same symbol versions as rdma-core's
// libibverbs.so.1, so that programs built against Debian's rdma-core run unchanged with
// LD_LIBRARY_PATH pointing here. What is not implemented answers EOPNOTSUPP (or ENOSYS
// for rdma-core's private interface) and says so once on stderr: the calls of their own
// live in stubs.cpp and compat.cpp, work-request opcodes in the transport
// (requester.cpp), and the rest (QP types, access flags, the extended calls reached
// through the verbs_context) here.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <endian.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "runtime.hpp"

// verbs.h turns these names into static inline wrappers; the library defines the real
// functions behind them.
#undef ibv_query_port
#undef ibv_reg_mr
#undef ibv_reg_mr_iova
#undef ibv_get_device_list

using namespace uroce;

namespace uroce {
// The one stderr line per unimplemented request (stubs.cpp).
void tell_not_implemented(const char* what);
}  // namespace uroce

namespace {

// The one device this runtime offers. Like rxe, an InfiniBand-transport CA whose port's
// link layer is Ethernet (that is what RoCE is).
ibv_device g_ibdev = [] {
  ibv_device d{};
  d.node_type = IBV_NODE_CA;
  d.transport_type = IBV_TRANSPORT_IB;
  std::strcpy(d.name, "uroce0");
  std::strcpy(d.dev_name, "uverbs-uroce0");
  std::strcpy(d.dev_path, "/dev/null/uroce0");   // no kernel device behind it
  std::strcpy(d.ibdev_path, "/dev/null/uroce0");
  return d;
}();

constexpr int kMaxQpWr = 16384;
constexpr int kMaxSge = 32;
constexpr int kMaxInline = 1024;
constexpr int kMaxCqe = 65536;

Device* dev_of(ibv_context* c) { return context_of(c)->dev; }

int uroce_query_device_ex(ibv_context* ctx, const ibv_query_device_ex_input* input,
                          ibv_device_attr_ex* attr, size_t size);

// What is not implemented answers as rdma-core's own inline wrappers answer when a
// provider leaves the op out (NULL with errno EOPNOTSUPP, or EOPNOTSUPP returned), and
// says once on stderr what was asked.
template <typename T>
T* refuse_ptr(const char* what) {
  tell_not_implemented(what);
  errno = EOPNOTSUPP;
  return nullptr;
}
int refuse(const char* what) {
  tell_not_implemented(what);
  return EOPNOTSUPP;
}

template <typename F>
int guarded_int(F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  } catch (...) {
    return EIO;
  }
}

template <typename T, typename F>
T* guarded_ptr(F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    errno = ENOMEM;
  } catch (...) {
    errno = EIO;
  }
  return nullptr;
}

void fill_port_attr(const Device& dev, ibv_port_attr& a) {
  a = {};
  a.state = IBV_PORT_ACTIVE;
  a.max_mtu = IBV_MTU_4096;  // RoCE's largest
  a.active_mtu = dev.active_mtu;  // what the interface's MTU allows, set when it was opened
  a.gid_tbl_len = 1;
  a.port_cap_flags = IBV_PORT_CM_SUP;
  a.max_msg_sz = 1u << 31;
  a.pkey_tbl_len = 1;
  a.lid = 0;  // RoCE has no LIDs
  a.max_vl_num = 1;
  a.active_width = 1;   // 1X
  a.active_speed = 32;  // 25 Gb/s: a nominal figure, this is software
  a.phys_state = 5;     // LinkUp
  a.link_layer = IBV_LINK_LAYER_ETHERNET;
}

int uroce_query_port(ibv_context* ctx, uint8_t port, ibv_port_attr* attr, size_t len) {
  if (port != 1) return EINVAL;
  ibv_port_attr a;
  fill_port_attr(*dev_of(ctx), a);
  std::memset(attr, 0, len);
  std::memcpy(attr, &a, std::min(len, sizeof a));
  return 0;
}

// ---- data path ops, reached through ctx->ops by the inline wrappers ---------------------

int uroce_post_send(ibv_qp* ibqp, ibv_send_wr* wr, ibv_send_wr** bad) {
  // An opcode the transport does not implement (atomics, memory windows) is refused
  // there with EOPNOTSUPP and its own stderr note (requester.cpp).
  Qp* qp = reinterpret_cast<Qp*>(ibqp);
  std::lock_guard<std::mutex> l(qp->dev->mu);
  int rc = guarded_int([&] { return qp_post_send(*qp, wr, bad); });
  qp->dev->flush_tx();
  return rc;
}

int uroce_post_recv(ibv_qp* ibqp, ibv_recv_wr* wr, ibv_recv_wr** bad) {
  Qp* qp = reinterpret_cast<Qp*>(ibqp);
  std::lock_guard<std::mutex> l(qp->dev->mu);
  return guarded_int([&] { return qp_post_recv(*qp, wr, bad); });
}

int uroce_post_srq_recv(ibv_srq*, ibv_recv_wr* wr, ibv_recv_wr** bad) {
  if (bad) *bad = wr;
  return EOPNOTSUPP;  // no SRQs
}

int uroce_poll_cq(ibv_cq* ibcq, int n, ibv_wc* wc) {
  Cq* cq = reinterpret_cast<Cq*>(ibcq);
  // The common case of a busy-polling application: nothing there. Checked without the
  // lock, so the poller and the engine delivering completions do not fight over it.
  if (cq->ready.load(std::memory_order_acquire) == 0) {
    // Nothing yet: this thread is spinning anyway, so let it receive packets itself
    // rather than wait for the engine thread to be scheduled (the engine watches the
    // socket too, always: whoever gets the device lock first takes the packets in).
    dev_of(ibcq->context)->poll_progress();
    if (cq->ready.load(std::memory_order_acquire) == 0) return 0;
  }
  std::lock_guard<std::mutex> l(cq->mu);
  int got = 0;
  while (got < n && !cq->entries.empty()) {
    wc[got++] = cq->entries.front();
    cq->entries.pop_front();
  }
  cq->ready.store(static_cast<int>(cq->entries.size()), std::memory_order_release);
  return got;
}

int uroce_req_notify_cq(ibv_cq* ibcq, int solicited_only) {
  Cq* cq = reinterpret_cast<Cq*>(ibcq);
  // A CQ without a channel may be armed too, as on rxe and mlx5 (0 returned): its event
  // has nowhere to go (cq_push raises events only on a channel).
  {
    std::lock_guard<std::mutex> l(cq->mu);
    cq->armed = true;
    cq->solicited_only = solicited_only != 0;
  }
  return 0;
}

// ---- extended calls that are not implemented --------------------------------------------
// <infiniband/verbs.h> reaches these through the verbs_context (ibv_open_xrcd,
// ibv_create_qp_ex, ...) or ibv_context_ops (ibv_alloc_mw). Left NULL, its wrappers would
// fail with the same errno but without a word; filled in, the program's log says what
// it asked for. The calls on objects these would create (destroy, modify, ...) stay
// NULL: no such object can exist.

ibv_xrcd* uroce_open_xrcd(ibv_context*, ibv_xrcd_init_attr*) {
  return refuse_ptr<ibv_xrcd>("ibv_open_xrcd (XRC domains)");
}
ibv_qp* uroce_create_qp_ex(ibv_context*, ibv_qp_init_attr_ex*) {
  return refuse_ptr<ibv_qp>("ibv_create_qp_ex (the extended QP API)");
}
ibv_qp* uroce_open_qp(ibv_context*, ibv_qp_open_attr*) {
  return refuse_ptr<ibv_qp>("ibv_open_qp (shared XRC QPs)");
}
ibv_srq* uroce_create_srq_ex(ibv_context*, ibv_srq_init_attr_ex*) {
  return refuse_ptr<ibv_srq>("ibv_create_srq_ex (SRQs)");
}
ibv_cq_ex* uroce_create_cq_ex(ibv_context*, ibv_cq_init_attr_ex*) {
  return refuse_ptr<ibv_cq_ex>("ibv_create_cq_ex (extended CQs)");
}
int uroce_modify_cq(ibv_cq*, ibv_modify_cq_attr*) { return refuse("ibv_modify_cq (CQ moderation)"); }
int uroce_query_rt_values(ibv_context*, ibv_values_ex*) {
  return refuse("ibv_query_rt_values_ex (the device clock)");
}
ibv_wq* uroce_create_wq(ibv_context*, ibv_wq_init_attr*) {
  return refuse_ptr<ibv_wq>("ibv_create_wq (work queues)");
}
ibv_rwq_ind_table* uroce_create_rwq_ind_table(ibv_context*, ibv_rwq_ind_table_init_attr*) {
  return refuse_ptr<ibv_rwq_ind_table>("ibv_create_rwq_ind_table (RSS)");
}
ibv_flow* uroce_create_flow(ibv_qp*, ibv_flow_attr*) {
  return refuse_ptr<ibv_flow>("ibv_create_flow (flow steering)");
}
ibv_flow_action* uroce_create_flow_action_esp(ibv_context*, ibv_flow_action_esp_attr*) {
  return refuse_ptr<ibv_flow_action>("ibv_create_flow_action_esp (flow actions)");
}
ibv_td* uroce_alloc_td(ibv_context*, ibv_td_init_attr*) {
  return refuse_ptr<ibv_td>("ibv_alloc_td (thread domains)");
}
ibv_pd* uroce_alloc_parent_domain(ibv_context*, ibv_parent_domain_init_attr*) {
  return refuse_ptr<ibv_pd>("ibv_alloc_parent_domain (parent domains)");
}
int uroce_modify_qp_rate_limit(ibv_qp*, ibv_qp_rate_limit_attr*) {
  return refuse("ibv_modify_qp_rate_limit (packet pacing)");
}
ibv_dm* uroce_alloc_dm(ibv_context*, ibv_alloc_dm_attr*) {
  return refuse_ptr<ibv_dm>("ibv_alloc_dm (device memory)");
}
ibv_counters* uroce_create_counters(ibv_context*, ibv_counters_init_attr*) {
  return refuse_ptr<ibv_counters>("ibv_create_counters (counters)");
}
ibv_mr* uroce_alloc_null_mr(ibv_pd*) { return refuse_ptr<ibv_mr>("ibv_alloc_null_mr (null MRs)"); }
int uroce_advise_mr(ibv_pd*, ibv_advise_mr_advice, uint32_t, ibv_sge*, uint32_t) {
  return refuse("ibv_advise_mr (on-demand paging)");
}
ibv_mw* uroce_alloc_mw(ibv_pd*, ibv_mw_type) { return refuse_ptr<ibv_mw>("ibv_alloc_mw (memory windows)"); }

}  // namespace

// ---- devices ---------------------------------------------------------------------------

UROCE_EXPORT ibv_device** UROCE_V1_1(ibv_get_device_list)(int* num) {
  if (num) *num = 0;
  // A UROCE_* value the runtime refused (said on stderr when first read): no list, and
  // EINVAL. rdma-core 44's own ibv_get_device_list returns NULL with ENOSYS when the
  // kernel has no RDMA stack or speaks another uverbs ABI, or with ENOMEM, and an empty
  // list when there is no device; it never sets EINVAL, so EINVAL here can only mean
  // "the verbs library rejected its configuration".
  try {
    if (!Config::get().errors.empty()) {
      errno = EINVAL;
      return nullptr;
    }
  } catch (const std::bad_alloc&) {
    errno = ENOMEM;
    return nullptr;
  }
  auto** list = static_cast<ibv_device**>(std::calloc(2, sizeof(ibv_device*)));
  if (!list) {
    errno = ENOMEM;
    return nullptr;
  }
  list[0] = &g_ibdev;
  if (num) *num = 1;
  return list;
}

UROCE_EXPORT void UROCE_V1_1(ibv_free_device_list)(ibv_device** list) { std::free(list); }

UROCE_EXPORT const char* UROCE_V1_1(ibv_get_device_name)(ibv_device* device) { return device->name; }

UROCE_EXPORT int ibv_get_device_index(ibv_device*) { return 0; }

UROCE_EXPORT __be64 UROCE_V1_1(ibv_get_device_guid)(ibv_device*) {
  // The same value ibv_query_device reports as node_guid (Device::guid).
  return htobe64(0x02005e00000000feull);
}

UROCE_EXPORT ibv_context* UROCE_V1_1(ibv_open_device)(ibv_device* device) {
  if (device != &g_ibdev) {
    errno = ENODEV;
    return nullptr;
  }
  return guarded_ptr<ibv_context>([&]() -> ibv_context* {
    std::string error;
    Device* dev = device_open(error);
    if (!dev) {
      log_line("cannot open uroce0: %s", error.c_str());
      errno = Config::get().errors.empty() ? ENODEV : EINVAL;
      return nullptr;
    }
    auto* c = new Context;
    c->dev = dev;
    c->vctx.sz = sizeof(verbs_context);
    c->vctx.query_port = uroce_query_port;
    c->vctx.query_device_ex = uroce_query_device_ex;
    verbs_context& v = c->vctx;
    v.open_xrcd = uroce_open_xrcd;
    v.create_qp_ex = uroce_create_qp_ex;
    v.open_qp = uroce_open_qp;
    v.create_srq_ex = uroce_create_srq_ex;
    v.create_cq_ex = uroce_create_cq_ex;
    v.modify_cq = uroce_modify_cq;
    v.query_rt_values = uroce_query_rt_values;
    v.create_wq = uroce_create_wq;
    v.create_rwq_ind_table = uroce_create_rwq_ind_table;
    v.ibv_create_flow = uroce_create_flow;
    v.create_flow_action_esp = uroce_create_flow_action_esp;
    v.alloc_td = uroce_alloc_td;
    v.alloc_parent_domain = uroce_alloc_parent_domain;
    v.modify_qp_rate_limit = uroce_modify_qp_rate_limit;
    v.alloc_dm = uroce_alloc_dm;
    v.create_counters = uroce_create_counters;
    v.alloc_null_mr = uroce_alloc_null_mr;
    v.advise_mr = uroce_advise_mr;
    ibv_context& ctx = c->vctx.context;
    ctx.device = device;
    ctx.ops.post_send = uroce_post_send;
    ctx.ops.post_recv = uroce_post_recv;
    ctx.ops.post_srq_recv = uroce_post_srq_recv;
    ctx.ops.poll_cq = uroce_poll_cq;
    ctx.ops.req_notify_cq = uroce_req_notify_cq;
    ctx.ops.alloc_mw = uroce_alloc_mw;
    ctx.cmd_fd = -1;
    // Asynchronous events: the runtime raises IBV_EVENT_CQ_ERR when a CQ overruns
    // (raise_async_event); transport errors are reported through completions.
    ctx.async_fd = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE);
    ctx.num_comp_vectors = 1;
    pthread_mutex_init(&ctx.mutex, nullptr);
    ctx.abi_compat = __VERBS_ABI_IS_EXTENDED;  // tells verbs.h this is a verbs_context
    return &ctx;
  });
}

UROCE_EXPORT int UROCE_V1_1(ibv_close_device)(ibv_context* ctx) {
  Context* c = context_of(ctx);
  close(ctx->async_fd);
  pthread_mutex_destroy(&ctx->mutex);
  device_close(c->dev);
  delete c;
  return 0;
}

UROCE_EXPORT int UROCE_V1_1(ibv_query_device)(ibv_context* ctx, ibv_device_attr* a) {
  Device* dev = dev_of(ctx);
  *a = {};
  std::strcpy(a->fw_ver, "userspace-roce 1.0");
  a->node_guid = dev->guid();
  a->sys_image_guid = dev->guid();
  a->max_mr_size = 1ull << 40;
  a->page_size_cap = 4096;
  // Kernel rxe's vendor fields: vendor_id 0xFFFFFF (RXE_VENDOR_ID in rxe_param.h, which
  // cites IBTA v1.4 A3.3.1, vendor information), vendor_part_id and hw_ver left 0.
  a->vendor_id = 0xFFFFFF;
  a->vendor_part_id = 0;
  a->hw_ver = 0;
  a->max_qp = 4096;
  a->max_qp_wr = kMaxQpWr;
  a->device_cap_flags = IBV_DEVICE_RC_RNR_NAK_GEN;
  a->max_sge = kMaxSge;
  a->max_sge_rd = kMaxSge;
  a->max_cq = 4096;
  a->max_cqe = kMaxCqe;
  a->max_mr = 65536;
  a->max_pd = 4096;
  a->max_qp_rd_atom = 16;
  a->max_qp_init_rd_atom = 16;
  a->max_res_rd_atom = 16 * 4096;
  a->atomic_cap = IBV_ATOMIC_NONE;  // atomics are not implemented
  a->max_pkeys = 1;
  a->phys_port_cnt = 1;
  return 0;
}

namespace {

// verbs_context::query_device_ex, behind ibv_query_device_ex. `size` is the caller's
// sizeof(struct ibv_device_attr_ex): an older program's is shorter, a newer one's longer.
// As with rdma-core's own implementation, a struct too short for orig_attr is EINVAL,
// and every byte of the caller's struct is cleared before the answer is copied in as far
// as the caller's struct reaches.
int uroce_query_device_ex(ibv_context* ctx, const ibv_query_device_ex_input* input,
                          ibv_device_attr_ex* attr, size_t size) {
  if (input && input->comp_mask) return EINVAL;
  if (size < sizeof attr->orig_attr) return EINVAL;
  ibv_device_attr_ex a{};
  if (int rc = UROCE_V1_1(ibv_query_device)(ctx, &a.orig_attr)) return rc;
  // Everything the extension adds (ODP, timestamps, TSO, RSS, packet pacing, tag
  // matching, CQ moderation, device memory, PCI atomics) is absent here: zero. The
  // extended capability flags repeat the basic ones.
  a.device_cap_flags_ex = a.orig_attr.device_cap_flags;
  a.phys_port_cnt_ex = a.orig_attr.phys_port_cnt;
  std::memset(attr, 0, size);
  std::memcpy(attr, &a, std::min(size, sizeof a));
  return 0;
}

}  // namespace

UROCE_EXPORT int UROCE_V1_1(ibv_query_port)(ibv_context* ctx, uint8_t port, _compat_ibv_port_attr* attr) {
  // The exported symbol takes rdma-core's older, shorter struct (up to `flags`); new
  // callers reach uroce_query_port through the verbs_context instead.
  ibv_port_attr a;
  if (int rc = uroce_query_port(ctx, port, &a, sizeof a)) return rc;
  std::memcpy(static_cast<void*>(attr), &a, offsetof(ibv_port_attr, port_cap_flags2));
  return 0;
}

UROCE_EXPORT int UROCE_V1_1(ibv_query_gid)(ibv_context* ctx, uint8_t port, int index, ibv_gid* gid) {
  if (port != 1 || index != 0) {
    errno = EINVAL;
    return -1;
  }
  *gid = dev_of(ctx)->gid();
  return 0;
}

UROCE_EXPORT int _ibv_query_gid_ex(ibv_context* ctx, uint32_t port, uint32_t index,
                                   ibv_gid_entry* entry, uint32_t flags, size_t size) {
  if (flags) return EINVAL;
  if (port != 1) return EINVAL;
  if (index != 0) return ENODATA;  // an empty GID table slot
  ibv_gid_entry e{};
  e.gid = dev_of(ctx)->gid();
  e.gid_index = 0;
  e.port_num = 1;
  e.gid_type = IBV_GID_TYPE_ROCE_V2;
  e.ndev_ifindex = dev_of(ctx)->ifindex;  // the interface holding the device's address
  std::memset(entry, 0, size);
  std::memcpy(entry, &e, std::min(size, sizeof e));
  return 0;
}

UROCE_EXPORT ssize_t _ibv_query_gid_table(ibv_context* ctx, ibv_gid_entry* entries,
                                          size_t max, uint32_t flags, size_t size) {
  if (flags) return -EINVAL;
  if (max < 1) return -EINVAL;
  int rc = _ibv_query_gid_ex(ctx, 1, 0, entries, 0, size);
  return rc ? -rc : 1;
}

// In rdma-core's private (driver) interface, but ibv_devinfo imports it.
enum uroce_gid_type_sysfs { kGidTypeSysfsIbRoceV1 = 0, kGidTypeSysfsRoceV2 = 1 };
UROCE_EXPORT int ibv_query_gid_type(ibv_context*, uint8_t port, unsigned int index,
                                    uroce_gid_type_sysfs* type) {
  if (port != 1 || index != 0) {
    errno = EINVAL;
    return -1;
  }
  *type = kGidTypeSysfsRoceV2;
  return 0;
}

UROCE_EXPORT int UROCE_V1_1(ibv_query_pkey)(ibv_context*, uint8_t port, int index, __be16* pkey) {
  if (port != 1 || index != 0) {
    errno = EINVAL;
    return -1;
  }
  *pkey = htobe16(wire::kDefaultPkey);
  return 0;
}

UROCE_EXPORT int ibv_get_pkey_index(ibv_context*, uint8_t port, __be16 pkey) {
  if (port == 1 && be16toh(pkey) == wire::kDefaultPkey) return 0;
  errno = ENOENT;
  return -1;
}

// ---- protection domains and memory regions ---------------------------------------------

UROCE_EXPORT ibv_pd* UROCE_V1_1(ibv_alloc_pd)(ibv_context* ctx) {
  return guarded_ptr<ibv_pd>([&] {
    auto* pd = new Pd;
    pd->ibv.context = ctx;
    static uint32_t handles = 0;
    std::lock_guard<std::mutex> l(dev_of(ctx)->mu);
    pd->ibv.handle = ++handles;
    return &pd->ibv;
  });
}

UROCE_EXPORT int UROCE_V1_1(ibv_dealloc_pd)(ibv_pd* ibpd) {
  Pd* pd = reinterpret_cast<Pd*>(ibpd);
  {
    std::lock_guard<std::mutex> l(dev_of(ibpd->context)->mu);
    if (pd->refs) return EBUSY;  // MRs or QPs still use it
  }
  delete pd;
  return 0;
}

UROCE_EXPORT ibv_mr* ibv_reg_mr_iova2(ibv_pd* ibpd, void* addr, size_t length, uint64_t iova,
                                      unsigned int access) {
  // IBA: remote write or atomic access requires local write access. Checked first, as
  // the kernel's ib_check_mr_access does.
  if ((access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) &&
      !(access & IBV_ACCESS_LOCAL_WRITE)) {
    errno = EINVAL;
    return nullptr;
  }
  // IBV_ACCESS_REMOTE_ATOMIC is accepted, as rxe accepts it and the kernel's
  // ib_check_mr_access does (which does not compare it with the device's atomic_cap):
  // here it grants a right nothing can use (atomic_cap is IBV_ATOMIC_NONE, ibv_post_send
  // refuses atomic work requests, and the responder answers an atomic request with "NAK
  // invalid request"), and programs that ask for it by habit still run.
  constexpr unsigned kKnown = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                              IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC |
                              IBV_ACCESS_RELAXED_ORDERING;
  if (access & ~kKnown) {  // memory windows, zero-based, on-demand paging...
    char what[160];
    std::snprintf(what, sizeof what,
                  "ibv_reg_mr with access flags 0x%x (implemented: LOCAL_WRITE, REMOTE_WRITE, "
                  "REMOTE_READ, REMOTE_ATOMIC, RELAXED_ORDERING)", access & ~kKnown);
    return refuse_ptr<ibv_mr>(what);
  }
  if (!addr && length) {
    errno = EINVAL;
    return nullptr;
  }
  Device* dev = dev_of(ibpd->context);
  return guarded_ptr<ibv_mr>([&] {
    auto* mr = new Mr;
    mr->pd = reinterpret_cast<Pd*>(ibpd);
    mr->access = static_cast<int>(access);
    mr->iova = iova;
    mr->ibv.context = ibpd->context;
    mr->ibv.pd = ibpd;
    mr->ibv.addr = addr;
    mr->ibv.length = length;
    std::lock_guard<std::mutex> l(dev->mu);
    // Keys look like a device's: an index in the high 24 bits, a varying low byte, so a
    // stale key from a deregistered region does not silently match a new one.
    uint32_t key = 0;
    do {
      const uint32_t index = dev->next_mr_index++;
      key = (index & 0xFFFFFF) << 8 | ((index * 37u + 0x5A) & 0xFF);
    } while (key == 0 || dev->mrs.count(key));
    mr->ibv.lkey = mr->ibv.rkey = key;
    mr->ibv.handle = key;
    dev->mrs[key] = mr;
    mr->pd->refs++;
    return &mr->ibv;
  });
}

UROCE_EXPORT ibv_mr* UROCE_V1_1(ibv_reg_mr)(ibv_pd* pd, void* addr, size_t length, int access) {
  return ibv_reg_mr_iova2(pd, addr, length, reinterpret_cast<uintptr_t>(addr),
                          static_cast<unsigned>(access));
}

UROCE_EXPORT ibv_mr* ibv_reg_mr_iova(ibv_pd* pd, void* addr, size_t length, uint64_t iova,
                                     int access) {
  return ibv_reg_mr_iova2(pd, addr, length, iova, static_cast<unsigned>(access));
}

UROCE_EXPORT int UROCE_V1_1(ibv_dereg_mr)(ibv_mr* ibmr) {
  Mr* mr = reinterpret_cast<Mr*>(ibmr);
  Device* dev = dev_of(ibmr->context);
  {
    std::lock_guard<std::mutex> l(dev->mu);
    dev->mrs.erase(ibmr->lkey);
    mr->pd->refs--;
  }
  delete mr;
  return 0;
}

// ---- completion channels and CQs -------------------------------------------------------

namespace {

// Takes back one count of the channel's eventfd for an event being removed from
// `events`. Called with Channel::mu held, where the counter equals events.size() (see
// Channel) and is therefore at least 1: the read returns at once, whatever the fd's
// O_NONBLOCK says.
void take_event_count(Channel& ch) {
  uint64_t v;
  while (read(ch.ibv.fd, &v, sizeof v) < 0 && errno == EINTR) {
  }
}

// How long ibv_destroy_cq waits for unacknowledged events before it says so on stderr
// (it goes on waiting after that, as rdma-core's does).
constexpr int kAckWaitNoteSeconds = 10;

// rdma-core's ibv_destroy_cq waits until ibv_ack_cq_events has acknowledged every event
// ibv_get_cq_event returned for the CQ, so that no acknowledgement can reach freed memory.
void wait_for_acks(Cq& cq) {
  timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);  // ibv.cond runs on this clock (create_cq)
  deadline.tv_sec += kAckWaitNoteSeconds;
  bool said = false;
  pthread_mutex_lock(&cq.ibv.mutex);
  while (cq.ibv.comp_events_completed != cq.events_reported) {
    if (said) {
      pthread_cond_wait(&cq.ibv.cond, &cq.ibv.mutex);
    } else if (pthread_cond_timedwait(&cq.ibv.cond, &cq.ibv.mutex, &deadline) == ETIMEDOUT) {
      log_line("ibv_destroy_cq has waited %d s: ibv_get_cq_event returned %u completion "
               "events of this CQ and ibv_ack_cq_events has acknowledged %u; it returns once "
               "the two agree (acknowledge every event taken before destroying its CQ)",
               kAckWaitNoteSeconds, cq.events_reported, cq.ibv.comp_events_completed);
      said = true;
    }
  }
  pthread_mutex_unlock(&cq.ibv.mutex);
}

}  // namespace

UROCE_EXPORT ibv_comp_channel* ibv_create_comp_channel(ibv_context* ctx) {
  return guarded_ptr<ibv_comp_channel>([&]() -> ibv_comp_channel* {
    auto* ch = new Channel;
    ch->ibv.context = ctx;
    // One count per waiting event (cq_push adds one; a read takes one: EFD_SEMAPHORE), so
    // poll() on the fd says "an event is waiting", as on the kernel's completion-event
    // file. Only this library reads it (see Channel).
    ch->ibv.fd = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE);
    if (ch->ibv.fd < 0) {
      delete ch;
      return nullptr;
    }
    return &ch->ibv;
  });
}

UROCE_EXPORT int ibv_destroy_comp_channel(ibv_comp_channel* ibch) {
  Channel* ch = reinterpret_cast<Channel*>(ibch);
  {
    std::lock_guard<std::mutex> l(dev_of(ibch->context)->mu);
    if (ch->refs) {
      errno = EBUSY;
      return -1;
    }
  }
  close(ibch->fd);
  delete ch;
  return 0;
}

UROCE_EXPORT ibv_cq* UROCE_V1_1(ibv_create_cq)(ibv_context* ctx, int cqe, void* cq_context,
                                   ibv_comp_channel* channel, int comp_vector) {
  if (cqe < 1 || cqe > kMaxCqe || comp_vector != 0) {
    errno = EINVAL;
    return nullptr;
  }
  return guarded_ptr<ibv_cq>([&] {
    auto* cq = new Cq;
    cq->ibv.context = ctx;
    cq->ibv.channel = channel;
    cq->ibv.cq_context = cq_context;
    cq->ibv.cqe = cqe;
    cq->capacity = cqe;
    pthread_mutex_init(&cq->ibv.mutex, nullptr);
    // ibv_ack_cq_events signals it; ibv_destroy_cq waits on it with a deadline on the
    // monotonic clock (wait_for_acks).
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cq->ibv.cond, &ca);
    pthread_condattr_destroy(&ca);
    cq->channel = reinterpret_cast<Channel*>(channel);
    if (channel) {
      std::lock_guard<std::mutex> l(dev_of(ctx)->mu);
      cq->channel->refs++;
    }
    return &cq->ibv;
  });
}

UROCE_EXPORT int UROCE_V1_1(ibv_destroy_cq)(ibv_cq* ibcq) {
  Cq* cq = reinterpret_cast<Cq*>(ibcq);
  Device* dev = dev_of(ibcq->context);
  {
    std::lock_guard<std::mutex> l(dev->mu);
    if (cq->qp_refs) return EBUSY;
    // No QP uses it any more, so nothing completes into it from here on.
    if (cq->channel) {
      cq->channel->refs--;
      // As the kernel does when a CQ is destroyed: its events still waiting on the
      // channel are dropped; ibv_get_cq_event never returns them, so they need no
      // acknowledgement.
      std::lock_guard<std::mutex> c(cq->channel->mu);
      auto& ev = cq->channel->events;
      for (auto it = ev.begin(); it != ev.end();) {
        if (*it == cq) {
          it = ev.erase(it);
          take_event_count(*cq->channel);
        } else {
          ++it;
        }
      }
    }
  }
  // No lock held: an acknowledging thread must be able to run.
  wait_for_acks(*cq);
  pthread_mutex_destroy(&ibcq->mutex);
  pthread_cond_destroy(&ibcq->cond);
  delete cq;
  return 0;
}

UROCE_EXPORT int UROCE_V1_1(ibv_resize_cq)(ibv_cq*, int) { return refuse("ibv_resize_cq"); }

UROCE_EXPORT int UROCE_V1_1(ibv_get_cq_event)(ibv_comp_channel* ibch, ibv_cq** cq, void** cq_context) {
  Channel* ch = reinterpret_cast<Channel*>(ibch);
  for (;;) {
    {
      std::lock_guard<std::mutex> l(ch->mu);
      if (!ch->events.empty()) {
        Cq* c = ch->events.front();
        ch->events.pop_front();
        take_event_count(*ch);
        // Counted before the lock is let go, so that ibv_destroy_cq, which drops the
        // CQ's waiting events under the same lock, knows every event it must wait for.
        pthread_mutex_lock(&c->ibv.mutex);
        ++c->events_reported;
        pthread_mutex_unlock(&c->ibv.mutex);
        *cq = &c->ibv;
        *cq_context = c->ibv.cq_context;
        return 0;
      }
    }
    // Nothing waiting. Like a read of the kernel's event file: EAGAIN if the application
    // made the fd non-blocking, else sleep until an event comes (the fd becomes readable;
    // another thread may take that event first, and then this one sleeps again).
    const int flags = fcntl(ibch->fd, F_GETFL);
    if (flags < 0) return -1;
    if (flags & O_NONBLOCK) {
      errno = EAGAIN;
      return -1;
    }
    pollfd p{ibch->fd, POLLIN, 0};
    if (poll(&p, 1, -1) < 0 && errno != EINTR) return -1;
  }
}

UROCE_EXPORT void UROCE_V1_1(ibv_ack_cq_events)(ibv_cq* cq, unsigned int nevents) {
  pthread_mutex_lock(&cq->mutex);
  cq->comp_events_completed += nevents;
  pthread_cond_signal(&cq->cond);
  pthread_mutex_unlock(&cq->mutex);
}

// ---- queue pairs -----------------------------------------------------------------------

UROCE_EXPORT ibv_qp* UROCE_V1_1(ibv_create_qp)(ibv_pd* ibpd, ibv_qp_init_attr* init) {
  // Only reliable connected QPs are implemented.
  switch (init->qp_type) {
    case IBV_QPT_RC: break;
    case IBV_QPT_UC: return refuse_ptr<ibv_qp>("ibv_create_qp of a UC QP (unreliable connected)");
    case IBV_QPT_UD: return refuse_ptr<ibv_qp>("ibv_create_qp of a UD QP (unreliable datagram)");
    case IBV_QPT_RAW_PACKET: return refuse_ptr<ibv_qp>("ibv_create_qp of a raw packet QP");
    case IBV_QPT_XRC_SEND:
    case IBV_QPT_XRC_RECV: return refuse_ptr<ibv_qp>("ibv_create_qp of an XRC QP");
    default: {  // IBV_QPT_DRIVER (a provider's own kind) or a value verbs.h does not define
      char what[64];
      std::snprintf(what, sizeof what, "ibv_create_qp of QP type %d", static_cast<int>(init->qp_type));
      return refuse_ptr<ibv_qp>(what);
    }
  }
  if (init->srq) return refuse_ptr<ibv_qp>("ibv_create_qp with an SRQ (shared receive queues)");
  const ibv_qp_cap& c = init->cap;
  if (!init->send_cq || !init->recv_cq || c.max_send_wr > kMaxQpWr ||
      c.max_recv_wr > kMaxQpWr || c.max_send_sge > kMaxSge || c.max_recv_sge > kMaxSge ||
      c.max_inline_data > kMaxInline) {
    errno = EINVAL;
    return nullptr;
  }
  Device* dev = dev_of(ibpd->context);
  return guarded_ptr<ibv_qp>([&] {
    auto* qp = new Qp;
    qp->dev = dev;
    qp->pd = reinterpret_cast<Pd*>(ibpd);
    qp->send_cq = reinterpret_cast<Cq*>(init->send_cq);
    qp->recv_cq = reinterpret_cast<Cq*>(init->recv_cq);
    qp->cap = c;
    qp->cap.max_send_wr = std::max(1u, c.max_send_wr);
    qp->cap.max_recv_wr = std::max(1u, c.max_recv_wr);
    // A send WQE holds either its SGEs (16 bytes each) or its inline bytes, so each grants
    // the other, as rxe does (rxe_qp.c, rxe_qp_init_req): asking for 1 SGE and no inline
    // data still gets 16 inline bytes (rdma_xclient posts 16 inline bytes on such a QP).
    const uint32_t wqe_bytes = std::max(std::max(1u, c.max_send_sge) * 16u, c.max_inline_data);
    qp->cap.max_send_sge = std::min<uint32_t>(kMaxSge, wqe_bytes / 16u);
    qp->cap.max_inline_data = wqe_bytes;
    qp->cap.max_recv_sge = std::max(1u, c.max_recv_sge);
    qp->sq_sig_all = init->sq_sig_all != 0;
    init->cap = qp->cap;  // report what was granted, as a device does
    ibv_qp& q = qp->ibv;
    q.context = ibpd->context;
    q.qp_context = init->qp_context;
    q.pd = ibpd;
    q.send_cq = init->send_cq;
    q.recv_cq = init->recv_cq;
    q.qp_type = IBV_QPT_RC;
    q.state = IBV_QPS_RESET;
    pthread_mutex_init(&q.mutex, nullptr);
    pthread_cond_init(&q.cond, nullptr);
    std::lock_guard<std::mutex> l(dev->mu);
    while (dev->qps.count(dev->next_qpn)) dev->next_qpn = (dev->next_qpn + 1) & wire::kPsnMask;
    q.qp_num = dev->next_qpn;
    q.handle = q.qp_num;
    dev->next_qpn = (dev->next_qpn + 1) & wire::kPsnMask;
    if (dev->next_qpn < 0x11) dev->next_qpn = 0x11;  // QPs 0 and 1 are special in IB
    dev->qps[q.qp_num] = qp;
    qp->pd->refs++;
    qp->send_cq->qp_refs++;
    qp->recv_cq->qp_refs++;
    return &q;
  });
}

UROCE_EXPORT int UROCE_V1_1(ibv_modify_qp)(ibv_qp* ibqp, ibv_qp_attr* attr, int mask) {
  Qp* qp = reinterpret_cast<Qp*>(ibqp);
  std::lock_guard<std::mutex> l(qp->dev->mu);
  int rc = guarded_int([&] { return qp_modify(*qp, *attr, mask); });
  qp->dev->flush_tx();
  return rc;
}

UROCE_EXPORT int UROCE_V1_1(ibv_query_qp)(ibv_qp* ibqp, ibv_qp_attr* a, int, ibv_qp_init_attr* init) {
  Qp* qp = reinterpret_cast<Qp*>(ibqp);
  std::lock_guard<std::mutex> l(qp->dev->mu);
  *a = {};
  a->qp_state = qp->state;
  a->cur_qp_state = qp->state;
  a->path_mtu = qp->path_mtu;
  a->qp_access_flags = qp->access_flags;
  a->pkey_index = qp->pkey_index;
  a->port_num = qp->port;
  a->ah_attr = qp->ah;
  a->dest_qp_num = qp->dest_qpn;
  a->rq_psn = qp->rq_psn;
  a->sq_psn = qp->sq_psn;
  a->max_dest_rd_atomic = qp->max_dest_rd_atomic;
  a->max_rd_atomic = qp->max_rd_atomic;
  a->min_rnr_timer = qp->min_rnr_timer;
  a->timeout = qp->timeout;
  a->retry_cnt = qp->retry_cnt;
  a->rnr_retry = qp->rnr_retry;
  a->cap = qp->cap;
  a->path_mig_state = IBV_MIG_MIGRATED;
  if (init) {
    *init = {};
    init->qp_context = ibqp->qp_context;
    init->send_cq = ibqp->send_cq;
    init->recv_cq = ibqp->recv_cq;
    init->cap = qp->cap;
    init->qp_type = IBV_QPT_RC;
    init->sq_sig_all = qp->sq_sig_all;
  }
  return 0;
}

UROCE_EXPORT int UROCE_V1_1(ibv_destroy_qp)(ibv_qp* ibqp) {
  Qp* qp = reinterpret_cast<Qp*>(ibqp);
  {
    std::lock_guard<std::mutex> l(qp->dev->mu);
    qp_send_delayed_ack(*qp);  // the peer gets the ACK its last messages earned
    qp->dev->flush_tx();
    qp->dev->qps.erase(ibqp->qp_num);
    qp->pd->refs--;
    qp->send_cq->qp_refs--;
    qp->recv_cq->qp_refs--;
  }
  pthread_mutex_destroy(&ibqp->mutex);
  pthread_cond_destroy(&ibqp->cond);
  delete qp;
  return 0;
}

// ---- asynchronous events ---------------------------------------------------------------

UROCE_EXPORT int UROCE_V1_1(ibv_get_async_event)(ibv_context* ctx, ibv_async_event* event) {
  uint64_t v;
  // Blocks while no event is queued (unless the application made the fd non-blocking:
  // then EAGAIN), as on any device; each event counts 1 in the semaphore eventfd.
  if (read(ctx->async_fd, &v, sizeof v) < 0) return -1;
  Context* c = context_of(ctx);
  std::lock_guard<std::mutex> l(c->async_mu);
  if (c->async_events.empty()) {
    *event = {};
    errno = EIO;
    return -1;
  }
  *event = c->async_events.front();
  c->async_events.pop_front();
  return 0;
}

UROCE_EXPORT void UROCE_V1_1(ibv_ack_async_event)(ibv_async_event*) {}

// ---- fork support: nothing is pinned, so fork needs no help ----------------------------

UROCE_EXPORT int ibv_fork_init(void) { return 0; }
UROCE_EXPORT ibv_fork_status ibv_is_fork_initialized(void) { return IBV_FORK_UNNEEDED; }
UROCE_EXPORT int ibv_dontfork_range(void*, size_t) { return 0; }
UROCE_EXPORT int ibv_dofork_range(void*, size_t) { return 0; }

// ---- strings and rates -----------------------------------------------------------------

UROCE_EXPORT const char* ibv_node_type_str(ibv_node_type t) {
  switch (t) {
    case IBV_NODE_CA: return "InfiniBand channel adapter";
    case IBV_NODE_SWITCH: return "InfiniBand switch";
    case IBV_NODE_ROUTER: return "InfiniBand router";
    case IBV_NODE_RNIC: return "iWARP NIC";
    case IBV_NODE_USNIC: return "usNIC";
    case IBV_NODE_USNIC_UDP: return "usNIC UDP";
    case IBV_NODE_UNSPECIFIED: return "unspecified";
    default: return "unknown";
  }
}

UROCE_EXPORT const char* ibv_port_state_str(ibv_port_state s) {
  static const char* const names[] = {"PORT_NOP", "PORT_DOWN", "PORT_INIT", "PORT_ARMED",
                                      "PORT_ACTIVE", "PORT_ACTIVE_DEFER"};
  return s >= 0 && s < static_cast<int>(std::size(names)) ? names[s] : "unknown";
}

UROCE_EXPORT const char* ibv_event_type_str(ibv_event_type e) {
  static const char* const names[] = {
      "CQ error", "local work queue catastrophic error", "invalid request local work queue error",
      "local access violation work queue error", "communication established",
      "send queue drained", "path migrated", "path migration request error",
      "local catastrophic error", "port active", "port error", "LID change", "P_Key change",
      "SM change", "SRQ catastrophic error", "SRQ limit reached", "last WQE reached",
      "client reregistration", "GID table change", "WQ fatal"};
  return e >= 0 && e < static_cast<int>(std::size(names)) ? names[e] : "unknown";
}

UROCE_EXPORT const char* ibv_wc_status_str(ibv_wc_status s) { return uroce::wc_status_text(s); }

UROCE_EXPORT int ibv_rate_to_mult(ibv_rate rate) {
  switch (rate) {
    case IBV_RATE_2_5_GBPS: return 1;
    case IBV_RATE_5_GBPS: return 2;
    case IBV_RATE_10_GBPS: return 4;
    case IBV_RATE_20_GBPS: return 8;
    case IBV_RATE_30_GBPS: return 12;
    case IBV_RATE_40_GBPS: return 16;
    case IBV_RATE_60_GBPS: return 24;
    case IBV_RATE_80_GBPS: return 32;
    case IBV_RATE_120_GBPS: return 48;
    default: return -1;
  }
}

UROCE_EXPORT ibv_rate mult_to_ibv_rate(int mult) {
  switch (mult) {
    case 1: return IBV_RATE_2_5_GBPS;
    case 2: return IBV_RATE_5_GBPS;
    case 4: return IBV_RATE_10_GBPS;
    case 8: return IBV_RATE_20_GBPS;
    case 12: return IBV_RATE_30_GBPS;
    case 16: return IBV_RATE_40_GBPS;
    case 24: return IBV_RATE_60_GBPS;
    case 32: return IBV_RATE_80_GBPS;
    case 48: return IBV_RATE_120_GBPS;
    default: return IBV_RATE_MAX;
  }
}

UROCE_EXPORT int ibv_rate_to_mbps(ibv_rate rate) {
  static const struct { ibv_rate r; int mbps; } table[] = {
      {IBV_RATE_2_5_GBPS, 2500},  {IBV_RATE_5_GBPS, 5000},     {IBV_RATE_10_GBPS, 10000},
      {IBV_RATE_20_GBPS, 20000},  {IBV_RATE_30_GBPS, 30000},   {IBV_RATE_40_GBPS, 40000},
      {IBV_RATE_60_GBPS, 60000},  {IBV_RATE_80_GBPS, 80000},   {IBV_RATE_120_GBPS, 120000},
      {IBV_RATE_14_GBPS, 14062},  {IBV_RATE_56_GBPS, 56250},   {IBV_RATE_112_GBPS, 112500},
      {IBV_RATE_168_GBPS, 168750}, {IBV_RATE_25_GBPS, 25781},  {IBV_RATE_100_GBPS, 103125},
      {IBV_RATE_200_GBPS, 206250}, {IBV_RATE_300_GBPS, 309375}, {IBV_RATE_28_GBPS, 28125},
      {IBV_RATE_50_GBPS, 53125},  {IBV_RATE_400_GBPS, 425000}, {IBV_RATE_600_GBPS, 637500}};
  for (const auto& e : table)
    if (e.r == rate) return e.mbps;
  return -1;
}

UROCE_EXPORT ibv_rate mbps_to_ibv_rate(int mbps) {
  static const ibv_rate all[] = {
      IBV_RATE_2_5_GBPS, IBV_RATE_5_GBPS,   IBV_RATE_10_GBPS,  IBV_RATE_20_GBPS,
      IBV_RATE_30_GBPS,  IBV_RATE_40_GBPS,  IBV_RATE_60_GBPS,  IBV_RATE_80_GBPS,
      IBV_RATE_120_GBPS, IBV_RATE_14_GBPS,  IBV_RATE_56_GBPS,  IBV_RATE_112_GBPS,
      IBV_RATE_168_GBPS, IBV_RATE_25_GBPS,  IBV_RATE_100_GBPS, IBV_RATE_200_GBPS,
      IBV_RATE_300_GBPS, IBV_RATE_28_GBPS,  IBV_RATE_50_GBPS,  IBV_RATE_400_GBPS,
      IBV_RATE_600_GBPS};
  for (ibv_rate r : all)
    if (ibv_rate_to_mbps(r) == mbps) return r;
  return IBV_RATE_MAX;
}

// ---- sysfs helpers: there is no sysfs device behind this runtime -----------------------

UROCE_EXPORT const char* ibv_get_sysfs_path(void) { return "/sys"; }

UROCE_EXPORT int ibv_read_sysfs_file(const char* dir, const char* file, char* buf, size_t size) {
  // Real files still read (callers use this for generic sysfs too); our device has none.
  std::string path = std::string(dir) + "/" + file;
  FILE* f = std::fopen(path.c_str(), "re");
  if (!f || size == 0) {
    if (f) std::fclose(f);
    errno = ENOENT;
    return -1;
  }
  size_t n = std::fread(buf, 1, size - 1, f);
  std::fclose(f);
  buf[n] = 0;
  if (n && buf[n - 1] == '\n') buf[--n] = 0;
  return static_cast<int>(n);
}

UROCE_EXPORT int ibv_read_ibdev_sysfs_file(char*, size_t, const char*, ...) {
  errno = ENOENT;
  return -1;
}

// These calls also exist in an IBVERBS_1.0 compatibility version (compat.cpp), so the
// default version is bound explicitly: uroce_1_1_NAME becomes NAME@@IBVERBS_1.1, as
// rdma-core does it (the plain name would otherwise also match the 1.0 node).
__asm__(".symver uroce_1_1_ibv_ack_async_event, ibv_ack_async_event@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_ack_cq_events, ibv_ack_cq_events@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_alloc_pd, ibv_alloc_pd@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_close_device, ibv_close_device@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_create_cq, ibv_create_cq@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_create_qp, ibv_create_qp@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_dealloc_pd, ibv_dealloc_pd@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_dereg_mr, ibv_dereg_mr@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_destroy_cq, ibv_destroy_cq@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_destroy_qp, ibv_destroy_qp@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_free_device_list, ibv_free_device_list@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_get_async_event, ibv_get_async_event@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_get_cq_event, ibv_get_cq_event@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_get_device_guid, ibv_get_device_guid@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_get_device_list, ibv_get_device_list@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_get_device_name, ibv_get_device_name@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_modify_qp, ibv_modify_qp@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_open_device, ibv_open_device@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_query_device, ibv_query_device@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_query_gid, ibv_query_gid@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_query_pkey, ibv_query_pkey@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_query_port, ibv_query_port@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_query_qp, ibv_query_qp@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_reg_mr, ibv_reg_mr@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_resize_cq, ibv_resize_cq@@IBVERBS_1.1");
