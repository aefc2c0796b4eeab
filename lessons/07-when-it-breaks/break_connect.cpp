/**
 * @file lessons/07-when-it-breaks/break_connect.cpp
 * @brief Failures of connecting: GIDs of two kinds, a path MTU the peer cannot take, a
 *        wrong first PSN (ahead or behind), packets that arrive before the peer's QP is in
 *        RTR, and a modify_qp that leaves out a required attribute.
 *
 * RTR is where the two QPs meet (common/qp_state.hpp): the peer's QPN, its first PSN, its
 * address and the path MTU. Every value there is taken on trust from the out-of-band
 * exchange, and a wrong one is not refused by the peer: it shows later as silence,
 * resends or a completion that lies.
 */
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "case_kit.hpp"
#include "cases.hpp"
#include "common/completion.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/qp_state.hpp"

namespace lesson07 {
namespace {

/// Run @p step and return the errno value of the call that failed in it (0: none failed).
/// The failure is logged with the call's own message (which transition, which errno).
template <class F>
int errno_of(F&& step) {
  try {
    step();
    return 0;
  } catch (const common::Error& e) {
    LOG(data, "step 6: %s", e.what());
    return e.error_number() != 0 ? e.error_number() : EIO;
  }
}

/// gid-kinds, the client: our GID is the IPv6 entry, the server's the IPv4 one.
int gid_client(Session& s) {
  Expect expect("client");
  Stopwatch clock;
  const bool v4 = common::gid_to_string(s.port.gid.gid).rfind("::ffff:", 0) == 0;
  if (v4) {
    LOG(warn, "step 4: client: %s has no RoCE v2 GID other than IPv4 ones: nothing to mix",
        ibv_get_device_name(s.port.ctx->device));
    explain("client", "", "",
            "the userspace runtime has one GID per process (::ffff:<its IPv4 address>): this case needs kernel rxe");
    expect.within(clock.seconds(), 0);
    client_finish(s);
    expect.that(s.impl == Implementation::runtime, "no IPv6 GID on a device other than the runtime");
    return expect.verdict("gid-kinds");
  }
  clock.restart();
  const int err = errno_of([&] { connect_session(s); });
  const double took = clock.seconds();
  report_call("client", "ibv_modify_qp(INIT -> RTR)", err, clock);
  explain("client", "immediate: the kernel resolves the path (source and destination IP) when the QP enters RTR",
          "nothing: no packet is sent",
          "use GIDs of the same kind on both sides (-g: on rxe index 1 is ::ffff:<IPv4>; common::choose_gid "
          "picks it)");
  expect.call(err, EINVAL, "ibv_modify_qp(INIT -> RTR)");
  expect.within(took, 0);
  client_finish(s);
  return expect.verdict("gid-kinds");
}

int gid_server(Session& s) {
  const Stopwatch clock;
  const bool peer_v4 = common::gid_to_string(s.peer.qp.gid).rfind("::ffff:", 0) == 0;
  const int err = errno_of([&] { connect_session(s); });
  report_call("server", "ibv_modify_qp(INIT -> RTR)", err, clock);
  s.channel->receive_done(s.timeout());
  Expect expect("server");
  expect.call(err, peer_v4 ? 0 : EINVAL, "ibv_modify_qp(INIT -> RTR)");
  s.channel->send(common::encode_done(), s.timeout());
  return expect.verdict("gid-kinds");
}

/// The client of the cases that SEND once and predict a status, with the explanation.
int one_send_client(Session& s, const char* name, std::uint32_t bytes, ibv_wc_status predicted, const char* why,
                    const char* wire) {
  client_connect(s);
  const Stopwatch clock;
  post_send_msg(s, 1, bytes);
  const std::optional<ibv_wc> wc = poll_one("client", s.send_cq.get(), s.timeout(), clock);
  const double took = clock.seconds();
  const ibv_qp_state state = report_qp_state("client", s.qp.get());
  char timing[300];
  const double each = ack_timeout_s(s.setup.timeout);
  const double tries_s = (s.setup.retry_cnt + 1u) * each;
  std::snprintf(timing, sizeof timing, "%s; %u tries x %.1f ms ACK timeout = %.0f ms (measured %.0f ms)", why,
                s.setup.retry_cnt + 1u, each * 1e3, (s.setup.retry_cnt + 1u) * each * 1e3, took * 1e3);
  explain("client", predicted == IBV_WC_RETRY_EXC_ERR ? timing : why, wire,
          predicted == IBV_WC_SUCCESS ? "" : common::wc_status_remedy(predicted));
  Expect expect("client");
  expect.status(wc, predicted, "the SEND");
  expect.qp_state(state, predicted == IBV_WC_SUCCESS ? IBV_QPS_RTS : IBV_QPS_ERR);
  // A SEND the server ACKs ends in one round trip; one nobody ACKs, after every try.
  expect.within(took, predicted == IBV_WC_RETRY_EXC_ERR ? tries_s : 0);
  client_finish(s);
  return expect.verdict(name);
}

/// path-mtu watches this long for a completion that, on kernel rxe, never comes.
constexpr double kMtuWatch_s = 3.0;

/// Kernel rxe hands a packet for its own address straight to the receiving QP: no IP
/// stack, no IP MTU. Both sides on one host means both GIDs are the same address.
bool same_host(const Session& s) { return std::memcmp(s.port.gid.gid.raw, s.peer.qp.gid.raw, 16) == 0; }

/// What path-mtu ends in here: on kernel rxe between two hosts, nothing; on kernel rxe on
/// one host, success; on the runtime, the server's refusal.
enum class MtuOutcome { never_completes, goes_unnoticed, refused };
MtuOutcome mtu_outcome(const Session& s) {
  if (s.impl == Implementation::runtime) return MtuOutcome::refused;
  // Between two hosts the packet is lost only if it does not fit the link: a peer port
  // whose active MTU is below 4096 sits on an interface with a smaller IP MTU (1500 in the
  // lab). On one host, or over jumbo frames, rxe 6.1 lets it through.
  const ibv_mtu peer_port = s.peer.qp.mtu;  // the other side's port, from its QP_INFO
  const ibv_mtu ours = s.port.attr.active_mtu;
  const bool fits = std::min(peer_port, ours) >= IBV_MTU_4096;
  return same_host(s) || fits ? MtuOutcome::goes_unnoticed : MtuOutcome::never_completes;
}

/// path-mtu, the client: one 4096-byte SEND, one packet at our path MTU of 4096.
int path_mtu_client(Session& s) {
  client_connect(s);
  const MtuOutcome outcome = mtu_outcome(s);
  const Stopwatch clock;
  post_send_msg(s, 1, 4096);
  const std::optional<ibv_wc> wc = poll_one(
      "client", s.send_cq.get(), outcome == MtuOutcome::never_completes ? kMtuWatch_s : s.timeout(), clock);
  const double took = clock.seconds();
  const ibv_qp_state state = report_qp_state("client", s.qp.get());
  Expect expect("client");
  const char* remedy =
      "take the path MTU as the smaller of both ports' active_mtu (common::connect_qp does); a port's active_mtu "
      "already fits its interface's IP MTU";
  switch (outcome) {
    case MtuOutcome::never_completes:
      explain("client",
              "forever: the 4096-byte packet (4140 bytes of IP) does not fit the 1500-byte IP MTU; the kernel's IP "
              "stack refuses it (Don't Fragment), rxe keeps the request and tries to send it again, and no ACK "
              "timer ever starts: no completion, no retry spent, the QP stays in RTS",
              "nothing at all from the client", remedy);
      expect.none(wc, "the SEND of one 4096-byte packet");
      expect.qp_state(state, IBV_QPS_RTS);
      break;
    case MtuOutcome::goes_unnoticed:
      explain("client",
              "one round trip: both QPs are on this host, where rxe hands the packet to the receiving QP without "
              "the IP stack, and rxe's responder (6.1) does not compare a SEND's payload with its path MTU: the "
              "mismatch goes unnoticed here and shows only between two hosts",
              "nothing: rxe delivers a packet to its own address without the network", remedy);
      expect.status(wc, IBV_WC_SUCCESS, "the SEND");
      expect.qp_state(state, IBV_QPS_RTS);
      break;
    case MtuOutcome::refused:
      explain("client", "one round trip: the server's QP refuses a packet longer than its path MTU",
              "SEND_ONLY with 4096 bytes of payload, NAK invalid request (AETH syndrome 0x61)",
              common::wc_status_remedy(IBV_WC_REM_INV_REQ_ERR));
      expect.status(wc, IBV_WC_REM_INV_REQ_ERR, "the SEND");
      expect.qp_state(state, IBV_QPS_ERR);
      break;
  }
  // "Forever" ends where the case stops watching; the other two outcomes in a round trip.
  expect.within(took, outcome == MtuOutcome::never_completes ? kMtuWatch_s : 0);
  client_finish(s);
  return expect.verdict("path-mtu");
}

int path_mtu_server(Session& s) {
  ServerPlan plan{1, 4096, 0, IBV_QPS_RTS};
  if (mtu_outcome(s) == MtuOutcome::goes_unnoticed) plan.completions = 1;
  if (mtu_outcome(s) == MtuOutcome::refused) plan = ServerPlan{1, 4096, 1, IBV_QPS_ERR};
  return ordinary_server(s, "path-mtu", plan, [&s](Expect& e, const ServerSeen& seen) {
    switch (mtu_outcome(s)) {
      case MtuOutcome::never_completes:
        e.that(seen.recvs.empty(), "a RECV completed although no packet left the client");
        e.qp_state(seen.qp_state, IBV_QPS_RTS);
        break;
      case MtuOutcome::goes_unnoticed:
        e.that(seen.recvs.size() == 1, "the RECV did not complete once");
        if (!seen.recvs.empty()) e.status(seen.recvs.front(), IBV_WC_SUCCESS, "the RECV");
        e.qp_state(seen.qp_state, IBV_QPS_RTS);
        break;
      case MtuOutcome::refused:
        // The refused request moved our QP to ERR, which flushed the RECV.
        e.that(seen.recvs.size() == 1, "the RECV was not flushed once");
        if (!seen.recvs.empty()) e.status(seen.recvs.front(), IBV_WC_WR_FLUSH_ERR, "the RECV");
        e.qp_state(seen.qp_state, IBV_QPS_ERR);
        break;
    }
  });
}

int psn_ahead_client(Session& s) {
  return one_send_client(s, "psn-ahead", kMessageBytes, IBV_WC_RETRY_EXC_ERR,
                         "the server NAKs the first out-of-sequence packet once, the NAK names a PSN older than "
                         "anything outstanding and is ignored, and every resend is dropped in silence",
                         "SEND (PSN p+1000), NAK PSN sequence error (AETH syndrome 0x60, PSN p), then the SEND again "
                         "retry_cnt times and nothing");
}

int psn_ahead_server(Session& s) {
  return ordinary_server(s, "psn-ahead", ServerPlan{1, kMessageBytes, 0, IBV_QPS_RTS}, [](Expect& e, const ServerSeen& seen) {
    e.that(seen.recvs.empty(), "a RECV completed although every packet was out of sequence");
    e.qp_state(seen.qp_state, IBV_QPS_RTS);
    explain("server", "", "",
            "announce the PSN the QP really starts with: the rq_psn of one side must be the sq_psn of the other");
  });
}

/// psn-behind, the client: our first PSN is 1000 behind what the server expects.
int psn_behind_client(Session& s) {
  if (s.impl != Implementation::runtime)
    return one_send_client(s, "psn-behind", kMessageBytes, IBV_WC_SUCCESS,
                           "one round trip: the server takes the SEND for a resend of one it already has and ACKs "
                           "it without delivering it, with PSN 0xffffff (rxe's last-ACKed PSN starts at 0 on a new "
                           "QP); rxe's requester takes an ACK up to 2^23 PSNs ahead of its request as covering it: "
                           "the SEND completes successfully and the message is lost",
                           "SEND (PSN p-1000), ACK (PSN 0xffffff)");
  return one_send_client(s, "psn-behind", kMessageBytes, IBV_WC_RETRY_EXC_ERR,
                         "the server ACKs each try with PSN p-1, the last it received; the runtime ignores an ACK "
                         "for a PSN it never sent, and resends until retry_cnt runs out",
                         "SEND (PSN p-1000), ACK (PSN p-1), the same pair 1 + retry_cnt times");
}

int psn_behind_server(Session& s) {
  return ordinary_server(s, "psn-behind", ServerPlan{1, kMessageBytes, 0, IBV_QPS_RTS}, [](Expect& e, const ServerSeen& seen) {
    e.that(seen.recvs.empty(), "a RECV completed although the SEND's PSN was behind");
    e.qp_state(seen.qp_state, IBV_QPS_RTS);
    explain("server", "", "",
            "announce the PSN the QP really starts with; and a completion says only that the responder ACKed: "
            "an end-to-end check (lesson 02's DONE) catches a message that never arrived");
  });
}

/// before-rtr: the server says READY while its QP is still in INIT; packets that arrive
/// then are dropped; it moves to RTR when we tell it, and our next resend lands.
constexpr double kEarlyWatch_s = 0.5;

int early_client(Session& s) {
  client_connect(s);
  const Stopwatch clock;
  post_send_msg(s, 1, kMessageBytes);
  const std::optional<ibv_wc> early = poll_one("client", s.send_cq.get(), kEarlyWatch_s, clock);
  LOG(data, "step 5: client: telling the server to move its QP to RTR now");
  s.channel->send(common::encode_ready(), s.timeout());
  const std::optional<ibv_wc> wc = poll_one("client", s.send_cq.get(), s.timeout(), clock);
  const double took = clock.seconds();
  const double each = ack_timeout_s(s.setup.timeout);
  char why[300];
  std::snprintf(why, sizeof why,
                "the first SEND reached a QP in INIT, which drops it without an answer; the resend after one ACK "
                "timeout (timeout %u = %.2f s) found the QP in RTR (measured %.2f s)",
                s.setup.timeout, each, took);
  explain("client", why, "SEND (PSN p), nothing, the same SEND again after the timeout, ACK",
          "move the QP to RTR (and post RECVs) before telling the peer it may send");
  Expect expect("client");
  expect.none(early, "the SEND, while the server's QP was in INIT");
  expect.status(wc, IBV_WC_SUCCESS, "the SEND");
  expect.that(took >= 0.9 * each, "the SEND completed after " + std::to_string(took) +
                                      " s, before one ACK timeout: no resend was needed");
  expect.within(took, each);
  client_finish(s);
  return expect.verdict("before-rtr");
}

int early_server(Session& s) {
  post_recv_at(s, 0, kMessageBytes);
  LOG(slow, "step 4: server: RECV posted, QP still in INIT; saying READY too early");
  s.channel->send(common::encode_ready(), s.timeout());
  s.channel->receive_ready(s.timeout());
  connect_session(s);
  const Stopwatch clock;
  const std::optional<ibv_wc> wc = poll_one("server", s.recv_cq.get(), s.timeout(), clock);
  s.channel->receive_done(s.timeout());
  Expect expect("server");
  expect.status(wc, IBV_WC_SUCCESS, "the RECV");
  s.channel->send(common::encode_done(), s.timeout());
  return expect.verdict("before-rtr");
}

/// modify-missing-attr: INIT -> RTR without IBV_QP_DEST_QPN in the mask; then the right
/// call, and one SEND to show the remedy works.
int missing_attr_client(Session& s) {
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_RTR;
  attr.path_mtu = std::min(s.port.attr.active_mtu, s.peer.qp.mtu);
  attr.dest_qp_num = s.peer.qp.qpn;
  attr.rq_psn = s.peer.qp.psn;
  attr.max_dest_rd_atomic = 1;
  attr.min_rnr_timer = 12;
  attr.ah_attr.is_global = 1;
  attr.ah_attr.grh.dgid = s.peer.qp.gid;
  attr.ah_attr.grh.sgid_index = static_cast<std::uint8_t>(s.port.gid.index);
  attr.ah_attr.grh.hop_limit = 64;
  attr.ah_attr.port_num = s.port.port;
  const int mask = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | /* IBV_QP_DEST_QPN forgotten */ IBV_QP_RQ_PSN |
                   IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
  LOG(slow, "step 4: client: ibv_modify_qp(INIT -> RTR) with every required attribute but IBV_QP_DEST_QPN");
  const Stopwatch clock;
  const int err = ibv_modify_qp(s.qp.get(), &attr, mask);
  report_call("client", "ibv_modify_qp(INIT -> RTR) without IBV_QP_DEST_QPN", err, clock);
  const ibv_qp_state state = report_qp_state("client", s.qp.get());
  explain("client", "immediate: the attribute mask is checked against the spec's table before anything changes",
          "nothing", "name every required attribute in the mask (common/qp_state.cpp lists them per transition)");
  Expect expect("client");
  expect.call(err, EINVAL, "ibv_modify_qp without IBV_QP_DEST_QPN");
  expect.qp_state(state, IBV_QPS_INIT);
  LOG(slow, "step 7: client: the remedy: the same transition with the whole mask, then one SEND");
  client_connect(s);
  post_send_msg(s, 1, kMessageBytes);
  const std::optional<ibv_wc> wc = poll_one("client", s.send_cq.get(), s.timeout(), clock);
  expect.status(wc, IBV_WC_SUCCESS, "the SEND after the remedy");
  expect.within(clock.seconds(), 0);  // an immediate refusal, then one round trip
  client_finish(s);
  return expect.verdict("modify-missing-attr");
}

int missing_attr_server(Session& s) {
  return ordinary_server(s, "modify-missing-attr", ServerPlan{1, kMessageBytes, 1, IBV_QPS_RTS},
                         [](Expect& e, const ServerSeen& seen) {
                           e.that(seen.recvs.size() == 1, "the RECV did not complete once");
                           if (!seen.recvs.empty()) e.status(seen.recvs.front(), IBV_WC_SUCCESS, "the RECV");
                         });
}

}  // namespace

/// The cases of this file, in the README's order (declared in cases.hpp).
std::vector<Case> connect_cases() {
  Setup gid;
  gid.client_ipv6_gid = true;
  Setup mtu;
  mtu.client_path_mtu = IBV_MTU_4096;
  mtu.server_path_mtu = IBV_MTU_1024;
  mtu.retry_cnt = 3;
  Setup ahead;
  ahead.client_psn_shift = 1000;
  ahead.retry_cnt = 3;
  Setup behind;
  behind.client_psn_shift = -1000;
  behind.client_psn_upper_half = true;
  behind.retry_cnt = 3;
  Setup early;
  early.connect_server = false;
  early.timeout = 18;  // 1.07 s: no resend, and so no give-up, within the 0.5 s watch
  const Setup missing;
  return {
      {"gid-kinds", "the client's GID is IPv6 link-local, the server's IPv4", "both: ibv_modify_qp(RTR) EINVAL", gid,
       gid_client, gid_server},
      {"path-mtu", "the client's path MTU is 4096, the server's is 1024 (its port's active MTU in the lab)",
       "kernel rxe: nothing ever completes (on one host: nothing is noticed); the runtime: client "
       "IBV_WC_REM_INV_REQ_ERR", mtu, path_mtu_client, path_mtu_server},
      {"psn-ahead", "the client starts 1000 PSNs after the one it announced",
       "client: IBV_WC_RETRY_EXC_ERR after a sequence NAK", ahead, psn_ahead_client, psn_ahead_server},
      {"psn-behind", "the client starts 1000 PSNs before the one it announced",
       "kernel rxe: the SEND succeeds, the server never sees it; the runtime: client IBV_WC_RETRY_EXC_ERR", behind, psn_behind_client, psn_behind_server},
      {"before-rtr", "the server says READY while its QP is still in INIT",
       "nothing fails: the first SEND is dropped, its resend lands", early, early_client, early_server},
      {"modify-missing-attr", "INIT -> RTR without IBV_QP_DEST_QPN in the attribute mask",
       "client: ibv_modify_qp EINVAL", missing, missing_attr_client, missing_attr_server},
  };
}

}  // namespace lesson07
