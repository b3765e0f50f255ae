// The commit pipeline of cofferfs: from changes in memory to durable objects (DESIGN.md
// "Durability contract").
//
// The facade collects changes into an open batch; the pipeline's committer thread takes it
// (through a hook, under the facade's lock: plaintext records and chunks only), seals it outside
// every lock, and then, for each batch:
//   - with storage nodes, sends its objects in one round (Backend::PutAsync, W acks), while
//     - a local writer thread commits it to STATE_DIR beside the round (the nodes, not the local
//       disk, make a change durable: the local commit is off the critical path);
//   - without nodes, the local commit is what makes it durable.
// Batch N+1 is taken, sealed and sent while the round of N is in flight (up to max_in_flight
// rounds), so concurrent operations share commits and round trips and throughput grows with
// the number of writers.
//
// Verdicts. Batches are decided one after the other, in order. With nodes, batch N is durable
// once every version written by batches <= N was acknowledged by W nodes (or superseded by a
// newer version that was): "fsync waits for everything before it". When that fails (W nodes did
// not answer within the operation timeout) the single degraded policy decides, here and nowhere
// else: degraded=fail makes the batch's operations fail with kNotDurableErrno after its
// namespace changes were undone (hook), degraded=queue accepts them once they are in the local
// outbox. Without nodes, a failed local commit is EIO, and sticky.
//
// The outbox. Every version not yet acknowledged is in the outbox (in memory, and as a row of
// STATE_DIR written with its batch, so that it survives a restart or a kill -9). Failed entries
// ride along with later rounds and are replayed every replay_interval until the nodes take
// them; the log says DEGRADED (with the reason, at most every 10 s) only when an operation
// failed or was queued, and says when the outbox drained.
//
// Thread safety: every public function may be called from any thread. Lock order: the facade's
// mutex, then mu_ (hooks are always called without mu_); mu_ is held only briefly and never
// around I/O, crypto or a hook.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/crypto.h"
#include "common/log_throttle.h"
#include "fs/store.h"
#include "replicator/backend.h"

namespace coffer::fs {

// The errno of "could not be made durable now" (storage nodes unreachable): every common
// delivery agent treats it as temporary and defers (Postfix local(8)/virtual(8) map EAGAIN to
// 4.2.0, Dovecot LDA to a temporary failure, maildrop to EX_TEMPFAIL), where EIO bounces.
inline constexpr int kNotDurableErrno = EAGAIN;

// One object of a batch, as the facade hands it over (plaintext; the pipeline seals it).
struct RecordWrite {
  crypto::ObjectId id{};
  crypto::ObjectKind kind = crypto::ObjectKind::kChunk;  // for a delete: the kind deleted
  crypto::ObjectVersion version;
  std::shared_ptr<const std::string> plaintext;  // nullptr: a delete (a tombstone)
  Table table = Table::kChunks;                  // the local row (deleted for a delete)
  std::string key;
};

struct ChangeSet {
  std::uint64_t seq = 0;
  std::vector<RecordWrite> writes;
  Batch local;  // rows kept only in STATE_DIR (counters, cursors)
  bool empty() const { return writes.empty() && local.empty(); }
};

struct PipelineOptions {
  bool degraded_queue = false;
  bool read_only = false;  // never write to the nodes (a read-only mount): local commits only
  std::chrono::milliseconds commit_interval{200};  // changes nobody waits for
  std::size_t max_in_flight = 4;                   // rounds at once
  std::size_t max_retry_objects = 2048;            // failed entries resent beside a batch
  std::size_t max_retry_bytes = std::size_t{32} << 20;
  std::chrono::milliseconds replay_interval{500};
  std::chrono::seconds degraded_log_interval{10};
};

struct PipelineHooks {
  // Takes the open batch, numbered `seq` (the facade's lock is taken inside).
  std::function<ChangeSet(std::uint64_t seq)> take;
  // degraded=fail: the nodes did not take batch `seq`: undo its namespace changes.
  std::function<void(std::uint64_t seq)> failed;
  // The local commit of these chunks is done: they are readable from STATE_DIR now.
  std::function<void(const std::vector<crypto::ObjectId>& chunks)> local_committed;
};

struct PipelineStatus {
  std::size_t outbox = 0;           // versions not yet on W nodes
  std::size_t outbox_failed = 0;    // of those, whose last round failed (degraded)
  std::int64_t oldest_ms = 0;       // unix ms when the oldest was queued (0: none)
  std::string last_error;           // of the last failed round
  std::uint64_t taken = 0;          // batches taken
  std::uint64_t rounds = 0;
  std::uint64_t local_commits = 0;
  int sticky_error = 0;
};

class CommitPipeline {
 public:
  // `local` must outlive the pipeline; `remote` may be null (no storage nodes).
  CommitPipeline(const crypto::Keyring& keys, LmdbStore& local, replicator::Backend* remote,
                 PipelineOptions options, PipelineHooks hooks);
  ~CommitPipeline();  // Stop()
  CommitPipeline(const CommitPipeline&) = delete;
  CommitPipeline& operator=(const CommitPipeline&) = delete;

  // Reads the outbox left in STATE_DIR by an earlier run (call before Start()): its entries are
  // replayed at once. Damaged rows are dropped with an error log. Returns how many were loaded.
  std::size_t LoadOutbox();

  void Start();
  // Takes and commits everything still open, waits for the rounds in flight (their own
  // timeout), finishes local commits, stops the threads. What the nodes did not take stays in
  // the outbox.
  void Stop();

