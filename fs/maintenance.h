// Background work of a mounted box with storage nodes, on two threads. The follower reads the
// nodes' change feeds every follow_interval (catch-up: changes of other boxes appear here within
// about that long; the cursors advance past this box's own writes) and writes this box's
// heartbeat record every heartbeat_interval. The other thread evicts cached chunks and runs the
// periodic scrub (re-replication, tombstone collection), which may take long without holding up
// the follower. A read-only mount follows the feeds but writes nothing to the nodes: no
// heartbeat, its scrub only reports, and it evicts nothing.
//
// Collection of deletes with several boxes: a tombstone is dropped only once every box that
// counts (box_registry.h) has applied everything that was on the nodes when a scrub listed it —
// in the same scrub when only this box counts, else in the next one (other boxes report their
// progress with their heartbeats). Boxes out of touch for longer than the grace are marked
// LAPSED first.
//
// Thread safety: ScrubNow and status from any thread. An unmount (Stop) interrupts a running
// scrub.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>

#include "replicator/backend.h"

namespace coffer::fs {

class Filesystem;
struct Options;

struct MaintenanceStatus {
  std::int64_t last_scrub_unix = 0;
  replicator::ScrubReport last_scrub;
  bool scrubbing = false;
  std::int64_t last_catch_up_unix = 0;
  std::uint64_t catch_up_applied = 0;  // records from the nodes applied since the mount
};

class Maintenance {
 public:
  // `fs` must outlive this object (the Filesystem owns it).
  Maintenance(Filesystem& fs, const Options& options);
  ~Maintenance();
  void Start();
  void Stop();
  replicator::ScrubReport ScrubNow();
  MaintenanceStatus status() const;

 private:
  void Loop();
  void FollowLoop();
  // Scrub's question before a tombstone is collected (see the file comment).
  bool MayCollect(const crypto::ObjectId& id);

  Filesystem& fs_;
  const Options& options_;
  mutable std::mutex mu_;  // guards everything below; a leaf lock
  std::condition_variable cv_;
  bool stopping_ = false;
  MaintenanceStatus status_;
  std::thread thread_;
  std::thread follower_;
  std::mutex scrub_mu_;  // one scrub at a time (taken before mu_, never while holding it)
  // The collection gate's state, by scrub_mu_: tombstones the previous and the running scrub
  // listed, and when they listed them (ms since the epoch; 0: not yet).
  std::set<crypto::ObjectId> listed_before_, listed_now_;
  std::int64_t before_ms_ = 0, now_ms_ = 0;
  bool lapsed_ok_ = false;  // this scrub's LAPSED marks are durable
};

}  // namespace coffer::fs
