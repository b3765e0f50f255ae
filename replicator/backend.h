// The storage seam of an access box (DESIGN.md "Replicator and nodes", Backends): everything the
// fs core asks of the store that lives on the nodes. The default backend is the quorum
// replicator over coffer-node processes (replicator.h); tests use an in-memory one; a RADOS pool
// can be another. Nothing a backend returns as an object is believed unless the verifier
// authenticated it: a backend hands out only genuine copies (or says it has none).
//
// Thread safety: every function may be called from any thread; callbacks of the async functions
// run on a backend thread and must be short (they may start other calls).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/crypto.h"
#include "replicator/version.h"

namespace coffer::replicator {

struct Object {
  crypto::ObjectId id{};
  Version version;
  bool tombstone = false;
  std::string sealed;
};

// What a verifier concludes about one copy a node served, with the node's claims.
enum class Verdict {
  kGenuine,          // authenticated, and it is the version and kind the node claims
  kCorrupt,          // does not authenticate: damaged bytes
  kForged,           // authenticates, but as another version or kind than claimed: a lie
  kUnauthenticated,  // nothing authenticates the claim (an unsealed tombstone of an old format)
  kFuture,           // claims a version beyond max_clock_skew from now (set by the replicator)
};
const char* ToString(Verdict v);

// Decides whether `claimed` (id, version and tombstone as the node claims them, and the bytes it
// served) is genuine: cofferfs opens it with the key and compares the authenticated version and
// kind with the claims. Called from the I/O thread and from Scrub(); must be thread-safe.
using Verifier = std::function<Verdict(const Object& claimed)>;

// Asked by Scrub before a tombstone is dropped from every node.
using CollectGate = std::function<bool(const crypto::ObjectId& id, const Version& version)>;

struct PutResult {
  // Per object of the batch, same order: true when W nodes acknowledged it.
  std::vector<bool> stored;
  // Empty when everything was stored; otherwise names the objects and the failing nodes.
  std::string error;
  bool ok() const { return error.empty(); }
};

enum class GetStatus {
  kFound,        // `object` is authenticated (it may be a tombstone)
  kNotFound,     // every replica asked answered "no such object"
  kUnavailable,  // no replica returned a verified copy (down, timeout, corrupt)
};

struct GetResult {
  GetStatus status = GetStatus::kUnavailable;
  Object object;
  std::string error;  // for kUnavailable: what each replica did
};

// One node's claim about an object, from its listing.
struct Claim {
  std::size_t node = 0;
  Version version;
  bool tombstone = false;
  std::string digest;  // BLAKE2b-128 of the sealed bytes, as the node reports it
  std::uint64_t size = 0;
  bool refused = false;  // a version beyond max_clock_skew: never fetched, never believed
};

// Everything the answering nodes list for one object id, newest claim first (refused claims
// are kept, so that a scrub knows the node holds something it cannot repair, but never used).
struct Listed {
  crypto::ObjectId id{};
  std::vector<Claim> claims;
  // The newest claim that is not refused (claims holds at least one claim; if every claim was
  // refused, the newest of them).
  const Claim& newest() const;
  std::size_t HoldersOf(const Version& v) const;
};

struct ListSummary {
  std::vector<bool> answered;  // per node: its whole listing was read
  std::size_t nodes() const { return answered.size(); }
  std::size_t answered_count() const;
};

struct ScrubReport {
  std::uint64_t checked = 0;      // distinct object ids seen
  std::uint64_t differing = 0;    // objects some replica lacks in its newest authenticated form
  std::uint64_t repaired = 0;     // objects written to at least one replica
  std::uint64_t moved = 0;        // objects dropped from nodes that are not their replicas
  std::uint64_t unreachable = 0;  // objects with a replica on a node that did not answer
  std::uint64_t unrecoverable = 0;  // objects whose claims no authenticated copy backs
  std::uint64_t collected = 0;    // tombstones dropped from every node (collect_tombstones)
  std::vector<std::string> unreachable_nodes;
};

// How far a node can be trusted: what it was caught at since the replicator started.
struct NodeTrust {
  std::uint64_t lies = 0;     // copies that authenticated as another version or kind than
                              // claimed, unsealed tombstones over sealed objects, listings
                              // the node could not back
  std::uint64_t corrupt = 0;  // copies that did not authenticate
  std::uint64_t future = 0;   // claims of versions beyond max_clock_skew
  std::int64_t last_lie_unix = 0;
};

struct ReplicatorStats {
  std::uint64_t repairs_sent = 0;
  std::uint64_t hedges_sent = 0;
  std::uint64_t verify_failures = 0;
  std::uint64_t hints_stored = 0;    // writes handed to a fallback node
  std::uint64_t hints_replayed = 0;  // of those, delivered to their owner
  std::uint64_t hints_pending = 0;
  std::vector<NodeTrust> nodes;      // per node, in configuration order
};

// The change feeds of the nodes, read from per-node cursors (sequence numbers): every change
// after them, merged per id like a listing. The cursors are opaque to the fs core apart from
// being saved and given back.
struct FeedSummary {
  std::vector<bool> answered;          // per node: its feed was read to its end
  std::vector<std::uint64_t> reached;  // per node: the cursor to read from next time
  std::vector<bool> reset;             // per node: the node's sequence went backwards (a new or
                                       // wiped node): it was read from 0
  std::size_t answered_count() const;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::size_t replicas() const = 0;       // R
  virtual std::size_t write_quorum() const = 0;   // W
  virtual std::vector<std::string> node_ids() const = 0;

