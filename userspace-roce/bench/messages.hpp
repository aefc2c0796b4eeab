/**
 * @file userspace-roce/bench/messages.hpp
 * @brief roce_bench: what crosses the control connection, and the end-of-run check
 *        request, in explicit big-endian fields, never as a raw struct.
 */
#pragma once

#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "errors.hpp"
#include "params.hpp"

namespace roce_bench {

class Writer {
 public:
  Writer& u8(std::uint8_t v) { out_.push_back(v); return *this; }
  Writer& u16(std::uint16_t v) { return be(v, 2); }
  Writer& u32(std::uint32_t v) { return be(v, 4); }
  Writer& u64(std::uint64_t v) { return be(v, 8); }
  Writer& bytes(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
    return *this;
  }
  const std::vector<std::uint8_t>& data() const { return out_; }

 private:
  Writer& be(std::uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    return *this;
  }
  std::vector<std::uint8_t> out_;
};

class Reader {
 public:
  Reader(const std::uint8_t* p, std::size_t n, const char* what) : p_(p), n_(n), what_(what) {}
  std::uint8_t u8() { return static_cast<std::uint8_t>(be(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(be(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(be(4)); }
  std::uint64_t u64() { return be(8); }
  void bytes(void* out, std::size_t n) {
    need(n);
    std::memcpy(out, p_ + off_, n);
    off_ += n;
  }
  void expect_end() const {
    if (off_ != n_)
      fail(std::string(what_) + " has " + std::to_string(n_) + " bytes, expected " +
               std::to_string(off_),
           "both sides must run the same roce_bench build");
  }

 private:
  void need(std::size_t n) const {
    if (off_ + n > n_)
      fail(std::string(what_) + " is truncated: " + std::to_string(n_) + " bytes",
           "both sides must run the same roce_bench build");
  }
  std::uint64_t be(int n) {
    need(static_cast<std::size_t>(n));
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = v << 8 | p_[off_++];
    return v;
  }
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t off_ = 0;
  const char* what_;
};

/// Control messages on the TCP connection: [magic u32][type u8][0 u8][body length u16][body].
constexpr std::uint32_t kMagic = 0x52424e31;  // "RBN1"
constexpr std::size_t kHeaderBytes = 8;
enum class Msg : std::uint8_t { hello = 1, ack = 2, verdict = 3, done = 4, error = 5, check = 6, progress = 7 };

const char* msg_name(Msg m);

/// What one side tells the other about its QP and memory (zero for TCP).
struct QpInfo {
  std::uint32_t qpn = 0;
  std::uint32_t psn = 0;
  std::uint16_t lid = 0;
  std::uint32_t mtu = 0;   ///< the path MTU this side accepts: min(--mtu, port active_mtu), bytes
  ibv_gid gid{};
  std::uint64_t addr = 0;  ///< write_bw server: the slots the client WRITEs into
  std::uint32_t rkey = 0;
  std::uint32_t length = 0;
};

/// HELLO body: the run's parameters, then the sender's QP details.
std::vector<std::uint8_t> encode_hello(const Params& p, const QpInfo& q);
/// The peer's HELLO into @p p and @p q. @throws Error if it is malformed.
void decode_hello(const std::vector<std::uint8_t>& body, Params& p, QpInfo& q);

/// The end-of-run check request: the pattern seed and how many iterations ran.
struct CheckRequest {
  std::uint32_t seed = 0;
  std::uint64_t total = 0;
  std::uint32_t depth = 0;
  std::uint32_t size = 0;
};
constexpr std::uint32_t kCheckMagic = 0x5242434b;  // "RBCK"
constexpr std::uint32_t kCheckBytes = 24;

std::vector<std::uint8_t> encode_check(const CheckRequest& c);
/// @throws Error if @p p is not a check request (the transport corrupted it).
CheckRequest decode_check(const std::uint8_t* p, std::size_t n);

}  // namespace roce_bench
