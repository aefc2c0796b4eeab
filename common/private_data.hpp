/**
 * @file private_data.hpp
 * @brief What the RDMA CM lessons put in the CM private data: an explicit, versioned,
 *        big-endian layout.
 *
 * RDMA CM lets each side attach a few bytes to its connection messages: the client to
 * its ConnectRequest (REQ), the server to its ConnectReply (REP) or ConnectReject (REJ).
 * The one-sided lessons use them to learn where the remote buffer is: an RDMA WRITE or
 * READ names a remote virtual address and the rkey of the MR that covers it, and the
 * only way to learn those is to be told.
 *
 * Two facts shape the layout:
 *  - The bytes cross machines, so every field has a fixed size, offset and byte order
 *    (big-endian). A raw C struct would carry padding and the sender's byte order.
 *  - On InfiniBand and RoCE the CM pads private data to the full size of the field
 *    (56 bytes of a REQ after rdma_cm's own header, 196 of a REP, 148 of a REJ), and the
 *    receiver sees that full size. The received length says nothing about what was sent,
 *    so the layout carries its own length.
 *
 * @code
 *   offset  size  field
 *   0       1     version      kPrivateDataVersion (1)
 *   1       1     type         PrivateDataType
 *   2       2     body_length  bytes of the body that follows
 *   4       ...   body, by type:
 *     connect (client -> server, in the REQ), 8 bytes:
 *       4  4  bytes     how many bytes the client will write in one message
 *       8  4  messages  how many messages it will write
 *     buffer (server -> client, in the REP; lesson 02), 16 bytes:
 *       4  8  addr      virtual address of the remote buffer
 *       12 4  rkey      rkey of the MR that covers it
 *       16 4  length    its length in bytes
 *     ring (server -> client, in the REP; lesson 03), 32 bytes:
 *       4  8  addr        virtual address of slot 0
 *       12 4  rkey        rkey of the ring's MR (REMOTE_WRITE only)
 *       16 4  slot_size   bytes per slot
 *       20 4  slot_count  number of slots
 *       24 8  consumed_addr  address of the server's 8-byte big-endian count of
 *                            messages it has consumed (the client READs it for credit)
 *       32 4  consumed_rkey  rkey of the counter's own MR (REMOTE_READ only)
 *     regions (server -> client, in the REP; lesson 04), 32 bytes: two buffers
 *       4  16 data     addr (8), rkey (4), length (4) of the dataset (readable)
 *       20 16 request  addr (8), rkey (4), length (4) of the request region (writable)
 *     reject (server -> client, in the REJ), 1-140 bytes: the reason, ASCII
 * @endcode
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace common {

/// The private-data layout version this build speaks.
inline constexpr std::uint8_t kPrivateDataVersion = 1;
/// Bytes of the header (version, type, body_length).
inline constexpr std::size_t kPrivateHeaderBytes = 4;
/// The longest reject reason we send (a REJ carries at most 148 bytes of private data).
inline constexpr std::size_t kMaxRejectReason = 140;
/// The smallest private-data field the CM gives us: a REQ's 56 bytes after rdma_cm's header.
inline constexpr std::size_t kMaxConnectPrivateData = 56;

/// What a private-data blob carries.
enum class PrivateDataType : std::uint8_t {
  connect = 1,  ///< the client's intent, in the ConnectRequest
  buffer = 2,   ///< one remote buffer (lesson 02), in the ConnectReply
  ring = 3,     ///< a ring of slots plus a consumed counter (lesson 03), in the ConnectReply
  reject = 4,   ///< why the server refused, in the ConnectReject
  regions = 5,  ///< a dataset and a request region (lesson 04), in the ConnectReply
};

/// The client's intent (type connect): the server checks it before it accepts.
struct ConnectIntent {
  std::uint32_t bytes = 0;     ///< bytes per message the client will write
  std::uint32_t messages = 0;  ///< messages it will write
};

/// One remote buffer (type buffer): everything an RDMA WRITE or READ needs to name it.
struct BufferAdvert {
  std::uint64_t addr = 0;    ///< remote virtual address (goes into wr.rdma.remote_addr)
  std::uint32_t rkey = 0;    ///< remote key of its MR (goes into wr.rdma.rkey)
  std::uint32_t length = 0;  ///< bytes the client may touch, from addr
};

/// A ring of message slots (type ring), lesson 03. The slots and the counter are two MRs
/// with different rights: the client may write the slots but only read the counter.
struct RingAdvert {
  std::uint64_t addr = 0;           ///< address of slot 0; slot i is at addr + i * slot_size
  std::uint32_t rkey = 0;           ///< rkey of the slots' MR (REMOTE_WRITE)
  std::uint32_t slot_size = 0;      ///< bytes per slot
  std::uint32_t slot_count = 0;     ///< number of slots
  std::uint64_t consumed_addr = 0;  ///< the server's consumed-message counter (8 bytes, BE)
  std::uint32_t consumed_rkey = 0;  ///< rkey of the counter's MR (REMOTE_READ)
};

/// Two remote buffers (type regions), lesson 04: the data to compute on, and where
/// requests go.
struct RegionsAdvert {
  BufferAdvert data;     ///< the dataset (the client may RDMA READ it)
  BufferAdvert request;  ///< the request region (the client RDMA WRITEs requests into it)
};

/// Encode the client's intent.
std::vector<std::uint8_t> encode_connect(const ConnectIntent& intent);
/// Encode a buffer advertisement.
std::vector<std::uint8_t> encode_buffer(const BufferAdvert& advert);
/// Encode a ring advertisement.
std::vector<std::uint8_t> encode_ring(const RingAdvert& advert);
/// Encode a two-region advertisement.
std::vector<std::uint8_t> encode_regions(const RegionsAdvert& advert);
/// Encode a reject reason (cut to kMaxRejectReason bytes; non-ASCII bytes become '?').
std::vector<std::uint8_t> encode_reject(const std::string& reason);

/**
 * Decode the client's intent from a ConnectRequest's private data.
 * @param data  the bytes the CM delivered (may be NULL when @p len is 0)
 * @param len   their count (on IB/RoCE the full, zero-padded field size)
 * @throws Error saying what was wrong with the bytes (too short, all zeros, version,
 *         type, declared length) and showing the first bytes in hex.
 */
ConnectIntent decode_connect(const void* data, std::size_t len);
/// Decode a buffer advertisement (a ConnectReply's private data). @throws Error as above,
/// and for a zero length or an address range that wraps around.
BufferAdvert decode_buffer(const void* data, std::size_t len);
/// Decode a ring advertisement. @throws Error as above, and for zero slots, a zero slot
/// size, or a ring or counter that wraps around.
RingAdvert decode_ring(const void* data, std::size_t len);
/// Decode a two-region advertisement. @throws Error as decode_buffer(), for either buffer.
RegionsAdvert decode_regions(const void* data, std::size_t len);
/// The reason in a ConnectReject's private data, or an empty string if the bytes are not
/// our reject layout (another program's reject, or none).
std::string decode_reject(const void* data, std::size_t len);

/// "01 02 00 10 00 ..." for the first @p max bytes, for error messages.
std::string hex_bytes(const void* data, std::size_t len, std::size_t max = 16);

}  // namespace common
