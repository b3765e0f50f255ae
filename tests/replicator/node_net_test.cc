// Integration tests of one real coffer-node process on 127.0.0.1: CURVE and the allow list,
// admin-only control, malformed/huge/random frames, SIGTERM, and kill -9 after an ack.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <zmq.hpp>

#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include "replicator/transport.h"
#include "tests/replicator/test_util.h"

namespace coffer::replicator {
namespace {

using namespace std::chrono_literals;

class NodeNetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    node_keys_ = GenerateKeyPair();
    box_keys_ = GenerateKeyPair();
    admin_keys_ = GenerateKeyPair();
    WriteKeyPair(dir_.path() + "/node", node_keys_);
    WriteKeyPair(dir_.path() + "/admin", admin_keys_);
    std::ofstream(dir_.path() + "/allowed") << "# boxes\n" << box_keys_.public_key << "\n";
    testutil::NodeProcess::Setup s;
    s.node_id = "n1";
    s.dir = dir_.path() + "/n1";
    s.port = testutil::FreePort();
    s.secret_key_file = dir_.path() + "/node.key_secret";
    s.allowed_keys_file = dir_.path() + "/allowed";
    s.admin_key_file = dir_.path() + "/admin.key";
    s.extra_args = {"--max-message-size", "1048576"};
    node_ = std::make_unique<testutil::NodeProcess>(s);
    node_->Start();
  }
  void TearDown() override {
    if (HasFailure() && node_) std::cerr << "node log:\n" << node_->Log();
    node_.reset();
  }

  std::unique_ptr<Transport> Client(const CurveKeyPair& keys) {
    return std::make_unique<Transport>(
        std::vector<NodeAddress>{{"n1", node_->endpoint(), node_keys_.public_key}}, keys);
  }
  // Calls with retries while the connection is being set up (IMMEDIATE: unreachable at first).
  static CallResult CallRetry(Transport& t, const wire::Request& req, int attempts = 50) {
    CallResult r;
    for (int i = 0; i < attempts; ++i) {
      r = t.Call(0, req, 2000ms).get();
      if (r.status != CallStatus::kUnreachable) return r;
      std::this_thread::sleep_for(50ms);
    }
    return r;
  }
  static wire::Request Ping() {
    wire::Request r;
    r.mutable_ping();
    return r;
  }
  static wire::Request PutReq(int n, const std::string& bytes) {
    wire::Request r;
    auto* o = r.mutable_put()->add_objects();
    o->set_id(testutil::Id(n));
    o->mutable_version()->set_hlc(1);
    o->set_sealed(bytes);
    return r;
  }

  testutil::TempDir dir_;
  CurveKeyPair node_keys_, box_keys_, admin_keys_;
  std::unique_ptr<testutil::NodeProcess> node_;
};

TEST_F(NodeNetTest, AllowedKeyIsServed) {
  auto t = Client(box_keys_);
  auto r = CallRetry(*t, Ping());
  ASSERT_EQ(r.status, CallStatus::kOk);
  EXPECT_GT(r.reply.ping().node_time_ms(), 0u);
  r = CallRetry(*t, PutReq(1, "hello"));
  ASSERT_EQ(r.status, CallStatus::kOk);
  EXPECT_EQ(r.reply.put().results(0).status(), wire::PUT_STORED);
}

TEST_F(NodeNetTest, UnknownKeyGetsNothing) {
  auto t = Client(GenerateKeyPair());
  auto r = CallRetry(*t, Ping(), 20);
  EXPECT_NE(r.status, CallStatus::kOk);
  // The node is fine and still serves the allowed key.
  auto good = Client(box_keys_);
  EXPECT_EQ(CallRetry(*good, Ping()).status, CallStatus::kOk);
}

TEST_F(NodeNetTest, ClientWithoutCurveGetsNothing) {
  zmq::context_t ctx;
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.connect(node_->endpoint());
  wire::Request req = Ping();
  req.set_protocol(1);
  req.set_request_id(1);
  std::string bytes;
  req.SerializeToString(&bytes);
  s.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
  zmq::pollitem_t items[] = {{s.handle(), 0, ZMQ_POLLIN, 0}};
  zmq::poll(items, 1, 1500ms);
  EXPECT_FALSE(items[0].revents & ZMQ_POLLIN);
  // And a raw TCP client sending random bytes gets disconnected; the node carries on.
  for (int round = 0; round < 5; ++round) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(node_->setup().port));
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    std::mt19937 rng(static_cast<unsigned>(round));
    std::string junk(round == 0 ? 64 : 70000, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    if (round == 1) junk.replace(0, 10, std::string("\xff\0\0\0\0\0\0\0\x01\x7f", 10));
    ssize_t sent = send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    (void)sent;
    close(fd);
  }
  auto good = Client(box_keys_);
  EXPECT_EQ(CallRetry(*good, Ping()).status, CallStatus::kOk);
}

