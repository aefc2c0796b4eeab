// libFuzzer target for lesson 04's request and response (lessons/04-lambda/protocol.hpp)
// and for what the lesson's server does with a request: execute() in
// lessons/04-lambda/server.cpp decodes it, runs the catalogue function it names
// (call_function) or verifies and interprets its program, and builds the response that
// goes back into the client's reply buffer. Built and run by run_fuzz.sh with ASan +
// UBSan, so an out-of-bounds access, an overflow or a leak is a crash. (The bytecode's
// verifier and interpreter are lambda_fuzz.cpp's subject; here a program only passes
// through them, with a small step budget.)
//
// One input is what a client's RDMA WRITE_WITH_IMM delivers:
//   bytes 0-3   the immediate value (big-endian; the server reads it with ntohl)
//   bytes 4-    the bytes written into the server's request region; the server copies
//               out at most the region's 4096 bytes, and so does the harness
// and it is used two ways:
//  1. As a request, the server's way: decode_request(), then execute() on a private copy,
//     against the dataset of the recorded run (512 elements), then, as serve_one() does
//     when the request names a reply buffer, encode_response().
//  2. As a response, the client's way: decode_response() on the same bytes (at most the
//     client's reply buffer, kMaxResponseBytes).
//
// Besides "no crash", these must hold; a violation traps, which libFuzzer reports like a
// crash:
//   - an accepted request re-encodes to exactly the bytes received, asks for at most
//     kMaxOut slots and names a reply buffer large enough for them; a refused one has a
//     reason, and the reply fields the server answers to are the bytes at 48..63;
//   - the server's response carries the request's id (the immediate value when the
//     request was refused), at most the slots asked for, and encodes to at most
//     kMaxResponseBytes (the staging slot serve_one() copies it into) and at most the
//     reply buffer's length (the client's RDMA-writable buffer);
//   - a catalogue call gives what the function means on the dataset (sum, min, max,
//     count below a threshold, a histogram whose buckets add up to the element count);
//   - the client's decode_response() reads back exactly what the server encoded;
//   - a response decode_response() accepts has at most kMaxOut slots and kMaxDetail bytes
//     of detail, all printable (the client prints it), and re-encodes to the bytes it was
//     read from, but for the reserved bytes, the padding after the detail and the
//     non-printable detail bytes, which the encoder writes as 0, 0 and '?'.
//
// Built with -DFUZZ_SEED_MODE instead, the file is a tool that writes the seed corpus:
// `lesson04_protocol_seed OUT_DIR` writes requests made with encode_request (every
// catalogue function, small programs encoded with lambda::encode) and responses made with
// encode_response. run_fuzz.sh adds the requests and responses recorded in
// captures/04-lambda/lesson04.pcap (capture_seeds.py).

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "lesson04.hpp"
#include "protocol.hpp"

// The server's own execute(), not a copy of it. The macro renames server.cpp's main() to
// an unused function with internal linkage, which the compiler does not emit, and with it
// everything only main() reaches (the CM, the device, the option parser, the signal
// handling): the harness links without any of them, and without a device. (No header
// server.cpp includes uses the name `main` outside comments and strings.)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wunused-function"
// (ibv_reg_mr() is a macro in verbs.h that mixes two enum types; only clang minds.)
#pragma clang diagnostic ignored "-Wdeprecated-enum-enum-conversion"
#define main static lesson04_server_main
#include "server.cpp"
#undef main
#pragma clang diagnostic pop

