/**
 * @file verbs_owners.hpp
 * @brief RAII owners for verbs and RDMA CM objects, and the one teardown order.
 *
 * Every verbs object depends on the one it was created from, and the kernel refuses to
 * destroy some objects while others still use them: ibv_dealloc_pd returns EBUSY while an
 * MR or QP lives in that PD, ibv_destroy_cq while a QP reports to that CQ, and
 * ibv_destroy_comp_channel while a CQ uses that channel. So teardown is the exact
 * reverse of creation:
 *
 * @code
 *   create:   device list -> context -> PD -> MR -> CQ -> QP
 *   destroy:  QP -> CQ -> MR -> PD -> context -> device list
 * @endcode
 *
 * (The QP goes first because it refers to the CQs and, through its work requests, to the
 * MRs; the CQ before the PD's MRs only by convention; the context last but for the list.)
 *
 * C++ destroys local variables in the reverse order of their declaration, so a lesson
 * that declares its owners in creation order gets the right teardown on every exit path,
 * including exceptions, with nothing written twice. That is what the chain of labels in
 * rdma-core's librdmacm/examples/rdma_server.c (`out_disconnect:`, `out_dereg_send:` ...
 * `out_destroy_listen_ep:`) does by hand.
 *
 * For RDMA CM: the QP made by rdma_create_qp() belongs to the cm_id and is destroyed with
 * rdma_destroy_qp() before rdma_destroy_id(); the event channel outlives every cm_id
 * created on it:
 * @code
 *   create:   event channel -> cm_id -> (PD, MR, CQ) -> rdma_create_qp
 *   destroy:  CmQp -> MR, CQ, PD -> cm_id -> event channel
 * @endcode
 *
 * A destroy call that fails (almost always: wrong order) is logged as a WARN naming the
 * call and errno, because a destructor cannot throw.
 */
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <type_traits>

namespace common {

/// Log a failed destroy call (used by the deleters below; not for lessons).
void warn_destroy_failed(const char* call, int rc);

/// A string literal usable as a template argument (the destroy call's name).
template <std::size_t N>
struct CallName {
  /// Copy the literal.
  constexpr CallName(const char (&s)[N]) { std::copy_n(s, N, text); }
  char text[N];  ///< the name, NUL-terminated
};

/// Wraps a destroy function `int destroy(T*)` as a unique_ptr deleter that logs failures.
template <class T, auto Destroy, CallName Name>
struct Deleter {
  /// Destroy @p p, logging (not throwing) on failure.
  void operator()(T* p) const noexcept {
    if constexpr (std::is_void_v<decltype(Destroy(p))>) {
      Destroy(p);
    } else {
      if (const int rc = Destroy(p); rc != 0) warn_destroy_failed(Name.text, rc);
    }
  }
};

/// Owns the array from ibv_get_device_list(); frees it with ibv_free_device_list().
using DeviceList = std::unique_ptr<ibv_device*, Deleter<ibv_device*, ibv_free_device_list, "ibv_free_device_list">>;
/// Owns an opened device (ibv_open_device / ibv_close_device).
using Context = std::unique_ptr<ibv_context, Deleter<ibv_context, ibv_close_device, "ibv_close_device">>;
/// Owns a protection domain (ibv_alloc_pd / ibv_dealloc_pd).
using Pd = std::unique_ptr<ibv_pd, Deleter<ibv_pd, ibv_dealloc_pd, "ibv_dealloc_pd">>;
/// Owns a memory registration (ibv_reg_mr / ibv_dereg_mr); the memory itself is separate.
using Mr = std::unique_ptr<ibv_mr, Deleter<ibv_mr, ibv_dereg_mr, "ibv_dereg_mr">>;
/// Owns a completion channel (ibv_create_comp_channel / ibv_destroy_comp_channel).
using CompChannel =
    std::unique_ptr<ibv_comp_channel, Deleter<ibv_comp_channel, ibv_destroy_comp_channel, "ibv_destroy_comp_channel">>;
/// Owns a completion queue (ibv_create_cq / ibv_destroy_cq).
using Cq = std::unique_ptr<ibv_cq, Deleter<ibv_cq, ibv_destroy_cq, "ibv_destroy_cq">>;
/// Owns a queue pair created with ibv_create_qp (ibv_destroy_qp).
using Qp = std::unique_ptr<ibv_qp, Deleter<ibv_qp, ibv_destroy_qp, "ibv_destroy_qp">>;

/// Owns an RDMA CM event channel (rdma_create_event_channel / rdma_destroy_event_channel).
using EventChannel =
    std::unique_ptr<rdma_event_channel,
                    Deleter<rdma_event_channel, rdma_destroy_event_channel, "rdma_destroy_event_channel">>;
/// Owns an RDMA CM identifier (rdma_create_id / rdma_destroy_id).
using CmId = std::unique_ptr<rdma_cm_id, Deleter<rdma_cm_id, rdma_destroy_id, "rdma_destroy_id">>;
/// Owns the QP of a cm_id made by rdma_create_qp(); destroyed with rdma_destroy_qp().
using CmQp = std::unique_ptr<rdma_cm_id, Deleter<rdma_cm_id, rdma_destroy_qp, "rdma_destroy_qp">>;

/// Owns a file descriptor (a TCP socket of the out-of-band exchange).
class Fd {
 public:
  Fd() = default;
  /// Take ownership of @p fd (-1 = none).
  explicit Fd(int fd) : fd_(fd) {}
  /// Take over @p other's descriptor.
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  /// Close ours, take over @p other's descriptor.
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  /// The descriptor, still owned.
  int get() const { return fd_; }
  /// Give up ownership and return the descriptor.
  int release() { int fd = fd_; fd_ = -1; return fd; }
  /// Close the owned descriptor (if any) and own @p fd instead.
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace common
