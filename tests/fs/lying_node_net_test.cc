// A lying storage node (DESIGN.md "Versions": a node can withhold or drop what it holds, but it
// cannot make a box believe, or spread to other nodes, a forged, future or older version).
//
// Three real coffer-node processes, R=3, W=2; the second one keeps the first copy of every object
// it replaces and then lies in one play-dead mode: forge-tombstone (every live object claimed as
// a newer tombstone), rollback (first copies claimed as newer versions), or forge-tombstone an
// hour ahead (claims beyond the clock-skew limit). While it lies, a box with its own state
// scrubs, a box rebuilds into an empty STATE_DIR and reads every message from the nodes (read
// repair), and tombstones are collected; a third box rebuilds after that. Every acknowledged
// message must stay intact on every box and on the two honest nodes, no deleted message may
// come back, no moved message may appear twice, and the lying node must be reported.
#include "replicator/play_dead.h"
#include "tests/fs/replicated_fixture.h"

namespace coffer::fs {
namespace {

constexpr std::size_t kLiar = 1;  // n2

class LyingNodeTest : public ReplicatedFsTest, public ::testing::WithParamInterface<const char*> {
 protected:
  std::vector<std::string> NodeArgs(int i) override {
    if (static_cast<std::size_t>(i) == kLiar) return {"--keep-first-copies"};
    return {};
  }

  void PlayDead(std::size_t node, const std::string& mode) {
    auto p = replicator::ParsePlayDead(mode);
    ASSERT_TRUE(p) << mode;
    replicator::wire::Request req;
    req.mutable_admin()->set_play_dead(p->mode);
    req.mutable_admin()->set_slow_ms(p->slow_ms);
    req.mutable_admin()->set_offset_ms(p->offset_ms);
    auto r = CallNode(node, req, /*admin=*/true);
    ASSERT_EQ(r.status, replicator::CallStatus::kOk) << r.Describe({"n", "", ""});
    ASSERT_EQ(r.reply.admin().play_dead(), p->ToString());
  }

  // What node `node` really holds alive: id -> (version, digest).
  // What a node holds of the store's tree (box records, the boxes' heartbeats, move on).
  std::map<std::string, std::pair<replicator::Version, std::string>> Live(std::size_t node) {
    std::map<std::string, std::pair<replicator::Version, std::string>> out;
    const crypto::Keyring ring = keys_.MakeKeyring();
    const RecordIds ids(ring.Find(1)->name);
    std::string after;
    while (true) {
      replicator::wire::Request req;
      req.mutable_list()->set_after(after);
      auto r = CallNode(node, req);
      EXPECT_EQ(r.status, replicator::CallStatus::kOk);
      if (r.status != replicator::CallStatus::kOk) return out;
      for (const auto& e : r.reply.list().entries()) {
        auto id = crypto::IdFromBytes(e.id());
        if (id && ids.Classify(*id) == RecordIds::Kind::kBox) continue;
        if (!e.tombstone()) out[e.id()] = {replicator::FromWire(e.version()), e.digest()};
      }
      if (r.reply.list().done() || r.reply.list().entries_size() == 0) break;
      after = r.reply.list().entries(r.reply.list().entries_size() - 1).id();
    }
    return out;
  }

  // The Maildir as this box shows it: folder/name -> contents (read through the nodes when the
  // box has no copy).
  std::map<std::string, std::string> Tree() {
    std::map<std::string, std::string> out;
    std::uint64_t md = Ino(kRootIno, "alice");
    EXPECT_NE(md, 0u);
    if (md == 0) return out;
    for (const char* folder : {"tmp", "new", "cur"}) {
      for (auto& [name, body] : Listing(Ino(md, folder))) out[std::string(folder) + "/" + name] = body;
    }
    return out;
  }

