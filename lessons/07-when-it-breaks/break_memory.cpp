/**
 * @file lessons/07-when-it-breaks/break_memory.cpp
 * @brief Failures of remote memory access, and of registering memory at all.
 *
 * An RDMA WRITE names remote memory by (address, rkey). The responder checks, for every
 * request, that the rkey names one of its MRs, that the MR grants the right
 * (REMOTE_WRITE for a WRITE), and that [address, address + length) lies inside it. Any
 * of those failing is the same answer on the wire, a NAK "remote access error", and the
 * same status at the requester, IBV_WC_REM_ACCESS_ERR: the requester is not told which
 * check failed. An MR deregistered while the peer still holds its rkey fails the first
 * check. An RDMA READ needs one more thing of the responder's QP: a responder resource,
 * a slot that holds the READ while its responses go out (max_dest_rd_atomic, set at
 * RTR). A QP with none refuses every READ as an invalid request. Registration itself
 * pins pages, which RLIMIT_MEMLOCK (`ulimit -l`) limits.
 */
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <string>
#include <vector>

#include "case_kit.hpp"
#include "cases.hpp"
#include "common/completion.hpp"
#include "common/device.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"

namespace lesson07 {
namespace {

/// The client of the cases in which the responder refuses the one request we post: say
/// @p what, post it (@p post returns the errno value of ibv_post_send), and predict
/// @p predicted after one round trip, our QP in ERR; @p why and @p wire explain it.
int refused_client(Session& s, const char* name, const char* what, const std::function<int()>& post,
                   ibv_wc_status predicted, const char* why, const char* wire) {
  client_connect(s);
  LOG(data, "step 5: client: %s", what);
  const Stopwatch clock;
  const int rc = post();
  const std::optional<ibv_wc> wc = poll_one("client", s.send_cq.get(), s.timeout(), clock);
  const double took = clock.seconds();
  const ibv_qp_state state = report_qp_state("client", s.qp.get());
  explain("client", why, wire, common::wc_status_remedy(predicted));
  Expect expect("client");
  expect.call(rc, 0, "ibv_post_send");
  expect.status(wc, predicted, "the request");
  expect.qp_state(state, IBV_QPS_ERR);
  expect.within(took, 0);
  client_finish(s);
  return expect.verdict(name);
}

/// The client of the three "one bad WRITE" cases: WRITE kMessageBytes to @p addr with
/// @p rkey, and predict IBV_WC_REM_ACCESS_ERR.
int bad_write_client(Session& s, const char* name, std::uint64_t addr, std::uint32_t rkey, const char* what) {
  return refused_client(
      s, name, what, [&] { return post_write(s, 1, kMessageBytes, addr, rkey); }, IBV_WC_REM_ACCESS_ERR,
      "one round trip: the responder checks the rkey, the right and the bounds as the WRITE arrives",
      "RDMA_WRITE_ONLY with its RETH (va, rkey, length), NAK remote access error (AETH syndrome 0x62)");
}

/// The server of those cases: nothing to post; afterwards its window is untouched and its
/// QP is in ERR (kernel rxe and the runtime both move the responder to ERR after a remote
/// access error, as the spec's class C responder error requires).
int bad_write_server(Session& s, const char* name) {
  return ordinary_server(s, name, ServerPlan{0, kMessageBytes, 0, IBV_QPS_ERR}, [&s](Expect& e, const ServerSeen& seen) {
    bool untouched = true;
    for (std::size_t i = 0; i < kExposedBytes; ++i) untouched = untouched && s.buffer[kExposedOffset + i] == 0;
    LOG(data, "step 6: server: the exposed window is %s", untouched ? "untouched (all zero)" : "WRITTEN");
    e.that(untouched, "the refused WRITE changed the server's memory");
    e.qp_state(seen.qp_state, IBV_QPS_ERR);
    explain("server", "", "",
            "a responder QP that refused an access goes to ERR; the peer must reconnect with a new QP");
  });
}

int bad_rkey_client(Session& s) {
  // Flip the key's low byte: on Soft-RoCE that is the part the driver draws at random.
  return bad_write_client(s, "bad-rkey", s.peer.addr, s.peer.rkey ^ 0x80,
                          "WRITE with an rkey the server never handed out (its rkey with bit 7 flipped)");
}
int bad_rkey_server(Session& s) { return bad_write_server(s, "bad-rkey"); }

int no_right_client(Session& s) {
  return bad_write_client(s, "no-remote-write", s.peer.addr, s.peer.rkey,
                          "WRITE into an MR registered with REMOTE_READ only");
}
int no_right_server(Session& s) { return bad_write_server(s, "no-remote-write"); }

int out_of_bounds_client(Session& s) {
  return bad_write_client(s, "out-of-bounds", s.peer.addr + s.peer.length - kMessageBytes / 2, s.peer.rkey,
                          "WRITE of 64 bytes starting 32 bytes before the end of the server's MR");
}
int out_of_bounds_server(Session& s) { return bad_write_server(s, "out-of-bounds"); }

/// deregistered-mr, the client: one WRITE that works, then the same WRITE after the server
/// deregistered the MR (it tells us so over TCP).
int dereg_client(Session& s) {
  client_connect(s);
  Stopwatch clock;
  post_write(s, 1, kMessageBytes, s.peer.addr, s.peer.rkey);
  const std::optional<ibv_wc> first = poll_one("client", s.send_cq.get(), s.timeout(), clock);
  s.channel->send(common::encode_ready(), s.timeout());
  s.channel->receive_ready(s.timeout());
  LOG(data, "step 5: client: the server deregistered its MR; the same WRITE again, same rkey");
  clock.restart();
  post_write(s, 2, kMessageBytes, s.peer.addr, s.peer.rkey);
  const std::optional<ibv_wc> second = poll_one("client", s.send_cq.get(), s.timeout(), clock);
  const double took = clock.seconds();
  const ibv_qp_state state = report_qp_state("client", s.qp.get());
  explain("client", "one round trip", "two RDMA_WRITE_ONLY with the same RETH: ACK, then NAK remote access error",
          common::wc_status_remedy(IBV_WC_REM_ACCESS_ERR));
  Expect expect("client");
  expect.status(first, IBV_WC_SUCCESS, "the first WRITE");
  expect.status(second, IBV_WC_REM_ACCESS_ERR, "the WRITE after ibv_dereg_mr");
  expect.qp_state(state, IBV_QPS_ERR);
  expect.within(took, 0);
  client_finish(s);
  return expect.verdict("deregistered-mr");
}

int dereg_server(Session& s) {
  connect_session(s);
  s.channel->send(common::encode_ready(), s.timeout());
  s.channel->receive_ready(s.timeout());
  const std::uint32_t rkey = s.exposed_mr->rkey;
  s.exposed_mr.reset();  // ibv_dereg_mr: the rkey the client holds now names nothing
  LOG(slow, "step 5: server: ibv_dereg_mr of the window (rkey 0x%08x) while the client still holds the rkey", rkey);
  s.channel->send(common::encode_ready(), s.timeout());
  s.channel->receive_done(s.timeout());
  const ibv_qp_state state = report_qp_state("server", s.qp.get());
  explain("server", "", "",
          "deregister an MR only after the peer has said it is done with it (lesson 02's DONE before teardown)");
  Expect expect("server");
  expect.qp_state(state, IBV_QPS_ERR);
  s.channel->send(common::encode_done(), s.timeout());
  return expect.verdict("deregistered-mr");
}

/// no-read-resources, the client: one RDMA READ of 64 bytes of the server's window, whose
/// QP was brought to RTR with max_dest_rd_atomic 0; ours may have one READ in flight
/// (max_rd_atomic 1, lesson 01's value), so our device sends it.
int no_read_client(Session& s) {
  return refused_client(
      s, "no-read-resources",
      "READ from a QP without READ resources (the server's max_dest_rd_atomic is 0, our max_rd_atomic 1)",
      [&s] { return post_read(s, 1, kMessageBytes, s.peer.addr, s.peer.rkey); }, IBV_WC_REM_INV_REQ_ERR,
      "one round trip: the responder looks for a READ resource as the request arrives, before it checks the rkey",
      "RDMA_READ_REQUEST with its RETH (va, rkey, length), NAK invalid request (AETH syndrome 0x61)");
}

/// no-read-resources, the server: its QP went to RTR with max_dest_rd_atomic 0 (Setup).
/// Refusing the READ is a class C responder error: NAK, and the QP goes to ERR (rxe_resp.c
/// and the runtime's responder alike).
int no_read_server(Session& s) {
  return ordinary_server(s, "no-read-resources", ServerPlan{0, kMessageBytes, 0, IBV_QPS_ERR},
                         [&s](Expect& e, const ServerSeen& seen) {
    ibv_qp_attr attr{};
    ibv_qp_init_attr init{};
    common::check_rc(ibv_query_qp(s.qp.get(), &attr, IBV_QP_MAX_DEST_RD_ATOMIC, &init), "ibv_query_qp",
                     "device error: check dmesg");
    LOG(data, "step 6: server: its QP's max_dest_rd_atomic is %u (ibv_query_qp)", attr.max_dest_rd_atomic);
    e.that(attr.max_dest_rd_atomic == 0, "the server's QP has READ resources after all");
    e.qp_state(seen.qp_state, IBV_QPS_ERR);
    explain("server", "", "",
            "give the responder READ resources: max_dest_rd_atomic at RTR at least the requester's max_rd_atomic "
            "(with RDMA CM, the responder_resources of rdma_conn_param: lesson 02)");
  });
}

/// Drop CAP_IPC_LOCK from our effective capabilities: with it (root has it) the kernel
/// ignores RLIMIT_MEMLOCK when pinning. Returns whether we had it.
bool drop_ipc_lock() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0)
    common::fail("capget failed: " + common::errno_text(errno), "the kernel must support capabilities (Linux)");
  const bool had = (data[0].effective & (1u << CAP_IPC_LOCK)) != 0;
  data[0].effective &= ~(1u << CAP_IPC_LOCK);
  common::check_rc(static_cast<int>(::syscall(SYS_capset, &header, data)), "capset(drop CAP_IPC_LOCK)",
                   "dropping a capability is always allowed; check for a seccomp filter");
  return had;
}

