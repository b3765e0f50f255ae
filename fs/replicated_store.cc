// ReplicatedStore (see replicated_store.h).
#include "fs/replicated_store.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "fs/records.pb.h"
#include "replicator/digest.h"

namespace coffer::fs {

namespace {

using Clock = std::chrono::steady_clock;


std::int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Chunks are immutable and their rows keep no version of their own: an eviction check re-PUTs
// them at the version sealed into them (format 2), which a node holding it answers with "not
// newer" and a node missing it stores. A format 1 chunk carries none and is re-PUT at the lowest
// version (any real version and any tombstone is newer; scrub lifts it to the newest).
replicator::Version SealedVersion(std::string_view sealed) {
  auto info = crypto::Inspect(sealed);
  if (!info || !info->version) return replicator::Version{1, 0};
  return replicator::Version{info->version->hlc, info->version->box_id};
}

}  // namespace

std::unique_ptr<ReplicatedStore> ReplicatedStore::Open(const std::string& dir,
                                                       replicator::ReplicatorOptions replicator,
                                                       ReplicatedStoreOptions options) {
  if (!replicator.verifier) throw Error(EINVAL, "ReplicatedStore needs a verifier");
  std::unique_ptr<ReplicatedStore> store(new ReplicatedStore());
  store->options_ = options;
  store->local_ = LmdbStore::Open(dir);
  store->LoadState();
  store->replicator_ = std::make_unique<replicator::Replicator>(std::move(replicator));
  // Connections come up asynchronously: give every node a moment to answer before the first
  // commit or rebuild, so that a healthy cluster does not start out looking degraded.
  const auto deadline = Clock::now() + options.connect_wait;
  std::size_t up = 0;
  do {
    auto pings = store->replicator_->PingAll(std::chrono::milliseconds(300));
    up = static_cast<std::size_t>(std::count_if(pings.begin(), pings.end(),
                                                [](const auto& p) { return p.has_value(); }));
    if (up == pings.size()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (Clock::now() < deadline);
  const std::size_t total = store->replicator_->transport().size();
  if (up < total) {
    spdlog::warn("{} of {} storage nodes answer", up, total);
  } else {
    spdlog::info("all {} storage nodes answer", total);
  }
  return store;
}

ReplicatedStore::~ReplicatedStore() { Stop(); }

void ReplicatedStore::LoadState() {
  std::size_t damaged = 0;
  local_->Scan(Table::kOutbox, [&](std::string_view key, std::string_view value) {
    auto id = crypto::IdFromBytes(key);
    proto::OutboxEntry e;
    // An entry only says what to send (the bytes are in their own table): a damaged one is
    // dropped with an error rather than keeping the mailstore from mounting; verify and scrub
    // show what the nodes then lack.
    if (!id || !e.ParseFromArray(value.data(), static_cast<int>(value.size())) ||
        e.table() > static_cast<std::uint32_t>(Table::kChunks) || e.key().size() > 64) {
      ++damaged;
      return;
    }
    Pending p;
    p.seq = e.seq();
    p.table = static_cast<Table>(e.table());
    p.key = e.key();
    p.version = {e.version().hlc(), e.version().box_id()};
    p.tombstone = e.tombstone();
    p.sealed_tombstone = e.sealed_tombstone();
    p.queued_ms = e.queued_unix_ms();
    p.committed = true;
    seq_ = std::max(seq_, p.seq);
    outbox_seqs_.insert(p.seq);
    outbox_[*id] = std::move(p);
  });
  local_->Scan(Table::kChunks, [&](std::string_view key, std::string_view value) {
    auto id = crypto::IdFromBytes(key);
    if (id) TouchCache(*id, value.size());
  });
  if (damaged) {
    spdlog::error("{} damaged outbox entries ignored: run `cofferctl verify` to see what the "
                  "storage nodes lack",
                  damaged);
  }
  if (!outbox_.empty()) {
    spdlog::warn("{} changes from before the restart are not yet on enough storage nodes; "
                 "replaying them",
                 outbox_.size());
  }
}

std::optional<std::string> ReplicatedStore::Get(Table table, std::string_view key) {
  auto value = local_->Get(table, key);
  if (table != Table::kChunks) return value;
  auto id = crypto::IdFromBytes(key);
  if (!id) return value;
  {
    std::lock_guard lock(mu_);
    if (value) {
      TouchCache(*id, value->size());
      return value;
    }
    if (auto it = fetched_.find(*id); it != fetched_.end()) return it->second;
  }
  replicator::GetResult r = replicator_->Get(*id);
  if (r.status == replicator::GetStatus::kFound && !r.object.tombstone) {
    std::lock_guard lock(mu_);
    TouchCache(*id, r.object.sealed.size());
    ++fetched_count_;
    fetched_[*id] = r.object.sealed;
    return std::move(r.object.sealed);
  }
  if (r.status == replicator::GetStatus::kUnavailable) {
    throw Error(EIO, "chunk " + crypto::ToHex(*id) + " is not cached here and no storage node "
                     "served it: " + r.error);
  }
  return std::nullopt;  // deleted everywhere
}

void ReplicatedStore::Scan(Table table,
                           const std::function<void(std::string_view, std::string_view)>& fn) {
  local_->Scan(table, fn);
}

void ReplicatedStore::TouchCache(const crypto::ObjectId& id, std::size_t size) {
  std::string key = std::string(crypto::IdBytes(id));
  auto [it, inserted] = cache_.try_emplace(key);
  if (!inserted) {
    lru_.erase({it->second.tick, key});
    cache_bytes_ -= it->second.size;
  }
  it->second.size = size;
  it->second.tick = ++tick_;
  cache_bytes_ += size;
  lru_.insert({it->second.tick, key});
}

void ReplicatedStore::DropCache(const crypto::ObjectId& id) {
  auto it = cache_.find(std::string(crypto::IdBytes(id)));
  if (it == cache_.end()) return;
  lru_.erase({it->second.tick, it->first});
  cache_bytes_ -= it->second.size;
  cache_.erase(it);
}

void ReplicatedStore::LocalCommit(Batch batch) {
  std::lock_guard local_lock(local_mu_);
  std::map<crypto::ObjectId, std::string> fetched;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, version] : acked_) {
      if (!outbox_.count(id)) batch.push_back(Mutation{Table::kOutbox, std::string(crypto::IdBytes(id)), std::nullopt, {}});
    }
    acked_.clear();
    fetched.swap(fetched_);
  }
  for (auto& [id, sealed] : fetched) {
    batch.push_back(Mutation{Table::kChunks, std::string(crypto::IdBytes(id)), std::move(sealed), {}});
  }
  if (batch.empty()) return;
  local_->Commit(batch);
}

