// Filesystem: several boxes on one store — this box's record and heartbeat, the records of the
// others, retiring and lapsing boxes (see filesystem.h, box_registry.h).
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <chrono>

#include <spdlog/spdlog.h>

#include "common/bytes.h"
#include "common/error.h"
#include "common/version.h"
#include "fs/filesystem.h"

namespace coffer::fs {

namespace {

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

std::string Hex(std::uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

}  // namespace

void Filesystem::LoadBoxes() {
  std::lock_guard lock(mu_);
  local_->Scan(Table::kMeta, [&](std::string_view key, std::string_view value) {
    if (key.substr(0, 4) != kBoxKeyPrefix) return;
    if (key.size() != 12) throw Error(EBADMSG, "malformed box record key in store");
    const std::uint64_t box = FromBigEndian64(key.substr(4));
    auto plain = crypto::Open(keys_, crypto::ObjectKind::kBoxRecord, ids_.Box(box), value);
    proto::BoxRecord rec;
    if (!plain || !rec.ParseFromString(*plain) || rec.box_id() != box)
      throw Error(EBADMSG, "box record " + Hex(box) + " fails authentication");
    boxes_.Merge(rec);
  });
}

bool Filesystem::ApplyBoxRecord(const RemoteRecord& rec) {
  if (rec.tombstone) return false;  // box records are never deleted
  if (!boxes_.Merge(rec.box)) return false;
  local_rows_.push_back(Mutation{Table::kMeta, BoxKey(rec.box.box_id()), rec.sealed});
  const proto::BoxRecord& b = rec.box;
  if (b.box_id() == box_id_ && !BoxRegistry::Counts(b) && stop_reason_.empty()) {
    stop_reason_ = std::string("this box (") + Hex(box_id_) + ") was marked " +
                   StateName(b.state()) + " by box " + Hex(b.changed_by()) + ": " + b.reason();
    spdlog::error("{}; it writes nothing more: unmount it, and mount with an empty STATE_DIR to "
                  "join the store again as a new box",
                  stop_reason_);
  } else if (b.box_id() != box_id_ && (b.state() == proto::BoxRecord::RETIRED ||
                                       b.state() == proto::BoxRecord::LAPSED)) {
    spdlog::info("box {} is now {}: {}", Hex(b.box_id()), StateName(b.state()), b.reason());
  }
  return true;
}

void Filesystem::CheckOwnRecord() {
  std::lock_guard lock(mu_);
  const proto::BoxRecord* own = boxes_.Find(box_id_);
  if (!own || BoxRegistry::Counts(*own)) return;
  throw Error(ESTALE, std::string("this STATE_DIR belongs to box ") + Hex(box_id_) +
                          ", which box " + Hex(own->changed_by()) + " marked " +
                          StateName(own->state()) + " (" + own->reason() +
                          "): deletes made since may be gone from the storage nodes, so this "
                          "box's index cannot be trusted. Move the STATE_DIR aside (its outbox "
                          "may hold changes that never reached the nodes) and mount with an empty "
                          "one: the box rebuilds from the nodes as a new box");
}

void Filesystem::WriteBoxRecord(proto::BoxRecord rec) {
  const Version v = Tick();
  rec.mutable_version()->set_hlc(v.hlc);
  rec.mutable_version()->set_box_id(v.box_id);
  boxes_.Merge(rec);
  RecordWrite w;
  w.id = ids_.Box(rec.box_id());
  w.kind = crypto::ObjectKind::kBoxRecord;
  w.version = v;
  w.plaintext = std::make_shared<const std::string>(rec.SerializeAsString());
  w.table = Table::kMeta;
  w.key = BoxKey(rec.box_id());
  box_writes_.push_back(std::move(w));
  pipeline_->Touched();
}

void Filesystem::Heartbeat(bool stopping) {
  if (!remote_ || options_.read_only) return;
  std::lock_guard lock(mu_);
  if (!stop_reason_.empty()) return;  // marked by another box: its mark stays
  if (stopping && !registered_) return;  // it never said it was here
  registered_ = !stopping;
  proto::BoxRecord rec;
  rec.set_box_id(box_id_);
  rec.set_state(stopping ? proto::BoxRecord::STOPPED : proto::BoxRecord::ACTIVE);
  rec.set_hostname(Hostname());
  rec.set_mountpoint(options_.mountpoint);
  rec.set_software(std::string("cofferfs ") + kVersion);
  rec.set_started_unix(started_unix_);
  rec.set_heartbeat_unix(WallNs() / 1000000000);
  rec.set_caught_up_unix_ms(caught_up_ms_);
  *rec.mutable_cursors() = recovery_->SavedCursors();
  WriteBoxRecord(std::move(rec));
}

std::vector<proto::BoxRecord> Filesystem::Boxes() {
  std::lock_guard lock(mu_);
  return boxes_.All();
}

int Filesystem::RetireBox(std::uint64_t box_id, bool force, std::string* message) {
  std::uint64_t seq;
  {
    std::lock_guard lock(mu_);
    if (!remote_) {
      *message = "a local-only mount has no other boxes";
      return EINVAL;
    }
    if (options_.read_only || !stop_reason_.empty()) {
      *message = "this box does not write: retire the box from a writable one";
      return EROFS;
    }
    if (box_id == box_id_) {
      *message = "a box cannot retire itself: unmount it, and retire it from another box";
      return EINVAL;
    }
    const proto::BoxRecord* known = boxes_.Find(box_id);
    if (!known) {
      *message = "no box " + Hex(box_id) + " is known to this box (cofferctl boxes lists them)";
      return ENOENT;
    }
    if (known->state() == proto::BoxRecord::RETIRED) {
      *message = "box " + Hex(box_id) + " is already retired";
      return EALREADY;
    }
    const std::int64_t age = WallNs() / 1000000000 - known->heartbeat_unix();
    const std::int64_t recent = 3 * options_.heartbeat_interval.count();
    if (known->state() == proto::BoxRecord::ACTIVE && age < recent && !force) {
      *message = "box " + Hex(box_id) + " on " + known->hostname() + " sent a heartbeat " +
                 std::to_string(age) + " s ago: it is mounted; unmount it first (or force)";
      return EBUSY;
    }
    proto::BoxRecord rec = *known;
    rec.set_state(proto::BoxRecord::RETIRED);
    rec.set_changed_by(box_id_);
    rec.set_reason("retired by an operator on " + Hostname());
    WriteBoxRecord(std::move(rec));
    seq = open_seq_;
  }
  if (int rc = pipeline_->Wait(seq)) {
    *message = "the retirement did not reach enough storage nodes: " + std::string(strerror(rc));
    return rc;
  }
  *message = "box " + Hex(box_id) + " retired";
  spdlog::info("{} (it no longer holds back the collection of deletes)", *message);
  return 0;
}

void Filesystem::LoadDeferredChunks() {
  std::lock_guard lock(mu_);
  local_->Scan(Table::kMeta, [&](std::string_view key, std::string_view value) {
    if (key.substr(0, 3) != kGcKeyPrefix) return;
    auto id = crypto::IdFromBytes(key.substr(3));
    if (!id || value.size() != 8) throw Error(EBADMSG, "malformed deferred chunk row in store");
    deferred_chunks_[*id] = static_cast<std::int64_t>(FromBigEndian64(value));
  });
  if (!deferred_chunks_.empty())
    spdlog::info("{} deleted chunks wait until every box has caught up", deferred_chunks_.size());
}

std::size_t Filesystem::ReleaseDeferredChunks() {
  std::lock_guard lock(mu_);
  if (deferred_chunks_.empty() || options_.read_only || !stop_reason_.empty()) return 0;
  const std::int64_t floor = CaughtUpFloor();
  std::size_t released = 0;
  for (auto it = deferred_chunks_.begin(); it != deferred_chunks_.end();) {
    if (it->second >= floor) {
      ++it;
      continue;
    }
    deleted_chunks_[it->first] = Tick();
    local_rows_.push_back(
        Mutation{Table::kMeta, GcKey(it->first), std::nullopt});
    it = deferred_chunks_.erase(it);
    ++released;
  }
  if (released) pipeline_->Touched();
  return released;
}

std::int64_t Filesystem::CaughtUpFloor() const {
  return std::min(caught_up_ms_,
                  boxes_.OthersCaughtUpFloor(box_id_, options_.clock_margin.count()));
}

bool Filesystem::EveryBoxCaughtUpAfter(std::int64_t t_ms) {
  std::lock_guard lock(mu_);
  return CaughtUpFloor() > t_ms;
}

bool Filesystem::LapseStaleBoxes() {
  std::uint64_t seq = 0;
  std::size_t marked = 0;
  {
    std::lock_guard lock(mu_);
    if (options_.read_only || !stop_reason_.empty()) return false;
    const std::int64_t now_ms = WallNs() / 1000000;
    const std::int64_t grace_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(options_.tombstone_grace).count() +
        options_.lapse_slack.count();
    for (proto::BoxRecord rec : boxes_.Stale(box_id_, now_ms, grace_ms)) {
      const std::int64_t secs = (now_ms - BoxRegistry::CaughtUpMs(rec)) / 1000;
      const std::string away = secs >= 2 * 86400 ? std::to_string(secs / 86400) + " days"
                                                 : std::to_string(secs) + " s";
      spdlog::warn("box {} on {} has not caught up with the storage nodes for {}, longer than "
                   "the tombstone grace: marked LAPSED (it must rebuild before it mounts again) "
                   "so that deletes it has not seen can be collected",
                   Hex(rec.box_id()), rec.hostname(), away);
      rec.set_state(proto::BoxRecord::LAPSED);
      rec.set_changed_by(box_id_);
      rec.set_reason("not caught up for " + away + " (tombstone grace " +
                     std::to_string(options_.tombstone_grace.count()) + " s)");
      WriteBoxRecord(std::move(rec));
      ++marked;
    }
    seq = open_seq_;
  }
  if (marked == 0) return true;
  return pipeline_->Wait(seq) == 0;
}

std::int64_t Filesystem::caught_up_ms() {
  std::lock_guard lock(mu_);
  return caught_up_ms_;
}

std::string Filesystem::BoxFields() {
  const auto escape = [](const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
      if (std::isalnum(c) || c == '.' || c == '_' || c == '/' || c == '-') {
        out += static_cast<char>(c);
      } else {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%%%02X", c);
        out += buf;
      }
    }
    return out;
  };
  std::lock_guard lock(mu_);
  const proto::BoxRecord* own = boxes_.Find(box_id_);
  std::string s = " box=" + Hex(box_id_) + " box_state=" +
                  (!stop_reason_.empty() && own ? StateName(own->state())
                   : options_.read_only        ? "READ-ONLY"
                                               : "ACTIVE") +
                  " boxes=" + std::to_string(boxes_.size()) +
                  " chunks_awaiting_boxes=" + std::to_string(deferred_chunks_.size());
  for (const proto::BoxRecord& b : boxes_.All()) {
    s += " box." + Hex(b.box_id()) + "=" + StateName(b.state()) + "," +
         std::to_string(b.heartbeat_unix()) + "," +
         std::to_string(b.box_id() == box_id_ ? caught_up_ms_ : b.caught_up_unix_ms()) + "," +
         escape(b.hostname()) + "," + escape(b.mountpoint());
  }
  return s;
}

std::string Filesystem::stop_reason() {
  std::lock_guard lock(mu_);
  return stop_reason_;
}

}  // namespace coffer::fs
