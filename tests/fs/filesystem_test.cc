// Unit tests of the cofferfs core (fs/filesystem.h), driven without a mount: namespace semantics,
// file I/O at arbitrary offsets, persistence across reopen, key checks, no plaintext in the store.
#include "fs/filesystem.h"

#include <fcntl.h>
#include <linux/fs.h>

#include <set>

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/fd.h"
#include "common/keyfile.h"
#include "tests/support/subprocess.h"

namespace coffer::fs {
namespace {

class FilesystemTest : public ::testing::Test {
 protected:
  FilesystemTest() : keys_(keyfile::KeySet::Generate(1700000000)) {}

  // Namespace changes commit lazily here (each durable commit costs two fsyncs); the tests that
  // are about durability say so.
  static Options Lazy() {
    Options o;
    o.sync_namespace = false;
    return o;
  }
  std::unique_ptr<Filesystem> Open(const keyfile::KeySet& keys, Options options = Lazy()) {
    options.statfs_path = dir_.path();
    return std::make_unique<Filesystem>(LmdbStore::Open(dir_ / "state"), nullptr,
                                        keys.MakeKeyring(), keys.store_fingerprint(), options);
  }
  void Reopen() {
    fs_.reset();
    fs_ = Open(keys_);
  }
  void SetUp() override { fs_ = Open(keys_); }

  std::uint64_t Ino(std::uint64_t parent, const std::string& name) {
    struct stat st {};
    EXPECT_EQ(fs_->Lookup(parent, name, &st), 0) << name;
    return st.st_ino;
  }
  std::uint64_t MakeFile(std::uint64_t parent, const std::string& name,
                         const std::string& content) {
    struct stat st {};
    std::uint64_t fh = 0;
    EXPECT_EQ(fs_->Create(parent, name, 0644, O_WRONLY, ctx_, &st, &fh), 0);
    std::size_t n = 0;
    EXPECT_EQ(fs_->Write(st.st_ino, fh, 0, content, &n), 0);
    EXPECT_EQ(n, content.size());
    EXPECT_EQ(fs_->Release(st.st_ino, fh), 0);
    return st.st_ino;
  }
  std::string ReadAll(std::uint64_t ino) {
    struct stat st {};
    EXPECT_EQ(fs_->GetAttr(ino, &st), 0);
    std::uint64_t fh = 0;
    EXPECT_EQ(fs_->Open(ino, O_RDONLY, &fh), 0);
    std::string out;
    EXPECT_EQ(fs_->Read(ino, fh, 0, static_cast<std::size_t>(st.st_size) + 10, &out), 0);
    fs_->Release(ino, fh);
    return out;
  }
  std::vector<std::string> List(std::uint64_t dir) {
    std::vector<std::string> names;
    EXPECT_EQ(fs_->ReadDir(dir, 0, [&](const DirEntryOut& e) {
      names.push_back(e.name);
      return true;
    }), 0);
    return names;
  }

