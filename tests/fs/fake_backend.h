// An in-memory storage backend for unit tests of the fs core (LevelDB's Env idea): the store
// "on the nodes" is a map with conditional puts by version and a change feed, shared by every
// FakeBackend made from the same FakeStore (two boxes on one store). Rounds complete on a
// worker thread, as a real backend's do, and can be held and completed one by one, failed, or
// failed wholesale, so that the commit pipeline's verdicts, rollback, queueing and pipelining
// are tested without nodes.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "replicator/backend.h"
#include "replicator/digest.h"

namespace coffer::fs::testing {

struct FakeStore {
  struct Held {
    replicator::Version version;
    bool tombstone = false;
    std::string sealed;
    std::uint64_t seq = 0;
  };
  std::mutex mu;
  std::map<crypto::ObjectId, Held> objects;
  std::uint64_t seq = 0;
  std::size_t puts = 0;  // objects stored (not "not newer")

  // Conditional put (mu held).
  void Apply(const replicator::Object& o) {
    auto it = objects.find(o.id);
    if (it != objects.end() && !(it->second.version < o.version)) return;
    objects[o.id] = Held{o.version, o.tombstone, o.sealed, ++seq};
    ++puts;
  }
};

class FakeBackend : public replicator::Backend {
 public:
  explicit FakeBackend(std::shared_ptr<FakeStore> store = std::make_shared<FakeStore>())
      : store_(std::move(store)), worker_([this] { Work(); }) {}
  ~FakeBackend() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      // Held rounds fail: nobody will complete them.
      for (auto& r : held_) r.ok = false;
      for (auto& r : held_) ready_.push_back(std::move(r));
      held_.clear();
    }
    cv_.notify_all();
    worker_.join();
  }

  std::shared_ptr<FakeStore> store() { return store_; }

  // Every round fails (nothing is stored) while set.
  void set_fail(bool fail) {
    std::lock_guard lock(mu_);
    fail_ = fail;
  }
  // Rounds wait until CompleteHeld() while set.
  void set_hold(bool hold) {
    std::lock_guard lock(mu_);
    hold_ = hold;
  }
  std::size_t held() {
    std::lock_guard lock(mu_);
    return held_.size();
  }
  // Completes the `index`-th held round (oldest first): stored, or failed.
  void CompleteHeld(std::size_t index, bool ok) {
    {
      std::lock_guard lock(mu_);
      Round r = std::move(held_.at(index));
      held_.erase(held_.begin() + static_cast<long>(index));
      r.ok = ok;
      ready_.push_back(std::move(r));
    }
    cv_.notify_all();
  }
  // Waits until `n` rounds are held (with a deadline).
  bool WaitHeld(std::size_t n) {
    std::unique_lock lock(mu_);
    return held_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return held_.size() >= n; });
  }
  std::size_t rounds() {
    std::lock_guard lock(mu_);
    return rounds_;
  }

  std::size_t replicas() const override { return 1; }
  std::size_t write_quorum() const override { return 1; }
  std::vector<std::string> node_ids() const override { return {"fake"}; }

  void PutAsync(const std::vector<replicator::Object>& batch,
                std::function<void(replicator::PutResult&&)> done, std::size_t) override {
    Round r{batch, std::move(done), true};
    {
      std::lock_guard lock(mu_);
      ++rounds_;
      if (fail_) r.ok = false;
      if (hold_ && !fail_) {
        held_.push_back(std::move(r));
        held_cv_.notify_all();
        return;
      }
      ready_.push_back(std::move(r));
    }
    cv_.notify_all();
  }

  replicator::GetResult Get(const crypto::ObjectId& id) override {
    std::lock_guard lock(store_->mu);
    replicator::GetResult r;
    auto it = store_->objects.find(id);
    if (it == store_->objects.end()) {
      r.status = replicator::GetStatus::kNotFound;
      return r;
    }
    r.status = replicator::GetStatus::kFound;
    r.object = replicator::Object{id, it->second.version, it->second.tombstone, it->second.sealed};
    return r;
  }
  void ResolveAsync(const replicator::Listed& listed,
                    std::function<void(replicator::GetResult&&)> done) override {
    done(Get(listed.id));
  }
  void ReadNewestAsync(const crypto::ObjectId& id, const std::vector<std::size_t>&,
                       std::function<void(replicator::GetResult&&)> done) override {
    done(Get(id));
  }
  replicator::ListSummary ListAll(const std::function<void(replicator::Listed&&)>& fn) override {
    std::vector<replicator::Listed> all;
    {
      std::lock_guard lock(store_->mu);
      for (const auto& [id, h] : store_->objects) all.push_back(ListedOf(id, h));
    }
    for (auto& l : all) fn(std::move(l));
    return replicator::ListSummary{{true}};
  }
  replicator::FeedSummary ReadFeeds(const std::vector<std::uint64_t>& since,
                                    const std::function<void(replicator::Listed&&)>& fn) override {
    std::vector<replicator::Listed> changed;
    std::uint64_t last;
    {
      std::lock_guard lock(store_->mu);
      const std::uint64_t from = since.empty() ? 0 : since[0];
      for (const auto& [id, h] : store_->objects)
        if (h.seq > from) changed.push_back(ListedOf(id, h));
      last = store_->seq;
    }
    for (auto& l : changed) fn(std::move(l));
    return replicator::FeedSummary{{true}, {last}, {false}};
  }
  replicator::ScrubReport Scrub(const std::function<void(std::uint64_t, std::uint64_t)>&,
                                bool, const replicator::CollectGate&) override {
    return {};
  }
  std::vector<std::optional<std::chrono::microseconds>> PingAll(
      std::chrono::milliseconds) override {
    return {std::chrono::microseconds(1)};
  }
  replicator::ReplicatorStats stats() const override {
    replicator::ReplicatorStats s;
    s.nodes.resize(1);
    return s;
  }

 private:
  struct Round {
    std::vector<replicator::Object> objects;
    std::function<void(replicator::PutResult&&)> done;
    bool ok = true;
  };

  static replicator::Listed ListedOf(const crypto::ObjectId& id, const FakeStore::Held& h) {
    replicator::Listed l;
    l.id = id;
    l.claims.push_back(replicator::Claim{0, h.version, h.tombstone, replicator::Digest(h.sealed),
                                         h.sealed.size(), false});
    return l;
  }

  void Work() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stop_ || !ready_.empty(); });
      if (ready_.empty()) return;
      Round r = std::move(ready_.front());
      ready_.pop_front();
      lock.unlock();
      replicator::PutResult result;
      result.stored.assign(r.objects.size(), r.ok);
      if (r.ok) {
        std::lock_guard s(store_->mu);
        for (const auto& o : r.objects) store_->Apply(o);
      } else {
        result.error = "fake backend: the nodes did not answer";
      }
      r.done(std::move(result));
      lock.lock();
    }
  }

  std::shared_ptr<FakeStore> store_;
  std::mutex mu_;  // guards below; a leaf lock (store_->mu is taken without it)
  std::condition_variable cv_, held_cv_;
  std::deque<Round> ready_;
  std::vector<Round> held_;
  bool fail_ = false, hold_ = false, stop_ = false;
  std::size_t rounds_ = 0;
  std::thread worker_;
};

}  // namespace coffer::fs::testing
