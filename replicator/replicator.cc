// Replicator: see replicator.h.
#include "replicator/replicator.h"

#include <algorithm>
#include <cerrno>
#include <map>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "replicator/digest.h"

namespace coffer::replicator {

using Clock = std::chrono::steady_clock;

namespace {

void ToWireObject(const Object& o, bool repair, wire::Object* out) {
  out->set_id(std::string(crypto::IdBytes(o.id)));
  ToWire(o.version, out->mutable_version());
  out->set_tombstone(o.tombstone);
  out->set_sealed(o.sealed);  // a tombstone's too: it is a sealed object of its own
  out->set_repair(repair);
}

std::optional<Object> FromWireObject(wire::Object&& w) {
  auto id = crypto::IdFromBytes(w.id());
  if (!id) return std::nullopt;
  Object o;
  o.id = *id;
  o.version = FromWire(w.version());
  o.tombstone = w.tombstone();
  o.sealed = std::move(*w.mutable_sealed());
  return o;
}

std::int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::uint64_t WallNs() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace

const char* ToString(Verdict v) {
  switch (v) {
    case Verdict::kGenuine: return "genuine";
    case Verdict::kCorrupt: return "does not authenticate";
    case Verdict::kForged: return "authenticates as another version or kind than claimed";
    case Verdict::kUnauthenticated: return "an unsealed tombstone, which authenticates nothing";
    case Verdict::kFuture: return "claims a version too far in the future";
  }
  return "?";
}

const Claim& Listed::newest() const {
  for (const Claim& c : claims)
    if (!c.refused) return c;
  return claims.front();
}

std::size_t Listed::HoldersOf(const Version& v) const {
  return static_cast<std::size_t>(
      std::count_if(claims.begin(), claims.end(), [&](const Claim& c) { return c.version == v; }));
}

std::size_t ListSummary::answered_count() const {
  return static_cast<std::size_t>(std::count(answered.begin(), answered.end(), true));
}

Replicator::Replicator(ReplicatorOptions options)
    : options_(std::move(options)),
      placement_([&] {
        std::vector<std::string> ids;
        for (const auto& n : options_.nodes) ids.push_back(n.id);
        return ids;
      }()) {
  if (options_.nodes.empty()) throw Error(EINVAL, "replicator: no nodes configured");
  r_ = std::min(std::max<std::size_t>(options_.replicas, 1), options_.nodes.size());
  w_ = options_.write_quorum == 0 ? r_ / 2 + 1 : std::min(options_.write_quorum, r_);
  down_until_.assign(options_.nodes.size(), Clock::time_point{});
  latency_us_.assign(options_.nodes.size(), 0.0);
  latency_at_.assign(options_.nodes.size(), Clock::time_point{});
  trust_.assign(options_.nodes.size(), NodeTrust{});
  trust_log_.assign(options_.nodes.size(), LogThrottle(options_.lie_log_interval));
  suspect_until_.assign(options_.nodes.size(), Clock::time_point{});
  transport_ = std::make_unique<Transport>(options_.nodes, options_.client_keys,
                                           options_.transport);
  if (options_.hinted_handoff) {
    replay_thread_ = std::thread([this] {
      std::unique_lock lock(stop_mu_);
      while (!stop_cv_.wait_for(lock, options_.hint_replay_interval, [this] { return stopping_; })) {
        lock.unlock();
        try {
          ReplayHints();
        } catch (const std::exception& e) {
          spdlog::warn("hint replay: {}", e.what());
        }
        lock.lock();
      }
    });
  }
}

Replicator::~Replicator() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (replay_thread_.joinable()) replay_thread_.join();
  transport_.reset();
}

ReplicatorStats Replicator::stats() const {
  ReplicatorStats s;
  s.repairs_sent = repairs_sent_.load();
  s.hedges_sent = hedges_sent_.load();
  s.verify_failures = verify_failures_.load();
  s.hints_stored = hints_stored_.load();
  s.hints_replayed = hints_replayed_.load();
  {
    std::lock_guard lock(trust_mu_);
    s.nodes = trust_;
  }
  std::lock_guard lock(hints_mu_);
  s.hints_pending = hints_.size() + hints_in_replay_;
  return s;
}

void Replicator::AddHint(Hint h) {
  ++hints_stored_;
  std::lock_guard lock(hints_mu_);
  hints_.push_back(h);
}

std::size_t Replicator::ReplayHints() {
  std::lock_guard replay(replay_mu_);
  std::vector<Hint> hints;
  {
    std::lock_guard lock(hints_mu_);
    hints.swap(hints_);
    hints_in_replay_ = hints.size();
  }
  std::vector<Hint> keep;
  std::size_t delivered = 0;
  std::vector<bool> owner_down(options_.nodes.size(), false);
  for (const Hint& h : hints) {
    if (owner_down[h.owner]) {
      keep.push_back(h);
      continue;
    }
    wire::Request get;
    get.mutable_get()->add_ids(std::string(crypto::IdBytes(h.id)));
    CallResult g = transport_->Call(h.holder, std::move(get), options_.admin_timeout).get();
    if (g.status != CallStatus::kOk || !g.reply.has_get() || g.reply.get().results_size() != 1) {
      keep.push_back(h);
      continue;
    }
    if (!g.reply.get().results(0).found()) continue;  // already moved (scrub) or dropped
    auto o = FromWireObject(std::move(*g.reply.mutable_get()->mutable_results(0)->mutable_object()));
    if (!o || o->id != h.id || Verify(h.holder, *o) != Verdict::kGenuine) {
      spdlog::warn("hint for object {}: copy on node {} failed verification", crypto::ToHex(h.id),
                   options_.nodes[h.holder].id);
      continue;  // scrub will find a good copy on the other replicas
    }
    wire::Request put;
    ToWireObject(*o, false, put.mutable_put()->add_objects());
    CallResult p = transport_->Call(h.owner, std::move(put), options_.write_timeout).get();
    if (p.status != CallStatus::kOk || !p.reply.has_put() || p.reply.put().results_size() != 1 ||
        p.reply.put().results(0).status() == wire::PUT_REJECTED) {
      owner_down[h.owner] = p.status == CallStatus::kUnreachable || p.status == CallStatus::kTimeout;
      keep.push_back(h);
      continue;
    }
    wire::Request drop;
    auto* item = drop.mutable_drop()->add_items();
    item->set_id(std::string(crypto::IdBytes(h.id)));
    ToWire(o->version, item->mutable_version());
    (void)transport_->Call(h.holder, std::move(drop), options_.write_timeout).get();
    ++delivered;
    ++hints_replayed_;
  }
  std::lock_guard lock(hints_mu_);
  hints_.insert(hints_.end(), keep.begin(), keep.end());
  hints_in_replay_ = 0;
  return delivered;
}

void Replicator::MarkDown(std::size_t node) {
  std::lock_guard lock(health_mu_);
  down_until_[node] = Clock::now() + std::chrono::seconds(2);
}

void Replicator::MarkUp(std::size_t node, std::chrono::microseconds latency) {
  std::lock_guard lock(health_mu_);
  down_until_[node] = Clock::time_point{};
  if (latency.count() > 0) {
    latency_at_[node] = Clock::now();
    double& ewma = latency_us_[node];
    ewma = ewma == 0 ? static_cast<double>(latency.count())
                     : 0.8 * ewma + 0.2 * static_cast<double>(latency.count());
  }
}

std::vector<std::size_t> Replicator::ReadOrder(const crypto::ObjectId& id) {
  auto order = placement_.Replicas(std::string(crypto::IdBytes(id)), r_);
  const auto now = Clock::now();
  std::lock_guard lock(health_mu_);
  // Placement order, except that nodes that recently failed go last and nodes clearly slower
  // than the fastest replica (by their recent GET latency) go after the others.
  // Latencies older than 10 s are forgotten, so a node that was slow gets another chance.
  auto latency = [&](std::size_t n) {
    return now - latency_at_[n] < std::chrono::seconds(10) ? latency_us_[n] : 0.0;
  };
  double fastest = 0;
  for (std::size_t n : order) {
    if (latency(n) > 0 && (fastest == 0 || latency(n) < fastest)) fastest = latency(n);
  }
  auto rank = [&](std::size_t n) {
    if (down_until_[n] > now || Suspect(n)) return 2;
    return fastest > 0 && latency(n) > 3 * fastest + 1000 ? 1 : 0;
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return rank(a) < rank(b); });
  return order;
}