  // Writes (or tombstones) a batch; `done` gets, per object, whether W nodes acknowledged it.
  // `quorum` other than 0 asks for that many acknowledgements instead (R: every replica).
  virtual void PutAsync(const std::vector<Object>& batch, std::function<void(PutResult&&)> done,
                        std::size_t quorum = 0) = 0;
  // A genuine copy of `id` (the first one found), kNotFound, or kUnavailable.
  virtual GetResult Get(const crypto::ObjectId& id) = 0;
  // The newest genuine copy among `listed`'s claims (see Replicator::ResolveAsync).
  virtual void ResolveAsync(const Listed& listed, std::function<void(GetResult&&)> done) = 0;
  // The newest genuine copy any replica of `id` (and any node in `also`) holds now, whatever
  // they listed: kFound (it may be a tombstone), kNotFound (enough replicas answered and none
  // holds a genuine copy), kUnavailable (too few replicas answered to be sure).
  virtual void ReadNewestAsync(const crypto::ObjectId& id, const std::vector<std::size_t>& also,
                               std::function<void(GetResult&&)> done) = 0;
  // Every node's listing, merged per id, from this thread.
  virtual ListSummary ListAll(const std::function<void(Listed&&)>& fn) = 0;
  // Every change after `since` (per node, configuration order; shorter: 0 for the rest),
  // merged per id, from this thread.
  virtual FeedSummary ReadFeeds(const std::vector<std::uint64_t>& since,
                                const std::function<void(Listed&&)>& fn) = 0;
  // Re-replicates (and with `repair` false only reports); see Replicator::Scrub. A tombstone
  // that may be collected is collected only if `may_collect` (when given) agrees: the box knows
  // whether every box that mounts the store has seen it.
  virtual ScrubReport Scrub(const std::function<void(std::uint64_t, std::uint64_t)>& progress,
                            bool repair, const CollectGate& may_collect) = 0;
  // Per node the round trip, or nullopt when it did not answer within `timeout`.
  virtual std::vector<std::optional<std::chrono::microseconds>> PingAll(
      std::chrono::milliseconds timeout) = 0;
  virtual ReplicatorStats stats() const = 0;
};

}  // namespace coffer::replicator
