// Background work of a mounted box with storage nodes (one thread): following the nodes' change
// feeds (catch-up, every follow_interval; the cursors advance past this box's own writes), cache
// eviction, and the periodic scrub (re-replication, tombstone collection). A read-only mount
// follows the feeds but writes nothing to the nodes: its scrub only reports, and it evicts
// nothing.
//
// Thread safety: ScrubNow and status from any thread. An unmount (Stop) interrupts a running
// scrub.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
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

  Filesystem& fs_;
  const Options& options_;
  mutable std::mutex mu_;  // guards everything below; a leaf lock
  std::condition_variable cv_;
  bool stopping_ = false;
  MaintenanceStatus status_;
  std::thread thread_;
  std::mutex scrub_mu_;  // one scrub at a time (taken before mu_, never while holding it)
};

}  // namespace coffer::fs
