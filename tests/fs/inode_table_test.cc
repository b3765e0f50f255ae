// Unit tests of the inode table (fs/inode_table.h): names held in inode records, directory
// indexes and readdir cookies derived from them, conflicts between two inodes claiming a name,
// last-writer-wins application of records from the nodes.
#include "fs/inode_table.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

namespace coffer::fs {
namespace {

class InodeTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = std::make_unique<Inode>();
    root->ino = kRootIno;
    root->mode = S_IFDIR | 0755;
    root_ = t_.Insert(std::move(root));
  }
  Inode* File() { return t_.Create(S_IFREG | 0644, 0, 0, Timestamp{1, 0}); }
  Inode* Dir() { return t_.Create(S_IFDIR | 0755, 0, 0, Timestamp{1, 0}); }
  proto::InodeRecord Rec(const Inode& i, Version v) {
    proto::InodeRecord r = InodeTable::ToRecord(i, 65536);
    r.mutable_version()->set_hlc(v.hlc);
    r.mutable_version()->set_box_id(v.box_id);
    return r;
  }

  InodeTable t_;
  Inode* root_ = nullptr;
};

TEST_F(InodeTableTest, NamesAreLinksOfTheInodeAndCountLinks) {
  Inode* f = File();
  EXPECT_GT(f->ino, kRootIno);
  t_.AddLink(root_, "a", f, {10, 1});
  t_.AddLink(root_, "b", f, {11, 1});
  EXPECT_EQ(t_.Lookup(*root_, "a"), f->ino);
  EXPECT_EQ(f->nlink, 2u);
  ASSERT_EQ(f->links.size(), 2u);
  EXPECT_EQ(t_.RemoveLink(root_, "a"), f);
  EXPECT_FALSE(t_.Lookup(*root_, "a"));
  EXPECT_EQ(f->nlink, 1u);
  Inode* d = Dir();
  t_.AddLink(root_, "d", d, {12, 1});
  EXPECT_EQ(root_->nlink, 3u);  // 2 + one subdirectory
  EXPECT_EQ(d->parent(), kRootIno);
  t_.RemoveLink(root_, "d");
  EXPECT_EQ(root_->nlink, 2u);
}

TEST_F(InodeTableTest, ReplacingANameKeepsItsCookie) {
  Inode* f = File();
  Inode* g = File();
  t_.AddLink(root_, "x", f, {10, 1});
  const std::uint64_t cookie = root_->dir->by_name.at("x").cookie;
  EXPECT_EQ(t_.ReplaceLink(root_, "x", g, {11, 1}), f);
  EXPECT_EQ(root_->dir->by_name.at("x").cookie, cookie);
  EXPECT_EQ(t_.Lookup(*root_, "x"), g->ino);
  EXPECT_TRUE(f->links.empty());
  EXPECT_EQ(f->nlink, 0u);
}

TEST_F(InodeTableTest, TheOlderLinkWinsAConflictAndTheLoserGetsTheNameWhenItIsFree) {
  Inode* older = File();
  Inode* newer = File();
  // Records of two boxes that created "m" at once: both arrive here.
  older->links.push_back(InodeLink{kRootIno, "m", {10, 1}});
  newer->links.push_back(InodeLink{kRootIno, "m", {20, 2}});
  auto conflicts = t_.Reindex();
  ASSERT_EQ(conflicts.size(), 1u);
  EXPECT_EQ(conflicts[0].winner, older->ino);
  EXPECT_EQ(conflicts[0].loser, newer->ino);
  EXPECT_EQ(t_.Lookup(*root_, "m"), older->ino);
  // The same whatever the order they arrive in.
  InodeTable other;
  auto root = std::make_unique<Inode>();
  root->ino = kRootIno;
  root->mode = S_IFDIR | 0755;
  Inode* r2 = other.Insert(std::move(root));
  other.Apply(Rec(*newer, {20, 2}));
  other.Apply(Rec(*older, {10, 1}));
  EXPECT_EQ(other.Lookup(*r2, "m"), older->ino);
  EXPECT_EQ(other.TakeConflicts().size(), 1u);
  // The winner gives the name up: the other inode that links there has it now.
  t_.RemoveLink(root_, "m");
  EXPECT_EQ(t_.Lookup(*root_, "m"), newer->ino);
}

