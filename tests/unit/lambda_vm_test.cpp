// Lesson 04's bytecode: the verifier, the interpreter, the assembler and the example
// programs in lessons/04-lambda/programs/.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bytecode/assembler.hpp"
#include "bytecode/vm.hpp"

namespace {

using lambda::Insn;
using lambda::Op;
using lambda::RunResult;
using lambda::Status;
using lambda::Verdict;

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::filesystem::path programs_dir() { return LAMBDA_PROGRAMS_DIR; }

std::vector<Insn> program(const std::string& name) {
  return lambda::assemble(read_text(programs_dir() / (name + ".lasm")));
}

/// 8-byte big-endian elements, as the server's dataset region holds them.
std::vector<std::uint8_t> to_be(const std::vector<std::int64_t>& values) {
  std::vector<std::uint8_t> bytes;
  for (const std::int64_t v : values) {
    const auto u = static_cast<std::uint64_t>(v);
    for (int shift = 56; shift >= 0; shift -= 8) bytes.push_back(static_cast<std::uint8_t>(u >> shift));
  }
  return bytes;
}

/// The lesson's default dataset: value[i] = (i * 7919 + 13) % 1000, 4096 elements.
std::vector<std::int64_t> lesson_values() {
  std::vector<std::int64_t> v(4096);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::int64_t>((i * 7919 + 13) % 1000);
  return v;
}

/// verify() the encoded program (it must pass), then run it.
struct Outcome {
  RunResult result;
  std::vector<std::int64_t> out;
};

Outcome run_checked(const std::vector<Insn>& insns, const std::vector<std::int64_t>& values,
                    std::int64_t a0 = 0, std::int64_t a1 = 0, std::size_t out_slots = lambda::kMaxOut,
                    std::uint64_t budget = lambda::kMaxSteps, std::int64_t out_fill = 0) {
  std::vector<Insn> verified;
  const auto bytes = lambda::encode(insns);
  const Verdict v = lambda::verify(bytes, verified);
  EXPECT_EQ(v.status, Status::ok) << v.detail;
  const std::int64_t args[4] = {a0, a1, 0, 0};
  const auto data = to_be(values);
  Outcome o;
  o.out.assign(out_slots, out_fill);
  o.result = lambda::run(verified, args, data, o.out, budget);
  return o;
}

/// Run a few instructions with r2 = a, r3 = b (the first two arguments).
RunResult run_text(const std::string& text, std::int64_t a = 0, std::int64_t b = 0,
                   const std::vector<std::int64_t>& values = {}) {
  return run_checked(lambda::assemble(text), values, a, b).result;
}

Verdict verify_bytes(const std::vector<std::uint8_t>& bytes) {
  std::vector<Insn> out;
  return lambda::verify(bytes, out);
}

Verdict verify_program(const std::vector<Insn>& insns) { return verify_bytes(lambda::encode(insns)); }

std::vector<std::string> all_program_names() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(programs_dir()))
    if (entry.path().extension() == ".lasm") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

const std::vector<std::string> kGoodPrograms = {"sum", "count_lt", "minmax", "histogram"};

// ---------------------------------------------------------------------------------------
// The good programs, against the lesson's dataset and a few others.

TEST(LambdaPrograms, DirectoryHasEveryProgram) {
  const auto names = all_program_names();
  for (const char* expected :
       {"sum", "count_lt", "minmax", "histogram", "bad_unknown_opcode", "bad_jump",
        "bad_falls_off_end", "bad_register", "bad_loop_forever", "bad_read_oob",
        "bad_write_oob", "bad_div_zero", "bad_too_long"})
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
}

TEST(LambdaPrograms, Sum) {
  const auto values = lesson_values();
  std::int64_t sum = 0;
  for (const auto v : values) sum += v;
  const auto o = run_checked(program("sum"), values);
  EXPECT_EQ(o.result.status, Status::ok) << o.result.detail;
  EXPECT_EQ(o.result.r0, sum);
  EXPECT_EQ(o.result.out_used, 0u);
  // 2 setup + 5 per element + the final jge and exit.
  EXPECT_EQ(o.result.steps, 2 + 5 * values.size() + 2);

  EXPECT_EQ(run_checked(program("sum"), {}).result.r0, 0);
  EXPECT_EQ(run_checked(program("sum"), {-5, 3}).result.r0, -2);
  // Wraps instead of overflowing.
  EXPECT_EQ(run_checked(program("sum"), {INT64_MAX, 1}).result.r0, INT64_MIN);
}

TEST(LambdaPrograms, CountLessThan) {
  const auto values = lesson_values();
  for (const std::int64_t threshold : std::vector<std::int64_t>{500, 0, 1, 999, 1000, -7, INT64_MAX}) {
    const auto expected = std::count_if(values.begin(), values.end(),
                                        [&](std::int64_t v) { return v < threshold; });
    const auto o = run_checked(program("count_lt"), values, threshold);
    EXPECT_EQ(o.result.status, Status::ok) << o.result.detail;
    EXPECT_EQ(o.result.r0, expected) << "threshold " << threshold;
  }
}

