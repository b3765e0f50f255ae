// Replicator: spreads sealed objects over storage nodes (DESIGN.md, Replicator and nodes).
//
// Placement by rendezvous hashing picks R replicas per object. Put() writes to them in parallel
// and succeeds for an object once W nodes acknowledged a durable commit (a node that already
// holds the same or a newer version counts: it holds at least this write durably); it fails with
// a message naming every node that failed when W can no longer be met or the timeout passes.
// Get() asks the best replica first (placement order, skipping nodes that recently failed, lied
// or answer much slower than the others), sends a hedged request to the next one after a short
// delay, fails over at once on an error, a missing object or a copy the verifier rejects, and
// repairs in the background every replica that answered missing, stale or corrupt. Scrub() walks
// all nodes (LIST) and re-replicates so each object sits on exactly its R replicas with
// identical bytes.
//
// Trust. Nodes are not trusted: everything a node says about an object (its version, whether it
// is a tombstone, its bytes) is a claim until the verifier authenticated a copy against it. Only
// authenticated copies are returned, used as repair sources or written to other nodes; a listing
// entry that no authenticated copy backs is ignored; claims of versions more than max_clock_skew
// in the future are refused. A node caught lying (a copy that authenticates, but as another
// version or kind than claimed, or a listing it cannot back) is counted, logged once per
// interval with its id, reported in stats() and asked last for a while.
//
// Reads are not quorum reads: Get() returns the first verified copy, which may be older than a
// concurrent write (immutable chunks do not care; records are reconciled through the feed).
// Resolve() returns the newest authenticated version among what the nodes list.
//
// Thread safety: every public function may be called from many threads at once (FUSE workers).
// Callbacks of the async functions run on the I/O thread and must be short.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <thread>
#include <functional>
#include <map>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.h"
#include "common/log_throttle.h"
#include "replicator/backend.h"
#include "replicator/placement.h"
#include "replicator/transport.h"
#include "replicator/version.h"

namespace coffer::replicator {

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
  // Empty: every copy counts as genuine (only for tests and benchmarks of the replicator alone).
  Verifier verifier;
  // Claims of versions whose clock (nanoseconds since the epoch, as cofferfs writes it) is more
  // than this ahead of the wall clock are refused: a node cannot push boxes' clocks forward.
  std::chrono::seconds max_clock_skew{300};
  // A node caught lying is asked last (reads) and not used as a repair source for this long.
  std::chrono::seconds suspect_period{600};
  // Lies and refusals are logged at most once per node per interval (with counts).
  std::chrono::seconds lie_log_interval{60};
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
  // Reads repair replicas that answered missing, stale or corrupt (off for a read-only mount,
  // which writes nothing to the nodes).
  bool read_repair = true;
};

class Replicator : public Backend {
 public:
  explicit Replicator(ReplicatorOptions options);
  ~Replicator() override;

  std::size_t replicas() const override { return r_; }
  std::size_t write_quorum() const override { return w_; }
  std::vector<std::string> node_ids() const override;
  const Placement& placement() const { return placement_; }
  Transport& transport() { return *transport_; }

  // Writes (or tombstones) a batch; blocks until every object reached W acks or failed.
  // `quorum` other than 0 asks for that many acks instead of W (capped at R): R confirms that
  // every replica holds the objects (cache eviction).
  PutResult Put(const std::vector<Object>& batch, std::size_t quorum = 0);
  void PutAsync(const std::vector<Object>& batch, std::function<void(PutResult&&)> done,
                std::size_t quorum = 0) override;
  // Deletes with an unsealed tombstone of `version` (conditional like any put). Boxes delete by
  // putting a sealed tombstone instead (an unsealed one authenticates nothing); for tests.
  PutResult Delete(const crypto::ObjectId& id, const Version& version);

  GetResult Get(const crypto::ObjectId& id) override;
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
  // Pings every node until all answer or `timeout` passes (connections come up
  // asynchronously); returns how many answered.
  std::size_t WaitConnected(std::chrono::milliseconds timeout);
  // Pings every node at once; per node the round trip, or nullopt when it did not answer
  // within `timeout`.
  std::vector<std::optional<std::chrono::microseconds>> PingAll(
      std::chrono::milliseconds timeout) override;

  // Walks every node's listing (a few retries per page while a node reconnects) and calls `fn`
  // once per id with every claim, from this thread, in id order. Claims of versions beyond
  // max_clock_skew are marked refused (and counted against their node).
  ListSummary ListAll(const std::function<void(Listed&&)>& fn) override;
  // Each node's feed from `since[node]` to its end (pages, a few retries while a node
  // reconnects), merged per id like ListAll. A node whose sequence is below the cursor (a new or
  // wiped node) is read from 0 and marked reset.
  FeedSummary ReadFeeds(const std::vector<std::uint64_t>& since,
                        const std::function<void(Listed&&)>& fn) override;

