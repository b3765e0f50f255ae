// See lmdb.h.
#include "common/lmdb.h"

#include <cerrno>
#include <string>

#include "common/error.h"

namespace coffer::lmdb {

void ThrowLmdb(int rc, std::string_view what) {
  int err = EIO;
  if (rc == MDB_MAP_FULL) {
    err = ENOSPC;
  } else if (rc > 0) {
    err = rc;  // LMDB passes system errnos through unchanged
  }
  throw Error(err, std::string(what) + ": " + mdb_strerror(rc));
}

Env Env::Open(const std::string& path, const EnvOptions& options) {
  Env env;
  int rc = mdb_env_create(&env.env_);
  if (rc != 0) ThrowLmdb(rc, "mdb_env_create");
  env.path_ = path;
  if ((rc = mdb_env_set_mapsize(env.env_, options.map_size)) != 0) ThrowLmdb(rc, "mdb_env_set_mapsize " + path);
  if ((rc = mdb_env_set_maxdbs(env.env_, options.max_dbs)) != 0) ThrowLmdb(rc, "mdb_env_set_maxdbs " + path);
  if ((rc = mdb_env_set_maxreaders(env.env_, options.max_readers)) != 0) ThrowLmdb(rc, "mdb_env_set_maxreaders " + path);
  if (options.flags & MDB_NOSYNC) throw Error(EINVAL, "MDB_NOSYNC is not allowed: commits must be durable");
  if ((rc = mdb_env_open(env.env_, path.c_str(), options.flags, options.mode)) != 0) {
    ThrowLmdb(rc, "cannot open LMDB environment " + path);
  }
  int dead = 0;
  if ((rc = mdb_reader_check(env.env_, &dead)) != 0) ThrowLmdb(rc, "mdb_reader_check " + path);
  return env;
}

Env& Env::operator=(Env&& o) noexcept {
  if (this != &o) {
    if (env_) mdb_env_close(env_);
    env_ = std::exchange(o.env_, nullptr);
    path_ = std::move(o.path_);
  }
  return *this;
}

Env::~Env() {
  if (env_) mdb_env_close(env_);
}

void Env::Sync() {
  int rc = mdb_env_sync(env_, 1);
  if (rc != 0) ThrowLmdb(rc, "mdb_env_sync " + path_);
}

MDB_stat Env::Stat() const {
  MDB_stat st;
  int rc = mdb_env_stat(env_, &st);
  if (rc != 0) ThrowLmdb(rc, "mdb_env_stat " + path_);
  return st;
}

MDB_envinfo Env::Info() const {
  MDB_envinfo info;
  int rc = mdb_env_info(env_, &info);
  if (rc != 0) ThrowLmdb(rc, "mdb_env_info " + path_);
  return info;
}

Txn Txn::Begin(const Env& env, bool read_only, MDB_txn* parent) {
  Txn txn;
  int rc = mdb_txn_begin(env.get(), parent, read_only ? MDB_RDONLY : 0, &txn.txn_);
  if (rc != 0) ThrowLmdb(rc, "mdb_txn_begin " + env.path());
  return txn;
}

Txn& Txn::operator=(Txn&& o) noexcept {
  if (this != &o) {
    Abort();
    txn_ = std::exchange(o.txn_, nullptr);
  }
  return *this;
}

void Txn::Commit() {
  MDB_txn* txn = std::exchange(txn_, nullptr);
  int rc = mdb_txn_commit(txn);
  if (rc != 0) ThrowLmdb(rc, "mdb_txn_commit");
}

void Txn::Abort() noexcept {
  if (txn_) mdb_txn_abort(std::exchange(txn_, nullptr));
}

void Txn::Reset() noexcept {
  if (txn_) mdb_txn_reset(txn_);
}

void Txn::Renew() {
  int rc = mdb_txn_renew(txn_);
  if (rc != 0) ThrowLmdb(rc, "mdb_txn_renew");
}

Dbi Dbi::Open(const Txn& txn, const char* name, unsigned flags) {
  MDB_dbi dbi;
  int rc = mdb_dbi_open(txn.get(), name, flags, &dbi);
  if (rc != 0) ThrowLmdb(rc, std::string("mdb_dbi_open ") + (name ? name : "(main)"));
  return Dbi(dbi);
}

std::optional<std::string_view> Dbi::Get(const Txn& txn, std::string_view key) const {
  MDB_val k = ToVal(key), v;
  int rc = mdb_get(txn.get(), dbi_, &k, &v);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  if (rc != 0) ThrowLmdb(rc, "mdb_get");
  return FromVal(v);
}

bool Dbi::Put(const Txn& txn, std::string_view key, std::string_view value, unsigned flags) const {
  MDB_val k = ToVal(key), v = ToVal(value);
  int rc = mdb_put(txn.get(), dbi_, &k, &v, flags);
  if (rc == MDB_KEYEXIST && (flags & (MDB_NOOVERWRITE | MDB_NODUPDATA))) return false;
  if (rc != 0) ThrowLmdb(rc, "mdb_put");
  return true;
}

bool Dbi::Del(const Txn& txn, std::string_view key) const {
  MDB_val k = ToVal(key);
  int rc = mdb_del(txn.get(), dbi_, &k, nullptr);
  if (rc == MDB_NOTFOUND) return false;
  if (rc != 0) ThrowLmdb(rc, "mdb_del");
  return true;
}

MDB_stat Dbi::Stat(const Txn& txn) const {
  MDB_stat st;
  int rc = mdb_stat(txn.get(), dbi_, &st);
  if (rc != 0) ThrowLmdb(rc, "mdb_stat");
  return st;
}

Cursor Cursor::Open(const Txn& txn, const Dbi& dbi) {
  Cursor c;
  int rc = mdb_cursor_open(txn.get(), dbi.get(), &c.cursor_);
  if (rc != 0) ThrowLmdb(rc, "mdb_cursor_open");
  return c;
}

Cursor& Cursor::operator=(Cursor&& o) noexcept {
  if (this != &o) {
    if (cursor_) mdb_cursor_close(cursor_);
    cursor_ = std::exchange(o.cursor_, nullptr);
  }
  return *this;
}

Cursor::~Cursor() {
  if (cursor_) mdb_cursor_close(cursor_);
}

bool Cursor::Get(std::string_view* key, std::string_view* value, MDB_cursor_op op) {
  MDB_val k{}, v{};
  if (key && (op == MDB_SET || op == MDB_SET_KEY || op == MDB_SET_RANGE)) k = ToVal(*key);
  int rc = mdb_cursor_get(cursor_, &k, &v, op);
  if (rc == MDB_NOTFOUND) return false;
  if (rc != 0) ThrowLmdb(rc, "mdb_cursor_get");
  if (key) *key = FromVal(k);
  if (value) *value = FromVal(v);
  return true;
}

void Cursor::Del(unsigned flags) {
  int rc = mdb_cursor_del(cursor_, flags);
  if (rc != 0) ThrowLmdb(rc, "mdb_cursor_del");
}

}  // namespace coffer::lmdb