TEST(LambdaPrograms, MinMax) {
  const auto check = [](const std::vector<std::int64_t>& values) {
    const auto [mn, mx] = std::minmax_element(values.begin(), values.end());
    const auto o = run_checked(program("minmax"), values, 0, 0, 2);
    EXPECT_EQ(o.result.status, Status::ok) << o.result.detail;
    EXPECT_EQ(o.result.r0, *mn);
    EXPECT_EQ(o.out[0], *mn);
    EXPECT_EQ(o.out[1], *mx);
    EXPECT_EQ(o.result.out_used, 2u);
  };
  check(lesson_values());
  check({42});
  check({3, -1, 7, 7, INT64_MIN, INT64_MAX, 0});
  check({5, 4, 3, 2, 1});
  check({1, 2, 3, 4, 5});

  const auto empty = run_checked(program("minmax"), {}, 0, 0, 2, lambda::kMaxSteps, 99);
  EXPECT_EQ(empty.result.status, Status::ok);
  EXPECT_EQ(empty.result.r0, 0);
  EXPECT_EQ(empty.result.out_used, 0u);
  EXPECT_EQ(empty.out, (std::vector<std::int64_t>{99, 99}));  // nothing written
}

std::vector<std::int64_t> expected_histogram(const std::vector<std::int64_t>& values,
                                             std::int64_t width, std::int64_t buckets) {
  std::vector<std::int64_t> h(static_cast<std::size_t>(buckets), 0);
  for (const auto v : values) {
    const std::int64_t b = std::clamp<std::int64_t>(v / width, 0, buckets - 1);
    ++h[static_cast<std::size_t>(b)];
  }
  return h;
}

TEST(LambdaPrograms, Histogram) {
  const auto values = lesson_values();
  struct Case {
    std::vector<std::int64_t> values;
    std::int64_t width, buckets;
  };
  for (const Case& c : {Case{values, 100, 10}, Case{values, 7, 5}, Case{values, 1000, 1},
                        Case{values, 16, 64}, Case{{-500, -1, 0, 5, 10, 1'000'000}, 10, 3},
                        Case{{}, 10, 4}}) {
    // The window starts with garbage: the program clears the buckets it uses.
    const auto o = run_checked(program("histogram"), c.values, c.width, c.buckets,
                               lambda::kMaxOut, lambda::kMaxSteps, 12345);
    ASSERT_EQ(o.result.status, Status::ok) << o.result.detail;
    EXPECT_EQ(o.result.r0, c.buckets);
    EXPECT_EQ(o.result.out_used, static_cast<std::uint32_t>(c.buckets));
    const std::vector<std::int64_t> got(o.out.begin(), o.out.begin() + c.buckets);
    EXPECT_EQ(got, expected_histogram(c.values, c.width, c.buckets))
        << "width " << c.width << " buckets " << c.buckets;
    if (c.buckets < static_cast<std::int64_t>(lambda::kMaxOut)) {  // the slots after: untouched
      EXPECT_EQ(o.out[static_cast<std::size_t>(c.buckets)], 12345);
    }
  }
  // The lesson's dataset, width 100, 10 buckets (computed independently in Python).
  const auto o = run_checked(program("histogram"), values, 100, 10);
  EXPECT_EQ(std::vector<std::int64_t>(o.out.begin(), o.out.begin() + 10),
            (std::vector<std::int64_t>{409, 408, 410, 411, 408, 410, 411, 409, 410, 410}));

  const auto zero_width = run_checked(program("histogram"), values, 0, 10);
  EXPECT_EQ(zero_width.result.status, Status::divide_by_zero);
  const auto small_window = run_checked(program("histogram"), values, 100, 10, 5);
  EXPECT_EQ(small_window.result.status, Status::store_out_of_bounds);
  EXPECT_NE(small_window.result.detail.find("out slot 5; the output window has 5 slots"),
            std::string::npos)
      << small_window.result.detail;
}

// ---------------------------------------------------------------------------------------
// The bad programs: each refused for its one reason, with the value in the detail.

struct BadCase {
  const char* name;
  Status status;
  std::uint32_t pc;
  std::vector<std::string> in_detail;
};

TEST(LambdaPrograms, BadProgramsRefusedByTheVerifier) {
  const BadCase cases[] = {
      {"bad_unknown_opcode", Status::unknown_opcode, 2, {"instruction 2: unknown opcode 0xff"}},
      {"bad_jump", Status::jump_out_of_range, 1,
       {"instruction 1: jump to 102 is outside the program (0..2)"}},
      {"bad_falls_off_end", Status::falls_off_end, 5,
       {"the last instruction (5) is jlt: a program must end with exit or jmp"}},
      {"bad_register", Status::bad_register, 1, {"instruction 1:", "register 9"}},
      {"bad_too_long", Status::too_long, 0, {"program is 2056 bytes: more than 256 instructions"}},
  };
  for (const auto& c : cases) {
    std::vector<Insn> out{Insn{}};
    const Verdict v = lambda::verify(lambda::encode(program(c.name)), out);
    EXPECT_EQ(v.status, c.status) << c.name << ": " << v.detail;
    EXPECT_EQ(v.pc, c.pc) << c.name;
    for (const auto& s : c.in_detail)
      EXPECT_NE(v.detail.find(s), std::string::npos) << c.name << ": '" << v.detail << "' lacks '" << s << "'";
    EXPECT_TRUE(out.empty()) << c.name << ": out is filled only when the verdict is ok";
  }
}

