/**
 * @file lessons/02-cm-write-read/lesson02.hpp
 * @brief What lesson 02's server and client agree on besides the private-data layout.
 */
#pragma once

#include <cstdint>
#include <string>

namespace lesson02 {

/// The RDMA CM port the server listens on (the seed samples' port).
inline constexpr std::uint16_t kDefaultPort = 7471;
/// The server's buffer size when -s is not given.
inline constexpr std::uint32_t kDefaultBufferSize = 4096;
/// What the client writes when neither --message nor -s is given.
inline constexpr const char* kDefaultMessage = "client-wrote-this";

/// The first bytes of @p data as printable text ("client-wrote-this"), stopping at the
/// first NUL, at most @p max characters; other bytes show as '.'.
inline std::string printable(const char* data, std::size_t length, std::size_t max = 64) {
  std::string out;
  for (std::size_t i = 0; i < length && i < max && data[i] != '\0'; ++i)
    out += (data[i] >= 0x20 && data[i] < 0x7f) ? data[i] : '.';
  if (length > max && out.size() == max) out += "...";
  return out;
}

}  // namespace lesson02
