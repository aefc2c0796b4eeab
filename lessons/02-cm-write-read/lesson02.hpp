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

}  // namespace lesson02