bool Replicator::TooFarAhead(const Version& v) const {
  const auto skew = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(options_.max_clock_skew).count());
  return v.hlc > WallNs() + skew;
}

Verdict Replicator::Verify(std::size_t node, const Object& o) {
  Verdict v = Verdict::kGenuine;
  if (TooFarAhead(o.version)) {
    v = Verdict::kFuture;
  } else if (options_.verifier) {
    try {
      v = options_.verifier(o);
    } catch (const std::exception& e) {
      spdlog::error("verifier threw: {}", e.what());
      v = Verdict::kCorrupt;
    }
  }
  // An unsealed tombstone (store format 1) authenticates nothing, but holding one is no lie:
  // format 1 wrote them. It is never believed; it counts against the node only when it stands
  // over an object of format 2, which is only ever deleted by a sealed tombstone (ResolveNext).
  if (v != Verdict::kGenuine && v != Verdict::kUnauthenticated) {
    if (v == Verdict::kCorrupt) ++verify_failures_;
    CountAgainst(node, v, o.id, o.version);
  }
  return v;
}

void Replicator::CountAgainst(std::size_t node, Verdict v, const crypto::ObjectId& id,
                              const Version& claim, const std::string& detail) {
  const auto now = Clock::now();
  std::uint64_t unlogged = 0;
  NodeTrust snapshot;
  {
    std::lock_guard lock(trust_mu_);
    NodeTrust& t = trust_[node];
    switch (v) {
      case Verdict::kCorrupt: ++t.corrupt; break;
      case Verdict::kFuture: ++t.future; break;
      default:
        ++t.lies;
        t.last_lie_unix = UnixNow();
        suspect_until_[node] = now + options_.suspect_period;
        break;
    }
    if (!trust_log_[node].Allow(&unlogged, now)) return;
    snapshot = t;
  }
  const std::string& name = options_.nodes[node].id;
  const std::string what = detail.empty() ? ToString(v) : detail;
  if (v == Verdict::kCorrupt) {
    spdlog::warn("node {}: object {} (claimed version {}) {}: not used, repaired from another "
                 "replica ({} such copies from this node so far, {} since the last report)",
                 name, crypto::ToHex(id), ToString(claim), what, snapshot.corrupt, unlogged);
  } else if (v == Verdict::kFuture) {
    spdlog::warn("node {}: object {} claims version {}, more than {} s ahead of this box's clock: "
                 "refused ({} such claims from this node so far, {} since the last report)",
                 name, crypto::ToHex(id), ToString(claim), options_.max_clock_skew.count(),
                 snapshot.future, unlogged);
  } else {
    spdlog::error("node {} LIED: object {} claimed as version {}: {}. Nothing it says is believed "
                  "without authentication; it is asked last and not used for repairs for {} s "
                  "({} lies from this node so far, {} since the last report)",
                  name, crypto::ToHex(id), ToString(claim), what,
                  options_.suspect_period.count(), snapshot.lies, unlogged);
  }
}

bool Replicator::Suspect(std::size_t node) const {
  std::lock_guard lock(trust_mu_);
  return suspect_until_[node] > Clock::now();
}

// ---------------------------------------------------------------------------------------------
// Writes

struct Replicator::PutOp {
  std::mutex mu;
  std::vector<std::size_t> acks, fails, replica_count;
  std::vector<bool> stored, failed;
  std::size_t undecided = 0;
  std::size_t w = 0;
  std::vector<std::string> errors;
  std::function<void(PutResult&&)> done;
  bool finished = false;
  // Hinted handoff: the batch (kept only when enabled) and, per object, how many fallback nodes
  // were tried.
  std::shared_ptr<const std::vector<Object>> objects;
  std::vector<std::size_t> fallbacks_used;

  // Both with mu held.
  void Decide(std::size_t i) {
    if (stored[i] || failed[i]) return;
    if (acks[i] >= w) {
      stored[i] = true;
      --undecided;
    } else if (fails[i] > replica_count[i] - w) {
      failed[i] = true;
      --undecided;
    }
  }
  // Completes the operation once every object is decided; unlocks `lock` to call `done`.
  void FinishIfDone(std::unique_lock<std::mutex>& lock) {
    if (undecided != 0 || finished) return;
    finished = true;
    PutResult result;
    result.stored = stored;
    std::size_t n_failed = std::count(failed.begin(), failed.end(), true);
    if (n_failed > 0) {
      result.error = "write quorum W=" + std::to_string(w) + " not met for " +
                     std::to_string(n_failed) + " of " + std::to_string(stored.size()) +
                     " objects";
      for (std::size_t k = 0; k < errors.size() && k < 5; ++k) {
        result.error += k == 0 ? ": " : "; ";
        result.error += errors[k];
      }
    }
    auto callback = std::move(done);
    lock.unlock();
    callback(std::move(result));
  }
};

