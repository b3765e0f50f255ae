// Logging set-up: levels parse, the default logger is replaced, and messages below the level are
// dropped.
#include "common/log.h"

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "tests/support/subprocess.h"

namespace coffer::log {
namespace {

TEST(LogTest, ParseLevel) {
  EXPECT_EQ(ParseLevel("debug"), spdlog::level::debug);
  EXPECT_EQ(ParseLevel("warning"), spdlog::level::warn);
  EXPECT_EQ(ParseLevel("warn"), spdlog::level::warn);
  EXPECT_EQ(ParseLevel("error"), spdlog::level::err);
  EXPECT_EQ(ParseLevel("off"), spdlog::level::off);
  EXPECT_FALSE(ParseLevel("loud"));
  EXPECT_FALSE(ParseLevel(""));
}

TEST(LogTest, InitSetsLevelAndSinks) {
  Options o;
  o.program = "coffer-test";
  o.level = spdlog::level::warn;
  o.to_syslog = true;
  Init(o);
  EXPECT_EQ(spdlog::default_logger()->name(), "coffer-test");
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::warn);
  EXPECT_EQ(spdlog::default_logger()->sinks().size(), 2u);
  EXPECT_FALSE(spdlog::default_logger()->should_log(spdlog::level::info));
  EXPECT_TRUE(spdlog::default_logger()->should_log(spdlog::level::err));
  o.to_syslog = false;
  Init(o);  // again: replaces, does not throw
  EXPECT_EQ(spdlog::default_logger()->sinks().size(), 1u);
}

TEST(LogTest, WritesToStderrWithProgramAndLevel) {
  // In a child, so that the test's own stderr is left alone.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(fds[1], 2);
    Options o;
    o.program = "coffer-demo";
    Init(o);
    spdlog::debug("hidden");
    spdlog::warn("node {} is down", "n1");
    spdlog::default_logger()->flush();
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  waitpid(pid, nullptr, 0);
  EXPECT_NE(out.find("coffer-demo"), std::string::npos) << out;
  EXPECT_NE(out.find("warning: node n1 is down"), std::string::npos) << out;
  EXPECT_EQ(out.find("hidden"), std::string::npos) << out;
}

}  // namespace
}  // namespace coffer::log
