/**
 * @file lessons/04-lambda/protocol.hpp
 * @brief Lesson 04's request and response: what the client RDMA WRITEs into the server's
 *        request region, and what the server RDMA WRITEs back into the client's reply buffer.
 *
 * Both are explicit big-endian layouts with a magic, a version and lengths, decoded
 * field by field: they arrive through one-sided writes from the network, so nothing in
 * them is trusted until checked.
 *
 * Request (client -> server request region, one RDMA WRITE_WITH_IMM, imm = request id):
 * @code
 *   0   4  magic "LMBQ"
 *   4   1  version (1)
 *   5   1  kind: 1 = call a catalogue function by id, 2 = run the program that follows
 *   6   2  reserved, 0
 *   8   4  request id (the client's counter; echoed in the response and its imm_data)
 *   12  4  function id (kind 1) or program length in bytes (kind 2)
 *   16  32 four signed 64-bit arguments (r2..r5 of a program)
 *   48  8  reply address   (the client's registered reply buffer)
 *   56  4  reply rkey
 *   60  4  reply length
 *   64  4  output slots wanted (0..64)
 *   68  4  step budget wanted (0 = the server's default)
 *   72  n  program bytes (kind 2; 8 bytes per instruction, see vm.hpp)
 * @endcode
 * Response (server -> client reply buffer, one RDMA WRITE_WITH_IMM, imm = request id):
 * @code
 *   0   4  magic "LMBR"
 *   4   1  version (1)
 *   5   1  status (lambda::Status: 0 ok, or why it was refused or stopped)
 *   6   2  reserved, 0
 *   8   4  request id
 *   12  4  pc of the instruction that failed (0 if none)
 *   16  8  result (r0)
 *   24  8  steps executed
 *   32  4  output slots used (0..64)
 *   36  4  length of the detail text (0..96)
 *   40  96 detail text (ASCII, zero-padded)
 *   136 8*k the output slots
 * @endcode
 */
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bytecode/vm.hpp"

namespace lambda {

inline constexpr std::size_t kRequestHeaderBytes = 72;   ///< request bytes before the program
inline constexpr std::size_t kMaxRequestBytes = kRequestHeaderBytes + kMaxInsns * kInsnBytes;  ///< largest request
inline constexpr std::size_t kResponseHeaderBytes = 136; ///< response bytes before the slots
inline constexpr std::size_t kMaxDetail = 96;            ///< longest detail text
inline constexpr std::size_t kMaxResponseBytes = kResponseHeaderBytes + kMaxOut * 8;  ///< largest response
inline constexpr std::uint8_t kProtocolVersion = 1;      ///< the version of both layouts

/// How the client ships the function.
enum class Kind : std::uint8_t {
  call = 1,     ///< by name: a function compiled into the server (the catalogue)
  program = 2,  ///< as bytecode, verified and interpreted by the server
};

/// The server's catalogue: functions it has compiled in, called by id with arguments.
enum class Function : std::uint32_t {
  sum = 1,        ///< r0 = sum of all elements
  min = 2,        ///< r0 = smallest element
  max = 3,        ///< r0 = largest element
  count_lt = 4,   ///< r0 = number of elements < arg0
  histogram = 5,  ///< out[v / arg0 (clamped to arg1 - 1)] += 1; r0 = arg1 (buckets)
};

/// "sum", "count_lt" ... or nullptr for an unknown id.
const char* function_name(std::uint32_t id);
/// The id of a catalogue name, or nothing.
std::optional<Function> function_by_name(const std::string& name);

/// A decoded request.
struct Request {
  Kind kind = Kind::call;                ///< by name or as a program
  std::uint32_t id = 0;                  ///< the client's request counter
  std::uint32_t function = 0;            ///< kind call
  std::vector<std::uint8_t> program;     ///< kind program (still unverified bytes)
  std::int64_t args[4] = {0, 0, 0, 0};   ///< r2..r5 of a program, or the function's arguments
  std::uint64_t reply_addr = 0;          ///< where the server writes the answer
  std::uint32_t reply_rkey = 0;          ///< the rkey of the client's reply buffer
  std::uint32_t reply_length = 0;        ///< its size in bytes
  std::uint32_t out_slots = 0;           ///< output window size asked for
  std::uint32_t step_budget = 0;         ///< budget asked for (0: the server's)
};

/// Encode a request (the program bytes are copied in for kind program).
std::vector<std::uint8_t> encode_request(const Request& r);

/**
 * Decode a request from the @p length bytes the client wrote (the completion's byte_len).
 * @param bytes    the request as received (untrusted)
 * @param error    set to what is wrong (magic, version, kind, lengths, reserved bytes, a
 *                 reply buffer too small for the slots asked for) when nothing is returned
 * @param partial  if not null and the header was readable up to the reply fields, gets
 *                 those fields even when the request is refused, so the refusal can be
 *                 answered (a request whose magic or version is wrong gets no answer)
 * @return the request, or nothing
 */
std::optional<Request> decode_request(std::span<const std::uint8_t> bytes, std::string& error,
                                      Request* partial = nullptr);

/// A decoded response.
struct Response {
  Status status = Status::ok;  ///< ok, or why the request was refused or stopped
  std::uint32_t id = 0;        ///< the request's id
  std::uint32_t pc = 0;        ///< the instruction that failed (0 if none)
  std::int64_t result = 0;     ///< r0 at exit
  std::uint64_t steps = 0;     ///< instructions (or elements) processed
  std::string detail;          ///< why, with the values seen
  std::vector<std::int64_t> out;  ///< the output slots used
};

/// Encode a response (detail cut to kMaxDetail, slots cut to kMaxOut).
std::vector<std::uint8_t> encode_response(const Response& r);
/// Decode a response; nothing, with @p error set, if it is malformed. A detail byte that
/// is not printable ASCII comes back as '?'.
std::optional<Response> decode_response(std::span<const std::uint8_t> bytes, std::string& error);

/**
 * Run a catalogue function natively on the server: the "by name" way. It is server code,
 * compiled and reviewed like any other; the client only picks it and gives arguments.
 * Bad arguments (histogram width 0, more buckets than slots) give bad_request.
 */
RunResult call_function(std::uint32_t id, const std::int64_t (&args)[4], std::span<const std::uint8_t> dataset_be,
                        std::span<std::int64_t> out);

/// Element @p i of a big-endian dataset.
std::int64_t element(std::span<const std::uint8_t> dataset_be, std::size_t i);

}  // namespace lambda
