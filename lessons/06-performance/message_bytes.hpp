/**
 * @file lessons/06-performance/message_bytes.hpp
 * @brief What every message of lesson 06 carries, so that the receiving side checks it.
 *
 * A measurement that does not check its data can be fast and wrong: a WRITE that never
 * landed, a RECV that took a stale buffer, a READ that returned old bytes all look like
 * speed. So every message carries bytes that depend on the measurement (its number) and
 * on its slot (message i uses slot i mod window), and its first four bytes (fewer in a
 * smaller message) carry its own number, 1-based, big-endian (the stamp). What is compared:
 *
 *  - SEND (ping-pong and stream): the server compares each RECV, stamp included, as it
 *    arrives; the client compares each echo with what it sent.
 *  - WRITE_WITH_IMM: the immediate is the message number, checked at each RECV completion
 *    with the slot's bytes after the stamp (a later WRITE may already have re-stamped the
 *    slot); after the last one, every slot, stamp included, as for WRITE.
 *  - WRITE: the server clears its exposed ring first and compares it, stamps included,
 *    once the client's last WRITE completed. That proves that each slot holds the last
 *    message written to it; an earlier WRITE to the same slot is covered by the later one
 *    (that none is lost is RC's promise, which the SEND checks exercise).
 *  - READ: the server fills its exposed ring; the client clears its landing slots first and
 *    compares each READ's bytes once its completion (or a later one) arrived.
 *
 * The bytes are prepared before the clock starts. Inside the timed loops remain a 4-byte
 * store per message (the stamp) and a memcmp per message: small next to what a software
 * RoCE device spends per message, and part of every number the lesson prints
 * (measurement.hpp).
 */
#pragma once

#include <cstddef>
#include <cstdint>

namespace lesson06 {

/// Slot @p slot of a ring of @p size-byte slots starting at @p ring.
inline char* slot_at(char* ring, std::uint32_t size, std::uint32_t slot) {
  return ring + std::size_t{size} * slot;
}

/// Fill slots 0 .. @p slots-1 of @p ring with the bytes of measurement @p number. No byte
/// is ever 0, so a cleared slot never passes for a written one.
void fill_ring(char* ring, std::uint32_t size, std::uint32_t slots, std::uint32_t number);

/// Bytes of a message that carry its number: 4, or all of a smaller message.
inline std::uint32_t stamp_bytes(std::uint32_t size) { return size < 4 ? size : 4; }

/// Write message number @p number (1-based) into the first stamp_bytes(@p size) bytes of
/// @p message, big-endian (the low-order bytes in a message of fewer than 4 bytes).
void stamp(char* message, std::uint32_t size, std::uint32_t number);

/// The message number in the stamp of @p message (only its low-order bytes in a message
/// of fewer than 4 bytes).
std::uint32_t read_stamp(const char* message, std::uint32_t size);

/**
 * Compare @p got (@p size bytes) with slot @p slot of @p expected_ring.
 * @return -1 when equal, else the offset of the first byte that differs.
 */
long first_difference(const char* got, const char* expected_ring, std::uint32_t size, std::uint32_t slot);

/**
 * Compare @p got with message @p number (1-based) of slot @p slot: its stamp, then the
 * slot's bytes of @p expected_ring after the stamp. With @p number 0, the stamp is not
 * compared (only the bytes after it).
 * @return -1 when equal, else the offset of the first byte that differs.
 */
long message_difference(const char* got, const char* expected_ring, std::uint32_t size, std::uint32_t slot,
                        std::uint32_t number);

}  // namespace lesson06
