/**
 * @file lessons/05-tls-psn/client.cpp
 * @brief Lesson 05 client: verify the server over TLS 1.3, exchange QP details with
 *        random PSNs, connect an RC QP, then `send`, `write`, `read` and `quit`.
 *
 * Commands come from -e (scripted) or, without -e, from standard input, one per line:
 *   send TEXT      a two-sided SEND; the server acknowledges with a SEND of its own
 *   write TEXT     a one-sided RDMA WRITE into this client's slot on the server
 *   read           an RDMA READ of the slot, checked against the last write
 *   quit           a zero-length SEND (goodbye), then close
 * and three a misbehaving ("rogue") client would try, to show the isolation: the
 * server's device must refuse each with a NAK, which ends the session.
 *   write-past TEXT          an RDMA WRITE that starts one byte past our slot
 *   write-at ADDR RKEY TEXT  an RDMA WRITE to any address with any rkey (another
 *                            client's slot, say, as its log shows it)
 *   read-at ADDR RKEY        an RDMA READ of 16 bytes at any address with any rkey
 */
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>

#include "common/completion.hpp"
#include "common/device.hpp"
#include "common/dump.hpp"
#include "common/errors.hpp"
#include "common/exchange.hpp"
#include "common/log.hpp"
#include "common/options.hpp"
#include "common/qp_state.hpp"
#include "common/rdma_ops.hpp"
#include "connection.hpp"
#include "tls.hpp"

