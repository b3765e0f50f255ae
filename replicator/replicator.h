// Replicator: spreads sealed objects over storage nodes (DESIGN.md, Replicator and nodes).
//
// Placement by rendezvous hashing picks R replicas per object. Put() writes to them in parallel
// and succeeds for an object once W nodes acknowledged a durable commit (a node that already
// holds the same or a newer version counts: it holds at least this write durably); it fails with
// a message naming every node that failed when W can no longer be met or the timeout passes.
// Get() asks the best replica first (placement order, skipping nodes that recently failed or
// answer much slower than the others), sends a hedged request to the next one after a short delay,
// fails over at once on an error, a missing object or data the verifier rejects, and repairs in
// the background every replica that answered missing, stale or corrupt. Scrub() walks all nodes
// (LIST) and re-replicates so each object sits on exactly its R replicas with identical bytes.
//
// Reads are not quorum reads: Get() returns the first verified copy, which may be older than a
// concurrent write (immutable chunks do not care; records are reconciled through the feed).
//
// Thread safety: every public function may be called from many threads at once (FUSE workers).
// Callbacks of the async functions run on the I/O thread and must be short.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <thread>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.h"
#include "replicator/placement.h"
#include "replicator/transport.h"
#include "replicator/version.h"

namespace coffer::replicator {

// Decides whether `sealed` is a genuine copy of object `id` (cofferfs: crypto::Open with the
// right kind). Called from the I/O thread and from Scrub(); must be thread-safe.
using Verifier = std::function<bool(const crypto::ObjectId& id, std::string_view sealed)>;

struct ReplicatorOptions {
  std::vector<NodeAddress> nodes;
  CurveKeyPair client_keys;
  std::size_t replicas = 3;       // R (capped at the node count)
  std::size_t write_quorum = 0;   // W; 0: majority of R
  std::chrono::milliseconds write_timeout{5000};
  std::chrono::milliseconds read_timeout{2000};
  std::chrono::milliseconds hedge_delay{30};
  std::chrono::milliseconds admin_timeout{5000};  // LIST/FEED/STAT and scrub requests
  std::size_t max_batch = 256;    // objects per PUT request to one node
  Verifier verifier;              // empty: accept every copy (no verification)
  TransportOptions transport;
  // Hinted handoff: when a replica fails a write, the object goes to the next node in its
  // ranking instead (which counts toward W: a sloppy quorum), and a hint remembers to move it
  // to the owner once the owner answers again (checked every hint_replay_interval). Hints live
  // in memory; if the box restarts first, Scrub() moves the object all the same.
  bool hinted_handoff = false;
  std::chrono::milliseconds hint_replay_interval{1000};
  // Scrub collects a tombstone (DROP from every node) once every replica holds it, every node
  // answered, and its version's clock (nanoseconds since the epoch, as cofferfs writes it) is
  // older than tombstone_grace.
  bool collect_tombstones = false;
  std::chrono::seconds tombstone_grace{7 * 24 * 3600};
};

struct Object {
  crypto::ObjectId id{};
  Version version;
  bool tombstone = false;
  std::string sealed;
};

struct PutResult {
  // Per object of the batch, same order: true when W nodes acknowledged it.
  std::vector<bool> stored;
  // Empty when everything was stored; otherwise names the objects and the failing nodes.
  std::string error;
  bool ok() const { return error.empty(); }
};

enum class GetStatus {
  kFound,        // `object` is verified (or a tombstone)
  kNotFound,     // every replica asked answered "no such object"
  kUnavailable,  // no replica returned a verified copy (down, timeout, corrupt)
};

struct GetResult {
  GetStatus status = GetStatus::kUnavailable;
  Object object;
  std::string error;  // for kUnavailable: what each replica did
};

struct ScrubReport {
  std::uint64_t checked = 0;      // distinct object ids seen
  std::uint64_t repaired = 0;     // objects written to at least one replica
  std::uint64_t moved = 0;        // objects dropped from nodes that are not their replicas
  std::uint64_t unreachable = 0;  // objects with a replica on a node that did not answer
  std::uint64_t unrecoverable = 0;  // objects with no verified copy anywhere
  std::uint64_t collected = 0;    // tombstones dropped from every node (collect_tombstones)
  std::vector<std::string> unreachable_nodes;
};

struct ReplicatorStats {
  std::uint64_t repairs_sent = 0;
  std::uint64_t hedges_sent = 0;
  std::uint64_t verify_failures = 0;
  std::uint64_t hints_stored = 0;    // writes handed to a fallback node
  std::uint64_t hints_replayed = 0;  // of those, delivered to their owner
  std::uint64_t hints_pending = 0;
};

class Replicator {
 public:
  explicit Replicator(ReplicatorOptions options);
  ~Replicator();

  std::size_t replicas() const { return r_; }
  std::size_t write_quorum() const { return w_; }
  const Placement& placement() const { return placement_; }
  Transport& transport() { return *transport_; }

