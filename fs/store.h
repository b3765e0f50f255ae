// The storage seam of cofferfs: everything the filesystem keeps in STATE_DIR goes through Store.
//
// The filesystem core only ever hands sealed bytes (or public keys: inode numbers, keyed hashes,
// random object ids) to a Store, so no implementation can leak plaintext. LmdbStore is the local
// implementation (one LMDB environment in STATE_DIR, DESIGN.md "Local state"); the replicator
// issue wraps it to also push committed batches to storage nodes, which is why writes arrive as
// whole batches: one batch is one atomic, durable local commit and one unit to replicate.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/lmdb.h"

namespace coffer::fs {

enum class Table : std::uint8_t {
  kMeta = 0,     // store meta (sealed) and the public key fingerprint
  kInodes = 1,   // 8-byte big-endian inode number -> sealed InodeRecord
  kDirents = 2,  // 8-byte parent inode + 16-byte keyed name hash -> sealed DirEntry
  kChunks = 3,   // 16-byte random object id -> sealed chunk
};

struct Mutation {
  Table table;
  std::string key;
  std::optional<std::string> value;  // nullopt: delete
};
using Batch = std::vector<Mutation>;

// Thread safety: Get and Scan may run concurrently from any thread, also while Commit runs in
// another thread; Commit calls are serialised by the caller (one committer thread).
class Store {
 public:
  virtual ~Store() = default;
  virtual std::optional<std::string> Get(Table table, std::string_view key) = 0;
  // Calls `fn` for every record of `table` in key order (one read snapshot).
  virtual void Scan(Table table,
                    const std::function<void(std::string_view, std::string_view)>& fn) = 0;
  // Applies `batch` atomically; returns once it is durable. Throws coffer::Error (ENOSPC when the
  // store is full, EIO otherwise); after a throw nothing of the batch is applied.
  virtual void Commit(const Batch& batch) = 0;
};

// Store on one LMDB environment in a directory (created 0700 if missing). Holds an exclusive
// flock on DIR/cofferfs.lock for its lifetime, so two daemons never share a STATE_DIR (EBUSY).
class LmdbStore : public Store {
 public:
  static std::unique_ptr<LmdbStore> Open(const std::string& dir);
  ~LmdbStore() override;

  std::optional<std::string> Get(Table table, std::string_view key) override;
  void Scan(Table table,
            const std::function<void(std::string_view, std::string_view)>& fn) override;
  void Commit(const Batch& batch) override;

 private:
  LmdbStore() = default;
  int lock_fd_ = -1;
  lmdb::Env env_;
  std::vector<lmdb::Dbi> dbis_;  // indexed by Table
};

}  // namespace coffer::fs