// Writes object i of `op` to `fallback` for `owner`; on failure tries the next fallback.
void Replicator::Handoff(const std::shared_ptr<PutOp>& op, std::size_t i, std::size_t owner,
                         std::size_t fallback) {
  wire::Request req;
  ToWireObject((*op->objects)[i], false, req.mutable_put()->add_objects());
  transport_->Call(fallback, std::move(req), options_.write_timeout,
                   [this, op, i, owner, fallback](CallResult&& fr) {
    bool stored = fr.status == CallStatus::kOk && fr.reply.has_put() &&
                  fr.reply.put().results_size() == 1 &&
                  fr.reply.put().results(0).status() != wire::PUT_REJECTED;
    if (stored) {
      MarkUp(fallback);
      AddHint({owner, fallback, (*op->objects)[i].id, (*op->objects)[i].version});
    } else if (fr.status == CallStatus::kTimeout || fr.status == CallStatus::kUnreachable) {
      MarkDown(fallback);
    }
    std::optional<std::size_t> next;
    std::unique_lock lock(op->mu);
    if (stored) {
      ++op->acks[i];
    } else {
      op->errors.push_back(fr.Describe(options_.nodes[fallback]) + " (hinted handoff)");
      next = PickFallback((*op->objects)[i].id, op->fallbacks_used[i]);
      if (!next) ++op->fails[i];
    }
    op->Decide(i);
    op->FinishIfDone(lock);
    if (lock.owns_lock()) lock.unlock();
    if (next) Handoff(op, i, owner, *next);
  });
}

void Replicator::PutAsync(const std::vector<Object>& batch,
                          std::function<void(PutResult&&)> done, std::size_t quorum) {
  auto op = std::make_shared<PutOp>();
  const std::size_t n = batch.size();
  op->acks.assign(n, 0);
  op->fails.assign(n, 0);
  op->replica_count.assign(n, 0);
  op->stored.assign(n, false);
  op->failed.assign(n, false);
  op->undecided = n;
  op->w = quorum == 0 ? w_ : std::min(quorum, r_);
  op->done = std::move(done);
  if (options_.hinted_handoff) {
    op->objects = std::make_shared<const std::vector<Object>>(batch);
    op->fallbacks_used.assign(n, 0);
  }
  if (n == 0) {
    op->done(PutResult{});
    return;
  }
  std::vector<std::vector<std::size_t>> per_node(options_.nodes.size());
  for (std::size_t i = 0; i < n; ++i) {
    auto replicas = placement_.Replicas(std::string(crypto::IdBytes(batch[i].id)), r_);
    op->replica_count[i] = replicas.size();
    for (std::size_t node : replicas) per_node[node].push_back(i);
  }

  for (std::size_t node = 0; node < per_node.size(); ++node) {
    const auto& idx = per_node[node];
    for (std::size_t start = 0; start < idx.size(); start += options_.max_batch) {
      std::size_t end = std::min(idx.size(), start + options_.max_batch);
      auto chunk = std::make_shared<std::vector<std::size_t>>(idx.begin() + start,
                                                              idx.begin() + end);
      wire::Request req;
      auto* put = req.mutable_put();
      for (std::size_t i : *chunk) ToWireObject(batch[i], false, put->add_objects());
      transport_->Call(node, std::move(req), options_.write_timeout,
                       [this, op, chunk, node](CallResult&& r) {
        bool ok = r.status == CallStatus::kOk && r.reply.has_put() &&
                  static_cast<std::size_t>(r.reply.put().results_size()) == chunk->size();
        if (ok) {
          MarkUp(node);
        } else if (r.status == CallStatus::kTimeout || r.status == CallStatus::kUnreachable) {
          MarkDown(node);
        }
        std::unique_lock lock(op->mu);
        if (!ok) {
          op->errors.push_back(r.status == CallStatus::kOk
                                   ? "node " + options_.nodes[node].id + ": malformed PUT reply"
                                   : r.Describe(options_.nodes[node]));
        }
        std::vector<std::pair<std::size_t, std::size_t>> handoffs;  // (object, fallback node)
        for (std::size_t k = 0; k < chunk->size(); ++k) {
          std::size_t i = (*chunk)[k];
          auto status = ok ? r.reply.put().results(static_cast<int>(k)).status()
                           : wire::PUT_UNKNOWN;
          if (status == wire::PUT_STORED || status == wire::PUT_NOT_NEWER) {
            ++op->acks[i];
          } else {
            if (ok) {
              op->errors.push_back("node " + options_.nodes[node].id + " rejected an object");
            }
            std::optional<std::size_t> fallback;
            if (op->objects && status != wire::PUT_REJECTED) {
              fallback = PickFallback((*op->objects)[i].id, op->fallbacks_used[i]);
            }
            if (fallback) {
              handoffs.emplace_back(i, *fallback);
            } else {
              ++op->fails[i];
            }
          }
          op->Decide(i);
        }
        op->FinishIfDone(lock);
        if (lock.owns_lock()) lock.unlock();
        for (auto [i, fallback] : handoffs) Handoff(op, i, node, fallback);
      });
    }
  }
}

std::optional<std::size_t> Replicator::PickFallback(const crypto::ObjectId& id,
                                                    std::size_t& used) {
  auto ranked = placement_.Ranked(std::string(crypto::IdBytes(id)));
  const auto now = Clock::now();
  std::lock_guard lock(health_mu_);
  for (std::size_t k = r_ + used; k < ranked.size(); ++k) {
    if (down_until_[ranked[k]] <= now) {
      used = k - r_ + 1;
      return ranked[k];
    }
  }
  used = ranked.size();
  return std::nullopt;
}

PutResult Replicator::Put(const std::vector<Object>& batch, std::size_t quorum) {
  std::promise<PutResult> promise;
  auto future = promise.get_future();
  PutAsync(batch, [&promise](PutResult&& r) { promise.set_value(std::move(r)); }, quorum);
  return future.get();
}

PutResult Replicator::Delete(const crypto::ObjectId& id, const Version& version) {
  Object o;
  o.id = id;
  o.version = version;
  o.tombstone = true;
  return Put({o});
}

// ---------------------------------------------------------------------------------------------
// Reads

