// Unit tests of the node and replicator config loaders, including the shipped examples.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "replicator/node_config.h"
#include "replicator/replicator_config.h"
#include "tests/replicator/test_util.h"

namespace coffer::replicator {
namespace {

std::string SourceRoot() {
  const char* root = std::getenv("COFFER_SOURCE_ROOT");
  return root ? root : ".";
}

TEST(NodeConfigTest, ExampleParses) {
  NodeConfig c = LoadNodeConfig(config::Config::Load(SourceRoot() + "/examples/coffer-node.toml"));
  EXPECT_EQ(c.node_id, "n1");
  EXPECT_EQ(c.listen, std::vector<std::string>{"tcp://0.0.0.0:7401"});
  EXPECT_EQ(c.limits.max_batch, 1024u);
  EXPECT_NO_THROW(ValidateNodeConfig(c));
}

TEST(NodeConfigTest, DefaultsAndErrors) {
  NodeConfig c = LoadNodeConfig(config::Config::Empty());
  EXPECT_EQ(c.listen, std::vector<std::string>{"tcp://127.0.0.1:7401"});
  EXPECT_THROW(ValidateNodeConfig(c), config::ConfigError);  // data_dir etc. missing
  EXPECT_THROW(LoadNodeConfig(config::Config::Parse("datadir = \"x\"\n", "<test>")),
               config::ConfigError);
  EXPECT_THROW(LoadNodeConfig(config::Config::Parse("max_batch = 0\n", "<test>")),
               config::ConfigError);
  EXPECT_THROW(LoadNodeConfig(config::Config::Parse("play_dead = \"dead\"\n", "<test>")),
               config::ConfigError);
}

TEST(ReplicatorConfigTest, LoadsNodesAndKeys) {
  testutil::TempDir dir;
  auto box = GenerateKeyPair();
  WriteKeyPair(dir.path() + "/box", box);
  auto n1 = GenerateKeyPair();
  WriteKeyPair(dir.path() + "/n1", n1);
  auto n2 = GenerateKeyPair();
  std::string text = "box_id = 4\nsecret_key_file = \"" + dir.path() +
                     "/box.key_secret\"\nreplicas = 2\nhedge_delay_ms = 10\n"
                     "max_clock_skew_s = 60\n"
                     "[[node]]\nid = \"n1\"\nendpoint = \"tcp://127.0.0.1:1\"\n"
                     "public_key_file = \"" + dir.path() + "/n1.key\"\n"
                     "[[node]]\nid = \"n2\"\nendpoint = \"tcp://127.0.0.1:2\"\n"
                     "public_key = \"" + n2.public_key + "\"\n";
  ReplicatorConfig c = LoadReplicatorConfig(config::Config::Parse(text, "<test>"));
  EXPECT_EQ(c.box_id, 4u);
  EXPECT_EQ(c.options.replicas, 2u);
  EXPECT_EQ(c.options.hedge_delay.count(), 10);
  EXPECT_EQ(c.options.max_clock_skew.count(), 60);
  ASSERT_EQ(c.options.nodes.size(), 2u);
  EXPECT_EQ(c.options.nodes[0].public_key, n1.public_key);
  EXPECT_EQ(c.options.nodes[1].public_key, n2.public_key);
  EXPECT_EQ(c.options.client_keys.public_key, box.public_key);

  // Duplicate ids, bad keys, W > R and no nodes are errors.
  EXPECT_THROW(LoadReplicatorConfig(config::Config::Parse(
                   text + "[[node]]\nid = \"n1\"\nendpoint = \"tcp://h:3\"\npublic_key = \"" +
                       n2.public_key + "\"\n",
                   "<test>")),
               config::ConfigError);
  EXPECT_THROW(LoadReplicatorConfig(config::Config::Parse(
                   "secret_key_file = \"x\"\n[[node]]\nid = \"a\"\nendpoint = \"tcp://h:1\"\n"
                   "public_key = \"short\"\n",
                   "<test>")),
               config::ConfigError);
  EXPECT_THROW(LoadReplicatorConfig(config::Config::Parse(
                   "secret_key_file = \"x\"\nreplicas = 2\nwrite_quorum = 3\n", "<test>")),
               config::ConfigError);
  EXPECT_THROW(LoadReplicatorConfig(config::Config::Parse("secret_key_file = \"x\"\n", "<test>")),
               config::ConfigError);
}

TEST(CurveTest, KeyFilesRoundTripAndMismatchIsCaught) {
  testutil::TempDir dir;
  auto a = GenerateKeyPair();
  WriteKeyPair(dir.path() + "/a", a);
  auto loaded = LoadKeyPair(dir.path() + "/a.key_secret");
  EXPECT_EQ(loaded.public_key, a.public_key);
  EXPECT_EQ(loaded.secret_key, a.secret_key);
  auto b = GenerateKeyPair();
  std::ofstream(dir.path() + "/a.key") << b.public_key << "\n";
  EXPECT_THROW(LoadKeyPair(dir.path() + "/a.key_secret"), Error);
  std::ofstream(dir.path() + "/list") << "# c\n\n" << a.public_key << "\nnot-a-key\n";
  EXPECT_THROW(ReadKeyList(dir.path() + "/list"), Error);
  std::ofstream(dir.path() + "/list2") << "# c\n\n" << a.public_key << "\n  " << b.public_key << "\n";
  EXPECT_EQ(ReadKeyList(dir.path() + "/list2").size(), 2u);
  EXPECT_FALSE(IsZ85Key("abc"));
  EXPECT_FALSE(IsZ85Key(""));
}

}  // namespace
}  // namespace coffer::replicator
