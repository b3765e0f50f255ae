// Unit tests of the box as a replica of the store on the nodes (fs/recovery.h and
// Filesystem::ApplyRemote/CatchUp), on an in-memory backend: a rebuild is a catch-up from zero,
// a box catches up with another's changes, records applied in any order give the same tree, and
// a box whose last local commits were lost converges to what the nodes hold.
#include <fcntl.h>

#include <algorithm>
#include <map>
#include <random>

#include <gtest/gtest.h>

#include "common/keyfile.h"
#include "fs/filesystem.h"
#include "tests/fs/fake_backend.h"
#include "tests/support/subprocess.h"

namespace coffer::fs {
namespace {

using testing::FakeBackend;
using testing::FakeStore;

class ReplicaTest : public ::testing::Test {
 protected:
  ReplicaTest() : keys_(keyfile::KeySet::Generate(1700000000)) {}

  std::unique_ptr<Filesystem> Box(const std::string& name) {
    Options o;
    o.commit_interval_ms = 20;
    o.statfs_path = dir_.path();
    return std::make_unique<Filesystem>(LmdbStore::Open(dir_ / name),
                                        std::make_unique<FakeBackend>(store_), keys_.MakeKeyring(),
                                        keys_.store_fingerprint(), o);
  }
  static std::uint64_t Ino(Filesystem& fs, std::uint64_t parent, const std::string& name) {
    struct stat st {};
    if (fs.Lookup(parent, name, &st) != 0) return 0;
    return st.st_ino;
  }
  std::uint64_t Deliver(Filesystem& fs, std::uint64_t dir, const std::string& name,
                        const std::string& body) {
    struct stat st {};
    std::uint64_t fh = 0;
    EXPECT_EQ(fs.Create(dir, name, 0600, O_WRONLY, ctx_, &st, &fh), 0);
    std::size_t n = 0;
    EXPECT_EQ(fs.Write(st.st_ino, fh, 0, body, &n), 0);
    EXPECT_EQ(fs.Fsync(st.st_ino, false), 0);
    EXPECT_EQ(fs.Release(st.st_ino, fh), 0);
    return st.st_ino;
  }
  // path -> content ("<dir>" for directories) of everything below `dir`.
  // (`contents` false: sizes instead of contents.)
  static std::map<std::string, std::string> Tree(Filesystem& fs, std::uint64_t dir = kRootIno,
                                                 const std::string& prefix = "",
                                                 bool contents = true) {
    std::map<std::string, std::string> out;
    std::vector<DirEntryOut> entries;
    fs.ReadDir(dir, 0, [&](const DirEntryOut& e) {
      if (e.name != "." && e.name != "..") entries.push_back(e);
      return true;
    });
    for (const auto& e : entries) {
      const std::string path = prefix + e.name;
      if (e.type == S_IFDIR) {
        out[path] = "<dir>";
        auto sub = Tree(fs, e.ino, path + "/", contents);
        out.insert(sub.begin(), sub.end());
      } else {
        struct stat st {};
        fs.GetAttr(e.ino, &st);
        if (!contents) {
          out[path] = std::to_string(st.st_size) + " bytes";
          continue;
        }
        std::uint64_t fh = 0;
        fs.Open(e.ino, O_RDONLY, &fh);
        std::string body;
        fs.Read(e.ino, fh, 0, static_cast<std::size_t>(st.st_size), &body);
        fs.Release(e.ino, fh);
        out[path] = body;
      }
    }
    return out;
  }
  std::uint64_t Maildir(Filesystem& fs, const std::string& name) {
    struct stat st {};
    EXPECT_EQ(fs.MkDir(kRootIno, name, 0700, ctx_, &st), 0);
    const std::uint64_t md = st.st_ino;
    for (const char* sub : {"tmp", "new", "cur"}) EXPECT_EQ(fs.MkDir(md, sub, 0700, ctx_, &st), 0);
    return md;
  }

