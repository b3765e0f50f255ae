// The chunk store (see chunk_store.h).
#include "fs/chunk_store.h"

#include <cerrno>
#include <future>

#include <spdlog/spdlog.h>

#include "common/error.h"

namespace coffer::fs {

ChunkStore::ChunkStore(const crypto::Keyring& keys, LmdbStore& local, replicator::Backend* remote,
                       std::uint64_t cache_limit, std::function<void(Mutation)> persist,
                       std::function<bool(const crypto::ObjectId&)> pinned)
    : keys_(keys),
      local_(local),
      remote_(remote),
      limit_(cache_limit),
      persist_(std::move(persist)),
      pinned_(std::move(pinned)) {}

void ChunkStore::LoadCache() {
  std::lock_guard lock(mu_);
  local_.Scan(Table::kChunks, [&](std::string_view key, std::string_view value) {
    Touch(std::string(key), value.size());
  });
}

void ChunkStore::Touch(const std::string& key, std::size_t size) {
  auto [it, inserted] = cache_.try_emplace(key);
  if (!inserted) {
    lru_.erase({it->second.tick, key});
    bytes_ -= it->second.size;
  }
  it->second.size = size;
  it->second.tick = ++tick_;
  bytes_ += size;
  lru_.insert({it->second.tick, key});
}

void ChunkStore::Drop(const std::string& key) {
  auto it = cache_.find(key);
  if (it == cache_.end()) return;
  lru_.erase({it->second.tick, key});
  bytes_ -= it->second.size;
  cache_.erase(it);
}

void ChunkStore::AddInFlight(const crypto::ObjectId& id,
                             std::shared_ptr<const std::string> plaintext) {
  std::lock_guard lock(mu_);
  in_flight_[id] = std::move(plaintext);
}

void ChunkStore::Committed(const std::vector<crypto::ObjectId>& ids) {
  std::vector<std::pair<std::string, std::size_t>> sizes;
  for (const auto& id : ids) {
    // The sealed size, for the cache accounting (a cheap LMDB read).
    if (auto row = local_.Get(Table::kChunks, crypto::IdBytes(id)))
      sizes.emplace_back(std::string(crypto::IdBytes(id)), row->size());
  }
  std::lock_guard lock(mu_);
  for (const auto& id : ids) in_flight_.erase(id);
  for (const auto& [key, size] : sizes) Touch(key, size);
}

void ChunkStore::Forget(const crypto::ObjectId& id) {
  std::lock_guard lock(mu_);
  in_flight_.erase(id);
  Drop(std::string(crypto::IdBytes(id)));
}

std::shared_ptr<const std::string> ChunkStore::Read(const crypto::ObjectId& id) {
  const std::string key(crypto::IdBytes(id));
  {
    std::unique_lock lock(mu_);
    // Another thread fetching the same chunk: wait for it (it lands in in_flight_).
    fetched_cv_.wait(lock, [&] { return !fetching_.count(id); });
    if (auto it = in_flight_.find(id); it != in_flight_.end()) return it->second;
  }
  std::optional<std::string> sealed = local_.Get(Table::kChunks, key);
  bool fetched = false;
  if (!sealed && remote_) {
    {
      std::unique_lock lock(mu_);
      fetched_cv_.wait(lock, [&] { return !fetching_.count(id); });
      if (auto it = in_flight_.find(id); it != in_flight_.end()) return it->second;
      fetching_.insert(id);
    }
    struct Done {
      ChunkStore* self;
      crypto::ObjectId id;
      ~Done() {
        std::lock_guard lock(self->mu_);
        self->fetching_.erase(id);
        self->fetched_cv_.notify_all();
      }
    } done{this, id};
    replicator::GetResult r = remote_->Get(id);
    if (r.status == replicator::GetStatus::kFound && !r.object.tombstone) {
      sealed = std::move(r.object.sealed);
      fetched = true;
    } else if (r.status == replicator::GetStatus::kUnavailable) {
      throw Error(EIO, "chunk " + crypto::ToHex(id) +
                           " is not cached here and no storage node served it: " + r.error);
    }
  }
  if (!sealed) throw Error(EIO, "chunk " + crypto::ToHex(id) + " is missing from the store");
  std::optional<std::string> plain = crypto::Open(keys_, crypto::ObjectKind::kChunk, id, *sealed);
  if (!plain) throw Error(EIO, "chunk " + crypto::ToHex(id) + " fails authentication");
  auto out = std::make_shared<const std::string>(std::move(*plain));
  std::lock_guard lock(mu_);
  if (fetched) {
    // Cached again with the next local commit; readable from memory until then.
    ++fetched_count_;
    in_flight_[id] = out;
    if (persist_) persist_(Mutation{Table::kChunks, key, std::move(*sealed)});
  } else {
    Touch(key, sealed->size());
  }
  return out;
}

std::size_t ChunkStore::EvictNow() {
  if (limit_ == 0 || !remote_) return 0;
  std::vector<crypto::ObjectId> candidates;
  {
    std::lock_guard lock(mu_);
    if (bytes_ <= limit_) return 0;
    const std::uint64_t goal = bytes_ - limit_ + limit_ / 10;  // down to 90 %
    std::uint64_t sum = 0;
    for (const auto& [tick, key] : lru_) {
      if (sum >= goal || candidates.size() >= 512) break;
      auto id = crypto::IdFromBytes(key);
      if (!id || in_flight_.count(*id)) continue;
      candidates.push_back(*id);
      sum += cache_.at(key).size;
    }
  }
  std::vector<replicator::Object> objects;
  for (const auto& id : candidates) {
    if (pinned_ && pinned_(id)) continue;
    auto sealed = local_.Get(Table::kChunks, crypto::IdBytes(id));
    if (!sealed) continue;
    replicator::Object o;
    o.id = id;
    // Re-put at the version sealed into it (format 2): a node holding it answers "not newer",
    // one missing it stores it. Format 1 chunks carry none: the lowest version.
    auto info = crypto::Inspect(*sealed);
    o.version = info && info->version ? *info->version : replicator::Version{1, 0};
    o.sealed = std::move(*sealed);
    objects.push_back(std::move(o));
  }
  if (objects.empty()) return 0;
  // Every replica must confirm before the only local copy goes.
  std::promise<replicator::PutResult> promise;
  auto future = promise.get_future();
  remote_->PutAsync(objects, [&promise](replicator::PutResult&& r) {
    promise.set_value(std::move(r));
  }, remote_->replicas());
  replicator::PutResult r = future.get();
  Batch drop;
  std::vector<std::string> dropped;
  for (std::size_t i = 0; i < objects.size(); ++i) {
    if (i >= r.stored.size() || !r.stored[i] || (pinned_ && pinned_(objects[i].id))) continue;
    drop.push_back(Mutation{Table::kChunks, std::string(crypto::IdBytes(objects[i].id)),
                            std::nullopt});
    dropped.emplace_back(crypto::IdBytes(objects[i].id));
  }
  if (!drop.empty()) local_.Commit(drop);
  std::lock_guard lock(mu_);  // the accounting follows the committed state
  for (const auto& key : dropped) Drop(key);
  evicted_ += dropped.size();
  if (!r.ok()) spdlog::debug("cache eviction: {}", r.error);
  return dropped.size();
}

ChunkCacheStatus ChunkStore::status() const {
  std::lock_guard lock(mu_);
  return ChunkCacheStatus{bytes_, cache_.size(), limit_, evicted_, fetched_count_};
}

}  // namespace coffer::fs
