// RAII owners for LMDB handles (STYLE.md §4), in the manner of lmdbxx: move-only, a transaction
// whose destructor aborts, Commit() that clears the handle first, "not found" as a value and
// every other failure as coffer::Error.
//
// Contracts taken from LMDB itself: an Env is shared by all threads; a Txn belongs to the thread
// that began it (read-only transactions too: we do not use MDB_NOTLS); a Cursor must not outlive
// its Txn; values returned as string_view point into the map and are valid only until the end of
// the transaction (or the next write in it).
#pragma once

#include <lmdb.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace coffer::lmdb {

// Throws coffer::Error for an LMDB return code: MDB_MAP_FULL becomes ENOSPC, system errors
// keep their errno, everything else is EIO. `what` names the operation and the environment.
[[noreturn]] void ThrowLmdb(int rc, std::string_view what);

struct EnvOptions {
  std::size_t map_size = std::size_t{64} << 30;  // 64 GiB of address space, not disk
  unsigned max_dbs = 16;
  unsigned max_readers = 256;
  // Extra mdb_env_open flags. Never MDB_NOSYNC (DESIGN.md: durable commits only). MDB_NOSUBDIR
  // is allowed for single-file stores.
  unsigned flags = 0;
  mode_t mode = 0600;
};

class Env {
 public:
  // Opens (creating the files if needed) the environment in directory `path`, which must exist.
  // Runs mdb_reader_check to clear readers left by dead processes.
  static Env Open(const std::string& path, const EnvOptions& options = {});

  Env() noexcept = default;
  Env(Env&& o) noexcept : env_(std::exchange(o.env_, nullptr)), path_(std::move(o.path_)) {}
  Env& operator=(Env&& o) noexcept;
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;
  ~Env();

  MDB_env* get() const noexcept { return env_; }
  const std::string& path() const noexcept { return path_; }
  // Forces a durable flush (useful only with MDB_NOMETASYNC, which we do not set by default).
  void Sync();
  MDB_stat Stat() const;
  MDB_envinfo Info() const;

 private:
  MDB_env* env_ = nullptr;
  std::string path_;
};

class Txn {
 public:
  static Txn Begin(const Env& env, bool read_only, MDB_txn* parent = nullptr);
  static Txn BeginRead(const Env& env) { return Begin(env, true); }
  static Txn BeginWrite(const Env& env) { return Begin(env, false); }

  Txn() noexcept = default;
  Txn(Txn&& o) noexcept : txn_(std::exchange(o.txn_, nullptr)) {}
  Txn& operator=(Txn&& o) noexcept;
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  ~Txn() { Abort(); }

  MDB_txn* get() const noexcept { return txn_; }
  // Commits durably; the handle is cleared first, so the destructor does nothing afterwards even
  // if the commit throws (LMDB frees the transaction on failure too).
  void Commit();
  void Abort() noexcept;
  // For read-only transactions: release the snapshot and take a fresh one, cheaply.
  void Reset() noexcept;
  void Renew();

 private:
  MDB_txn* txn_ = nullptr;
};

// A database handle inside an environment. Plain value: LMDB DBIs live as long as the Env.
class Dbi {
 public:
  // Opens `name` (nullptr: the main database) in `txn`; with MDB_CREATE in flags, creates it.
  static Dbi Open(const Txn& txn, const char* name, unsigned flags = 0);

  MDB_dbi get() const noexcept { return dbi_; }

  // The value for `key`, or nullopt when absent. Valid until the transaction ends or writes.
  std::optional<std::string_view> Get(const Txn& txn, std::string_view key) const;
  // Stores `value`. With MDB_NOOVERWRITE in flags returns false (and changes nothing) if the key
  // exists; otherwise returns true.
  bool Put(const Txn& txn, std::string_view key, std::string_view value, unsigned flags = 0) const;
  // Deletes `key`; returns false when it was absent.
  bool Del(const Txn& txn, std::string_view key) const;
  MDB_stat Stat(const Txn& txn) const;

 private:
  explicit Dbi(MDB_dbi dbi) : dbi_(dbi) {}
  MDB_dbi dbi_ = 0;
};

class Cursor {
 public:
  static Cursor Open(const Txn& txn, const Dbi& dbi);

  Cursor() noexcept = default;
  Cursor(Cursor&& o) noexcept : cursor_(std::exchange(o.cursor_, nullptr)) {}
  Cursor& operator=(Cursor&& o) noexcept;
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  ~Cursor();

  MDB_cursor* get() const noexcept { return cursor_; }

  // Positions with `op` (MDB_FIRST, MDB_NEXT, MDB_SET_RANGE, ...). For MDB_SET/MDB_SET_RANGE the
  // input key is `*key`. Returns false at the end / when not found; fills key and value.
  bool Get(std::string_view* key, std::string_view* value, MDB_cursor_op op);
  void Del(unsigned flags = 0);

 private:
  MDB_cursor* cursor_ = nullptr;
};

inline MDB_val ToVal(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
inline std::string_view FromVal(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

}  // namespace coffer::lmdb
