/**
 * @file userspace-roce/bench/pattern.hpp
 * @brief roce_bench: the data pattern of write_bw and pingpong. A slot's bytes depend on
 *        (seed, slot, offset), and the first and last 8 bytes carry the iteration number,
 *        so stale, lost or misplaced data never matches.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "messages.hpp"

namespace roce_bench {

/// Fill @p size bytes at @p p with slot @p slot's pattern for @p seed.
void fill_slot(std::uint8_t* p, std::uint32_t size, std::uint32_t seed, std::uint32_t slot);

/// Write @p iteration into the first and (for 16 bytes and more) the last 8 bytes.
void stamp(std::uint8_t* p, std::uint32_t size, std::uint64_t iteration);

/// Compare @p got with slot @p slot of iteration @p iteration; "" if equal, else what differs.
std::string check_slot(const std::uint8_t* got, std::uint32_t size, std::uint32_t seed,
                       std::uint32_t slot, std::uint64_t iteration, std::uint32_t mtu,
                       std::vector<std::uint8_t>& scratch);

/// Check every slot of a write_bw target buffer against @p c: slot s must hold the last
/// iteration i < total with i % depth == s. "" when all match, else the first difference.
std::string verify_slots(const std::uint8_t* slots, const CheckRequest& c, std::uint32_t mtu);

/// A seed from std::random_device.
std::uint32_t random_seed();

/// write_bw: the bytes of the slots, one per WRITE (or TCP chunk) in flight.
inline std::size_t slot_bytes(const Params& p) { return std::size_t{p.depth} * p.size; }

}  // namespace roce_bench
