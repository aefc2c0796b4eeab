// The runtime's settings: every UROCE_* environment variable, read and checked once.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "config.hpp"

namespace uroce {
namespace {

// Every UROCE_* setting is checked once, when the program first asks for the device
// list. A value the runtime cannot use is refused, never replaced by a default: a run
// with UROCE_DROP=0,05 must not quietly become a run without faults. Each refusal is one
// stderr line naming the variable, the value and what is accepted, and the device list
// then fails with EINVAL (see ibv_get_device_list), so that the program can tell "the
// verbs library rejected its configuration" from "no device".

// The value as it may be shown on one line: control bytes escaped, long values cut.
std::string shown(const char* v) {
  std::string s;
  const char* p = v;
  for (; *p && s.size() < 64; ++p) {
    const auto c = static_cast<unsigned char>(*p);
    if (c >= 0x20 && c < 0x7F) {
      s += static_cast<char>(c);
    } else {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      s += esc;
    }
  }
  if (*p) s += "...";
  return s;
}

void refuse(std::vector<std::string>& errors, const char* name, const char* v,
            const char* accepted) {
  errors.push_back(std::string("userspace-roce: ") + name + "='" + shown(v) + "' refused: " +
                   accepted + "; the device list fails with EINVAL until it is fixed");
}

// A setting that is unset or set to "" keeps its default (a shell's `UROCE_LOG= prog`
// means "no setting", not "a bad one").
const char* env_value(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// A whole number: decimal digits only, or 0x and hex digits if hex is allowed. No sign,
// no spaces, no octal (strtoull's base 0 would read "010" as 8), no wrap-around
// (strtoull reads "-1" as 2^64 - 1).
bool parse_whole(const char* v, bool hex, uint64_t& out) {
  unsigned base = 10;
  if (hex && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
    base = 16;
    v += 2;
  }
  if (!*v) return false;
  uint64_t n = 0;
  for (; *v; ++v) {
    unsigned d;
    if (*v >= '0' && *v <= '9') d = static_cast<unsigned>(*v - '0');
    else if (base == 16 && *v >= 'a' && *v <= 'f') d = static_cast<unsigned>(*v - 'a' + 10);
    else if (base == 16 && *v >= 'A' && *v <= 'F') d = static_cast<unsigned>(*v - 'A' + 10);
    else return false;
    if (n > (UINT64_MAX - d) / base) return false;  // does not fit in 64 bits
    n = n * base + d;
  }
  out = n;
  return true;
}

// A probability: a number from 0 to 1 written as a plain decimal ("0.05", "1", ".5",
// "5e-2"). strtod alone would also take " 0.05", "nan" (which fails every comparison and
// would mean "never") and "inf".
void env_probability(std::vector<std::string>& errors, const char* name, double& out) {
  const char* v = env_value(name);
  if (!v) return;
  char* end = nullptr;
  const double d = (*v >= '0' && *v <= '9') || *v == '.' ? std::strtod(v, &end) : -1;
  if (!end || *end || !(d >= 0 && d <= 1)) {
    refuse(errors, name, v, "a probability is a number from 0 to 1, e.g. 0.05 (unset: 0)");
    return;
  }
  out = d;
}

void env_whole(std::vector<std::string>& errors, const char* name, bool hex, uint64_t lo,
               uint64_t hi, const char* accepted, uint64_t& out) {
  const char* v = env_value(name);
  if (!v) return;
  uint64_t n = 0;
  if (!parse_whole(v, hex, n) || n < lo || n > hi) {
    refuse(errors, name, v, accepted);
    return;
  }
  out = n;
}

// UROCE_ADDR: the address this process binds, and so its GID. It must be one unicast
// IPv4 address: 0.0.0.0 would bind every address and give the GID ::ffff:0.0.0.0, which
// no peer can send to; multicast and broadcast addresses are not an HCA's own. Or the
// name of a network interface (eth0): the process then takes the first of that
// interface's IPv4 addresses that no other process has bound (device.cpp).
void env_addr(std::vector<std::string>& errors, std::string& addr, std::string& iface) {
  const char* v = env_value("UROCE_ADDR");
  if (!v) return;
  in_addr a{};
  if (inet_pton(AF_INET, v, &a) != 1 && std::strlen(v) < IF_NAMESIZE && if_nametoindex(v)) {
    iface = v;
    return;
  }
  const uint32_t ip = inet_pton(AF_INET, v, &a) == 1 ? ntohl(a.s_addr) : 0;
  if (ip == 0 || ip == 0xFFFFFFFFu || (ip >> 28) == 0xE) {
    refuse(errors, "UROCE_ADDR", v,
           "an IPv4 unicast address of this host in dotted form, e.g. 127.0.0.2 or "
           "10.0.0.2, or the name of a network interface that exists here, e.g. eth0 "
           "(unset: the first free 127.0.0.x from 127.0.0.2)");
    return;
  }
  addr = v;
}

}  // namespace

const Config& Config::get() {
  static const Config config = [] {
    Config c;
    env_addr(c.errors, c.addr, c.iface);
    env_probability(c.errors, "UROCE_DROP", c.drop);
    env_probability(c.errors, "UROCE_DUPLICATE", c.duplicate);
    env_probability(c.errors, "UROCE_REORDER", c.reorder);
    env_whole(c.errors, "UROCE_SEED", true, 0, UINT64_MAX,
              "a seed is a whole number from 0 to 18446744073709551615, decimal or 0x-hex "
              "(unset: 1)", c.seed);
    uint64_t n = static_cast<uint64_t>(c.log);
    env_whole(c.errors, "UROCE_LOG", false, 0, 3,
              "the log level is 0 (quiet), 1 (connections and errors), 2 (every packet) or 3 "
              "(responder decisions) (unset: 0)", n);
    c.log = static_cast<int>(n);
    n = c.window;
    env_whole(c.errors, "UROCE_WINDOW", false, 1, 4096,
              "the window is a whole number of packets from 1 to 4096 (unset: 128)", n);
    c.window = static_cast<uint32_t>(n);
    n = c.ack_delay_us;
    env_whole(c.errors, "UROCE_ACK_DELAY", false, 0, 10000,
              "the ACK delay is a whole number of microseconds from 0 (ACK at once) to 10000 "
              "(unset: 100)", n);
    c.ack_delay_us = static_cast<uint32_t>(n);
    // Said once, here, whichever call first reads the settings.
    for (const std::string& e : c.errors) std::fprintf(stderr, "%s\n", e.c_str());
    return c;
  }();
  return config;
}

}  // namespace uroce