// The harness's own names live in a namespace of their own, so that they cannot clash
// with server.cpp's (its anonymous namespace is visible here: execute, ServerOptions).
namespace lesson04_fuzz {

using Bytes = std::vector<std::uint8_t>;

constexpr std::size_t kElements = 512;  // the recorded run's --elements

using fuzz_support::check;
using fuzz_support::printable;

std::uint64_t be(std::span<const std::uint8_t> b, std::size_t off, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | b[off + static_cast<std::size_t>(i)];
  return v;
}

const Bytes& dataset() {
  static const Bytes d = lesson04::make_dataset(kElements);
  return d;
}

/// The server's settings: its defaults, but for a small step budget (--steps): a program
/// that loops stops after 10 000 steps instead of a million, so most of the time goes to
/// the request handling.
const ServerOptions& server_options() {
  static const ServerOptions s = [] {
    ServerOptions o;
    o.step_budget = 10'000;
    return o;
  }();
  return s;
}

/// execute() logs a WARN line to stderr for every refused request; at thousands of
/// requests a second that would be most of the work and most of the log. stdio's stderr
/// points at /dev/null meanwhile: the sanitizers and libFuzzer write to descriptor 2
/// directly, so their reports still appear.
lambda::Response execute_quietly(std::span<const std::uint8_t> bytes, std::uint32_t imm, lambda::Request& request) {
  static std::FILE* const null = std::fopen("/dev/null", "w");
  check(null != nullptr);
  std::FILE* const saved = stderr;
  stderr = null;
  lambda::Response r = execute(bytes, imm, dataset(), server_options(), request);
  stderr = saved;
  return r;
}

/// What a catalogue call must give on the dataset.
void check_call(const lambda::Request& req, const lambda::Response& resp) {
  const std::size_t n = dataset().size() / 8;
  const char* name = lambda::function_name(req.function);
  if (name == nullptr) {
    check(resp.status == lambda::Status::unknown_function && resp.out.empty());
    return;
  }
  const auto f = static_cast<lambda::Function>(req.function);
  if (f == lambda::Function::histogram) {
    const std::int64_t width = req.args[0], buckets = req.args[1];
    if (width <= 0 || buckets <= 0 || static_cast<std::uint64_t>(buckets) > req.out_slots) {
      check(resp.status == lambda::Status::bad_request && resp.out.empty());
      return;
    }
    check(resp.status == lambda::Status::ok && resp.result == buckets);
    check(resp.out.size() == static_cast<std::size_t>(buckets));
    std::int64_t total = 0;
    for (const std::int64_t v : resp.out) total += v;
    check(total == static_cast<std::int64_t>(n));  // every element lands in one bucket
    return;
  }
  check(resp.status == lambda::Status::ok && resp.out.empty() && resp.steps == n);
  std::uint64_t sum = 0;
  std::int64_t lo = INT64_MAX, hi = INT64_MIN, below = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t v = lambda::element(dataset(), i);
    sum += static_cast<std::uint64_t>(v);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    below += v < req.args[0] ? 1 : 0;
  }
  switch (f) {
    case lambda::Function::sum: check(resp.result == static_cast<std::int64_t>(sum)); break;
    case lambda::Function::min: check(resp.result == lo); break;
    case lambda::Function::max: check(resp.result == hi); break;
    case lambda::Function::count_lt: check(resp.result == below); break;
    case lambda::Function::histogram: break;
  }
}

std::string shown(const std::string& detail) {
  std::string s = detail.substr(0, lambda::kMaxDetail);
  for (char& c : s)
    if (!printable(static_cast<std::uint8_t>(c))) c = '?';
  return s;
}

