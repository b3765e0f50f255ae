// The cofferfs core on real storage nodes, without a mount: three coffer-node
// processes on 127.0.0.1, R=3, W=2. The durability contract (an operation fails with EAGAIN and
// is rolled back when W nodes do not take it; degraded=queue accepts it and the outbox drains),
// the outbox across a restart, disaster recovery from the nodes into an empty STATE_DIR, cache
// eviction with reads through to the nodes, tombstone collection and verify.
#include "tests/fs/replicated_fixture.h"

namespace coffer::fs {
namespace {

TEST_F(ReplicatedFsTest, RebuildFromNodesRestoresTheWholeTree) {
  Mount("box1");
  std::uint64_t md = MakeMaildir("alice");
  std::uint64_t tmp = Ino(md, "tmp"), neu = Ino(md, "new");
  std::map<std::string, std::string> sent;
  for (int i = 0; i < 20; ++i) {
    std::string name = "msg" + std::to_string(i);
    std::string body = Body(i, i == 3 ? 300000 : 500 + 97 * i);  // one spans 5 chunks
    std::uint64_t ino = 0;
    ASSERT_EQ(Deliver(tmp, name, body, &ino), 0);
    struct stat st {};
    ASSERT_EQ(fs_->Link(ino, neu, name, &st), 0);
    fs_->Forget(ino, 1);
    ASSERT_EQ(fs_->Unlink(tmp, name), 0);
    sent[name] = body;
  }
  ASSERT_EQ(fs_->Unlink(neu, "msg7"), 0);  // a delete is a tombstone on the nodes
  sent.erase("msg7");
  struct stat st {};
  ASSERT_EQ(fs_->Rename(neu, "msg8", Ino(md, "cur"), "msg8:2,S", 0), 0);
  EXPECT_EQ(Listing(neu).size(), sent.size() - 1);
  WaitOutboxEmpty();
  VerifyReport v = fs_->Verify();
  EXPECT_TRUE(v.clean()) << v.missing << " missing, " << v.stale << " stale, " << v.extra
                         << " extra " << (v.problems.empty() ? "" : v.problems[0]);
  EXPECT_GT(v.ok, 40u);
  fs_.reset();

  // A new box: the key, the node list and an empty state directory.
  Mount("box2");
  md = Ino(kRootIno, "alice");
  ASSERT_NE(md, 0u);
  auto got = Listing(Ino(md, "new"));
  auto cur = Listing(Ino(md, "cur"));
  ASSERT_EQ(cur.size(), 1u);
  got["msg8"] = cur.begin()->second;
  EXPECT_EQ(cur.begin()->first, "msg8:2,S");
  EXPECT_EQ(got, sent);
  EXPECT_TRUE(Listing(Ino(md, "tmp")).empty());
  ASSERT_EQ(fs_->GetAttr(Ino(Ino(md, "new"), "msg3"), &st), 0);
  EXPECT_EQ(st.st_size, 300000);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 1000u);
  // The rebuilt box writes newer versions than anything the nodes hold.
  ASSERT_EQ(Deliver(Ino(md, "tmp"), "after", "written after the rebuild\n"), 0);
  WaitOutboxEmpty();
  EXPECT_TRUE(fs_->Verify().clean());
  fs_.reset();
  Mount("box3");
  EXPECT_EQ(Read(Ino(Ino(Ino(kRootIno, "alice"), "tmp"), "after")), "written after the rebuild\n");
}

TEST_F(ReplicatedFsTest, WithoutAQuorumOperationsFailWithEagainAndAreRolledBack) {
  Mount("box");
  std::uint64_t md = MakeMaildir("bob");
  std::uint64_t tmp = Ino(md, "tmp"), neu = Ino(md, "new");
  ASSERT_EQ(Deliver(tmp, "old", "an old message\n"), 0);
  WaitOutboxEmpty();
  nodes_[0]->Kill();
  nodes_[1]->Kill();

  // Creating the tmp file works (local), the fsync cannot be made durable.
  std::uint64_t ino = 0;
  EXPECT_EQ(Deliver(tmp, "m1", "a new message\n", &ino), EAGAIN);
  ASSERT_NE(Ino(tmp, "m1"), 0u);
  struct stat st {};
  {  // close(2) of a written file is a durability point too, also when nothing new is pending
    std::uint64_t fh = 0;
    ASSERT_EQ(fs_->Create(tmp, "m2", 0600, O_WRONLY, ctx_, &st, &fh), 0);
    std::size_t n = 0;
    ASSERT_EQ(fs_->Write(st.st_ino, fh, 0, "second\n", &n), 0);
    EXPECT_EQ(fs_->Flush(st.st_ino, fh), EAGAIN);
    EXPECT_EQ(fs_->Flush(st.st_ino, fh), EAGAIN);
    fs_->Release(st.st_ino, fh);
    // An unlink never fails for node reasons: the name is gone at once and its removal waits
    // in the outbox, so that the same name can be created again at once (Postfix reuses tmp
    // names within a second).
    ASSERT_EQ(fs_->Unlink(tmp, "m2"), 0);
    EXPECT_EQ(Ino(tmp, "m2"), 0u);
    ASSERT_EQ(fs_->Create(tmp, "m2", 0600, O_WRONLY, ctx_, &st, &fh), 0);
    fs_->Release(st.st_ino, fh);
    ASSERT_EQ(fs_->Unlink(tmp, "m2"), 0);
  }
  EXPECT_EQ(fs_->Link(ino, neu, "m1", &st), EAGAIN);
  EXPECT_EQ(Ino(neu, "m1"), 0u) << "a failed link must not leave the name behind";
  EXPECT_EQ(fs_->Rename(tmp, "m1", neu, "m1", 0), EAGAIN);
  EXPECT_EQ(Ino(neu, "m1"), 0u);
  EXPECT_NE(Ino(tmp, "m1"), 0u) << "a failed rename must leave the file where it was";
  EXPECT_EQ(fs_->Unlink(tmp, "old"), 0);
  EXPECT_EQ(Ino(tmp, "old"), 0u);
  EXPECT_EQ(fs_->MkDir(md, "sub", 0700, ctx_, &st), EAGAIN);
  EXPECT_EQ(Ino(md, "sub"), 0u);
  EXPECT_NE(fs_->StatusLine().find("state=DEGRADED"), std::string::npos);

  // The nodes return: the same operations succeed, the outbox drains.
  nodes_[0]->Start();
  nodes_[1]->Start();
  WaitOutboxEmpty();
  ino = Ino(tmp, "m1");
  ASSERT_EQ(fs_->Fsync(ino, false), 0);
  ASSERT_EQ(fs_->Link(ino, neu, "m1", &st), 0);
  ASSERT_EQ(fs_->Unlink(tmp, "m1"), 0);
  WaitOutboxEmpty();
  VerifyReport v = fs_->Verify();
  EXPECT_TRUE(v.clean()) << v.missing << " missing, " << v.stale << " stale, " << v.extra
                         << " extra, " << v.under_quorum << " under quorum "
                         << (v.problems.empty() ? "" : v.problems[0]);
  fs_.reset();
  Mount("rebuilt");
  md = Ino(kRootIno, "bob");
  EXPECT_EQ(Listing(Ino(md, "new")), (std::map<std::string, std::string>{{"m1", "a new message\n"}}));
  EXPECT_TRUE(Listing(Ino(md, "tmp")).empty());
  EXPECT_EQ(Ino(md, "sub"), 0u);
}

TEST_F(ReplicatedFsTest, DegradedQueueAcceptsAndTheOutboxDrainsAcrossARestart) {
  Mount("box", /*queue=*/true);
  std::uint64_t md = MakeMaildir("carol");
  WaitOutboxEmpty();
  nodes_[1]->Kill();
  nodes_[2]->Kill();
  std::uint64_t ino = 0;
  ASSERT_EQ(Deliver(Ino(md, "tmp"), "q1", "queued\n", &ino), 0);
  struct stat st {};
  ASSERT_EQ(fs_->Link(ino, Ino(md, "new"), "q1", &st), 0);
  EXPECT_GT(store_->OutboxSize(), 0u);
  // The box restarts while the nodes are still down: the outbox is in STATE_DIR.
  fs_.reset();
  Mount("box", /*queue=*/true);
  EXPECT_GT(store_->OutboxSize(), 0u);
  nodes_[1]->Start();
  nodes_[2]->Start();
  WaitOutboxEmpty();
  fs_.reset();
  Mount("other");
  EXPECT_EQ(Read(Ino(Ino(Ino(kRootIno, "carol"), "new"), "q1")), "queued\n");
}

TEST_F(ReplicatedFsTest, DamagedOutboxEntriesDoNotKeepTheStoreFromMounting) {
  Mount("box");
  MakeMaildir("hank");
  WaitOutboxEmpty();
  fs_.reset();
  {
    auto raw = LmdbStore::Open(dir_ / "box");
    std::string id(16, '\x07');
    raw->Commit({Mutation{Table::kOutbox, id, std::string("\x10\x63garbage")},
                 Mutation{Table::kOutbox, std::string(16, '\x08'), std::string("\xff\xff")}});
  }
  Mount("box");
  EXPECT_NE(Ino(kRootIno, "hank"), 0u);
  EXPECT_EQ(store_->OutboxSize(), 0u);
}

TEST_F(ReplicatedFsTest, EvictedChunksAreReadFromTheNodes) {
  Mount("box", false, /*cache_limit=*/256 << 10);
  std::uint64_t md = MakeMaildir("dave");
  std::map<std::string, std::string> sent;
  for (int i = 0; i < 24; ++i) {
    std::string body = Body(i, 60000 + static_cast<std::size_t>(i));
    ASSERT_EQ(Deliver(Ino(md, "tmp"), "m" + std::to_string(i), body), 0);
    sent["m" + std::to_string(i)] = body;
  }
  WaitOutboxEmpty();
  for (int i = 0; i < 20 && store_->CacheBytes() > (256u << 10); ++i) store_->EvictNow();
  EXPECT_LE(store_->CacheBytes(), 256u << 10);
  std::size_t local = 0;
  store_->Scan(Table::kChunks, [&](std::string_view, std::string_view) { ++local; });
  EXPECT_LT(local, 10u) << store_->CacheBytes() << " bytes cached; " << fs_->StatusLine();
  EXPECT_EQ(Listing(Ino(md, "tmp")), sent);  // every evicted chunk comes back from the nodes
  EXPECT_NE(fs_->StatusLine().find("evicted="), std::string::npos);
  // With one node down the reads fail over.
  nodes_[0]->Kill();
  for (int i = 0; i < 20 && store_->CacheBytes() > (256u << 10); ++i) store_->EvictNow();
  EXPECT_EQ(Listing(Ino(md, "tmp")).size(), sent.size());
}

TEST_F(ReplicatedFsTest, TombstonesAreCollectedOnceEveryReplicaHasThem) {
  Mount("box");
  std::uint64_t md = MakeMaildir("erin");
  std::uint64_t ino = 0;
  ASSERT_EQ(Deliver(Ino(md, "tmp"), "gone", Body(1, 1000), &ino), 0);
  ASSERT_EQ(fs_->Unlink(Ino(md, "tmp"), "gone"), 0);
  fs_->Forget(ino, 2);  // the kernel lets go: the inode and its chunk are freed
  ASSERT_EQ(fs_->FsyncDir(kRootIno), 0);
  WaitOutboxEmpty();
  WaitChunksReleased();
  auto tombstones = [&] {
    std::uint64_t t = 0;
    for (std::size_t n = 0; n < kNodes; ++n) t += store_->replicator().Stat(n).tombstones();
    return t;
  };
  EXPECT_GE(tombstones(), 4u);  // inode record and chunk, on W=2 nodes at least
  // The third replica takes its copies a moment after the W acks; until then scrub repairs it
  // and leaves the tombstone for a later pass.
  std::uint64_t collected = 0;
  for (int pass = 0; pass < 5 && tombstones() > 0; ++pass) {
    std::this_thread::sleep_for(200ms);
    collected += store_->ScrubNow().collected;
  }
  EXPECT_GE(collected, 2u);
  EXPECT_EQ(tombstones(), 0u);
  EXPECT_TRUE(fs_->Verify().clean());
}

TEST_F(ReplicatedFsTest, RebuildTakesTheNewestVersionNotAStaleReplica) {
  Mount("box");
  std::uint64_t md = MakeMaildir("gina");
  std::uint64_t cur = Ino(md, "cur");
  for (int i = 0; i < 12; ++i) ASSERT_EQ(Deliver(cur, "m" + std::to_string(i), "first\n"), 0);
  WaitOutboxEmpty();
  // n1 misses every later change: rewritten contents, renames (new flags), a delete.
  nodes_[0]->Kill();
  for (int i = 0; i < 12; ++i) {
    std::uint64_t ino = Ino(cur, "m" + std::to_string(i));
    std::uint64_t fh = 0;
    ASSERT_EQ(fs_->Open(ino, O_WRONLY, &fh), 0);
    SetAttrRequest trunc;
    trunc.size = 0;
    struct stat st {};
    ASSERT_EQ(fs_->SetAttr(ino, trunc, &st), 0);
    std::size_t n = 0;
    ASSERT_EQ(fs_->Write(ino, fh, 0, "second " + std::to_string(i) + "\n", &n), 0);
    ASSERT_EQ(fs_->Fsync(ino, false), 0);
    ASSERT_EQ(fs_->Flush(ino, fh), 0);
    fs_->Release(ino, fh);
    if (i % 3 == 0) {
      ASSERT_EQ(fs_->Rename(cur, "m" + std::to_string(i), cur, "m" + std::to_string(i) + ":2,S", 0), 0);
    }
  }
  ASSERT_EQ(fs_->Unlink(cur, "m11"), 0);
  WaitOutboxEmpty();
  fs_.reset();
  nodes_[0]->Start();  // back with its old copies; no scrub has run
  Mount("rebuilt");
  auto got = Listing(Ino(Ino(kRootIno, "gina"), "cur"));
  std::map<std::string, std::string> want;
  for (int i = 0; i < 11; ++i)
    want["m" + std::to_string(i) + (i % 3 == 0 ? ":2,S" : "")] = "second " + std::to_string(i) + "\n";
  EXPECT_EQ(got, want);
  VerifyReport v = fs_->Verify();
  EXPECT_EQ(v.stale, 0u) << (v.problems.empty() ? "" : v.problems[0]);
}

TEST_F(ReplicatedFsTest, RebuildRefusesWhenTooFewNodesAnswer) {
  Mount("box");
  MakeMaildir("frank");
  WaitOutboxEmpty();
  fs_.reset();
  nodes_[0]->Kill();
  nodes_[1]->Kill();
  try {
    Mount("empty");
    FAIL() << "a rebuild from 1 of 3 nodes with W=2 must refuse";
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), EAGAIN) << e.what();
  }
  // Not a new store either: with the nodes back the real one comes back.
  nodes_[0]->Start();
  nodes_[1]->Start();
  Mount("empty2");
  EXPECT_NE(Ino(kRootIno, "frank"), 0u);
  // Another key cannot mount the nodes' store.
  fs_.reset();
  keys_ = keyfile::KeySet::Generate(1700000001);
  try {
    Mount("otherkey");
    FAIL() << "another key must not mount this store";
  } catch (const Error& e) {
    EXPECT_TRUE(e.err() == EACCES || e.err() == EBADMSG) << e.what();
  }
}

}  // namespace
}  // namespace coffer::fs