CommitResult ReplicatedStore::Commit(const Batch& batch) {
  Batch local = batch;
  std::vector<crypto::ObjectId> ids;
  std::map<crypto::ObjectId, const std::string*> fresh;
  std::uint64_t seq;
  {
    std::lock_guard lock(mu_);
    seq = ++seq_;
    const std::int64_t now = UnixMs();
    for (const Mutation& m : batch) {
      if (m.table == Table::kChunks) {
        if (auto id = crypto::IdFromBytes(m.key)) {
          if (m.value) {
            TouchCache(*id, m.value->size());
          } else {
            DropCache(*id);
            fetched_.erase(*id);
          }
        }
      }
      if (!m.remote) continue;
      const crypto::ObjectId& id = m.remote->id;
      Pending p;
      p.seq = seq;
      p.table = m.table;
      p.key = m.key;
      p.version = {m.remote->hlc, m.remote->box};
      p.tombstone = !m.value;
      if (p.tombstone) p.sealed_tombstone = m.remote->tombstone;
      p.queued_ms = now;
      if (auto it = outbox_.find(id); it != outbox_.end()) {
        outbox_seqs_.erase(outbox_seqs_.find(it->second.seq));
        p.queued_ms = it->second.queued_ms;
      }
      proto::OutboxEntry e;
      e.set_seq(p.seq);
      e.set_table(static_cast<std::uint32_t>(p.table));
      e.set_key(p.key);
      e.mutable_version()->set_hlc(p.version.hlc);
      e.mutable_version()->set_box_id(p.version.box_id);
      e.set_tombstone(p.tombstone);
      e.set_sealed_tombstone(p.sealed_tombstone);
      e.set_queued_unix_ms(p.queued_ms);
      local.push_back(Mutation{Table::kOutbox, std::string(crypto::IdBytes(id)), e.SerializeAsString(), {}});
      outbox_seqs_.insert(seq);
      outbox_[id] = std::move(p);
      acked_.erase(id);
      if (m.value) fresh[id] = &*m.value;
      ids.push_back(id);
    }
    // Older entries ride along (after a failure, or from before a restart).
    if (outbox_seqs_.size() > ids.size()) {
      for (const auto& [id, p] : outbox_) {
        if (ids.size() >= options_.max_round_objects + fresh.size()) break;
        if (p.seq < seq) ids.push_back(id);
      }
    }
  }
  try {
    LocalCommit(std::move(local));  // throws: nothing of the batch applied
  } catch (...) {
    std::lock_guard lock(mu_);
    for (const auto& id : ids) {
      auto it = outbox_.find(id);
      if (it == outbox_.end() || it->second.seq != seq) continue;
      outbox_seqs_.erase(outbox_seqs_.find(seq));
      outbox_.erase(it);
    }
    throw;
  }
  {
    std::lock_guard lock(mu_);
    for (const auto& id : ids) {
      auto it = outbox_.find(id);
      if (it != outbox_.end() && it->second.seq == seq) it->second.committed = true;
    }
  }

  std::string error = ids.empty() ? std::string() : Round(ids, fresh);
  CommitResult result;
  std::lock_guard lock(mu_);
  result.replicated = outbox_seqs_.empty() || *outbox_seqs_.begin() > seq;
  if (!result.replicated) {
    result.error = error.empty() ? "older changes are still waiting in the outbox" : error;
    last_error_ = result.error;
  }
  return result;
}

