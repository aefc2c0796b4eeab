// What this librdmacm does not build: multicast (UD QPs joined to a group) and rsockets
// (the socket API over RDMA, r* calls). Each call fails the way the real library fails
// for a kernel or device without the feature (-1 with errno EOPNOTSUPP), and the first
// call of each feature says so, once, on stderr: `udaddy`, `mckey`, `rstream` then stop
// at once with a reason instead of waiting for packets that never come.
#include <poll.h>
#include <rdma/rsocket.h>
#include <sys/select.h>

#include <cerrno>

#include "cma.hpp"

using namespace uroce::rdmacm;

namespace {
int no_multicast() {
  not_built("multicast (rdma_join_multicast, UD QPs)",
            "connected RC ids with RDMA_PS_TCP work (rping, ucmatose, rdma_server/client)");
  return -1;
}
int no_rsockets() {
  not_built("rsockets (rsocket, rconnect, rsend ...)",
            "use the rdma_cm API with RC QPs (rping, ucmatose, rdma_server/client)");
  return -1;
}
}  // namespace

RDMACM_EXPORT int rdma_join_multicast(rdma_cm_id*, sockaddr*, void*) { return no_multicast(); }
RDMACM_EXPORT int rdma_join_multicast_ex(rdma_cm_id*, rdma_cm_join_mc_attr_ex*, void*) {
  return no_multicast();
}
RDMACM_EXPORT int rdma_leave_multicast(rdma_cm_id*, sockaddr*) {
  // librdmacm: leaving a group the id never joined is EADDRNOTAVAIL (none can be joined).
  errno = EADDRNOTAVAIL;
  return -1;
}

RDMACM_EXPORT int rsocket(int, int, int) { return no_rsockets(); }
RDMACM_EXPORT int rbind(int, const sockaddr*, socklen_t) { return no_rsockets(); }
RDMACM_EXPORT int rlisten(int, int) { return no_rsockets(); }
RDMACM_EXPORT int raccept(int, sockaddr*, socklen_t*) { return no_rsockets(); }
RDMACM_EXPORT int rconnect(int, const sockaddr*, socklen_t) { return no_rsockets(); }
RDMACM_EXPORT int rshutdown(int, int) { return no_rsockets(); }
RDMACM_EXPORT int rclose(int) { return no_rsockets(); }
RDMACM_EXPORT ssize_t rrecv(int, void*, size_t, int) { return no_rsockets(); }
RDMACM_EXPORT ssize_t rrecvfrom(int, void*, size_t, int, sockaddr*, socklen_t*) {
  return no_rsockets();
}
RDMACM_EXPORT ssize_t rrecvmsg(int, msghdr*, int) { return no_rsockets(); }
RDMACM_EXPORT ssize_t rsend(int, const void*, size_t, int) { return no_rsockets(); }
RDMACM_EXPORT ssize_t rsendto(int, const void*, size_t, int, const sockaddr*, socklen_t) {
  return no_rsockets();
}
RDMACM_EXPORT ssize_t rsendmsg(int, const msghdr*, int) { return no_rsockets(); }
RDMACM_EXPORT ssize_t rread(int, void*, size_t) { return no_rsockets(); }
RDMACM_EXPORT ssize_t rreadv(int, const iovec*, int) { return no_rsockets(); }
RDMACM_EXPORT ssize_t rwrite(int, const void*, size_t) { return no_rsockets(); }
RDMACM_EXPORT ssize_t rwritev(int, const iovec*, int) { return no_rsockets(); }
RDMACM_EXPORT int rpoll(pollfd*, nfds_t, int) { return no_rsockets(); }
RDMACM_EXPORT int rselect(int, fd_set*, fd_set*, fd_set*, timeval*) { return no_rsockets(); }
RDMACM_EXPORT int rgetpeername(int, sockaddr*, socklen_t*) { return no_rsockets(); }
RDMACM_EXPORT int rgetsockname(int, sockaddr*, socklen_t*) { return no_rsockets(); }
RDMACM_EXPORT int rsetsockopt(int, int, int, const void*, socklen_t) { return no_rsockets(); }
RDMACM_EXPORT int rgetsockopt(int, int, int, void*, socklen_t*) { return no_rsockets(); }
RDMACM_EXPORT int rfcntl(int, int, ...) { return no_rsockets(); }
RDMACM_EXPORT off_t riomap(int, void*, size_t, int, int, off_t) { return no_rsockets(); }
RDMACM_EXPORT int riounmap(int, void*, size_t) { return no_rsockets(); }
RDMACM_EXPORT size_t riowrite(int, const void*, size_t, off_t, int) {
  no_rsockets();
  return 0;  // riowrite returns a size_t: 0 bytes written, errno EOPNOTSUPP
}
