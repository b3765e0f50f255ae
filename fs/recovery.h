// Recovery and catch-up: how an access box becomes and stays a replica of the store on the
// nodes (DESIGN.md "Local state on an access box").
//
//   Open     STATE_DIR's store meta, checked with the key; when STATE_DIR is empty and the
//            nodes hold a store, STATE_DIR is rebuilt from the nodes' feeds read from zero
//            (every object's newest change), which is the catch-up path with no cursors.
//   Load     every inode record in STATE_DIR (and, store format 1, every directory entry) into
//            the inode table.
//   ReadChanges  the nodes' feeds from the saved cursors: every record whose claimed version
//            is newer than this box's is resolved to its newest authenticated copy (a claim
//            alone changes nothing) and returned for the facade to apply; the cursors reached
//            are returned for it to save in the same local commit.
//   Verify   the tree against what the nodes hold.
// An acknowledged change is on W nodes, so reading the feeds of all but W-1 nodes sees every
// one; a rebuild refuses to start with fewer, a box with its own state mounts and catches up
// later.
//
// Thread safety: Recovery holds no lock of its own; the functions that look at the inode
// table take a `local_version` callback that does its own locking.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/crypto.h"
#include "fs/ids.h"
#include "fs/inode_table.h"
#include "fs/records.pb.h"
#include "fs/store.h"
#include "replicator/backend.h"

namespace coffer::fs {

inline constexpr std::uint32_t kStoreFormatV1 = 1;  // directory entry records
inline constexpr std::uint32_t kStoreFormat = 2;    // names in inode records

// A record as the nodes hold it (its newest authenticated version), ready to apply.
struct RemoteRecord {
  crypto::ObjectId id{};
  RecordIds::Kind kind = RecordIds::Kind::kInode;
  Version version;
  bool tombstone = false;
  std::string sealed;         // live: the bytes to keep in STATE_DIR
  proto::InodeRecord inode;   // kind kInode, live
  proto::DirEntry dirent;     // kind kLegacyDirent, live (store format 1)
  proto::BoxRecord box;       // kind kBox, live
};

struct CatchUpResult {
  std::size_t nodes = 0, answered = 0, needed = 0;
  std::size_t listed = 0;      // changed ids the feeds named
  std::size_t fetched = 0;     // resolved to an authenticated copy newer than this box's
  std::size_t applied = 0;     // changed the tree
  std::size_t unbacked = 0;    // named, but no node backs the claim
  std::size_t unavailable = 0; // a holder of a newer claim did not answer (retried later)
  bool complete() const { return answered >= needed && unavailable == 0; }
};

struct ChangesRead {
  std::vector<RemoteRecord> records;
  proto::FeedCursors cursors;  // where the feeds were read to (save with the records)
  CatchUpResult result;
};

// What `Verify` found (cofferctl verify).
struct VerifyReport {
  std::uint64_t objects = 0;       // objects the local tree references
  std::uint64_t ok = 0;            // on the nodes with the same version (and digest)
  std::uint64_t pending = 0;       // changed here, still in the outbox
  std::uint64_t missing = 0;       // on no node
  std::uint64_t stale = 0;         // nodes hold an authenticated newer version or tombstone
  std::uint64_t corrupt = 0;       // digest differs from the local copy
  std::uint64_t under_quorum = 0;  // on fewer than W nodes
  std::uint64_t extra = 0;         // live records on the nodes that the tree does not have
  std::uint64_t unchecked = 0;     // disagreeing claims that could not be resolved (no answer)
  std::size_t nodes = 0, answered = 0;
  std::vector<std::string> liars;     // nodes caught lying (forged or rolled-back versions)
  std::vector<std::string> problems;  // the first few, readable
  bool clean() const {
    return missing == 0 && stale == 0 && corrupt == 0 && under_quorum == 0 && extra == 0 &&
           unchecked == 0 && liars.empty() && answered == nodes;
  }
};

// What this box's tree holds, for Verify: object id -> (version hlc, chunk?, description).
struct Expected {
  std::uint64_t hlc = 0;
  bool chunk = false;
  std::string what;
};

struct StoreIdentity {
  std::uint64_t box_id = 0;
  std::uint32_t chunk_size = 64 << 10;
  std::uint32_t format = kStoreFormat;
  bool rebuilt = false;  // STATE_DIR was rebuilt from the nodes just now
};

class Recovery {
 public:
  // Every reference must outlive the object; `remote` may be null.
  Recovery(const crypto::Keyring& keys, const std::string& fingerprint, LmdbStore& local,
           replicator::Backend* remote, const RecordIds& ids);

  // The store in STATE_DIR (rebuilt from the nodes first when STATE_DIR is empty), or nullopt
  // when there is no store anywhere yet (the caller initialises one). Throws coffer::Error:
  // EACCES another key, EBADMSG damaged or foreign data, EAGAIN too few nodes to rebuild.
  std::optional<StoreIdentity> Open();

  // Loads STATE_DIR into `table` (empty) and returns the newest version seen (for the clock).
  // Format 1: names come from the directory entry rows. Throws EBADMSG for a record that fails
  // authentication.
  Version Load(InodeTable* table, std::uint32_t format);

  // The saved feed cursors (none on a fresh STATE_DIR).
  proto::FeedCursors SavedCursors();
  // See the file comment. `local_version(id)`: the version of that record this box holds, if
  // any (called from this thread).
  ChangesRead ReadChanges(const proto::FeedCursors& from,
                          const std::function<std::optional<Version>(const crypto::ObjectId&)>&
                              local_version);

  VerifyReport Verify(const std::map<crypto::ObjectId, Expected>& expected,
                      const std::function<bool(const crypto::ObjectId&)>& in_outbox);

 private:
  // Rebuilds an empty STATE_DIR from the nodes. false: the nodes hold no store at all.
  bool Rebuild();
  // Opens the sealed store meta; throws EACCES/EBADMSG.
  proto::StoreMeta OpenMeta(const std::string& sealed, const std::optional<std::string>& stored_fpr);
  // Resolves `listed` (windowed) into authenticated records: from the claims, or
  // (`newest_on_replicas`) from what every replica holds now.
  std::vector<replicator::GetResult> ResolveAll(const std::vector<replicator::Listed>& listed,
                                                bool log_progress, bool newest_on_replicas);

  const crypto::Keyring& keys_;
  const std::string& fingerprint_;
  LmdbStore& local_;
  replicator::Backend* remote_;
  const RecordIds& ids_;
};

// Keys of STATE_DIR rows shared by Recovery and the facade.
inline constexpr const char* kMetaKey = "meta";
inline constexpr const char* kFingerprintKey = "fingerprint";
inline constexpr const char* kClockKey = "hlc";
inline constexpr const char* kCursorsKey = "cursors";
// Box records (Table::kMeta): this prefix and the box id (8 bytes, big-endian).
inline constexpr const char* kBoxKeyPrefix = "box:";
// Chunks whose delete waits for every box (Table::kMeta): this prefix and the chunk id (16
// bytes) -> when it was deleted (ms since the epoch, 8 bytes big-endian).
inline constexpr const char* kGcKeyPrefix = "gc:";
std::string GcKey(const crypto::ObjectId& chunk);
std::string BoxKey(std::uint64_t box_id);

}  // namespace coffer::fs