TEST(LambdaPrograms, BadProgramsStoppedByTheInterpreter) {
  const auto values = lesson_values();
  const BadCase cases[] = {
      {"bad_loop_forever", Status::step_limit, 2,
       {"stopped after 100000 steps at instruction 2: the budget is 100000"}},
      {"bad_read_oob", Status::load_out_of_bounds, 0,
       {"instruction 0: load of element 4096; the dataset has 4096"}},
      {"bad_write_oob", Status::store_out_of_bounds, 2,
       {"instruction 2: store to out slot 64; the output window has 64 slots"}},
      {"bad_div_zero", Status::divide_by_zero, 2, {"instruction 2: div by zero (r7 is 0)"}},
  };
  for (const auto& c : cases) {
    const auto o = run_checked(program(c.name), values, 0, 0, lambda::kMaxOut, 100'000);
    EXPECT_EQ(o.result.status, c.status) << c.name << ": " << o.result.detail;
    EXPECT_EQ(o.result.pc, c.pc) << c.name;
    for (const auto& s : c.in_detail)
      EXPECT_NE(o.result.detail.find(s), std::string::npos)
          << c.name << ": '" << o.result.detail << "' lacks '" << s << "'";
  }
}

TEST(LambdaPrograms, GoodProgramsVerify) {
  for (const auto& name : kGoodPrograms) EXPECT_EQ(verify_program(program(name)).status, Status::ok) << name;
}

// ---------------------------------------------------------------------------------------
// Encoding and the verifier.

TEST(LambdaVerify, EncodingIsBigEndianEightBytes) {
  const auto bytes = lambda::encode({Insn{Op::load, 7, 6, -2}, Insn{Op::mov_imm, 1, 0, 0x01020304}});
  EXPECT_EQ(bytes, (std::vector<std::uint8_t>{0x10, 7, 6, 0, 0xff, 0xff, 0xff, 0xfe,  //
                                              0x41, 1, 0, 0, 0x01, 0x02, 0x03, 0x04}));
}

TEST(LambdaVerify, EncodeVerifyRoundTrip) {
  for (const auto& name : kGoodPrograms) {
    const auto insns = program(name);
    const auto bytes = lambda::encode(insns);
    std::vector<Insn> decoded;
    ASSERT_EQ(lambda::verify(bytes, decoded).status, Status::ok) << name;
    EXPECT_EQ(lambda::encode(decoded), bytes) << name;
  }
}

TEST(LambdaVerify, Lengths) {
  Verdict v = verify_bytes({});
  EXPECT_EQ(v.status, Status::empty);
  v = verify_bytes(std::vector<std::uint8_t>(13, 0x30));
  EXPECT_EQ(v.status, Status::bad_length);
  EXPECT_EQ(v.detail, "program is 13 bytes, not a multiple of 8");
  const std::vector<Insn> longest(lambda::kMaxInsns, Insn{Op::exit, 0, 0, 0});
  EXPECT_EQ(verify_program(longest).status, Status::ok);
  auto too_long = longest;
  too_long.push_back(Insn{});
  v = verify_program(too_long);
  EXPECT_EQ(v.status, Status::too_long);
  EXPECT_EQ(v.detail, "program is 2056 bytes: more than 256 instructions");
}

TEST(LambdaVerify, ReservedByte) {
  auto bytes = lambda::encode({Insn{Op::mov_imm, 0, 0, 1}, Insn{Op::exit}});
  bytes[8 + 3] = 0x80;
  const Verdict v = verify_bytes(bytes);
  EXPECT_EQ(v.status, Status::reserved_nonzero);
  EXPECT_EQ(v.pc, 1u);
  EXPECT_NE(v.detail.find("0x80"), std::string::npos) << v.detail;
}

TEST(LambdaVerify, RegistersEveryFieldBelowEight) {
  // Unused fields are ignored but must still be register numbers 0..7.
  EXPECT_EQ(verify_program({Insn{Op::exit, 7, 7, 5}}).status, Status::ok);
  EXPECT_EQ(verify_program({Insn{Op::mov_imm, 0, 7, 1}, Insn{Op::exit}}).status, Status::ok);
  const Verdict v = verify_program({Insn{Op::exit, 0, 8, 0}});
  EXPECT_EQ(v.status, Status::bad_register);
  EXPECT_NE(v.detail.find("register 8"), std::string::npos) << v.detail;
  EXPECT_EQ(verify_program({Insn{Op::jmp, 255, 0, -1}}).status, Status::bad_register);
}

TEST(LambdaVerify, JumpTargets) {
  // Backward to 0 and forward to the last instruction are fine; -1 and n are not.
  EXPECT_EQ(verify_program({Insn{Op::mov_imm, 0, 0, 0}, Insn{Op::jeq, 0, 1, -2},
                            Insn{Op::jne, 0, 1, 0}, Insn{Op::exit}})
                .status,
            Status::ok);
  Verdict v = verify_program({Insn{Op::jmp, 0, 0, -2}, Insn{Op::exit}});
  EXPECT_EQ(v.status, Status::jump_out_of_range);
  EXPECT_EQ(v.detail, "instruction 0: jump to -1 is outside the program (0..1)");
  v = verify_program({Insn{Op::jge, 1, 2, 1}, Insn{Op::exit}});
  EXPECT_EQ(v.detail, "instruction 0: jump to 2 is outside the program (0..1)");
  v = verify_program({Insn{Op::exit}, Insn{Op::jmp, 0, 0, INT32_MAX}});
  EXPECT_EQ(v.detail, "instruction 1: jump to 2147483649 is outside the program (0..1)");
  v = verify_program({Insn{Op::exit}, Insn{Op::jmp, 0, 0, INT32_MIN}});
  EXPECT_EQ(v.detail, "instruction 1: jump to -2147483646 is outside the program (0..1)");
  // A jump to itself is in range (and will meet the step budget).
  EXPECT_EQ(verify_program({Insn{Op::jmp, 0, 0, -1}}).status, Status::ok);
}

TEST(LambdaVerify, FirstProblemWins) {
  // Within an instruction: opcode before registers before the reserved byte.
  auto bytes = lambda::encode({Insn{static_cast<Op>(0xee), 9, 9, 0}, Insn{Op::exit}});
  bytes[3] = 1;
  EXPECT_EQ(verify_bytes(bytes).status, Status::unknown_opcode);
  bytes[0] = 0x02;
  EXPECT_EQ(verify_bytes(bytes).status, Status::bad_register);
  bytes[1] = bytes[2] = 0;
  EXPECT_EQ(verify_bytes(bytes).status, Status::reserved_nonzero);
  // Across instructions: the lowest pc; the last-instruction rule comes after them all.
  const Verdict v = verify_program({Insn{Op::add, 0, 0, 0}, Insn{Op::jmp, 0, 0, 50},
                                    Insn{static_cast<Op>(0x99), 0, 0, 0}});
  EXPECT_EQ(v.status, Status::jump_out_of_range);
  EXPECT_EQ(v.pc, 1u);
  const Verdict w = verify_program({Insn{Op::mov_imm, 0, 0, 1}, Insn{Op::jge, 0, 0, -2}});
  EXPECT_EQ(w.status, Status::falls_off_end);
  EXPECT_EQ(w.detail, "the last instruction (1) is jge: a program must end with exit or jmp");
}

TEST(LambdaVerify, EveryOpcodeByte) {
  // Exactly the 31 opcodes of vm.hpp verify; the other 225 byte values do not.
  int known = 0;
  for (unsigned op = 0; op < 256; ++op) {
    const auto v = verify_program({Insn{static_cast<Op>(op), 0, 0, 0}, Insn{Op::exit}});
    if (v.status == Status::ok) {
      ++known;
    } else {
      EXPECT_EQ(v.status, Status::unknown_opcode) << op;
    }
  }
  EXPECT_EQ(known, 31);
}

TEST(LambdaVerify, StatusNames) {
  EXPECT_STREQ(lambda::status_name(Status::ok), "ok");
  EXPECT_STREQ(lambda::status_name(Status::step_limit), "step_limit");
  EXPECT_STREQ(lambda::status_name(Status::store_out_of_bounds), "store_out_of_bounds");
  EXPECT_STREQ(lambda::status_name(Status::bad_request), "bad_request");
  EXPECT_STREQ(lambda::status_name(static_cast<Status>(200)), "unknown_status");
}

// ---------------------------------------------------------------------------------------
// The interpreter.

TEST(LambdaRun, StartingRegisters) {
  const std::vector<std::int64_t> values = {1, 2, 3};
  std::vector<Insn> insns;
  for (std::uint8_t r = 0; r < 8; ++r) insns.push_back(Insn{Op::store, 0, r, r});  // out[r] = rr
  insns.push_back(Insn{Op::exit});
  std::vector<Insn> verified;
  ASSERT_EQ(lambda::verify(lambda::encode(insns), verified).status, Status::ok);
  const std::int64_t args[4] = {-2, 3, 4, INT64_MIN};
  const auto data = to_be(values);
  std::vector<std::int64_t> out(8, 77);
  const auto r = lambda::run(verified, args, data, out, 100);
  EXPECT_EQ(r.status, Status::ok);
  EXPECT_EQ(out, (std::vector<std::int64_t>{0, 3, -2, 3, 4, INT64_MIN, 0, 0}));
  EXPECT_EQ(r.out_used, 8u);
  EXPECT_EQ(r.steps, 9u);
  EXPECT_EQ(r.pc, 8u);
}

TEST(LambdaRun, DatasetIsBigEndianAndWholeElementsOnly) {
  auto data = to_be({-2, 0x0102030405060708});
  data.push_back(0xaa);  // 17 bytes: two elements and a stray byte
  std::vector<Insn> verified;
  ASSERT_EQ(lambda::verify(lambda::encode(lambda::assemble(
                               "mov r6, 1\nload r0, r6, -1\nstore r6, r1, -1\nload r7, r6, 0\nstore r6, r7, 0\nexit")),
                           verified)
                .status,
            Status::ok);
  const std::int64_t args[4] = {};
  std::vector<std::int64_t> out(2);
  const auto r = lambda::run(verified, args, data, out, 100);
  EXPECT_EQ(r.status, Status::ok) << r.detail;
  EXPECT_EQ(r.r0, -2);
  EXPECT_EQ(out[0], 2);  // r1
  EXPECT_EQ(out[1], 0x0102030405060708);
}

TEST(LambdaRun, ArithmeticEdges) {
  // Division: INT64_MIN / -1 wraps, % -1 is 0, C++ truncation otherwise.
  EXPECT_EQ(run_text("mov r0, r2\ndiv r0, r3\nexit", INT64_MIN, -1).r0, INT64_MIN);
  EXPECT_EQ(run_text("mov r0, r2\nmod r0, r3\nexit", INT64_MIN, -1).r0, 0);
  EXPECT_EQ(run_text("mov r0, r2\ndiv r0, -1\nexit", INT64_MIN).r0, INT64_MIN);
  EXPECT_EQ(run_text("mov r0, r2\nmod r0, -1\nexit", INT64_MIN).r0, 0);
  EXPECT_EQ(run_text("mov r0, r2\ndiv r0, -1\nexit", 5).r0, -5);
  EXPECT_EQ(run_text("mov r0, -7\nmod r0, 3\nexit").r0, -1);
  EXPECT_EQ(run_text("mov r0, -7\ndiv r0, 2\nexit").r0, -3);
  EXPECT_EQ(run_text("mov r0, r2\ndiv r0, r3\nexit", INT64_MIN, 1).r0, INT64_MIN);
  // Wrapping add, sub, mul.
  EXPECT_EQ(run_text("mov r0, r2\nadd r0, 1\nexit", INT64_MAX).r0, INT64_MIN);
  EXPECT_EQ(run_text("mov r0, r2\nsub r0, 1\nexit", INT64_MIN).r0, INT64_MAX);
  EXPECT_EQ(run_text("mov r0, r2\nmul r0, r2\nexit", INT64_MIN).r0, 0);
  EXPECT_EQ(run_text("mov r0, r2\nmul r0, -1\nexit", INT64_MIN).r0, INT64_MIN);
  EXPECT_EQ(run_text("mov r0, r2\nmul r0, r3\nexit", 0x100000001, 0x100000001).r0, 0x200000001);
  EXPECT_EQ(run_text("mov r0, r2\nsub r0, r3\nexit", 0, INT64_MIN).r0, INT64_MIN);
  // Shifts: the count is masked to 0..63; shr is arithmetic.
  EXPECT_EQ(run_text("mov r0, 3\nshl r0, 64\nexit").r0, 3);
  EXPECT_EQ(run_text("mov r0, 3\nshl r0, 65\nexit").r0, 6);
  EXPECT_EQ(run_text("mov r0, 1\nshl r0, 63\nexit").r0, INT64_MIN);
  EXPECT_EQ(run_text("mov r0, 1\nshl r0, r2\nexit", -1).r0, INT64_MIN);  // -1 & 63 = 63
  EXPECT_EQ(run_text("mov r0, -8\nshr r0, 1\nexit").r0, -4);
  EXPECT_EQ(run_text("mov r0, -8\nshr r0, 127\nexit").r0, -1);
  EXPECT_EQ(run_text("mov r0, r2\nshr r0, r3\nexit", INT64_MAX, INT64_MIN).r0, INT64_MAX);  // by 0
  // Bitwise and the immediate's sign extension.
  EXPECT_EQ(run_text("mov r0, 0xff\nand r0, -16\nexit").r0, 0xf0);
  EXPECT_EQ(run_text("mov r0, 0\nor r0, -1\nexit").r0, -1);
  EXPECT_EQ(run_text("mov r0, 0x0f\nxor r0, 0xff\nexit").r0, 0xf0);
  EXPECT_EQ(run_text("mov r0, 0x7fffffff\nadd r0, 1\nexit").r0, 0x80000000);
}

TEST(LambdaRun, DivideByZero) {
  RunResult r = run_text("mov r0, 1\ndiv r0, r2\nexit", 0);
  EXPECT_EQ(r.status, Status::divide_by_zero);
  EXPECT_EQ(r.detail, "instruction 1: div by zero (r2 is 0)");
  r = run_text("mov r0, 1\nmod r0, 0\nexit");
  EXPECT_EQ(r.status, Status::divide_by_zero);
  EXPECT_EQ(r.detail, "instruction 1: mod_imm by zero (immediate 0)");
  EXPECT_EQ(r.r0, 1);
  EXPECT_EQ(r.steps, 2u);
}

TEST(LambdaRun, IndicesDoNotWrap) {
  // register + imm is computed exactly: INT64_MAX + 1 is not INT64_MIN, and a huge
  // register plus a negative offset that lands in range is in range.
  RunResult r = run_text("load r0, r2, 1\nexit", INT64_MAX, 0, {1, 2});
  EXPECT_EQ(r.status, Status::load_out_of_bounds);
  EXPECT_EQ(r.detail, "instruction 0: load of element 9223372036854775808; the dataset has 2");
  r = run_text("load r0, r2, -1\nexit", INT64_MIN, 0, {1, 2});
  EXPECT_EQ(r.detail, "instruction 0: load of element -9223372036854775809; the dataset has 2");
  r = run_text("load r0, r2, -2147483648\nexit", 2147483649, 0, {1, 2});
  EXPECT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.r0, 2);
  r = run_text("store r2, r2, 1\nexit", INT64_MAX);
  EXPECT_EQ(r.status, Status::store_out_of_bounds);
  EXPECT_EQ(r.detail, "instruction 0: store to out slot 9223372036854775808; the output window has 64 slots");
  r = run_text("ldout r0, r2, -1\nexit", 0);
  EXPECT_EQ(r.status, Status::store_out_of_bounds);
  EXPECT_EQ(r.detail, "instruction 0: ldout of out slot -1; the output window has 64 slots");
}

