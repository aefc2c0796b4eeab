#include "protocol.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace lambda {
namespace {

constexpr std::array<std::uint8_t, 4> kRequestMagic{'L', 'M', 'B', 'Q'};
constexpr std::array<std::uint8_t, 4> kResponseMagic{'L', 'M', 'B', 'R'};

void put(std::vector<std::uint8_t>& b, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

std::uint64_t get(std::span<const std::uint8_t> b, std::size_t off, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | b[off + static_cast<std::size_t>(i)];
  return v;
}

bool magic_is(std::span<const std::uint8_t> b, const std::array<std::uint8_t, 4>& magic) {
  return std::equal(magic.begin(), magic.end(), b.begin());
}

}  // namespace

const char* function_name(std::uint32_t id) {
  switch (static_cast<Function>(id)) {
    case Function::sum: return "sum";
    case Function::min: return "min";
    case Function::max: return "max";
    case Function::count_lt: return "count_lt";
    case Function::histogram: return "histogram";
  }
  return nullptr;
}

std::optional<Function> function_by_name(const std::string& name) {
  for (std::uint32_t id = 1; id <= 5; ++id)
    if (name == function_name(id)) return static_cast<Function>(id);
  return std::nullopt;
}

std::int64_t element(std::span<const std::uint8_t> dataset_be, std::size_t i) {
  return static_cast<std::int64_t>(get(dataset_be, i * 8, 8));
}

std::vector<std::uint8_t> encode_request(const Request& r) {
  std::vector<std::uint8_t> b(kRequestMagic.begin(), kRequestMagic.end());
  put(b, kProtocolVersion, 1);
  put(b, static_cast<std::uint8_t>(r.kind), 1);
  put(b, 0, 2);
  put(b, r.id, 4);
  put(b, r.kind == Kind::program ? r.program.size() : r.function, 4);
  for (std::int64_t a : r.args) put(b, static_cast<std::uint64_t>(a), 8);
  put(b, r.reply_addr, 8);
  put(b, r.reply_rkey, 4);
  put(b, r.reply_length, 4);
  put(b, r.out_slots, 4);
  put(b, r.step_budget, 4);
  if (r.kind == Kind::program) b.insert(b.end(), r.program.begin(), r.program.end());
  return b;
}

std::optional<Request> decode_request(std::span<const std::uint8_t> b, std::string& error, Request* partial) {
  if (b.size() < kRequestHeaderBytes) {
    error = "request of " + std::to_string(b.size()) + " bytes, shorter than the " +
            std::to_string(kRequestHeaderBytes) + "-byte header";
    return std::nullopt;
  }
  if (!magic_is(b, kRequestMagic)) {
    error = "request magic is not LMBQ";
    return std::nullopt;
  }
  if (b[4] != kProtocolVersion) {
    error = "request version " + std::to_string(b[4]) + ", this server speaks " + std::to_string(kProtocolVersion);
    return std::nullopt;
  }
  Request r;
  if (b[5] != 1 && b[5] != 2) {
    error = "request kind " + std::to_string(b[5]) + " (1 = call, 2 = program)";
    return std::nullopt;
  }
  r.kind = static_cast<Kind>(b[5]);
  if (get(b, 6, 2) != 0) {
    error = "reserved request bytes are not zero";
    return std::nullopt;
  }
  r.id = static_cast<std::uint32_t>(get(b, 8, 4));
  const auto what = static_cast<std::uint32_t>(get(b, 12, 4));
  for (std::size_t i = 0; i < 4; ++i) r.args[i] = static_cast<std::int64_t>(get(b, 16 + 8 * i, 8));
  r.reply_addr = get(b, 48, 8);
  r.reply_rkey = static_cast<std::uint32_t>(get(b, 56, 4));
  r.reply_length = static_cast<std::uint32_t>(get(b, 60, 4));
  r.out_slots = static_cast<std::uint32_t>(get(b, 64, 4));
  r.step_budget = static_cast<std::uint32_t>(get(b, 68, 4));
  if (partial != nullptr) *partial = r;  // enough to answer a refusal
  const std::size_t body = b.size() - kRequestHeaderBytes;
  if (r.kind == Kind::call) {
    r.function = what;
    if (body != 0) {
      error = "a call request carries " + std::to_string(body) + " bytes after the header";
      return std::nullopt;
    }
  } else {
    if (what != body) {
      error = "the header announces a " + std::to_string(what) + "-byte program but " + std::to_string(body) +
              " bytes arrived";
      return std::nullopt;
    }
    r.program.assign(b.begin() + kRequestHeaderBytes, b.end());
  }
  if (r.out_slots > kMaxOut) {
    error = std::to_string(r.out_slots) + " output slots asked for; at most " + std::to_string(kMaxOut);
    return std::nullopt;
  }
  if (r.reply_length < kResponseHeaderBytes + 8 * std::size_t{r.out_slots}) {
    error = "the reply buffer (" + std::to_string(r.reply_length) + " bytes) cannot hold a response with " +
            std::to_string(r.out_slots) + " slots";
    return std::nullopt;
  }
  return r;
}

std::vector<std::uint8_t> encode_response(const Response& r) {
  std::vector<std::uint8_t> b(kResponseMagic.begin(), kResponseMagic.end());
  put(b, kProtocolVersion, 1);
  put(b, static_cast<std::uint8_t>(r.status), 1);
  put(b, 0, 2);
  put(b, r.id, 4);
  put(b, r.pc, 4);
  put(b, static_cast<std::uint64_t>(r.result), 8);
  put(b, r.steps, 8);
  const std::size_t slots = std::min(r.out.size(), kMaxOut);
  put(b, slots, 4);
  std::string detail = r.detail.substr(0, kMaxDetail);
  for (char& c : detail)
    if (c < 0x20 || c > 0x7e) c = '?';
  put(b, detail.size(), 4);
  b.insert(b.end(), detail.begin(), detail.end());
  b.resize(kResponseHeaderBytes, 0);
  for (std::size_t i = 0; i < slots; ++i) put(b, static_cast<std::uint64_t>(r.out[i]), 8);
  return b;
}

std::optional<Response> decode_response(std::span<const std::uint8_t> b, std::string& error) {
  if (b.size() < kResponseHeaderBytes || !magic_is(b, kResponseMagic) || b[4] != kProtocolVersion) {
    error = "not a version-1 response (" + std::to_string(b.size()) + " bytes)";
    return std::nullopt;
  }
  Response r;
  r.status = static_cast<Status>(b[5]);
  r.id = static_cast<std::uint32_t>(get(b, 8, 4));
  r.pc = static_cast<std::uint32_t>(get(b, 12, 4));
  r.result = static_cast<std::int64_t>(get(b, 16, 8));
  r.steps = get(b, 24, 8);
  const std::size_t slots = get(b, 32, 4);
  const std::size_t detail = get(b, 36, 4);
  if (slots > kMaxOut || detail > kMaxDetail || b.size() < kResponseHeaderBytes + 8 * slots) {
    error = "response announces " + std::to_string(slots) + " slots and " + std::to_string(detail) +
            " detail bytes in " + std::to_string(b.size()) + " bytes";
    return std::nullopt;
  }
  r.detail.assign(b.begin() + 40, b.begin() + 40 + static_cast<std::ptrdiff_t>(detail));
  // The client prints the detail: like decode_error, show what is not printable ASCII as
  // '?', so a server cannot send terminal control sequences (or a NUL) through it.
  for (char& c : r.detail)
    if (c < 0x20 || c > 0x7e) c = '?';
  for (std::size_t i = 0; i < slots; ++i) r.out.push_back(static_cast<std::int64_t>(get(b, kResponseHeaderBytes + 8 * i, 8)));
  return r;
}

RunResult call_function(std::uint32_t id, const std::int64_t (&args)[4], std::span<const std::uint8_t> dataset_be,
                        std::span<std::int64_t> out) {
  RunResult r;
  const std::size_t n = dataset_be.size() / 8;
  const char* name = function_name(id);
  if (name == nullptr) {
    r.status = Status::unknown_function;
    r.detail = "no catalogue function with id " + std::to_string(id);
    return r;
  }
  switch (static_cast<Function>(id)) {
    case Function::sum: {
      std::uint64_t sum = 0;  // wraps like the bytecode's add
      for (std::size_t i = 0; i < n; ++i) sum += static_cast<std::uint64_t>(element(dataset_be, i));
      r.r0 = static_cast<std::int64_t>(sum);
      break;
    }
    case Function::min:
    case Function::max: {
      const bool want_min = static_cast<Function>(id) == Function::min;
      std::int64_t best = n ? element(dataset_be, 0) : 0;
      for (std::size_t i = 1; i < n; ++i) {
        const std::int64_t v = element(dataset_be, i);
        if (want_min ? v < best : v > best) best = v;
      }
      r.r0 = best;
      break;
    }
    case Function::count_lt:
      for (std::size_t i = 0; i < n; ++i) r.r0 += element(dataset_be, i) < args[0] ? 1 : 0;
      break;
    case Function::histogram: {
      const std::int64_t width = args[0], buckets = args[1];
      if (width <= 0 || buckets <= 0 || static_cast<std::uint64_t>(buckets) > out.size()) {
        r.status = Status::bad_request;
        r.detail = "histogram needs width > 0 and 1.." + std::to_string(out.size()) + " buckets; got width " +
                   std::to_string(width) + ", " + std::to_string(buckets) + " buckets";
        return r;
      }
      for (std::size_t i = 0; i < n; ++i) {
        const std::int64_t v = element(dataset_be, i);
        const std::int64_t b = std::clamp<std::int64_t>(v / width, 0, buckets - 1);
        ++out[static_cast<std::size_t>(b)];
      }
      r.out_used = static_cast<std::uint32_t>(buckets);
      r.r0 = buckets;
      break;
    }
  }
  r.steps = n;
  return r;
}

}  // namespace lambda
