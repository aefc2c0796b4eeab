// libFuzzer target for the runtime's CM (userspace-roce/rdmacm): what a hostile or broken
// peer can make it do with MADs to QP 1. Every input drives two Managers, the active one
// at 10.0.0.2 and the passive one at 10.0.0.1 (listening on one service), joined by an
// in-memory wire, through a sequence of commands: consumer calls, time passing, the
// queued MADs delivered (some with bytes flipped), and raw MADs from the input. Built and
// run by run_cm_fuzz.sh with ASan + UBSan, so an out-of-bounds access, overflow or leak is
// a crash. Besides that, a violation of these traps:
//   - mad::decode of the raw bytes either refuses them with an error text or gives a MAD
//     whose encoding decodes again to the very same encoding;
//   - every MAD a Manager sends decodes, and is addressed to the other Manager;
//   - every event names a connection ID other than 0;
//   - establish() that returns 0 has delivered one rtu_received for that connection;
//   - after run_timers(now), next_deadline() is later than now.
//
// Input layout: records of one command byte, then its operands:
//   cmd % 8 = 0  connect (active; bits 5-7: responder resources, bits 3-7: ACK timeout)
//             1  accept the latest REQ (bits 3-7: target ACK delay)
//             2  ready_to_use the latest REP; with bit 5, establish the latest REQ's
//                connection instead (rdma_notify COMM_EST); with bit 6 (and not 5), the
//                passive consumer refuses, or (again) stops refusing, the REQs it gets
//                from inside req_received (Event::refuse)
//             3  disconnect: the next byte picks the side (bit 0) and an ID seen so far
//             4  destroy, or reject when bit 5 is set (reason: the command byte): the
//                next byte picks the connection as for 3
//             5  time passes: the next byte x 500 ms, then both sides' timers
//             6  deliver the queued MADs; each whose index (mod 8) has its bit set in the
//                next byte first gets up to 4 bytes XORed, (position, value) pairs from
//                the input
//             7  a raw MAD: the next byte x 2 is its length (cut to what is left), given
//                to both sides
//   cmd bit 3: the consumer's call carries 16 bytes of private data, or (bit 4 too) one
//   byte more than the message can hold
//
// Built with -DUROCE_SEED_MODE instead, the file is a tool that writes the seed corpus:
// `uroce_cm_seed OUT_DIR` writes the kernel's CM MADs (tests/unit/cm_vectors.hpp) as raw
// records and command sequences for a whole connection's life.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "cm.hpp"
#include "cm_mad.hpp"

namespace {

using namespace uroce::cm;

constexpr uint32_t kServerIp = 0x0a000001;
constexpr uint32_t kClientIp = 0x0a000002;
constexpr uint64_t kService = 0x1061d2f;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Msg {
  uint32_t src, dst;
  std::array<uint8_t, kMadSize> mad;
};

struct Port : MadSender {
  std::deque<Msg>& queue;
  uint32_t ip, peer;
  Port(std::deque<Msg>& q, uint32_t a, uint32_t p) : queue(q), ip(a), peer(p) {}
  void send(uint32_t dst, const uint8_t* mad) override {
    check(dst == peer);
    mad::Mad m;
    std::string error;
    check(mad::decode({mad, kMadSize}, m, error));
    Msg x{ip, dst, {}};
    std::memcpy(x.mad.data(), mad, kMadSize);
    if (queue.size() < 4096) queue.push_back(x);
  }
};

/// decode either refuses with a reason or round-trips through encode.
void check_codec(const uint8_t* p, size_t n) {
  mad::Mad m;
  std::string error;
  if (!mad::decode({p, n}, m, error)) {
    check(!error.empty());
    return;
  }
  uint8_t once[kMadSize], twice[kMadSize];
  mad::encode(m, once);
  mad::Mad again;
  check(mad::decode({once, kMadSize}, again, error));
  mad::encode(again, twice);
  check(std::memcmp(once, twice, kMadSize) == 0);
}

struct Harness {
  std::deque<Msg> queue;
  Port client_port{queue, kClientIp, kServerIp}, server_port{queue, kServerIp, kClientIp};
  std::vector<uint32_t> client_ids, server_ids;
  uint32_t last_req = 0, last_rep = 0;
  bool refuse = false;
  /// The passive side's events so far, and the latest one's type and connection.
  size_t server_events = 0;
  EventType server_last = EventType::req_received;
  uint32_t server_last_id = 0;
  Clock::time_point now = Clock::time_point{} + std::chrono::hours(1);
  Manager client{client_port, kClientIp, [this](const Event& e) { seen(e, client_ids, false); }};
  Manager server{server_port, kServerIp, [this](const Event& e) { seen(e, server_ids, true); }};

