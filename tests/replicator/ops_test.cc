// Unit tests of the node's operational helpers: rate-limited refusal logging, key fingerprints,
// what a SIGHUP reload applies, and credentials from $CREDENTIALS_DIRECTORY.
#include "replicator/curve.h"
#include "replicator/node_config.h"
#include "replicator/refusal_log.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace coffer::replicator {
namespace {

using namespace std::chrono_literals;

TEST(RefusalLogTest, OneLinePerPeerAndKeyPerInterval) {
  RefusalLog log(60s, 2);
  auto t = RefusalLog::Clock::time_point{} + 1000s;
  EXPECT_EQ(log.Record("10.0.0.1", "K1", t), std::optional<std::uint64_t>(0));
  EXPECT_FALSE(log.Record("10.0.0.1", "K1", t + 1s));
  EXPECT_FALSE(log.Record("10.0.0.1", "K1", t + 59s));
  EXPECT_EQ(log.Record("10.0.0.2", "K1", t + 2s), std::optional<std::uint64_t>(0));
  // After the interval: logged again, with the two suppressed in between.
  EXPECT_EQ(log.Record("10.0.0.1", "K1", t + 61s), std::optional<std::uint64_t>(2));
  // Bounded: a third peer evicts the oldest entry (10.0.0.2), which then logs at once.
  EXPECT_EQ(log.Record("10.0.0.3", "K1", t + 62s), std::optional<std::uint64_t>(0));
  EXPECT_EQ(log.Record("10.0.0.2", "K1", t + 63s), std::optional<std::uint64_t>(0));
}

TEST(RefusalLogTest, FingerprintIsStableAndSameForZ85AndRaw) {
  CurveKeyPair k = GenerateKeyPair();
  std::string fp = KeyFingerprint(k.public_key);
  EXPECT_EQ(fp.size(), 16u);
  EXPECT_EQ(fp, KeyFingerprint(k.public_key));
  EXPECT_NE(fp, KeyFingerprint(GenerateKeyPair().public_key));
  EXPECT_EQ(KeyFingerprint("short"), "");
}

TEST(ReloadTest, AppliesKeysAndLevelAndNamesWhatNeedsARestart) {
  NodeConfig a;
  a.allowed_keys_file = "/etc/coffer/allowed_boxes";
  NodeConfig b = a;
  b.log_level = "debug";
  b.listen = {"tcp://127.0.0.1:9999"};
  ReloadPlan plan = PlanReload(a, b, {"K1", "K2"}, {"K2", "K3", "K4"}, "", "ADMIN");
  ASSERT_EQ(plan.applied.size(), 3u);
  EXPECT_EQ(plan.applied[0], "allow list /etc/coffer/allowed_boxes: 3 keys (2 added, 1 removed)");
  EXPECT_EQ(plan.applied[1], "admin key  loaded");
  EXPECT_EQ(plan.applied[2], "log level info -> debug");
  ASSERT_EQ(plan.needs_restart.size(), 1u);
  EXPECT_EQ(plan.needs_restart[0], "listen changed: needs a restart");
  EXPECT_TRUE(PlanReload(a, a, {"K"}, {"K"}, "", "").applied.empty());
}

TEST(ReloadTest, RelativeSecretKeyComesFromTheCredentialsDirectory) {
  ::setenv("CREDENTIALS_DIRECTORY", "/run/credentials/coffer-node.service", 1);
  EXPECT_EQ(ResolveCredential("node.key_secret"),
            "/run/credentials/coffer-node.service/node.key_secret");
  EXPECT_EQ(ResolveCredential("/etc/coffer/n1.key_secret"), "/etc/coffer/n1.key_secret");
  ::unsetenv("CREDENTIALS_DIRECTORY");
  EXPECT_EQ(ResolveCredential("node.key_secret"), "node.key_secret");
}

}  // namespace
}  // namespace coffer::replicator
