// The storage seam of cofferfs: everything the filesystem keeps in STATE_DIR goes through Store.
//
// The filesystem core only ever hands sealed bytes (or public keys: inode numbers, keyed hashes,
// random object ids) to a Store, so no implementation can leak plaintext. LmdbStore is the local
// implementation (one LMDB environment in STATE_DIR, DESIGN.md "Local state"); ReplicatedStore
// (fs/replicated_store.h) wraps it to also push committed batches to storage nodes, which is why
// writes arrive as whole batches: one batch is one atomic, durable local commit and one unit to
// replicate. A mutation that carries a RemoteRef is also an object on the nodes (its id and
// version there); one without is local only (counters, cache eviction).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.h"
#include "common/lmdb.h"
#include "replicator/replicator.h"

namespace coffer::fs {

enum class Table : std::uint8_t {
  kMeta = 0,     // store meta (sealed) and the public key fingerprint
  kInodes = 1,   // 8-byte big-endian inode number -> sealed InodeRecord
  kDirents = 2,  // 8-byte parent inode + 16-byte keyed name hash -> sealed DirEntry
  kChunks = 3,   // 16-byte random object id -> sealed chunk
  kOutbox = 4,   // 16-byte object id -> OutboxEntry (ReplicatedStore: not yet on W nodes)
};

// The object a mutation is on the storage nodes: its id and version (DESIGN.md "Versions"),
// and for a delete the sealed tombstone that stands for it there.
struct RemoteRef {
  crypto::ObjectId id{};
  std::uint64_t hlc = 0;
  std::uint64_t box = 0;
  std::string tombstone;  // sealed (crypto::ObjectKind::kTombstone) when the mutation deletes
};

struct Mutation {
  Table table;
  std::string key;
  std::optional<std::string> value;  // nullopt: delete (a tombstone on the nodes)
  std::optional<RemoteRef> remote;   // nullopt: local only
};
using Batch = std::vector<Mutation>;

struct CommitResult {
  // True when W storage nodes hold everything committed so far (always true without nodes).
  bool replicated = true;
  std::string error;  // why not: names the nodes that failed
};

// What a store on storage nodes offers beyond the local one: disaster recovery and checks.
// Nothing a node lists is believed until an authenticated copy backs it (DESIGN.md "Versions").
class Remote {
 public:
  // The newest authenticated state of one listed object.
  struct Resolved {
    enum State {
      kLive,         // `sealed` at `version`
      kTombstone,    // deleted at `version`
      kUnbacked,     // no node backs any of its claims (they were lies, or the copies are lost)
      kUnavailable,  // a holder of a newer claim did not answer: undecided
    };
    State state = kUnavailable;
    std::string sealed;
    replicator::Version version;
    std::string error;
  };
  virtual ~Remote() = default;
  // Walks every node's listing and calls `fn` once per id with every node's claim, from this
  // thread. Nodes that do not answer are marked in the summary.
  virtual replicator::ListSummary ListAll(const std::function<void(replicator::Listed&&)>& fn) = 0;
  // Resolves each of `wanted` (many in flight). `progress(done, total)` is called now and then.
  virtual std::vector<Resolved> ResolveMany(
      const std::vector<replicator::Listed>& wanted,
      const std::function<void(std::size_t, std::size_t)>& progress) = 0;
  // Brings every replica to the newest authenticated version (a scrub); a one-line summary.
  virtual std::string Converge() = 0;
  // The local row only (no fetch from the nodes).
  virtual std::optional<std::string> GetLocal(Table table, std::string_view key) = 0;
  // Digest of sealed bytes as listings report it.
  virtual std::string Digest(std::string_view sealed) const = 0;
  // True when `id` has a change not yet acknowledged by W nodes.
  virtual bool InOutbox(const crypto::ObjectId& id) = 0;
  // Per node (id, trust): what each node was caught at.
  virtual std::vector<std::pair<std::string, replicator::NodeTrust>> Trust() = 0;
  virtual std::size_t write_quorum() const = 0;
  virtual std::size_t replicas() const = 0;
  // One line of "key=value" pairs for the control socket's status.
  virtual std::string StatusLine() = 0;
};

// Thread safety: Get and Scan may run concurrently from any thread, also while Commit runs in
// another thread; Commit calls are serialised by the caller (one committer thread).
class Store {
 public:
  virtual ~Store() = default;
  virtual std::optional<std::string> Get(Table table, std::string_view key) = 0;
  // Calls `fn` for every record of `table` in key order (one read snapshot).
  virtual void Scan(Table table,
                    const std::function<void(std::string_view, std::string_view)>& fn) = 0;
  // Applies `batch` atomically; returns once it is durable locally. Throws coffer::Error (ENOSPC when the
  // store is full, EIO otherwise); after a throw nothing of the batch is applied.
  // The result says whether the nodes (if any) hold it; a failed replication is not a throw:
  // the batch is committed locally and held in the outbox.
  virtual CommitResult Commit(const Batch& batch) = 0;
  // Storage nodes behind this store, or nullptr for a local-only store.
  virtual Remote* remote() { return nullptr; }
  // Background work (outbox replay, cache eviction, scrub) runs between Start and Stop.
  virtual void Start() {}
  virtual void Stop() {}
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
  CommitResult Commit(const Batch& batch) override;

 private:
  LmdbStore() = default;
  int lock_fd_ = -1;
  lmdb::Env env_;
  std::vector<lmdb::Dbi> dbis_;  // indexed by Table
};

}  // namespace coffer::fs
