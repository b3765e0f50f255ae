// The registry of access boxes (see box_registry.h).
#include "fs/box_registry.h"

#include <algorithm>
#include <climits>

namespace coffer::fs {

namespace {
replicator::Version VersionOf(const proto::BoxRecord& rec) {
  return replicator::Version{rec.version().hlc(), rec.version().box_id()};
}
}  // namespace

bool BoxRegistry::Merge(const proto::BoxRecord& rec) {
  auto [it, inserted] = boxes_.try_emplace(rec.box_id(), rec);
  if (inserted) return true;
  if (!(VersionOf(it->second) < VersionOf(rec))) return false;
  it->second = rec;
  return true;
}

const proto::BoxRecord* BoxRegistry::Find(std::uint64_t box_id) const {
  auto it = boxes_.find(box_id);
  return it == boxes_.end() ? nullptr : &it->second;
}

std::vector<proto::BoxRecord> BoxRegistry::All() const {
  std::vector<proto::BoxRecord> out;
  out.reserve(boxes_.size());
  for (const auto& [id, rec] : boxes_) out.push_back(rec);
  return out;
}

bool BoxRegistry::Counts(const proto::BoxRecord& rec) {
  return rec.state() != proto::BoxRecord::RETIRED && rec.state() != proto::BoxRecord::LAPSED;
}

std::int64_t BoxRegistry::CaughtUpMs(const proto::BoxRecord& rec) {
  return rec.caught_up_unix_ms() ? rec.caught_up_unix_ms() : rec.started_unix() * 1000;
}

std::int64_t BoxRegistry::OthersCaughtUpFloor(std::uint64_t self, std::int64_t margin_ms) const {
  std::int64_t floor = INT64_MAX;
  for (const auto& [id, rec] : boxes_) {
    if (id == self || !Counts(rec)) continue;
    floor = std::min(floor, rec.caught_up_unix_ms() - margin_ms);
  }
  return floor;
}

std::vector<proto::BoxRecord> BoxRegistry::Stale(std::uint64_t self, std::int64_t now_ms,
                                                 std::int64_t grace_ms) const {
  std::vector<proto::BoxRecord> out;
  for (const auto& [id, rec] : boxes_) {
    if (id == self || !Counts(rec)) continue;
    if (CaughtUpMs(rec) < now_ms - grace_ms) out.push_back(rec);
  }
  return out;
}

const char* StateName(proto::BoxRecord::State s) {
  switch (s) {
    case proto::BoxRecord::ACTIVE: return "ACTIVE";
    case proto::BoxRecord::STOPPED: return "STOPPED";
    case proto::BoxRecord::RETIRED: return "RETIRED";
    case proto::BoxRecord::LAPSED: return "LAPSED";
    default: return "UNKNOWN";
  }
}

}  // namespace coffer::fs
