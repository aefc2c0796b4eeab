// What the libFuzzer harnesses in this folder share (header-only; run_fuzz.sh builds each
// harness from its own sources, so there is nothing else to link):
//   - check(): the invariant check, which traps on a violation (libFuzzer reports the
//     trap like a crash, with the input that caused it);
//   - printable(): the rule the decoders show text by (printable ASCII, else '?');
//   - check_refusal(): a decoder's refusal must say what was wrong and what to do;
//   - for the seed tools (built with -DFUZZ_SEED_MODE): v4_mapped_gid(), the GID of an
//     IPv4 address as RoCE v2 carries it; write_seed_file(), which writes one seed and
//     fails clearly if it cannot; seed_main(), the tool's `NAME_seed OUT_DIR` argument
//     handling.
// What a harness fuzzes, its invariants and its seeds' layout stay in the harness.
#pragma once

#include <cstdint>

namespace fuzz_support {

/// An invariant of the code under test: a violation traps.
inline void check(bool ok) {
  if (!ok) __builtin_trap();
}

/// Printable ASCII: the bytes a decoder shows as they are (the others as '?').
inline bool printable(std::uint8_t c) { return c >= 0x20 && c < 0x7f; }

/// A refusal (a common::Error) must say what was wrong and what to do about it.
template <class Error>
void check_refusal(const Error& e) {
  check(*e.what() != '\0' && !e.remedy().empty());
}

}  // namespace fuzz_support

#ifdef FUZZ_SEED_MODE
#include <arpa/inet.h>
#include <infiniband/verbs.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace fuzz_support {

/// The seed tool's name in its messages ("exchange_seed"); seed_main() sets it.
inline const char* seed_tool = "seed";

/// The GID of IPv4 address @p ipv4 as RoCE v2 carries it: ::ffff:a.b.c.d.
inline ibv_gid v4_mapped_gid(const char* ipv4) {
  ibv_gid gid{};
  gid.raw[10] = 0xff;
  gid.raw[11] = 0xff;
  inet_pton(AF_INET, ipv4, gid.raw + 12);
  return gid;
}

/// Write @p bytes to DIR/NAME.bin; if that fails, say so and exit with status 1.
inline void write_seed_file(const std::filesystem::path& dir, const std::string& name,
                            const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(dir / (name + ".bin"), std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::cerr << seed_tool << ": cannot write " << (dir / name).string() << "\n";
    std::exit(1);
  }
}

/// main() of the seed tool @p tool: `TOOL OUT_DIR` calls write_seeds(OUT_DIR) and exits
/// 0; any other arguments print the usage and exit 2.
inline int seed_main(int argc, char** argv, const char* tool, void (*write_seeds)(const std::filesystem::path&)) {
  if (argc != 2) {
    std::cerr << "usage: " << tool << " OUT_DIR\n";
    return 2;
  }
  seed_tool = tool;
  write_seeds(argv[1]);
  return 0;
}

}  // namespace fuzz_support
#endif
