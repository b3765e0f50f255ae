// Unit tests of the node's request handler, without sockets: request validation, every request
// type, play-dead modes, admin-only control, group commit of a batch.
#include "replicator/handler.h"

#include <gtest/gtest.h>

#include "tests/replicator/test_util.h"

namespace coffer::replicator {
namespace {

class HandlerTest : public ::testing::Test {
 protected:
  HandlerTest() : store_(dir_.path()), handler_(store_, "n1", Limits()) {}
  static HandlerLimits Limits() {
    HandlerLimits l;
    l.max_object_size = 1000;
    l.max_batch = 8;
    l.max_message_size = 100000;
    l.max_list = 5;
    return l;
  }

  wire::Reply Call(const wire::Request& req, bool admin = false) {
    std::string bytes;
    req.SerializeToString(&bytes);
    return CallRaw(bytes, admin);
  }
  wire::Reply CallRaw(std::string_view bytes, bool admin = false) {
    ClientIdentity who{"key", admin};
    auto out = handler_.Handle(bytes, who);
    EXPECT_TRUE(out.reply.has_value());
    wire::Reply reply;
    if (out.reply) {
      EXPECT_TRUE(reply.ParseFromString(*out.reply));
    }
    return reply;
  }
  static wire::Request Req(std::uint64_t id = 42) {
    wire::Request r;
    r.set_protocol(kProtocolVersion);
    r.set_request_id(id);
    return r;
  }
  static wire::Request Put(int n, std::uint64_t hlc, std::string sealed) {
    wire::Request r = Req();
    auto* o = r.mutable_put()->add_objects();
    o->set_id(testutil::Id(n));
    o->mutable_version()->set_hlc(hlc);
    o->set_sealed(std::move(sealed));
    return r;
  }

