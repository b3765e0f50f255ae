// coffer-node for operators, with a real node on 127.0.0.1: the exclusive lock on data_dir, a
// SIGHUP that reloads the allow list (and says so), the rate-limited log of refused handshakes
// (peer address, key, fingerprint; a wrong node key), the box-side wording of a refused
// handshake, and the metrics listener.
#include <signal.h>

#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "common/fd.h"
#include "common/metrics_http.h"
#include "replicator/curve.h"
#include "replicator/refusal_log.h"
#include "replicator/transport.h"
#include "tests/replicator/test_util.h"

namespace coffer::replicator {
namespace {

using namespace std::chrono_literals;

class NodeOpsNetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    node_keys_ = GenerateKeyPair();
    box_keys_ = GenerateKeyPair();
    WriteKeyPair(dir_.path() + "/node", node_keys_);
    std::ofstream(dir_.path() + "/allowed") << box_keys_.public_key << "\n";
    setup_.node_id = "n1";
    setup_.dir = dir_.path() + "/n1";
    setup_.port = testutil::FreePort();
    setup_.secret_key_file = dir_.path() + "/node.key_secret";
    setup_.allowed_keys_file = dir_.path() + "/allowed";
    metrics_port_ = testutil::FreePort();
    setup_.extra_args = {"--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port_)};
    node_ = std::make_unique<testutil::NodeProcess>(setup_);
    node_->Start();
  }
  void TearDown() override {
    if (HasFailure() && node_) std::cerr << "node log:\n" << node_->Log();
  }
  pid_t NodePid() {
    // The data_dir lock file holds the PID of the node that holds the lock.
    return static_cast<pid_t>(std::stol(ReadFile(setup_.dir + "/data/lock", 64)));
  }
  CallResult Ping(const CurveKeyPair& keys, const std::string& server_key, int attempts) {
    Transport t({{"n1", node_->endpoint(), server_key}}, keys);
    wire::Request req;
    req.mutable_ping();
    CallResult r;
    for (int i = 0; i < attempts; ++i) {
      r = t.Call(0, req, 1000ms).get();
      if (r.status != CallStatus::kUnreachable) return r;
      std::this_thread::sleep_for(50ms);
    }
    return r;
  }
  bool WaitForLog(const std::string& text, int ms = 5000) {
    for (int i = 0; i < ms / 50; ++i) {
      if (node_->Log().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  testutil::TempDir dir_;
  CurveKeyPair node_keys_, box_keys_;
  testutil::NodeProcess::Setup setup_;
  int metrics_port_ = 0;
  std::unique_ptr<testutil::NodeProcess> node_;
};

TEST_F(NodeOpsNetTest, SecondNodeOnTheSameDataDirIsRefused) {
  auto second = setup_;
  second.port = testutil::FreePort();
  std::vector<std::string> argv = {testutil::NodeBinary(), "--node-id", "n1b", "--data-dir",
                                   setup_.dir + "/data", "--listen",
                                   "tcp://127.0.0.1:" + std::to_string(second.port),
                                   "--secret-key", setup_.secret_key_file, "--allowed-keys",
                                   setup_.allowed_keys_file};
  auto r = coffer::testing::Run(argv);
  EXPECT_EQ(r.exit_code, 69) << r.err;
  EXPECT_NE(r.err.find("is in use by another coffer-node (pid " + std::to_string(NodePid()) + ")"),
            std::string::npos)
      << r.err;
}

TEST_F(NodeOpsNetTest, RefusedKeyIsLoggedOnceAndSighupAllowsIt) {
  CurveKeyPair stranger = GenerateKeyPair();
  CallResult r = Ping(stranger, node_keys_.public_key, 10);
  EXPECT_EQ(r.status, CallStatus::kUnreachable);
  // The box's side says what probably happened.
  NodeAddress addr{"n1", node_->endpoint(), node_keys_.public_key};
  EXPECT_NE(r.Describe(addr).find("wrong node public key or not on the node's allow list?"),
            std::string::npos)
      << r.Describe(addr);
  // The node's side names the peer, the key and its fingerprint, once per minute.
  ASSERT_TRUE(WaitForLog("refused CURVE handshake from 127.0.0.1 with key " +
                         stranger.public_key + " (fingerprint " +
                         KeyFingerprint(stranger.public_key) + ")"));
  std::string log = node_->Log();
  std::size_t lines = 0;
  for (std::size_t p = 0; (p = log.find("with key " + stranger.public_key, p)) != std::string::npos; ++p) ++lines;
  EXPECT_EQ(lines, 1u) << "10 attempts, one line (rate-limited)";

  std::ofstream(setup_.allowed_keys_file, std::ios::app) << stranger.public_key << "\n";
  ASSERT_EQ(::kill(NodePid(), SIGHUP), 0);
  ASSERT_TRUE(WaitForLog("reload: allow list " + setup_.allowed_keys_file +
                         ": 2 keys (1 added, 0 removed)"));
  EXPECT_EQ(Ping(stranger, node_keys_.public_key, 50).status, CallStatus::kOk);
  EXPECT_EQ(Ping(box_keys_, node_keys_.public_key, 50).status, CallStatus::kOk);
  EXPECT_EQ(node_->Stop(), 0) << "SIGHUP must not stop the node";
}

TEST_F(NodeOpsNetTest, WrongNodeKeyIsLoggedAsAFailedHandshake) {
  CurveKeyPair other = GenerateKeyPair();
  EXPECT_EQ(Ping(box_keys_, other.public_key, 10).status, CallStatus::kUnreachable);
  EXPECT_TRUE(WaitForLog("handshake failed (ZMTP/CURVE error"));
  EXPECT_TRUE(WaitForLog("does the box use this node's public key?"));
}

TEST_F(NodeOpsNetTest, MetricsListener) {
  ASSERT_EQ(Ping(box_keys_, node_keys_.public_key, 50).status, CallStatus::kOk);
  std::string text =
      metrics::HttpGet("127.0.0.1:" + std::to_string(metrics_port_), "/metrics", 5000);
  EXPECT_NE(text.find("# TYPE coffer_node_requests_total counter"), std::string::npos) << text;
  EXPECT_NE(text.find("coffer_node_requests_total{kind=\"read\"} "), std::string::npos);
  EXPECT_NE(text.find("coffer_node_objects 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("coffer_node_batch_seconds_count{kind=\"read\"}"), std::string::npos);
  auto v = coffer::testing::Run({testutil::NodeBinary(), "--version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_EQ(v.out.rfind("coffer-node ", 0), 0u);
}

}  // namespace
}  // namespace coffer::replicator
