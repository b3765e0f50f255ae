// Unit tests of the commit pipeline (fs/commit_pipeline.h) against a fake backend: verdicts in
// order, the one degraded policy (fail: EAGAIN after the undo hook; queue: accepted once in
// the local outbox), pipelined rounds failing in the middle, superseded versions, the outbox
// across a restart, and local-only commits.
#include "fs/commit_pipeline.h"

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "common/keyfile.h"
#include "tests/fs/fake_backend.h"
#include "tests/support/subprocess.h"

namespace coffer::fs {
namespace {

using namespace std::chrono_literals;
using testing::FakeBackend;

class CommitPipelineTest : public ::testing::Test {
 protected:
  CommitPipelineTest()
      : keys_(keyfile::KeySet::Generate(1700000000).MakeKeyring()),
        local_(LmdbStore::Open(dir_ / "state")) {}

  // A batch writing `id` at version `hlc` (content `data`), the next time the pipeline takes.
  void Stage(const crypto::ObjectId& id, std::uint64_t hlc, std::string data) {
    std::lock_guard lock(mu_);
    RecordWrite w;
    w.id = id;
    w.kind = crypto::ObjectKind::kChunk;
    w.version = {hlc, 7};
    w.plaintext = std::make_shared<const std::string>(std::move(data));
    w.table = Table::kChunks;
    w.key = std::string(crypto::IdBytes(id));
    staged_.push_back(std::move(w));
  }

  std::unique_ptr<CommitPipeline> Make(replicator::Backend* remote, bool queue = false) {
    PipelineOptions o;
    o.degraded_queue = queue;
    o.commit_interval = 10ms;
    o.replay_interval = 50ms;
    PipelineHooks hooks;
    hooks.take = [this](std::uint64_t seq) {
      std::lock_guard lock(mu_);
      ChangeSet cs;
      cs.seq = seq;
      cs.writes = std::move(staged_);
      staged_.clear();
      taken_.push_back(seq);
      return cs;
    };
    hooks.failed = [this](std::uint64_t seq) {
      std::lock_guard lock(mu_);
      failed_.push_back(seq);
    };
    return std::make_unique<CommitPipeline>(keys_, *local_, remote, o, hooks);
  }

  std::vector<std::uint64_t> Failed() {
    std::lock_guard lock(mu_);
    return failed_;
  }
  std::vector<std::uint64_t> Taken() {
    std::lock_guard lock(mu_);
    return taken_;
  }