  std::uint64_t LiesOfTheLiar() {
    for (const auto& [node, trust] : store_->Trust()) {
      if (node == "n2") return trust.lies + trust.future;
    }
    return 0;
  }
  std::uint64_t LiesOfHonestNodes() {
    std::uint64_t n = 0;
    for (const auto& [node, trust] : store_->Trust()) {
      if (node != "n2") n += trust.lies + trust.future;
    }
    return n;
  }
};

TEST_P(LyingNodeTest, NothingAcknowledgedIsLostNothingDeletedReturnsAndTheLiarIsReported) {
  const std::string mode = GetParam();
  const bool far_future = mode.find("3600000") != std::string::npos;
  Mount("a");
  std::uint64_t md = MakeMaildir("alice");
  const std::uint64_t tmp = Ino(md, "tmp"), neu = Ino(md, "new"), cur = Ino(md, "cur");
  std::map<std::string, std::string> want;
  for (int i = 0; i < 20; ++i) {
    const std::string name = "msg" + std::to_string(i);
    const std::string body = Body(i, i == 3 ? 200000 : 400 + 131 * i);  // one spans 4 chunks
    std::uint64_t ino = 0;
    ASSERT_EQ(Deliver(tmp, name, body, &ino), 0);
    struct stat st {};
    ASSERT_EQ(fs_->Link(ino, neu, name, &st), 0);
    ASSERT_EQ(fs_->Unlink(tmp, name), 0);
    fs_->Forget(ino, 2);  // the kernel lets go: a delete frees the inode and its chunks
    want["new/" + name] = body;
  }
  // Moved (flagged) messages and deleted ones: replaced and tombstoned records, which the
  // rollback liar can serve again.
  for (int i = 0; i < 5; ++i) {
    const std::string name = "msg" + std::to_string(i);
    ASSERT_EQ(fs_->Rename(neu, name, cur, name + ":2,S", 0), 0);
    want["cur/" + name + ":2,S"] = want["new/" + name];
    want.erase("new/" + name);
  }
  for (int i = 15; i < 20; ++i) {
    const std::string name = "msg" + std::to_string(i);
    ASSERT_EQ(fs_->Unlink(neu, name), 0);
    want.erase("new/" + name);
  }
  ASSERT_EQ(fs_->FsyncDir(neu), 0);
  WaitOutboxEmpty();
  // Every replica holds everything before the node starts lying (the third copy of a write
  // arrives a moment after the W acks).
  for (int pass = 0; pass < 10; ++pass) {
    if (store_->ScrubNow().differing == 0) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(Tree(), want);
  const auto honest0 = Live(0), honest2 = Live(2);
  ASSERT_EQ(honest0, honest2);
  ASSERT_EQ(Live(kLiar), honest0);
  ASSERT_GT(honest0.size(), 30u);  // inode records and chunks
  auto honest_nodes_intact = [&](const char* when) {
    EXPECT_EQ(Live(0), honest0) << "node n1 changed " << when;
    EXPECT_EQ(Live(2), honest2) << "node n3 changed " << when;
  };

  PlayDead(kLiar, mode);

  // A box with its own state scrubs: nothing changes, on the box or on the honest nodes.
  replicator::ScrubReport scrub = store_->ScrubNow();
  EXPECT_EQ(scrub.unrecoverable, 0u);
  EXPECT_EQ(scrub.repaired, 0u) << "scrub wrote what the liar claims";
  EXPECT_EQ(Tree(), want);
  honest_nodes_intact("by the scrub of a box with its own state");
  EXPECT_GT(LiesOfTheLiar(), 0u) << fs_->StatusLine();
  EXPECT_EQ(LiesOfHonestNodes(), 0u) << fs_->StatusLine();
  fs_.reset();

  // A new box rebuilds into an empty STATE_DIR and reads every message from the nodes: the
  // reads fail over from the liar, and read repair spreads nothing it claims.
  Mount("b");
  EXPECT_EQ(Tree(), want);
  honest_nodes_intact("by a rebuild and reads through the nodes");
  EXPECT_GT(LiesOfTheLiar(), 0u) << fs_->StatusLine();
  EXPECT_EQ(LiesOfHonestNodes(), 0u) << fs_->StatusLine();
  const std::string status = fs_->StatusLine();
  if (far_future) {
    EXPECT_EQ(status.find("future.n2=0 "), std::string::npos) << status;
  } else {
    EXPECT_EQ(status.find("lies.n2=0 "), std::string::npos) << status;
    EXPECT_NE(status.find("liars=1"), std::string::npos) << status;
  }
  EXPECT_NE(status.find("lies.n1=0 "), std::string::npos) << status;
  VerifyReport v = fs_->Verify();
  EXPECT_EQ(v.stale, 0u) << (v.problems.empty() ? "" : v.problems[0]);
  EXPECT_EQ(v.missing, 0u) << (v.problems.empty() ? "" : v.problems[0]);
  EXPECT_EQ(v.extra, 0u) << (v.problems.empty() ? "" : v.problems[0]);
  if (!far_future) {
    EXPECT_EQ(v.liars, std::vector<std::string>{"n2"});
    EXPECT_FALSE(v.clean()) << "verify must not call a store with a lying node clean";
  }

  // Tombstone collection (grace 0 s) while the node lies.
  for (int pass = 0; pass < 2; ++pass) {
    scrub = store_->ScrubNow();
    EXPECT_EQ(scrub.unrecoverable, 0u);
  }
  EXPECT_EQ(Tree(), want);
  honest_nodes_intact("by tombstone collection");
  fs_.reset();

  // Another new box, still with the liar: nothing deleted returns, nothing moved appears twice.
  Mount("c");
  EXPECT_EQ(Tree(), want);
  fs_.reset();

  // The liar stops lying; the original box and a last new box see the same tree, and the nodes
  // match the original box's tree.
  PlayDead(kLiar, "off");
  Mount("a");
  EXPECT_EQ(Tree(), want);
  v = fs_->Verify();
  EXPECT_EQ(v.stale + v.missing + v.extra + v.corrupt, 0u)
      << (v.problems.empty() ? "" : v.problems[0]);
  fs_.reset();
  Mount("d");
  EXPECT_EQ(Tree(), want);
}

INSTANTIATE_TEST_SUITE_P(Modes, LyingNodeTest,
                         ::testing::Values("forge-tombstone", "rollback",
                                           "forge-tombstone 3600000"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (c == '-' || c == ' ') c = '_';
                           return name;
                         });

}  // namespace
}  // namespace coffer::fs
