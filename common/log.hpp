/**
 * @file log.hpp
 * @brief The narrated log: every line says when, in what order, where, and what kind of work.
 *
 * A line looks like
 * @code
 * [07:10:26.685 #0019 main] DATA  post SEND len=18
 * @endcode
 * timestamp (local time, milliseconds), a process-wide sequence number, the function
 * that logged, a tag, and the message. The tag sorts RDMA work into the three costs a
 * learner must tell apart:
 *  - SLOW: the control path (open device, create PD/CQ/QP, modify QP, register memory,
 *    the exchange with the peer). Each is a system call into the kernel; registration
 *    also pins every page of the buffer, so its cost grows with the size. Real
 *    programs do all of this once, up front.
 *  - FAST: fast-path preparation (post a work request). On an RDMA NIC no system call:
 *    the library writes a descriptor into the queue and rings a doorbell. (Soft-RoCE is
 *    software: there each ibv_post_send call still makes one system call, inside which
 *    the kernel's requester builds and sends the packets.)
 *  - DATA: data movement and completions. This is where RDMA spends its time.
 *
 * plus INFO (dumps and explanations), WARN and ERROR. A lesson's numbered steps appear
 * in its messages ("step 7: ...") so that log, code, README and capture walkthrough point
 * at each other.
 */
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <string>

namespace common {

/// What kind of work a log line narrates (see the file comment).
enum class Tag {
  slow,  ///< the control path: device, PD, CQ, QP, QP state changes, memory registration, exchanges
  fast,  ///< fast-path preparation: posting work requests
  data,  ///< data movement and completions
  info,  ///< dumps and explanations
  warn,  ///< something is off but the run goes on
  error  ///< the run stops; the message names the value seen and the remedy
};

/// How much the log says.
enum class Verbosity {
  quiet,    ///< only WARN and ERROR lines
  normal,   ///< the story: SLOW, FAST, DATA, INFO, WARN, ERROR
  verbose   ///< also the detail lines (log_detail): WR/SGE/WC dumps for every message
};

/// Set the process-wide verbosity (the option parser does this from -v / -q).
void set_verbosity(Verbosity v);

/// Write @p text and a newline to @p out, whole, between the log's own lines (the same
/// lock), then flush: for result lines printed from any thread.
void write_whole_line(std::FILE* out, const std::string& text);

/// The current process-wide verbosity.
Verbosity verbosity();

/**
 * Write one narrated line. Prefer the LOG() and LOG_DETAIL() macros, which fill in the
 * function name. WARN and ERROR go to stderr, everything else to stdout; each line is
 * flushed at once so two processes' logs interleave in the order things happened.
 * @param tag       the kind of work (decides the level at which the line shows)
 * @param function  the function that logs (`__func__`)
 * @param fmt       printf-style format
 */
void log_line(Tag tag, const char* function, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

/// Like log_line(), but shown only at Verbosity::verbose (per-message dumps).
void log_detail(Tag tag, const char* function, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

/// va_list form of log_line(), for helpers that forward their own format arguments.
void vlog_line(Tag tag, const char* function, const char* fmt, va_list args);

/// The first bytes of a message for a log line: up to @p max characters, stopping at
/// the first NUL, other bytes that are not printable ASCII shown as '.', and "..." when
/// cut short. (Message bytes come from the peer: never print them raw.)
std::string printable(const char* data, std::size_t length, std::size_t max = 40);

}  // namespace common

/// Log a narrated line: `LOG(slow, "step 4: allocate PD")`.
#define LOG(tag, ...) ::common::log_line(::common::Tag::tag, __func__, __VA_ARGS__)
/// Log a line shown only with -v: `LOG_DETAIL(info, "SGE: ...")`.
#define LOG_DETAIL(tag, ...) ::common::log_detail(::common::Tag::tag, __func__, __VA_ARGS__)