  testing::TempDir dir_;
  keyfile::KeySet keys_;
  Context ctx_{1000, 1000, {}};
  std::unique_ptr<Filesystem> fs_;
};

TEST_F(FilesystemTest, CreateWriteReadAndPersist) {
  struct stat st {};
  ASSERT_EQ(fs_->MkDir(kRootIno, "Maildir", 0700, ctx_, &st), 0);
  std::uint64_t md = st.st_ino;
  std::uint64_t f = MakeFile(md, "1700000000.M1P2.host,S=5:2,S", "hello");
  EXPECT_EQ(ReadAll(f), "hello");
  Reopen();
  EXPECT_EQ(Ino(kRootIno, "Maildir"), md);
  EXPECT_EQ(Ino(md, "1700000000.M1P2.host,S=5:2,S"), f);
  EXPECT_EQ(ReadAll(f), "hello");
  ASSERT_EQ(fs_->GetAttr(f, &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_mode, S_IFREG | 0644u);
}

TEST_F(FilesystemTest, CreateExclusiveAndErrors) {
  struct stat st {};
  std::uint64_t fh;
  MakeFile(kRootIno, "a", "x");
  EXPECT_EQ(fs_->Create(kRootIno, "a", 0644, O_EXCL, ctx_, &st, &fh), EEXIST);
  EXPECT_EQ(fs_->Lookup(kRootIno, "missing", &st), ENOENT);
  EXPECT_EQ(fs_->Create(kRootIno, std::string(256, 'n'), 0644, 0, ctx_, &st, &fh), ENAMETOOLONG);
  EXPECT_EQ(fs_->Create(kRootIno, std::string(255, 'n'), 0644, 0, ctx_, &st, &fh), 0);
  EXPECT_EQ(fs_->MkDir(Ino(kRootIno, "a"), "d", 0755, ctx_, &st), ENOTDIR);
  EXPECT_EQ(fs_->RmDir(kRootIno, "a"), ENOTDIR);
}

TEST_F(FilesystemTest, SparseAndOffsetWrites) {
  struct stat st {};
  std::uint64_t fh = 0;
  ASSERT_EQ(fs_->Create(kRootIno, "sparse", 0600, O_RDWR, ctx_, &st, &fh), 0);
  std::uint64_t ino = st.st_ino;
  std::size_t n;
  ASSERT_EQ(fs_->Write(ino, fh, 1000000, "tail", &n), 0);
  ASSERT_EQ(fs_->Write(ino, fh, 10, "head", &n), 0);
  ASSERT_EQ(fs_->Write(ino, fh, 65534, "span", &n), 0);  // across a chunk boundary
  std::string out;
  ASSERT_EQ(fs_->Read(ino, fh, 0, 2000000, &out), 0);
  ASSERT_EQ(out.size(), 1000004u);
  std::string expect(1000004, '\0');
  expect.replace(1000000, 4, "tail");
  expect.replace(10, 4, "head");
  expect.replace(65534, 4, "span");
  EXPECT_EQ(out, expect);
  fs_->Release(ino, fh);
  Reopen();
  EXPECT_EQ(ReadAll(ino), expect);
}

TEST_F(FilesystemTest, TruncateShrinksAndZeroFillsOnRegrow) {
  std::string data(200000, 'x');
  std::uint64_t ino = MakeFile(kRootIno, "t", data);
  struct stat st {};
  SetAttrRequest r;
  r.size = 70000;
  ASSERT_EQ(fs_->SetAttr(ino, r, &st), 0);
  EXPECT_EQ(st.st_size, 70000);
  r.size = 100000;
  ASSERT_EQ(fs_->SetAttr(ino, r, &st), 0);
  std::string out = ReadAll(ino);
  EXPECT_EQ(out, std::string(70000, 'x') + std::string(30000, '\0'));
  Reopen();
  EXPECT_EQ(ReadAll(ino), out);
}

TEST_F(FilesystemTest, AppendFlagWritesAtEnd) {
  std::uint64_t ino = MakeFile(kRootIno, "log", "abc");
  std::uint64_t fh = 0;
  ASSERT_EQ(fs_->Open(ino, O_WRONLY | O_APPEND, &fh), 0);
  std::size_t n;
  ASSERT_EQ(fs_->Write(ino, fh, 0, "def", &n), 0);
  fs_->Release(ino, fh);
  EXPECT_EQ(ReadAll(ino), "abcdef");
}

TEST_F(FilesystemTest, LinkUnlinkAndNlink) {
  struct stat st {};
  ASSERT_EQ(fs_->MkDir(kRootIno, "tmp", 0700, ctx_, &st), 0);
  std::uint64_t tmp = st.st_ino;
  ASSERT_EQ(fs_->MkDir(kRootIno, "new", 0700, ctx_, &st), 0);
  std::uint64_t nw = st.st_ino;
  std::uint64_t f = MakeFile(tmp, "m", "mail");
  ASSERT_EQ(fs_->Link(f, nw, "m:2,", &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  EXPECT_EQ(st.st_ino, f);
  EXPECT_EQ(fs_->Link(f, nw, "m:2,", &st), EEXIST);
  ASSERT_EQ(fs_->Unlink(tmp, "m"), 0);
  ASSERT_EQ(fs_->GetAttr(f, &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_EQ(fs_->Link(tmp, nw, "dirlink", &st), EPERM);
  EXPECT_EQ(fs_->Unlink(kRootIno, "tmp"), EISDIR);
  Reopen();
  EXPECT_EQ(Ino(nw, "m:2,"), f);
  EXPECT_EQ(ReadAll(f), "mail");
}

TEST_F(FilesystemTest, UnlinkedOpenFileStaysReadable) {
  std::uint64_t ino = MakeFile(kRootIno, "gone", "still here");
  std::uint64_t fh = 0;
  ASSERT_EQ(fs_->Open(ino, O_RDONLY, &fh), 0);
  ASSERT_EQ(fs_->Unlink(kRootIno, "gone"), 0);
  std::string out;
  ASSERT_EQ(fs_->Read(ino, fh, 0, 100, &out), 0);
  EXPECT_EQ(out, "still here");
  std::size_t before = fs_->InodeCount();
  fs_->Release(ino, fh);
  fs_->Forget(ino, 1);  // the kernel's lookup from Create
  EXPECT_EQ(fs_->InodeCount(), before - 1);
}

TEST_F(FilesystemTest, OrphanPurgedAtNextOpen) {
  std::uint64_t ino = MakeFile(kRootIno, "orphan", std::string(100000, 'o'));
  std::uint64_t fh = 0;
  ASSERT_EQ(fs_->Open(ino, O_RDONLY, &fh), 0);
  ASSERT_EQ(fs_->Unlink(kRootIno, "orphan"), 0);
  std::size_t with_orphan = fs_->InodeCount();
  Reopen();  // as if the daemon stopped with the file still open
  EXPECT_EQ(fs_->InodeCount(), with_orphan - 1);
  struct stat st {};
  EXPECT_EQ(fs_->GetAttr(ino, &st), ENOENT);
}

TEST_F(FilesystemTest, RenameSemantics) {
  struct stat st {};
  std::uint64_t a = MakeFile(kRootIno, "a", "A");
  std::uint64_t b = MakeFile(kRootIno, "b", "B");
  EXPECT_EQ(fs_->Rename(kRootIno, "a", kRootIno, "b", RENAME_NOREPLACE), EEXIST);
  ASSERT_EQ(fs_->Rename(kRootIno, "a", kRootIno, "b", 0), 0);
  EXPECT_EQ(Ino(kRootIno, "b"), a);
  EXPECT_EQ(fs_->Lookup(kRootIno, "a", &st), ENOENT);
  EXPECT_EQ(fs_->GetAttr(b, &st), 0);  // the kernel still holds a lookup
  EXPECT_EQ(st.st_nlink, 0u);
  ASSERT_EQ(fs_->MkDir(kRootIno, "d", 0755, ctx_, &st), 0);
  std::uint64_t d = st.st_ino;
  ASSERT_EQ(fs_->MkDir(d, "sub", 0755, ctx_, &st), 0);
  EXPECT_EQ(fs_->Rename(kRootIno, "d", d, "x", 0), EINVAL);
  EXPECT_EQ(fs_->Rename(kRootIno, "b", kRootIno, "d", 0), EISDIR);
  MakeFile(d, "f", "");
  ASSERT_EQ(fs_->MkDir(kRootIno, "e", 0755, ctx_, &st), 0);
  EXPECT_EQ(fs_->Rename(kRootIno, "e", kRootIno, "d", 0), ENOTEMPTY);
  ASSERT_EQ(fs_->Rename(kRootIno, "d", kRootIno, "e", 0), 0);  // over an empty directory
  EXPECT_EQ(Ino(kRootIno, "e"), d);
  ASSERT_EQ(fs_->GetAttr(kRootIno, &st), 0);
  EXPECT_EQ(st.st_nlink, 3u);
  // Exchange.
  std::uint64_t c = MakeFile(kRootIno, "c", "C");
  ASSERT_EQ(fs_->Rename(kRootIno, "b", kRootIno, "c", RENAME_EXCHANGE), 0);
  EXPECT_EQ(Ino(kRootIno, "b"), c);
  EXPECT_EQ(Ino(kRootIno, "c"), a);
}

TEST_F(FilesystemTest, RmDirAndNlink) {
  struct stat st {};
  ASSERT_EQ(fs_->MkDir(kRootIno, ".Sent", 0700, ctx_, &st), 0);
  std::uint64_t sent = st.st_ino;
  ASSERT_EQ(fs_->MkDir(sent, "cur", 0700, ctx_, &st), 0);
  ASSERT_EQ(fs_->GetAttr(sent, &st), 0);
  EXPECT_EQ(st.st_nlink, 3u);
  EXPECT_EQ(fs_->RmDir(kRootIno, ".Sent"), ENOTEMPTY);
  ASSERT_EQ(fs_->RmDir(sent, "cur"), 0);
  ASSERT_EQ(fs_->RmDir(kRootIno, ".Sent"), 0);
  ASSERT_EQ(fs_->GetAttr(kRootIno, &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
}

TEST_F(FilesystemTest, DirectoryMtimeMovesOnEveryChange) {
  struct stat st {};
  ASSERT_EQ(fs_->GetAttr(kRootIno, &st), 0);
  timespec last = st.st_mtim;
  for (int i = 0; i < 20; ++i) {
    MakeFile(kRootIno, "f" + std::to_string(i), "");
    ASSERT_EQ(fs_->GetAttr(kRootIno, &st), 0);
    EXPECT_TRUE(st.st_mtim.tv_sec > last.tv_sec ||
                (st.st_mtim.tv_sec == last.tv_sec && st.st_mtim.tv_nsec > last.tv_nsec));
    last = st.st_mtim;
  }
}

TEST_F(FilesystemTest, SetAttrModeOwnerTimes) {
  std::uint64_t f = MakeFile(kRootIno, "f", "x");
  SetAttrRequest r;
  r.mode = 0640;
  r.uid = 8;
  r.gid = 12;
  r.mtime = timespec{1234567890, 5};
  struct stat st {};
  ASSERT_EQ(fs_->SetAttr(f, r, &st), 0);
  Reopen();
  ASSERT_EQ(fs_->GetAttr(f, &st), 0);
  EXPECT_EQ(st.st_mode, S_IFREG | 0640u);
  EXPECT_EQ(st.st_uid, 8u);
  EXPECT_EQ(st.st_gid, 12u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1234567890);
  EXPECT_EQ(st.st_mtim.tv_nsec, 5);
}

TEST_F(FilesystemTest, SymlinkRoundTrip) {
  struct stat st {};
  ASSERT_EQ(fs_->Symlink("../target", kRootIno, "l", ctx_, &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  std::string t;
  Reopen();
  ASSERT_EQ(fs_->ReadLink(st.st_ino, &t), 0);
  EXPECT_EQ(t, "../target");
}

TEST_F(FilesystemTest, ReadDirResumesWithoutSkipsOrRepeats) {
  for (int i = 0; i < 100; ++i) MakeFile(kRootIno, "keep" + std::to_string(i), "");
  std::set<std::string> seen;
  std::uint64_t offset = 0;
  int round = 0;
  while (true) {
    int got = 0;
    std::uint64_t next = offset;
    fs_->ReadDir(kRootIno, offset, [&](const DirEntryOut& e) {
      if (got == 7) return false;
      EXPECT_TRUE(seen.insert(e.name).second) << "repeated " << e.name;
      next = e.next_offset;
      ++got;
      return true;
    });
    if (got == 0) break;
    offset = next;
    // Churn between batches: creates, deletes, and renames over kept names. (Bounded: the scan
    // may see entries created behind it, and would chase them forever.)
    if (round >= 40) continue;
    MakeFile(kRootIno, "tmp" + std::to_string(round), "");
    fs_->Unlink(kRootIno, "tmp" + std::to_string(round));
    MakeFile(kRootIno, "new" + std::to_string(round), "");
    MakeFile(kRootIno, "over", "");
    fs_->Rename(kRootIno, "over", kRootIno, "keep" + std::to_string(round % 100), 0);
    ++round;
  }
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(seen.count("keep" + std::to_string(i))) << i;
}

TEST_F(FilesystemTest, ReadDirPlusGivesAttributesAndCountsTakenEntriesAsLookups) {
  const std::uint64_t a = MakeFile(kRootIno, "a", "hello");
  const std::uint64_t b = MakeFile(kRootIno, "b", "");
  fs_->Forget(a, 1);  // the lookups of the creates
  fs_->Forget(b, 1);
  std::map<std::string, struct stat> seen;
  ASSERT_EQ(fs_->ReadDirPlus(kRootIno, 0, [&](const DirEntryOut& e) {
    if (e.name == "b") return false;  // did not fit: not taken, not a lookup
    seen[e.name] = e.attr;
    return true;
  }), 0);
  EXPECT_EQ(seen["."].st_ino, 0u);  // "." and ".." carry no attributes (never looked up)
  EXPECT_EQ(seen[".."].st_ino, 0u);
  ASSERT_TRUE(seen.count("a"));
  EXPECT_EQ(seen["a"].st_ino, a);
  EXPECT_EQ(seen["a"].st_size, 5);
  EXPECT_EQ(seen["a"].st_mode, S_IFREG | 0644u);
  // Unlinked, "a" lives on while the kernel holds the entry readdirplus gave it; "b" does not.
  ASSERT_EQ(fs_->Unlink(kRootIno, "a"), 0);
  ASSERT_EQ(fs_->Unlink(kRootIno, "b"), 0);
  struct stat st {};
  EXPECT_EQ(fs_->GetAttr(a, &st), 0);
  EXPECT_EQ(fs_->GetAttr(b, &st), ENOENT);
  fs_->Forget(a, 1);
  EXPECT_EQ(fs_->GetAttr(a, &st), ENOENT);
}

TEST_F(FilesystemTest, RefusesAnotherKey) {
  MakeFile(kRootIno, "x", "y");
  fs_.reset();
  auto other = keyfile::KeySet::Generate(1700000001);
  try {
    Open(other);
    FAIL() << "opened with another key";
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), EACCES);
    EXPECT_NE(std::string(e.what()).find("another key"), std::string::npos);
  }
  fs_ = Open(keys_);
  EXPECT_EQ(ReadAll(Ino(kRootIno, "x")), "y");
}

TEST_F(FilesystemTest, SecondOpenOfStateDirIsBusy) {
  try {
    Open(keys_);
    FAIL() << "opened a STATE_DIR twice";
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), EBUSY);
  }
}

TEST_F(FilesystemTest, NoPlaintextInStateDir) {
  struct stat st {};
  ASSERT_EQ(fs_->MkDir(kRootIno, "SecretFolderName", 0700, ctx_, &st), 0);
  std::string body;
  for (int i = 0; i < 3000; ++i) body += "Subject: TopSecretSubjectLine\n";
  MakeFile(st.st_ino, "SecretMessageName:2,S", body);
  ASSERT_EQ(fs_->Symlink("SecretLinkTarget", kRootIno, "SecretLinkName", ctx_, &st), 0);
  fs_.reset();
  std::string data = ReadFile(dir_ / "state/data.mdb", std::size_t{1} << 30);
  for (const char* needle : {"SecretFolderName", "SecretMessageName", "TopSecretSubjectLine",
                             "SecretLinkTarget", "SecretLinkName"})
    EXPECT_EQ(data.find(needle), std::string::npos) << needle;
}

TEST_F(FilesystemTest, LargeFileStreamsInChunks) {
  struct stat st {};
  std::uint64_t fh = 0;
  ASSERT_EQ(fs_->Create(kRootIno, "big", 0600, O_WRONLY, ctx_, &st, &fh), 0);
  std::string block(128 << 10, '\0');
  for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>(i * 7);
  std::size_t n;
  for (int i = 0; i < 80; ++i) {  // 10 MiB
    block[0] = static_cast<char>(i);
    ASSERT_EQ(fs_->Write(st.st_ino, fh, static_cast<std::uint64_t>(i) * block.size(), block, &n),
              0);
  }
  ASSERT_EQ(fs_->Fsync(st.st_ino, false), 0);
  fs_->Release(st.st_ino, fh);
  Reopen();
  ASSERT_EQ(fs_->Open(st.st_ino, O_RDONLY, &fh), 0);
  std::string out;
  ASSERT_EQ(fs_->Read(st.st_ino, fh, 79 * block.size(), block.size(), &out), 0);
  block[0] = 79;
  EXPECT_EQ(out, block);
}

TEST_F(FilesystemTest, BackgroundCommitterMakesFsyncDurable) {
  fs_.reset();
  Options o = Lazy();
  o.commit_interval_ms = 10000;
  fs_ = Open(keys_, o);
  fs_->Start();
  std::uint64_t before = fs_->pipeline().status().local_commits;
  std::uint64_t f = MakeFile(kRootIno, "f", "data");
  ASSERT_EQ(fs_->Fsync(f, false), 0);
  EXPECT_GT(fs_->pipeline().status().local_commits, before);
  ASSERT_EQ(fs_->FsyncDir(kRootIno), 0);
}

TEST_F(FilesystemTest, SyncNamespaceCommitsBeforeReturning) {
  fs_.reset();
  Options o;
  o.sync_namespace = true;
  o.commit_interval_ms = 60000;
  fs_ = Open(keys_, o);
  fs_->Start();
  std::uint64_t before = fs_->pipeline().status().local_commits;
  struct stat st {};
  ASSERT_EQ(fs_->MkDir(kRootIno, "new", 0700, ctx_, &st), 0);
  EXPECT_GT(fs_->pipeline().status().local_commits, before);
}

TEST_F(FilesystemTest, StatFsReportsNameMax) {
  struct statvfs sv {};
  ASSERT_EQ(fs_->StatFs(&sv), 0);
  EXPECT_EQ(sv.f_namemax, 255u);
  EXPECT_GT(sv.f_blocks, 0u);
}

}  // namespace
}  // namespace coffer::fs
