// The runtime's settings (UROCE_* environment variables) and its log.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <string>
#include <vector>

namespace uroce {

/// Settings read once from the environment (see README: UROCE_*).
struct Config {
  std::string addr;        ///< UROCE_ADDR: the IPv4 address to bind; empty: first free 127.0.0.x
  std::string iface;       ///< UROCE_ADDR as an interface name: its first free IPv4 address
  double drop = 0;         ///< UROCE_DROP: probability a transmitted packet is dropped
  double duplicate = 0;    ///< UROCE_DUPLICATE: probability it is sent twice
  double reorder = 0;      ///< UROCE_REORDER: probability it is held back behind the next one
  uint64_t seed = 1;       ///< UROCE_SEED: the fault injector's random seed
  int log = 0;             ///< UROCE_LOG: 1 = connection events, 2 = every packet, 3 = responder decisions
  uint32_t window = 128;   ///< UROCE_WINDOW: unacknowledged packets a QP may have in flight
  uint32_t ack_delay_us = 100;  ///< UROCE_ACK_DELAY: longest wait of a ping-pong ACK, µs; 0 = none
  /// One line per UROCE_* value refused (already said on stderr); the device list fails
  /// with EINVAL while there is any.
  std::vector<std::string> errors;
  static const Config& get();
};

/// Writes one line to stderr, prefixed "userspace-roce[pid] seconds:", without ever
/// blocking the caller: the line goes into a bounded buffer that a writer thread of its
/// own copies to stderr (log.cpp). If stderr is read too slowly the buffer fills, later
/// lines are dropped, and the next line that fits says how many were lost.
void log_line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/// What ibv_wc_status_str says (kept here so the transport does not need the exported API).
const char* wc_status_text(ibv_wc_status s);

}  // namespace uroce