std::string ReplicatedStore::Round(const std::vector<crypto::ObjectId>& ids,
                                   const std::map<crypto::ObjectId, const std::string*>& fresh) {
  std::vector<replicator::Object> objects;
  std::vector<std::pair<Table, std::string>> where;
  {
    std::lock_guard lock(mu_);
    for (const auto& id : ids) {
      auto it = outbox_.find(id);
      if (it == outbox_.end() || !it->second.committed) continue;
      replicator::Object o;
      o.id = id;
      o.version = it->second.version;
      o.tombstone = it->second.tombstone;
      if (o.tombstone) o.sealed = it->second.sealed_tombstone;
      objects.push_back(std::move(o));
      where.emplace_back(it->second.table, it->second.key);
    }
  }
  std::size_t bytes = 0;
  std::vector<replicator::Object> send;
  send.reserve(objects.size());
  for (std::size_t i = 0; i < objects.size(); ++i) {
    replicator::Object& o = objects[i];
    if (!o.tombstone) {
      if (auto f = fresh.find(o.id); f != fresh.end()) {
        o.sealed = *f->second;
      } else {
        auto v = local_->Get(where[i].first, where[i].second);
        if (!v) {
          // Superseded by a later local change that is itself queued, or damaged: the newer
          // entry (if any) carries the object from now on.
          std::lock_guard lock(mu_);
          auto it = outbox_.find(o.id);
          if (it != outbox_.end() && it->second.version == o.version) {
            spdlog::error("outbox entry {} has no local bytes; dropping it",
                          crypto::ToHex(o.id));
            outbox_seqs_.erase(outbox_seqs_.find(it->second.seq));
            outbox_.erase(it);
            acked_[o.id] = o.version;
          }
          continue;
        }
        o.sealed = std::move(*v);
      }
      bytes += o.sealed.size();
    }
    send.push_back(std::move(o));
    if (bytes > options_.max_round_bytes && fresh.empty()) break;
  }
  if (send.empty()) return {};
  replicator::PutResult r = replicator_->Put(send);
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < send.size(); ++i) {
    if (i >= r.stored.size() || !r.stored[i]) continue;
    auto it = outbox_.find(send[i].id);
    if (it == outbox_.end() || it->second.version != send[i].version) continue;
    outbox_seqs_.erase(outbox_seqs_.find(it->second.seq));
    outbox_.erase(it);
    acked_[send[i].id] = send[i].version;
  }
  return r.error;
}