TEST(LambdaRun, StepBudgetBoundary) {
  const auto values = lesson_values();
  const auto full = run_checked(program("sum"), values);
  ASSERT_EQ(full.result.status, Status::ok);
  const std::uint64_t needed = full.result.steps;  // exit included

  const auto exact = run_checked(program("sum"), values, 0, 0, 0, needed);
  EXPECT_EQ(exact.result.status, Status::ok);
  EXPECT_EQ(exact.result.steps, needed);

  const auto short_one = run_checked(program("sum"), values, 0, 0, 0, needed - 1);
  EXPECT_EQ(short_one.result.status, Status::step_limit);
  EXPECT_EQ(short_one.result.steps, needed - 1);
  EXPECT_EQ(short_one.result.pc, 7u);  // stopped before the exit
  EXPECT_EQ(short_one.result.detail, "stopped after " + std::to_string(needed - 1) +
                                         " steps at instruction 7: the budget is " +
                                         std::to_string(needed - 1));

  const auto none = run_checked(program("sum"), values, 0, 0, 0, 0);
  EXPECT_EQ(none.result.status, Status::step_limit);
  EXPECT_EQ(none.result.steps, 0u);
  EXPECT_EQ(none.result.pc, 0u);

  // A budget above the ceiling is clamped to kMaxSteps.
  const auto forever = run_checked(program("bad_loop_forever"), {}, 0, 0, 0, UINT64_MAX);
  EXPECT_EQ(forever.result.status, Status::step_limit);
  EXPECT_EQ(forever.result.steps, lambda::kMaxSteps);
  EXPECT_NE(forever.result.detail.find("the budget is 10000000"), std::string::npos);
}

