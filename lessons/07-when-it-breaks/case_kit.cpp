#include "case_kit.hpp"

#include <cmath>
#include <unistd.h>

#include <cstring>

#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/qp_state.hpp"

namespace lesson07 {

void post_recv_at(Session& s, std::size_t offset, std::uint32_t bytes) {
  ibv_sge sge = s.sge(offset, bytes);
  ibv_recv_wr wr{};
  wr.wr_id = 100 + offset / kMessageBytes;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  common::check_rc(ibv_post_recv(s.qp.get(), &wr, &bad), "ibv_post_recv", "the QP must be in INIT or later");
}

int ordinary_server(Session& s, const char* case_name, const ServerPlan& plan,
                    const std::function<void(Expect&, const ServerSeen&)>& predict) {
  for (unsigned i = 0; i < plan.recvs; ++i) post_recv_at(s, i * kMessageBytes * 2, plan.recv_bytes);
  LOG(slow, "step 4: server posted %u RECV(s) of %u bytes", plan.recvs, plan.recv_bytes);
  if (s.setup.connect_server) connect_session(s);
  const Stopwatch since_ready;
  s.channel->send(common::encode_ready(), s.timeout());
  LOG(slow, "step 4: server said READY; waiting for the client's DONE");
  s.channel->receive_done(s.timeout());
  ServerSeen seen;
  const Stopwatch since_done;
  for (;;) {
    ibv_wc wc{};
    while (ibv_poll_cq(s.recv_cq.get(), 1, &wc) == 1) {
      report_wc("server", wc, since_ready);
      seen.recvs.push_back(wc);
    }
    const bool settled = seen.recvs.size() >= plan.completions &&
                         (!plan.state || common::query_qp_state(s.qp.get()) == *plan.state);
    if (settled || since_done.seconds() > s.timeout()) break;
    ::usleep(100);
  }
  if (seen.recvs.empty()) LOG(data, "step 6: server: no RECV completion");
  seen.qp_state = report_qp_state("server", s.qp.get());
  seen.events = take_async_events("server", s.port.ctx.get(), 0);
  Expect expect("server");
  predict(expect, seen);
  s.channel->send(common::encode_done(), s.timeout());
  return expect.verdict(case_name);
}

void client_connect(Session& s) {
  connect_session(s);
  s.channel->receive_ready(s.timeout());
  LOG(slow, "step 4: the server is READY");
}

void client_finish(Session& s) {
  s.channel->send(common::encode_done(), s.timeout());
  s.channel->receive_done(s.timeout());
}

int post_one(Session& s, ibv_wr_opcode opcode, std::uint64_t wr_id, std::size_t offset, std::uint32_t bytes,
             std::uint64_t remote_addr, std::uint32_t rkey) {
  ibv_sge sge = s.sge(offset, bytes);
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = opcode;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = remote_addr;  // ignored by a SEND
  wr.wr.rdma.rkey = rkey;
  ibv_send_wr* bad = nullptr;
  return ibv_post_send(s.qp.get(), &wr, &bad);
}

int post_send_msg(Session& s, std::uint64_t wr_id, std::uint32_t bytes) {
  std::memset(s.at(0), 'a' + static_cast<int>(wr_id % 26), bytes);
  const int rc = post_one(s, IBV_WR_SEND, wr_id, 0, bytes, 0, 0);
  LOG(fast, "step 5: post SEND wr_id %llu of %u bytes: %s", static_cast<unsigned long long>(wr_id), bytes,
      rc == 0 ? "posted" : errno_name(rc).c_str());
  return rc;
}

int post_write(Session& s, std::uint64_t wr_id, std::uint32_t bytes, std::uint64_t remote_addr, std::uint32_t rkey) {
  std::memset(s.at(0), 'A' + static_cast<int>(wr_id % 26), bytes);
  const int rc = post_one(s, IBV_WR_RDMA_WRITE, wr_id, 0, bytes, remote_addr, rkey);
  LOG(fast, "step 5: post RDMA WRITE wr_id %llu of %u bytes to addr 0x%llx rkey 0x%08x: %s",
      static_cast<unsigned long long>(wr_id), bytes, static_cast<unsigned long long>(remote_addr), rkey,
      rc == 0 ? "posted" : errno_name(rc).c_str());
  return rc;
}

int post_read(Session& s, std::uint64_t wr_id, std::uint32_t bytes, std::uint64_t remote_addr, std::uint32_t rkey) {
  const int rc = post_one(s, IBV_WR_RDMA_READ, wr_id, 0, bytes, remote_addr, rkey);
  LOG(fast, "step 5: post RDMA READ wr_id %llu of %u bytes from addr 0x%llx rkey 0x%08x: %s",
      static_cast<unsigned long long>(wr_id), bytes, static_cast<unsigned long long>(remote_addr), rkey,
      rc == 0 ? "posted" : errno_name(rc).c_str());
  return rc;
}

double ack_timeout_s(std::uint8_t timeout) { return 4.096e-6 * std::ldexp(1.0, timeout); }

double rnr_timer_s(std::uint8_t code) {
  // IBA vol. 1, table 45 (the RNR NAK timer field), in microseconds.
  static constexpr double usec[32] = {655360, 10,    20,    30,    40,    60,    80,     120,
                                      160,    240,   320,   480,   640,   960,   1280,   1920,
                                      2560,   3840,  5120,  7680,  10240, 15360, 20480,  30720,
                                      40960,  61440, 81920, 122880, 163840, 245760, 327680, 491520};
  return usec[code & 31] * 1e-6;
}

}  // namespace lesson07