std::size_t ReplicatedStore::ReplayOutbox() {
  std::vector<crypto::ObjectId> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, p] : outbox_) {
      if (ids.size() >= options_.max_round_objects) break;
      ids.push_back(id);
    }
  }
  if (!ids.empty()) {
    std::string error = Round(ids, {});
    std::lock_guard lock(mu_);
    if (!error.empty()) last_error_ = error;
  }
  LocalCommit({});
  return OutboxSize();
}

std::size_t ReplicatedStore::EvictNow() {
  const std::uint64_t limit = options_.cache_limit_bytes;
  if (limit == 0) return 0;
  std::vector<crypto::ObjectId> candidates;
  {
    std::lock_guard lock(mu_);
    if (cache_bytes_ <= limit) return 0;
    const std::uint64_t goal = cache_bytes_ - limit + limit / 10;  // evict down to 90 %
    std::uint64_t sum = 0;
    for (const auto& [tick, key] : lru_) {
      if (sum >= goal || candidates.size() >= 512) break;
      auto id = crypto::IdFromBytes(key);
      if (!id || outbox_.count(*id) || fetched_.count(*id)) continue;
      candidates.push_back(*id);
      sum += cache_.at(key).size;
    }
  }
  if (candidates.empty()) return 0;
  std::vector<replicator::Object> objects;
  for (const auto& id : candidates) {
    auto sealed = local_->Get(Table::kChunks, std::string(crypto::IdBytes(id)));
    if (!sealed) continue;
    replicator::Object o;
    o.id = id;
    o.version = SealedVersion(*sealed);
    o.sealed = std::move(*sealed);
    objects.push_back(std::move(o));
  }
  // Every replica must confirm before the only local copy goes.
  replicator::PutResult r = replicator_->Put(objects, replicator_->replicas());
  Batch drop;
  std::vector<crypto::ObjectId> dropped;
  {
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < objects.size(); ++i) {
      if (i >= r.stored.size() || !r.stored[i] || outbox_.count(objects[i].id)) continue;
      drop.push_back(Mutation{Table::kChunks, std::string(crypto::IdBytes(objects[i].id)), std::nullopt, {}});
      dropped.push_back(objects[i].id);
    }
  }
  std::size_t n = drop.size();
  if (n) LocalCommit(std::move(drop));
  {
    std::lock_guard lock(mu_);  // the accounting follows the committed state
    for (const auto& id : dropped) DropCache(id);
    evicted_ += n;
  }
  if (!r.ok()) spdlog::debug("cache eviction: {}", r.error);
  return n;
}

replicator::ScrubReport ReplicatedStore::ScrubNow() {
  {
    std::lock_guard lock(mu_);
    scrubbing_ = true;
  }
  replicator::ScrubReport report;
  struct Cancelled {};
  try {
    // An unmount must not wait for a long scrub: the progress callback ends it.
    report = replicator_->Scrub(
        [this](std::uint64_t, std::uint64_t) {
          std::lock_guard stop(stop_mu_);
          if (stopping_) throw Cancelled{};
        },
        true);
  } catch (const Cancelled&) {
    std::lock_guard lock(mu_);
    scrubbing_ = false;
    spdlog::info("scrub interrupted by the unmount");
    return report;
  } catch (...) {
    std::lock_guard lock(mu_);
    scrubbing_ = false;
    throw;
  }
  spdlog::info("scrub: {} objects checked, {} repaired, {} moved, {} tombstones collected, {} "
               "with a replica on an unreachable node, {} unrecoverable",
               report.checked, report.repaired, report.moved, report.collected,
               report.unreachable, report.unrecoverable);
  std::lock_guard lock(mu_);
  scrubbing_ = false;
  last_scrub_ = report;
  last_scrub_unix_ = UnixMs() / 1000;
  return report;
}

std::size_t ReplicatedStore::OutboxSize() {
  std::lock_guard lock(mu_);
  return outbox_.size();
}

std::uint64_t ReplicatedStore::CacheBytes() {
  std::lock_guard lock(mu_);
  return cache_bytes_;
}