  coffer::testing::TempDir dir_;
  keyfile::KeySet keys_;
  std::shared_ptr<FakeStore> store_ = std::make_shared<FakeStore>();
  Context ctx_{1000, 1000, {}};
};

TEST_F(ReplicaTest, ABoxCatchesUpWithAnotherBoxsChanges) {
  auto a = Box("a");
  const std::uint64_t md = Maildir(*a, "alice");
  const std::uint64_t neu = Ino(*a, md, "new"), cur = Ino(*a, md, "cur");
  for (int i = 0; i < 5; ++i) Deliver(*a, neu, "m" + std::to_string(i), "body " + std::to_string(i));
  // A new box on the same store: its rebuild is a catch-up from zero.
  auto b = Box("b");
  EXPECT_EQ(Tree(*b), Tree(*a));
  // More changes on A: a delivery, a flag (rename to cur/), a delete, a rewrite.
  Deliver(*a, neu, "m5", "body 5");
  ASSERT_EQ(a->Rename(neu, "m1", cur, "m1:2,S", 0), 0);
  ASSERT_EQ(a->Unlink(neu, "m2"), 0);
  {
    std::uint64_t ino = Ino(*a, neu, "m3"), fh = 0;
    ASSERT_EQ(a->Open(ino, O_WRONLY | O_TRUNC, &fh), 0);
    std::size_t n = 0;
    ASSERT_EQ(a->Write(ino, fh, 0, "rewritten", &n), 0);
    ASSERT_EQ(a->Fsync(ino, false), 0);
    a->Release(ino, fh);
  }
  ASSERT_EQ(a->FsyncDir(neu), 0);
  EXPECT_NE(Tree(*b), Tree(*a));
  CatchUpResult r = b->CatchUp();
  EXPECT_TRUE(r.complete());
  EXPECT_GT(r.applied, 0u);
  EXPECT_EQ(Tree(*b), Tree(*a));
  EXPECT_EQ(Tree(*b).count("alice/cur/m1:2,S"), 1u);
  EXPECT_EQ(Tree(*b).count("alice/new/m1"), 0u);
  // Nothing new: a second catch-up applies nothing.
  EXPECT_EQ(b->CatchUp().applied, 0u);
  // And back: B's change reaches A.
  Deliver(*b, Ino(*b, Ino(*b, kRootIno, "alice"), "new"), "from-b", "written on box b");
  a->CatchUp();
  EXPECT_EQ(Tree(*a), Tree(*b));
}

TEST_F(ReplicaTest, RecordsAppliedInAnyOrderGiveTheSameTree) {
  auto a = Box("a");
  const std::uint64_t md = Maildir(*a, "bob");
  struct stat st {};
  ASSERT_EQ(a->MkDir(md, ".Sent", 0700, ctx_, &st), 0);
  for (const char* sub : {"tmp", "new", "cur"}) ASSERT_EQ(a->MkDir(st.st_ino, sub, 0700, ctx_, &st), 0);
  const std::uint64_t neu = Ino(*a, md, "new");
  for (int i = 0; i < 8; ++i) Deliver(*a, neu, "m" + std::to_string(i), std::string(100 + i, 'x'));
  const std::uint64_t f = Ino(*a, neu, "m0");
  ASSERT_EQ(a->Link(f, Ino(*a, md, "cur"), "m0-link", &st), 0);
  ASSERT_EQ(a->FsyncDir(md), 0);
  const auto want = Tree(*a, kRootIno, "", false);

  // Every record of the store, as the nodes hold it, fed to a box that knows only the root,
  // children before their directories and in a shuffled order.
  auto keyring = keys_.MakeKeyring();
  RecordIds rids(keyring.Find(1)->name);
  std::vector<RemoteRecord> records;
  {
    std::lock_guard lock(store_->mu);
    for (const auto& [id, held] : store_->objects) {
      if (rids.Classify(id) != RecordIds::Kind::kInode || held.tombstone) continue;
      RemoteRecord rec;
      rec.id = id;
      rec.kind = RecordIds::Kind::kInode;
      rec.version = held.version;
      rec.sealed = held.sealed;
      auto opened = crypto::OpenObject(keyring, id, held.sealed);
      ASSERT_TRUE(opened);
      ASSERT_TRUE(rec.inode.ParseFromString(opened->plaintext));
      if (rec.inode.ino() == kRootIno) continue;
      records.push_back(std::move(rec));
    }
  }
  ASSERT_GT(records.size(), 10u);
  for (unsigned seed : {1u, 2u, 3u}) {
    auto c = std::make_shared<FakeStore>();
    Options o;
    o.statfs_path = dir_.path();
    Filesystem fresh(LmdbStore::Open(dir_ / ("c" + std::to_string(seed))),
                     std::make_unique<FakeBackend>(c), keys_.MakeKeyring(),
                     keys_.store_fingerprint(), o);
    std::vector<RemoteRecord> shuffled = records;
    std::mt19937 rng(seed);
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    EXPECT_EQ(fresh.ApplyRemote(shuffled), records.size());
    // The chunks live on A's store: names and sizes.
    EXPECT_EQ(Tree(fresh, kRootIno, "", false), want) << "seed " << seed;
    EXPECT_EQ(fresh.ApplyRemote(shuffled), 0u) << "applying the same records again changes nothing";
  }
}

TEST_F(ReplicaTest, ABoxThatLostItsLastLocalCommitsConvergesToTheNodes) {
  {
    auto a = Box("a");
    const std::uint64_t md = Maildir(*a, "carol");
    Deliver(*a, Ino(*a, md, "new"), "early", "before the snapshot");
  }
  // A copy of STATE_DIR now: what the box will wake up with.
  ASSERT_EQ(std::system(("cp -a " + dir_.path() + "/a " + dir_.path() + "/a-old").c_str()), 0);
  std::map<std::string, std::string> want;
  {
    auto a = Box("a");
    const std::uint64_t md = Ino(*a, kRootIno, "carol");
    const std::uint64_t neu = Ino(*a, md, "new");
    for (int i = 0; i < 6; ++i) Deliver(*a, neu, "late" + std::to_string(i), "acknowledged " + std::to_string(i));
    ASSERT_EQ(a->Unlink(neu, "early"), 0);
    ASSERT_EQ(a->FsyncDir(neu), 0);
    want = Tree(*a);
  }
  // Its local commits after the copy are lost; the nodes have them.
  ASSERT_EQ(std::system(("rm -rf " + dir_.path() + "/a && mv " + dir_.path() + "/a-old " +
                         dir_.path() + "/a").c_str()),
            0);
  auto a = Box("a");
  EXPECT_EQ(Tree(*a), want);
}

}  // namespace
}  // namespace coffer::fs
