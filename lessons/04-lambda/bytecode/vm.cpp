/**
 * @file lessons/04-lambda/bytecode/vm.cpp
 * @brief The verifier and the interpreter of the lesson's bytecode (see vm.hpp).
 *
 * Read this file as the server's safety argument. The bytes of a program arrive from a
 * client that may be buggy or hostile, so nothing in them is trusted:
 *
 *  - verify() looks at every instruction once, before anything runs, and refuses what
 *    can be refused without running: a bad length, an unknown opcode, a register number
 *    above 7, a nonzero reserved byte, a jump outside the program, a last instruction
 *    that would let execution run off the end.
 *  - run() checks what depends on values known only while running: every dataset or
 *    output index against the array's size, every divisor against zero, and the number
 *    of instructions executed against a step budget.
 *  - Programs name memory by element index, never by address. The worst a program can
 *    do is read any element of the dataset, write any slot of its output window, and
 *    burn its step budget.
 *  - No C++ undefined behaviour on any input: arithmetic wraps through unsigned types,
 *    shift counts are masked to 0..63, INT64_MIN / -1 is handled before dividing, index
 *    arithmetic is done in a type wide enough that `register + offset` cannot overflow,
 *    and dataset elements are assembled byte by byte (no unaligned pointer casts). The
 *    unit tests and a libFuzzer target (tests/fuzz/) run this file under ASan + UBSan.
 */
#include "vm.hpp"

#include <algorithm>
#include <string>

