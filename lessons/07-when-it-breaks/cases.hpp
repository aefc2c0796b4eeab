/**
 * @file lessons/07-when-it-breaks/cases.hpp
 * @brief The failures lesson 07 reproduces: one entry per `--break NAME`.
 *
 * A case is a Setup (what it changes in the ordinary connection, session.hpp) and two
 * halves, the client's and the server's, that run after the QP details were exchanged
 * (step 4 on). Each half does step 5 (break it), step 6 (what the verbs said) and step 7
 * (why that long, the wire, the remedy) and returns its verdict: 0 when what it saw is
 * what the case predicts for this implementation (kernel rxe or the userspace runtime).
 *
 * The cases live in files by where the failure shows:
 *   break_connect.cpp   while connecting: GID kinds, path MTU, PSNs, a QP not yet in RTR,
 *                       a missing modify_qp attribute
 *   break_receiver.cpp  at the receiver: no RECV (RNR), a RECV too small, a peer killed
 *   break_memory.cpp    remote memory: bad rkey, missing right, out of bounds,
 *                       deregistered MR, a READ without responder resources; and memlock
 *   break_queues.cpp    local queues: send queue overflow, CQ overflow, posting too early
 *   break_lossy_link.cpp  nothing broken: a stream over a link that loses, repeats and
 *                       reorders packets (the userspace runtime's fault injection)
 */
#pragma once

#include <string>
#include <vector>

#include "session.hpp"

namespace lesson07 {

/// One failure, reproducible on purpose.
struct Case {
  const char* name;                      ///< --break NAME
  const char* title;                     ///< one line: what breaks
  const char* fails;                     ///< where it shows: "client: IBV_WC_REM_ACCESS_ERR" ...
  Setup setup;                           ///< what it changes in the connection
  int (*client)(Session&);               ///< steps 4-7 on the client; returns the verdict
  int (*server)(Session&);               ///< steps 4-7 on the server; returns the verdict
  bool needs_server = true;              ///< false: the client alone (local verbs misuse)
  bool server_dies = false;              ///< the server's process is killed in step 5
};

/// peer-killed, the server, before the case opens the device: fork a witness, a process
/// that shares only the TCP connection @p tcp_fd and holds it open until this process has
/// exited (or 10 x @p timeout_s). A killed process's files are released in an order no
/// interface promises; were the TCP socket released first, its FIN could set the client
/// SENDing while the kernel had not yet destroyed the QP. With the witness, the client's
/// end of stream comes after the QP is gone (unless another process, a debugger say,
/// holds the server's device file or address space when it dies).
void leave_witness(int tcp_fd, double timeout_s);

/// Every case, in the README's order.
const std::vector<Case>& all_cases();

/// The case named @p name. @throws common::Error listing the names there are.
const Case& find_case(const std::string& name);

/// "gid-kinds, path-mtu, ..." for messages.
std::string case_names();

/// The cases of break_connect.cpp (cases.cpp joins the files' lists in this order).
std::vector<Case> connect_cases();
/// The cases of break_receiver.cpp.
std::vector<Case> receiver_cases();
/// The cases of break_memory.cpp.
std::vector<Case> memory_cases();
/// The cases of break_queues.cpp.
std::vector<Case> queue_cases();
/// The case of break_lossy_link.cpp.
std::vector<Case> lossy_link_cases();

}  // namespace lesson07
