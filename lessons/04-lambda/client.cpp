/**
 * @file lessons/04-lambda/client.cpp
 * @brief Lesson 04 client: ship functions to the server's data, by name or as bytecode,
 *        and (with --compare) fetch the data instead to see what shipping saved.
 *
 * Each task becomes one request: built in local memory, RDMA WRITE_WITH_IMM'd into the
 * server's request region (the immediate value is the request id), answered by the
 * server with an RDMA WRITE_WITH_IMM into our reply buffer, which completes the RECV we
 * posted for it.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/cm.hpp"
#include "common/completion.hpp"
#include "common/device.hpp"
#include "common/dump.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/net.hpp"
#include "common/options.hpp"
#include "common/private_data.hpp"
#include "common/rdma_ops.hpp"
#include "bytecode/assembler.hpp"
#include "lesson04.hpp"
#include "protocol.hpp"
#include "bytecode/vm.hpp"

namespace {

using Clock = std::chrono::steady_clock;

/// wr_id of the one RECV kept posted for the next answer, and of our WRITEs and READ.
constexpr std::uint64_t kReplyRecvWrId = 1000000;
constexpr std::uint64_t kFetchWrId = 1000001;

/// One thing to run on the server: a catalogue call or a program, with arguments.
struct Task {
  std::string label;                  ///< what the user wrote ("sum", "programs/sum.lasm:500")
  lambda::Kind kind = lambda::Kind::call;
  std::uint32_t function = 0;         ///< for a call
  std::vector<lambda::Insn> program;  ///< for a program (assembled here, verified there)
  std::int64_t args[4] = {0, 0, 0, 0};
};

struct ClientOptions {
  std::string server;
  std::vector<std::string> runs;  ///< --run SPEC, in order
  std::uint32_t slots = 16;       ///< output slots asked for
  std::uint32_t steps = 0;        ///< step budget asked for (0: the server's)
  bool compare = false;           ///< also fetch the data and compute locally
  double connect_timeout_s = 30;
};

/// The largest program file read: a program has at most lambda::kMaxInsns (256)
/// instructions, one per line; this leaves room for comments, and bounds what a typo
/// like `-r /dev/zero` can make us read.
constexpr std::size_t kMaxProgramFileBytes = 64 * 1024;
/// How long reading a program may take (a pipe, `-r <(generate)`, whose writer stalls).
constexpr double kProgramReadSeconds = 10;

/// @p text as it may appear in a message: control bytes shown as '.', at most 200 bytes.
std::string shown(const std::string& text) { return common::printable(text.data(), text.size(), 200); }

/// The text of the assembly file @p path: a regular file, a pipe or a device, read
/// through one descriptor (so what is checked is what is read), at most
/// kMaxProgramFileBytes, with no NUL or control bytes (so the assembler's messages quote
/// text, not raw bytes). @throws common::Error naming what is wrong.
std::string read_program_file(const std::string& path, const std::string& spec) {
  const std::string what = "--run '" + shown(spec) + "': '" + shown(path) + "'";
  const std::string remedy = "catalogue: sum, min, max, count_lt:X, histogram:WIDTH:BUCKETS; or a .lasm file "
                             "(lessons/04-lambda/programs/)";
  const std::string too_big = "a program is at most " + std::to_string(lambda::kMaxInsns) + " instructions, one per line";
  // O_NONBLOCK: opening a FIFO that has no writer must not block; reads wait in poll().
  const common::Fd fd{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
  if (fd.get() < 0)
    common::fail(what + " is neither a catalogue function nor a readable file (" + common::errno_text(errno) + ")",
                 remedy);
  struct stat st{};
  common::check_rc(::fstat(fd.get(), &st), "fstat", "");
  if (S_ISDIR(st.st_mode)) common::fail(what + " is a directory, not a program file", remedy);
  if (S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) > kMaxProgramFileBytes)
    common::fail(what + " has " + std::to_string(st.st_size) + " bytes; a program file has at most " +
                     std::to_string(kMaxProgramFileBytes),
                 too_big);
  std::string text;
  const auto deadline = common::net::deadline_after(kProgramReadSeconds);
  char chunk[4096];
  for (;;) {
    if (!common::net::wait_fd(fd.get(), POLLIN, deadline))
      common::fail(what + " gave no more bytes within " + common::net::seconds_text(kProgramReadSeconds),
                   "is the program that writes it stuck?");
    const ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) common::fail(what + " cannot be read: " + common::errno_text(errno), remedy);
    if (n == 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
    if (text.size() > kMaxProgramFileBytes)
      common::fail(what + " has more than " + std::to_string(kMaxProgramFileBytes) + " bytes", too_big);
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    // Text: the assembler's spaces (\t \n \v \f \r), printable ASCII, and any byte of
    // 0x80 and up (UTF-8 in a comment). NUL, other control bytes and DEL are not.
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && (c < '\t' || c > '\r')) || c == 0x7f) {
      char where[80];
      std::snprintf(where, sizeof where, "control byte 0x%02x at offset %zu", c, i);
      common::fail(what + " is not an assembly text file (" + where + ")",
                   "give a .lasm file of text (lessons/04-lambda/programs/)");
    }
  }
  return text;
}

/// Step 1: turn "NAME_OR_FILE[:ARG...]" into a task. A name from the catalogue is a call;
/// anything else is a file of assembly, assembled here. @throws common::Error.
Task parse_task(const std::string& spec) {
  Task t;
  t.label = spec;
  // Split at every ':' by hand: std::getline would drop a trailing empty field, and
  // "count_lt:" would silently mean count_lt:0.
  std::vector<std::string> fields{""};
  for (const char c : spec) {
    if (c == ':') fields.emplace_back();
    else fields.back() += c;
  }
  const std::string head = fields.front();
  const std::string what = "--run '" + shown(spec) + "'";
  if (head.empty()) common::fail(what + ": no function or file name", "e.g. --run sum");
  if (fields.size() > 5) common::fail(what + ": more than 4 arguments", "a function takes at most 4 arguments");
  for (std::size_t i = 1; i < fields.size(); ++i) {
    const std::string& arg = fields[i];
    try {
      // Base 10: "010" is ten, as a reader expects, not octal eight.
      std::size_t used = 0;
      t.args[i - 1] = std::stoll(arg, &used, 10);
      if (used != arg.size() || arg.empty()) throw std::invalid_argument(arg);
    } catch (const std::exception&) {
      common::fail(what + ": argument " + std::to_string(i) +
                       (arg.empty() ? " is empty" : " '" + shown(arg) + "' is not a decimal integer"),
                   "e.g. --run count_lt:500");
    }
  }
  if (const auto f = lambda::function_by_name(head)) {
    t.kind = lambda::Kind::call;
    t.function = static_cast<std::uint32_t>(*f);
    return t;
  }
  const std::string text = read_program_file(head, spec);
  try {
    t.program = lambda::assemble(text);
  } catch (const lambda::AsmError& e) {
    common::fail(shown(head) + ": " + e.what(), "fix the assembly; the syntax is in lessons/04-lambda/bytecode/README.md");
  }
  if (t.program.empty())
    common::fail(what + ": '" + shown(head) + "' has no instructions",
                 "a program ends with exit; see lessons/04-lambda/programs/");
  t.kind = lambda::Kind::program;
  return t;
}

/// What one round trip gave, and what it cost.
struct Outcome {
  lambda::Response response;
  std::size_t bytes_sent = 0;
  std::size_t bytes_received = 0;
  double ms = 0;
};

/// Post the RECV that the next answer's WRITE_WITH_IMM will complete.
void post_reply_recv(common::CmClient& c) {
  ibv_recv_wr wr{};
  wr.wr_id = kReplyRecvWrId;
  ibv_recv_wr* bad = nullptr;
  common::check_rc(ibv_post_recv(c.res.get(), &wr, &bad), "ibv_post_recv", "");
}

int run_client(const common::Options& opts, const ClientOptions& copts) {
  std::vector<Task> tasks;
  for (const std::string& spec : copts.runs) tasks.push_back(parse_task(spec));
  if (tasks.empty()) tasks.push_back(parse_task("sum"));

  // Step 3: connect (as in lessons 02 and 03). initiator_depth 1: --compare READs.
  LOG(slow, "step 3: connect to %s:%u with RDMA CM (%zu task(s))", copts.server.c_str(), opts.port, tasks.size());
  common::ConnectParams params;
  params.private_data = common::encode_connect({static_cast<std::uint32_t>(lambda::kMaxRequestBytes),
                                                static_cast<std::uint32_t>(tasks.size())});
  params.initiator_depth = 1;
  params.sizes = {2, 1};
  common::CmClient c = common::connect_to(copts.server, opts.port, params, copts.connect_timeout_s);
  const common::RegionsAdvert remote = common::decode_regions(c.private_data.data(), c.private_data.size());
  LOG(slow, "step 6: private data: dataset addr=0x%llx rkey=0x%08x length=%u; request region addr=0x%llx "
            "rkey=0x%08x length=%u",
      static_cast<unsigned long long>(remote.data.addr), remote.data.rkey, remote.data.length,
      static_cast<unsigned long long>(remote.request.addr), remote.request.rkey, remote.request.length);

  // Our memory: requests are built in `outgoing`; answers land in `reply`, which the
  // server writes with RDMA (REMOTE_WRITE, and only this buffer).
  std::vector<std::uint8_t> outgoing(lambda::kMaxRequestBytes + 8, 0);
  std::vector<std::uint8_t> reply(lambda::kMaxResponseBytes, 0);
  common::Mr out_mr(common::check_ptr(ibv_reg_mr(c.res.pd.get(), outgoing.data(), outgoing.size(), 0), "ibv_reg_mr",
                                      common::reg_mr_remedy()));
  common::Mr reply_mr(common::check_ptr(ibv_reg_mr(c.res.pd.get(), reply.data(), reply.size(),
                                                   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE),
                                        "ibv_reg_mr", common::reg_mr_remedy()));
  LOG(slow, "step 6: reply buffer: addr=0x%llx rkey=0x%08x length=%zu (REMOTE_WRITE: the server answers into it)",
      static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(reply.data())), reply_mr->rkey, reply.size());
  post_reply_recv(c);

  std::vector<Outcome> outcomes;
  unsigned refused = 0;
  for (std::uint32_t k = 1; k <= tasks.size(); ++k) {
    const Task& task = tasks[k - 1];
    const bool detail = k > 1;
    // Step 7: the request, explicit and big-endian (protocol.hpp).
    lambda::Request req;
    req.kind = task.kind;
    req.id = k;
    req.function = task.function;
    if (task.kind == lambda::Kind::program) req.program = lambda::encode(task.program);
    std::copy(std::begin(task.args), std::end(task.args), req.args);
    req.reply_addr = reinterpret_cast<std::uintptr_t>(reply.data());
    req.reply_rkey = reply_mr->rkey;
    req.reply_length = static_cast<std::uint32_t>(reply.size());
    req.out_slots = copts.slots;
    req.step_budget = copts.steps;
    const std::vector<std::uint8_t> bytes = lambda::encode_request(req);
    if (bytes.size() > remote.request.length || bytes.size() > outgoing.size())
      common::fail("task " + task.label + ": a request of " + std::to_string(bytes.size()) +
                       " bytes does not fit the server's " + std::to_string(remote.request.length) + "-byte region",
                   "ship a shorter program");
    std::memcpy(outgoing.data(), bytes.data(), bytes.size());
    if (task.kind == lambda::Kind::program)
      LOG(data, "step 7: request %u: program %s, %zu instructions (%zu bytes of bytecode), args %lld %lld", k,
          task.label.c_str(), task.program.size(), req.program.size(), static_cast<long long>(task.args[0]),
          static_cast<long long>(task.args[1]));
    else
      LOG(data, "step 7: request %u: call %s(%lld, %lld) by name", k, lambda::function_name(task.function),
          static_cast<long long>(task.args[0]), static_cast<long long>(task.args[1]));
    LOG(data, "step 7: post RDMA_WRITE_WITH_IMM len=%zu to the request region, imm_data=%u", bytes.size(), k);
    const auto start = Clock::now();
    common::post_rdma(c.res.get(), IBV_WR_RDMA_WRITE_WITH_IMM, k, {reinterpret_cast<std::uintptr_t>(outgoing.data()),
                                            static_cast<std::uint32_t>(bytes.size()), out_mr->lkey},
         remote.request.addr, remote.request.rkey, htonl(k), detail);

    // Step 11: two completions, in either order: our WRITE (the server's device has the
    // request) and the RECV that the server's answer completes.
    bool written = false, answered = false;
    std::uint32_t answer_len = 0;
    while (!written || !answered) {
      const ibv_wc wc = common::wait_for_completion(c.res.cq.get(), opts.timeout_s,
                                                    "the answer to request " + std::to_string(k));
      common::dump_wc(wc, detail);
      if (wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
        if (ntohl(wc.imm_data) != k)
          common::fail("the answer carries id " + std::to_string(ntohl(wc.imm_data)) + ", expected " + std::to_string(k),
                       "answers must come in order; report this with both logs");
        answered = true;
        answer_len = wc.byte_len;
      } else {
        written = true;
      }
    }
    Outcome o;
    o.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    o.bytes_sent = bytes.size();
    o.bytes_received = answer_len;
    std::string error;
    const auto response = lambda::decode_response(std::span(reply.data(), std::min<std::size_t>(answer_len, reply.size())), error);
    if (!response) common::fail("answer " + std::to_string(k) + " is malformed: " + error, "check the server's version");
    o.response = *response;
    post_reply_recv(c);
    const lambda::Response& r = o.response;
    std::string slots;
    for (std::int64_t v : r.out) slots += (slots.empty() ? "" : " ") + std::to_string(v);
    if (r.status == lambda::Status::ok) {
      LOG(data, "step 11: answer %u: result %lld after %llu steps, %zu slot(s), %.3f ms", k,
          static_cast<long long>(r.result), static_cast<unsigned long long>(r.steps), r.out.size(), o.ms);
      std::printf("client: %s = %lld%s%s%s (%llu steps)\n", task.label.c_str(), static_cast<long long>(r.result),
                  slots.empty() ? "" : ", slots [", slots.c_str(), slots.empty() ? "" : "]",
                  static_cast<unsigned long long>(r.steps));
    } else {
      ++refused;
      // The detail names the failing instruction itself when there is one (r.pc carries
      // it too); a refusal of the whole program (empty, not a multiple of 8 bytes, too
      // long) has none; falls_off_end and step_limit name it in their own words.
      LOG(warn, "step 11: answer %u: %s: %s", k, lambda::status_name(r.status), r.detail.c_str());
      std::printf("client: %s refused: %s (status %d): %s\n", task.label.c_str(), lambda::status_name(r.status),
                  static_cast<int>(r.status), r.detail.c_str());
    }
    outcomes.push_back(o);
  }

  if (copts.compare) {
    // Step 12: the other way: fetch the whole dataset with one RDMA READ and compute here.
    std::vector<std::uint8_t> copy(remote.data.length, 0);
    common::Mr copy_mr(common::check_ptr(ibv_reg_mr(c.res.pd.get(), copy.data(), copy.size(), IBV_ACCESS_LOCAL_WRITE),
                                         "ibv_reg_mr", common::reg_mr_remedy()));
    LOG(data, "step 12: post RDMA_READ len=%u: fetch the whole dataset to compare", remote.data.length);
    const auto start = Clock::now();
    common::post_rdma(c.res.get(), IBV_WR_RDMA_READ, kFetchWrId, {reinterpret_cast<std::uintptr_t>(copy.data()), remote.data.length,
                                           copy_mr->lkey},
         remote.data.addr, remote.data.rkey, 0, false);
    common::wait_for_completion(c.res.cq.get(), opts.timeout_s, "the READ of the dataset");
    const double fetch_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    for (std::size_t k = 0; k < tasks.size(); ++k) {
      const Task& task = tasks[k];
      const Outcome& o = outcomes[k];
      const auto t0 = Clock::now();
      std::array<std::int64_t, lambda::kMaxOut> slots{};
      const std::span<std::int64_t> out(slots.data(), copts.slots);
      lambda::RunResult local;
      if (task.kind == lambda::Kind::call) {
        local = lambda::call_function(task.function, task.args, copy, out);
      } else {
        std::vector<lambda::Insn> verified;
        const lambda::Verdict v = lambda::verify(lambda::encode(task.program), verified);
        local.status = v.status;
        if (v.status == lambda::Status::ok)
          local = lambda::run(verified, task.args, copy, out, copts.steps ? copts.steps : 1'000'000);
      }
      const double local_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      const std::vector<std::int64_t> local_out(slots.begin(), slots.begin() + std::min<std::size_t>(local.out_used, copts.slots));
      const bool same = local.status == o.response.status &&
                        (local.status != lambda::Status::ok || (local.r0 == o.response.result && local_out == o.response.out));
      if (!same)
        common::fail("task " + task.label + ": the server answered " + lambda::status_name(o.response.status) + " " +
                         std::to_string(o.response.result) + ", computing on the fetched data gives " +
                         lambda::status_name(local.status) + " " + std::to_string(local.r0),
                     "the server and the client disagree; report this with both logs");
      std::printf("compare: %s: shipped the function: %zu B request + %zu B answer, %.3f ms; fetched the data: "
                  "%u B READ, %.3f ms + %.3f ms to compute here; same answer\n",
                  task.label.c_str(), o.bytes_sent, o.bytes_received, o.ms, remote.data.length, fetch_ms, local_ms);
    }
  }

  // Step 13: disconnect.
  LOG(slow, "step 13: rdma_disconnect");
  common::check_rc(rdma_disconnect(c.id.get()), "rdma_disconnect", "");
  common::expect_cm_event(c.channel.get(), RDMA_CM_EVENT_DISCONNECTED, opts.timeout_s, "DISCONNECTED");
  std::printf("client: %zu task(s), %u refused or stopped by the server\n", tasks.size(), refused);
  return refused ? 3 : 0;
}

}  // namespace

/// Step 1: parse the command line, then run steps 3-13.
int main(int argc, char** argv) {
  common::Options opts;
  opts.port = lesson04::kDefaultPort;
  ClientOptions copts;
  CLI::App app{"Lesson 04 client: ship functions to the server's data, by name or as verified bytecode.",
               "client"};
  app.add_option("server", copts.server, "the server's IP address")->required();
  common::add_common_options(app, opts);
  app.get_option("--port")->description("the server's RDMA CM port");
  app.add_option("-r,--run", copts.runs,
                 "what to run, in order: a catalogue function (sum, min, max, count_lt:X, histogram:WIDTH:BUCKETS) "
                 "or a bytecode file with arguments (programs/count_lt.lasm:500); default: sum");
  app.add_option("--slots", copts.slots, "output slots to ask for")
      ->check(CLI::Range(0u, static_cast<unsigned>(lambda::kMaxOut)))->capture_default_str();
  app.add_option("--steps", copts.steps, "step budget to ask for (0: the server's)");
  app.add_flag("--compare", copts.compare, "also fetch the whole dataset with RDMA READ, compute here, compare");
  app.add_option("--connect-timeout", copts.connect_timeout_s, "seconds to keep retrying while nobody listens")
      ->check(common::seconds_between(0.0, 86400.0))->capture_default_str();
  if (const auto code = common::parse_options(app, opts, argc, argv)) return *code;
  LOG(slow, "step 1: client for %s:%u", copts.server.c_str(), opts.port);
  return common::run_main([&] { return run_client(opts, copts); });
}
