// Unit tests of several boxes on one store (fs/box_registry.h, fs/filesystem_boxes.cc), on an
// in-memory backend: boxes register and learn of each other, a retired or lapsed box stops
// writing and refuses to mount again, and the collection of deletes waits for every box that
// counts.
#include <fcntl.h>

#include <thread>

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/keyfile.h"
#include "fs/box_registry.h"
#include "fs/filesystem.h"
#include "tests/fs/fake_backend.h"
#include "tests/support/subprocess.h"

namespace coffer::fs {
namespace {

using testing::FakeBackend;
using testing::FakeStore;

proto::BoxRecord Rec(std::uint64_t box, std::uint64_t hlc, proto::BoxRecord::State state,
                     std::int64_t caught_up_ms) {
  proto::BoxRecord r;
  r.set_box_id(box);
  r.mutable_version()->set_hlc(hlc);
  r.mutable_version()->set_box_id(box);
  r.set_state(state);
  r.set_caught_up_unix_ms(caught_up_ms);
  r.set_started_unix(1);
  return r;
}

TEST(BoxRegistryTest, NewerRecordsWinAndOlderOnesChangeNothing) {
  BoxRegistry reg;
  EXPECT_TRUE(reg.Merge(Rec(7, 10, proto::BoxRecord::ACTIVE, 100)));
  EXPECT_FALSE(reg.Merge(Rec(7, 9, proto::BoxRecord::RETIRED, 100)));
  EXPECT_EQ(reg.Find(7)->state(), proto::BoxRecord::ACTIVE);
  EXPECT_FALSE(reg.Merge(Rec(7, 10, proto::BoxRecord::ACTIVE, 100)));  // the same again
  EXPECT_TRUE(reg.Merge(Rec(7, 11, proto::BoxRecord::STOPPED, 200)));
  EXPECT_EQ(reg.Find(7)->caught_up_unix_ms(), 200);
  EXPECT_EQ(reg.size(), 1u);
  EXPECT_EQ(reg.Find(8), nullptr);
}

TEST(BoxRegistryTest, CollectionWaitsForEveryBoxThatCounts) {
  BoxRegistry reg;
  reg.Merge(Rec(1, 1, proto::BoxRecord::ACTIVE, 0));      // this box: judged by the caller
  reg.Merge(Rec(2, 1, proto::BoxRecord::ACTIVE, 5000));
  reg.Merge(Rec(3, 1, proto::BoxRecord::STOPPED, 9000));  // stopped boxes still count
  EXPECT_GT(reg.OthersCaughtUpFloor(1, 0), 4000);
  EXPECT_FALSE(reg.OthersCaughtUpFloor(1, 0) > 5000);
  EXPECT_FALSE(reg.OthersCaughtUpFloor(1, 1000) > 4000) << "the clock margin counts";
  reg.Merge(Rec(2, 2, proto::BoxRecord::RETIRED, 5000));
  EXPECT_GT(reg.OthersCaughtUpFloor(1, 0), 8000) << "a retired box holds back nothing";
  reg.Merge(Rec(3, 2, proto::BoxRecord::LAPSED, 9000));
  EXPECT_EQ(reg.OthersCaughtUpFloor(1, 0), INT64_MAX) << "nor does a lapsed one";
}

TEST(BoxRegistryTest, StaleBoxesAreThoseThatCountAndDidNotCatchUpWithinTheGrace) {
  BoxRegistry reg;
  reg.Merge(Rec(1, 1, proto::BoxRecord::ACTIVE, 1000));
  reg.Merge(Rec(2, 1, proto::BoxRecord::STOPPED, 1000));
  reg.Merge(Rec(3, 1, proto::BoxRecord::ACTIVE, 50000));
  reg.Merge(Rec(4, 1, proto::BoxRecord::RETIRED, 10));
  auto stale = reg.Stale(/*self=*/1, /*now_ms=*/60000, /*grace_ms=*/20000);
  ASSERT_EQ(stale.size(), 1u);
  EXPECT_EQ(stale[0].box_id(), 2u);
  // Before its first catch-up a box counts from when it started.
  proto::BoxRecord fresh = Rec(5, 1, proto::BoxRecord::ACTIVE, 0);
  fresh.set_started_unix(55);
  EXPECT_EQ(BoxRegistry::CaughtUpMs(fresh), 55000);
}

class BoxesTest : public ::testing::Test {
 protected:
  BoxesTest() : keys_(keyfile::KeySet::Generate(1700000000)) {}

