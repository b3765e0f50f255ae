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
  auto* zero = r.mutable_put()->add_objects();
  zero->set_id(testutil::Id(4));
  auto reply = Call(r);
  ASSERT_EQ(reply.put().results_size(), 4);
  EXPECT_EQ(reply.put().results(0).status(), wire::PUT_STORED);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(reply.put().results(i).status(), wire::PUT_REJECTED);
  EXPECT_EQ(store_.Stats().objects, 1u);
}

TEST_F(HandlerTest, SealedTombstonesAreStoredListedAndServedWithTheirBytes) {
  // A box deletes with a sealed tombstone: the node keeps its bytes (it cannot tell them from
  // any other sealed object) and reports their digest and size like an object's.
  ASSERT_EQ(Call(Put(3, 1, "live")).put().results(0).status(), wire::PUT_STORED);
  auto r = Req();
  auto* tomb = r.mutable_put()->add_objects();
  tomb->set_id(testutil::Id(3));
  tomb->mutable_version()->set_hlc(2);
  tomb->set_tombstone(true);
  tomb->set_sealed("sealed tombstone bytes");
  ASSERT_EQ(Call(r).put().results(0).status(), wire::PUT_STORED);
  auto g = Req();
  g.mutable_get()->add_ids(testutil::Id(3));
  auto got = Call(g).get().results(0);
  ASSERT_TRUE(got.found());
  EXPECT_TRUE(got.object().tombstone());
  EXPECT_EQ(got.object().sealed(), "sealed tombstone bytes");
  auto l = Req();
  l.mutable_list();
  auto listed = Call(l).list();
  ASSERT_EQ(listed.entries_size(), 1);
  EXPECT_TRUE(listed.entries(0).tombstone());
  EXPECT_EQ(listed.entries(0).size(), std::string("sealed tombstone bytes").size());
  EXPECT_EQ(listed.entries(0).digest(), ObjectStore::Digest("sealed tombstone bytes"));
  EXPECT_EQ(store_.Stats().tombstones, 1u);
  EXPECT_EQ(store_.Stats().objects, 0u);
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
  EXPECT_FALSE(ParsePlayDead("slowly 3"));
  EXPECT_FALSE(ParsePlayDead("dead"));
  auto forge = ParsePlayDead("forge-tombstone");
  ASSERT_TRUE(forge);
  EXPECT_EQ(forge->mode, wire::PLAY_DEAD_FORGE_TOMBSTONE);
  EXPECT_EQ(forge->offset_ms, kDefaultLieOffsetMs);
  EXPECT_EQ(forge->ToString(), "forge-tombstone 1000");
  auto rollback = ParsePlayDead("rollback 5");
  ASSERT_TRUE(rollback);
  EXPECT_EQ(rollback->mode, wire::PLAY_DEAD_ROLLBACK);
  EXPECT_EQ(rollback->offset_ms, 5u);
  EXPECT_FALSE(ParsePlayDead("rollback x"));
  EXPECT_FALSE(ParsePlayDead("forge-tombstones"));
}