namespace {

struct ClientOptions {
  std::string server;                 ///< the server's address or name (verified in its certificate)
  std::vector<std::string> commands;  ///< -e, in order; empty: read standard input
  lesson05::TlsFiles tls;             ///< CA (and, with --mutual, our certificate and key)
  bool mutual = false;                ///< present a client certificate
  unsigned repeat = 1;                ///< run the whole session this many times
  double connect_timeout_s = 30;      ///< how long to retry while the server is not listening
};

/// The state of one session after the exchange.
struct Session {
  lesson05::Connection& conn;
  const common::QpInfo& server;  ///< the server's QPN, PSN and our slot's addr/rkey/length
  lesson05::TlsChannel& tls;
  std::string last_written;      ///< what `write` put in the slot, for `read` to check
  double t;                      ///< the deadline of every wait
  bool refused = false;          ///< a rogue command was refused: the session is over
};

/// Wait until both the posted work request and (if @p want_recv) the server's answer
/// have completed; they may complete in either order. Returns the RECV's length.
/// (The goodbye does not watch the TLS socket: the server's DONE may be waiting there
/// before our SEND's ACK is polled here.)
std::uint32_t wait_both(Session& s, bool want_recv, const std::string& what, bool watch_tls = true) {
  bool sent = false, received = !want_recv;
  std::uint32_t length = 0;
  while (!sent || !received) {
    ibv_wc wc{};
    if (!lesson05::next_completion(s.conn, wc, s.t, what, watch_tls ? s.tls.fd() : -1))
      common::fail("the server closed the connection during " + what, "check the server's log");
    if (wc.status != IBV_WC_SUCCESS)
      common::fail("completion for " + what + " failed: " + ibv_wc_status_str(wc.status),
                   common::wc_status_remedy(wc.status));
    if (wc.opcode == IBV_WC_RECV) {
      received = true;
      length = wc.byte_len;
    } else {
      sent = true;
    }
  }
  return length;
}

/// Step 9, the rogue's way: one RDMA WRITE or READ at @p addr with @p rkey that the
/// server's device must refuse. Our completion must be IBV_WC_REM_ACCESS_ERR (the NAK);
/// then our QP and the server's are in ERR and the session is over.
void try_forbidden(Session& s, ibv_wr_opcode op, std::uint64_t addr, std::uint32_t rkey, const std::string& text,
                   const std::string& what) {
  lesson05::Connection& c = s.conn;
  ibv_sge sge{};
  if (op == IBV_WR_RDMA_WRITE) {
    const std::size_t n = std::min<std::size_t>(text.size() + 1, c.size);
    std::memcpy(c.send_area(), text.c_str(), n);
    sge = {reinterpret_cast<std::uintptr_t>(c.send_area()), static_cast<std::uint32_t>(n), c.local_mr->lkey};
  } else {
    sge = {reinterpret_cast<std::uintptr_t>(c.read_area()), 16, c.local_mr->lkey};
  }
  LOG(warn, "step 9: %s: RDMA %s %u bytes at addr=0x%llx rkey=0x%08x, outside what the server gave us", what.c_str(),
      op == IBV_WR_RDMA_WRITE ? "WRITE" : "READ", sge.length, static_cast<unsigned long long>(addr), rkey);
  common::post_rdma(c.qp.get(), op, op == IBV_WR_RDMA_WRITE ? lesson05::kWriteWrId : lesson05::kReadWrId, sge, addr,
                    rkey, 0, false);
  ibv_wc wc{};
  if (!lesson05::next_completion(c, wc, s.t, what, -1))
    common::fail("no completion for " + what, "check the server's log");
  common::dump_wc(wc);
  if (wc.status == IBV_WC_SUCCESS)
    common::fail(what + " succeeded: the server let this client touch memory outside its slot",
                 "isolation is broken: the server must give each client its own PD and remote rights on its slot "
                 "only; report this with both logs");
  if (wc.status != IBV_WC_REM_ACCESS_ERR)
    common::fail(what + " failed with " + ibv_wc_status_str(wc.status) + ", not with a remote access error",
                 common::wc_status_remedy(wc.status));
  LOG(info, "step 9: %s refused by the server's device: NAK (remote access error) on the wire, "
            "IBV_WC_REM_ACCESS_ERR here; our QP is in %s, the server's too: the session is over",
      what.c_str(), common::qp_state_name(common::query_qp_state(c.qp.get())));
  std::printf("client: %s: refused by the server's device (IBV_WC_REM_ACCESS_ERR), as it must\n", what.c_str());
  s.refused = true;
}

/// Parse "0x7f00..." or a decimal number; @throws common::Error naming @p what.
std::uint64_t parse_number(const std::string& word, const char* what) {
  try {
    std::size_t used = 0;
    const std::uint64_t v = std::stoull(word, &used, 0);
    if (used == word.size()) return v;
  } catch (const std::exception&) {
  }
  common::fail(std::string(what) + " '" + word + "' is not a number", "e.g. write-at 0x7f1234560000 0x1a2b hello");
}

/// Step 9: one command. Returns false for quit, or after a rogue command was refused.
bool run_command(Session& s, const std::string& line) {
  const std::string verb = line.substr(0, line.find(' '));
  const std::string text = line.find(' ') == std::string::npos ? "" : line.substr(line.find(' ') + 1);
  lesson05::Connection& p = s.conn;
  if (verb == "quit") return false;
  if (verb == "write-past") {
    // One byte past the end of our slot, with our own valid rkey: outside the MR's bounds.
    try_forbidden(s, IBV_WR_RDMA_WRITE, s.server.addr + s.server.length, s.server.rkey, text.empty() ? "x" : text,
                  "write-past");
    return false;
  }
  if (verb == "write-at" || verb == "read-at") {
    std::istringstream words(text);
    std::string addr, rkey, rest;
    words >> addr >> rkey;
    std::getline(words >> std::ws, rest);
    if (rkey.empty() || (verb == "write-at" && rest.empty()))
      common::fail(verb + " needs ADDR RKEY" + (verb == "write-at" ? " TEXT" : ""),
                   "e.g. " + verb + " 0x7f1234560000 0x1a2b" + (verb == "write-at" ? " hello" : ""));
    try_forbidden(s, verb == "write-at" ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ, parse_number(addr, "ADDR"),
                  static_cast<std::uint32_t>(parse_number(rkey, "RKEY")), rest, verb);
    return false;
  }
  if (verb == "send") {
    if (text.empty() || text.size() > p.size)
      common::fail("send needs 1.." + std::to_string(p.size) + " bytes of text, got " + std::to_string(text.size()),
                   "e.g. send hello");
    std::memcpy(p.send_area(), text.data(), text.size());
    LOG(data, "step 8: send %zu bytes (two-sided: the server's RECV takes them)", text.size());
    lesson05::post_send(p, static_cast<std::uint32_t>(text.size()));
    const std::uint32_t n = wait_both(s, true, "send '" + text + "'");
    const std::string ack(p.recv_area(), n);
    lesson05::post_recv(p);
    const std::string expected = "ack " + std::to_string(text.size()) + " bytes";
    if (ack.rfind(expected, 0) != 0) common::fail("the server answered '" + ack + "'", "expected '" + expected + " ...'");
    std::printf("client: send '%s': server says '%s'\n", text.c_str(), ack.c_str());
    return true;
  }
  if (verb == "write") {
    // The text and a terminating zero go to the start of our slot on the server.
    if (text.empty() || text.size() + 1 > s.server.length)
      common::fail("write needs 1.." + std::to_string(s.server.length - 1) + " bytes of text, got " +
                       std::to_string(text.size()),
                   "e.g. write hello");
    std::memcpy(p.send_area(), text.c_str(), text.size() + 1);
    LOG(data, "step 9: RDMA WRITE %zu bytes to slot addr=0x%llx rkey=0x%08x (one-sided: no server application code)",
        text.size() + 1, static_cast<unsigned long long>(s.server.addr), s.server.rkey);
    const ibv_sge sge{reinterpret_cast<std::uintptr_t>(p.send_area()), static_cast<std::uint32_t>(text.size() + 1),
                      p.local_mr->lkey};
    common::post_rdma(p.qp.get(), IBV_WR_RDMA_WRITE, lesson05::kWriteWrId, sge, s.server.addr, s.server.rkey, 0, true);
    wait_both(s, false, "write '" + text + "'");
    s.last_written = text;
    std::printf("client: write '%s': %zu bytes in my slot on the server\n", text.c_str(), text.size() + 1);
    return true;
  }
  if (verb == "read") {
    // The READ lands in our own third area (the first holds the posted RECV).
    LOG(data, "step 9: RDMA READ %u bytes from slot addr=0x%llx", s.server.length,
        static_cast<unsigned long long>(s.server.addr));
    const ibv_sge sge{reinterpret_cast<std::uintptr_t>(p.read_area()), std::min(s.server.length, p.size),
                      p.local_mr->lkey};
    common::post_rdma(p.qp.get(), IBV_WR_RDMA_READ, lesson05::kReadWrId, sge, s.server.addr, s.server.rkey, 0, true);
    wait_both(s, false, "read");
    const std::string got(p.read_area(), strnlen(p.read_area(), sge.length));
    if (!s.last_written.empty() && got != s.last_written)
      common::fail("read back '" + got + "', but wrote '" + s.last_written + "'", "another writer? report it with both logs");
    std::printf("client: read '%s'%s\n", got.c_str(), s.last_written.empty() ? "" : " (verified)");
    return true;
  }
  common::fail("unknown command '" + verb + "'",
               "commands: send TEXT, write TEXT, read, quit; write-past TEXT, write-at ADDR RKEY TEXT, read-at ADDR RKEY");
}

/// The remedy for the server's ERROR at step 6. The frame holds only the server's words
/// (server.cpp), so the remedy is chosen by which refusal they are: server full, or
/// messages of another size than the server's slots (it names its own -s).
std::string refusal_remedy(const std::string& reason) {
  if (reason.rfind("server full", 0) == 0) return "try again later, or ask for more --max-clients";
  const std::string slots = "this server's slots ";
  unsigned size = 0;
  if (const auto at = reason.find(slots);
      at != std::string::npos && std::sscanf(reason.c_str() + at + slots.size(), "%u", &size) == 1)
    return "run this client with -s " + std::to_string(size) + " (the server's -s)";
  return "the server's reason above says what to change";
}

/// Steps 3-10, once.
void run_session(const common::Options& opts, const ClientOptions& copts, SSL_CTX* ctx, unsigned round) {
  const double t = opts.timeout_s;
  // Step 3: TLS first. If the server's certificate does not verify, we stop here, before
  // opening the RDMA device.
  lesson05::TlsChannel tls = lesson05::TlsChannel::connect(ctx, copts.server, opts.port, copts.connect_timeout_s);
  LOG(slow, "step 3: TLS with %s verified: %s", tls.peer().c_str(), tls.describe().c_str());

  // Step 4: now the RDMA side: device, our PD, buffers and QP, our random PSN.
  const common::OpenPort port = common::open_port(opts.ib_dev, opts.ib_port, opts.gid_idx);
  lesson05::Connection p = lesson05::open_connection(port, opts.size, false);
  LOG(slow, "step 4: QP 0x%06x, our PSN 0x%06x (24 random bits from RAND_bytes)", p.qp->qp_num, p.psn);
  const common::QpInfo ours = lesson05::make_info(port, p);
  lesson05::log_info("step 4: sending QP_INFO", ours);
  tls.send(common::encode_qp_info(ours), t);

  // Step 6: the server's answer: its QP details and our slot, or why it refuses us.
  const common::Message m = tls.receive(t);
  if (m.type == common::MessageType::error) {
    const std::string reason = common::decode_error(m.body);
    common::fail("the server refused us: " + reason, refusal_remedy(reason));
  }
  if (m.type != common::MessageType::qp_info)
    common::fail("expected QP_INFO, got " + common::message_type_name(m.type), "is this the lesson 05 server?");
  const common::QpInfo server = common::decode_qp_info(m.body);
  lesson05::log_info("step 6: received QP_INFO", server);
  // Our WRITEs are staged in, and our READs land in, areas of -s bytes: a slot of another
  // size (a server that does not follow the lesson) must not make us copy past them.
  if (server.length != p.size)
    common::fail("the server offers a slot of " + std::to_string(server.length) + " bytes; our -s is " +
                     std::to_string(p.size),
                 "is this the lesson 05 server? It checks that both sides use the same -s");

  // Step 7: RTR/RTS with the exchanged PSNs, a RECV for the acknowledgements, READY.
  common::connect_qp(p.qp.get(), port, server.qp, p.psn);
  lesson05::post_recv(p);
  LOG(slow, "step 7: QP in RTS: we send from PSN 0x%06x, expect the server's from 0x%06x", p.psn, server.qp.psn);
  const common::Message ready = tls.receive(t);
  if (ready.type == common::MessageType::error) common::fail("the server: " + common::decode_error(ready.body), "");
  if (ready.type != common::MessageType::ready)
    common::fail("expected READY, got " + common::message_type_name(ready.type), "");

  // Steps 8-9: the commands.
  Session s{p, server, tls, "", t};
  unsigned done = 0;
  if (!copts.commands.empty()) {
    for (const std::string& c : copts.commands) {
      ++done;
      if (!run_command(s, c)) break;
    }
  } else {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (line.empty()) continue;
      ++done;
      if (!run_command(s, line)) break;
    }
  }
  if (s.refused) {
    // The QPs on both sides are in ERR: no goodbye can travel. Closing TLS is the last word.
    tls.close();
    LOG(slow, "step 10: session %u ended by the refusal; TLS closed", round);
    std::printf("client: session %u: %u command(s) done, the last one refused\n", round, done);
    return;
  }
  // Step 10: goodbye (a zero-length SEND). Once it completed (the server's device ACKed
  // it), the server's DONE and ours: RC has no close, so TLS says when neither side needs
  // the other's QP any more. Then close TLS; everything is released.
  lesson05::post_send(p, 0);
  wait_both(s, false, "the goodbye", false);
  const common::Message done_msg = tls.receive(t);
  if (done_msg.type != common::MessageType::done)
    common::fail("expected DONE, got " + common::message_type_name(done_msg.type), "is this the lesson 05 server?");
  tls.send(common::encode_done(), t);
  tls.close();
  LOG(slow, "step 10: goodbye sent; session %u done", round);
  std::printf("client: session %u: %u command(s) done\n", round, done);
}