  testutil::TempDir dir_;
  ObjectStore store_;
  RequestHandler handler_;
};

TEST_F(HandlerTest, PutThenGet) {
  auto r = Call(Put(1, 5, "sealed"));
  EXPECT_EQ(r.request_id(), 42u);
  EXPECT_EQ(r.error().code(), wire::ERROR_NONE);
  ASSERT_EQ(r.put().results_size(), 1);
  EXPECT_EQ(r.put().results(0).status(), wire::PUT_STORED);
  auto get = Req(43);
  get.mutable_get()->add_ids(testutil::Id(1));
  get.mutable_get()->add_ids(testutil::Id(2));
  r = Call(get);
  EXPECT_EQ(r.request_id(), 43u);
  ASSERT_EQ(r.get().results_size(), 2);
  EXPECT_TRUE(r.get().results(0).found());
  EXPECT_EQ(r.get().results(0).object().sealed(), "sealed");
  EXPECT_FALSE(r.get().results(1).found());
}

TEST_F(HandlerTest, MalformedAndUnknownRequestsGetErrors) {
  EXPECT_EQ(CallRaw("\xff\xff\xff garbage").error().code(), wire::ERROR_BAD_REQUEST);
  EXPECT_EQ(CallRaw("").error().code(), wire::ERROR_BAD_REQUEST);  // protocol 0
  auto r = Req();
  EXPECT_EQ(Call(r).error().code(), wire::ERROR_BAD_REQUEST);  // no body
  r.set_protocol(99);
  r.mutable_ping();
  EXPECT_EQ(Call(r).error().code(), wire::ERROR_BAD_REQUEST);
  EXPECT_EQ(CallRaw(std::string(200000, 'x')).error().code(), wire::ERROR_TOO_LARGE);
  // The handler still serves afterwards.
  auto ping = Req();
  ping.mutable_ping();
  EXPECT_EQ(Call(ping).error().code(), wire::ERROR_NONE);
}

TEST_F(HandlerTest, InvalidObjectsAreRejectedIndividually) {
  auto r = Put(1, 1, "ok");
  auto* bad_id = r.mutable_put()->add_objects();
  bad_id->set_id("short");
  bad_id->mutable_version()->set_hlc(1);
  auto* big = r.mutable_put()->add_objects();
  big->set_id(testutil::Id(2));
  big->mutable_version()->set_hlc(1);
  big->set_sealed(std::string(1001, 'b'));
  auto* tomb = r.mutable_put()->add_objects();
  tomb->set_id(testutil::Id(3));
  tomb->mutable_version()->set_hlc(1);
  tomb->set_tombstone(true);
  tomb->set_sealed("bytes");
  auto* zero = r.mutable_put()->add_objects();
  zero->set_id(testutil::Id(4));
  auto reply = Call(r);
  ASSERT_EQ(reply.put().results_size(), 5);
  EXPECT_EQ(reply.put().results(0).status(), wire::PUT_STORED);
  for (int i = 1; i < 5; ++i) EXPECT_EQ(reply.put().results(i).status(), wire::PUT_REJECTED);
  EXPECT_EQ(store_.Stats().objects, 1u);
}

TEST_F(HandlerTest, BatchLimits) {
  auto r = Req();
  for (int i = 0; i < 9; ++i) {
    auto* o = r.mutable_put()->add_objects();
    o->set_id(testutil::Id(i));
    o->mutable_version()->set_hlc(1);
  }
  EXPECT_EQ(Call(r).error().code(), wire::ERROR_TOO_LARGE);
  auto g = Req();
  for (int i = 0; i < 9; ++i) g.mutable_get()->add_ids(testutil::Id(i));
  EXPECT_EQ(Call(g).error().code(), wire::ERROR_TOO_LARGE);
  auto bad = Req();
  bad.mutable_get()->add_ids("nope");
  EXPECT_EQ(Call(bad).error().code(), wire::ERROR_BAD_REQUEST);
}

TEST_F(HandlerTest, DeleteListFeedStatDrop) {
  for (int i = 0; i < 7; ++i) Call(Put(i, 1, "v" + std::to_string(i)));
  auto del = Req();
  auto* item = del.mutable_del()->add_items();
  item->set_id(testutil::Id(3));
  item->mutable_version()->set_hlc(2);
  auto r = Call(del);
  ASSERT_EQ(r.del().results_size(), 1);
  EXPECT_EQ(r.del().results(0).status(), wire::PUT_STORED);

  auto list = Req();
  list.mutable_list();
  r = Call(list);
  EXPECT_EQ(r.list().entries_size(), 5);  // max_list
  EXPECT_FALSE(r.list().done());
  list.mutable_list()->set_after(r.list().entries(4).id());
  r = Call(list);
  EXPECT_EQ(r.list().entries_size(), 2);
  EXPECT_TRUE(r.list().done());
  list.mutable_list()->set_after("bad");
  EXPECT_EQ(Call(list).error().code(), wire::ERROR_BAD_REQUEST);

  auto feed = Req();
  feed.mutable_feed()->set_since(6);
  r = Call(feed);
  ASSERT_EQ(r.feed().entries_size(), 2);  // ids 6 (seq 7) and 3's tombstone (seq 8)
  EXPECT_EQ(r.feed().last_seq(), 8u);
  EXPECT_TRUE(r.feed().entries(1).tombstone());

  auto stat = Req();
  stat.mutable_stat();
  r = Call(stat);
  EXPECT_EQ(r.stat().objects(), 6u);
  EXPECT_EQ(r.stat().tombstones(), 1u);
  EXPECT_EQ(r.stat().seq(), 8u);
  EXPECT_EQ(r.stat().node_id(), "n1");
  EXPECT_EQ(r.stat().play_dead(), "off");

  auto drop = Req();
  auto* d = drop.mutable_drop()->add_items();
  d->set_id(testutil::Id(0));
  d->mutable_version()->set_hlc(1);
  r = Call(drop);
  ASSERT_EQ(r.drop().dropped_size(), 1);
  EXPECT_TRUE(r.drop().dropped(0));
}

TEST_F(HandlerTest, AdminOnlyFromAdminKeyAndPlayDeadModes) {
  Call(Put(1, 1, "abcdef"));
  auto admin = Req();
  admin.mutable_admin()->set_play_dead(wire::PLAY_DEAD_REFUSE);
  EXPECT_EQ(Call(admin, false).error().code(), wire::ERROR_DENIED);
  EXPECT_EQ(handler_.play_dead().mode, wire::PLAY_DEAD_OFF);
  auto r = Call(admin, true);
  EXPECT_EQ(r.admin().play_dead(), "refuse");

  auto get = Req();
  get.mutable_get()->add_ids(testutil::Id(1));
  EXPECT_EQ(Call(get).error().code(), wire::ERROR_UNAVAILABLE);

  admin.mutable_admin()->set_play_dead(wire::PLAY_DEAD_CORRUPT);
  Call(admin, true);
  r = Call(get);
  ASSERT_EQ(r.get().results_size(), 1);
  EXPECT_NE(r.get().results(0).object().sealed(), "abcdef");
  EXPECT_EQ(r.get().results(0).object().sealed().size(), 6u);
  EXPECT_EQ(store_.Get(testutil::Id(1))->sealed(), "abcdef");  // only the reply is corrupt

  admin.mutable_admin()->set_play_dead(wire::PLAY_DEAD_SLOW);
  admin.mutable_admin()->set_slow_ms(250);
  Call(admin, true);
  std::string bytes;
  get.SerializeToString(&bytes);
  auto out = handler_.Handle(bytes, {"key", false});
  EXPECT_EQ(out.delay.count(), 250);

  admin.mutable_admin()->set_play_dead(wire::PLAY_DEAD_SILENT);
  Call(admin, true);
  out = handler_.Handle(bytes, {"key", false});
  EXPECT_FALSE(out.reply.has_value());
  // Admin still answers while silent, and can turn it off.
  admin.mutable_admin()->set_play_dead(wire::PLAY_DEAD_OFF);
  EXPECT_EQ(Call(admin, true).admin().play_dead(), "off");
  EXPECT_EQ(Call(get).get().results(0).object().sealed(), "abcdef");
}

TEST_F(HandlerTest, BatchSharesOneCommit) {
  std::vector<std::string> bytes;
  for (int i = 0; i < 10; ++i) {
    std::string b;
    auto r = Put(i, 1, "x");
    r.set_request_id(static_cast<std::uint64_t>(100 + i));
    r.SerializeToString(&b);
    bytes.push_back(b);
  }
  bytes.push_back("garbage");
  std::vector<RequestHandler::Incoming> batch;
  for (const auto& b : bytes) batch.push_back({b, {"k", false}});
  auto out = handler_.HandleBatch(batch);
  ASSERT_EQ(out.size(), 11u);
  for (int i = 0; i < 10; ++i) {
    wire::Reply reply;
    ASSERT_TRUE(reply.ParseFromString(*out[static_cast<std::size_t>(i)].reply));
    EXPECT_EQ(reply.request_id(), static_cast<std::uint64_t>(100 + i));
    EXPECT_EQ(reply.put().results(0).status(), wire::PUT_STORED);
  }
  wire::Reply bad;
  ASSERT_TRUE(bad.ParseFromString(*out[10].reply));
  EXPECT_EQ(bad.error().code(), wire::ERROR_BAD_REQUEST);
  EXPECT_EQ(store_.Stats().objects, 10u);
}

TEST(IsWriteRequestTest, ClassifiesWithoutParsingObjects) {
  auto serialize = [](const wire::Request& r) {
    std::string b;
    r.SerializeToString(&b);
    return b;
  };
  wire::Request r;
  r.set_protocol(1);
  r.set_request_id(9);
  auto* o = r.mutable_put()->add_objects();
  o->set_id(testutil::Id(1));
  o->set_sealed(std::string(1000, 'x'));
  EXPECT_TRUE(IsWriteRequest(serialize(r)));
  r.mutable_del()->add_items()->set_id(testutil::Id(1));
  EXPECT_TRUE(IsWriteRequest(serialize(r)));
  r.mutable_drop()->add_items()->set_id(testutil::Id(1));
  EXPECT_TRUE(IsWriteRequest(serialize(r)));
  r.mutable_get()->add_ids(testutil::Id(1));
  EXPECT_FALSE(IsWriteRequest(serialize(r)));
  r.mutable_admin();
  EXPECT_FALSE(IsWriteRequest(serialize(r)));
  EXPECT_FALSE(IsWriteRequest(""));
  EXPECT_FALSE(IsWriteRequest("\xff\xff\xff\xff"));
  wire::Request p;
  p.mutable_put();
  EXPECT_TRUE(IsWriteRequest(serialize(p)));
}

TEST(PlayDeadTest, Parse) {
  EXPECT_EQ(ParsePlayDead("off")->mode, wire::PLAY_DEAD_OFF);
  EXPECT_EQ(ParsePlayDead("silent")->mode, wire::PLAY_DEAD_SILENT);
  EXPECT_EQ(ParsePlayDead("refuse")->mode, wire::PLAY_DEAD_REFUSE);
  EXPECT_EQ(ParsePlayDead("corrupt")->mode, wire::PLAY_DEAD_CORRUPT);
  auto slow = ParsePlayDead("slow 300");
  ASSERT_TRUE(slow);
  EXPECT_EQ(slow->slow_ms, 300u);
  EXPECT_EQ(slow->ToString(), "slow 300");
  EXPECT_FALSE(ParsePlayDead("slow"));
  EXPECT_FALSE(ParsePlayDead("slow x"));
  EXPECT_FALSE(ParsePlayDead("dead"));
}

}  // namespace
}  // namespace coffer::replicator