  Harness() {
    client.set_clock([this] { return now; });
    server.set_clock([this] { return now; });
    client.set_ca_guid(2);
    server.set_ca_guid(1);
    check(server.listen(kService, nullptr) == 0);
  }
  void seen(const Event& e, std::vector<uint32_t>& ids, bool passive) {
    check(e.id != 0);
    if (passive) {
      ++server_events;
      server_last = e.type;
      server_last_id = e.id;
    }
    if (passive && e.type == EventType::req_received) {
      check(e.refuse != nullptr);
      if (refuse) *e.refuse = true;
      last_req = e.id;
      ids.push_back(e.id);
    }
    if (!passive && e.type == EventType::rep_received) last_rep = e.id;
  }
  uint32_t pick(uint8_t b, bool& server_side) {
    server_side = b & 1;
    auto& ids = server_side ? server_ids : client_ids;
    return ids.empty() ? 0 : ids[(b >> 1) % ids.size()];
  }
  Manager& side(bool server_side) { return server_side ? server : client; }
  void timers() {
    client.run_timers(now);
    server.run_timers(now);
    for (Manager* m : {&client, &server}) {
      const auto next = m->next_deadline();
      check(!next || *next > now);
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto h = std::make_unique<Harness>();
  size_t at = 0;
  auto next = [&]() -> uint8_t { return at < size ? data[at++] : 0; };
  while (at < size) {
    const uint8_t cmd = next();
    auto priv_for = [cmd](size_t max) {
      if (!(cmd & 8)) return std::vector<uint8_t>{};
      return std::vector<uint8_t>((cmd & 16) ? max + 1 : 16, 0x5A);
    };
    switch (cmd % 8) {
      case 0: {
        ConnParams p;
        p.qpn = 0x100u + static_cast<uint32_t>(h->client_ids.size());
        p.starting_psn = 0xFFFFF0;
        p.responder_resources = cmd >> 5;
        p.local_ack_timeout = static_cast<uint8_t>(cmd >> 3);
        p.private_data = priv_for(mad::kReqPrivate);
        const uint32_t id = h->client.connect(kServerIp, kService, p, nullptr);
        if (id) h->client_ids.push_back(id);
        break;
      }
      case 1: {
        ConnParams p;
        p.qpn = 0x200u + static_cast<uint32_t>(h->server_ids.size());
        p.target_ack_delay = static_cast<uint8_t>(cmd >> 3);
        p.private_data = priv_for(mad::kRepPrivate);
        h->server.accept(h->last_req, p);
        break;
      }
      case 2:
        if (cmd & 32) {
          const size_t before = h->server_events;
          if (h->server.establish(h->last_req) == 0)
            check(h->server_events == before + 1 &&
                  h->server_last == EventType::rtu_received &&
                  h->server_last_id == h->last_req);
        } else if (cmd & 64) {
          h->refuse = !h->refuse;
        } else {
          h->client.ready_to_use(h->last_rep, priv_for(mad::kRtuPrivate));
        }
        break;
      case 3: {
        bool s = false;
        const uint32_t id = h->pick(next(), s);
        h->side(s).disconnect(id, priv_for(mad::kDreqPrivate));
        break;
      }
      case 4: {
        bool s = false;
        const uint32_t id = h->pick(next(), s);
        if (cmd & 32)
          h->side(s).reject(id, static_cast<uint16_t>(cmd), priv_for(mad::kRejPrivate));
        else
          h->side(s).destroy(id);
        break;
      }
      case 5:
        h->now += std::chrono::milliseconds(500 * next());
        h->timers();
        break;
      case 6: {
        const uint8_t mutate = next();
        std::deque<Msg> batch;
        batch.swap(h->queue);
        for (size_t i = 0; i < batch.size(); ++i) {
          Msg& m = batch[i];
          if ((mutate >> (i % 8)) & 1)
            for (size_t k = 0; k < 4 && at < size; ++k) m.mad[next() % kMadSize] ^= next();
          (m.dst == kServerIp ? h->server : h->client).receive(m.src, m.mad.data(), kMadSize);
        }
        break;
      }
      case 7: {
        size_t len = 2u * next();
        if (len > size - at) len = size - at;
        // In a block of exactly its size: ASan sees any read past its end.
        std::unique_ptr<uint8_t[]> mad(new uint8_t[len ? len : 1]);
        if (len) std::memcpy(mad.get(), data + at, len);
        at += len;
        check_codec(mad.get(), len);
        h->server.receive(kClientIp, mad.get(), len);
        h->client.receive(kServerIp, mad.get(), len);
        break;
      }
    }
  }
  h->now += std::chrono::hours(1);
  h->timers();
  return 0;
}

#ifdef UROCE_SEED_MODE
// ---- the seed corpus -----------------------------------------------------------------------
#include <cstdio>
#include <cstdlib>

#include "cm_vectors.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  namespace v = uroce::cm::vectors;
  const std::string dir = argv[1];
  int written = 0;
  auto save = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
    const std::string path = dir + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
      std::perror(path.c_str());
      std::exit(1);
    }
    std::fclose(f);
    ++written;
  };
  const char* mads[] = {v::kReqNoListener, v::kRejInvalidService, v::kReq, v::kRep, v::kRtu,
                        v::kDreq, v::kDrep, v::kReqRejected, v::kRejConsumer};
  int n = 0;
  for (const char* hex : mads) {
    const auto b = v::bytes(hex);
    std::vector<uint8_t> s{7, 128};
    s.insert(s.end(), b.begin(), b.end());
    save("kernel_mad_" + std::to_string(n++), s);
  }
  // A whole life: connect, deliver, accept, deliver, RTU, deliver, disconnect both ways,
  // time-wait.
  save("life", {0, 6, 0, 1, 6, 0, 2, 6, 0, 3, 0, 6, 0, 3, 1, 6, 0, 5, 10});
  // Losses and timeouts: connect, time passes without delivery; accept with lost REPs.
  save("timeouts", {0, 5, 13, 5, 13, 6, 0, 1, 5, 9, 5, 9, 6, 0, 5, 255});
  // Duplicates: the REQ delivered, resent, delivered again (MRA); destroy mid-way.
  save("duplicates", {0, 6, 0, 5, 13, 6, 0, 6, 0, 1, 6, 0, 4, 1, 6, 0, 5, 20});
  // A lost RTU: accept, REP delivered, RTU sent but not delivered, establish, then the
  // late RTU.
  save("establish", {0, 6, 0, 1, 6, 0, 2, 34, 6, 0, 5, 10});
  // The passive consumer refuses a REQ from inside req_received, then takes the next one.
  save("refuse", {66, 0, 6, 0, 6, 0, 66, 0, 6, 0, 1, 6, 0, 5, 20});
  std::printf("uroce_cm_seed: %d seeds in %s\n", written, dir.c_str());
  return 0;
}
#endif
