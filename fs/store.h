// STATE_DIR: the local LMDB environment of an access box (DESIGN.md "Local state"). Everything
// in it is sealed (the same bytes the nodes hold) or public (inode numbers, random ids, counters,
// feed cursors), so nothing here can leak plaintext. With storage nodes it is a replica of the
// store on the nodes plus the outbox of changes they have not acknowledged; without nodes it is
// the whole store.
//
// Writes arrive as batches: one batch is one atomic, durable LMDB transaction. LmdbStore holds an
// exclusive flock on DIR/cofferfs.lock for its lifetime, so two daemons never share a STATE_DIR.
//
// Thread safety: Get and Scan may run from any thread, also while Commit runs in another (LMDB
// readers never wait for the writer); concurrent Commits are serialised by LMDB.
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
  kMeta = 0,     // store meta (sealed), key fingerprint, clock floor, feed cursors
  kInodes = 1,   // 8-byte big-endian inode number -> sealed InodeRecord
  kDirents = 2,  // store format 1 only: parent (8) + keyed name hash (16) -> sealed DirEntry
  kChunks = 3,   // 16-byte random object id -> sealed chunk
  kOutbox = 4,   // 16-byte object id -> OutboxEntry (not yet on W nodes)
};

struct Mutation {
  Table table;
  std::string key;
  std::optional<std::string> value;  // nullopt (and no `shared`): delete the row
  // The value when it is shared with others (sealed bytes also on their way to the nodes).
  std::shared_ptr<const std::string> shared = nullptr;
  bool deletes() const { return !value && !shared; }
};
using Batch = std::vector<Mutation>;

class LmdbStore {
 public:
  // Opens (creating it 0700 if missing) the store in `dir`. Throws coffer::Error: EBUSY when
  // another cofferfs holds it, others from LMDB.
  static std::unique_ptr<LmdbStore> Open(const std::string& dir);
  ~LmdbStore();
  LmdbStore(const LmdbStore&) = delete;
  LmdbStore& operator=(const LmdbStore&) = delete;

  std::optional<std::string> Get(Table table, std::string_view key);
  // Calls `fn` for every row of `table` in key order (one read snapshot).
  void Scan(Table table, const std::function<void(std::string_view, std::string_view)>& fn);
  // Applies `batch` atomically and durably. Throws coffer::Error (ENOSPC when the store is
  // full, EIO otherwise); after a throw nothing of the batch is applied.
  void Commit(const Batch& batch);

 private:
  LmdbStore() = default;
  int lock_fd_ = -1;
  lmdb::Env env_;
  std::vector<lmdb::Dbi> dbis_;  // indexed by Table
};

}  // namespace coffer::fs
