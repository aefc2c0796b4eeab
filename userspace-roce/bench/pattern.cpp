// roce_bench: the write_bw and pingpong data pattern, and its checks.
#include "pattern.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>

namespace roce_bench {
namespace {

constexpr std::uint32_t mix32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

}  // namespace

void fill_slot(std::uint8_t* p, std::uint32_t size, std::uint32_t seed, std::uint32_t slot) {
  for (std::uint32_t off = 0; off < size; off += 4) {
    const std::uint32_t w = mix32(seed + slot * 0x9e3779b9U + off / 4);
    for (std::uint32_t j = 0; j < 4 && off + j < size; ++j)
      p[off + j] = static_cast<std::uint8_t>(w >> (8 * j));
  }
}

void stamp(std::uint8_t* p, std::uint32_t size, std::uint64_t iteration) {
  for (std::uint32_t b = 0; b < 8 && b < size; ++b)
    p[b] = static_cast<std::uint8_t>(iteration >> (8 * (7 - b)));
  if (size >= 16)
    for (std::uint32_t b = 0; b < 8; ++b)
      p[size - 8 + b] = static_cast<std::uint8_t>(iteration >> (8 * (7 - b)));
}

/// Compare @p got with slot @p slot of iteration @p iteration; "" if equal, else what differs.
std::string check_slot(const std::uint8_t* got, std::uint32_t size, std::uint32_t seed,
                       std::uint32_t slot, std::uint64_t iteration, std::uint32_t mtu,
                       std::vector<std::uint8_t>& scratch) {
  scratch.resize(size);
  fill_slot(scratch.data(), size, seed, slot);
  stamp(scratch.data(), size, iteration);
  if (std::memcmp(got, scratch.data(), size) == 0) return {};
  std::uint32_t off = 0;
  while (got[off] == scratch[off]) ++off;
  std::uint32_t bad = 0;
  for (std::uint32_t i = 0; i < size; ++i) bad += got[i] != scratch[i];
  std::string text = "slot " + std::to_string(slot) + " (iteration " + std::to_string(iteration) +
                     "): first difference at byte " + std::to_string(off);
  if (mtu > 0) text += " (packet " + std::to_string(off / mtu) + " of the message)";
  char bytes[64];
  std::snprintf(bytes, sizeof bytes, ": got 0x%02x, expected 0x%02x; ", got[off], scratch[off]);
  return text + bytes + std::to_string(bad) + " of " + std::to_string(size) + " bytes differ";
}

/// Check every slot of a write_bw target buffer against @p c: slot s must hold the last
/// iteration i < total with i % depth == s. "" when all match, else the first difference.
std::string verify_slots(const std::uint8_t* slots, const CheckRequest& c, std::uint32_t mtu) {
  std::vector<std::uint8_t> scratch;
  const std::uint64_t used = std::min<std::uint64_t>(c.depth, c.total);
  for (std::uint32_t s = 0; s < used; ++s) {
    const std::uint64_t last = s + (c.total - 1 - s) / c.depth * c.depth;
    const std::string diff = check_slot(slots + std::size_t{s} * c.size, c.size, c.seed, s, last, mtu, scratch);
    if (!diff.empty()) return diff;
  }
  return {};
}

std::uint32_t random_seed() {
  std::random_device entropy;
  return entropy();
}

}  // namespace roce_bench
