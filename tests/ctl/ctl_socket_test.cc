// cofferctl fs|pop3d: the play-dead vocabulary translated to each program's control protocol,
// against a stand-in control socket that records the line it got (the real programs' protocols
// are tested in tests/fs and tests/pop3d); plus the errors when nothing listens.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "ctl/ctl.h"
#include "tests/ctl/run_ctl.h"
#include "tests/support/subprocess.h"

namespace coffer::ctl {
namespace {

// Accepts one connection, reads one line, answers `answer`, and remembers the line.
class FakeControl {
 public:
  FakeControl(const std::string& path, std::string answer) {
    fd_ = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(listen(fd_, 1), 0);
    thread_ = std::thread([this, answer] {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[256];
      ssize_t n;
      while ((n = read(c, buf, sizeof buf)) > 0) {
        line_.append(buf, static_cast<std::size_t>(n));
        if (line_.find('\n') != std::string::npos) break;
      }
      std::string reply = answer + "\n";
      if (write(c, reply.data(), reply.size()) < 0) {}
      close(c);
    });
  }
  ~FakeControl() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    if (thread_.joinable()) thread_.join();
  }
  std::string line() {
    if (thread_.joinable()) thread_.join();
    return line_;
  }

 private:
  int fd_;
  std::string line_;
  std::thread thread_;
};

using testing::Result;
using testing::RunCtl;

TEST(CtlSocketTest, TranslatesPlayDeadForEachProgram) {
  coffer::testing::TempDir dir;
  struct Case {
    std::vector<std::string> args;
    std::string sent;
  } cases[] = {
      {{"fs", "S", "play-dead", "eio"}, "eio\n"},
      {{"fs", "S", "play-dead", "slow", "250"}, "slow 250\n"},
      {{"fs", "S", "play-dead", "off"}, "normal\n"},
      {{"fs", "S", "status"}, "status\n"},
      {{"pop3d", "S", "play-dead", "refuse"}, "play-dead refuse\n"},
      {{"pop3d", "S", "play-dead", "stop"}, "play-dead stop\n"},
      {{"pop3d", "S", "play-dead", "slow", "100"}, "play-dead slow 100\n"},
      {{"pop3d", "S", "play-dead", "off"}, "play-dead off\n"},
      {{"pop3d", "S", "status"}, "status\n"},
  };
  int i = 0;
  for (auto& c : cases) {
    std::string sock = dir / ("s" + std::to_string(i++));
    c.args[1] = sock;
    FakeControl fake(sock, "ok mode=whatever");
    Result r = RunCtl(c.args);
    EXPECT_EQ(r.rc, kExitOk) << c.args[0] << " " << c.args[2] << ": " << r.err;
    EXPECT_EQ(r.out, "ok mode=whatever\n");
    EXPECT_EQ(fake.line(), c.sent);
  }
}

TEST(CtlSocketTest, BadModesAreUsageErrorsAndSendNothing) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"fs", "/nonexistent.sock", "play-dead", "refuse"},
           {"fs", "/nonexistent.sock", "play-dead", "slow"},
           {"fs", "/nonexistent.sock", "play-dead", "slow", "x1"},
           {"pop3d", "/nonexistent.sock", "play-dead", "eio"},
           {"pop3d", "/nonexistent.sock", "play-dead"},
           {"pop3d", "/nonexistent.sock", "explode"}}) {
    Result r = RunCtl(args);
    EXPECT_EQ(r.rc, kExitUsage) << args[0] << " " << args[2];
  }
}

TEST(CtlSocketTest, ErrorsWhenNothingListensOrTheProgramRefuses) {
  Result r = RunCtl({"fs", "/nonexistent/control.sock", "status"});
  EXPECT_EQ(r.rc, kExitUnavailable);
  EXPECT_NE(r.err.find("/nonexistent/control.sock"), std::string::npos) << r.err;
  coffer::testing::TempDir dir;
  FakeControl fake(dir / "s", "err unknown command");
  r = RunCtl({"fs", dir / "s", "play-dead", "eio"});
  EXPECT_EQ(r.rc, kExitDataErr);
  EXPECT_NE(r.err.find("err unknown command"), std::string::npos);
}

}  // namespace
}  // namespace coffer::ctl