  std::unique_ptr<Filesystem> Open(const std::string& name) {
    Options o;
    o.commit_interval_ms = 20;
    o.statfs_path = dir_.path();
    o.mountpoint = "/mnt/" + name;
    o.tombstone_grace = std::chrono::seconds(0);
    o.lapse_slack = std::chrono::milliseconds(0);
    o.clock_margin = std::chrono::milliseconds(0);
    return std::make_unique<Filesystem>(LmdbStore::Open(dir_ / name),
                                        std::make_unique<FakeBackend>(store_), keys_.MakeKeyring(),
                                        keys_.store_fingerprint(), o);
  }
  // Makes what `fs` queued durable (a heartbeat rides in the next batch).
  static void Settle(Filesystem& fs) { ASSERT_EQ(fs.FsyncDir(kRootIno), 0); }
  static std::uint64_t IdOf(Filesystem& fs) { return fs.box_id(); }
  static const proto::BoxRecord* Find(const std::vector<proto::BoxRecord>& all, std::uint64_t id) {
    for (const auto& b : all)
      if (b.box_id() == id) return &b;
    return nullptr;
  }

  coffer::testing::TempDir dir_;
  keyfile::KeySet keys_;
  std::shared_ptr<FakeStore> store_ = std::make_shared<FakeStore>();
  Context ctx_{1000, 1000, {}};
};

TEST_F(BoxesTest, BoxesRegisterAndLearnOfEachOtherFromTheFeeds) {
  auto a = Open("a");
  auto b = Open("b");
  ASSERT_NE(IdOf(*a), IdOf(*b));
  a->Heartbeat();
  Settle(*a);
  b->Heartbeat();
  Settle(*b);
  a->CatchUp();
  b->CatchUp();
  for (Filesystem* fs : {a.get(), b.get()}) {
    auto all = fs->Boxes();
    ASSERT_EQ(all.size(), 2u);
    const proto::BoxRecord* ra = Find(all, IdOf(*a));
    ASSERT_NE(ra, nullptr);
    EXPECT_EQ(ra->state(), proto::BoxRecord::ACTIVE);
    EXPECT_EQ(ra->mountpoint(), "/mnt/a");
    EXPECT_FALSE(ra->hostname().empty());
    EXPECT_GT(ra->heartbeat_unix(), 0);
  }
  // The status line names both, this box first.
  const std::string fields = a->BoxFields();
  EXPECT_NE(fields.find(" boxes=2"), std::string::npos) << fields;
  EXPECT_NE(fields.find(" box_state=ACTIVE"), std::string::npos) << fields;
  // A clean unmount says STOPPED.
  const std::uint64_t b_id = IdOf(*b);
  b->Shutdown();
  b.reset();
  a->CatchUp();
  const auto all = a->Boxes();
  const proto::BoxRecord* rb = Find(all, b_id);
  ASSERT_NE(rb, nullptr);
  EXPECT_EQ(rb->state(), proto::BoxRecord::STOPPED);
}

TEST_F(BoxesTest, ARetiredBoxStopsWritingAndNeverMountsAgain) {
  auto a = Open("a");
  auto b = Open("b");
  const std::uint64_t a_id = IdOf(*a);
  a->Heartbeat();
  Settle(*a);
  b->CatchUp();
  std::string msg;
  EXPECT_EQ(b->RetireBox(IdOf(*b), false, &msg), EINVAL) << msg;
  EXPECT_EQ(b->RetireBox(0x1234, false, &msg), ENOENT) << msg;
  EXPECT_EQ(b->RetireBox(a_id, false, &msg), EBUSY) << "its heartbeat is recent: " << msg;
  EXPECT_EQ(b->RetireBox(a_id, true, &msg), 0) << msg;
  EXPECT_EQ(b->RetireBox(a_id, true, &msg), EALREADY) << msg;
  // A learns of it from the feed and writes nothing more.
  a->CatchUp();
  EXPECT_NE(a->stop_reason().find("RETIRED"), std::string::npos) << a->stop_reason();
  struct stat st {};
  EXPECT_EQ(a->MkDir(kRootIno, "after", 0700, ctx_, &st), EROFS);
  a->Heartbeat();  // no heartbeat overwrites the mark
  Settle(*a);
  b->CatchUp();
  EXPECT_EQ(Find(b->Boxes(), a_id)->state(), proto::BoxRecord::RETIRED);
  // Its STATE_DIR cannot be mounted again.
  a.reset();
  try {
    Open("a");
    FAIL() << "a retired box's STATE_DIR mounted again";
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), ESTALE);
    EXPECT_NE(std::string(e.what()).find("empty one"), std::string::npos) << e.what();
  }
  // With an empty STATE_DIR it rebuilds as a new box.
  auto again = Open("a2");
  EXPECT_NE(IdOf(*again), a_id);
  EXPECT_EQ(again->MkDir(kRootIno, "after", 0700, ctx_, &st), 0);
}

