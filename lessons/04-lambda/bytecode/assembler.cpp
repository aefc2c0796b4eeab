/**
 * @file lessons/04-lambda/bytecode/assembler.cpp
 * @brief Text to instructions and back (see assembler.hpp for the syntax).
 *
 * Two passes over the text: the first splits every line into labels, a mnemonic and its
 * operands and gives each instruction its index, so the second can turn a label that is
 * used before its definition (`jge r6, r1, done`) into a relative jump offset.
 *
 * A jump's target may also be written as a relative offset, `+N` or `-N`, which is the
 * instruction's imm itself: the jump goes to pc + 1 + N (so `jmp +0` is a no-op and
 * `jmp -1` jumps to itself). disassemble() prints jumps this way, so that
 * assemble(disassemble(insn)) gives back exactly the same instruction.
 *
 * The assembler checks syntax only (names, operand counts, number ranges). Whether the
 * program is safe to run is the verifier's business, not this file's: `raw` exists to
 * write any bytes at all, and a label just past the last instruction is accepted here and
 * refused by verify() as a jump outside the program.
 */
#include "assembler.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace lambda {
namespace {

[[noreturn]] void fail(std::size_t line, const std::string& what) {
  throw AsmError("line " + std::to_string(line) + ": " + what);
}

/// 'token' for messages, shortened if someone feeds us a very long one.
std::string quote(std::string_view token) {
  constexpr std::size_t kMax = 40;
  if (token.size() > kMax) return "'" + std::string(token.substr(0, kMax)) + "...'";
  return "'" + std::string(token) + "'";
}

// Character classes by hand: <cctype> takes an int that must be an unsigned char value,
// and the text may contain any byte.
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_ident_char(char c) { return is_alpha(c) || is_digit(c) || c == '.'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

/// Length of the identifier at the start of @p s ([A-Za-z_][A-Za-z0-9_.]*), 0 if none.
std::size_t ident_length(std::string_view s) {
  if (s.empty() || !is_alpha(s.front())) return 0;
  std::size_t n = 1;
  while (n < s.size() && is_ident_char(s[n])) ++n;
  return n;
}

bool looks_like_register(std::string_view t) {
  if (t.size() < 2 || t[0] != 'r') return false;
  for (std::size_t i = 1; i < t.size(); ++i)
    if (!is_digit(t[i])) return false;
  return true;
}

bool looks_like_number(std::string_view t) {
  if (!t.empty() && (t[0] == '-' || t[0] == '+')) t.remove_prefix(1);
  return !t.empty() && is_digit(t[0]);
}

/// A number: optional sign, then decimal digits or 0x and hex digits. The value must fit
/// in an int64_t (the callers narrow it further).
std::int64_t parse_number(std::size_t line, std::string_view t) {
  const std::string_view original = t;
  bool negative = false;
  if (!t.empty() && (t[0] == '-' || t[0] == '+')) {
    negative = t[0] == '-';
    t.remove_prefix(1);
  }
  unsigned base = 10;
  if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
    base = 16;
    t.remove_prefix(2);
  }
  if (t.empty()) fail(line, quote(original) + " is not a number");
  std::uint64_t magnitude = 0;
  constexpr std::uint64_t kLimit = std::uint64_t{1} << 63;  // |INT64_MIN|
  for (const char c : t) {
    unsigned digit = 0;
    if (is_digit(c)) digit = static_cast<unsigned>(c - '0');
    else if (base == 16 && c >= 'a' && c <= 'f') digit = static_cast<unsigned>(c - 'a' + 10);
    else if (base == 16 && c >= 'A' && c <= 'F') digit = static_cast<unsigned>(c - 'A' + 10);
    else fail(line, quote(original) + " is not a number");
    if (magnitude > (kLimit - digit) / base) fail(line, quote(original) + " is too large");
    magnitude = magnitude * base + digit;
  }
  if (!negative && magnitude == kLimit) fail(line, quote(original) + " is too large");
  return negative ? static_cast<std::int64_t>(0 - magnitude) : static_cast<std::int64_t>(magnitude);
}

/// A number that must lie in [lo, hi], e.g. a 32-bit immediate.
std::int64_t parse_in_range(std::size_t line, std::string_view t, std::int64_t lo,
                            std::int64_t hi, const char* what) {
  const std::int64_t v = parse_number(line, t);
  if (v < lo || v > hi)
    fail(line, quote(t) + " does not fit in " + what + " (" + std::to_string(lo) + ".." +
                   std::to_string(hi) + ")");
  return v;
}

std::int32_t parse_imm(std::size_t line, std::string_view t) {
  return static_cast<std::int32_t>(
      parse_in_range(line, t, INT32_MIN, INT32_MAX, "a 32-bit immediate"));
}

std::uint8_t parse_register(std::size_t line, std::string_view t) {
  if (looks_like_register(t)) {
    if (t.size() == 2 && t[1] < '0' + kRegisters) return static_cast<std::uint8_t>(t[1] - '0');
    fail(line, std::string(t.substr(0, 40)) + " is not a register (r0..r7)");
  }
  fail(line, quote(t) + " is not a register (r0..r7)");
}

/// One line's instruction, as split by the first pass.
struct Statement {
  std::size_t line = 0;                  ///< 1-based line number
  std::string_view mnemonic;             ///< e.g. "load"
  std::vector<std::string_view> operands;  ///< separated by commas and/or spaces
};

/// Split "a, b c" into {"a", "b", "c"}: commas and spaces separate, but two commas in a
/// row (an empty operand) or a trailing comma is an error.
std::vector<std::string_view> split_operands(std::size_t line, std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size() && is_space(s[i])) ++i;
  while (i < s.size()) {
    const std::size_t start = i;
    while (i < s.size() && !is_space(s[i]) && s[i] != ',') ++i;
    if (i == start) fail(line, "empty operand (two commas in a row?)");
    out.push_back(s.substr(start, i - start));
    while (i < s.size() && is_space(s[i])) ++i;
    if (i < s.size() && s[i] == ',') {
      ++i;
      while (i < s.size() && is_space(s[i])) ++i;
      if (i == s.size()) fail(line, "empty operand after the last comma");
    }
  }
  return out;
}