/// memlock: the client alone lowers its own RLIMIT_MEMLOCK to 64 KiB (as `ulimit -l 64`
/// would) and registers 1 MiB.
int memlock_client(Session& s) {
  constexpr std::size_t kLimit = 64 * 1024;
  constexpr std::size_t kWanted = 1 << 20;
  const bool had = drop_ipc_lock();
  LOG(slow, "step 5: client: CAP_IPC_LOCK %s", had ? "dropped (root has it, and it overrides the limit)" : "not held");
  // Only the soft limit, as `ulimit -S -l 64` would: lowering it is always allowed.
  rlimit lim{};
  common::check_rc(::getrlimit(RLIMIT_MEMLOCK, &lim), "getrlimit(RLIMIT_MEMLOCK)", "");
  lim.rlim_cur = std::min<rlim_t>(kLimit, lim.rlim_max);
  common::check_rc(::setrlimit(RLIMIT_MEMLOCK, &lim), "setrlimit(RLIMIT_MEMLOCK)",
                   "the soft limit may always be lowered to the hard one");
  LOG(slow, "step 5: client: RLIMIT_MEMLOCK is now %zu bytes, as after `ulimit -l %zu`", kLimit, kLimit / 1024);
  common::check_memlock(kWanted);  // lesson 01's check: warns before the call fails
  std::vector<char> big(kWanted, 0);
  const Stopwatch clock;
  errno = 0;
  ibv_mr* mr = ibv_reg_mr(s.pd.get(), big.data(), big.size(), IBV_ACCESS_LOCAL_WRITE);
  const int err = mr ? 0 : errno;
  const double took = clock.seconds();
  report_call("client", "ibv_reg_mr of 1 MiB", err, clock);
  if (mr) ibv_dereg_mr(mr);
  Expect expect("client");
  if (s.impl == Implementation::runtime) {
    explain("client", "",
            "nothing: registration is local",
            "the userspace runtime pins no pages (its \"device\" reads the process's memory), so no memlock limit "
            "applies; kernel rxe and hardware do: " + common::reg_mr_remedy());
    expect.call(err, 0, "ibv_reg_mr");
  } else {
    explain("client", "immediate: the kernel counts pinned pages against RLIMIT_MEMLOCK before pinning", "nothing",
            common::reg_mr_remedy());
    expect.call(err, ENOMEM, "ibv_reg_mr");
  }
  expect.within(took, 0);
  return expect.verdict("memlock");
}

