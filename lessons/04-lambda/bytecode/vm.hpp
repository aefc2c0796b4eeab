/**
 * @file lessons/04-lambda/bytecode/vm.hpp
 * @brief The lesson's tiny bytecode: a register machine in the spirit of eBPF, a verifier
 *        that checks a program before it runs, and an interpreter that checks every step.
 *
 * Why a bytecode at all: the idea of "shipping the function to the data" is sound, but
 * shipping *machine code* and jumping to it is remote code execution by design. A
 * bytecode that the server verifies and interprets can only do what the interpreter
 * lets it do: read the dataset, write a small output window, compute, stop. No memory
 * is ever writable and executable; no native code crosses the wire.
 *
 * Machine: 8 registers r0..r7 of 64-bit signed integers, all zero at the start except
 *   r1 = number of elements in the dataset, r2..r5 = the request's four arguments.
 * r0 is the result when the program executes `exit`.
 *
 * Encoding: every instruction is 8 bytes, big-endian on the wire:
 * @code
 *   byte 0    opcode (Op)
 *   byte 1    dst register (0..7)
 *   byte 2    src register (0..7)
 *   byte 3    reserved, must be 0
 *   bytes 4-7 imm, a signed 32-bit immediate (big-endian)
 * @endcode
 *
 * Memory: the dataset is an array of 64-bit big-endian signed integers (the server's
 * registered region, read-only to programs); the output window is an array of up to
 * kMaxOut 64-bit integers that the response carries back. Element indices, never
 * addresses: a program cannot even name memory outside these two arrays.
 *
 * Arithmetic wraps (two's complement); division and modulo by zero stop the program;
 * INT64_MIN / -1 wraps to INT64_MIN and INT64_MIN % -1 is 0.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace lambda {

inline constexpr std::size_t kInsnBytes = 8;         ///< bytes per instruction
inline constexpr std::size_t kMaxInsns = 256;        ///< longest program the verifier accepts
inline constexpr int kRegisters = 8;                 ///< r0..r7
inline constexpr std::size_t kMaxOut = 64;           ///< most output slots a program may use
inline constexpr std::uint64_t kMaxSteps = 10'000'000;  ///< the server's step budget ceiling

/// Opcodes. ALU operations come in a register form (dst = dst OP src) and an immediate
/// form (dst = dst OP imm), which is the register form's value | 0x40.
enum class Op : std::uint8_t {
  mov = 0x01,   ///< dst = src
  add = 0x02,   ///< dst += src
  sub = 0x03,   ///< dst -= src
  mul = 0x04,   ///< dst *= src
  div = 0x05,   ///< dst /= src (signed; src == 0 stops with divide_by_zero)
  mod = 0x06,   ///< dst %= src (signed; src == 0 stops with divide_by_zero)
  and_ = 0x07,  ///< dst &= src
  or_ = 0x08,   ///< dst |= src
  xor_ = 0x09,  ///< dst ^= src
  shl = 0x0a,   ///< dst <<= (src & 63)
  shr = 0x0b,   ///< dst >>= (src & 63), arithmetic
  mov_imm = 0x41, add_imm = 0x42, sub_imm = 0x43, mul_imm = 0x44, div_imm = 0x45,
  mod_imm = 0x46, and_imm = 0x47, or_imm = 0x48, xor_imm = 0x49, shl_imm = 0x4a,
  shr_imm = 0x4b,  ///< immediate forms: dst = dst OP imm (mov_imm: dst = imm)
  load = 0x10,    ///< dst = dataset[src + imm]   (bounds-checked at run time)
  store = 0x11,   ///< out[dst + imm] = src       (bounds-checked at run time)
  ldout = 0x12,   ///< dst = out[src + imm]       (bounds-checked at run time)
  jmp = 0x20,     ///< pc = pc + 1 + imm
  jeq = 0x21,     ///< if dst == src: pc = pc + 1 + imm
  jne = 0x22,     ///< if dst != src: ...
  jlt = 0x23,     ///< if dst <  src (signed): ...
  jge = 0x24,     ///< if dst >= src (signed): ...
  exit = 0x30,    ///< stop; the result is r0
};

/// One decoded instruction.
struct Insn {
  Op op = Op::exit;      ///< what to do
  std::uint8_t dst = 0;  ///< destination register (or index register of store)
  std::uint8_t src = 0;  ///< source register
  std::int32_t imm = 0;  ///< immediate / element offset / jump offset
};

/// Why a program was refused or stopped. The numeric values travel in the response, so
/// they never change meaning; new ones are added at the end.
enum class Status : std::uint8_t {
  ok = 0,                   ///< ran to `exit`
  empty = 1,                ///< no instructions
  bad_length = 2,           ///< byte count not a multiple of 8
  too_long = 3,             ///< more than kMaxInsns instructions
  unknown_opcode = 4,       ///< an opcode this build does not define
  bad_register = 5,         ///< a register number above 7
  reserved_nonzero = 6,     ///< byte 3 of an instruction is not 0
  jump_out_of_range = 7,    ///< a jump target outside the program
  falls_off_end = 8,        ///< the last instruction is neither exit nor jmp
  step_limit = 9,           ///< the step budget ran out (e.g. an endless loop)
  load_out_of_bounds = 10,  ///< load outside the dataset
  store_out_of_bounds = 11, ///< store or ldout outside the output window
  divide_by_zero = 12,      ///< div or mod by zero
  unknown_function = 13,    ///< a catalogue call with an id the server does not have
  bad_request = 14,         ///< the request itself is malformed (see the detail text)
};

/// "step_limit" etc.
const char* status_name(Status s);

/// The mnemonic of an opcode ("jge"); the immediate forms read "add_imm" etc.; "?" for
/// a byte that is no opcode.
const char* op_name(Op op);

/// The verifier's verdict: ok, or what is wrong and at which instruction.
struct Verdict {
  Status status = Status::ok;  ///< ok or the first problem found
  std::uint32_t pc = 0;        ///< index of the offending instruction (0 if none)
  std::string detail;          ///< human-readable, names the values seen
};

/// Encode instructions to their 8-byte big-endian wire form.
std::vector<std::uint8_t> encode(const std::vector<Insn>& program);

/**
 * Decode and verify a program before anything runs: length (non-empty, a multiple of 8,
 * at most kMaxInsns instructions), every opcode known, every register < 8, reserved
 * byte zero, every jump target inside the program, and the last instruction `exit` or
 * `jmp` so that no path runs off the end. Memory accesses and the step count depend on
 * register values, so the interpreter checks those at run time.
 * @param bytes  the program as received (untrusted)
 * @param out    the decoded instructions, filled only when the verdict is ok
 */
Verdict verify(std::span<const std::uint8_t> bytes, std::vector<Insn>& out);

/// What a run produced.
struct RunResult {
  Status status = Status::ok;  ///< ok, or why it stopped
  std::uint32_t pc = 0;        ///< the instruction that stopped it (or the exit)
  std::int64_t r0 = 0;         ///< the result register at exit
  std::uint64_t steps = 0;     ///< instructions executed
  std::uint32_t out_used = 0;  ///< 1 + the highest output slot written (0: none)
  std::string detail;          ///< why it stopped, with the values seen
};

/**
 * Run a verified program (from verify()) to `exit` or to the first fault.
 * @param program      verified instructions
 * @param args         the request's four arguments (r2..r5)
 * @param dataset_be   the dataset: 8-byte big-endian signed integers (its size / 8 is r1)
 * @param out          the output window (its size is the bound stores are checked
 *                     against; at most kMaxOut); slots start as given
 * @param step_budget  the most instructions to execute (at most kMaxSteps)
 */
RunResult run(const std::vector<Insn>& program, const std::int64_t (&args)[4],
              std::span<const std::uint8_t> dataset_be, std::span<std::int64_t> out,
              std::uint64_t step_budget);

}  // namespace lambda