// The lying modes: what LIST, FEED and GET claim changes, what the node stores does not.
TEST(LyingHandlerTest, ForgeTombstoneAndRollbackClaimWhatTheNodeDoesNotHold) {
  testutil::TempDir dir;
  ObjectStore store(dir.path(), std::size_t{1} << 30, /*keep_first_copies=*/true);
  RequestHandler handler(store, "liar");
  auto call = [&](const wire::Request& req, bool admin = false) {
    std::string bytes;
    req.SerializeToString(&bytes);
    wire::Reply reply;
    auto out = handler.Handle(bytes, {"key", admin});
    EXPECT_TRUE(out.reply && reply.ParseFromString(*out.reply));
    return reply;
  };
  auto put = [&](int n, std::uint64_t hlc, std::string sealed, bool tombstone = false) {
    wire::Request r;
    r.set_protocol(kProtocolVersion);
    auto* o = r.mutable_put()->add_objects();
    o->set_id(testutil::Id(n));
    o->mutable_version()->set_hlc(hlc);
    o->set_tombstone(tombstone);
    o->set_sealed(std::move(sealed));
    return call(r).put().results(0).status();
  };
  auto mode = [&](wire::PlayDeadMode m, std::uint32_t offset_ms) {
    wire::Request r;
    r.set_protocol(kProtocolVersion);
    r.mutable_admin()->set_play_dead(m);
    r.mutable_admin()->set_offset_ms(offset_ms);
    return call(r, true);
  };
  auto get = [&](int n) {
    wire::Request r;
    r.set_protocol(kProtocolVersion);
    r.mutable_get()->add_ids(testutil::Id(n));
    return call(r).get().results(0).object();
  };
  auto list = [&] {
    wire::Request r;
    r.set_protocol(kProtocolVersion);
    r.mutable_list();
    return call(r).list();
  };
  ASSERT_EQ(put(1, 10, "first of 1"), wire::PUT_STORED);
  ASSERT_EQ(put(1, 20, "second of 1"), wire::PUT_STORED);
  ASSERT_EQ(put(2, 10, "only 2"), wire::PUT_STORED);
  ASSERT_EQ(put(3, 10, "live 3"), wire::PUT_STORED);
  ASSERT_EQ(put(3, 30, "tombstone of 3", true), wire::PUT_STORED);

  // forge-tombstone: every live object claimed as a tombstone 2 ms newer, with its live bytes.
  EXPECT_EQ(mode(wire::PLAY_DEAD_FORGE_TOMBSTONE, 2).admin().play_dead(), "forge-tombstone 2");
  wire::Object o = get(1);
  EXPECT_TRUE(o.tombstone());
  EXPECT_EQ(o.version().hlc(), 20u + 2000000);
  EXPECT_EQ(o.sealed(), "second of 1");
  auto l = list();
  ASSERT_EQ(l.entries_size(), 3);
  for (const auto& e : l.entries()) EXPECT_TRUE(e.tombstone());
  EXPECT_EQ(get(3).version().hlc(), 30u);  // a real tombstone stays as it is

  // rollback: the first copy of each replaced object, claimed 2 ms newer than the held one.
  EXPECT_EQ(mode(wire::PLAY_DEAD_ROLLBACK, 2).admin().play_dead(), "rollback 2");
  o = get(1);
  EXPECT_FALSE(o.tombstone());
  EXPECT_EQ(o.sealed(), "first of 1");
  EXPECT_EQ(o.version().hlc(), 20u + 2000000);
  o = get(3);  // deleted, but served alive again
  EXPECT_FALSE(o.tombstone());
  EXPECT_EQ(o.sealed(), "live 3");
  EXPECT_EQ(o.version().hlc(), 30u + 2000000);
  EXPECT_EQ(get(2).sealed(), "only 2");  // never replaced: nothing to roll back to
  l = list();
  ASSERT_EQ(l.entries_size(), 3);
  EXPECT_FALSE(l.entries(2).tombstone());
  EXPECT_EQ(l.entries(2).digest(), ObjectStore::Digest("live 3"));

  // What the node holds never changed.
  EXPECT_EQ(store.Get(testutil::Id(1))->sealed(), "second of 1");
  EXPECT_TRUE(store.Get(testutil::Id(3))->tombstone());
  mode(wire::PLAY_DEAD_OFF, 0);
  EXPECT_EQ(get(1).sealed(), "second of 1");
}

TEST(LyingHandlerTest, RollbackNeedsFirstCopies) {
  testutil::TempDir dir;
  ObjectStore store(dir.path());
  RequestHandler handler(store, "n");
  wire::Request r;
  r.set_protocol(kProtocolVersion);
  r.mutable_admin()->set_play_dead(wire::PLAY_DEAD_ROLLBACK);
  std::string bytes;
  r.SerializeToString(&bytes);
  wire::Reply reply;
  ASSERT_TRUE(reply.ParseFromString(*handler.Handle(bytes, {"admin", true}).reply));
  EXPECT_EQ(reply.error().code(), wire::ERROR_BAD_REQUEST);
  EXPECT_NE(reply.error().message().find("keep_first_copies"), std::string::npos);
  EXPECT_EQ(handler.play_dead().mode, wire::PLAY_DEAD_OFF);
}

}  // namespace
}  // namespace coffer::replicator