TEST_F(BoxesTest, CollectionWaitsUntilEveryBoxCaughtUp) {
  auto a = Open("a");
  auto b = Open("b");
  b->Heartbeat();
  Settle(*b);
  a->CatchUp();
  const std::int64_t t = WallNs() / 1000000;
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  a->CatchUp();
  EXPECT_GT(a->caught_up_ms(), t);
  EXPECT_FALSE(a->EveryBoxCaughtUpAfter(t)) << "B's record says it caught up before t";
  b->CatchUp();
  b->Heartbeat();
  Settle(*b);
  a->CatchUp();
  EXPECT_TRUE(a->EveryBoxCaughtUpAfter(t));
  EXPECT_FALSE(a->EveryBoxCaughtUpAfter(WallNs() / 1000000 + 1000)) << "nor this box, later";
}

TEST_F(BoxesTest, AFileOpenOnOneBoxStaysReadableWhenAnotherBoxDeletesIt) {
  auto a = Open("a");
  struct stat st {};
  std::uint64_t fh = 0;
  ASSERT_EQ(a->Create(kRootIno, "msg", 0600, O_WRONLY, ctx_, &st, &fh), 0);
  const std::uint64_t ino = st.st_ino;
  const std::string body(200000, 'm');  // four chunks
  std::size_t n = 0;
  ASSERT_EQ(a->Write(ino, fh, 0, body, &n), 0);
  ASSERT_EQ(a->Fsync(ino, false), 0);
  ASSERT_EQ(a->Release(ino, fh), 0);
  a->Forget(ino, 1);
  a->Heartbeat();
  Settle(*a);
  auto b = Open("b");  // rebuilt: it holds no chunk yet
  b->Heartbeat();
  Settle(*b);
  a->CatchUp();
  struct stat bst {};
  ASSERT_EQ(b->Lookup(kRootIno, "msg", &bst), 0);
  std::uint64_t bfh = 0;
  ASSERT_EQ(b->Open(bst.st_ino, O_RDONLY, &bfh), 0);
  const std::size_t chunks_before = store_->Live();
  // A deletes it: the inode's tombstone goes out at once, its chunks wait for B.
  ASSERT_EQ(a->Unlink(kRootIno, "msg"), 0);
  Settle(*a);
  std::this_thread::sleep_for(std::chrono::milliseconds(2));  // B catches up after the delete
  EXPECT_EQ(a->ReleaseDeferredChunks(), 0u) << "B has not caught up past the delete";
  Settle(*a);
  EXPECT_EQ(store_->Live(), chunks_before - 1) << "only the inode record went";
  EXPECT_NE(a->BoxFields().find("chunks_awaiting_boxes=4"), std::string::npos) << a->BoxFields();
  // B applies the delete (and fetches what it lacks), reports it, and A lets the chunks go.
  b->CatchUp();
  b->Heartbeat();
  Settle(*b);
  a->CatchUp();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(a->ReleaseDeferredChunks(), 4u);
  Settle(*a);
  EXPECT_EQ(store_->Live(), chunks_before - 5);
  // B still reads the whole file.
  std::string got;
  ASSERT_EQ(b->Read(bst.st_ino, bfh, 0, body.size(), &got), 0);
  EXPECT_EQ(got, body);
  EXPECT_EQ(b->Release(bst.st_ino, bfh), 0);
  // The delays survive a restart of A.
  ASSERT_EQ(a->Create(kRootIno, "two", 0600, O_WRONLY, ctx_, &st, &fh), 0);
  ASSERT_EQ(a->Write(st.st_ino, fh, 0, "x", &n), 0);
  ASSERT_EQ(a->Fsync(st.st_ino, false), 0);
  ASSERT_EQ(a->Release(st.st_ino, fh), 0);
  a->Forget(st.st_ino, 1);
  ASSERT_EQ(a->Unlink(kRootIno, "two"), 0);
  Settle(*a);
  a->Shutdown();
  a.reset();
  auto again = Open("a");
  EXPECT_NE(again->BoxFields().find("chunks_awaiting_boxes=1"), std::string::npos)
      << again->BoxFields();
}

TEST_F(BoxesTest, ABoxOutOfTouchBeyondTheGraceIsMarkedLapsedAndMustRebuild) {
  auto a = Open("a");
  auto b = Open("b");
  const std::uint64_t b_id = IdOf(*b);
  b->Heartbeat();
  Settle(*b);
  a->CatchUp();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // Grace 0 in this test: B's record is older than the grace.
  ASSERT_TRUE(a->LapseStaleBoxes());
  EXPECT_EQ(Find(a->Boxes(), b_id)->state(), proto::BoxRecord::LAPSED);
  EXPECT_TRUE(a->EveryBoxCaughtUpAfter(WallNs() / 1000000 - 1000000)) << "B no longer counts";
  b->CatchUp();
  EXPECT_NE(b->stop_reason().find("LAPSED"), std::string::npos) << b->stop_reason();
  struct stat st {};
  EXPECT_EQ(b->MkDir(kRootIno, "late", 0700, ctx_, &st), EROFS);
  b.reset();
  EXPECT_THROW(Open("b"), Error);
}

}  // namespace
}  // namespace coffer::fs
