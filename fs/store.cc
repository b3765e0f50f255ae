// LmdbStore: the local Store on one LMDB environment (see store.h).
#include "fs/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/error.h"

namespace coffer::fs {

namespace {
constexpr const char* kDbNames[5] = {"meta", "inodes", "dirents", "chunks", "outbox"};
}

std::unique_ptr<LmdbStore> LmdbStore::Open(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) ThrowErrno("cannot create " + dir);
  std::unique_ptr<LmdbStore> store(new LmdbStore());
  std::string lock_path = dir + "/cofferfs.lock";
  store->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (store->lock_fd_ < 0) ThrowErrno("cannot open " + lock_path);
  if (::flock(store->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      throw Error(EBUSY, dir + " is in use by another cofferfs (lock " + lock_path + ")");
    ThrowErrno("cannot lock " + lock_path);
  }
  lmdb::EnvOptions options;
  options.max_dbs = 8;
  options.max_readers = 512;
  store->env_ = lmdb::Env::Open(dir, options);
  auto txn = lmdb::Txn::BeginWrite(store->env_);
  for (const char* name : kDbNames) store->dbis_.push_back(lmdb::Dbi::Open(txn, name, MDB_CREATE));
  txn.Commit();
  return store;
}

LmdbStore::~LmdbStore() {
  env_ = lmdb::Env();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::optional<std::string> LmdbStore::Get(Table table, std::string_view key) {
  auto txn = lmdb::Txn::BeginRead(env_);
  auto v = dbis_[static_cast<int>(table)].Get(txn, key);
  if (!v) return std::nullopt;
  return std::string(*v);
}

void LmdbStore::Scan(Table table,
                     const std::function<void(std::string_view, std::string_view)>& fn) {
  auto txn = lmdb::Txn::BeginRead(env_);
  auto cursor = lmdb::Cursor::Open(txn, dbis_[static_cast<int>(table)]);
  std::string_view k, v;
  for (bool ok = cursor.Get(&k, &v, MDB_FIRST); ok; ok = cursor.Get(&k, &v, MDB_NEXT)) fn(k, v);
}

void LmdbStore::Commit(const Batch& batch) {
  if (batch.empty()) return;
  auto txn = lmdb::Txn::BeginWrite(env_);
  for (const Mutation& m : batch) {
    const lmdb::Dbi& dbi = dbis_[static_cast<int>(m.table)];
    if (m.shared) {
      dbi.Put(txn, m.key, *m.shared);
    } else if (m.value) {
      dbi.Put(txn, m.key, *m.value);
    } else {
      dbi.Del(txn, m.key);
    }
  }
  txn.Commit();
}

}  // namespace coffer::fs
