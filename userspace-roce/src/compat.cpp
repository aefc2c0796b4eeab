// Symbols a drop-in libibverbs.so.1 must export so that programs and libraries linked
// against rdma-core load at all (Debian links them with BIND_NOW: one missing symbol and
// the program does not start), but that this runtime does not implement:
//   - rdma-core's private provider interface (IBVERBS_PRIVATE_34: ibv_cmd_*, verbs_*),
//     used by hardware providers and by librdmacm, which talk to the kernel;
//   - the IBVERBS_1.0 compatibility versions of the 1.1 calls (pre-2006 struct layouts).
// This file deliberately does not include <infiniband/verbs.h>: the C signatures do not
// matter for symbols that only report failure. Calls that return a pointer return NULL;
// the others return ENOSYS (what rdma-core's ibv_cmd_* return on failure is an errno).
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>

#include "runtime.hpp"

namespace {
long not_implemented(const char* what) {
  static std::mutex mu;
  static std::set<std::string> told;
  {
    std::lock_guard<std::mutex> l(mu);
    if (told.insert(what).second)
      uroce::log_line("%s is not implemented by userspace-roce (ENOSYS)", what);
  }
  errno = ENOSYS;
  return ENOSYS;
}
}  // namespace

#define STUB(name) \
  UROCE_EXPORT long name() { return not_implemented(#name); }
#define STUB_PTR(name)             \
  UROCE_EXPORT void* name() {      \
    not_implemented(#name);        \
    return nullptr;                \
  }
#define STUB_VOID(name) \
  UROCE_EXPORT void name() { not_implemented(#name); }

// Marshalling helpers between kernel ABI structs and verbs structs (librdmacm's).
STUB_VOID(ibv_copy_ah_attr_from_kern)
STUB_VOID(ibv_copy_qp_attr_from_kern)
STUB_VOID(ibv_copy_path_rec_from_kern)
STUB_VOID(ibv_copy_path_rec_to_kern)
// The pre-rdma-core way to register a provider (only a compatibility version remains in
// rdma-core, ibv_register_driver@IBVERBS_1.1): there is nothing to register with.
extern "C" __attribute__((visibility("default"))) void compat_ibv_register_driver() {
  not_implemented("ibv_register_driver");
}
__asm__(".symver compat_ibv_register_driver, ibv_register_driver@IBVERBS_1.1");

// IBVERBS_PRIVATE_34.
UROCE_EXPORT void verbs_register_driver_34() {
  // Hardware provider libraries call this from their constructors when a program links
  // them directly (perftest does). Nothing to register with; staying quiet keeps such
  // programs' output clean, and their devices never show up.
}
STUB(__ioctl_final_num_attrs)
STUB_VOID(__verbs_log)
STUB_PTR(_verbs_init_and_alloc_context)
STUB(execute_ioctl)
STUB(ibv_cmd_advise_mr)
STUB(ibv_cmd_alloc_dm)
STUB(ibv_cmd_alloc_mw)
STUB(ibv_cmd_alloc_pd)
STUB(ibv_cmd_attach_mcast)
STUB(ibv_cmd_close_xrcd)
STUB(ibv_cmd_create_ah)
STUB(ibv_cmd_create_counters)
STUB(ibv_cmd_create_cq)
STUB(ibv_cmd_create_cq_ex)
STUB(ibv_cmd_create_flow)
STUB(ibv_cmd_create_flow_action_esp)
STUB(ibv_cmd_create_qp)
STUB(ibv_cmd_create_qp_ex)
STUB(ibv_cmd_create_qp_ex2)
STUB(ibv_cmd_create_rwq_ind_table)
STUB(ibv_cmd_create_srq)
STUB(ibv_cmd_create_srq_ex)
STUB(ibv_cmd_create_wq)
STUB(ibv_cmd_dealloc_mw)
STUB(ibv_cmd_dealloc_pd)
STUB(ibv_cmd_dereg_mr)
STUB(ibv_cmd_destroy_ah)
STUB(ibv_cmd_destroy_counters)
STUB(ibv_cmd_destroy_cq)
STUB(ibv_cmd_destroy_flow)
STUB(ibv_cmd_destroy_flow_action)
STUB(ibv_cmd_destroy_qp)
STUB(ibv_cmd_destroy_rwq_ind_table)
STUB(ibv_cmd_destroy_srq)
STUB(ibv_cmd_destroy_wq)
STUB(ibv_cmd_detach_mcast)
STUB(ibv_cmd_free_dm)
STUB(ibv_cmd_get_context)
STUB(ibv_cmd_modify_cq)
STUB(ibv_cmd_modify_flow_action_esp)
STUB(ibv_cmd_modify_qp)
STUB(ibv_cmd_modify_qp_ex)
STUB(ibv_cmd_modify_srq)
STUB(ibv_cmd_modify_wq)
STUB(ibv_cmd_open_qp)
STUB(ibv_cmd_open_xrcd)
STUB(ibv_cmd_poll_cq)
STUB(ibv_cmd_post_recv)
STUB(ibv_cmd_post_send)
STUB(ibv_cmd_post_srq_recv)
STUB(ibv_cmd_query_context)
STUB(ibv_cmd_query_device_any)
STUB(ibv_cmd_query_mr)
STUB(ibv_cmd_query_port)
STUB(ibv_cmd_query_qp)
STUB(ibv_cmd_query_srq)
STUB(ibv_cmd_read_counters)
STUB(ibv_cmd_reg_dm_mr)
STUB(ibv_cmd_reg_dmabuf_mr)
STUB(ibv_cmd_reg_mr)
STUB(ibv_cmd_req_notify_cq)
STUB(ibv_cmd_rereg_mr)
STUB(ibv_cmd_resize_cq)
STUB(verbs_allow_disassociate_destroy)
STUB_VOID(verbs_init_cq)
STUB_PTR(verbs_open_device)
STUB_VOID(verbs_set_ops)
STUB_VOID(verbs_uninit_context)

// IBVERBS_1.0 compatibility versions: ibv_X@IBVERBS_1.0 next to the default ibv_X@@1.1.
#define COMPAT_1_0(name)                                          \
  extern "C" __attribute__((visibility("default"))) long compat_1_0_##name() { \
    return not_implemented(#name "@IBVERBS_1.0");                \
  }                                                               \
  __asm__(".symver compat_1_0_" #name ", " #name "@IBVERBS_1.0");
COMPAT_1_0(ibv_ack_async_event)
COMPAT_1_0(ibv_ack_cq_events)
COMPAT_1_0(ibv_alloc_pd)
COMPAT_1_0(ibv_attach_mcast)
COMPAT_1_0(ibv_close_device)
COMPAT_1_0(ibv_create_ah)
COMPAT_1_0(ibv_create_cq)
COMPAT_1_0(ibv_create_qp)
COMPAT_1_0(ibv_create_srq)
COMPAT_1_0(ibv_dealloc_pd)
COMPAT_1_0(ibv_dereg_mr)
COMPAT_1_0(ibv_destroy_ah)
COMPAT_1_0(ibv_destroy_cq)
COMPAT_1_0(ibv_destroy_qp)
COMPAT_1_0(ibv_destroy_srq)
COMPAT_1_0(ibv_detach_mcast)
COMPAT_1_0(ibv_free_device_list)
COMPAT_1_0(ibv_get_async_event)
COMPAT_1_0(ibv_get_cq_event)
COMPAT_1_0(ibv_get_device_guid)
COMPAT_1_0(ibv_get_device_list)
COMPAT_1_0(ibv_get_device_name)
COMPAT_1_0(ibv_modify_qp)
COMPAT_1_0(ibv_modify_srq)
COMPAT_1_0(ibv_open_device)
COMPAT_1_0(ibv_query_device)
COMPAT_1_0(ibv_query_gid)
COMPAT_1_0(ibv_query_pkey)
COMPAT_1_0(ibv_query_port)
COMPAT_1_0(ibv_query_qp)
COMPAT_1_0(ibv_query_srq)
COMPAT_1_0(ibv_reg_mr)
COMPAT_1_0(ibv_resize_cq)
