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
}

void Maintenance::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
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
    report = fs_.remote()->Scrub(
        [this](std::uint64_t, std::uint64_t) {
          std::lock_guard lock(mu_);
          if (stopping_) throw Cancelled{};
        },
        !options_.read_only);
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

void Maintenance::Loop() {
  auto next_scrub = Clock::now() + options_.scrub_interval;
  auto next_follow = Clock::now() + options_.follow_interval;
  while (true) {
    {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, options_.maintenance_interval, [&] { return stopping_; })) return;
    }
    try {
      if (!options_.read_only) fs_.chunks().EvictNow();
      if (fs_.remote() && Clock::now() >= next_follow) {
        next_follow = Clock::now() + options_.follow_interval;
        CatchUpResult r = fs_.CatchUp();
        std::lock_guard lock(mu_);
        status_.last_catch_up_unix = UnixNow();
        status_.catch_up_applied += r.applied;
      }
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
