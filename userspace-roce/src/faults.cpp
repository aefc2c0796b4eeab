// Fault injection on the transmit path (UROCE_DROP, UROCE_DUPLICATE, UROCE_REORDER): the
// losses, duplicates and reordering a real network causes, on demand, so that RC's
// retransmission, duplicate detection and sequence NAKs can be watched at work.
#include "runtime.hpp"

namespace uroce {

bool Device::inject_faults(const TxPacket& t) {
  const Config& cfg = Config::get();
  if (cfg.drop > 0 && unit(fault_rng) < cfg.drop) return false;  // lost on the "wire"
  if (cfg.reorder > 0 && !held && unit(fault_rng) < cfg.reorder) {
    // Hold this packet back; it goes out right after the next one (or after 1 ms).
    held = std::make_unique<TxPacket>();
    copy_packet(*held, t);
    held_until = Clock::now() + std::chrono::milliseconds(1);
    wake_engine_if_needed(*held_until);
    return false;
  }
  return true;
}

void Device::after_queued(const TxPacket& t) {
  const Config& cfg = Config::get();
  if (cfg.duplicate > 0 && unit(fault_rng) < cfg.duplicate) queue_copy(t);
  if (held) {
    queue_copy(*held);  // after this one: reordered
    held.reset();
    held_until.reset();
  }
}

void Device::release_held(Clock::time_point now) {
  if (held_until && now >= *held_until && held) {
    queue_copy(*held);  // nothing came after it within 1 ms: send it anyway
    held.reset();
    held_until.reset();
  }
}

}  // namespace uroce