int run_client(const common::Options& opts, const ClientOptions& copts) {
  lesson05::SslCtx ctx = lesson05::make_tls_context(false, copts.tls, false);
  for (unsigned round = 1; round <= copts.repeat; ++round) run_session(opts, copts, ctx.get(), round);
  return 0;
}

}  // namespace

/// Step 1: parse the command line, then run steps 3-10 (--repeat times).
int main(int argc, char** argv) {
  common::Options opts;
  opts.port = lesson05::kDefaultPort;
  opts.size = lesson05::kDefaultSlotSize;
  ClientOptions copts;
  std::string certs = "build/certs";
  CLI::App app{"Lesson 05 client: TLS-verified exchange of random PSNs, then RC SEND / RDMA WRITE / RDMA READ.",
               "client"};
  app.add_option("server", copts.server, "the server's address or name; must match its certificate")->required();
  common::add_common_options(app, opts);
  app.get_option("--port")->description("TCP port of the server's TLS exchange");
  app.get_option("--size")
      ->description("bytes per message and of our slot on the server (the server's -s)")
      ->check(common::size_at_least(lesson05::kMinSlotSize, lesson05::kMinSlotReason));
  app.add_option("-e,--exec", copts.commands,
                 "a command to run (repeatable): 'send TEXT', 'write TEXT', 'read', 'quit'; to see the isolation: "
                 "'write-past TEXT', 'write-at ADDR RKEY TEXT', 'read-at ADDR RKEY'");
  app.add_option("--certs", certs, "directory with ca.pem (and client.pem/client.key for --mutual)")->capture_default_str();
  app.add_option("--ca", copts.tls.ca, "CA certificate that must sign the server's (default: CERTS/ca.pem)");
  app.add_option("--cert", copts.tls.cert, "our certificate for --mutual (default: CERTS/client.pem)");
  app.add_option("--key", copts.tls.key, "our private key for --mutual (default: CERTS/client.key)");
  app.add_flag("--mutual", copts.mutual, "present a client certificate (for a server started with --mutual)");
  app.add_option("--repeat", copts.repeat, "run the whole session this many times (a leak test)")
      ->check(CLI::Range(1u, 100000u))->capture_default_str();
  app.add_option("--connect-timeout", copts.connect_timeout_s, "seconds to keep retrying while nobody listens")
      ->check(common::seconds_between(0.0, 86400.0))->capture_default_str();
  if (const auto code = common::parse_options(app, opts, argc, argv)) return *code;
  if (copts.tls.ca.empty()) copts.tls.ca = certs + "/ca.pem";
  if (copts.mutual && copts.tls.cert.empty()) copts.tls.cert = certs + "/client.pem";
  if (copts.mutual && copts.tls.key.empty()) copts.tls.key = certs + "/client.key";
  LOG(slow, "step 1: client for %s:%u", copts.server.c_str(), opts.port);
  return common::run_main([&] { return run_client(opts, copts); });
}
