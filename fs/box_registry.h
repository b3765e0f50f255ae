// The registry of access boxes that mount one store (DESIGN.md "Several access boxes"): every
// box writes a record of its own (fs/records.proto BoxRecord) at mount, every heartbeat and at
// unmount, and learns the others' from the nodes' feeds. The registry answers what the garbage
// collection of deletes must know: has every box that may still come back applied everything
// that was on the nodes at a given time?
//
// A box counts until it is retired (by an operator, from another box) or lapsed: out of touch
// (no complete catch-up) for longer than the grace. A scrub marks such a box LAPSED on the nodes
// before it collects anything the box has not seen; the box reads the mark when it comes back
// and refuses to mount: it must rebuild (its STATE_DIR may hold messages deleted meanwhile).
//
// No I/O and no locking: the filesystem owns it under its mutex.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fs/records.pb.h"
#include "replicator/version.h"

namespace coffer::fs {

class BoxRegistry {
 public:
  // Takes `rec` if it is newer (by version) than what is known of its box. Returns true if it was.
  bool Merge(const proto::BoxRecord& rec);
  const proto::BoxRecord* Find(std::uint64_t box_id) const;
  std::vector<proto::BoxRecord> All() const;
  std::size_t size() const { return boxes_.size(); }

  // Boxes that still count: neither retired nor lapsed.
  static bool Counts(const proto::BoxRecord& rec);
  // When a box last caught up (ms since the epoch): its last complete catch-up, or, before its
  // first one, when it started.
  static std::int64_t CaughtUpMs(const proto::BoxRecord& rec);

  // Every box that counts, other than `self`, has applied every change made before the
  // returned time (ms since the epoch): the earliest of their catch-ups less `margin_ms` (clocks
  // of different boxes differ by up to the margin); INT64_MAX when there is none. `self` is
  // judged by the caller.
  std::int64_t OthersCaughtUpFloor(std::uint64_t self, std::int64_t margin_ms) const;
  // Calls `fn` with every record (no copies).
  template <class Fn>
  void ForEach(Fn&& fn) const {
    for (const auto& [id, rec] : boxes_) fn(rec);
  }
  // Boxes that count, other than `self`, that last caught up before `now_ms` - `grace_ms`.
  std::vector<proto::BoxRecord> Stale(std::uint64_t self, std::int64_t now_ms,
                                      std::int64_t grace_ms) const;

 private:
  std::map<std::uint64_t, proto::BoxRecord> boxes_;
};

// "ACTIVE", "STOPPED", "RETIRED", "LAPSED".
const char* StateName(proto::BoxRecord::State s);

}  // namespace coffer::fs