TEST(LambdaRun, OutputWindowSize) {
  // minmax with a one-slot window: out[0] is written, out[1] is refused.
  const auto o = run_checked(program("minmax"), {4, 9, 2}, 0, 0, 1);
  EXPECT_EQ(o.result.status, Status::store_out_of_bounds);
  EXPECT_EQ(o.result.detail, "instruction 17: store to out slot 1; the output window has 1 slots");
  EXPECT_EQ(o.out, std::vector<std::int64_t>{2});
  EXPECT_EQ(o.result.out_used, 1u);

  // No window at all.
  const auto none = run_checked(program("minmax"), {4}, 0, 0, 0);
  EXPECT_EQ(none.result.status, Status::store_out_of_bounds);
  EXPECT_EQ(none.result.out_used, 0u);

  // A window larger than kMaxOut is used only up to kMaxOut.
  auto big = run_checked(lambda::assemble("mov r6, 64\nstore r6, r6, 0\nexit"), {}, 0, 0, 100);
  EXPECT_EQ(big.result.status, Status::store_out_of_bounds);
  EXPECT_NE(big.result.detail.find("64 slots"), std::string::npos);
  EXPECT_EQ(big.out[64], 0);

  // out_used is 1 + the highest slot written, not the number of stores; ldout reads.
  const auto used = run_checked(lambda::assemble("mov r6, 0\nstore r6, r6, 5\nstore r6, r6, 2\n"
                                                 "ldout r0, r6, 40\nexit"),
                                {}, 0, 0, 64, lambda::kMaxSteps, 7);
  EXPECT_EQ(used.result.out_used, 6u);
  EXPECT_EQ(used.result.r0, 7);
}

