// Tests for pop3d/maildrop.cc: scanning, UIDLs (Maildir and dovecot-uidlist), seen marking,
// UPDATE-state deletion, locking, and messages renamed by someone else meanwhile.
#include "pop3d/maildrop.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/fd.h"
#include "tests/pop3d/test_util.h"

namespace coffer::pop3d {
namespace {

using testing::ListNames;
using testing::MakeMaildir;
using testing::ReadText;
using testing::TempDir;
using testing::WriteText;

class MaildropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    md_ = dir_.path() + "/Maildir";
    MakeMaildir(md_);
    WriteText(md_ + "/new/1700000002.M2P9.host", "Subject: b\n\nbody b\n");
    WriteText(md_ + "/cur/1700000001.M1P9.host:2,F", "Subject: a\r\n\r\nbody a\r\n");
    WriteText(md_ + "/new/1700000003.M3P9.host", "Subject: c\n\nc\n");
    WriteText(md_ + "/tmp/1700000004.M4P9.host", "not delivered yet\n");
    WriteText(md_ + "/new/.hidden", "ignored\n");
  }
  Maildrop::OpenResult Open(MaildropOptions o = {}) {
    return Maildrop::Open(md_, o, &sizes_, locks_);
  }

  TempDir dir_;
  std::string md_;
  SizeCache sizes_;
  MaildropLocks locks_;
};

TEST_F(MaildropTest, ScansNewAndCurInNameOrder) {
  auto r = Open();
  ASSERT_EQ(r.status, OpenStatus::kOk) << r.error;
  Maildrop& m = *r.maildrop;
  ASSERT_EQ(m.Count(), 3u);
  EXPECT_EQ(m.At(0).uidl, "1700000001.M1P9.host");
  EXPECT_EQ(m.At(1).uidl, "1700000002.M2P9.host");
  EXPECT_EQ(m.At(2).uidl, "1700000003.M3P9.host");
  EXPECT_EQ(m.At(0).size, 22u);
  EXPECT_EQ(m.At(1).size, 22u);
}

TEST_F(MaildropTest, SecondOpenIsInUseUntilFirstCloses) {
  auto first = Open();
  ASSERT_EQ(first.status, OpenStatus::kOk);
  EXPECT_EQ(Open().status, OpenStatus::kInUse);
  first.maildrop.reset();
  EXPECT_EQ(Open().status, OpenStatus::kOk);
}

TEST_F(MaildropTest, MissingMaildirIsCreated) {
  std::string other = dir_.path() + "/a/b/Maildir";
  auto r = Maildrop::Open(other, {}, nullptr, locks_);
  ASSERT_EQ(r.status, OpenStatus::kOk) << r.error;
  EXPECT_EQ(r.maildrop->Count(), 0u);
  EXPECT_TRUE(std::filesystem::is_directory(other + "/tmp"));
}

TEST_F(MaildropTest, MissingMaildirWithoutCreateIsAnError) {
  MaildropOptions o;
  o.create = false;
  auto r = Maildrop::Open(dir_.path() + "/nope", o, nullptr, locks_);
  EXPECT_EQ(r.status, OpenStatus::kError);
  EXPECT_FALSE(r.error.empty());
}

TEST_F(MaildropTest, MarkSeenMovesNewToCurAndAddsFlag) {
  auto r = Open();
  Maildrop& m = *r.maildrop;
  m.MarkSeen(1);  // new/1700000002...
  m.MarkSeen(0);  // cur/...:2,F
  EXPECT_EQ(ListNames(md_ + "/cur"),
            (std::vector<std::string>{"1700000001.M1P9.host:2,FS", "1700000002.M2P9.host:2,S"}));
  EXPECT_EQ(ListNames(md_ + "/new"), (std::vector<std::string>{".hidden", "1700000003.M3P9.host"}));
  m.MarkSeen(0);  // already seen: unchanged
  EXPECT_EQ(m.At(0).filename, "1700000001.M1P9.host:2,FS");
}

TEST_F(MaildropTest, MarkSeenCanBeTurnedOff) {
  MaildropOptions o;
  o.mark_seen = false;
  auto r = Open(o);
  r.maildrop->MarkSeen(1);
  EXPECT_EQ(ListNames(md_ + "/new").size(), 3u);
}

TEST_F(MaildropTest, DeleteRemovesOnlyTheGivenMessages) {
  auto r = Open();
  EXPECT_EQ(r.maildrop->Delete({0, 2}).failed, 0u);
  EXPECT_EQ(ListNames(md_ + "/cur"), std::vector<std::string>{});
  EXPECT_EQ(ListNames(md_ + "/new"), (std::vector<std::string>{".hidden", "1700000002.M2P9.host"}));
  EXPECT_EQ(ListNames(md_ + "/tmp").size(), 1u);
}

