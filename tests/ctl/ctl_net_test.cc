// Integration tests of cofferctl against real coffer-node processes on 127.0.0.1: node stat,
// ping and play-dead (admin key only), and scrub from a config file with its summary and exit
// codes.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/crypto.h"
#include "common/fd.h"
#include "common/keyfile.h"
#include "ctl/ctl.h"
#include "ctl/status.h"
#include "tests/ctl/run_ctl.h"
#include "replicator/transport.h"
#include "tests/replicator/test_util.h"

namespace coffer::ctl {
namespace {

using namespace std::chrono_literals;
namespace rep = coffer::replicator;

using testing::Result;
using testing::RunCtl;

class CtlNetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    box_ = rep::GenerateKeyPair();
    admin_ = rep::GenerateKeyPair();
    rep::WriteKeyPair(dir_.path() + "/box", box_);
    rep::WriteKeyPair(dir_.path() + "/admin", admin_);
    std::ofstream(dir_.path() + "/allowed") << box_.public_key << "\n";
    std::ofstream cfg(dir_.path() + "/replicator.toml");
    cfg << "box_id = 7\nsecret_key_file = \"" << dir_.path() << "/box.key_secret\"\n"
        << "replicas = 3\nwrite_quorum = 2\nadmin_timeout_ms = 1500\n";
    for (int i = 0; i < 3; ++i) {
      std::string name = "n" + std::to_string(i + 1);
      rep::CurveKeyPair keys;
      auto s = testutil::NodeProcess::MakeSetup(dir_.path(), name, &keys);
      node_keys_.push_back(keys);
      nodes_.push_back(std::make_unique<testutil::NodeProcess>(s));
      nodes_.back()->Start();
      cfg << "\n[[node]]\nid = \"" << name << "\"\nendpoint = \"" << nodes_.back()->endpoint()
          << "\"\npublic_key_file = \"" << dir_.path() << "/" << name << ".key\"\n";
    }
  }
  void TearDown() override {
    for (auto& n : nodes_) n->Kill();
  }
  std::string Config() const { return dir_.path() + "/replicator.toml"; }

  testutil::TempDir dir_;
  rep::CurveKeyPair box_, admin_;
  std::vector<rep::CurveKeyPair> node_keys_;
  std::vector<std::unique_ptr<testutil::NodeProcess>> nodes_;
};

