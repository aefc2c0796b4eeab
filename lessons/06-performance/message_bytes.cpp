#include "message_bytes.hpp"

#include <cstring>

namespace lesson06 {

void fill_ring(char* ring, std::uint32_t size, std::uint32_t slots, std::uint32_t number) {
  for (std::uint32_t s = 0; s < slots; ++s) {
    // Each (measurement, slot) pair starts its own sequence (a multiplicative hash of
    // both), so that a READ from the wrong slot or a stale measurement's bytes differ.
    std::uint32_t x = (number * 2654435761u) ^ (s * 2246822519u) ^ 0x9e3779b9u;
    char* p = slot_at(ring, size, s);
    for (std::uint32_t k = 0; k < size; ++k) {
      x = x * 1664525u + 1013904223u;                            // a linear congruential step
      p[k] = static_cast<char>(1 + (x >> 24) % 255u);            // 1..255, never 0
    }
  }
}

void stamp(char* message, std::uint32_t size, std::uint32_t number) {
  const std::uint32_t n = stamp_bytes(size);
  for (std::uint32_t k = 0; k < n; ++k) message[k] = static_cast<char>(number >> (8 * (n - 1 - k)));
}

std::uint32_t read_stamp(const char* message, std::uint32_t size) {
  std::uint32_t number = 0;
  for (std::uint32_t k = 0; k < stamp_bytes(size); ++k) number = number << 8 | static_cast<unsigned char>(message[k]);
  return number;
}

long message_difference(const char* got, const char* expected_ring, std::uint32_t size, std::uint32_t slot,
                        std::uint32_t number) {
  const std::uint32_t n = stamp_bytes(size);
  if (number != 0) {
    char want[4];
    stamp(want, size, number);
    for (std::uint32_t k = 0; k < n; ++k)
      if (got[k] != want[k]) return static_cast<long>(k);
  }
  const char* want = expected_ring + std::size_t{size} * slot;
  if (std::memcmp(got + n, want + n, size - n) == 0) return -1;
  for (std::uint32_t k = n; k < size; ++k)
    if (got[k] != want[k]) return static_cast<long>(k);
  return -1;
}

long first_difference(const char* got, const char* expected_ring, std::uint32_t size, std::uint32_t slot) {
  const char* want = expected_ring + std::size_t{size} * slot;
  if (std::memcmp(got, want, size) == 0) return -1;
  for (std::uint32_t k = 0; k < size; ++k)
    if (got[k] != want[k]) return static_cast<long>(k);
  return -1;
}

}  // namespace lesson06