TEST(LambdaRun, RefusesUnverifiedPrograms) {
  const std::int64_t args[4] = {};
  std::vector<std::int64_t> out(4);
  const std::vector<std::uint8_t> data;
  EXPECT_EQ(lambda::run({}, args, data, out, 10).status, Status::empty);
  EXPECT_EQ(lambda::run({Insn{Op::add, 9, 0, 0}, Insn{Op::exit}}, args, data, out, 10).status,
            Status::bad_register);
  EXPECT_EQ(lambda::run({Insn{static_cast<Op>(0xff)}, Insn{Op::exit}}, args, data, out, 10).status,
            Status::unknown_opcode);
  EXPECT_EQ(lambda::run({Insn{Op::jmp, 0, 0, 5}}, args, data, out, 10).status, Status::jump_out_of_range);
  EXPECT_EQ(lambda::run({Insn{Op::mov_imm, 0, 0, 1}}, args, data, out, 10).status, Status::falls_off_end);
  EXPECT_EQ(lambda::run(std::vector<Insn>(300, Insn{}), args, data, out, 10).status, Status::too_long);
}

// ---------------------------------------------------------------------------------------
// The assembler.

TEST(LambdaAsm, Syntax) {
  const auto insns = lambda::assemble(
      "; comment line\n"
      "start: top:   mov r0, 0x10   # two labels, then an instruction\n"
      "\tadd r0 , r1\n"
      "  jmp end\r\n"
      "mov r3 -0x10\n"  // spaces work as separators too
      "jeq r0, r1, start\n"
      "jne r0, r1, +0\n"
      "jlt r0, r1, -3\n"
      "raw 0xff 9 8 0xffffffff\n"
      "raw 1 2 3 -2147483648\n"
      "end: exit\n"
      "store r1, r2, -1\n");
  const std::vector<Insn> expected = {
      Insn{Op::mov_imm, 0, 0, 16},  Insn{Op::add, 0, 1, 0},
      Insn{Op::jmp, 0, 0, 6},       Insn{Op::mov_imm, 3, 0, -16},
      Insn{Op::jeq, 0, 1, -5},      Insn{Op::jne, 0, 1, 0},
      Insn{Op::jlt, 0, 1, -3},      Insn{static_cast<Op>(0xff), 9, 8, -1},
      Insn{static_cast<Op>(1), 2, 3, INT32_MIN},
      Insn{Op::exit},               Insn{Op::store, 1, 2, -1}};
  ASSERT_EQ(insns.size(), expected.size());
  EXPECT_EQ(lambda::encode(insns), lambda::encode(expected));
  EXPECT_TRUE(lambda::assemble("").empty());
  EXPECT_TRUE(lambda::assemble("# nothing\n\n  ; at all\n").empty());
}