int no_server(Session&) { return 0; }

}  // namespace

/// The cases of this file, in the README's order (declared in cases.hpp).
std::vector<Case> memory_cases() {
  Setup read_only;
  read_only.server_mr_access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ;
  Setup no_read;
  no_read.server_max_dest_rd_atomic = 0;
  return {
      {"bad-rkey", "an RDMA WRITE with an rkey the server never gave", "client: IBV_WC_REM_ACCESS_ERR", Setup{},
       bad_rkey_client, bad_rkey_server},
      {"no-remote-write", "an RDMA WRITE into an MR without IBV_ACCESS_REMOTE_WRITE", "client: IBV_WC_REM_ACCESS_ERR",
       read_only, no_right_client, no_right_server},
      {"out-of-bounds", "an RDMA WRITE that runs past the end of the MR", "client: IBV_WC_REM_ACCESS_ERR", Setup{},
       out_of_bounds_client, out_of_bounds_server},
      {"deregistered-mr", "an RDMA WRITE with the rkey of an MR the server deregistered",
       "client: IBV_WC_REM_ACCESS_ERR on the second WRITE", Setup{}, dereg_client, dereg_server},
      {"no-read-resources", "an RDMA READ to a QP with no READ resources (max_dest_rd_atomic 0)",
       "client: IBV_WC_REM_INV_REQ_ERR; the server's QP goes to ERR", no_read, no_read_client, no_read_server},
      {"memlock", "ibv_reg_mr of 1 MiB under `ulimit -l 64`", "client: ibv_reg_mr fails with ENOMEM", Setup{},
       memlock_client, no_server, false},
  };
}

}  // namespace lesson07
