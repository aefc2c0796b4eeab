// libFuzzer target for the RDMA CM private data (common/private_data.hpp): what lessons
// 02-04 read from a ConnectRequest (decode_connect, on the server), a ConnectReply
// (decode_buffer, decode_ring, decode_regions, on the client) and a ConnectReject
// (decode_reject, in common/cm.cpp). Built and run by run_fuzz.sh with ASan + UBSan, so an
// out-of-bounds read, an overflow or a leak is a crash.
//
// One input is the private data exactly as the CM hands it over: a pointer and a length
// (on RoCE the whole zero-padded field: 56 bytes of a REQ, 196 of a REP, 148 of a REJ, but
// a peer or another CM may deliver any length, and an empty one arrives as a null
// pointer, which the input of size 0 stands for). It is copied into a buffer of exactly
// that length, so ASan catches a read past it, and given to all five decoders: a lesson
// calls the one it expects, and each must refuse the others' layouts.
//
// Besides "no crash", these must hold; a violation traps, which libFuzzer reports like a
// crash:
//   - decode_connect, decode_buffer, decode_ring and decode_regions refuse only by throwing
//     common::Error, with a reason and a remedy; decode_reject never throws;
//   - at most one of them accepts (the type byte tells them apart), and an accepted
//     layout re-encodes to exactly the bytes it was read from (the 4-byte header and the
//     body; the padding after it is not part of the layout);
//   - accepted values are in range: a buffer or region of at least one byte that does
//     not wrap around the address space; a ring of at least one slot of at least one byte
//     whose slots and 8-byte counter do not wrap;
//   - decode_reject returns "" or a reason of 1..kMaxRejectReason printable characters,
//     one per byte the reject declares (the byte itself, or '?'); a reason means nothing
//     else accepted the bytes;
//   - hex_bytes(), which every refusal quotes, shows at most 16 bytes in the "0a 1b ..."
//     form.
//
// Built with -DFUZZ_SEED_MODE instead, the file is a tool that writes the seed corpus:
// `private_data_seed OUT_DIR` writes what the lessons' own encoders produce, padded as the
// CM pads it. run_fuzz.sh adds the private data recorded in captures/02-*, 03-* and 04-*
// (capture_seeds.py), among them lesson 02's refusal of a version-9 ConnectRequest.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "common/errors.hpp"
#include "common/private_data.hpp"
#include "fuzz_support.hpp"

