// Unit tests of cofferctl's command line (no network): help, usage errors and their exit codes.
#include "ctl/ctl.h"
#include "tests/ctl/run_ctl.h"

#include <gtest/gtest.h>

#include <sstream>

namespace coffer::ctl {
namespace {

using testing::Result;
using testing::RunCtl;

TEST(CtlTest, HelpListsEveryCommand) {
  auto r = RunCtl({"--help"});
  EXPECT_EQ(r.rc, 0);
  for (const auto& c : Commands()) EXPECT_NE(r.out.find(c.name), std::string::npos) << c.name;
  r = RunCtl({"node", "--help"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("play-dead"), std::string::npos);
}

TEST(CtlTest, UsageErrors) {
  EXPECT_EQ(RunCtl({}).rc, kExitUsage);
  EXPECT_EQ(RunCtl({"frobnicate"}).rc, kExitUsage);
  EXPECT_EQ(RunCtl({"node"}).rc, kExitUsage);
  EXPECT_EQ(RunCtl({"scrub"}).rc, kExitUsage);  // --config is required
  // No keys: a usage error that says which option is missing.
  auto r = RunCtl({"node", "tcp://127.0.0.1:9", "ping"});
  EXPECT_EQ(r.rc, kExitUsage);
  EXPECT_NE(r.err.find("--server-key"), std::string::npos);
}

TEST(CtlTest, BadModeAndBadKeys) {
  // A Z85 key that is valid (40 characters of the alphabet decoding to 32 bytes).
  const std::string key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
  auto r = RunCtl({"node", "tcp://127.0.0.1:9", "play-dead", "dead", "--server-key", key,
                   "--key", "/nonexistent.key_secret"});
  EXPECT_EQ(r.rc, kExitConfig);
  r = RunCtl({"node", "tcp://127.0.0.1:9", "ping", "--server-key", "/nonexistent"});
  EXPECT_EQ(r.rc, kExitConfig);
  r = RunCtl({"scrub", "--config", "/nonexistent.toml"});
  EXPECT_EQ(r.rc, kExitConfig);
}

}  // namespace
}  // namespace coffer::ctl