TEST_F(InodeTableTest, RecordsFromTheNodesApplyByLastWriterWins) {
  Inode* f = File();
  t_.AddLink(root_, "inbox-msg", f, {10, 1});
  f->version = {10, 1};
  // A newer record of the same inode (another box moved it): the name moves.
  proto::InodeRecord moved = Rec(*f, {30, 2});
  moved.clear_links();
  auto* l = moved.add_links();
  l->set_parent(kRootIno);
  l->set_name("read-msg");
  l->mutable_version()->set_hlc(30);
  l->set_renamed(true);
  l->set_from_parent(kRootIno);
  l->set_from_name("inbox-msg");
  auto* u = moved.add_unlinked();
  u->set_parent(kRootIno);
  u->set_name("inbox-msg");
  u->mutable_version()->set_hlc(29);
  moved.set_size(99);
  Applied a = t_.Apply(moved);
  EXPECT_TRUE(a.changed);
  EXPECT_TRUE(a.data);
  EXPECT_FALSE(t_.Lookup(*root_, "inbox-msg"));
  EXPECT_EQ(t_.Lookup(*root_, "read-msg"), f->ino);
  EXPECT_EQ(f->size, 99u);
  ASSERT_EQ(a.names_gone.size(), 1u);
  EXPECT_EQ(a.names_gone[0].second, "inbox-msg");
  // An older record changes nothing.
  proto::InodeRecord stale = moved;
  stale.mutable_links(0)->set_name("stale");
  stale.mutable_version()->set_hlc(20);
  EXPECT_FALSE(t_.Apply(stale).changed);
  EXPECT_FALSE(t_.Lookup(*root_, "stale"));
  // A delete newer than the record takes every name; an older one nothing.
  EXPECT_FALSE(t_.ApplyDelete(f->ino, {25, 3}).changed);
  Applied d = t_.ApplyDelete(f->ino, {40, 3});
  EXPECT_TRUE(d.changed);
  EXPECT_FALSE(t_.Lookup(*root_, "read-msg"));
  EXPECT_EQ(f->nlink, 0u);
}

TEST_F(InodeTableTest, NamesMergePerNameSoThatNoBoxUndoesAnothersRemoval) {
  // Box A: a delivery links tmp/T to new/X, then unlinks tmp/T (version 40). Box B saw both
  // names and moved new/X to cur/X (version 50), not knowing of the unlink.
  Inode* f = File();
  t_.AddLink(root_, "T", f, {10, 1});
  t_.AddLink(root_, "X", f, {20, 1});
  proto::InodeRecord seen_by_b = Rec(*f, {20, 1});
  t_.RemoveLink(root_, "T", {40, 1});
  f->version = {40, 1};
  ASSERT_EQ(f->unlinked.size(), 1u);
  proto::InodeRecord from_b = seen_by_b;
  from_b.mutable_version()->set_hlc(50);
  from_b.mutable_version()->set_box_id(2);
  for (auto& link : *from_b.mutable_links()) {
    if (link.name() != "X") continue;
    link.set_name("X:2,S");
    link.mutable_version()->set_hlc(50);
    link.set_renamed(true);
    link.set_from_parent(kRootIno);
    link.set_from_name("X");
  }
  auto* gone = from_b.add_unlinked();
  gone->set_parent(kRootIno);
  gone->set_name("X");
  gone->mutable_version()->set_hlc(50);
  Applied a = t_.Apply(from_b);
  EXPECT_TRUE(a.changed);
  EXPECT_TRUE(a.rewrite) << "B's record still names T: the merged names must go out";
  EXPECT_FALSE(t_.Lookup(*root_, "T")) << "B's move brought back the name A removed";
  EXPECT_FALSE(t_.Lookup(*root_, "X"));
  EXPECT_EQ(t_.Lookup(*root_, "X:2,S"), f->ino);
  EXPECT_EQ(f->nlink, 1u);
  // The merged record, applied on B (which holds its own version), changes B the same way and
  // needs no further rewrite.
  InodeTable b;
  auto root = std::make_unique<Inode>();
  root->ino = kRootIno;
  root->mode = S_IFDIR | 0755;
  root->dir = std::make_unique<fs::Dir>();
  Inode* broot = b.Insert(std::move(root));
  b.Apply(from_b);
  proto::InodeRecord merged = InodeTable::ToRecord(*f, 65536);
  merged.mutable_version()->set_hlc(60);
  Applied on_b = b.Apply(merged);
  EXPECT_TRUE(on_b.changed);
  EXPECT_FALSE(on_b.rewrite);
  EXPECT_FALSE(b.Lookup(*broot, "T"));
  EXPECT_TRUE(b.Lookup(*broot, "X:2,S"));
}