TEST_F(NodeNetTest, MalformedHugeAndRandomFramesDoNotHurt) {
  // A CURVE client with an allowed key that sends junk through a raw DEALER.
  zmq::context_t ctx;
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::curve_serverkey, node_keys_.public_key);
  s.set(zmq::sockopt::curve_publickey, box_keys_.public_key);
  s.set(zmq::sockopt::curve_secretkey, box_keys_.secret_key);
  s.connect(node_->endpoint());
  std::mt19937 rng(7);
  int replies = 0;
  auto drain = [&](std::chrono::milliseconds wait) {
    zmq::pollitem_t items[] = {{s.handle(), 0, ZMQ_POLLIN, 0}};
    while (zmq::poll(items, 1, wait) > 0) {
      zmq::message_t m;
      while (s.recv(m, zmq::recv_flags::dontwait)) {
        wire::Reply reply;
        EXPECT_TRUE(reply.ParseFromArray(m.data(), static_cast<int>(m.size())));
        EXPECT_NE(reply.error().code(), wire::ERROR_NONE);
        ++replies;
      }
    }
  };
  for (int i = 0; i < 200; ++i) {
    std::string junk(rng() % 300, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    s.send(zmq::buffer(junk), zmq::send_flags::none);
  }
  // Multi-frame messages.
  s.send(zmq::str_buffer("a"), zmq::send_flags::sndmore);
  s.send(zmq::str_buffer("b"), zmq::send_flags::none);
  // An empty frame.
  s.send(zmq::str_buffer(""), zmq::send_flags::none);
  drain(1000ms);
  EXPECT_GE(replies, 150);  // random bytes sometimes parse; those get "bad protocol" too

  // A frame over ZMQ_MAXMSGSIZE (1 MiB here): the node drops that connection.
  std::string huge(2 << 20, 'h');
  s.send(zmq::buffer(huge), zmq::send_flags::dontwait);
  std::this_thread::sleep_for(300ms);

  auto good = Client(box_keys_);
  auto r = CallRetry(*good, PutReq(5, "still serving"));
  ASSERT_EQ(r.status, CallStatus::kOk);
  EXPECT_EQ(r.reply.put().results(0).status(), wire::PUT_STORED);
}

TEST_F(NodeNetTest, AdminOnlyFromAdminKey) {
  wire::Request admin;
  admin.mutable_admin()->set_play_dead(wire::PLAY_DEAD_REFUSE);
  auto box = Client(box_keys_);
  auto r = CallRetry(*box, admin);
  ASSERT_EQ(r.status, CallStatus::kNodeError);
  EXPECT_EQ(r.reply.error().code(), wire::ERROR_DENIED);
  auto adm = Client(admin_keys_);
  r = CallRetry(*adm, admin);
  ASSERT_EQ(r.status, CallStatus::kOk);
  EXPECT_EQ(r.reply.admin().play_dead(), "refuse");
  r = CallRetry(*box, Ping());
  EXPECT_EQ(r.status, CallStatus::kNodeError);
  EXPECT_EQ(r.reply.error().code(), wire::ERROR_UNAVAILABLE);
  admin.mutable_admin()->set_play_dead(wire::PLAY_DEAD_SILENT);
  ASSERT_EQ(CallRetry(*adm, admin).status, CallStatus::kOk);
  EXPECT_EQ(box->Call(0, Ping(), 300ms).get().status, CallStatus::kTimeout);
  admin.mutable_admin()->set_play_dead(wire::PLAY_DEAD_SLOW);
  admin.mutable_admin()->set_slow_ms(400);
  ASSERT_EQ(CallRetry(*adm, admin).status, CallStatus::kOk);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(box->Call(0, Ping(), 3000ms).get().status, CallStatus::kOk);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 390ms);
  admin.mutable_admin()->set_play_dead(wire::PLAY_DEAD_OFF);
  ASSERT_EQ(CallRetry(*adm, admin).status, CallStatus::kOk);
  EXPECT_EQ(box->Call(0, Ping(), 2000ms).get().status, CallStatus::kOk);
}

TEST_F(NodeNetTest, AckedWritesSurviveKill9AndSigtermIsClean) {
  auto t = Client(box_keys_);
  ASSERT_EQ(CallRetry(*t, Ping()).status, CallStatus::kOk);
  std::vector<std::future<CallResult>> acks;
  for (int i = 0; i < 200; ++i) acks.push_back(t->Call(0, PutReq(i, "v" + std::to_string(i)), 5000ms));
  for (auto& f : acks) {
    auto r = f.get();
    ASSERT_EQ(r.status, CallStatus::kOk);
    ASSERT_EQ(r.reply.put().results(0).status(), wire::PUT_STORED);
  }
  node_->Kill(SIGKILL);
  node_->Start();
  wire::Request get;
  for (int i = 0; i < 200; ++i) get.mutable_get()->add_ids(testutil::Id(i));
  auto r = CallRetry(*t, get);
  ASSERT_EQ(r.status, CallStatus::kOk);
  ASSERT_EQ(r.reply.get().results_size(), 200);
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(r.reply.get().results(i).found()) << i;
    EXPECT_EQ(r.reply.get().results(i).object().sealed(), "v" + std::to_string(i));
  }
  EXPECT_EQ(node_->Stop(), 0);
  EXPECT_NE(node_->Log().find("stopped cleanly"), std::string::npos);
}

}  // namespace
}  // namespace coffer::replicator
