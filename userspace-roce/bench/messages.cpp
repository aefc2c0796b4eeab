// roce_bench: encoding and decoding the control messages and the check request.
#include "messages.hpp"

namespace roce_bench {

const char* msg_name(Msg m) {
  switch (m) {
    case Msg::hello: return "HELLO";
    case Msg::ack: return "ACK";
    case Msg::verdict: return "VERDICT";
    case Msg::done: return "DONE";
    case Msg::error: return "ERROR";
    case Msg::check: return "CHECK";
    case Msg::progress: return "PROGRESS";
  }
  return "?";
}

std::vector<std::uint8_t> encode_hello(const Params& p, const QpInfo& q) {
  Writer w;
  w.u8(static_cast<std::uint8_t>(p.transport)).u8(static_cast<std::uint8_t>(p.test))
      .u8(p.use_inline ? 1 : 0).u8(0);
  w.u32(p.size).u32(p.iters).u32(p.warmup).u32(p.depth);
  w.u32(q.qpn).u32(q.psn).u16(q.lid).u32(q.mtu).bytes(q.gid.raw, sizeof q.gid.raw);
  w.u64(q.addr).u32(q.rkey).u32(q.length);
  return w.data();
}

void decode_hello(const std::vector<std::uint8_t>& body, Params& p, QpInfo& q) {
  Reader r(body.data(), body.size(), "HELLO");
  const std::uint8_t transport = r.u8(), test = r.u8(), flags = r.u8();
  r.u8();
  if (transport != 1 && transport != 2) fail("HELLO names transport " + std::to_string(transport),
                                             "both sides must run the same roce_bench build");
  if (test < 1 || test > 3) fail("HELLO names test " + std::to_string(test),
                                   "both sides must run the same roce_bench build");
  p.transport = static_cast<Transport>(transport);
  p.test = static_cast<Test>(test);
  p.use_inline = (flags & 1) != 0;
  p.size = r.u32();
  p.iters = r.u32();
  p.warmup = r.u32();
  p.depth = r.u32();
  q.qpn = r.u32();
  q.psn = r.u32();
  q.lid = r.u16();
  q.mtu = r.u32();
  r.bytes(q.gid.raw, sizeof q.gid.raw);
  q.addr = r.u64();
  q.rkey = r.u32();
  q.length = r.u32();
  r.expect_end();
}

std::vector<std::uint8_t> encode_check(const CheckRequest& c) {
  Writer w;
  w.u32(kCheckMagic).u32(c.seed).u64(c.total).u32(c.depth).u32(c.size);
  return w.data();
}

CheckRequest decode_check(const std::uint8_t* p, std::size_t n) {
  Reader r(p, n, "check request");
  if (const std::uint32_t magic = r.u32(); magic != kCheckMagic)
    fail("the check request starts with 0x" + hex32(magic) + ", expected 0x" +
             hex32(kCheckMagic),
         "the final SEND arrived corrupted: the transport delivered wrong bytes");
  CheckRequest c;
  c.seed = r.u32();
  c.total = r.u64();
  c.depth = r.u32();
  c.size = r.u32();
  r.expect_end();
  return c;
}

}  // namespace roce_bench
