// ReplicatedStore: cofferfs's Store on storage nodes (DESIGN.md "Durability contract").
//
// Every Commit is first one durable LMDB transaction in STATE_DIR that also records, in the
// outbox table, each object the batch changes on the nodes (id, version, where the sealed bytes
// are). Then one replication round sends the batch's objects, and whatever older outbox entries
// fit beside them, to the nodes (Replicator::Put: W acks). Acknowledged entries leave the outbox
// (their removal rides on the next local transaction: replaying an acknowledged entry is
// harmless, nodes keep only newer versions). Commit reports `replicated` only when no outbox
// entry of this or an earlier commit is left, so "replicated" means: everything committed so far
// is on W nodes. The filesystem decides what a failed round means (fail the operations, or accept
// them with degraded=queue); either way the batch stays in the outbox and a background thread
// replays it until the nodes take it, also after a restart (the outbox is in LMDB).
//
// Chunks are cached locally (the same sealed bytes the nodes hold). With a cache limit, the
// background thread evicts the least recently used chunks that are not in the outbox, after a
// PUT to all R replicas confirmed each of them (nodes answer "not newer" without rewriting);
// a read of an evicted chunk fetches it from the nodes (failover, hedging, verification and
// read repair are the replicator's) and caches it again.
//
// The background thread also runs a scrub (re-replication and tombstone collection) every
// scrub_interval.
//
// Thread safety: as Store. Commit is called by one thread at a time; Get, Scan and the Remote
// functions from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>

#include "fs/store.h"
#include "replicator/replicator.h"

namespace coffer::fs {

struct ReplicatedStoreOptions {
  bool degraded_queue = false;            // only for the log's wording
  std::uint64_t cache_limit_bytes = 0;    // 0: keep every chunk
  std::chrono::milliseconds background_interval{500};
  std::chrono::seconds scrub_interval{3600};  // 0: no periodic scrub
  std::size_t max_round_objects = 2048;   // outbox entries sent beside one commit
  std::size_t max_round_bytes = std::size_t{32} << 20;
  std::chrono::milliseconds connect_wait{3000};  // at open, for every node to answer
};

class ReplicatedStore : public Store, public Remote {
 public:
  // Opens the local store in `dir` and connects to the nodes of `replicator` (which must carry
  // a verifier). Throws coffer::Error like LmdbStore::Open.
  static std::unique_ptr<ReplicatedStore> Open(const std::string& dir,
                                               replicator::ReplicatorOptions replicator,
                                               ReplicatedStoreOptions options);
  ~ReplicatedStore() override;

  // Store.
  std::optional<std::string> Get(Table table, std::string_view key) override;
  void Scan(Table table,
            const std::function<void(std::string_view, std::string_view)>& fn) override;
  CommitResult Commit(const Batch& batch) override;
  Remote* remote() override { return this; }
  void Start() override;
  void Stop() override;

  // Remote.
  replicator::ListSummary ListAll(const std::function<void(replicator::Listed&&)>& fn) override;
  std::vector<Resolved> ResolveMany(
      const std::vector<replicator::Listed>& wanted,
      const std::function<void(std::size_t, std::size_t)>& progress) override;
  std::string Converge() override;
  std::optional<std::string> GetLocal(Table table, std::string_view key) override {
    return local_->Get(table, key);
  }
  std::string Digest(std::string_view sealed) const override;
  bool InOutbox(const crypto::ObjectId& id) override;
  std::vector<std::pair<std::string, replicator::NodeTrust>> Trust() override;
  std::size_t write_quorum() const override { return replicator_->write_quorum(); }
  std::size_t replicas() const override { return replicator_->replicas(); }
  std::string StatusLine() override;

  // For tests and cofferctl: one replay round of the outbox now (returns the entries left),
  // one eviction pass now (returns chunks evicted), one scrub now.
  std::size_t ReplayOutbox();
  std::size_t EvictNow();
  replicator::ScrubReport ScrubNow();
  std::size_t OutboxSize();
  std::uint64_t CacheBytes();
  replicator::Replicator& replicator() { return *replicator_; }

 private:
  struct Pending {  // an outbox entry in memory
    std::uint64_t seq = 0;
    Table table = Table::kChunks;
    std::string key;
    replicator::Version version;
    bool tombstone = false;
    std::string sealed_tombstone;  // the bytes to send for a delete
    std::int64_t queued_ms = 0;
    bool committed = false;  // its local transaction is done (until then a round skips it)
  };
  struct Cached {
    std::size_t size = 0;
    std::uint64_t tick = 0;
  };

  ReplicatedStore() = default;
  void LoadState();
  // Sends `ids` (outbox entries; `fresh` holds sealed bytes already at hand) and removes the
  // acknowledged ones from the outbox. Returns the replicator's error ("" when all stored).
  std::string Round(const std::vector<crypto::ObjectId>& ids,
                    const std::map<crypto::ObjectId, const std::string*>& fresh);
  void LocalCommit(Batch batch);  // adds the queued outbox removals and cache inserts
  void Background();
  void TouchCache(const crypto::ObjectId& id, std::size_t size);  // mu_ held
  void DropCache(const crypto::ObjectId& id);                      // mu_ held

  std::unique_ptr<LmdbStore> local_;
  std::unique_ptr<replicator::Replicator> replicator_;
  ReplicatedStoreOptions options_;

  std::mutex local_mu_;  // serialises local write transactions

  std::mutex mu_;  // guards everything below
  std::map<crypto::ObjectId, Pending> outbox_;
  std::multiset<std::uint64_t> outbox_seqs_;
  std::map<crypto::ObjectId, replicator::Version> acked_;  // outbox rows to delete locally
  std::map<crypto::ObjectId, std::string> fetched_;  // fetched chunks to cache locally
  std::uint64_t seq_ = 0;
  std::unordered_map<std::string, Cached> cache_;  // chunk id bytes -> size, last use
  std::set<std::pair<std::uint64_t, std::string>> lru_;  // (tick, id bytes)
  std::uint64_t cache_bytes_ = 0;
  std::uint64_t tick_ = 0;
  std::uint64_t evicted_ = 0;
  std::uint64_t fetched_count_ = 0;
  std::string last_error_;
  std::chrono::steady_clock::time_point last_warning_{};
  std::int64_t last_scrub_unix_ = 0;
  replicator::ScrubReport last_scrub_;
  bool scrubbing_ = false;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread background_;
  std::chrono::steady_clock::time_point next_scrub_{};
};

}  // namespace coffer::fs