bool ReplicatedStore::InOutbox(const crypto::ObjectId& id) {
  std::lock_guard lock(mu_);
  return outbox_.count(id) != 0;
}

void ReplicatedStore::Start() {
  std::lock_guard lock(stop_mu_);
  if (background_.joinable()) return;
  stopping_ = false;
  next_scrub_ = Clock::now() + options_.scrub_interval;
  background_ = std::thread([this] { Background(); });
}

void ReplicatedStore::Stop() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (background_.joinable()) background_.join();
  try {
    LocalCommit({});  // acknowledged outbox rows and fetched chunks
  } catch (const std::exception& e) {
    spdlog::warn("final outbox update: {}", e.what());
  }
}

void ReplicatedStore::Background() {
  bool was_degraded = false;
  while (true) {
    {
      std::unique_lock lock(stop_mu_);
      if (stop_cv_.wait_for(lock, options_.background_interval, [&] { return stopping_; })) return;
    }
    try {
      std::size_t left = OutboxSize();
      if (left > 0) left = ReplayOutbox();
      else LocalCommit({});
      if (left > 0) {
        std::lock_guard lock(mu_);
        if (Clock::now() - last_warning_ > std::chrono::seconds(10)) {
          last_warning_ = Clock::now();
          spdlog::warn("DEGRADED: {} changes are on this box only, not yet on W={} storage "
                       "nodes ({}): {}",
                       outbox_.size(), replicator_->write_quorum(),
                       options_.degraded_queue ? "degraded=queue: held in the outbox"
                                               : "their operations failed",
                       last_error_);
        }
        was_degraded = true;
      } else if (was_degraded) {
        spdlog::info("outbox drained: every change is on W={} storage nodes again",
                     replicator_->write_quorum());
        was_degraded = false;
      }
      EvictNow();
      if (options_.scrub_interval.count() > 0 && Clock::now() >= next_scrub_) {
        next_scrub_ = Clock::now() + options_.scrub_interval;
        ScrubNow();
      }
    } catch (const std::exception& e) {
      spdlog::error("background replication work: {}", e.what());
    }
  }
}

replicator::ListSummary ReplicatedStore::ListAll(
    const std::function<void(replicator::Listed&&)>& fn) {
  return replicator_->ListAll(fn);
}

std::string ReplicatedStore::Converge() {
  replicator::ScrubReport r = ScrubNow();
  return std::to_string(r.checked) + " objects checked, " + std::to_string(r.repaired) +
         " repaired, " + std::to_string(r.unreachable) + " with a replica on an unreachable node";
}

std::vector<Remote::Resolved> ReplicatedStore::ResolveMany(
    const std::vector<replicator::Listed>& wanted,
    const std::function<void(std::size_t, std::size_t)>& progress) {
  std::vector<Resolved> out(wanted.size());
  std::mutex m;
  std::condition_variable cv;
  std::size_t in_flight = 0, done = 0;
  constexpr std::size_t kWindow = 256;
  auto last = Clock::now();
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return in_flight < kWindow; });
      ++in_flight;
    }
    replicator_->ResolveAsync(wanted[i], [&, i](replicator::GetResult&& r) {
      Resolved res;
      switch (r.status) {
        case replicator::GetStatus::kFound:
          res.state = r.object.tombstone ? Resolved::kTombstone : Resolved::kLive;
          res.version = r.object.version;
          if (!r.object.tombstone) res.sealed = std::move(r.object.sealed);
          break;
        case replicator::GetStatus::kNotFound:
          res.state = Resolved::kUnbacked;
          res.error = std::move(r.error);
          break;
        case replicator::GetStatus::kUnavailable:
          res.state = Resolved::kUnavailable;
          res.error = std::move(r.error);
          break;
      }
      std::lock_guard lock(m);
      out[i] = std::move(res);
      --in_flight;
      ++done;
      cv.notify_all();
    });
    if (progress && Clock::now() - last > std::chrono::seconds(2)) {
      last = Clock::now();
      std::size_t d;
      {
        std::lock_guard lock(m);
        d = done;
      }
      progress(d, wanted.size());
    }
  }
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return in_flight == 0; });
  }
  if (progress) progress(wanted.size(), wanted.size());
  return out;
}