std::string asm_error(const std::string& text) {
  try {
    lambda::assemble(text);
  } catch (const lambda::AsmError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(LambdaAsm, Errors) {
  EXPECT_EQ(asm_error("exit\n\n\n\n\n\nlod r0, r1, 0\n"), "line 7: unknown mnemonic 'lod'");
  EXPECT_EQ(asm_error("mov r0, 0\n\njmp done\nexit"), "line 3: label 'done' is not defined");
  EXPECT_EQ(asm_error("exit\nadd r9, 1"), "line 2: r9 is not a register (r0..r7)");
  EXPECT_EQ(asm_error("add rx, 1"), "line 1: 'rx' is not a register (r0..r7)");
  EXPECT_EQ(asm_error("\n\n\n\nload r0, r1"), "line 5: 2 operands, 'load' takes 3");
  EXPECT_EQ(asm_error("exit r0"), "line 1: 1 operand, 'exit' takes 0");
  EXPECT_EQ(asm_error("jmp"), "line 1: 0 operands, 'jmp' takes 1");
  EXPECT_EQ(asm_error("add r0, foo"), "line 1: 'foo' is not a register or a number");
  EXPECT_EQ(asm_error("add r0, 2147483648"),
            "line 1: '2147483648' does not fit in a 32-bit immediate (-2147483648..2147483647)");
  EXPECT_EQ(asm_error("add r0, 99999999999999999999"), "line 1: '99999999999999999999' is too large");
  EXPECT_EQ(asm_error("add r0, 12z"), "line 1: '12z' is not a number");
  EXPECT_EQ(asm_error("add r0, 0x"), "line 1: '0x' is not a number");
  EXPECT_EQ(asm_error("jmp 3"), "line 1: '3' is not a label or a relative offset (+N or -N)");
  EXPECT_EQ(asm_error("a:\nexit\na: exit"), "line 3: label 'a' is already defined on line 1");
  EXPECT_EQ(asm_error("r1: exit"), "line 1: 'r1' is a register name, not a label");
  EXPECT_EQ(asm_error("add r0,, r1"), "line 1: empty operand (two commas in a row?)");
  EXPECT_EQ(asm_error("add r0, r1,"), "line 1: empty operand after the last comma");
  EXPECT_EQ(asm_error("raw 256 0 0 0"), "line 1: '256' does not fit in a byte (0..255)");
  EXPECT_EQ(asm_error("raw 1 0 0 0x100000000"), "line 1: '0x100000000' does not fit in 32 bits (-2147483648..4294967295)");
  // Every error is an AsmError, whatever the bytes.
  EXPECT_NE(asm_error(std::string("mov r0, 1\n\xff\x00\x80 r0", 16)), "(no error)");
}

TEST(LambdaAsm, LabelPastTheEndIsTheVerifiersBusiness) {
  const auto insns = lambda::assemble("jmp end\nexit\nend:\n");
  ASSERT_EQ(insns.size(), 2u);
  EXPECT_EQ(verify_program(insns).status, Status::jump_out_of_range);
}

std::string disassemble_all(const std::vector<Insn>& insns) {
  std::string text;
  for (const auto& i : insns) text += lambda::disassemble(i) + "\n";
  return text;
}

TEST(LambdaAsm, DisassembleRoundTripEveryProgram) {
  for (const auto& name : all_program_names()) {
    const auto insns = program(name);
    const auto text = disassemble_all(insns);
    EXPECT_EQ(lambda::encode(lambda::assemble(text)), lambda::encode(insns)) << name << ":\n" << text;
  }
}

TEST(LambdaAsm, DisassembleForms) {
  EXPECT_EQ(lambda::disassemble({Op::load, 7, 6, 0}), "load r7, r6, 0");
  EXPECT_EQ(lambda::disassemble({Op::store, 6, 0, 1}), "store r6, r0, 1");
  EXPECT_EQ(lambda::disassemble({Op::add_imm, 0, 0, -5}), "add r0, -5");
  EXPECT_EQ(lambda::disassemble({Op::xor_, 1, 2, 0}), "xor r1, r2");
  EXPECT_EQ(lambda::disassemble({Op::jmp, 0, 0, 3}), "jmp +3");
  EXPECT_EQ(lambda::disassemble({Op::jge, 6, 1, -4}), "jge r6, r1, -4");
  EXPECT_EQ(lambda::disassemble({Op::exit, 0, 0, 0}), "exit");
  // Not expressible as a mnemonic (or not exactly): raw.
  EXPECT_EQ(lambda::disassemble({static_cast<Op>(0xff), 0, 0, 0}), "raw 0xff 0 0 0");
  EXPECT_EQ(lambda::disassemble({Op::add, 9, 0, 0}), "raw 0x02 9 0 0");
  EXPECT_EQ(lambda::disassemble({Op::exit, 3, 0, 0}), "raw 0x30 3 0 0");
  EXPECT_EQ(lambda::disassemble({Op::add, 1, 2, 7}), "raw 0x02 1 2 7");
  EXPECT_EQ(lambda::disassemble({Op::add_imm, 1, 2, 7}), "raw 0x42 1 2 7");
}

TEST(LambdaAsm, DisassembleRoundTripRandomInstructions) {
  std::mt19937_64 rng(4);
  for (int i = 0; i < 20000; ++i) {
    const std::uint64_t x = rng();
    Insn insn{static_cast<Op>(x & 0xff), static_cast<std::uint8_t>((x >> 8) & (i % 2 ? 7 : 0xff)),
              static_cast<std::uint8_t>((x >> 16) & (i % 2 ? 7 : 0xff)),
              static_cast<std::int32_t>(static_cast<std::uint32_t>(x >> 32))};
    if (i % 3 == 0) insn.imm = 0;
    const auto text = lambda::disassemble(insn);
    std::vector<Insn> back;
    ASSERT_NO_THROW(back = lambda::assemble(text)) << text;
    ASSERT_EQ(lambda::encode(back), lambda::encode({insn})) << text;
  }
}

// ---------------------------------------------------------------------------------------
// Random input never crashes (the libFuzzer target in tests/fuzz/ does this for longer,
// with coverage guidance; this runs on every `ctest -L unit`).

TEST(LambdaRandom, RandomProgramsNeverCrash) {
  static constexpr std::uint8_t kOps[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
                                          0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b,
                                          0x10, 0x11, 0x12, 0x20, 0x21, 0x22, 0x23, 0x24, 0x30};
  std::mt19937_64 rng(2024);
  const auto data = to_be({5, -3, INT64_MIN, INT64_MAX, 0, 1, 1000, -1});
  int verified_ok = 0;
  int ran_to_exit = 0;
  for (int i = 0; i < 200'000; ++i) {
    // Half pure noise, half "plausible": known opcodes, registers 0..7, small immediates,
    // so that many pass the verifier and exercise the interpreter.
    const bool plausible = i % 2 == 0;
    const std::size_t n = rng() % (i % 100 == 0 ? 300 : 24);
    std::vector<std::uint8_t> bytes(n * lambda::kInsnBytes + (i % 50 == 1 ? rng() % 8 : 0));
    for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
    if (plausible) {
      for (std::size_t k = 0; k + 8 <= bytes.size(); k += 8) {
        const std::uint64_t x = rng();
        bytes[k] = kOps[x % std::size(kOps)];
        bytes[k + 1] = static_cast<std::uint8_t>((x >> 8) & 7);
        bytes[k + 2] = static_cast<std::uint8_t>((x >> 16) & 7);
        bytes[k + 3] = 0;
        const auto imm = static_cast<std::int32_t>(static_cast<std::int64_t>((x >> 24) % 21) - 10);
        const auto u = static_cast<std::uint32_t>(x >> 48 & 1 ? imm : static_cast<std::int32_t>(x >> 32));
        bytes[k + 4] = static_cast<std::uint8_t>(u >> 24);
        bytes[k + 5] = static_cast<std::uint8_t>(u >> 16);
        bytes[k + 6] = static_cast<std::uint8_t>(u >> 8);
        bytes[k + 7] = static_cast<std::uint8_t>(u);
      }
      if (bytes.size() >= 8 && rng() % 2) bytes[bytes.size() - 8] = 0x30;  // end with exit
    }
    std::vector<Insn> program;
    const Verdict v = lambda::verify(bytes, program);
    if (v.status != Status::ok) {
      ASSERT_TRUE(program.empty());
      continue;
    }
    ++verified_ok;
    ASSERT_EQ(program.size() * lambda::kInsnBytes, bytes.size());
    const std::int64_t args[4] = {static_cast<std::int64_t>(rng()), static_cast<std::int64_t>(rng() % 16),
                                  -1, INT64_MIN};
    std::vector<std::int64_t> out(rng() % (lambda::kMaxOut + 1));
    const std::uint64_t budget = rng() % 300;
    const RunResult r = lambda::run(program, args, data, out, budget);
    ASSERT_LE(r.steps, budget);
    ASSERT_LE(r.out_used, out.size());
    ASSERT_LT(r.pc, program.size());
    if (r.status == Status::ok) ++ran_to_exit;
    else ASSERT_FALSE(r.detail.empty()) << lambda::status_name(r.status);
  }
  EXPECT_GT(verified_ok, 10'000);  // the generator does reach the interpreter
  EXPECT_GT(ran_to_exit, 1'000);
}

TEST(LambdaRandom, RandomTextNeverCrashesTheAssembler) {
  static const char* const kWords[] = {"mov", "add", "load", "store", "ldout", "jmp", "jge", "exit", "raw",
                                       "r0", "r7", "r9", "x:", "x", ",", " ", "\n", "#", "+3", "-1",
                                       "0x7f", "99999999999999999999", "-", "0x", ":", ";", "\t", "\r"};
  std::mt19937_64 rng(7);
  int assembled = 0;
  for (int i = 0; i < 50'000; ++i) {
    std::string text;
    const std::size_t n = rng() % 30;
    for (std::size_t k = 0; k < n; ++k) {
      if (rng() % 8 == 0) text += static_cast<char>(rng());
      else text += kWords[rng() % std::size(kWords)];
    }
    try {
      const auto insns = lambda::assemble(text);
      ++assembled;
      std::vector<Insn> verified;
      (void)lambda::verify(lambda::encode(insns), verified);
      EXPECT_EQ(lambda::encode(lambda::assemble(disassemble_all(insns))), lambda::encode(insns));
    } catch (const lambda::AsmError&) {
    }
  }
  EXPECT_GT(assembled, 100);
}

}  // namespace