TEST_F(InodeTableTest, TwoBoxesRenamingOneNameAtOnceLeaveOneName) {
  Inode* f = File();
  t_.AddLink(root_, "X", f, {10, 1});
  f->version = {10, 1};
  // This box flags it (version 30); another box flagged it otherwise at version 20.
  const InodeLink from{kRootIno, "X", {30, 1}};
  t_.RemoveLink(root_, "X", from.version);
  t_.AddLink(root_, "X:2,S", f, {30, 1}, &from);
  f->version = {30, 1};
  proto::InodeRecord other = Rec(*f, {35, 2});  // newer record, but an older rename
  other.clear_links();
  other.clear_unlinked();
  auto* l = other.add_links();
  l->set_parent(kRootIno);
  l->set_name("X:2,RS");
  l->mutable_version()->set_hlc(20);
  l->mutable_version()->set_box_id(2);
  l->set_renamed(true);
  l->set_from_parent(kRootIno);
  l->set_from_name("X");
  Applied a = t_.Apply(other);
  EXPECT_TRUE(a.changed);
  EXPECT_TRUE(t_.Lookup(*root_, "X:2,S")) << "the later rename keeps its name";
  EXPECT_FALSE(t_.Lookup(*root_, "X:2,RS"));
  EXPECT_FALSE(t_.Lookup(*root_, "X"));
  EXPECT_EQ(f->nlink, 1u);
  EXPECT_TRUE(a.rewrite);
}

TEST_F(InodeTableTest, RecordsOfEarlierVersionsReplaceTheNamesWhole) {
  Inode* f = File();
  t_.AddLink(root_, "a", f, {10, 1});
  t_.RemoveLink(root_, "gone", {12, 1});
  f->version = {10, 1};
  proto::InodeRecord old = Rec(*f, {30, 2});
  old.set_names_merge(false);
  old.clear_links();
  auto* l = old.add_links();
  l->set_parent(kRootIno);
  l->set_name("b");
  l->mutable_version()->set_hlc(30);
  Applied a = t_.Apply(old);
  EXPECT_FALSE(a.rewrite);
  EXPECT_FALSE(t_.Lookup(*root_, "a"));
  EXPECT_TRUE(t_.Lookup(*root_, "b"));
}

TEST_F(InodeTableTest, ReindexKeepsTheCookiesOfNamesThatStay) {
  Inode* a = File();
  Inode* b = File();
  t_.AddLink(root_, "a", a, {1, 1});
  t_.AddLink(root_, "b", b, {2, 1});
  const auto ca = root_->dir->by_name.at("a").cookie, cb = root_->dir->by_name.at("b").cookie;
  Inode* c = File();
  c->links.push_back(InodeLink{kRootIno, "c", {3, 1}});
  EXPECT_TRUE(t_.Reindex().empty());
  EXPECT_EQ(root_->dir->by_name.at("a").cookie, ca);
  EXPECT_EQ(root_->dir->by_name.at("b").cookie, cb);
  EXPECT_GT(root_->dir->by_name.at("c").cookie, std::max(ca, cb));
}

TEST_F(InodeTableTest, RecordsRoundTripWithTimesBeyond2262) {
  Inode* f = File();
  t_.AddLink(root_, "f", f, {1, 1});
  f->mtime = Timestamp{13569465600, 123};  // 2400-01-01
  f->atime = Timestamp{-1, 999999999};     // just before 1970
  f->chunks = {crypto::ObjectId{}, crypto::RandomObjectId()};
  auto back = InodeTable::FromRecord(InodeTable::ToRecord(*f, 65536));
  EXPECT_EQ(back->mtime, f->mtime);
  EXPECT_EQ(back->atime, f->atime);
  EXPECT_EQ(back->chunks, f->chunks);
  EXPECT_EQ(back->links, f->links);
  // A record written with nanoseconds only (before the separate fields).
  proto::InodeRecord old = InodeTable::ToRecord(*f, 65536);
  old.clear_mtime_sec();
  old.clear_mtime_nsec();
  old.set_mtime_ns(-5);
  EXPECT_EQ(InodeTable::FromRecord(old)->mtime, (Timestamp{-1, 999999995}));
}

}  // namespace
}  // namespace coffer::fs