  // The newest authenticated copy among the claims of `listed`: the claimed versions are tried
  // from the newest down, each from its holders (trusted nodes first) with failover; a copy that
  // does not authenticate as claimed counts against its node and the next holder or version is
  // tried. kFound: the newest version some holder backs (it may be a tombstone). kNotFound: no
  // claim is backed. kUnavailable: a holder of a newer claim did not answer (its claim may be
  // true: deciding now could return a stale version).
  void ResolveAsync(const Listed& listed, std::function<void(GetResult&&)> done) override;
  // Asks every replica of `id` (and `also`) at once; see Backend::ReadNewestAsync. R-W+1
  // answering replicas see every acknowledged version.
  void ReadNewestAsync(const crypto::ObjectId& id, const std::vector<std::size_t>& also,
                       std::function<void(GetResult&&)> done) override;
  GetResult Resolve(const Listed& listed);

  // See the file comment. `progress(done, total)` is called now and then from this thread.
  // `repair` false: only report (a scrub without the key cannot authenticate anything, so it
  // must not write what it found).
  ScrubReport Scrub(const std::function<void(std::uint64_t, std::uint64_t)>& progress,
                    bool repair, const CollectGate& may_collect) override;
  ScrubReport Scrub(const std::function<void(std::uint64_t, std::uint64_t)>& progress,
                    bool repair) {
    return Scrub(progress, repair, {});
  }
  ScrubReport Scrub() { return Scrub({}, true, {}); }

  ReplicatorStats stats() const override;

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
  // Merges per-node claims (one call per node's page) into `merged`, refusing future ones.
  void AddClaims(std::size_t node, const google::protobuf::RepeatedPtrField<wire::ListEntry>& entries,
                 std::map<std::string, Listed>* merged);
  static void EmitMerged(std::map<std::string, Listed>* merged,
                         const std::function<void(Listed&&)>& fn);
  struct GetOp;
  struct PutOp;
  struct ResolveOp;
  void ResolveNext(const std::shared_ptr<ResolveOp>& op);
  void Handoff(const std::shared_ptr<PutOp>& op, std::size_t i, std::size_t owner,
               std::size_t fallback);
  void SendGet(const std::shared_ptr<GetOp>& op);
  void OnGetReply(const std::shared_ptr<GetOp>& op, std::size_t slot, CallResult&& r);
  void FinishGetLocked(const std::shared_ptr<GetOp>& op);
  void RepairAfterGet(const std::shared_ptr<GetOp>& op);
  void SendRepair(std::size_t node, const Object& object, bool force);
  // The verifier's verdict on a copy `node` served (kFuture for a claim too far ahead), counted
  // against the node when it is not genuine.
  Verdict Verify(std::size_t node, const Object& o);
  bool TooFarAhead(const Version& v) const;
  void CountAgainst(std::size_t node, Verdict v, const crypto::ObjectId& id, const Version& claim,
                    const std::string& detail = {});
  bool Suspect(std::size_t node) const;  // caught lying within suspect_period
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
  // Per node: what it was caught at, until when it is a suspect, and when its lies were last
  // logged. Guarded by trust_mu_, a leaf lock (lock order: health_mu_, then trust_mu_).
  mutable std::mutex trust_mu_;
  std::vector<NodeTrust> trust_;
  std::vector<std::chrono::steady_clock::time_point> suspect_until_;
  std::vector<LogThrottle> trust_log_;
  // Nodes that recently failed are asked last. Guarded by health_mu_ (lock order: before
  // trust_mu_; never held around a call to the transport).
  mutable std::mutex health_mu_;
  std::vector<std::chrono::steady_clock::time_point> down_until_;
  std::vector<double> latency_us_;  // moving average of GET round trips, 0: unknown
  std::vector<std::chrono::steady_clock::time_point> latency_at_;  // of the last sample
  // Hinted writes not yet delivered. Guarded by hints_mu_, a leaf lock; replay_mu_ serialises
  // ReplayHints() (lock order: replay_mu_, then hints_mu_; hints_mu_ is never held around a
  // call to the transport).
  mutable std::mutex hints_mu_;
  std::vector<Hint> hints_;
  std::size_t hints_in_replay_ = 0;  // taken out of hints_ by a running ReplayHints()
  std::mutex replay_mu_;
  std::atomic<std::uint64_t> hints_stored_{0};
  std::atomic<std::uint64_t> hints_replayed_{0};
  // The hint replay thread (only with hinted_handoff). stop_mu_ is a leaf lock.
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;  // guarded by stop_mu_
  std::thread replay_thread_;
};


}  // namespace coffer::replicator
