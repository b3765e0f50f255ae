// UniqueFd ownership and the whole-file helpers (bounded reads, atomic durable replace).
#include "common/fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/support/subprocess.h"

namespace coffer {
namespace {

using coffer::testing::FileExists;
using coffer::testing::FileMode;
using coffer::testing::ReadTextFile;
using coffer::testing::TempDir;
using coffer::testing::WriteTextFile;

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1; }

TEST(UniqueFdTest, ClosesOnDestructionAndMove) {
  int raw;
  {
    UniqueFd fd = OpenFile("/dev/null", O_RDONLY);
    raw = fd.Get();
    EXPECT_TRUE(IsOpen(raw));
    EXPECT_TRUE(fcntl(raw, F_GETFD) & FD_CLOEXEC);
    UniqueFd moved = std::move(fd);
    EXPECT_FALSE(fd.Valid());  // NOLINT(bugprone-use-after-move): the point of the test
    EXPECT_EQ(moved.Get(), raw);
  }
  EXPECT_FALSE(IsOpen(raw));
}

TEST(UniqueFdTest, ReleaseAndReset) {
  UniqueFd fd = OpenFile("/dev/null", O_RDONLY);
  int raw = fd.Release();
  EXPECT_FALSE(fd.Valid());
  EXPECT_TRUE(IsOpen(raw));
  fd.Reset(raw);
  fd.Reset();
  EXPECT_FALSE(IsOpen(raw));
  UniqueFd again = OpenFile("/dev/null", O_RDONLY);
  EXPECT_NO_THROW(again.Close());
  EXPECT_FALSE(again.Valid());
}

TEST(FdTest, OpenFileNamesThePathInErrors) {
  try {
    OpenFile("/nonexistent/coffer", O_RDONLY);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), ENOENT);
    EXPECT_THAT(e.what(), ::testing::HasSubstr("/nonexistent/coffer"));
  }
}

TEST(FdTest, ReadFileIsBounded) {
  TempDir dir;
  WriteTextFile(dir / "f", std::string(1000, 'x'));
  EXPECT_EQ(ReadFile(dir / "f", 1000).size(), 1000u);
  try {
    ReadFile(dir / "f", 999);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), EFBIG);
  }
}

TEST(FdTest, AtomicWriteFileReplacesWithMode) {
  TempDir dir;
  AtomicWriteFile(dir / "k", "first", 0600);
  EXPECT_EQ(ReadTextFile(dir / "k"), "first");
  EXPECT_EQ(FileMode(dir / "k"), 0600);
  mode_t old = umask(0777);  // the umask must not change the mode asked for
  AtomicWriteFile(dir / "k", "second", 0640);
  umask(old);
  EXPECT_EQ(ReadTextFile(dir / "k"), "second");
  EXPECT_EQ(FileMode(dir / "k"), 0640);
  auto r = coffer::testing::Run({"sh", "-c", "ls -a " + dir.path() + " | wc -l"});
  EXPECT_EQ(r.out, "3\n") << "no temporary file left behind";
}

TEST(FdTest, AtomicWriteFileExclusiveRefusesExisting) {
  TempDir dir;
  AtomicWriteFile(dir / "k", "first", 0600, /*exclusive=*/true);
  try {
    AtomicWriteFile(dir / "k", "second", 0600, /*exclusive=*/true);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), EEXIST);
  }
  EXPECT_EQ(ReadTextFile(dir / "k"), "first");
  auto r = coffer::testing::Run({"sh", "-c", "ls -a " + dir.path() + " | wc -l"});
  EXPECT_EQ(r.out, "3\n");
}

TEST(FdTest, AtomicWriteFileFailureKeepsOldFile) {
  TempDir dir;
  AtomicWriteFile(dir / "k", "old", 0600);
  // The temporary name is taken by a directory: writing fails, the old file stays whole.
  ASSERT_EQ(mkdir((dir / "k.tmp." + std::to_string(getpid())).c_str(), 0700), 0);
  EXPECT_THROW(AtomicWriteFile(dir / "k", "new", 0600), Error);
  EXPECT_EQ(ReadTextFile(dir / "k"), "old");
  EXPECT_TRUE(FileExists(dir / "k"));
}

TEST(FdTest, WriteAllAndReadAllFd) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  UniqueFd r(p[0]), w(p[1]);
  WriteAll(w.Get(), "hello pipe", "pipe");
  w.Close();
  EXPECT_EQ(ReadAllFd(r.Get(), 100, "pipe"), "hello pipe");
}

}  // namespace
}  // namespace coffer