std::string count_operands(std::size_t n) {
  return std::to_string(n) + (n == 1 ? " operand" : " operands");
}

void expect_operands(const Statement& st, std::size_t n) {
  if (st.operands.size() != n)
    fail(st.line, count_operands(st.operands.size()) + ", " + quote(st.mnemonic) + " takes " +
                      std::to_string(n));
}

/// The register form of each two-operand ALU mnemonic.
std::optional<Op> alu_op(std::string_view m) {
  if (m == "mov") return Op::mov;
  if (m == "add") return Op::add;
  if (m == "sub") return Op::sub;
  if (m == "mul") return Op::mul;
  if (m == "div") return Op::div;
  if (m == "mod") return Op::mod;
  if (m == "and") return Op::and_;
  if (m == "or") return Op::or_;
  if (m == "xor") return Op::xor_;
  if (m == "shl") return Op::shl;
  if (m == "shr") return Op::shr;
  return std::nullopt;
}

std::optional<Op> cond_jump_op(std::string_view m) {
  if (m == "jeq") return Op::jeq;
  if (m == "jne") return Op::jne;
  if (m == "jlt") return Op::jlt;
  if (m == "jge") return Op::jge;
  return std::nullopt;
}

constexpr std::uint8_t kImmBit = 0x40;  ///< register form | 0x40 = immediate form

/// A jump target: a label, or +N / -N (the imm itself: the jump goes to pc + 1 + N).
std::int32_t jump_offset(const Statement& st, std::string_view t, std::size_t pc,
                         const std::map<std::string_view, std::size_t>& labels) {
  if (!t.empty() && (t[0] == '+' || t[0] == '-')) return parse_imm(st.line, t);
  if (ident_length(t) == t.size()) {
    const auto it = labels.find(t);
    if (it == labels.end()) fail(st.line, "label " + quote(t) + " is not defined");
    // Both are at most the number of lines, so the difference fits easily.
    return static_cast<std::int32_t>(static_cast<std::int64_t>(it->second) -
                                     static_cast<std::int64_t>(pc) - 1);
  }
  fail(st.line, quote(t) + " is not a label or a relative offset (+N or -N)");
}