struct Replicator::GetOp {
  // kLied: a copy that authenticates as something else than claimed (never a repair target: a
  // node that lies about what it holds is not fixed by a write).
  enum Outcome { kPending, kGood, kMissing, kCorrupt, kFailed, kOlder, kLied };
  std::mutex mu;
  crypto::ObjectId id{};
  Version min_version;
  std::vector<std::size_t> order;
  std::vector<Outcome> outcome;
  std::vector<Version> versions;
  std::size_t next = 0;
  std::size_t outstanding = 0;
  bool delivered = false;
  bool repaired = false;
  std::optional<Object> best;
  std::vector<std::string> errors;
  std::function<void(GetResult&&)> done;
};

void Replicator::GetAsync(const crypto::ObjectId& id, std::function<void(GetResult&&)> done,
                          Version min_version) {
  auto op = std::make_shared<GetOp>();
  op->id = id;
  op->min_version = min_version;
  op->order = ReadOrder(id);
  op->outcome.assign(op->order.size(), GetOp::kPending);
  op->versions.assign(op->order.size(), Version{});
  op->done = std::move(done);
  SendGet(op);
}

GetResult Replicator::Get(const crypto::ObjectId& id) {
  std::promise<GetResult> promise;
  auto future = promise.get_future();
  GetAsync(id, [&promise](GetResult&& r) { promise.set_value(std::move(r)); });
  return future.get();
}

// Sends the request for the next replica in order, if any is left and nothing was delivered,
// and arms a hedge timer for the one after it.
void Replicator::SendGet(const std::shared_ptr<GetOp>& op) {
  std::size_t slot;
  {
    std::lock_guard lock(op->mu);
    if (op->delivered || op->next >= op->order.size()) return;
    slot = op->next++;
    ++op->outstanding;
  }
  wire::Request req;
  req.mutable_get()->add_ids(std::string(crypto::IdBytes(op->id)));
  transport_->Call(op->order[slot], std::move(req), options_.read_timeout,
                   [this, op, slot](CallResult&& r) { OnGetReply(op, slot, std::move(r)); });
  if (slot + 1 < op->order.size()) {
    transport_->After(options_.hedge_delay, [this, op] {
      bool hedge;
      {
        std::lock_guard lock(op->mu);
        hedge = !op->delivered && op->next < op->order.size();
      }
      if (hedge) {
        ++hedges_sent_;
        SendGet(op);
      }
    });
  }
}

void Replicator::OnGetReply(const std::shared_ptr<GetOp>& op, std::size_t slot, CallResult&& r) {
  const std::size_t node = op->order[slot];
  GetOp::Outcome outcome = GetOp::kFailed;
  std::optional<Object> object;
  std::string error;
  if (r.status == CallStatus::kOk && r.reply.has_get() && r.reply.get().results_size() == 1) {
    MarkUp(node, r.latency);
    auto* res = r.reply.mutable_get()->mutable_results(0);
    if (!res->found()) {
      outcome = GetOp::kMissing;
    } else {
      object = FromWireObject(std::move(*res->mutable_object()));
      const Verdict verdict =
          !object || object->id != op->id ? Verdict::kCorrupt : Verify(node, *object);
      if (verdict == Verdict::kGenuine) {
        outcome = object->version < op->min_version ? GetOp::kOlder : GetOp::kGood;
        if (outcome == GetOp::kOlder) {
          error = "node " + options_.nodes[node].id + ": only version " +
                  ToString(object->version) + ", older than " + ToString(op->min_version);
        }
      } else {
        outcome = verdict == Verdict::kCorrupt ? GetOp::kCorrupt : GetOp::kLied;
        error = "node " + options_.nodes[node].id + ": copy " + ToString(verdict);
      }
    }
  } else {
    if (r.status == CallStatus::kTimeout || r.status == CallStatus::kUnreachable) MarkDown(node);
    error = r.status == CallStatus::kOk ? "node " + options_.nodes[node].id + ": malformed reply"
                                        : r.Describe(options_.nodes[node]);
  }

  std::function<void(GetResult&&)> deliver;
  GetResult result;
  bool send_next = false, repair = false;
  {
    std::lock_guard lock(op->mu);
    --op->outstanding;
    op->outcome[slot] = outcome;
    if (!error.empty()) op->errors.push_back(error);
    if (outcome == GetOp::kOlder) {
      op->versions[slot] = object->version;
      if (!op->best || op->best->version < object->version) op->best = *object;
    }
    if (outcome == GetOp::kGood) {
      op->versions[slot] = object->version;
      if (!op->best || op->best->version < object->version) op->best = *object;
      if (!op->delivered) {
        op->delivered = true;
        result.status = GetStatus::kFound;
        result.object = std::move(*object);
        deliver = std::move(op->done);
      }
    } else if (!op->delivered) {
      if (op->next < op->order.size()) {
        send_next = true;
      } else if (op->outstanding == 0) {
        op->delivered = true;
        std::size_t missing = std::count(op->outcome.begin(), op->outcome.end(), GetOp::kMissing);
        if (missing == op->order.size() || missing > r_ - w_) {
          result.status = GetStatus::kNotFound;
        } else {
          result.status = GetStatus::kUnavailable;
          result.error = "object " + crypto::ToHex(op->id) + ": no verified copy";
          for (const auto& e : op->errors) result.error += "; " + e;
        }
        deliver = std::move(op->done);
      }
    }
    if (op->outstanding == 0 && op->best && !op->repaired && options_.read_repair &&
        (op->delivered || op->next >= op->order.size())) {
      op->repaired = true;
      repair = true;
    }
  }
  if (deliver) deliver(std::move(result));
  if (send_next) SendGet(op);
  if (repair) RepairAfterGet(op);
}

void Replicator::RepairAfterGet(const std::shared_ptr<GetOp>& op) {
  // op->repaired is set and no request is outstanding: nothing else touches op now.
  const Object& best = *op->best;
  for (std::size_t slot = 0; slot < op->next; ++slot) {
    auto o = op->outcome[slot];
    bool stale =
        (o == GetOp::kGood || o == GetOp::kOlder) && op->versions[slot] < best.version;
    if (o == GetOp::kMissing || o == GetOp::kCorrupt || stale) {
      spdlog::info("object {}: repairing node {} ({})", crypto::ToHex(best.id),
                   options_.nodes[op->order[slot]].id,
                   o == GetOp::kMissing ? "missing" : o == GetOp::kCorrupt ? "corrupt" : "stale");
      SendRepair(op->order[slot], best, o == GetOp::kCorrupt);
    }
  }
}

void Replicator::SendRepair(std::size_t node, const Object& object, bool force) {
  wire::Request req;
  ToWireObject(object, force, req.mutable_put()->add_objects());
  ++repairs_sent_;
  transport_->Call(node, std::move(req), options_.write_timeout, [](CallResult&&) {});
}

// ---------------------------------------------------------------------------------------------
// Listing, feed, stat

