/**
 * @file lessons/03-write-with-imm/lesson03.hpp
 * @brief What lesson 03's server and client agree on besides the private-data layout.
 */
#pragma once

#include <cstdint>
#include <string>

namespace lesson03 {

/// The RDMA CM port the server listens on (the seed samples' port for this example).
inline constexpr std::uint16_t kDefaultPort = 7472;
/// Slots in the server's ring when --slots is not given.
inline constexpr std::uint32_t kDefaultSlots = 8;
/// Bytes per slot (and the largest message) when -s is not given.
inline constexpr std::uint32_t kDefaultSlotSize = 64;

/// Message @p index (1-based) of @p count, exactly @p size bytes: "imm message 3/10 "
/// followed by letters, so the server can check every byte it finds in its slot.
inline std::string make_message(std::uint32_t index, std::uint32_t count, std::uint32_t size) {
  std::string m = "imm message " + std::to_string(index) + "/" + std::to_string(count) + " ";
  for (std::size_t i = m.size(); i < size; ++i) m += static_cast<char>('a' + i % 26);
  m.resize(size);
  return m;
}

}  // namespace lesson03
