/**
\file
\brief The namespaces of common/ and the lessons, described once for the API pages.

Only Doxygen reads this header (docs/Doxyfile.in); no program includes it. A namespace
with a description gets its own page, which lists and links the functions declared in
it.
*/
/// What an earlier lesson taught, for the lessons after it (common/; docs/mainpage.md lists
/// its files, one concept each).
namespace common {
/// The socket helpers under common/tcp.hpp and lesson 05's tls.hpp (common/net.hpp).
namespace net {}
}

/// Lesson 01's endpoint: every verbs call of steps 2-9 and 11, spelled out
/// (lessons/01-verbs-send-recv/rc_endpoint.hpp).
namespace lesson01 {}

/// What lesson 02's server and client share (lessons/02-cm-write-read/lesson02.hpp).
namespace lesson02 {}

/// What lesson 03's server and client share (lessons/03-write-with-imm/lesson03.hpp).
namespace lesson03 {}

/// Lesson 04: its wire protocol, and the bytecode with its verifier, interpreter and
/// assembler (lessons/04-lambda/).
namespace lambda {}

/// What lesson 04's server and client share (lessons/04-lambda/lesson04.hpp).
namespace lesson04 {}

/// Lesson 05: the TLS 1.3 exchange and the server's connections
/// (lessons/05-tls-psn/tls.hpp, connection.hpp).
namespace lesson05 {}

/// Lesson 06: the connection sized for a window, the techniques it measures (ping-pong,
/// stream, waiting), the plan, the numbers (lessons/06-performance/).
namespace lesson06 {}

/// Lesson 07: the ordinary connection a failure changes (Session, Setup), the cases and
/// what they report (lessons/07-when-it-breaks/).
namespace lesson07 {}