namespace {

using Bytes = std::vector<std::uint8_t>;
using fuzz_support::check;
using fuzz_support::printable;

bool wraps(std::uint64_t addr, std::uint64_t length) { return addr + length < addr; }

/// An accepted layout re-encodes to the first bytes of what it was decoded from.
void check_prefix(const Bytes& encoded, const std::uint8_t* data, std::size_t len) {
  check(encoded.size() <= len);
  check(Bytes(data, data + encoded.size()) == encoded);
}

/// Run one throwing decoder; true if it accepted. A refusal must say what and what to do.
template <class Decode>
bool accepted(Decode decode) {
  try {
    decode();
    return true;
  } catch (const common::Error& e) {
    fuzz_support::check_refusal(e);
    return false;
  }
}

void check_hex(const std::uint8_t* data, std::size_t len) {
  const std::string hex = common::hex_bytes(data, len);
  if (len == 0) {
    check(hex == "(none)");
    return;
  }
  const std::size_t shown = len < 16 ? len : 16;
  check(hex.size() == 3 * shown - 1 + (len > 16 ? 4 : 0));
  for (std::size_t i = 0; i + 1 < 3 * shown; i += 3) {
    char two[3];
    std::snprintf(two, sizeof two, "%02x", data[i / 3]);
    check(hex.compare(i, 2, two) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* input, std::size_t size) {
  // The CM's buffer: exactly `size` bytes, or no buffer at all when there is no data.
  const Bytes copy(input, input + size);
  const std::uint8_t* data = size == 0 ? nullptr : copy.data();
  int accepts = 0;

  accepts += accepted([&] {
    const common::ConnectIntent c = common::decode_connect(data, size);
    check_prefix(common::encode_connect(c), data, size);
  });
  accepts += accepted([&] {
    const common::BufferAdvert b = common::decode_buffer(data, size);
    check(b.length >= 1 && !wraps(b.addr, b.length));
    check_prefix(common::encode_buffer(b), data, size);
  });
  accepts += accepted([&] {
    const common::RingAdvert r = common::decode_ring(data, size);
    check(r.slot_size >= 1 && r.slot_count >= 1);
    check(!wraps(r.addr, std::uint64_t{r.slot_size} * r.slot_count) && !wraps(r.consumed_addr, 8));
    check_prefix(common::encode_ring(r), data, size);
  });
  accepts += accepted([&] {
    const common::RegionsAdvert r = common::decode_regions(data, size);
    for (const common::BufferAdvert& b : {r.data, r.request}) check(b.length >= 1 && !wraps(b.addr, b.length));
    check_prefix(common::encode_regions(r), data, size);
  });
  check(accepts <= 1);

  const std::string reason = common::decode_reject(data, size);  // documented not to throw
  if (!reason.empty()) {
    check(accepts == 0);
    check(reason.size() <= common::kMaxRejectReason);
    check(size >= common::kPrivateHeaderBytes + reason.size());
    check(((std::size_t{data[2]} << 8) | data[3]) == reason.size());
    for (std::size_t i = 0; i < reason.size(); ++i) {
      const std::uint8_t b = data[common::kPrivateHeaderBytes + i];
      check(static_cast<std::uint8_t>(reason[i]) == (printable(b) ? b : '?'));
    }
    // The encoder writes the same header, and the reason as it was shown.
    const Bytes again = common::encode_reject(reason);
    check(again.size() == common::kPrivateHeaderBytes + reason.size());
    check(Bytes(again.begin(), again.begin() + common::kPrivateHeaderBytes) ==
          Bytes(data, data + common::kPrivateHeaderBytes));
  }
  check_hex(data, size);
  return 0;
}

#ifdef FUZZ_SEED_MODE
#include <filesystem>

namespace {

/// What the CM delivers: the encoded layout, zero-padded to the message's field size.
void write_seed(const std::filesystem::path& dir, const std::string& name, Bytes bytes, std::size_t field) {
  if (bytes.size() < field) bytes.resize(field, 0);
  fuzz_support::write_seed_file(dir, name, bytes);
}

void write_seeds(const std::filesystem::path& dir) {
  using namespace common;
  constexpr std::size_t kReq = 56, kRep = 196, kRej = 148;  // the CM's field sizes on RoCE
  // Lesson 02: 17 bytes in one message; the server's 4096-byte buffer.
  write_seed(dir, "connect-02", encode_connect({17, 1}), kReq);
  write_seed(dir, "buffer-02", encode_buffer({0x55a15ae322b0, 0x278, 4096}), kRep);
  // Lesson 03: 32-byte messages; a ring of 8 slots of 64 bytes and its consumed counter.
  write_seed(dir, "connect-03", encode_connect({32, 3}), kReq);
  write_seed(dir, "ring-03", encode_ring({0x55754a763420, 0x27e, 64, 8, 0x55754a76ab70, 0x31c}), kRep);
  // Lesson 04: the largest request; the dataset (512 elements) and the request region.
  write_seed(dir, "connect-04", encode_connect({2120, 3}), kReq);
  write_seed(dir, "regions-04",
             encode_regions({{0x5604fa941a30, 0x24d, 4096}, {0x5604fa94f4f0, 0x3b1, 4096}}), kRep);
  // A server's refusal, as common::reject_with_reason sends it.
  write_seed(dir, "reject", encode_reject("the client wants to write 8192 bytes; the server's buffer is 4096"),
             kRej);
  // Unpadded, as another CM might deliver them, and the longest reason.
  write_seed(dir, "connect-unpadded", encode_connect({1, 1}), 0);
  write_seed(dir, "reject-longest", encode_reject(std::string(kMaxRejectReason, 'r')), 0);
  // Edges: a ring that ends at the top of the address space, a buffer that does too.
  write_seed(dir, "ring-edge", encode_ring({0xffffffff00000000, 1, 0x10000, 0xffff, 0xfffffffffffffff7, 2}), kRep);
  write_seed(dir, "buffer-edge", encode_buffer({0xffffffff00000000, 1, 0xffffffff}), kRep);
}

}  // namespace

int main(int argc, char** argv) { return fuzz_support::seed_main(argc, argv, "private_data_seed", write_seeds); }
#endif
