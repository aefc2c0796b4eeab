// libFuzzer target for lesson 04's bytecode: the verifier, the interpreter and the
// assembler, on inputs nobody would write by hand. Built and run by run_fuzz.sh with
// ASan + UBSan, so any out-of-bounds access, overflow, bad shift or leak is a crash.
//
// One input is used two ways:
//  1. As a request: a 12-byte header, then the program's bytes.
//       byte 0      output window size, mod kMaxOut + 1 (0..64 slots)
//       bytes 1-3   step budget, 24-bit big-endian, mod kFuzzMaxSteps + 1
//       bytes 4-11  the four arguments r2..r5, 16-bit big-endian signed each
//     verify() the program; if it passes, run() it against a small fixed dataset.
//  2. As assembler text: assemble() it (AsmError is an expected outcome); if it
//     assembles, encode + verify the result and check the disassembler round trip.
// Besides "no crash", a few invariants are checked; a violation traps, which libFuzzer
// reports like a crash.
//
// Built with -DLAMBDA_SEED_MODE instead, the file is a small tool that writes the
// seed corpus: `lambda_seed OUT_DIR FILE.lasm...` writes OUT_DIR/FILE.bin, a header
// followed by the encoded program, for each file.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bytecode/assembler.hpp"
#include "bytecode/vm.hpp"
#include "fuzz_support.hpp"

namespace {

constexpr std::size_t kHeader = 12;
constexpr std::uint32_t kFuzzMaxSteps = 100'000;  // small: thousands of runs per second

using fuzz_support::check;

/// The dataset every run sees: some of the lesson's values and the extremes, big-endian.
const std::vector<std::uint8_t>& dataset() {
  static const std::vector<std::uint8_t> bytes = [] {
    std::vector<std::int64_t> values;
    for (std::int64_t i = 0; i < 56; ++i) values.push_back((i * 7919 + 13) % 1000);
    for (const std::int64_t v : {INT64_MIN, INT64_MIN + 1, std::int64_t{-1}, std::int64_t{0},
                                 std::int64_t{1}, INT64_MAX - 1, INT64_MAX, std::int64_t{-1000}})
      values.push_back(v);
    std::vector<std::uint8_t> b;
    for (const std::int64_t v : values)
      for (int shift = 56; shift >= 0; shift -= 8)
        b.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(v) >> shift));
    return b;
  }();
  return bytes;
}

void fuzz_request(const std::uint8_t* data, std::size_t size) {
  if (size < kHeader) return;
  const std::size_t out_slots = data[0] % (lambda::kMaxOut + 1);
  const std::uint32_t budget =
      ((std::uint32_t{data[1]} << 16) | (std::uint32_t{data[2]} << 8) | data[3]) % (kFuzzMaxSteps + 1);
  std::int64_t args[4];
  for (int i = 0; i < 4; ++i)
    args[i] = static_cast<std::int16_t>((data[4 + 2 * i] << 8) | data[5 + 2 * i]);

  // A private copy, as the server makes one out of the RDMA-writable region.
  const std::vector<std::uint8_t> bytes(data + kHeader, data + size);
  std::vector<lambda::Insn> program;
  const lambda::Verdict verdict = lambda::verify(bytes, program);
  if (verdict.status != lambda::Status::ok) {
    check(program.empty() && !verdict.detail.empty());
    return;
  }
  // A verified program re-encodes to exactly the bytes it came from.
  check(lambda::encode(program) == bytes);

  std::vector<std::int64_t> out(out_slots, 0x5a5a);
  const lambda::RunResult r = lambda::run(program, args, dataset(), out, budget);
  check(r.steps <= budget);
  check(r.out_used <= out.size());
  check(r.pc < program.size());
  check(r.status == lambda::Status::ok || !r.detail.empty());
}

void fuzz_text(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<lambda::Insn> insns;
  try {
    insns = lambda::assemble(text);
  } catch (const lambda::AsmError&) {
    return;
  }
  const std::vector<std::uint8_t> bytes = lambda::encode(insns);
  std::vector<lambda::Insn> verified;
  (void)lambda::verify(bytes, verified);

  // disassemble() output assembles back to the very same instructions.
  std::string listing;
  for (const lambda::Insn& insn : insns) listing += lambda::disassemble(insn) + "\n";
  std::vector<lambda::Insn> again;
  try {
    again = lambda::assemble(listing);
  } catch (const lambda::AsmError&) {
    check(false);
  }
  check(lambda::encode(again) == bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz_request(data, size);
  fuzz_text(data, size);
  return 0;
}

#ifdef LAMBDA_SEED_MODE
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: lambda_seed OUT_DIR FILE.lasm...\n";
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  // out = 64 slots, budget 100000, args r2 = 100 and r3 = 10 (count_lt's threshold,
  // histogram's width and bucket count), r4 = r5 = 0.
  const std::uint8_t header[kHeader] = {64, 0x01, 0x86, 0xa0, 0, 100, 0, 10, 0, 0, 0, 0};
  int failed = 0;
  for (int i = 2; i < argc; ++i) {
    const std::filesystem::path path = argv[i];
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    try {
      const std::vector<std::uint8_t> bytes = lambda::encode(lambda::assemble(text.str()));
      std::ofstream seed(dir / (path.stem().string() + ".bin"), std::ios::binary);
      seed.write(reinterpret_cast<const char*>(header), sizeof header);
      seed.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    } catch (const lambda::AsmError& e) {
      std::cerr << path.string() << ": " << e.what() << "\n";
      ++failed;
    }
  }
  return failed == 0 ? 0 : 1;
}
#endif