wire::Reply Replicator::CallSync(std::size_t node, wire::Request req, const char* what) {
  if (node >= options_.nodes.size()) throw Error(EINVAL, "no node " + std::to_string(node));
  CallResult r = transport_->Call(node, std::move(req), options_.admin_timeout).get();
  if (r.status != CallStatus::kOk) {
    throw Error(EAGAIN, std::string(what) + " failed: " + r.Describe(options_.nodes[node]));
  }
  MarkUp(node);
  return std::move(r.reply);
}

wire::ListReply Replicator::List(std::size_t node, std::string_view after, std::uint32_t limit) {
  wire::Request req;
  req.mutable_list()->set_after(std::string(after));
  req.mutable_list()->set_limit(limit);
  wire::Reply reply = CallSync(node, std::move(req), "LIST");
  if (!reply.has_list()) throw Error(EIO, "LIST: malformed reply");
  return std::move(*reply.mutable_list());
}

wire::FeedReply Replicator::Feed(std::size_t node, std::uint64_t since, std::uint32_t limit) {
  wire::Request req;
  req.mutable_feed()->set_since(since);
  req.mutable_feed()->set_limit(limit);
  wire::Reply reply = CallSync(node, std::move(req), "FEED");
  if (!reply.has_feed()) throw Error(EIO, "FEED: malformed reply");
  return std::move(*reply.mutable_feed());
}

wire::StatReply Replicator::Stat(std::size_t node) {
  wire::Request req;
  req.mutable_stat();
  wire::Reply reply = CallSync(node, std::move(req), "STAT");
  if (!reply.has_stat()) throw Error(EIO, "STAT: malformed reply");
  return std::move(*reply.mutable_stat());
}

