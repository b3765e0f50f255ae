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
  EXPECT_EQ(r.maildrop->Delete({0, 2}), 0u);
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
  EXPECT_EQ(m.Delete({1}), 0u);
  EXPECT_FALSE(std::filesystem::exists(md_ + "/cur/1700000002.M2P9.host:2,T"));
}

TEST_F(MaildropTest, VanishedMessageIsNotAnErrorForDelete) {
  auto r = Open();
  std::filesystem::remove(md_ + "/new/1700000003.M3P9.host");
  EXPECT_FALSE(r.maildrop->OpenMessage(2).Valid());
  EXPECT_EQ(r.maildrop->Delete({2}), 0u);
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

TEST(MaildirUniqueNameTest, StripsInfo) {
  EXPECT_EQ(MaildirUniqueName("123.abc:2,S"), "123.abc");
  EXPECT_EQ(MaildirUniqueName("123.abc"), "123.abc");
}

}  // namespace
}  // namespace coffer::pop3d