TEST_F(CtlNetTest, NodeStatPingAndPlayDead) {
  auto r = RunCtl({"node", "n1", "stat", "--config", Config()});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("objects     0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("play-dead   off"), std::string::npos) << r.out;
  r = RunCtl({"node", nodes_[1]->endpoint(), "ping", "--server-key", dir_.path() + "/n2.key",
              "--key", dir_.path() + "/box.key_secret"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("reply in"), std::string::npos);

  // play-dead needs the admin key: the box key is refused with "permission denied".
  r = RunCtl({"node", "n1", "play-dead", "refuse", "--config", Config()});
  EXPECT_EQ(r.rc, kExitNoPerm) << r.err;
  r = RunCtl({"node", "n1", "play-dead", "slow", "150", "--config", Config(), "--key",
              dir_.path() + "/admin.key_secret"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("slow 150"), std::string::npos);
  r = RunCtl({"node", "n1", "play-dead", "silent", "--config", Config(), "--key",
              dir_.path() + "/admin.key_secret"});
  ASSERT_EQ(r.rc, 0) << r.err;
  r = RunCtl({"node", "n1", "ping", "--config", Config(), "--timeout", "500"});
  EXPECT_EQ(r.rc, kExitUnavailable);
  EXPECT_NE(r.err.find("timeout"), std::string::npos) << r.err;
  r = RunCtl({"node", "n1", "play-dead", "off", "--config", Config(), "--key",
              dir_.path() + "/admin.key_secret"});
  ASSERT_EQ(r.rc, 0) << r.err;
  r = RunCtl({"node", "n1", "stat", "--config", Config()});
  EXPECT_NE(r.out.find("play-dead   off"), std::string::npos) << r.out;
}

TEST_F(CtlNetTest, UnknownKeyIsUnavailable) {
  auto stranger = rep::GenerateKeyPair();
  rep::WriteKeyPair(dir_.path() + "/stranger", stranger);
  auto r = RunCtl({"node", nodes_[0]->endpoint(), "ping", "--server-key",
                   dir_.path() + "/n1.key", "--key", dir_.path() + "/stranger.key_secret",
                   "--timeout", "800"});
  EXPECT_EQ(r.rc, kExitUnavailable);
}

TEST_F(CtlNetTest, ScrubReplicatesAndReports) {
  // Objects written to one node only: scrub must copy each to the two others.
  keyfile::KeySet keys = keyfile::KeySet::Generate(1700000000);
  AtomicWriteFile(dir_.path() + "/coffer.key", keyfile::Encode(keys, keyfile::Purpose::kKeyFile, nullptr), 0600);
  crypto::Keyring keyring = keys.MakeKeyring();
  rep::Transport t({{"n1", nodes_[0]->endpoint(), node_keys_[0].public_key}}, box_);
  rep::wire::Request put;
  for (int i = 0; i < 50; ++i) {
    auto id = crypto::RandomObjectId();
    auto* o = put.mutable_put()->add_objects();
    o->set_id(std::string(reinterpret_cast<const char*>(id.data()), id.size()));
    o->mutable_version()->set_hlc(1);
    o->set_sealed(crypto::Seal(keyring, crypto::ObjectKind::kChunk, id, 1, {1, 0}, "mail"));
  }
  rep::CallResult res;
  for (int i = 0; i < 100; ++i) {
    res = t.Call(0, put, 2000ms).get();
    if (res.status != rep::CallStatus::kUnreachable) break;
    std::this_thread::sleep_for(30ms);
  }
  ASSERT_EQ(res.status, rep::CallStatus::kOk);

  // Without the key a scrub cannot authenticate anything: it reports, writes nothing, exits 1.
  auto r = RunCtl({"scrub", "--config", Config(), "--record", dir_.path() + "/unused-scrub"});
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("checked 50, differing 50, repaired 0, moved 0, unreachable 0, "
                       "unrecoverable 0"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("report only"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("only reports"), std::string::npos) << r.err;
  rep::wire::Request stat;
  stat.mutable_stat();
  rep::Transport t2({{"n2", nodes_[1]->endpoint(), node_keys_[1].public_key}}, box_);
  for (int i = 0; i < 100; ++i) {
    res = t2.Call(0, stat, 2000ms).get();
    if (res.status != rep::CallStatus::kUnreachable) break;
    std::this_thread::sleep_for(30ms);
  }
  ASSERT_EQ(res.status, rep::CallStatus::kOk);
  EXPECT_EQ(res.reply.stat().objects(), 0u) << "a scrub without the key wrote to a node";

  // --record: where `cofferctl status` finds the last manual scrub (tests keep it here).
  const std::string record = dir_.path() + "/last-scrub";
  r = RunCtl({"scrub", "--config", Config(), "--key-file", dir_.path() + "/coffer.key",
              "--record", record});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("checked 50, differing 50, repaired 50, moved 0, unreachable 0, "
                       "unrecoverable 0"),
            std::string::npos) << r.out;
  EXPECT_NE(r.err.find("scrub: 50/50 objects"), std::string::npos) << r.err;
  auto rec = ParseScrubRecord(coffer::testing::ReadTextFile(record));
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->checked, 50u);
  EXPECT_EQ(rec->repaired, 50u);
  EXPECT_EQ(rec->config, Config());
  r = RunCtl({"scrub", "--config", Config(), "--key-file", dir_.path() + "/coffer.key", "--quiet",
              "--record", record});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("checked 50, differing 0, repaired 0"), std::string::npos) << r.out;
  EXPECT_TRUE(r.err.empty()) << r.err;

  nodes_[2]->Kill();
  r = RunCtl({"scrub", "--config", Config(), "--key-file", dir_.path() + "/coffer.key", "--quiet",
              "--record", record});
  EXPECT_EQ(r.rc, kExitTempFail) << r.out << r.err;
  EXPECT_NE(r.out.find("node n3: unreachable"), std::string::npos) << r.out;
}

TEST_F(CtlNetTest, ScrubWithKeyFileRepairsARottenCopy) {
  // The box's key file (no passphrase, 0600) and objects sealed under it on all three nodes,
  // with one node's copy of one object rotten at rest (same version, flipped byte).
  keyfile::KeySet keys = keyfile::KeySet::Generate(1700000000);
  AtomicWriteFile(dir_.path() + "/coffer.key", keyfile::Encode(keys, keyfile::Purpose::kKeyFile, nullptr), 0600);
  crypto::Keyring keyring = keys.MakeKeyring();
  std::vector<std::unique_ptr<rep::Transport>> conns;
  for (int n = 0; n < 3; ++n) {
    conns.push_back(std::make_unique<rep::Transport>(
        std::vector<rep::NodeAddress>{{"n", nodes_[static_cast<std::size_t>(n)]->endpoint(),
                                       node_keys_[static_cast<std::size_t>(n)].public_key}},
        box_));
  }
  auto call = [&](int n, const rep::wire::Request& req) {
    rep::CallResult res;
    for (int i = 0; i < 100; ++i) {
      res = conns[static_cast<std::size_t>(n)]->Call(0, req, 2000ms).get();
      if (res.status != rep::CallStatus::kUnreachable) break;
      std::this_thread::sleep_for(30ms);
    }
    return res;
  };
  rep::wire::Request put;
  for (int i = 0; i < 20; ++i) {
    auto id = crypto::RandomObjectId();
    auto* o = put.mutable_put()->add_objects();
    o->set_id(std::string(reinterpret_cast<const char*>(id.data()), id.size()));
    o->mutable_version()->set_hlc(5);
    o->set_sealed(crypto::Seal(keyring, crypto::ObjectKind::kChunk, id, keyring.current_epoch(),
                               {5, 0}, "record " + std::to_string(i)));
  }
  for (int n = 0; n < 3; ++n) ASSERT_EQ(call(n, put).status, rep::CallStatus::kOk);
  rep::wire::Request rot;
  *rot.mutable_put()->add_objects() = put.put().objects(0);
  std::string* bytes = rot.mutable_put()->mutable_objects(0)->mutable_sealed();
  (*bytes)[bytes->size() - 3] ^= 0x10;
  rot.mutable_put()->mutable_objects(0)->set_repair(true);
  ASSERT_EQ(call(1, rot).reply.put().results(0).status(), rep::wire::PUT_STORED);

  auto r = RunCtl({"scrub", "--config", Config(), "--keyfile", dir_.path() + "/coffer.key", "-q",
                   "--record", dir_.path() + "/last-scrub"});
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("checked 20, differing 1, repaired 1, moved 0, unreachable 0, "
                       "unrecoverable 0"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("verified with the key"), std::string::npos) << r.out;
  rep::wire::Request get;
  get.mutable_get()->add_ids(put.put().objects(0).id());
  auto res = call(1, get);
  ASSERT_EQ(res.status, rep::CallStatus::kOk);
  EXPECT_EQ(res.reply.get().results(0).object().sealed(), put.put().objects(0).sealed());
}

}  // namespace
}  // namespace coffer::ctl
