#include "common/private_data.hpp"

#include <cstdio>

#include "common/errors.hpp"

namespace common {
namespace {

const char* type_name(std::uint8_t type) {
  switch (static_cast<PrivateDataType>(type)) {
    case PrivateDataType::connect: return "connect";
    case PrivateDataType::buffer: return "buffer";
    case PrivateDataType::ring: return "ring";
    case PrivateDataType::reject: return "reject";
    case PrivateDataType::regions: return "regions";
  }
  return "unknown";
}

/// Appends big-endian fields to a byte vector.
struct Writer {
  std::vector<std::uint8_t> bytes;
  void u8(std::uint8_t v) { bytes.push_back(v); }
  void u16(std::uint16_t v) { u8(static_cast<std::uint8_t>(v >> 8)); u8(static_cast<std::uint8_t>(v)); }
  void u32(std::uint32_t v) { u16(static_cast<std::uint16_t>(v >> 16)); u16(static_cast<std::uint16_t>(v)); }
  void u64(std::uint64_t v) { u32(static_cast<std::uint32_t>(v >> 32)); u32(static_cast<std::uint32_t>(v)); }
};

/// Reads big-endian fields from a body whose length was checked beforehand.
struct Reader {
  const std::uint8_t* p;
  std::uint32_t u32() {
    const std::uint32_t v = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                            (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
    p += 4;
    return v;
  }
  std::uint64_t u64() {
    const std::uint64_t hi = u32();
    return (hi << 32) | u32();
  }
};

std::vector<std::uint8_t> with_header(PrivateDataType type, const std::vector<std::uint8_t>& body) {
  Writer w;
  w.u8(kPrivateDataVersion);
  w.u8(static_cast<std::uint8_t>(type));
  w.u16(static_cast<std::uint16_t>(body.size()));
  w.bytes.insert(w.bytes.end(), body.begin(), body.end());
  return w.bytes;
}

[[noreturn]] void malformed(const std::string& what, const void* data, std::size_t len) {
  fail("malformed CM private data: " + what + " (first bytes: " + hex_bytes(data, len) + ")",
       "both sides must run this project's lessons of the same version; the layout is in "
       "common/private_data.hpp");
}

/// Check the header and return the body, which is exactly @p body_len bytes long.
const std::uint8_t* check_header(const void* data, std::size_t len, PrivateDataType want,
                                 std::size_t body_len) {
  const auto* b = static_cast<const std::uint8_t*>(data);
  if (len < kPrivateHeaderBytes)
    malformed(std::to_string(len) + " bytes, shorter than the " +
                  std::to_string(kPrivateHeaderBytes) + "-byte header",
              data, len);
  bool all_zero = true;
  for (std::size_t i = 0; i < len; ++i) all_zero = all_zero && b[i] == 0;
  if (all_zero) malformed("all " + std::to_string(len) + " bytes are zero: the peer sent none", data, len);
  if (b[0] != kPrivateDataVersion)
    malformed("version " + std::to_string(b[0]) + ", this build speaks " +
                  std::to_string(kPrivateDataVersion),
              data, len);
  if (b[1] != static_cast<std::uint8_t>(want))
    malformed(std::string("type ") + std::to_string(b[1]) + " (" + type_name(b[1]) + "), expected " +
                  type_name(static_cast<std::uint8_t>(want)),
              data, len);
  const std::size_t declared = (std::size_t{b[2]} << 8) | b[3];
  if (declared != body_len)
    malformed(std::string("a ") + type_name(b[1]) + " body of " + std::to_string(declared) +
                  " bytes; version " + std::to_string(kPrivateDataVersion) + " defines " +
                  std::to_string(body_len),
              data, len);
  if (kPrivateHeaderBytes + body_len > len)
    malformed("the body needs " + std::to_string(kPrivateHeaderBytes + body_len) + " bytes but only " +
                  std::to_string(len) + " arrived",
              data, len);
  return b + kPrivateHeaderBytes;
}

bool wraps(std::uint64_t addr, std::uint64_t length) { return addr + length < addr; }

}  // namespace

std::vector<std::uint8_t> encode_connect(const ConnectIntent& intent) {
  Writer body;
  body.u32(intent.bytes);
  body.u32(intent.messages);
  return with_header(PrivateDataType::connect, body.bytes);
}

std::vector<std::uint8_t> encode_buffer(const BufferAdvert& advert) {
  Writer body;
  body.u64(advert.addr);
  body.u32(advert.rkey);
  body.u32(advert.length);
  return with_header(PrivateDataType::buffer, body.bytes);
}

std::vector<std::uint8_t> encode_ring(const RingAdvert& advert) {
  Writer body;
  body.u64(advert.addr);
  body.u32(advert.rkey);
  body.u32(advert.slot_size);
  body.u32(advert.slot_count);
  body.u64(advert.consumed_addr);
  body.u32(advert.consumed_rkey);
  return with_header(PrivateDataType::ring, body.bytes);
}

std::vector<std::uint8_t> encode_regions(const RegionsAdvert& advert) {
  Writer body;
  for (const BufferAdvert* b : {&advert.data, &advert.request}) {
    body.u64(b->addr);
    body.u32(b->rkey);
    body.u32(b->length);
  }
  return with_header(PrivateDataType::regions, body.bytes);
}

std::vector<std::uint8_t> encode_reject(const std::string& reason) {
  std::vector<std::uint8_t> body;
  for (char c : reason.substr(0, kMaxRejectReason))
    body.push_back(c >= 0x20 && c < 0x7f ? static_cast<std::uint8_t>(c) : '?');
  return with_header(PrivateDataType::reject, body);
}

ConnectIntent decode_connect(const void* data, std::size_t len) {
  Reader r{check_header(data, len, PrivateDataType::connect, 8)};
  ConnectIntent intent;
  intent.bytes = r.u32();
  intent.messages = r.u32();
  return intent;
}

BufferAdvert decode_buffer(const void* data, std::size_t len) {
  Reader r{check_header(data, len, PrivateDataType::buffer, 16)};
  BufferAdvert a;
  a.addr = r.u64();
  a.rkey = r.u32();
  a.length = r.u32();
  if (a.length == 0) malformed("the advertised buffer is 0 bytes long", data, len);
  if (wraps(a.addr, a.length)) malformed("the advertised buffer wraps around the address space", data, len);
  return a;
}

RingAdvert decode_ring(const void* data, std::size_t len) {
  Reader r{check_header(data, len, PrivateDataType::ring, 32)};
  RingAdvert a;
  a.addr = r.u64();
  a.rkey = r.u32();
  a.slot_size = r.u32();
  a.slot_count = r.u32();
  a.consumed_addr = r.u64();
  a.consumed_rkey = r.u32();
  if (a.slot_size == 0 || a.slot_count == 0)
    malformed("a ring of " + std::to_string(a.slot_count) + " slots of " + std::to_string(a.slot_size) +
                  " bytes",
              data, len);
  if (wraps(a.addr, std::uint64_t{a.slot_size} * a.slot_count) || wraps(a.consumed_addr, 8))
    malformed("the advertised ring wraps around the address space", data, len);
  return a;
}

RegionsAdvert decode_regions(const void* data, std::size_t len) {
  Reader r{check_header(data, len, PrivateDataType::regions, 32)};
  RegionsAdvert a;
  for (BufferAdvert* b : {&a.data, &a.request}) {
    b->addr = r.u64();
    b->rkey = r.u32();
    b->length = r.u32();
    if (b->length == 0) malformed("an advertised region is 0 bytes long", data, len);
    if (wraps(b->addr, b->length)) malformed("an advertised region wraps around the address space", data, len);
  }
  return a;
}

std::string decode_reject(const void* data, std::size_t len) {
  const auto* b = static_cast<const std::uint8_t*>(data);
  if (b == nullptr || len < kPrivateHeaderBytes || b[0] != kPrivateDataVersion ||
      b[1] != static_cast<std::uint8_t>(PrivateDataType::reject))
    return "";
  const std::size_t declared = (std::size_t{b[2]} << 8) | b[3];
  if (declared == 0 || declared > kMaxRejectReason || kPrivateHeaderBytes + declared > len) return "";
  std::string reason;
  for (std::size_t i = 0; i < declared; ++i) {
    const std::uint8_t c = b[kPrivateHeaderBytes + i];
    reason += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
  }
  return reason;
}

std::string hex_bytes(const void* data, std::size_t len, std::size_t max) {
  if (data == nullptr || len == 0) return "(none)";
  const auto* b = static_cast<const std::uint8_t*>(data);
  std::string out;
  char hex[4];
  for (std::size_t i = 0; i < len && i < max; ++i) {
    std::snprintf(hex, sizeof hex, i ? " %02x" : "%02x", b[i]);
    out += hex;
  }
  if (len > max) out += " ...";
  return out;
}

}  // namespace common
