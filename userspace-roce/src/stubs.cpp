// The public libibverbs calls this runtime does not implement. Each answers the way
// rdma-core documents failure for it (NULL + errno, or an errno return) with EOPNOTSUPP,
// and says once on stderr what was asked, so a program fails loudly instead of silently
// doing the wrong thing. Address handles, SRQs, multicast, re-registration and the
// import/ECE/dma-buf calls all belong to features beyond RC over RoCE v2. (The extended
// calls that <infiniband/verbs.h> reaches through the verbs_context, ibv_open_xrcd,
// ibv_create_qp_ex and the like, answer from verbs.cpp.)
#include <cerrno>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>

#include "runtime.hpp"

namespace uroce {

// Declared where it is used (verbs.cpp): the one stderr line per unimplemented request.
void tell_not_implemented(const char* what);

void tell_not_implemented(const char* what) {
  static std::mutex mu;
  static std::set<std::string> told;
  std::lock_guard<std::mutex> l(mu);
  if (told.insert(what).second)
    log_line("%s is not implemented by userspace-roce (EOPNOTSUPP)", what);
}

}  // namespace uroce

namespace {

void tell_once(const char* what) { uroce::tell_not_implemented(what); }

template <typename T>
T* null_with(const char* what) {
  tell_once(what);
  errno = EOPNOTSUPP;
  return nullptr;
}

int errno_with(const char* what) {
  tell_once(what);
  return EOPNOTSUPP;
}

int minus_one_with(const char* what) {
  tell_once(what);
  errno = EOPNOTSUPP;
  return -1;
}

}  // namespace

UROCE_EXPORT ibv_ah* UROCE_V1_1(ibv_create_ah)(ibv_pd*, ibv_ah_attr*) { return null_with<ibv_ah>("ibv_create_ah"); }
UROCE_EXPORT int UROCE_V1_1(ibv_destroy_ah)(ibv_ah*) { return errno_with("ibv_destroy_ah"); }
UROCE_EXPORT ibv_ah* ibv_create_ah_from_wc(ibv_pd*, ibv_wc*, ibv_grh*, uint8_t) {
  return null_with<ibv_ah>("ibv_create_ah_from_wc");
}
UROCE_EXPORT int ibv_init_ah_from_wc(ibv_context*, uint8_t, ibv_wc*, ibv_grh*, ibv_ah_attr*) {
  return minus_one_with("ibv_init_ah_from_wc");
}
UROCE_EXPORT int ibv_resolve_eth_l2_from_gid(ibv_context*, ibv_ah_attr*, uint8_t[6], uint16_t*) {
  return minus_one_with("ibv_resolve_eth_l2_from_gid");
}
UROCE_EXPORT int UROCE_V1_1(ibv_attach_mcast)(ibv_qp*, const ibv_gid*, uint16_t) { return errno_with("ibv_attach_mcast"); }
UROCE_EXPORT int UROCE_V1_1(ibv_detach_mcast)(ibv_qp*, const ibv_gid*, uint16_t) { return errno_with("ibv_detach_mcast"); }

UROCE_EXPORT ibv_srq* UROCE_V1_1(ibv_create_srq)(ibv_pd*, ibv_srq_init_attr*) { return null_with<ibv_srq>("ibv_create_srq"); }
UROCE_EXPORT int UROCE_V1_1(ibv_modify_srq)(ibv_srq*, ibv_srq_attr*, int) { return errno_with("ibv_modify_srq"); }
UROCE_EXPORT int UROCE_V1_1(ibv_query_srq)(ibv_srq*, ibv_srq_attr*) { return errno_with("ibv_query_srq"); }
UROCE_EXPORT int UROCE_V1_1(ibv_destroy_srq)(ibv_srq*) { return errno_with("ibv_destroy_srq"); }

