// Object ids of cofferfs records on the storage nodes, and the hybrid logical clock that
// versions them (DESIGN.md "Versions", "Object ids").
//
// Ids. Chunks have random ids. The store meta record is object 0. An inode record's id is its
// inode number (8 bytes) followed by an 8-byte keyed tag, so that a box rebuilding from the nodes
// tells records from chunks by id alone, without fetching them; to the nodes all ids look alike.
// Stores of format 1 also have directory entry records, whose id is a keyed hash of (parent,
// name) with a tag of its own. Each access box has a record (registration, heartbeat) whose id is
// a keyed hash of its box id with a tag of its own. Keyed hashes go through the typed name key (common/crypto).
//
// Clock. Each tick is max(previous + 1, wall clock in ns), so versions of one box are unique and
// increasing even when its clock jumps back; Observe() moves it past versions seen elsewhere.
//
// Thread safety: RecordIds is immutable after construction; Hlc is lock-free and may be used
// from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include "common/crypto.h"

namespace coffer::fs {

class RecordIds {
 public:
  // `key` must outlive this object (it lives in the filesystem's keyring).
  explicit RecordIds(const crypto::NameKey& key) : key_(key) {}

  enum class Kind { kMeta, kInode, kLegacyDirent, kBox, kChunk };

  static crypto::ObjectId Meta() { return crypto::ObjectId{}; }
  crypto::ObjectId Inode(std::uint64_t ino) const;
  crypto::ObjectId LegacyDirent(std::uint64_t parent, std::string_view name) const;
  // An access box's record: a keyed hash of its box id (the nodes do not learn box ids).
  crypto::ObjectId Box(std::uint64_t box_id) const;
  // The inode number a new directory `name` in `parent` gets when it is free: a keyed hash, so
  // that two boxes creating the same directory at once (the first mail for a new user delivered
  // on both) create the same inode, whose records merge, instead of two that claim one name.
  std::uint64_t DirIno(std::uint64_t parent, std::string_view name) const;
  // The inode number of an inode record id (meaningful only when Classify says kInode).
  static std::uint64_t InoOf(const crypto::ObjectId& id);
  Kind Classify(const crypto::ObjectId& id) const;

 private:
  const crypto::NameKey& key_;
};

class Hlc {
 public:
  // The next version's clock.
  std::uint64_t Tick();
  // Never tick at or below `hlc` again.
  void Observe(std::uint64_t hlc);
  std::uint64_t last() const { return last_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> last_{0};
};

// Wall clock in nanoseconds since the epoch.
std::int64_t WallNs();

}  // namespace coffer::fs