/// 1. The bytes as a request, through the server.
void fuzz_server(std::span<const std::uint8_t> bytes, std::uint32_t imm) {
  std::string error;
  lambda::Request partial;  // marked, to see whether decode_request wrote it
  partial.reply_addr = 0x5eed5eed5eed5eed;
  partial.reply_rkey = 0x5eed;
  partial.reply_length = 0x5eed;
  const std::optional<lambda::Request> decoded = lambda::decode_request(bytes, error, &partial);
  if (decoded) {
    check(lambda::encode_request(*decoded) == Bytes(bytes.begin(), bytes.end()));
    check(decoded->out_slots <= lambda::kMaxOut);
    check(decoded->reply_length >= lambda::kResponseHeaderBytes + 8 * std::size_t{decoded->out_slots});
  } else {
    check(!error.empty());
    // The header is readable up to the reply fields when it is long enough and its magic,
    // version, kind and reserved bytes are right; then the server answers the refusal at
    // the reply buffer the bytes name, and otherwise at none.
    const bool readable = bytes.size() >= lambda::kRequestHeaderBytes && be(bytes, 0, 4) == 0x4c4d4251 &&
                          bytes[4] == lambda::kProtocolVersion && (bytes[5] == 1 || bytes[5] == 2) &&
                          be(bytes, 6, 2) == 0;
    if (readable)
      check(partial.reply_addr == be(bytes, 48, 8) && partial.reply_rkey == be(bytes, 56, 4) &&
            partial.reply_length == be(bytes, 60, 4));
    else
      check(partial.reply_addr == 0x5eed5eed5eed5eed && partial.reply_rkey == 0x5eed &&
            partial.reply_length == 0x5eed);
  }

  // The server works on a private copy of its request region (serve_one()).
  const Bytes copy(bytes.begin(), bytes.end());
  lambda::Request request;
  const lambda::Response response = execute_quietly(copy, imm, request);
  check(response.out.size() <= lambda::kMaxOut);
  if (decoded) {
    check(response.id == decoded->id);
    check(response.out.size() <= decoded->out_slots);
    check(request.reply_length == decoded->reply_length && request.out_slots == decoded->out_slots);
    if (decoded->kind == lambda::Kind::call) check_call(*decoded, response);
  } else {
    check(response.id == imm && response.status == lambda::Status::bad_request && !response.detail.empty());
    check(response.out.empty() && request.out_slots == 0);
  }
  if (response.status != lambda::Status::ok) check(!response.detail.empty());

  // serve_one(): a request that names no reply buffer gets no answer; the others get this.
  if (request.reply_length < lambda::kResponseHeaderBytes) return;
  const Bytes answer = lambda::encode_response(response);
  check(answer.size() <= lambda::kMaxResponseBytes);  // the staging slot it is copied into
  check(answer.size() <= request.reply_length);       // the client's reply buffer
  std::string why;
  const std::optional<lambda::Response> back = lambda::decode_response(answer, why);
  check(back.has_value());
  check(back->status == response.status && back->id == response.id && back->pc == response.pc &&
        back->result == response.result && back->steps == response.steps && back->out == response.out &&
        back->detail == shown(response.detail));
}

/// 2. The bytes as a response, through the client's decoder.
void fuzz_client(std::span<const std::uint8_t> reply) {
  std::string error;
  const std::optional<lambda::Response> r = lambda::decode_response(reply, error);
  if (!r) {
    check(!error.empty());
    return;
  }
  check(r->out.size() <= lambda::kMaxOut && r->detail.size() <= lambda::kMaxDetail);
  for (const char c : r->detail) check(printable(static_cast<std::uint8_t>(c)));
  const std::size_t length = lambda::kResponseHeaderBytes + 8 * r->out.size();
  check(reply.size() >= length);
  const Bytes again = lambda::encode_response(*r);
  check(again.size() == length);
  for (std::size_t i = 0; i < length; ++i) {
    std::uint8_t want = reply[i];
    if (i == 6 || i == 7) {
      want = 0;  // reserved
    } else if (i >= 40 && i < 40 + r->detail.size()) {
      want = printable(reply[i]) ? reply[i] : '?';
    } else if (i >= 40 + r->detail.size() && i < lambda::kResponseHeaderBytes) {
      want = 0;  // the padding after the detail
    }
    check(again[i] == want);
  }
}

void fuzz_one(std::span<const std::uint8_t> input) {
  if (input.size() < 4) return;
  const auto imm = static_cast<std::uint32_t>(be(input, 0, 4));
  const std::span<const std::uint8_t> written = input.subspan(4);
  fuzz_server(written.first(std::min(written.size(), kRequestRegionBytes)), imm);
  // The client decodes at most its reply buffer, in a buffer of its own.
  const Bytes reply(written.begin(), written.begin() + static_cast<std::ptrdiff_t>(
                                                          std::min(written.size(), lambda::kMaxResponseBytes)));
  fuzz_client(reply);
}

}  // namespace lesson04_fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  lesson04_fuzz::fuzz_one(std::span<const std::uint8_t>(data, size));
  return 0;
}

