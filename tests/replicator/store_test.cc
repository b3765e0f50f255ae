// Unit tests of the node's LMDB object store: conditional put, tombstones, sequence numbers,
// feed, list, drop, counters, durability across reopen.
#include "replicator/store.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/replicator/test_util.h"

namespace coffer::replicator {
namespace {

wire::Object MakeObject(std::string id, std::uint64_t hlc, std::string sealed,
                        bool tombstone = false) {
  wire::Object o;
  o.set_id(std::move(id));
  o.mutable_version()->set_hlc(hlc);
  o.mutable_version()->set_box_id(1);
  o.set_sealed(std::move(sealed));
  o.set_tombstone(tombstone);
  return o;
}

std::vector<wire::PutResult> Apply(ObjectStore& s, const std::vector<wire::Object>& objs) {
  std::vector<const wire::Object*> p;
  for (const auto& o : objs) p.push_back(&o);
  return s.Apply(p);
}

class StoreTest : public ::testing::Test {
 protected:
  testutil::TempDir dir_;
};

TEST_F(StoreTest, PutGetAndConditionalVersion) {
  ObjectStore s(dir_.path());
  std::string id = testutil::Id(1);
  auto r = Apply(s, {MakeObject(id, 10, "ten")});
  EXPECT_EQ(r[0].status(), wire::PUT_STORED);
  r = Apply(s, {MakeObject(id, 9, "nine")});
  EXPECT_EQ(r[0].status(), wire::PUT_NOT_NEWER);
  EXPECT_EQ(r[0].held().hlc(), 10u);
  r = Apply(s, {MakeObject(id, 10, "ten again")});
  EXPECT_EQ(r[0].status(), wire::PUT_NOT_NEWER);
  auto got = s.Get(id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->sealed(), "ten");
  r = Apply(s, {MakeObject(id, 11, "eleven")});
  EXPECT_EQ(r[0].status(), wire::PUT_STORED);
  EXPECT_EQ(s.Get(id)->sealed(), "eleven");
  EXPECT_FALSE(s.Get(testutil::Id(2)));
}

TEST_F(StoreTest, BoxIdBreaksTies) {
  ObjectStore s(dir_.path());
  std::string id = testutil::Id(1);
  auto a = MakeObject(id, 10, "box1");
  auto b = MakeObject(id, 10, "box2");
  b.mutable_version()->set_box_id(2);
  EXPECT_EQ(Apply(s, {b})[0].status(), wire::PUT_STORED);
  EXPECT_EQ(Apply(s, {a})[0].status(), wire::PUT_NOT_NEWER);
  EXPECT_EQ(s.Get(id)->sealed(), "box2");
}

TEST_F(StoreTest, RepairOverwritesSameVersionWithDifferentBytesOnly) {
  ObjectStore s(dir_.path());
  std::string id = testutil::Id(1);
  Apply(s, {MakeObject(id, 5, "rotten")});
  auto fix = MakeObject(id, 5, "good");
  EXPECT_EQ(Apply(s, {fix})[0].status(), wire::PUT_NOT_NEWER);
  fix.set_repair(true);
  EXPECT_EQ(Apply(s, {fix})[0].status(), wire::PUT_STORED);
  EXPECT_EQ(s.Get(id)->sealed(), "good");
  EXPECT_EQ(Apply(s, {fix})[0].status(), wire::PUT_NOT_NEWER);  // same bytes: nothing to do
  auto older = MakeObject(id, 4, "older");
  older.set_repair(true);
  EXPECT_EQ(Apply(s, {older})[0].status(), wire::PUT_NOT_NEWER);
}

TEST_F(StoreTest, TombstonesAndCounters) {
  ObjectStore s(dir_.path());
  Apply(s, {MakeObject(testutil::Id(1), 1, "aaaa"), MakeObject(testutil::Id(2), 1, "bb")});
  auto st = s.Stats();
  EXPECT_EQ(st.objects, 2u);
  EXPECT_EQ(st.bytes, 6u);
  EXPECT_EQ(st.seq, 2u);
  EXPECT_EQ(Apply(s, {MakeObject(testutil::Id(1), 2, "", true)})[0].status(), wire::PUT_STORED);
  st = s.Stats();
  EXPECT_EQ(st.objects, 1u);
  EXPECT_EQ(st.tombstones, 1u);
  EXPECT_EQ(st.bytes, 2u);
  EXPECT_EQ(st.seq, 3u);
  auto got = s.Get(testutil::Id(1));
  ASSERT_TRUE(got);
  EXPECT_TRUE(got->tombstone());
  // An older put after the delete does not resurrect the object.
  EXPECT_EQ(Apply(s, {MakeObject(testutil::Id(1), 1, "aaaa")})[0].status(),
            wire::PUT_NOT_NEWER);
}

TEST_F(StoreTest, FeedKeepsLatestChangePerIdInOrder) {
  ObjectStore s(dir_.path());
  Apply(s, {MakeObject(testutil::Id(1), 1, "a"), MakeObject(testutil::Id(2), 1, "b"),
            MakeObject(testutil::Id(3), 1, "c")});
  Apply(s, {MakeObject(testutil::Id(1), 2, "a2")});  // seq 4 supersedes seq 1
  bool done = false;
  auto feed = s.Feed(0, 100, &done);
  EXPECT_TRUE(done);
  ASSERT_EQ(feed.size(), 3u);
  EXPECT_EQ(feed[0].id(), testutil::Id(2));
  EXPECT_EQ(feed[1].id(), testutil::Id(3));
  EXPECT_EQ(feed[2].id(), testutil::Id(1));
  EXPECT_EQ(feed[2].seq(), 4u);
  feed = s.Feed(3, 100, &done);
  ASSERT_EQ(feed.size(), 1u);
  EXPECT_EQ(feed[0].version().hlc(), 2u);
  feed = s.Feed(0, 2, &done);
  EXPECT_EQ(feed.size(), 2u);
  EXPECT_FALSE(done);
}

TEST_F(StoreTest, ListIsResumableAndCarriesDigests) {
  ObjectStore s(dir_.path());
  std::vector<wire::Object> objs;
  for (int i = 0; i < 25; ++i) objs.push_back(MakeObject(testutil::Id(i), 1, "x" + std::to_string(i)));
  Apply(s, objs);
  std::string after;
  std::vector<std::string> ids;
  bool done = false;
  while (!done) {
    auto page = s.List(after, 10, &done);
    for (const auto& e : page) {
      ids.push_back(e.id());
      EXPECT_EQ(e.digest(), ObjectStore::Digest(s.Get(e.id())->sealed()));
    }
    if (!page.empty()) after = page.back().id();
  }
  EXPECT_EQ(ids.size(), 25u);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
}

TEST_F(StoreTest, DropOnlyUpToVersion) {
  ObjectStore s(dir_.path());
  Apply(s, {MakeObject(testutil::Id(1), 5, "five")});
  auto d = s.Drop({{testutil::Id(1), Version{4, 1}}});
  EXPECT_FALSE(d[0]);
  d = s.Drop({{testutil::Id(1), Version{5, 1}}});
  EXPECT_TRUE(d[0]);
  EXPECT_FALSE(s.Get(testutil::Id(1)));
  EXPECT_EQ(s.Stats().objects, 0u);
  bool done = false;
  EXPECT_TRUE(s.Feed(0, 10, &done).empty());
}

TEST_F(StoreTest, SurvivesReopen) {
  {
    ObjectStore s(dir_.path());
    Apply(s, {MakeObject(testutil::Id(7), 3, "persist")});
  }
  ObjectStore s(dir_.path());
  EXPECT_EQ(s.Get(testutil::Id(7))->sealed(), "persist");
  EXPECT_EQ(s.Stats().seq, 1u);
}

}  // namespace
}  // namespace coffer::replicator