UROCE_EXPORT int ibv_rereg_mr(ibv_mr*, int flags, ibv_pd*, void* addr, size_t length, int access) {
  // rdma-core 44's ibv_rereg_mr checks its arguments before it asks the provider: flags
  // it does not know, a translation change without an address or a length, or access
  // flags without IBV_REREG_MR_CHANGE_ACCESS fail with IBV_REREG_MR_ERR_INPUT and EINVAL.
  if ((flags & ~IBV_REREG_MR_FLAGS_SUPPORTED) ||
      ((flags & IBV_REREG_MR_CHANGE_TRANSLATION) && (!addr || !length)) ||
      (access && !(flags & IBV_REREG_MR_CHANGE_ACCESS))) {
    errno = EINVAL;
    return IBV_REREG_MR_ERR_INPUT;
  }
  // Then it asks the provider. For one without rereg (rdma-core's default op) that call
  // fails with errno EOPNOTSUPP, and ibv_rereg_mr returns IBV_REREG_MR_ERR_CMD; the region
  // stays as it was. Deregister it and register again instead.
  tell_once("ibv_rereg_mr");
  errno = EOPNOTSUPP;
  return IBV_REREG_MR_ERR_CMD;
}

UROCE_EXPORT ibv_qp_ex* ibv_qp_to_qp_ex(ibv_qp*) {
  // QPs made by ibv_create_qp have no extended send API (ibv_wr_*), on any device.
  errno = EOPNOTSUPP;
  return nullptr;
}

UROCE_EXPORT ibv_context* ibv_import_device(int) { return null_with<ibv_context>("ibv_import_device"); }
UROCE_EXPORT ibv_pd* ibv_import_pd(ibv_context*, uint32_t) { return null_with<ibv_pd>("ibv_import_pd"); }
UROCE_EXPORT void ibv_unimport_pd(ibv_pd*) { tell_once("ibv_unimport_pd"); }
UROCE_EXPORT ibv_mr* ibv_import_mr(ibv_pd*, uint32_t) { return null_with<ibv_mr>("ibv_import_mr"); }
UROCE_EXPORT void ibv_unimport_mr(ibv_mr*) { tell_once("ibv_unimport_mr"); }
UROCE_EXPORT ibv_dm* ibv_import_dm(ibv_context*, uint32_t) { return null_with<ibv_dm>("ibv_import_dm"); }
UROCE_EXPORT void ibv_unimport_dm(ibv_dm*) { tell_once("ibv_unimport_dm"); }
UROCE_EXPORT ibv_mr* ibv_reg_dmabuf_mr(ibv_pd*, uint64_t, size_t, uint64_t, int, int) {
  return null_with<ibv_mr>("ibv_reg_dmabuf_mr");
}
UROCE_EXPORT int ibv_query_ece(ibv_qp*, ibv_ece*) { return errno_with("ibv_query_ece"); }
UROCE_EXPORT int ibv_set_ece(ibv_qp*, ibv_ece*) { return errno_with("ibv_set_ece"); }
UROCE_EXPORT int ibv_query_qp_data_in_order(ibv_qp*, ibv_wr_opcode, uint32_t) {
  return 0;  // "no in-order guarantee beyond what the spec gives": always a safe answer
}

// These calls also exist in an IBVERBS_1.0 compatibility version (compat.cpp), so the
// default version is bound explicitly: uroce_1_1_NAME becomes NAME@@IBVERBS_1.1, as
// rdma-core does it (the plain name would otherwise also match the 1.0 node).
__asm__(".symver uroce_1_1_ibv_attach_mcast, ibv_attach_mcast@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_create_ah, ibv_create_ah@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_create_srq, ibv_create_srq@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_destroy_ah, ibv_destroy_ah@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_destroy_srq, ibv_destroy_srq@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_detach_mcast, ibv_detach_mcast@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_modify_srq, ibv_modify_srq@@IBVERBS_1.1");
__asm__(".symver uroce_1_1_ibv_query_srq, ibv_query_srq@@IBVERBS_1.1");
