/**
 * @file lessons/04-lambda/bytecode/assembler.hpp
 * @brief A text assembler for the lesson's bytecode, so learners write programs, not bytes.
 *
 * @code
 *   # sum of all elements        ('#' or ';' starts a comment)
 *       mov r0, 0                # mov with a number is mov_imm
 *       mov r6, 0
 *   loop:                        # a label
 *       jge r6, r1, done         # r1 = number of elements
 *       load r7, r6, 0           # r7 = dataset[r6 + 0]
 *       add r0, r7
 *       add r6, 1                # add with a number is add_imm
 *       jmp loop
 *   done:
 *       exit
 * @endcode
 * Mnemonics: mov add sub mul div mod and or xor shl shr (dst, src-register or number),
 * load dst, idx, off / store idx, value, off / ldout dst, idx, off,
 * jmp label / jeq jne jlt jge a, b, label, exit, and `raw OP DST SRC IMM` for any bytes
 * at all (to build the bad programs the verifier must refuse). Numbers are decimal or
 * 0x-hex, optionally negative. Operands are separated by commas or spaces. A jump target
 * is a label or a relative offset `+N` / `-N`, which is the imm itself (the jump goes to
 * pc + 1 + N); disassemble() prints jumps that way, so its output assembles back to the
 * same instruction.
 */
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "vm.hpp"

namespace lambda {

/// A syntax error, with the 1-based line number in the message.
class AsmError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Assemble @p text into instructions. @throws AsmError naming the line and the problem.
std::vector<Insn> assemble(std::string_view text);

/// Disassemble one instruction ("load r7, r6, 0"), for logs.
std::string disassemble(const Insn& insn);

}  // namespace lambda
