/**
 * @file lessons/04-lambda/lesson04.hpp
 * @brief What lesson 04's server and client agree on besides the request layout.
 */
#pragma once

#include <cstdint>
#include <vector>

namespace lesson04 {

/// The RDMA CM port the server listens on.
inline constexpr std::uint16_t kDefaultPort = 7474;
/// Elements in the dataset when --elements is not given.
inline constexpr std::uint32_t kDefaultElements = 4096;

/// The lesson's dataset: value[i] = (i * 7919 + 13) % 1000, each a 64-bit big-endian
/// integer (the layout the bytecode's `load` and a client's RDMA READ both expect).
inline std::vector<std::uint8_t> make_dataset(std::uint32_t elements) {
  std::vector<std::uint8_t> bytes;
  bytes.reserve(std::size_t{elements} * 8);
  for (std::uint64_t i = 0; i < elements; ++i) {
    const std::uint64_t v = (i * 7919 + 13) % 1000;
    for (int b = 7; b >= 0; --b) bytes.push_back(static_cast<std::uint8_t>(v >> (8 * b)));
  }
  return bytes;
}

}  // namespace lesson04