std::size_t Replicator::WaitConnected(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::size_t up = 0;
  do {
    auto pings = PingAll(std::chrono::milliseconds(300));
    up = static_cast<std::size_t>(
        std::count_if(pings.begin(), pings.end(), [](const auto& p) { return p.has_value(); }));
    if (up == pings.size()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (Clock::now() < deadline);
  return up;
}

std::vector<std::optional<std::chrono::microseconds>> Replicator::PingAll(
    std::chrono::milliseconds timeout) {
  std::vector<std::future<CallResult>> calls;
  for (std::size_t node = 0; node < options_.nodes.size(); ++node) {
    wire::Request req;
    req.mutable_ping();
    calls.push_back(transport_->Call(node, std::move(req), timeout));
  }
  std::vector<std::optional<std::chrono::microseconds>> out;
  for (std::size_t node = 0; node < calls.size(); ++node) {
    CallResult r = calls[node].get();
    if (r.status == CallStatus::kOk && r.reply.has_ping()) {
      MarkUp(node);
      out.emplace_back(r.latency);
    } else {
      out.emplace_back(std::nullopt);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Listing and resolution

std::vector<std::string> Replicator::node_ids() const {
  std::vector<std::string> ids;
  for (const auto& n : options_.nodes) ids.push_back(n.id);
  return ids;
}

std::size_t FeedSummary::answered_count() const {
  return static_cast<std::size_t>(std::count(answered.begin(), answered.end(), true));
}

void Replicator::AddClaims(std::size_t node,
                           const google::protobuf::RepeatedPtrField<wire::ListEntry>& entries,
                           std::map<std::string, Listed>* merged) {
  for (const auto& e : entries) {
    auto id = crypto::IdFromBytes(e.id());
    if (!id) continue;
    Claim c{node, FromWire(e.version()), e.tombstone(), e.digest(), e.size(), false};
    if (TooFarAhead(c.version)) {
      CountAgainst(node, Verdict::kFuture, *id, c.version, "listed");
      c.refused = true;
    }
    auto [it, inserted] = merged->try_emplace(e.id());
    if (inserted) it->second.id = *id;
    // A feed read in pages may name an id twice (it changed between pages): keep the newest.
    auto same = std::find_if(it->second.claims.begin(), it->second.claims.end(),
                             [&](const Claim& k) { return k.node == node; });
    if (same == it->second.claims.end()) {
      it->second.claims.push_back(std::move(c));
    } else if (c.version > same->version) {
      *same = std::move(c);
    }
  }
}

void Replicator::EmitMerged(std::map<std::string, Listed>* merged,
                            const std::function<void(Listed&&)>& fn) {
  for (auto& [key, listed] : *merged) {
    std::stable_sort(listed.claims.begin(), listed.claims.end(),
                     [](const Claim& a, const Claim& b) { return a.version > b.version; });
    fn(std::move(listed));
  }
  merged->clear();
}

namespace {
// A call to a node that may still be reconnecting: a few short retries on EAGAIN.
template <class Fn>
auto WithRetries(Fn&& fn) {
  for (int attempt = 0;; ++attempt) {
    try {
      return fn();
    } catch (const Error& e) {
      if (attempt >= 5 || e.err() != EAGAIN) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
}
}  // namespace

ListSummary Replicator::ListAll(const std::function<void(Listed&&)>& fn) {
  const std::size_t n = options_.nodes.size();
  ListSummary summary;
  summary.answered.assign(n, false);
  std::map<std::string, Listed> merged;
  for (std::size_t node = 0; node < n; ++node) {
    std::string after;
    try {
      while (true) {
        wire::ListReply page = WithRetries([&] { return List(node, after); });
        AddClaims(node, page.entries(), &merged);
        if (page.done() || page.entries_size() == 0) break;
        after = page.entries(page.entries_size() - 1).id();
      }
      summary.answered[node] = true;
    } catch (const Error& e) {
      spdlog::warn("listing node {}: {}", options_.nodes[node].id, e.what());
    }
  }
  EmitMerged(&merged, fn);
  return summary;
}

FeedSummary Replicator::ReadFeeds(const std::vector<std::uint64_t>& since,
                                  const std::function<void(Listed&&)>& fn) {
  const std::size_t n = options_.nodes.size();
  FeedSummary summary;
  summary.answered.assign(n, false);
  summary.reached.assign(n, 0);
  summary.reset.assign(n, false);
  std::map<std::string, Listed> merged;
  for (std::size_t node = 0; node < n; ++node) {
    std::uint64_t cursor = node < since.size() ? since[node] : 0;
    summary.reached[node] = cursor;
    try {
      while (true) {
        wire::FeedReply page = WithRetries([&] { return Feed(node, cursor); });
        if (page.last_seq() < cursor) {
          // The node's sequence went backwards: a new or wiped node behind the same id. What
          // it holds now is read from the start.
          spdlog::warn("node {}: its change feed is at {}, behind this box's cursor {}: reading "
                       "it from the start",
                       options_.nodes[node].id, page.last_seq(), cursor);
          summary.reset[node] = true;
          cursor = 0;
          continue;
        }
        AddClaims(node, page.entries(), &merged);
        if (page.entries_size() > 0) cursor = page.entries(page.entries_size() - 1).seq();
        if (page.done() || page.entries_size() == 0) {
          cursor = std::max(cursor, page.last_seq());
          break;
        }
      }
      summary.reached[node] = cursor;
      summary.answered[node] = true;
    } catch (const Error& e) {
      spdlog::warn("reading the change feed of node {}: {}", options_.nodes[node].id, e.what());
    }
  }
  EmitMerged(&merged, fn);
  return summary;
}

// Resolution walks the claimed versions from the newest down. Within one version the holders are
// asked one after the other (trusted, answering nodes first); the first authenticated copy at
// that version or newer ends it. A version is given up only when each of its holders answered
// with something that is not an authenticated copy of it; if one did not answer, its claim may
// be true, and deciding on an older version could return a stale one.
struct Replicator::ResolveOp {
  crypto::ObjectId id{};
  struct Group {
    Version version;
    std::vector<std::size_t> holders;
  };
  std::vector<Group> groups;
  std::size_t group = 0, holder = 0;
  bool unanswered = false;  // a holder of the current version did not answer
  std::vector<std::pair<std::size_t, Version>> unsealed;  // unsealed tombstones seen, newest first
  std::vector<std::string> errors;
  std::function<void(GetResult&&)> done;
};

void Replicator::ResolveAsync(const Listed& listed, std::function<void(GetResult&&)> done) {
  auto op = std::make_shared<ResolveOp>();
  op->id = listed.id;
  op->done = std::move(done);
  for (const Claim& c : listed.claims) {
    if (c.refused) continue;
    if (op->groups.empty() || op->groups.back().version != c.version)
      op->groups.push_back({c.version, {}});
    op->groups.back().holders.push_back(c.node);
  }
  // Nodes that recently failed or lied are asked last.
  const auto now = Clock::now();
  for (auto& g : op->groups) {
    std::stable_sort(g.holders.begin(), g.holders.end(), [&](std::size_t a, std::size_t b) {
      auto rank = [&](std::size_t node) {
        bool down;
        {
          std::lock_guard lock(health_mu_);
          down = down_until_[node] > now;
        }
        return (Suspect(node) ? 2 : 0) + (down ? 1 : 0);
      };
      return rank(a) < rank(b);
    });
  }
  ResolveNext(op);
}

void Replicator::ResolveNext(const std::shared_ptr<ResolveOp>& op) {
  while (op->group < op->groups.size()) {
    const ResolveOp::Group& g = op->groups[op->group];
    if (op->holder < g.holders.size()) {
      const std::size_t node = g.holders[op->holder++];
      wire::Request req;
      req.mutable_get()->add_ids(std::string(crypto::IdBytes(op->id)));
      transport_->Call(node, std::move(req), options_.read_timeout,
                       [this, op, node](CallResult&& r) {
        const Version wanted = op->groups[op->group].version;
        if (r.status != CallStatus::kOk || !r.reply.has_get() ||
            r.reply.get().results_size() != 1) {
          if (r.status == CallStatus::kTimeout || r.status == CallStatus::kUnreachable)
            MarkDown(node);
          op->unanswered = true;
          op->errors.push_back(r.status == CallStatus::kOk
                                   ? "node " + options_.nodes[node].id + ": malformed reply"
                                   : r.Describe(options_.nodes[node]));
          return ResolveNext(op);
        }
        MarkUp(node, r.latency);
        auto* res = r.reply.mutable_get()->mutable_results(0);
        if (!res->found()) {  // dropped since the listing (collected, moved), or withheld
          op->errors.push_back("node " + options_.nodes[node].id + ": no longer has it");
          return ResolveNext(op);
        }
        std::optional<Object> o = FromWireObject(std::move(*res->mutable_object()));
        const Verdict v = !o || o->id != op->id ? Verdict::kCorrupt : Verify(node, *o);
        if (v != Verdict::kGenuine) {
          if (v == Verdict::kUnauthenticated) op->unsealed.emplace_back(node, o->version);
          op->errors.push_back("node " + options_.nodes[node].id + ": copy " + ToString(v));
          return ResolveNext(op);
        }
        if (!op->unsealed.empty()) {
          auto info = crypto::Inspect(o->sealed);
          if (info && info->format >= crypto::kSealFormatVersion) {
            for (const auto& [liar, claim] : op->unsealed) {
              CountAgainst(liar, Verdict::kForged, op->id, claim,
                           "an unsealed tombstone over an object of format 2 (version " +
                               ToString(o->version) + "), which only a sealed one can delete");
            }
          } else {
            spdlog::warn("object {}: an unsealed tombstone of store format 1 (version {}) is "
                         "newer than the authenticated version {}: it cannot be checked, so the "
                         "authenticated version is used",
                         crypto::ToHex(op->id), ToString(op->unsealed.front().second),
                         ToString(o->version));
          }
        }
        if (o->version < wanted) {
          // An authenticated copy, but older than the node listed: the listing was a lie.
          CountAgainst(node, Verdict::kForged, op->id, wanted,
                       "listed, but it serves only the older version " + ToString(o->version));
          op->errors.push_back("node " + options_.nodes[node].id + ": serves an older version");
          return ResolveNext(op);
        }
        GetResult result;
        result.status = GetStatus::kFound;
        result.object = std::move(*o);
        auto done = std::move(op->done);
        done(std::move(result));
      });
      return;
    }
    if (op->unanswered) {
      GetResult result;
      result.status = GetStatus::kUnavailable;
      result.error = "object " + crypto::ToHex(op->id) + ": a holder of version " +
                     ToString(op->groups[op->group].version) + " did not answer";
      for (const auto& e : op->errors) result.error += "; " + e;
      auto done = std::move(op->done);
      done(std::move(result));
      return;
    }
    ++op->group;
    op->holder = 0;
  }
  GetResult result;
  result.status = GetStatus::kNotFound;
  result.error = "object " + crypto::ToHex(op->id) + ": no node backs what it lists";
  for (const auto& e : op->errors) result.error += "; " + e;
  auto done = std::move(op->done);
  done(std::move(result));
}

void Replicator::ReadNewestAsync(const crypto::ObjectId& id, const std::vector<std::size_t>& also,
                                 std::function<void(GetResult&&)> done) {
  const std::string key(crypto::IdBytes(id));
  std::vector<std::size_t> nodes = placement_.Replicas(key, r_);
  const std::size_t replicas = nodes.size();
  for (std::size_t n : also) {
    if (n < options_.nodes.size() && std::find(nodes.begin(), nodes.end(), n) == nodes.end())
      nodes.push_back(n);
  }
  struct State {
    std::mutex mu;
    std::size_t outstanding = 0;
    std::size_t replicas_answered = 0;
    std::optional<Object> best;
    std::vector<std::string> errors;
    std::function<void(GetResult&&)> done;
  };
  auto st = std::make_shared<State>();
  st->outstanding = nodes.size();
  st->done = std::move(done);
  const std::size_t needed = r_ - std::min(r_, w_) + 1;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const std::size_t node = nodes[i];
    const bool replica = i < replicas;
    wire::Request req;
    req.mutable_get()->add_ids(key);
    transport_->Call(node, std::move(req), options_.read_timeout,
                     [this, st, node, replica, id, needed](CallResult&& r) {
      std::optional<Object> genuine;
      bool answered = false;
      std::string error;
      if (r.status == CallStatus::kOk && r.reply.has_get() && r.reply.get().results_size() == 1) {
        MarkUp(node, r.latency);
        auto* res = r.reply.mutable_get()->mutable_results(0);
        // A replica counts as having answered when it served a genuine copy or said it holds
        // none; a copy that does not authenticate is no answer (else a corrupt reply and a
        // stale replica together would pass for enough replicas, and the stale version for
        // the newest: a deleted message would come back).
        answered = !res->found();
        if (res->found()) {
          std::optional<Object> o = FromWireObject(std::move(*res->mutable_object()));
          const Verdict v = !o || o->id != id ? Verdict::kCorrupt : Verify(node, *o);
          if (v == Verdict::kGenuine) {
            genuine = std::move(o);
            answered = true;
          } else {
            error = "node " + options_.nodes[node].id + ": copy " + ToString(v);
          }
        }
      } else {
        if (r.status == CallStatus::kTimeout || r.status == CallStatus::kUnreachable)
          MarkDown(node);
        error = r.status == CallStatus::kOk ? "node " + options_.nodes[node].id + ": malformed reply"
                                            : r.Describe(options_.nodes[node]);
      }
      std::function<void(GetResult&&)> deliver;
      GetResult result;
      {
        std::lock_guard lock(st->mu);
        if (answered && replica) ++st->replicas_answered;
        if (genuine && (!st->best || st->best->version < genuine->version))
          st->best = std::move(genuine);
        if (!error.empty()) st->errors.push_back(error);
        if (--st->outstanding > 0) return;
        if (st->replicas_answered < needed) {
          result.status = GetStatus::kUnavailable;
          result.error = "object " + crypto::ToHex(id) + ": only " +
                         std::to_string(st->replicas_answered) + " of its replicas answered";
        } else if (st->best) {
          result.status = GetStatus::kFound;
          result.object = std::move(*st->best);
        } else {
          result.status = GetStatus::kNotFound;
        }
        for (const auto& e : st->errors) result.error += "; " + e;
        deliver = std::move(st->done);
      }
      deliver(std::move(result));
    });
  }
}

GetResult Replicator::Resolve(const Listed& listed) {
  std::promise<GetResult> promise;
  auto future = promise.get_future();
  ResolveAsync(listed, [&promise](GetResult&& r) { promise.set_value(std::move(r)); });
  return future.get();
}

// ---------------------------------------------------------------------------------------------
// Scrub

ScrubReport Replicator::Scrub(const std::function<void(std::uint64_t, std::uint64_t)>& progress,
                              bool repair, const CollectGate& gate) {
  ScrubReport report;
  const std::size_t n = options_.nodes.size();
  std::vector<Listed> all;
  ListSummary summary = ListAll([&](Listed&& l) { all.push_back(std::move(l)); });
  const std::vector<bool>& reachable = summary.answered;
  for (std::size_t node = 0; node < n; ++node) {
    if (!reachable[node]) report.unreachable_nodes.push_back(options_.nodes[node].id);
  }
  const bool all_reachable = summary.answered_count() == n;

  const std::uint64_t total = all.size();
  if (progress) progress(0, total);
  std::uint64_t done_count = 0;
  auto last_progress = Clock::now();
  const auto grace_ns = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(options_.tombstone_grace).count());
  auto old_enough = [&](const crypto::ObjectId& id, const Version& v) {
    return v.hlc + grace_ns < WallNs() && (!gate || gate(id, v));
  };
  auto send_and_wait = [&](std::vector<std::pair<std::size_t, wire::Request>> requests,
                           std::chrono::milliseconds timeout) {
    std::vector<std::pair<std::size_t, std::future<CallResult>>> calls;
    for (auto& [node, req] : requests)
      calls.emplace_back(node, transport_->Call(node, std::move(req), timeout));
    std::vector<std::pair<std::size_t, CallResult>> out;
    for (auto& [node, f] : calls) out.emplace_back(node, f.get());
    return out;
  };
  // Drops `version` of an object from `nodes` (a node drops it only if it holds exactly that
  // version or older); returns how many did.
  auto drop_from = [&](const std::string& id_bytes, const std::vector<std::size_t>& nodes,
                       const Version& version) {
    std::vector<std::pair<std::size_t, wire::Request>> drops;
    for (std::size_t node : nodes) {
      wire::Request req;
      auto* item = req.mutable_drop()->add_items();
      item->set_id(id_bytes);
      ToWire(version, item->mutable_version());
      drops.emplace_back(node, std::move(req));
    }
    std::size_t dropped = 0;
    for (auto& [node, r] : send_and_wait(std::move(drops), options_.write_timeout)) {
      if (r.status == CallStatus::kOk && r.reply.has_drop() && r.reply.drop().dropped_size() == 1 &&
          r.reply.drop().dropped(0))
        ++dropped;
    }
    return dropped;
  };
  auto claimants = [](const Listed& l) {
    std::vector<std::size_t> nodes;
    for (const Claim& c : l.claims) nodes.push_back(c.node);
    return nodes;
  };

  for (const Listed& listed : all) {
    ++report.checked;
    const std::string id_bytes = std::string(crypto::IdBytes(listed.id));
    const auto replicas = placement_.Replicas(id_bytes, r_);
    auto is_replica = [&](std::size_t node) {
      return std::find(replicas.begin(), replicas.end(), node) != replicas.end();
    };
    std::vector<const Claim*> by_node(n, nullptr);
    for (const Claim& c : listed.claims) by_node[c.node] = &c;
    const Claim& top = listed.newest();
    bool any_unreachable = false, agreed = true, extra_holders = false;
    for (std::size_t node : replicas) {
      if (!reachable[node]) {
        any_unreachable = true;
        continue;
      }
      const Claim* c = by_node[node];
      if (!c || c->version != top.version || c->digest != top.digest ||
          c->tombstone != top.tombstone)
        agreed = false;
    }
    for (const Claim& c : listed.claims) {
      if (!is_replica(c.node)) extra_holders = true;
    }
    if (any_unreachable) ++report.unreachable;
    const bool collectable = options_.collect_tombstones && top.tombstone && all_reachable &&
                             old_enough(listed.id, top.version);
    auto tick = [&] {
      ++done_count;
      if (progress && Clock::now() - last_progress > std::chrono::milliseconds(200)) {
        last_progress = Clock::now();
        progress(done_count, total);
      }
    };
    // Every replica lists the same newest version with the same bytes and nothing else is to be
    // done: no copy is fetched and nothing is written, so no claim is spread or acted on.
    if (agreed && !extra_holders && !collectable) {
      tick();
      continue;
    }
    // An unsealed tombstone (store format 1) authenticates nothing, so it is never copied to
    // another node. One that every replica holds, with no other holder and every node answering,
    // is collected after the grace period as format 1 did: dropping it removes only the marker
    // of a delete that no node contradicts.
    const bool unsealed_top = top.tombstone && top.digest.empty();
    if (unsealed_top && agreed) {
      if (repair && collectable && !extra_holders) {
        const auto holders = claimants(listed);
        if (drop_from(id_bytes, holders, top.version) == holders.size()) ++report.collected;
      }
      tick();
      continue;
    }

    // Something is to be written or dropped: only an authenticated copy may drive it.
    GetResult resolved = Resolve(listed);
    const bool only_unsealed_tombstones =
        std::all_of(listed.claims.begin(), listed.claims.end(),
                    [](const Claim& c) { return c.refused || (c.tombstone && c.digest.empty()); });
    if (resolved.status == GetStatus::kNotFound && only_unsealed_tombstones) {
      // Replicas of a format 1 delete that disagree (one lacks it, or holds another version):
      // nothing authenticated to repair with, and nothing lost.
      ++report.differing;
      tick();
      continue;
    }
    if (resolved.status != GetStatus::kFound) {
      if (resolved.status == GetStatus::kUnavailable) {
        if (!any_unreachable) ++report.unreachable;
        spdlog::warn("scrub: {}", resolved.error);
      } else {
        ++report.unrecoverable;
        spdlog::error("scrub: {}", resolved.error);
      }
      tick();
      continue;
    }
    const Object& good = resolved.object;
    const std::string good_digest = Digest(good.sealed);
    // An unsealed tombstone newer than the authenticated version may be a genuine format 1
    // delete: the older version is not spread over it (ResolveNext logged it).
    const bool unsealed_newer =
        std::any_of(listed.claims.begin(), listed.claims.end(), [&](const Claim& c) {
          return c.tombstone && c.digest.empty() && good.version < c.version;
        });
    auto holds_good = [&](const Claim* c) {
      return c && c->version == good.version && c->digest == good_digest &&
             c->tombstone == good.tombstone;
    };

    std::size_t confirmed = 0;
    bool repaired = false, differs = false;
    std::vector<std::pair<std::size_t, wire::Request>> writes;
    for (std::size_t node : replicas) {
      if (!reachable[node]) continue;
      const Claim* c = by_node[node];
      if (holds_good(c)) {
        ++confirmed;
        continue;
      }
      // A node that claims a newer version than any it could back keeps its claim: a write of
      // an older version would not replace it. It was counted while resolving.
      if (c && c->version > good.version) continue;
      differs = true;
      if (!repair || unsealed_newer) continue;
      wire::Request req;
      ToWireObject(good, /*repair=*/c && c->version == good.version, req.mutable_put()->add_objects());
      ++repairs_sent_;
      writes.emplace_back(node, std::move(req));
    }
    for (auto& [node, r] : send_and_wait(std::move(writes), options_.write_timeout)) {
      if (r.status == CallStatus::kOk && r.reply.has_put() && r.reply.put().results_size() == 1 &&
          r.reply.put().results(0).status() != wire::PUT_REJECTED) {
        ++confirmed;
        repaired = true;
      } else {
        spdlog::warn("scrub: object {}: repair failed: {}", crypto::ToHex(listed.id),
                     r.Describe(options_.nodes[node]));
      }
    }
    if (repaired) ++report.repaired;
    if (differs) ++report.differing;
    if (!repair) {
      tick();
      continue;
    }

    // An authenticated tombstone that every replica holds, with every node answering, older
    // than the grace period: drop it everywhere (nothing can bring back the object it deleted).
    // Every replica's copy is fetched and authenticated first: a claim alone is not enough to
    // delete the last record of a delete.
    if (options_.collect_tombstones && good.tombstone && all_reachable &&
        confirmed == replicas.size() && old_enough(listed.id, good.version)) {
      std::vector<std::pair<std::size_t, wire::Request>> gets;
      for (std::size_t node : replicas) {
        wire::Request req;
        req.mutable_get()->add_ids(id_bytes);
        gets.emplace_back(node, std::move(req));
      }
      bool all_hold = true;
      for (auto& [node, r] : send_and_wait(std::move(gets), options_.admin_timeout)) {
        std::optional<Object> o;
        if (r.status == CallStatus::kOk && r.reply.has_get() && r.reply.get().results_size() == 1 &&
            r.reply.get().results(0).found()) {
          o = FromWireObject(std::move(*r.reply.mutable_get()->mutable_results(0)->mutable_object()));
        }
        all_hold = all_hold && o && o->id == listed.id && o->version == good.version &&
                   o->tombstone && Verify(node, *o) == Verdict::kGenuine;
      }
      if (all_hold) {
        const auto holders = claimants(listed);
        if (drop_from(id_bytes, holders, good.version) == holders.size()) ++report.collected;
        tick();
        continue;
      }
    }

    // Take the object off nodes that are not its replicas, once all R replicas hold it.
    if (confirmed == replicas.size()) {
      std::vector<std::size_t> extra;
      for (const Claim& c : listed.claims) {
        if (!is_replica(c.node) && reachable[c.node] && !(c.version > good.version))
          extra.push_back(c.node);
      }
      if (!extra.empty() && drop_from(id_bytes, extra, good.version) > 0) ++report.moved;
    }
    tick();
  }
  if (progress) progress(done_count, total);
  return report;
}

}  // namespace coffer::replicator