namespace lambda {

const char* status_name(Status s) {
  switch (s) {
    case Status::ok: return "ok";
    case Status::empty: return "empty";
    case Status::bad_length: return "bad_length";
    case Status::too_long: return "too_long";
    case Status::unknown_opcode: return "unknown_opcode";
    case Status::bad_register: return "bad_register";
    case Status::reserved_nonzero: return "reserved_nonzero";
    case Status::jump_out_of_range: return "jump_out_of_range";
    case Status::falls_off_end: return "falls_off_end";
    case Status::step_limit: return "step_limit";
    case Status::load_out_of_bounds: return "load_out_of_bounds";
    case Status::store_out_of_bounds: return "store_out_of_bounds";
    case Status::divide_by_zero: return "divide_by_zero";
    case Status::unknown_function: return "unknown_function";
    case Status::bad_request: return "bad_request";
  }
  return "unknown_status";  // a value received off the wire that this build does not know
}

namespace {

// ---------------------------------------------------------------------------------------
// Opcodes: what each one is and which fields it uses.

/// How an opcode uses its fields; one entry per opcode this build defines.
enum class Kind { alu_reg, alu_imm, memory, jump, cond_jump, exit, unknown };

Kind kind_of(Op op) {
  switch (op) {
    case Op::mov: case Op::add: case Op::sub: case Op::mul: case Op::div: case Op::mod:
    case Op::and_: case Op::or_: case Op::xor_: case Op::shl: case Op::shr:
      return Kind::alu_reg;
    case Op::mov_imm: case Op::add_imm: case Op::sub_imm: case Op::mul_imm:
    case Op::div_imm: case Op::mod_imm: case Op::and_imm: case Op::or_imm:
    case Op::xor_imm: case Op::shl_imm: case Op::shr_imm:
      return Kind::alu_imm;
    case Op::load: case Op::store: case Op::ldout:
      return Kind::memory;
    case Op::jmp:
      return Kind::jump;
    case Op::jeq: case Op::jne: case Op::jlt: case Op::jge:
      return Kind::cond_jump;
    case Op::exit:
      return Kind::exit;
  }
  return Kind::unknown;  // any other byte value: the switch above lists every defined op
}


std::string hex_byte(unsigned v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  return std::string("0x") + kDigits[(v >> 4) & 0xf] + kDigits[v & 0xf];
}

std::string at(std::uint32_t pc) { return "instruction " + std::to_string(pc) + ": "; }

// ---------------------------------------------------------------------------------------
// The checks that do not need to run the program, shared by verify() and run().

/**
 * Check one decoded instruction at index @p pc of an @p n-instruction program, in the
 * order verify() documents: opcode, registers, reserved byte, jump target.
 *
 * Register rule (one rule, no exceptions): every register byte must be 0..7, including
 * the fields an opcode does not use (exit's dst and src, jmp's dst and src, mov_imm's
 * src, ...). Those unused fields are then ignored; they are not required to be 0.
 */
Verdict check_insn(const Insn& insn, std::uint8_t reserved, std::uint32_t pc, std::size_t n) {
  const Kind kind = kind_of(insn.op);
  if (kind == Kind::unknown)
    return {Status::unknown_opcode, pc,
            at(pc) + "unknown opcode " + hex_byte(static_cast<unsigned>(insn.op))};
  for (const std::uint8_t reg : {insn.dst, insn.src}) {
    if (reg >= kRegisters)
      return {Status::bad_register, pc,
              at(pc) + op_name(insn.op) + " names register " + std::to_string(reg) +
                  ": there are r0..r7"};
  }
  if (reserved != 0)
    return {Status::reserved_nonzero, pc,
            at(pc) + "reserved byte 3 is " + hex_byte(reserved) + ", must be 0"};
  if (kind == Kind::jump || kind == Kind::cond_jump) {
    // pc + 1 + imm in 64 bits: pc < 256 and |imm| < 2^31, so this cannot overflow.
    const std::int64_t target = static_cast<std::int64_t>(pc) + 1 + insn.imm;
    if (target < 0 || target >= static_cast<std::int64_t>(n))
      return {Status::jump_out_of_range, pc,
              at(pc) + "jump to " + std::to_string(target) + " is outside the program (0.." +
                  std::to_string(n - 1) + ")"};
  }
  return {};
}

/// The checks on the program as a whole that follow the per-instruction ones.
Verdict check_last(const std::vector<Insn>& program) {
  const auto last = static_cast<std::uint32_t>(program.size() - 1);
  const Op op = program.back().op;
  if (op != Op::exit && op != Op::jmp)
    return {Status::falls_off_end, last,
            "the last instruction (" + std::to_string(last) + ") is " + op_name(op) +
                ": a program must end with exit or jmp"};
  return {};
}

std::uint32_t read_be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
         (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

/// Dataset element @p index (already bounds-checked), big-endian, one byte at a time:
/// the dataset lives in a registered buffer whose alignment and byte order we do not
/// rely on.
std::int64_t read_element(std::span<const std::uint8_t> dataset_be, std::size_t index) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | dataset_be[index * 8 + i];
  return static_cast<std::int64_t>(v);  // C++20: modular conversion, two's complement
}

// ---------------------------------------------------------------------------------------
// Arithmetic that wraps instead of overflowing. Signed overflow is undefined behaviour in
// C++, unsigned overflow is defined to wrap, so do the work on uint64_t and convert back
// (well defined since C++20).

std::int64_t wrap(std::uint64_t v) { return static_cast<std::int64_t>(v); }
std::uint64_t bits(std::int64_t v) { return static_cast<std::uint64_t>(v); }

/// dst OP src for the ALU operations; @p op is the register form. Division by zero is
/// handled by the caller before this is called.
std::int64_t alu(Op op, std::int64_t a, std::int64_t b) {
  switch (op) {
    case Op::mov: return b;
    case Op::add: return wrap(bits(a) + bits(b));
    case Op::sub: return wrap(bits(a) - bits(b));
    case Op::mul: return wrap(bits(a) * bits(b));
    // x / -1 is -x, which overflows for INT64_MIN (the hardware traps): negate by
    // wrapping instead. x % -1 is always 0, and INT64_MIN % -1 traps too.
    case Op::div: return b == -1 ? wrap(0 - bits(a)) : a / b;
    case Op::mod: return b == -1 ? 0 : a % b;
    case Op::and_: return a & b;
    case Op::or_: return a | b;
    case Op::xor_: return a ^ b;
    // A shift by 64 or more (or a negative count) is undefined in C++; mask like eBPF.
    case Op::shl: return wrap(bits(a) << (bits(b) & 63));
    case Op::shr: return a >> (bits(b) & 63);  // C++20: arithmetic shift of a signed value
    default: return a;  // not an ALU op; never reached (the caller dispatches on kind)
  }
}

/// 128 bits hold any `register + imm` (|register| < 2^63, |imm| < 2^31) exactly, so the
/// bounds check below sees the true index, not one that wrapped around into range.
using Wide = __int128;

std::string wide_to_string(Wide v) {
  if (v >= INT64_MIN && v <= INT64_MAX) return std::to_string(static_cast<std::int64_t>(v));
  const bool negative = v < 0;
  std::string digits;
  do {
    const auto d = static_cast<int>(v % 10);
    digits.insert(digits.begin(), static_cast<char>('0' + (d < 0 ? -d : d)));
    v /= 10;
  } while (v != 0);
  return negative ? "-" + digits : digits;
}

}  // namespace

const char* op_name(Op op) {
  switch (op) {
    case Op::mov: return "mov";
    case Op::add: return "add";
    case Op::sub: return "sub";
    case Op::mul: return "mul";
    case Op::div: return "div";
    case Op::mod: return "mod";
    case Op::and_: return "and";
    case Op::or_: return "or";
    case Op::xor_: return "xor";
    case Op::shl: return "shl";
    case Op::shr: return "shr";
    case Op::mov_imm: return "mov_imm";
    case Op::add_imm: return "add_imm";
    case Op::sub_imm: return "sub_imm";
    case Op::mul_imm: return "mul_imm";
    case Op::div_imm: return "div_imm";
    case Op::mod_imm: return "mod_imm";
    case Op::and_imm: return "and_imm";
    case Op::or_imm: return "or_imm";
    case Op::xor_imm: return "xor_imm";
    case Op::shl_imm: return "shl_imm";
    case Op::shr_imm: return "shr_imm";
    case Op::load: return "load";
    case Op::store: return "store";
    case Op::ldout: return "ldout";
    case Op::jmp: return "jmp";
    case Op::jeq: return "jeq";
    case Op::jne: return "jne";
    case Op::jlt: return "jlt";
    case Op::jge: return "jge";
    case Op::exit: return "exit";
  }
  return "?";
}

std::vector<std::uint8_t> encode(const std::vector<Insn>& program) {
  std::vector<std::uint8_t> bytes;
  bytes.reserve(program.size() * kInsnBytes);
  for (const Insn& insn : program) {
    const auto imm = static_cast<std::uint32_t>(insn.imm);
    bytes.push_back(static_cast<std::uint8_t>(insn.op));
    bytes.push_back(insn.dst);
    bytes.push_back(insn.src);
    bytes.push_back(0);  // reserved
    bytes.push_back(static_cast<std::uint8_t>(imm >> 24));
    bytes.push_back(static_cast<std::uint8_t>(imm >> 16));
    bytes.push_back(static_cast<std::uint8_t>(imm >> 8));
    bytes.push_back(static_cast<std::uint8_t>(imm));
  }
  return bytes;
}

// The contract with the caller: @p bytes must be a private copy that nobody else can
// change. In the lesson the program arrives in a region the client can RDMA WRITE at any
// moment, with no code of the server involved. Verifying the bytes in place and then
// running them would be a time-of-check-to-time-of-use hole: the client could rewrite a
// verified jump while it runs. So the server first copies the request out of the
// RDMA-writable region, then verifies the copy, and run() only ever sees the decoded
// instructions that verify() produced from it.
Verdict verify(std::span<const std::uint8_t> bytes, std::vector<Insn>& out) {
  out.clear();
  if (bytes.empty()) return {Status::empty, 0, "program is empty: no instructions"};
  if (bytes.size() % kInsnBytes != 0)
    return {Status::bad_length, 0,
            "program is " + std::to_string(bytes.size()) + " bytes, not a multiple of " +
                std::to_string(kInsnBytes)};
  const std::size_t n = bytes.size() / kInsnBytes;
  if (n > kMaxInsns)
    return {Status::too_long, 0,
            "program is " + std::to_string(bytes.size()) + " bytes: more than " +
                std::to_string(kMaxInsns) + " instructions"};

  std::vector<Insn> program(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* p = bytes.data() + i * kInsnBytes;
    Insn& insn = program[i];
    insn.op = static_cast<Op>(p[0]);  // any byte value; check_insn refuses unknown ones
    insn.dst = p[1];
    insn.src = p[2];
    insn.imm = static_cast<std::int32_t>(read_be32(p + 4));
    if (Verdict v = check_insn(insn, p[3], static_cast<std::uint32_t>(i), n);
        v.status != Status::ok)
      return v;
  }
  if (Verdict v = check_last(program); v.status != Status::ok) return v;
  out = std::move(program);
  return {};
}

RunResult run(const std::vector<Insn>& program, const std::int64_t (&args)[4],
              std::span<const std::uint8_t> dataset_be, std::span<std::int64_t> out,
              std::uint64_t step_budget) {
  RunResult result;

  // run() is meant for verify()'s output, but it re-checks the static rules (cheap: at
  // most 256 instructions) so that a caller who skips verify() gets a refusal, not a
  // read past the end of the program or of the register file.
  if (program.empty()) {
    result.status = Status::empty;
    result.detail = "program is empty: no instructions";
    return result;
  }
  if (program.size() > kMaxInsns) {
    result.status = Status::too_long;
    result.detail = "program has " + std::to_string(program.size()) + " instructions: more than " +
                    std::to_string(kMaxInsns);
    return result;
  }
  for (std::size_t i = 0; i < program.size(); ++i) {
    Verdict v = check_insn(program[i], 0, static_cast<std::uint32_t>(i), program.size());
    if (v.status == Status::ok && i + 1 == program.size()) v = check_last(program);
    if (v.status != Status::ok) {
      result.status = v.status;
      result.pc = v.pc;
      result.detail = "not a verified program: " + v.detail;
      return result;
    }
  }

  // The limits: at most kMaxSteps instructions and kMaxOut output slots, whatever the
  // caller asked for. Trailing bytes of a dataset that is not a multiple of 8 are not an
  // element.
  const std::uint64_t budget = std::min(step_budget, kMaxSteps);
  out = out.first(std::min(out.size(), kMaxOut));
  const std::size_t elements = dataset_be.size() / 8;

  std::int64_t r[kRegisters] = {0, static_cast<std::int64_t>(elements), args[0], args[1],
                                args[2], args[3], 0, 0};
  std::uint32_t pc = 0;
  std::uint64_t steps = 0;
  std::uint32_t out_used = 0;

  // Stop with @p status at the current instruction.
  auto stop = [&](Status status, std::string detail) {
    result.status = status;
    result.pc = pc;
    result.r0 = r[0];
    result.steps = steps;
    result.out_used = out_used;
    result.detail = std::move(detail);
    return result;
  };

  // The loop always ends: every iteration executes one instruction and counts it, and
  // the budget bounds the count. Verification cannot tell whether a program with
  // backward jumps halts (that is the halting problem), so the budget is what makes
  // "the server always answers" true. eBPF instead forbids unbounded loops statically.
  for (;;) {
    if (steps == budget)
      return stop(Status::step_limit, "stopped after " + std::to_string(steps) +
                                          " steps at instruction " + std::to_string(pc) +
                                          ": the budget is " + std::to_string(budget));
    ++steps;
    const Insn& insn = program[pc];  // pc is in range: every jump target was checked
    std::int64_t& dst = r[insn.dst];  // registers are 0..7: checked above
    const std::int64_t src = r[insn.src];
    std::uint32_t next = pc + 1;      // never past the end: the last insn is exit or jmp

    switch (kind_of(insn.op)) {
      case Kind::alu_reg:
      case Kind::alu_imm: {
        const bool imm_form = kind_of(insn.op) == Kind::alu_imm;
        // The register form's opcode is the immediate form's without bit 0x40.
        const Op op = imm_form ? static_cast<Op>(static_cast<unsigned>(insn.op) & ~0x40u)
                               : insn.op;
        const std::int64_t operand = imm_form ? std::int64_t{insn.imm} : src;
        if ((op == Op::div || op == Op::mod) && operand == 0)
          return stop(Status::divide_by_zero,
                      at(pc) + op_name(insn.op) + " by zero (" +
                          (imm_form ? std::string("immediate 0")
                                    : "r" + std::to_string(insn.src) + " is 0") +
                          ")");
        dst = alu(op, dst, operand);
        break;
      }

      case Kind::memory: {
        // The index is register + offset, computed exactly and compared with the array's
        // size. An index names an element, never an address, so even a wild value can
        // only select an element of the two arrays or be refused.
        if (insn.op == Op::load) {
          const Wide index = Wide{src} + insn.imm;
          if (index < 0 || index >= static_cast<Wide>(elements))
            return stop(Status::load_out_of_bounds,
                        at(pc) + "load of element " + wide_to_string(index) +
                            "; the dataset has " + std::to_string(elements));
          dst = read_element(dataset_be, static_cast<std::size_t>(index));
        } else if (insn.op == Op::store) {
          const Wide index = Wide{dst} + insn.imm;
          if (index < 0 || index >= static_cast<Wide>(out.size()))
            return stop(Status::store_out_of_bounds,
                        at(pc) + "store to out slot " + wide_to_string(index) +
                            "; the output window has " + std::to_string(out.size()) +
                            " slots");
          const auto slot = static_cast<std::size_t>(index);
          out[slot] = src;
          out_used = std::max(out_used, static_cast<std::uint32_t>(slot + 1));
        } else {  // ldout
          const Wide index = Wide{src} + insn.imm;
          if (index < 0 || index >= static_cast<Wide>(out.size()))
            return stop(Status::store_out_of_bounds,
                        at(pc) + "ldout of out slot " + wide_to_string(index) +
                            "; the output window has " + std::to_string(out.size()) +
                            " slots");
          dst = out[static_cast<std::size_t>(index)];
        }
        break;
      }

      case Kind::jump:
      case Kind::cond_jump: {
        bool taken = true;
        if (insn.op == Op::jeq) taken = dst == src;
        if (insn.op == Op::jne) taken = dst != src;
        if (insn.op == Op::jlt) taken = dst < src;
        if (insn.op == Op::jge) taken = dst >= src;
        // In range: verify() checked pc + 1 + imm against the program for every jump.
        if (taken) next = static_cast<std::uint32_t>(static_cast<std::int64_t>(pc) + 1 + insn.imm);
        break;
      }

      case Kind::exit:
        return stop(Status::ok, "");

      case Kind::unknown:  // refused by check_insn above; kept so the switch is total
        return stop(Status::unknown_opcode,
                    at(pc) + "unknown opcode " + hex_byte(static_cast<unsigned>(insn.op)));
    }
    pc = next;
  }
}

}  // namespace lambda
