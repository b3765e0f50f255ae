// ObjectStore: a storage node's LMDB object store (DESIGN.md, Replicator and nodes).
//
// Three databases in one environment:
//   objects: id (16 bytes) -> StoredObject (version, tombstone, seq, digest, sealed bytes)
//   feed:    seq (8 bytes, big endian) -> id; only the latest change of each id is kept
//   meta:    counters (next sequence number, live objects, tombstones, live bytes)
//   first:   (keep_first_copies only) id -> the StoredObject held before the id's first
//            replacement, for the rollback play-dead mode of tests
// A put is applied only if its version is newer than the one held (conditional put), so
// retries and replays are harmless. Deletes are tombstones carrying their version (and, from
// boxes of format 2, their sealed bytes: the store does not look inside). Every
// accepted change takes the next sequence number. All changes of one Apply() share one durable
// LMDB commit (group commit): when Apply() returns, they are on disk.
//
// Thread safety: Apply() and Drop() may be called from one writer thread at a time (LMDB allows
// one write transaction); the read functions from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/lmdb.h"
#include "replicator/version.h"
#include "replicator/wire.pb.h"

namespace coffer::replicator {

inline constexpr std::size_t kIdSize = 16;

struct StoreStats {
  std::uint64_t objects = 0;
  std::uint64_t tombstones = 0;
  std::uint64_t bytes = 0;
  std::uint64_t seq = 0;
};

class ObjectStore {
 public:
  // Opens (creating if needed) the store in directory `dir`, which must exist.
  explicit ObjectStore(const std::string& dir, std::size_t map_size = std::size_t{64} << 30,
                       bool keep_first_copies = false);

  // Applies `objects` (already validated: 16-byte ids, tombstones without bytes) in one durable
  // commit. Returns one result per object. Objects with the same id in one call are applied in
  // order. Throws coffer::Error if the commit fails (then nothing was applied).
  std::vector<wire::PutResult> Apply(const std::vector<const wire::Object*>& objects);

  // Removes ids entirely when the held version is <= the given one. One durable commit.
  std::vector<bool> Drop(const std::vector<std::pair<std::string, Version>>& items);

  // The object or tombstone with `id`, or nullopt.
  std::optional<wire::Object> Get(std::string_view id) const;
  // The first copy of `id` ever held, if it was replaced since (keep_first_copies), or nullopt.
  std::optional<wire::Object> First(std::string_view id) const;
  bool keeps_first_copies() const { return keep_first_; }

  // Up to `limit` entries with ids greater than `after` (all when `after` is empty); `*done` is
  // set when the walk reached the end.
  std::vector<wire::ListEntry> List(std::string_view after, std::size_t limit, bool* done) const;

  // Up to `limit` changes with sequence numbers greater than `since`, in order.
  std::vector<wire::ListEntry> Feed(std::uint64_t since, std::size_t limit, bool* done) const;

  StoreStats Stats() const;

  // BLAKE2b-128 of `sealed`: the digest LIST reports.
  static std::string Digest(std::string_view sealed);

 private:
  lmdb::Env env_;
  lmdb::Dbi objects_;
  lmdb::Dbi feed_;
  lmdb::Dbi meta_;
  lmdb::Dbi first_;
  bool keep_first_ = false;
};

}  // namespace coffer::replicator