#ifdef FUZZ_SEED_MODE
#include <filesystem>

namespace lesson04_fuzz {

void write_seed(const std::filesystem::path& dir, const std::string& name, std::uint32_t imm, const Bytes& bytes) {
  Bytes seed{static_cast<std::uint8_t>(imm >> 24), static_cast<std::uint8_t>(imm >> 16),
             static_cast<std::uint8_t>(imm >> 8), static_cast<std::uint8_t>(imm)};
  seed.insert(seed.end(), bytes.begin(), bytes.end());
  fuzz_support::write_seed_file(dir, name, seed);
}

/// A request as lesson 04's client builds it: reply buffer of kMaxResponseBytes.
lambda::Request request(std::uint32_t id, std::uint32_t out_slots) {
  lambda::Request r;
  r.id = id;
  r.reply_addr = 0x563430f99a10;
  r.reply_rkey = 0x327;
  r.reply_length = static_cast<std::uint32_t>(lambda::kMaxResponseBytes);
  r.out_slots = out_slots;
  return r;
}

void write_seeds(const std::filesystem::path& dir) {
  using lambda::Insn;
  using lambda::Op;
  std::uint32_t id = 1;
  // Every catalogue function by name, as `client -r NAME[:ARG...]` sends it.
  for (const char* name : {"sum", "min", "max", "count_lt", "histogram"}) {
    lambda::Request r = request(id, std::string(name) == "histogram" ? 10 : 0);
    r.function = static_cast<std::uint32_t>(*lambda::function_by_name(name));
    r.args[0] = 100;
    r.args[1] = 10;
    write_seed(dir, std::string("call-") + name, id, lambda::encode_request(r));
    ++id;
  }
  // Programs: count_lt (programs/count_lt.lasm), one that fills output slots, one that
  // reads past the dataset.
  const std::vector<std::vector<Insn>> programs = {
      {{Op::mov_imm, 0, 0, 0}, {Op::mov_imm, 6, 0, 0}, {Op::jge, 6, 1, 5}, {Op::load, 7, 6, 0},
       {Op::add_imm, 6, 0, 1}, {Op::jge, 7, 2, -4}, {Op::add_imm, 0, 0, 1}, {Op::jmp, 0, 0, -6},
       {Op::exit, 0, 0, 0}},
      {{Op::mov_imm, 6, 0, 3}, {Op::store, 6, 1, 0}, {Op::store, 6, 2, 1}, {Op::ldout, 0, 6, 1}, {Op::exit, 0, 0, 0}},
      {{Op::load, 0, 1, 0}, {Op::exit, 0, 0, 0}},
  };
  for (std::size_t i = 0; i < programs.size(); ++i) {
    lambda::Request r = request(id, 8);
    r.kind = lambda::Kind::program;
    r.program = lambda::encode(programs[i]);
    r.args[0] = 500;
    write_seed(dir, "program-" + std::to_string(i), id, lambda::encode_request(r));
    ++id;
  }
  // Responses as the server writes them: a result with slots, a refusal with a detail.
  lambda::Response ok;
  ok.id = 2;
  ok.result = 10;
  ok.steps = 4096;
  ok.out = {1, 2, 3, -1};
  write_seed(dir, "response-ok", 2, lambda::encode_response(ok));
  lambda::Response refused;
  refused.id = 3;
  refused.status = lambda::Status::load_out_of_bounds;
  refused.pc = 0;
  refused.detail = "instruction 0: load of element 512; the dataset has 512";
  write_seed(dir, "response-refused", 3, lambda::encode_response(refused));
}

}  // namespace lesson04_fuzz

int main(int argc, char** argv) {
  return fuzz_support::seed_main(argc, argv, "lesson04_protocol_seed", lesson04_fuzz::write_seeds);
}
#endif