Insn translate(const Statement& st, std::size_t pc,
               const std::map<std::string_view, std::size_t>& labels) {
  const std::string_view m = st.mnemonic;
  const auto& ops = st.operands;
  const std::size_t line = st.line;
  Insn insn;
  if (const auto op = alu_op(m)) {
    expect_operands(st, 2);
    insn.dst = parse_register(line, ops[0]);
    if (looks_like_register(ops[1])) {
      insn.op = *op;
      insn.src = parse_register(line, ops[1]);
    } else if (looks_like_number(ops[1])) {
      insn.op = static_cast<Op>(static_cast<std::uint8_t>(*op) | kImmBit);
      insn.imm = parse_imm(line, ops[1]);
    } else {
      fail(line, quote(ops[1]) + " is not a register or a number");
    }
  } else if (m == "load" || m == "ldout") {  // load dst, idx, off
    expect_operands(st, 3);
    insn.op = m == "load" ? Op::load : Op::ldout;
    insn.dst = parse_register(line, ops[0]);
    insn.src = parse_register(line, ops[1]);
    insn.imm = parse_imm(line, ops[2]);
  } else if (m == "store") {  // store idx, value, off: out[idx + off] = value
    expect_operands(st, 3);
    insn.op = Op::store;
    insn.dst = parse_register(line, ops[0]);
    insn.src = parse_register(line, ops[1]);
    insn.imm = parse_imm(line, ops[2]);
  } else if (m == "jmp") {
    expect_operands(st, 1);
    insn.op = Op::jmp;
    insn.imm = jump_offset(st, ops[0], pc, labels);
  } else if (const auto jop = cond_jump_op(m)) {
    expect_operands(st, 3);
    insn.op = *jop;
    insn.dst = parse_register(line, ops[0]);
    insn.src = parse_register(line, ops[1]);
    insn.imm = jump_offset(st, ops[2], pc, labels);
  } else if (m == "exit") {
    expect_operands(st, 0);
    insn.op = Op::exit;
  } else if (m == "raw") {  // raw OP DST SRC IMM: any bytes; the imm as 32 bits
    expect_operands(st, 4);
    insn.op = static_cast<Op>(parse_in_range(line, ops[0], 0, 255, "a byte"));
    insn.dst = static_cast<std::uint8_t>(parse_in_range(line, ops[1], 0, 255, "a byte"));
    insn.src = static_cast<std::uint8_t>(parse_in_range(line, ops[2], 0, 255, "a byte"));
    insn.imm = static_cast<std::int32_t>(static_cast<std::uint32_t>(
        parse_in_range(line, ops[3], INT32_MIN, UINT32_MAX, "32 bits")));
  } else {
    fail(line, "unknown mnemonic " + quote(m));
  }
  return insn;
}

// ---------------------------------------------------------------------------------------
// disassemble() helpers

std::string reg(std::uint8_t r) { return "r" + std::to_string(r); }

std::string relative(std::int32_t imm) {
  return imm >= 0 ? "+" + std::to_string(imm) : std::to_string(imm);
}

/// The mnemonic of a register-form ALU op (mov .. shr, opcodes 0x01-0x0b), or nullptr.
const char* alu_name(Op op) {
  const auto code = static_cast<std::uint8_t>(op);
  return code >= static_cast<std::uint8_t>(Op::mov) && code <= static_cast<std::uint8_t>(Op::shr) ? op_name(op)
                                                                                                   : nullptr;
}

