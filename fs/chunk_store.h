// Chunks of file content (DESIGN.md "Chunks"): sealed, immutable under random ids. The chunk
// store answers "the plaintext of chunk X" from wherever the chunk is:
//   - in flight: taken into a batch and not yet committed locally (the plaintext is kept);
//   - cached in STATE_DIR (the same sealed bytes the nodes hold);
//   - only on the nodes (evicted, or never here: a rebuilt box): fetched, verified by the
//     backend, cached again. One fetch per chunk at a time; callers never hold the
//     filesystem's lock while reading (a fetch waits on the network).
// With a cache limit, the least recently used chunks are evicted once every replica confirmed
// it holds them (and none of them has a version still in the outbox).
//
// Thread safety: every function may be called from any thread. mu_ is a leaf lock, never held
// around I/O or crypto.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/crypto.h"
#include "fs/store.h"
#include "replicator/backend.h"

namespace coffer::fs {

struct ChunkCacheStatus {
  std::uint64_t bytes = 0;     // sealed bytes cached in STATE_DIR
  std::uint64_t chunks = 0;
  std::uint64_t limit = 0;     // 0: none
  std::uint64_t evicted = 0;
  std::uint64_t fetched = 0;   // chunks read from the nodes
};

class ChunkStore {
 public:
  // `persist` writes a fetched chunk's sealed bytes into STATE_DIR (with the next local
  // commit); `pinned` says whether a chunk must stay (a version of it is in the outbox).
  ChunkStore(const crypto::Keyring& keys, LmdbStore& local, replicator::Backend* remote,
             std::uint64_t cache_limit, std::function<void(Mutation)> persist,
             std::function<bool(const crypto::ObjectId&)> pinned);

  // Accounts the chunks already in STATE_DIR (at mount).
  void LoadCache();

  // The plaintext of chunk `id`. Throws coffer::Error(EIO) when no copy can be had (missing
  // everywhere, or no node serves a genuine one).
  std::shared_ptr<const std::string> Read(const crypto::ObjectId& id);

  // A chunk taken into a batch: readable from memory until it is committed locally.
  void AddInFlight(const crypto::ObjectId& id, std::shared_ptr<const std::string> plaintext);
  // These chunks are in STATE_DIR now.
  void Committed(const std::vector<crypto::ObjectId>& ids);
  // A chunk deleted (its row goes with the batch).
  void Forget(const crypto::ObjectId& id);

  // One eviction pass (background; tests): evicts down to 90 % of the limit; returns how many.
  std::size_t EvictNow();
  ChunkCacheStatus status() const;

 private:
  void Touch(const std::string& key, std::size_t size);  // mu_ held
  void Drop(const std::string& key);                     // mu_ held

  const crypto::Keyring& keys_;
  LmdbStore& local_;
  replicator::Backend* remote_;
  const std::uint64_t limit_;
  const std::function<void(Mutation)> persist_;
  const std::function<bool(const crypto::ObjectId&)> pinned_;

  mutable std::mutex mu_;  // guards everything below; a leaf lock
  std::condition_variable fetched_cv_;
  std::map<crypto::ObjectId, std::shared_ptr<const std::string>> in_flight_;
  std::set<crypto::ObjectId> fetching_;
  // Cached sealed chunks: id bytes -> (size, last use), and the LRU order.
  struct Cached {
    std::size_t size = 0;
    std::uint64_t tick = 0;
  };
  std::unordered_map<std::string, Cached> cache_;
  std::set<std::pair<std::uint64_t, std::string>> lru_;
  std::uint64_t bytes_ = 0;
  std::uint64_t tick_ = 0;
  std::uint64_t evicted_ = 0;
  std::uint64_t fetched_count_ = 0;
};

}  // namespace coffer::fs
