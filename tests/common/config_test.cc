// Config files: typed getters with defaults and ranges, and errors that name file, line and key.
#include "common/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/subprocess.h"

namespace coffer::config {
namespace {

using ::testing::HasSubstr;

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.err(), EINVAL);
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError thrown";
  return "";
}

TEST(ConfigTest, DefaultsWhenAbsent) {
  Config c = Config::Empty();
  EXPECT_EQ(c.String("data_dir", "/var/lib/coffer"), "/var/lib/coffer");
  EXPECT_EQ(c.Int("limits.max_batch", 64, 1, 1000), 64);
  EXPECT_TRUE(c.Bool("sync", true));
  EXPECT_DOUBLE_EQ(c.Double("timeout", 1.5, 0, 10), 1.5);
  EXPECT_EQ(c.StringArray("listen", {"a"}), std::vector<std::string>{"a"});
  EXPECT_FALSE(c.OptionalString("x").has_value());
  EXPECT_FALSE(c.Has("x"));
  EXPECT_TRUE(c.TableArray("node").empty());
}

TEST(ConfigTest, ReadsValuesAndNestedKeys) {
  Config c = Config::Parse(R"(
data_dir = "/srv/coffer"
listen = ["tcp://127.0.0.1:7401", "tcp://127.0.0.1:7402"]
sync = false
timeout = 2
[limits]
max_batch = 128
[[node]]
id = "n1"
[[node]]
id = "n2"
)",
                           "test.toml");
  EXPECT_EQ(c.String("data_dir", ""), "/srv/coffer");
  EXPECT_EQ(c.StringArray("listen", {}).size(), 2u);
  EXPECT_FALSE(c.Bool("sync", true));
  EXPECT_DOUBLE_EQ(c.Double("timeout", 1, 0, 10), 2.0);  // integers are numbers too
  EXPECT_EQ(c.Int("limits.max_batch", 64, 1, 1000), 128);
  EXPECT_EQ(c.Table("limits").Int("max_batch", 0, 0, 1000), 128);
  auto nodes = c.TableArray("node");
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[1].String("id", ""), "n2");
  EXPECT_EQ(c.source(), "test.toml");
}

TEST(ConfigTest, SyntaxErrorNamesFileLineAndColumn) {
  std::string msg = ErrorOf([] { Config::Parse("a = 1\nb = = 2\n", "bad.toml"); });
  EXPECT_THAT(msg, HasSubstr("bad.toml:2:"));
}

TEST(ConfigTest, TypeErrorNamesFileLineAndKey) {
  Config c = Config::Parse("a = 1\n[limits]\nmax_batch = \"many\"\n", "node.toml");
  std::string msg = ErrorOf([&] { c.Int("limits.max_batch", 1, 1, 10); });
  EXPECT_THAT(msg, HasSubstr("node.toml:3:"));
  EXPECT_THAT(msg, HasSubstr("'limits.max_batch'"));
  EXPECT_THAT(msg, HasSubstr("expected an integer"));
  msg = ErrorOf([&] { c.String("a", ""); });
  EXPECT_THAT(msg, HasSubstr("node.toml:1:"));
  msg = ErrorOf([&] { c.Bool("a", false); });
  EXPECT_THAT(msg, HasSubstr("true or false"));
}

TEST(ConfigTest, RangeErrors) {
  Config c = Config::Parse("n = 0\nd = 11.5\n", "r.toml");
  std::string msg = ErrorOf([&] { c.Int("n", 1, 1, 10); });
  EXPECT_THAT(msg, HasSubstr("r.toml:1:"));
  EXPECT_THAT(msg, HasSubstr("out of range [1, 10]"));
  msg = ErrorOf([&] { c.Double("d", 1, 0, 10); });
  EXPECT_THAT(msg, HasSubstr("r.toml:2:"));
}

TEST(ConfigTest, ArrayElementsAreChecked) {
  Config c = Config::Parse("listen = [\"a\", 3]\n", "a.toml");
  std::string msg = ErrorOf([&] { c.StringArray("listen", {}); });
  EXPECT_THAT(msg, HasSubstr("a.toml:1:"));
  EXPECT_THAT(msg, HasSubstr("only strings"));
}

TEST(ConfigTest, TableArrayErrorsCarryTheIndex) {
  Config c = Config::Parse("[[node]]\nid = \"a\"\n[[node]]\nid = 7\n", "n.toml");
  auto nodes = c.TableArray("node");
  std::string msg = ErrorOf([&] { nodes[1].String("id", ""); });
  EXPECT_THAT(msg, HasSubstr("n.toml:4:"));
  EXPECT_THAT(msg, HasSubstr("'node[1].id'"));
}

TEST(ConfigTest, UnknownKeysAreRejected) {
  Config c = Config::Parse("data_dir = \"x\"\n[limits]\nmax_bacth = 3\n", "typo.toml");
  std::string msg = ErrorOf([&] { c.RejectUnknown({"data_dir", "limits.max_batch"}); });
  EXPECT_THAT(msg, HasSubstr("typo.toml:3:"));
  EXPECT_THAT(msg, HasSubstr("unknown key 'limits.max_bacth'"));
  EXPECT_NO_THROW(c.RejectUnknown({"data_dir", "limits.*"}));
  Config ok = Config::Parse("data_dir = \"x\"\n[limits]\nmax_batch = 3\n", "ok.toml");
  EXPECT_NO_THROW(ok.RejectUnknown({"data_dir", "limits.max_batch"}));
}

TEST(ConfigTest, LoadNamesMissingFile) {
  std::string msg = ErrorOf([] { Config::Load("/nonexistent/coffer.toml"); });
  EXPECT_THAT(msg, HasSubstr("/nonexistent/coffer.toml"));
  coffer::testing::TempDir dir;
  coffer::testing::WriteTextFile(dir / "c.toml", "x = 5\n");
  EXPECT_EQ(Config::Load(dir / "c.toml").Int("x", 0, 0, 10), 5);
}

TEST(ConfigTest, FailPointsAtKey) {
  Config c = Config::Parse("\n\nendpoint = \"udp://x\"\n", "e.toml");
  std::string msg = ErrorOf([&] { c.Fail("endpoint", "must start with tcp://"); });
  EXPECT_THAT(msg, HasSubstr("e.toml:3:"));
  EXPECT_THAT(msg, HasSubstr("must start with tcp://"));
}

}  // namespace
}  // namespace coffer::config
