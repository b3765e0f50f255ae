// Background work (see maintenance.h).
#include "fs/maintenance.h"

#include <spdlog/spdlog.h>

#include "fs/filesystem.h"

namespace coffer::fs {

namespace {
using Clock = std::chrono::steady_clock;
std::int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Maintenance::Maintenance(Filesystem& fs, const Options& options) : fs_(fs), options_(options) {}

Maintenance::~Maintenance() { Stop(); }

void Maintenance::Start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
  if (fs_.remote()) follower_ = std::thread([this] { FollowLoop(); });
}

void Maintenance::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (follower_.joinable()) follower_.join();
}

MaintenanceStatus Maintenance::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

replicator::ScrubReport Maintenance::ScrubNow() {
  std::lock_guard one(scrub_mu_);
  {
    std::lock_guard lock(mu_);
    status_.scrubbing = true;
  }
  struct Cancelled {};
  replicator::ScrubReport report;
  try {
    // An unmount must not wait for a long scrub: the progress callback ends it.
    listed_now_.clear();
    now_ms_ = 0;
    // Boxes out of touch for longer than the grace no longer hold back collection, once they
    // are marked (they must rebuild).
    lapsed_ok_ = !options_.read_only && fs_.LapseStaleBoxes();
    report = fs_.remote()->Scrub(
        [this](std::uint64_t, std::uint64_t) {
          std::lock_guard lock(mu_);
          if (stopping_) throw Cancelled{};
        },
        !options_.read_only, [this](const crypto::ObjectId& id, const replicator::Version&) {
          return MayCollect(id);
        });
    listed_before_ = std::move(listed_now_);
    listed_now_.clear();
    before_ms_ = now_ms_;
  } catch (const Cancelled&) {
    std::lock_guard lock(mu_);
    status_.scrubbing = false;
    spdlog::info("scrub interrupted by the unmount");
    return report;
  } catch (...) {
    std::lock_guard lock(mu_);
    status_.scrubbing = false;
    throw;
  }
  spdlog::info("scrub: {} objects checked, {} differing, {} repaired, {} moved, {} tombstones "
               "collected, {} with a replica on an unreachable node, {} unrecoverable",
               report.checked, report.differing, report.repaired, report.moved, report.collected,
               report.unreachable, report.unrecoverable);
  std::lock_guard lock(mu_);
  status_.scrubbing = false;
  status_.last_scrub = report;
  status_.last_scrub_unix = UnixNow();
  return report;
}

bool Maintenance::MayCollect(const crypto::ObjectId& id) {
  // scrub_mu_ is held (called from ScrubNow's scrub).
  if (!lapsed_ok_) return false;
  if (now_ms_ == 0) {
    // The listing is complete: everything it named was on the nodes by now. This box's own
    // catch-up runs every follow_interval; wait for one that started after it (a few seconds
    // at most, else nothing is collected this time).
    now_ms_ = WallNs() / 1000000;
    const auto deadline = Clock::now() + std::max<std::chrono::milliseconds>(
                                             4 * options_.follow_interval, std::chrono::seconds(5));
    while (fs_.caught_up_ms() <= now_ms_ && Clock::now() < deadline) {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return stopping_; })) break;
    }
  }
  listed_now_.insert(id);
  if (fs_.EveryBoxCaughtUpAfter(now_ms_)) return true;
  return before_ms_ != 0 && listed_before_.count(id) && fs_.EveryBoxCaughtUpAfter(before_ms_);
}

void Maintenance::FollowLoop() {
  auto next_heartbeat = Clock::now();
  while (true) {
    try {
      CatchUpResult r = fs_.CatchUp();
      {
        std::lock_guard lock(mu_);
        status_.last_catch_up_unix = UnixNow();
        status_.catch_up_applied += r.applied;
      }
      fs_.ReleaseDeferredChunks();
      if (Clock::now() >= next_heartbeat) {
        next_heartbeat = Clock::now() + options_.heartbeat_interval;
        fs_.Heartbeat();
      }
    } catch (const std::exception& e) {
      spdlog::error("following the storage nodes' feeds: {}", e.what());
    }
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, options_.follow_interval, [&] { return stopping_; })) return;
  }
}

void Maintenance::Loop() {
  auto next_scrub = Clock::now() + options_.scrub_interval;
  while (true) {
    {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, options_.maintenance_interval, [&] { return stopping_; })) return;
    }
    try {
      if (!options_.read_only) fs_.chunks().EvictNow();
      if (fs_.remote() && options_.scrub_interval.count() > 0 && Clock::now() >= next_scrub) {
        next_scrub = Clock::now() + options_.scrub_interval;
        ScrubNow();
      }
    } catch (const std::exception& e) {
      spdlog::error("background work: {}", e.what());
    }
  }
}

}  // namespace coffer::fs
