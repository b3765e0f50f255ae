// The LMDB RAII wrappers: transactions abort unless committed, not-found is a value, errors are
// coffer::Error with a meaningful errno, and commits survive reopening.
#include "common/lmdb.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/support/subprocess.h"

namespace coffer::lmdb {
namespace {

using coffer::testing::TempDir;

EnvOptions Small() {
  EnvOptions o;
  o.map_size = 16 << 20;
  return o;
}

TEST(LmdbTest, PutGetCommitAndReopen) {
  TempDir dir;
  {
    Env env = Env::Open(dir.path(), Small());
    Txn txn = Txn::BeginWrite(env);
    Dbi dbi = Dbi::Open(txn, "objects", MDB_CREATE);
    EXPECT_TRUE(dbi.Put(txn, "k1", "v1"));
    EXPECT_EQ(dbi.Get(txn, "k1"), "v1");
    EXPECT_FALSE(dbi.Get(txn, "nope").has_value());
    txn.Commit();
    EXPECT_EQ(txn.get(), nullptr);
  }
  Env env = Env::Open(dir.path(), Small());
  Txn txn = Txn::BeginRead(env);
  Dbi dbi = Dbi::Open(txn, "objects");
  EXPECT_EQ(dbi.Get(txn, "k1"), "v1");
}

TEST(LmdbTest, DestructorAborts) {
  TempDir dir;
  Env env = Env::Open(dir.path(), Small());
  {
    Txn txn = Txn::BeginWrite(env);
    Dbi dbi = Dbi::Open(txn, "objects", MDB_CREATE);
    dbi.Put(txn, "k", "v");
    txn.Commit();
  }
  {
    Txn txn = Txn::BeginWrite(env);
    Dbi dbi = Dbi::Open(txn, "objects");
    dbi.Put(txn, "k", "changed");
    dbi.Put(txn, "k2", "new");
  }  // no commit
  Txn txn = Txn::BeginRead(env);
  Dbi dbi = Dbi::Open(txn, "objects");
  EXPECT_EQ(dbi.Get(txn, "k"), "v");
  EXPECT_FALSE(dbi.Get(txn, "k2"));
}

TEST(LmdbTest, NoOverwriteAndDelete) {
  TempDir dir;
  Env env = Env::Open(dir.path(), Small());
  Txn txn = Txn::BeginWrite(env);
  Dbi dbi = Dbi::Open(txn, nullptr);
  EXPECT_TRUE(dbi.Put(txn, "k", "a", MDB_NOOVERWRITE));
  EXPECT_FALSE(dbi.Put(txn, "k", "b", MDB_NOOVERWRITE));
  EXPECT_EQ(dbi.Get(txn, "k"), "a");
  EXPECT_TRUE(dbi.Del(txn, "k"));
  EXPECT_FALSE(dbi.Del(txn, "k"));
  txn.Commit();
}

TEST(LmdbTest, CursorWalksInOrderAndSeeks) {
  TempDir dir;
  Env env = Env::Open(dir.path(), Small());
  Txn txn = Txn::BeginWrite(env);
  Dbi dbi = Dbi::Open(txn, nullptr);
  for (const char* k : {"b", "d", "a", "c"}) dbi.Put(txn, k, std::string("v") + k);
  std::string seen;
  {
    Cursor c = Cursor::Open(txn, dbi);
    std::string_view k, v;
    for (bool ok = c.Get(&k, &v, MDB_FIRST); ok; ok = c.Get(&k, &v, MDB_NEXT)) seen += k;
    EXPECT_EQ(seen, "abcd");
    k = "bb";
    ASSERT_TRUE(c.Get(&k, &v, MDB_SET_RANGE));
    EXPECT_EQ(k, "c");
    EXPECT_EQ(v, "vc");
    c.Del();
    k = "z";
    EXPECT_FALSE(c.Get(&k, &v, MDB_SET_RANGE));
  }
  EXPECT_FALSE(dbi.Get(txn, "c"));
  EXPECT_EQ(dbi.Stat(txn).ms_entries, 3u);
  txn.Commit();
}

TEST(LmdbTest, MapFullIsEnospc) {
  TempDir dir;
  EnvOptions o;
  o.map_size = 1 << 20;
  Env env = Env::Open(dir.path(), o);
  try {
    Txn txn = Txn::BeginWrite(env);
    Dbi dbi = Dbi::Open(txn, nullptr);
    std::string value(4096, 'x');
    for (int i = 0; i < 10000; ++i) dbi.Put(txn, "key" + std::to_string(i), value);
    txn.Commit();
    FAIL() << "a 1 MiB map cannot hold 40 MiB";
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), ENOSPC);
  }
}

TEST(LmdbTest, OpenErrorsNameThePath) {
  try {
    Env::Open("/nonexistent/coffer-lmdb", Small());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/coffer-lmdb"), std::string::npos);
  }
  EnvOptions nosync = Small();
  nosync.flags = MDB_NOSYNC;
  TempDir dir;
  EXPECT_THROW(Env::Open(dir.path(), nosync), Error);
}

TEST(LmdbTest, CommittedDataSurvivesKill9) {
  TempDir dir;
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Env env = Env::Open(dir.path(), Small());
    Txn txn = Txn::BeginWrite(env);
    Dbi dbi = Dbi::Open(txn, nullptr);
    dbi.Put(txn, "acked", "yes");
    txn.Commit();
    Txn open_txn = Txn::BeginWrite(env);
    dbi.Put(open_txn, "unacked", "no");
    kill(getpid(), SIGKILL);  // die holding a write transaction and a reader slot
  }
  int status;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  Env env = Env::Open(dir.path(), Small());  // runs mdb_reader_check
  Txn txn = Txn::BeginRead(env);
  Dbi dbi = Dbi::Open(txn, nullptr);
  EXPECT_EQ(dbi.Get(txn, "acked"), "yes");
  EXPECT_FALSE(dbi.Get(txn, "unacked"));
}

TEST(LmdbTest, ReadTxnResetRenew) {
  TempDir dir;
  Env env = Env::Open(dir.path(), Small());
  {
    Txn w = Txn::BeginWrite(env);
    Dbi::Open(w, nullptr).Put(w, "k", "1");
    w.Commit();
  }
  Txn r = Txn::BeginRead(env);
  Dbi dbi = Dbi::Open(r, nullptr);
  EXPECT_EQ(dbi.Get(r, "k"), "1");
  {
    Txn w = Txn::BeginWrite(env);
    dbi.Put(w, "k", "2");
    w.Commit();
  }
  EXPECT_EQ(dbi.Get(r, "k"), "1");  // snapshot isolation
  r.Reset();
  r.Renew();
  EXPECT_EQ(dbi.Get(r, "k"), "2");
}

}  // namespace
}  // namespace coffer::lmdb