  // Writes (or tombstones) a batch; blocks until every object reached W acks or failed.
  // `quorum` other than 0 asks for that many acks instead of W (capped at R): R confirms that
  // every replica holds the objects (cache eviction).
  PutResult Put(const std::vector<Object>& batch, std::size_t quorum = 0);
  void PutAsync(const std::vector<Object>& batch, std::function<void(PutResult&&)> done,
                std::size_t quorum = 0);
  // Deletes with a tombstone of `version` (conditional like any put).
  PutResult Delete(const crypto::ObjectId& id, const Version& version);

  GetResult Get(const crypto::ObjectId& id);
  // `min_version`: a copy older than this counts as missing (fail over to the next replica;
  // kUnavailable when no replica has it), e.g. the version a listing showed as the newest.
  void GetAsync(const crypto::ObjectId& id, std::function<void(GetResult&&)> done,
                Version min_version = {});

  // One page of node `node`'s ids after `after` (empty: from the start). Throws coffer::Error
  // (EAGAIN) if the node does not answer.
  wire::ListReply List(std::size_t node, std::string_view after, std::uint32_t limit = 0);
  // One page of node `node`'s changes after sequence number `since`.
  wire::FeedReply Feed(std::size_t node, std::uint64_t since, std::uint32_t limit = 0);
  wire::StatReply Stat(std::size_t node);
  // Pings every node at once; per node the round trip, or nullopt when it did not answer
  // within `timeout`.
  std::vector<std::optional<std::chrono::microseconds>> PingAll(std::chrono::milliseconds timeout);

  // See the file comment. `progress(done, total)` is called now and then from this thread.
  ScrubReport Scrub(const std::function<void(std::uint64_t, std::uint64_t)>& progress = {});

  ReplicatorStats stats() const;

  // Delivers the hinted writes whose owner answers again (GET from the fallback node, PUT to
  // the owner, DROP from the fallback). Returns how many were delivered. Runs by itself every
  // hint_replay_interval when hinted_handoff is on; callable from any thread.
  std::size_t ReplayHints();

 private:
  struct Hint {
    std::size_t owner;
    std::size_t holder;
    crypto::ObjectId id;
    Version version;
  };
  void AddHint(Hint h);
  // The next node after the R replicas of `id` (skipping nodes that recently failed), counting
  // the ones already tried in `used`; nullopt when none is left.
  std::optional<std::size_t> PickFallback(const crypto::ObjectId& id, std::size_t& used);
  struct GetOp;
  struct PutOp;
  void Handoff(const std::shared_ptr<PutOp>& op, std::size_t i, std::size_t owner,
               std::size_t fallback);
  void SendGet(const std::shared_ptr<GetOp>& op);
  void OnGetReply(const std::shared_ptr<GetOp>& op, std::size_t slot, CallResult&& r);
  void FinishGetLocked(const std::shared_ptr<GetOp>& op);
  void RepairAfterGet(const std::shared_ptr<GetOp>& op);
  void SendRepair(std::size_t node, const Object& object, bool force);
  bool Verify(const Object& o);
  wire::Reply CallSync(std::size_t node, wire::Request req, const char* what);
  void MarkDown(std::size_t node);
  void MarkUp(std::size_t node, std::chrono::microseconds latency = {});
  std::vector<std::size_t> ReadOrder(const crypto::ObjectId& id);

  ReplicatorOptions options_;
  Placement placement_;
  std::size_t r_;
  std::size_t w_;
  std::unique_ptr<Transport> transport_;
  std::atomic<std::uint64_t> repairs_sent_{0};
  std::atomic<std::uint64_t> hedges_sent_{0};
  std::atomic<std::uint64_t> verify_failures_{0};
  // Nodes that recently failed are asked last. Guarded by health_mu_.
  mutable std::mutex health_mu_;
  std::vector<std::chrono::steady_clock::time_point> down_until_;
  std::vector<double> latency_us_;  // moving average of GET round trips, 0: unknown
  std::vector<std::chrono::steady_clock::time_point> latency_at_;  // of the last sample
  // Hinted writes not yet delivered. Guarded by hints_mu_; replay_mu_ serialises ReplayHints().
  mutable std::mutex hints_mu_;
  std::vector<Hint> hints_;
  std::size_t hints_in_replay_ = 0;  // taken out of hints_ by a running ReplayHints()
  std::mutex replay_mu_;
  std::atomic<std::uint64_t> hints_stored_{0};
  std::atomic<std::uint64_t> hints_replayed_{0};
  // The hint replay thread (only with hinted_handoff).
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;  // guarded by stop_mu_
  std::thread replay_thread_;
};

std::string IdString(const crypto::ObjectId& id);
std::optional<crypto::ObjectId> IdFromString(std::string_view bytes);

}  // namespace coffer::replicator