TEST_F(MaildropTest, MessageRenamedByOthersIsFoundAgain) {
  auto r = Open();
  Maildrop& m = *r.maildrop;
  // An IMAP server marks message 2 as read meanwhile.
  std::filesystem::rename(md_ + "/new/1700000002.M2P9.host", md_ + "/cur/1700000002.M2P9.host:2,RS");
  UniqueFd fd = m.OpenMessage(1);
  ASSERT_TRUE(fd.Valid());
  EXPECT_EQ(ReadAllFd(fd.Get(), 1000, "m"), "Subject: b\n\nbody b\n");
  std::filesystem::rename(md_ + "/cur/1700000002.M2P9.host:2,RS", md_ + "/cur/1700000002.M2P9.host:2,T");
  EXPECT_EQ(m.Delete({1}).removed, 1u);
  EXPECT_FALSE(std::filesystem::exists(md_ + "/cur/1700000002.M2P9.host:2,T"));
}

TEST_F(MaildropTest, VanishedMessageIsNotAnErrorForDelete) {
  auto r = Open();
  std::filesystem::remove(md_ + "/new/1700000003.M3P9.host");
  EXPECT_FALSE(r.maildrop->OpenMessage(2).Valid());
  DeleteResult d = r.maildrop->Delete({2});
  EXPECT_EQ(d.removed, 1u);
  EXPECT_EQ(d.failed, 0u);
}

TEST_F(MaildropTest, SizeCacheIsUsedForUnchangedFiles) {
  auto r = Open();
  r.maildrop.reset();
  struct stat st;
  ASSERT_EQ(::stat((md_ + "/new/1700000003.M3P9.host").c_str(), &st), 0);
  EXPECT_EQ(sizes_.Get(st), 17u);
  sizes_.Put(st, 999);  // a cached value wins over reading the file
  auto again = Open();
  EXPECT_EQ(again.maildrop->At(2).size, 999u);
}

TEST_F(MaildropTest, OddUniqueNamesGetAHashedUidl) {
  WriteText(md_ + "/new/" + std::string(100, 'x'), "a\n");
  auto r = Open();
  ASSERT_EQ(r.maildrop->Count(), 4u);
  EXPECT_EQ(r.maildrop->At(3).uidl.size(), 32u);
}

TEST(DovecotUidlistTest, Version3) {
  auto m = ParseDovecotUidlist(
      "3 V1234567890 N5 Gabcdef\n"
      "1 :1700000001.M1P9.host:2,S\n"
      "2 W100 S98 :1700000002.M2P9.host\n"
      "4 P00000abc :1700000003.M3P9.host\n"
      "garbage line\n");
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m["1700000001.M1P9.host"], "00000001499602D2");
  EXPECT_EQ(m["1700000002.M2P9.host"], "00000002499602D2");
  EXPECT_EQ(m["1700000003.M3P9.host"], "00000abc");
}

TEST(DovecotUidlistTest, Version1AndBadHeader) {
  auto m = ParseDovecotUidlist("1 7 3\n1 1700000001.M1P9.host:2,S\n2 x\n");
  EXPECT_EQ(m["1700000001.M1P9.host"], "0000000100000007");
  EXPECT_TRUE(ParseDovecotUidlist("2 nonsense\n1 a\n").empty());
  EXPECT_TRUE(ParseDovecotUidlist("").empty());
}

TEST_F(MaildropTest, DovecotUidlModeUsesUidlistAndItsOrder) {
  WriteText(md_ + "/dovecot-uidlist",
            "3 V1600000000 N9 G0\n"
            "7 :1700000003.M3P9.host\n"
            "8 :1700000001.M1P9.host:2,F\n");
  MaildropOptions o;
  o.uidl = UidlMode::kDovecot;
  auto r = Open(o);
  ASSERT_EQ(r.status, OpenStatus::kOk);
  Maildrop& m = *r.maildrop;
  ASSERT_EQ(m.Count(), 3u);
  EXPECT_EQ(m.At(0).uidl, "000000075F5E1000");
  EXPECT_EQ(m.At(0).unique, "1700000003.M3P9.host");
  EXPECT_EQ(m.At(1).uidl, "000000085F5E1000");
  EXPECT_EQ(m.At(2).uidl, "1700000002.M2P9.host");  // unknown to Dovecot
}

// pop3.shared_store: the lease beside the local lock (lease_test.cc covers the lease itself).
class SharedMaildropTest : public MaildropTest {
 protected:
  MaildropOptions Shared() {
    MaildropOptions o;
    o.shared_store = true;
    o.lease_clock = &clock_;
    return o;
  }
  // Open and settle on "this box".
  std::unique_ptr<Maildrop> OpenSettled() {
    auto r = Open(Shared());
    EXPECT_EQ(r.status, OpenStatus::kSettling) << r.error;
    clock_.Advance(Shared().lease.settle);
    auto settled = Maildrop::Settle(std::move(r.maildrop), &sizes_);
    EXPECT_EQ(settled.status, OpenStatus::kOk) << settled.error;
    return std::move(settled.maildrop);
  }
  std::string LeaseFile() const { return md_ + "/" + Lease::kFileName; }

  testing::FakeLeaseClock clock_;
  MaildropLocks other_box_;  // another box's process
};