std::vector<std::pair<std::string, replicator::NodeTrust>> ReplicatedStore::Trust() {
  std::vector<std::pair<std::string, replicator::NodeTrust>> out;
  const auto stats = replicator_->stats();
  const auto& nodes = replicator_->transport().nodes();
  for (std::size_t i = 0; i < nodes.size() && i < stats.nodes.size(); ++i)
    out.emplace_back(nodes[i].id, stats.nodes[i]);
  return out;
}

std::string ReplicatedStore::Digest(std::string_view sealed) const {
  return replicator::Digest(sealed);
}

std::string ReplicatedStore::StatusLine() {
  auto pings = replicator_->PingAll(std::chrono::milliseconds(1000));
  const auto& nodes = replicator_->transport().nodes();
  const auto trust = replicator_->stats().nodes;
  std::size_t up = 0, liars = 0;
  std::string node_fields;
  for (std::size_t i = 0; i < pings.size(); ++i) {
    // Replies that failed authentication: lies (forged or rolled-back versions), copies that
    // did not authenticate at all, claims too far in the future.
    if (i < trust.size()) {
      node_fields += " lies." + nodes[i].id + "=" + std::to_string(trust[i].lies) +
                     " corrupt." + nodes[i].id + "=" + std::to_string(trust[i].corrupt) +
                     " future." + nodes[i].id + "=" + std::to_string(trust[i].future);
      if (trust[i].lies > 0) ++liars;
    }
    node_fields += " node." + nodes[i].id + "=";
    if (pings[i]) {
      ++up;
      char buf[32];
      std::snprintf(buf, sizeof buf, "up/%.3fms", static_cast<double>(pings[i]->count()) / 1000);
      node_fields += buf;
    } else {
      node_fields += "down";
    }
  }
  std::lock_guard lock(mu_);
  std::int64_t oldest = 0;
  for (const auto& [id, p] : outbox_) oldest = oldest == 0 ? p.queued_ms : std::min(oldest, p.queued_ms);
  const std::int64_t age = oldest == 0 ? 0 : std::max<std::int64_t>(0, (UnixMs() - oldest) / 1000);
  std::string s = "replicated=yes nodes=" + std::to_string(nodes.size()) +
                  " nodes_up=" + std::to_string(up) + " liars=" + std::to_string(liars) +
                  " R=" + std::to_string(replicator_->replicas()) +
                  " W=" + std::to_string(replicator_->write_quorum()) +
                  " degraded=" + (options_.degraded_queue ? "queue" : "fail") +
                  " state=" + (outbox_.empty() ? "healthy" : "DEGRADED") +
                  " outbox=" + std::to_string(outbox_.size()) +
                  " outbox_age_s=" + std::to_string(age) +
                  " cache_bytes=" + std::to_string(cache_bytes_) +
                  " cache_limit=" + std::to_string(options_.cache_limit_bytes) +
                  " cached_chunks=" + std::to_string(cache_.size()) +
                  " evicted=" + std::to_string(evicted_) +
                  " fetched=" + std::to_string(fetched_count_) +
                  " under_replicated=" +
                  std::to_string(outbox_.size() + last_scrub_.unreachable) +
                  " last_scrub_unix=" + std::to_string(last_scrub_unix_) +
                  " scrubbing=" + (scrubbing_ ? "yes" : "no") +
                  " scrub_checked=" + std::to_string(last_scrub_.checked) +
                  " scrub_repaired=" + std::to_string(last_scrub_.repaired) +
                  " scrub_collected=" + std::to_string(last_scrub_.collected) +
                  " scrub_unreachable=" + std::to_string(last_scrub_.unreachable) +
                  " scrub_unrecoverable=" + std::to_string(last_scrub_.unrecoverable) +
                  node_fields;
  if (!outbox_.empty() && !last_error_.empty()) {
    std::string e = last_error_;
    std::replace(e.begin(), e.end(), '\n', ' ');
    std::replace(e.begin(), e.end(), '\r', ' ');
    s += " last_error=" + e;
  }
  return s;
}

}  // namespace coffer::fs