/// "raw 0xff 9 0 -1": what any instruction can always be written as.
std::string raw(const Insn& insn) {
  static constexpr char kDigits[] = "0123456789abcdef";
  const auto op = static_cast<unsigned>(insn.op);
  return std::string("raw 0x") + kDigits[op >> 4] + kDigits[op & 0xf] + " " +
         std::to_string(insn.dst) + " " + std::to_string(insn.src) + " " +
         std::to_string(insn.imm);
}

}  // namespace

std::vector<Insn> assemble(std::string_view text) {
  // Pass 1: statements and labels.
  std::vector<Statement> statements;
  std::map<std::string_view, std::size_t> labels;      // name -> instruction index
  std::map<std::string_view, std::size_t> label_line;  // name -> line defined on
  std::size_t line = 0;
  while (!text.empty() || line == 0) {
    ++line;
    const std::size_t nl = text.find('\n');
    std::string_view s = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);

    s = trim(s.substr(0, s.find_first_of("#;")));
    // Leading labels: "name:" (more than one on a line is allowed, and so is an
    // instruction after them).
    for (;;) {
      const std::size_t n = ident_length(s);
      if (n == 0) break;
      const std::string_view rest = trim(s.substr(n));
      if (rest.empty() || rest.front() != ':') break;
      const std::string_view name = s.substr(0, n);
      if (looks_like_register(name))
        fail(line, quote(name) + " is a register name, not a label");
      if (const auto it = label_line.find(name); it != label_line.end())
        fail(line, "label " + quote(name) + " is already defined on line " +
                       std::to_string(it->second));
      labels[name] = statements.size();
      label_line[name] = line;
      s = trim(rest.substr(1));
    }
    if (s.empty()) continue;

    std::size_t end = 0;
    while (end < s.size() && !is_space(s[end])) ++end;
    statements.push_back({line, s.substr(0, end), split_operands(line, s.substr(end))});
  }

  // Pass 2: instructions, with every label known.
  std::vector<Insn> program;
  program.reserve(statements.size());
  for (std::size_t pc = 0; pc < statements.size(); ++pc)
    program.push_back(translate(statements[pc], pc, labels));
  return program;
}

std::string disassemble(const Insn& insn) {
  // The readable form only when it assembles back to exactly this instruction: known
  // opcode, registers r0..r7, and the fields the opcode does not use left at 0.
  // Anything else is printed as `raw`, which also assembles back exactly.
  const auto code = static_cast<std::uint8_t>(insn.op);
  if (insn.dst >= kRegisters || insn.src >= kRegisters) return raw(insn);
  if (const char* name = alu_name(insn.op); name && insn.imm == 0)
    return std::string(name) + " " + reg(insn.dst) + ", " + reg(insn.src);
  if ((code & kImmBit) != 0) {
    if (const char* name = alu_name(static_cast<Op>(code & ~kImmBit)); name && insn.src == 0)
      return std::string(name) + " " + reg(insn.dst) + ", " + std::to_string(insn.imm);
  }
  switch (insn.op) {
    case Op::load:
      return "load " + reg(insn.dst) + ", " + reg(insn.src) + ", " + std::to_string(insn.imm);
    case Op::store:
      return "store " + reg(insn.dst) + ", " + reg(insn.src) + ", " + std::to_string(insn.imm);
    case Op::ldout:
      return "ldout " + reg(insn.dst) + ", " + reg(insn.src) + ", " + std::to_string(insn.imm);
    case Op::jmp:
      if (insn.dst == 0 && insn.src == 0) return "jmp " + relative(insn.imm);
      break;
    case Op::jeq:
    case Op::jne:
    case Op::jlt:
    case Op::jge: {
      const char* name = insn.op == Op::jeq ? "jeq" : insn.op == Op::jne ? "jne"
                       : insn.op == Op::jlt ? "jlt" : "jge";
      return std::string(name) + " " + reg(insn.dst) + ", " + reg(insn.src) + ", " +
             relative(insn.imm);
    }
    case Op::exit:
      if (insn.dst == 0 && insn.src == 0 && insn.imm == 0) return "exit";
      break;
    default:
      break;
  }
  return raw(insn);
}

}  // namespace lambda