  coffer::testing::TempDir dir_;
  crypto::Keyring keys_;
  std::unique_ptr<LmdbStore> local_;
  std::mutex mu_;
  std::vector<RecordWrite> staged_;
  std::vector<std::uint64_t> taken_, failed_;
  crypto::ObjectId a_ = crypto::RandomObjectId(), b_ = crypto::RandomObjectId();
};

TEST_F(CommitPipelineTest, ABatchIsDurableOnceTheNodesHoldItAndIsCommittedLocallyBeside) {
  FakeBackend remote;
  auto p = Make(&remote);
  p->Start();
  Stage(a_, 100, "chunk a");
  EXPECT_EQ(p->Wait(p->next_seq()), 0);
  EXPECT_TRUE(remote.Get(a_).status == replicator::GetStatus::kFound);
  EXPECT_EQ(remote.Get(a_).object.version, (crypto::ObjectVersion{100, 7}));
  EXPECT_FALSE(p->InOutbox(a_));
  EXPECT_EQ(p->WaitLocal(1), 0);
  auto row = local_->Get(Table::kChunks, crypto::IdBytes(a_));
  ASSERT_TRUE(row);
  EXPECT_EQ(crypto::Open(keys_, crypto::ObjectKind::kChunk, a_, *row), "chunk a");
  EXPECT_EQ(*row, remote.Get(a_).object.sealed);  // the same sealed bytes
  p->Stop();
  // The outbox row went with a later local commit.
  EXPECT_FALSE(local_->Get(Table::kOutbox, crypto::IdBytes(a_)));
}

TEST_F(CommitPipelineTest, DegradedFailUndoesBeforeTheVerdictAndReplaysLater) {
  FakeBackend remote;
  auto p = Make(&remote);
  p->Start();
  remote.set_fail(true);
  Stage(a_, 100, "a");
  const std::uint64_t seq = p->next_seq();
  EXPECT_EQ(p->Wait(seq), kNotDurableErrno);
  EXPECT_EQ(Failed(), std::vector<std::uint64_t>{seq});  // the undo ran before the verdict
  EXPECT_TRUE(p->InOutbox(a_));
  PipelineStatus s = p->status();
  EXPECT_EQ(s.outbox, 1u);
  EXPECT_EQ(s.outbox_failed, 1u);
  EXPECT_NE(s.last_error.find("did not answer"), std::string::npos);
  // A later fsync with nothing new still fails: everything before it is not durable.
  EXPECT_EQ(p->Wait(p->next_seq()), kNotDurableErrno);
  // The nodes return: the replay drains the outbox by itself, and the next batch is durable.
  remote.set_fail(false);
  for (int i = 0; i < 100 && p->InOutbox(a_); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(p->InOutbox(a_));
  EXPECT_EQ(remote.Get(a_).status, replicator::GetStatus::kFound);
  Stage(b_, 101, "b");
  EXPECT_EQ(p->Wait(p->next_seq()), 0);
}

TEST_F(CommitPipelineTest, DegradedQueueAcceptsOnceInTheLocalOutbox) {
  FakeBackend remote;
  auto p = Make(&remote, /*queue=*/true);
  p->Start();
  remote.set_fail(true);
  Stage(a_, 100, "a");
  EXPECT_EQ(p->Wait(p->next_seq()), 0);
  EXPECT_TRUE(Failed().empty());
  EXPECT_TRUE(local_->Get(Table::kOutbox, crypto::IdBytes(a_)));  // durable here
  EXPECT_TRUE(local_->Get(Table::kChunks, crypto::IdBytes(a_)));
  EXPECT_EQ(remote.Get(a_).status, replicator::GetStatus::kNotFound);
}

TEST_F(CommitPipelineTest, RoundsArePipelinedAndDecidedInOrder) {
  FakeBackend remote;
  auto p = Make(&remote);
  p->Start();
  remote.set_hold(true);
  Stage(a_, 100, "a1");
  p->Request(1);
  ASSERT_TRUE(remote.WaitHeld(1));
  Stage(b_, 101, "b");
  p->Request(2);
  ASSERT_TRUE(remote.WaitHeld(2)) << "batch 2 was not sent while round 1 was in flight";
  Stage(a_, 102, "a2");  // supersedes a@100, in flight in round 1
  p->Request(3);
  ASSERT_TRUE(remote.WaitHeld(3));
  // Round 2 completes first; batch 2 still waits for batch 1 (decided in order).
  remote.CompleteHeld(1, true);
  std::this_thread::sleep_for(50ms);
  PipelineStatus s = p->status();
  EXPECT_EQ(s.outbox, 1u);  // a (two versions pending); b is acknowledged
  remote.CompleteHeld(0, true);  // round 1: a@100 acknowledged, a@102 still pending
  EXPECT_EQ(p->Wait(1), 0);
  EXPECT_EQ(p->Wait(2), 0);
  EXPECT_TRUE(p->InOutbox(a_));
  remote.CompleteHeld(0, true);
  EXPECT_EQ(p->Wait(3), 0);
  EXPECT_FALSE(p->InOutbox(a_));
  EXPECT_EQ(remote.Get(a_).object.version.hlc, 102u);
  EXPECT_TRUE(Failed().empty());
}

TEST_F(CommitPipelineTest, APipelinedRoundFailingInTheMiddleFailsItsBatchAndTheLaterOnes) {
  FakeBackend remote;
  auto p = Make(&remote);
  p->Start();
  remote.set_hold(true);
  for (std::uint64_t seq = 1; seq <= 3; ++seq) {
    Stage(crypto::RandomObjectId(), 100 + seq, "x");
    p->Request(seq);
    ASSERT_TRUE(remote.WaitHeld(seq));
  }
  remote.CompleteHeld(2, true);   // round 3 stored
  remote.CompleteHeld(0, true);   // round 1 stored
  remote.CompleteHeld(0, false);  // round 2 failed
  EXPECT_EQ(p->Wait(1), 0);
  EXPECT_EQ(p->Wait(2), kNotDurableErrno);
  // Batch 3's own object is on the nodes, but batch 2's is not: an fsync in batch 3 promised
  // everything before it.
  EXPECT_EQ(p->Wait(3), kNotDurableErrno);
  EXPECT_EQ(Failed(), (std::vector<std::uint64_t>{2, 3}));
  remote.set_hold(false);
  while (remote.held()) remote.CompleteHeld(0, true);  // a replay that started meanwhile
  for (int i = 0; i < 100 && p->status().outbox; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(p->status().outbox, 0u);
  EXPECT_EQ(p->Wait(p->next_seq()), 0);
}

TEST_F(CommitPipelineTest, TheOutboxSurvivesARestart) {
  {
    FakeBackend down;
    down.set_fail(true);
    auto p = Make(&down, /*queue=*/true);
    p->Start();
    Stage(a_, 100, "kept across the restart");
    ASSERT_EQ(p->Wait(p->next_seq()), 0);
    p->Stop();
  }
  FakeBackend up;
  auto p = Make(&up);
  EXPECT_EQ(p->LoadOutbox(), 1u);
  EXPECT_TRUE(p->InOutbox(a_));
  p->Start();
  for (int i = 0; i < 100 && p->InOutbox(a_); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(p->InOutbox(a_));
  auto got = up.Get(a_);
  ASSERT_EQ(got.status, replicator::GetStatus::kFound);
  EXPECT_EQ(crypto::Open(keys_, crypto::ObjectKind::kChunk, a_, got.object.sealed),
            "kept across the restart");
}

TEST_F(CommitPipelineTest, WithoutNodesTheLocalCommitIsTheVerdict) {
  auto p = Make(nullptr);
  p->Start();
  Stage(a_, 100, "local");
  EXPECT_EQ(p->Wait(p->next_seq()), 0);
  EXPECT_TRUE(local_->Get(Table::kChunks, crypto::IdBytes(a_)));
  EXPECT_FALSE(local_->Get(Table::kOutbox, crypto::IdBytes(a_)));  // no outbox without nodes
  // Touched changes are taken within the commit interval without anyone waiting.
  Stage(b_, 101, "lazy");
  p->Touched();
  for (int i = 0; i < 100 && !local_->Get(Table::kChunks, crypto::IdBytes(b_)); ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(local_->Get(Table::kChunks, crypto::IdBytes(b_)));
}

TEST_F(CommitPipelineTest, StopCommitsWhatIsOpen) {
  FakeBackend remote;
  auto p = Make(&remote);
  p->Start();
  Stage(a_, 100, "last words");
  p->Stop();
  EXPECT_TRUE(local_->Get(Table::kChunks, crypto::IdBytes(a_)));
  EXPECT_EQ(remote.Get(a_).status, replicator::GetStatus::kFound);
}

}  // namespace
}  // namespace coffer::fs
