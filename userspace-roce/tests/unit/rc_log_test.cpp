// What the RC transport says on stderr at UROCE_LOG=1, seen the way a user sees it: each
// scenario runs in a child process whose stderr is a pipe, and the test reads that pipe to
// its end. The runtime's log is written by a thread of its own and flushed when the
// process exits (log.cpp), so the end of the pipe is the end of everything said: no
// waiting on the clock. A program of its own, because the settings are read once per
// process: its main sets UROCE_LOG=1 before anything can read them.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <string>

#include "rc_peer.hpp"

namespace uroce::rc_test {
namespace {

using namespace wire;
using socketless::RcSetup;

/// Runs `scenario` in a child process and returns everything it wrote to stderr; the
/// child's exit status must be 0.
std::string stderr_of(const std::function<void()>& scenario) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], STDERR_FILENO);
    close(fds[1]);
    scenario();
    std::exit(0);  // flushes the runtime's log (its atexit handler) into the pipe
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) != 0;) {
    if (n > 0) out.append(buf, static_cast<size_t>(n));
    else if (errno != EINTR) break;
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  return out;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Every retry consumed says why, which one it is and how many remain: a sequence NAK and
// a timeout each take one of retry_cnt 3.
TEST(RcLog, ConsumedRetrySaysHowManyRemain) {
  const std::string log = stderr_of([] {
    RcSetup s;
    s.retry_cnt = 3;
    SocketlessRc h(s);
    h.post_send(1, IBV_WR_SEND, 0, 8);  // PSN 0x500 = 1280
    h.deliver(ack_from_peer(h, 0x500, kAethNak | kNakPsnSequence));
    h.advance(std::chrono::hours(1));
  });
  EXPECT_EQ(count(log, "NAK PSN sequence error: resending from PSN 1280 (retry 1 of retry_cnt 3; 2 left)"), 1u)
      << log;
  EXPECT_EQ(count(log, "ACK timeout: resending from PSN 1280 (retry 2 of retry_cnt 3; 1 left)"), 1u)
      << log;
}

// An opcode ibv_post_send cannot do is said once per opcode, however often it is posted.
TEST(RcLog, UnsupportedOpcodeIsSaidOnce) {
  const std::string log = stderr_of([] {
    SocketlessRc h;
    for (ibv_wr_opcode op : {IBV_WR_ATOMIC_CMP_AND_SWP, IBV_WR_ATOMIC_FETCH_AND_ADD,
                             IBV_WR_ATOMIC_CMP_AND_SWP, IBV_WR_ATOMIC_CMP_AND_SWP})
      if (h.post_send(1, op, 0, 8) != EOPNOTSUPP) std::exit(3);
  });
  EXPECT_EQ(count(log, "ibv_post_send with IBV_WR_ATOMIC_CMP_AND_SWP is not implemented by "
                       "userspace-roce (EOPNOTSUPP)"),
            1u)
      << log;
  EXPECT_EQ(count(log, "IBV_WR_ATOMIC_FETCH_AND_ADD is not implemented"), 1u) << log;
}

}  // namespace
}  // namespace uroce::rc_test

int main(int argc, char** argv) {
  setenv("UROCE_LOG", "1", 1);  // before the runtime first reads its settings
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