  // The facade changed something: the open batch is taken within commit_interval.
  void Touched();
  // Asks for batches up to `seq` to be taken now.
  void Request(std::uint64_t seq);
  // Requests and waits for the verdict of batch `seq`: 0, kNotDurableErrno or EIO (see the file
  // comment).
  int Wait(std::uint64_t seq);
  // Requests and waits until batch `seq` is committed locally (flow control of writers: bounded
  // memory). 0 or EIO.
  int WaitLocal(std::uint64_t seq);
  // The next batch to be taken (what `take` will be called with).
  std::uint64_t next_seq() const;

  // Rows written with the next local commit, not sent to the nodes (fetched chunks, cursors).
  void QueueLocal(Mutation m);
  // True when a version of `id` is not yet acknowledged by W nodes.
  bool InOutbox(const crypto::ObjectId& id) const;
  // The newest version of `id` this box wrote that W nodes have not yet acknowledged.
  std::optional<crypto::ObjectVersion> PendingVersion(const crypto::ObjectId& id) const;
  PipelineStatus status() const;
  // One replay round now (tests): returns the versions still pending afterwards.
  std::size_t ReplayNow();
  int sticky_error() const;

 private:
  // An object's versions not yet acknowledged, newest last (only the newest is ever sent: an
  // acknowledgement of it covers the older ones).
  struct Entry {
    struct Pending {
      std::uint64_t seq;
      crypto::ObjectVersion version;
    };
    std::vector<Pending> pending;
    bool tombstone = false;
    std::shared_ptr<const std::string> sealed;  // the newest's bytes, until committed locally
    Table table = Table::kChunks;
    std::string key;
    std::int64_t queued_ms = 0;
    bool failed = false;     // the last round that carried it failed
    bool in_flight = false;  // carried by a round in flight
  };
  struct BatchState {
    bool round_done = false;
    bool local_done = false;
  };
  struct LocalItem {
    std::uint64_t seq = 0;
    Batch rows;
    std::vector<crypto::ObjectId> objects;  // written by this item (their outbox entries)
    std::vector<crypto::ObjectId> chunks;   // committed by this item
  };
  struct Sealed {
    std::vector<replicator::Object> objects;                 // for the nodes
    std::vector<std::pair<Table, std::string>> where;        // per object: its local row
    std::vector<std::shared_ptr<const std::string>> sealed;  // per object
    Batch rows;                                              // for STATE_DIR
    std::vector<crypto::ObjectId> chunks;
  };

  void CommitterLoop();
  void LocalWriterLoop();
  // Seals a change set (no lock held).
  Sealed Seal(const ChangeSet& cs) const;
  // Registers the sealed objects of batch `seq` in the outbox and appends their outbox rows to
  // `rows` (mu_ held); returns the batch's objects to send.
  std::vector<replicator::Object> Enqueue(std::uint64_t seq, Sealed& s, Batch* rows);
  // Takes, seals and sends the next batch (mu_ held on entry and exit, released meanwhile).
  void TakeBatch(std::unique_lock<std::mutex>& lock);
  // Sends a round (no lock held); `seq` 0: a replay round that decides no batch.
  void SendRound(std::uint64_t seq, std::vector<replicator::Object> objects);
  void OnRound(std::uint64_t seq, const std::vector<replicator::Object>& sent,
               replicator::PutResult&& result);
  // Decides the batches whose rounds (and, where needed, local commits) are done, in order.
  // Unlocks `lock` to call the failed hook.
  void Decide(std::unique_lock<std::mutex>& lock);
  std::uint64_t MinPendingSeq() const;  // mu_ held; UINT64_MAX when nothing is pending
  // Replay round of failed entries (no batch); returns false if there is nothing to replay.
  bool StartReplay(std::unique_lock<std::mutex>& lock);
  std::vector<replicator::Object> RetryObjects(std::size_t max_objects, std::size_t max_bytes);

  const crypto::Keyring& keys_;
  LmdbStore& local_;
  replicator::Backend* remote_;
  const PipelineOptions options_;
  const PipelineHooks hooks_;

  mutable std::mutex mu_;  // guards everything below (lock order: after the facade's mutex)
  std::condition_variable work_cv_;     // wakes the committer
  std::condition_variable local_cv_;    // wakes the local writer
  std::condition_variable verdict_cv_;  // wakes waiters
  std::uint64_t wanted_ = 0;            // take batches up to this one now
  bool touched_ = false;                // the open batch has changes nobody waits for yet
  std::chrono::steady_clock::time_point touched_at_{};
  std::uint64_t last_taken_ = 0;
  std::uint64_t decided_through_ = 0;
  std::uint64_t local_through_ = 0;     // every batch <= this is committed locally
  std::map<std::uint64_t, BatchState> batches_;   // taken, not yet decided
  std::map<std::uint64_t, int> verdicts_;         // decided batches with a non-zero verdict
  std::set<std::uint64_t> local_done_;            // committed locally, above local_through_
  std::size_t in_flight_ = 0;                     // rounds of batches in flight
  bool replaying_ = false;                        // a replay round is in flight
  std::chrono::steady_clock::time_point last_replay_{};
  bool rounds_done_ = false;                      // a round finished: decide
  std::map<crypto::ObjectId, Entry> outbox_;
  std::multiset<std::uint64_t> pending_seqs_;     // seqs of every pending version
  std::set<crypto::ObjectId> acked_rows_;         // outbox rows to remove locally
  std::deque<LocalItem> local_queue_;
  Batch local_rows_;                              // QueueLocal
  int sticky_error_ = 0;
  std::string last_error_;
  bool degraded_ = false;                         // the log said DEGRADED, not yet drained
  LogThrottle degraded_log_;
  PipelineStatus counters_;
  bool stopping_ = false;
  bool started_ = false;
  bool committer_done_ = false;  // the committer took its last batch and left
  std::thread committer_;
  std::thread local_writer_;
};

}  // namespace coffer::fs