TEST_F(SharedMaildropTest, OpenWritesTheLeaseAndScansOnlyAfterSettling) {
  auto r = Open(Shared());
  ASSERT_EQ(r.status, OpenStatus::kSettling) << r.error;
  ASSERT_TRUE(r.maildrop);
  EXPECT_EQ(r.maildrop->Count(), 0u);
  EXPECT_EQ(r.settle_until, clock_.Now() + std::chrono::milliseconds(3000));
  ASSERT_TRUE(std::filesystem::exists(LeaseFile()));
  // Another session on this box: the local lock; on another box: the lease.
  EXPECT_EQ(Open(Shared()).status, OpenStatus::kInUse);
  EXPECT_EQ(Maildrop::Open(md_, Shared(), nullptr, other_box_).status, OpenStatus::kInUse);
  // Not before the settle time.
  auto early = Maildrop::Settle(std::move(r.maildrop), &sizes_);
  EXPECT_EQ(early.status, OpenStatus::kError);
  EXPECT_EQ(early.err, EINVAL);
  EXPECT_FALSE(std::filesystem::exists(LeaseFile()));  // the failed login released it

  auto m = OpenSettled();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->Count(), 3u);
  EXPECT_TRUE(m->lease()->held());
  EXPECT_EQ(Maildrop::Open(md_, Shared(), nullptr, other_box_).status, OpenStatus::kInUse);
  m.reset();
  EXPECT_FALSE(std::filesystem::exists(LeaseFile()));
  EXPECT_EQ(Maildrop::Open(md_, Shared(), nullptr, other_box_).status, OpenStatus::kSettling);
}

TEST_F(SharedMaildropTest, SettleFindsAnotherBoxsLease) {
  auto r = Open(Shared());
  ASSERT_EQ(r.status, OpenStatus::kSettling);
  testing::WriteOtherLease(md_, clock_.WallMs() + 60000);
  clock_.Advance(std::chrono::seconds(3));
  auto settled = Maildrop::Settle(std::move(r.maildrop), &sizes_);
  EXPECT_EQ(settled.status, OpenStatus::kInUse);
  EXPECT_FALSE(settled.maildrop);
  EXPECT_TRUE(std::filesystem::exists(LeaseFile()));  // the winner's
  EXPECT_EQ(Open().status, OpenStatus::kOk);          // the local lock was released
}

TEST_F(SharedMaildropTest, DeleteNothingOnceTheLeaseIsLost) {
  auto m = OpenSettled();
  ASSERT_TRUE(m);
  testing::WriteOtherLease(md_, clock_.WallMs() + 60000);
  EXPECT_FALSE(m->lease_lost());  // nobody looked yet
  DeleteResult d = m->Delete({0, 1, 2});
  EXPECT_TRUE(d.lease_lost);
  EXPECT_EQ(d.removed, 0u);
  EXPECT_EQ(d.failed, 3u);
  EXPECT_TRUE(m->lease_lost());
  EXPECT_EQ(ListNames(md_ + "/cur").size(), 1u);
  EXPECT_EQ(ListNames(md_ + "/new").size(), 3u);  // two messages and .hidden
  m.reset();
  EXPECT_TRUE(std::filesystem::exists(LeaseFile()));  // not ours: left alone
}

TEST_F(SharedMaildropTest, DeleteStopsWhenTheLeaseEndsMidway) {
  auto m = OpenSettled();
  ASSERT_TRUE(m);
  // Verify, the first unlink's Keep, then the store stalls for a minute before the second.
  clock_.steps = {std::chrono::milliseconds(0), std::chrono::milliseconds(0),
                  std::chrono::seconds(60)};
  DeleteResult d = m->Delete({0, 1, 2});
  EXPECT_TRUE(d.lease_lost);
  EXPECT_EQ(d.removed, 1u);
  EXPECT_EQ(d.failed, 2u);
  EXPECT_EQ(ListNames(md_ + "/cur"), std::vector<std::string>{});  // message 1 is gone
  EXPECT_EQ(ListNames(md_ + "/new").size(), 3u);
}

TEST_F(SharedMaildropTest, DeleteRenewsALongRun) {
  auto m = OpenSettled();
  ASSERT_TRUE(m);
  const std::string before = ReadText(LeaseFile());
  // 25 s pass before the first unlink: a renewal is due (every 20 s) and made.
  clock_.steps = {std::chrono::milliseconds(0), std::chrono::seconds(25)};
  DeleteResult d = m->Delete({0, 1, 2});
  EXPECT_FALSE(d.lease_lost);
  EXPECT_EQ(d.removed, 3u);
  EXPECT_NE(ReadText(LeaseFile()), before);
  EXPECT_TRUE(m->lease()->held());
}

TEST(MaildirUniqueNameTest, StripsInfo) {
  EXPECT_EQ(MaildirUniqueName("123.abc:2,S"), "123.abc");
  EXPECT_EQ(MaildirUniqueName("123.abc"), "123.abc");
}

}  // namespace
}  // namespace coffer::pop3d
