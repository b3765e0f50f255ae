// The commit pipeline (see commit_pipeline.h).
#include "fs/commit_pipeline.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "fs/padding.h"
#include "fs/records.pb.h"

namespace coffer::fs {

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

CommitPipeline::CommitPipeline(const crypto::Keyring& keys, LmdbStore& local,
                               replicator::Backend* remote, PipelineOptions options,
                               PipelineHooks hooks)
    : keys_(keys),
      local_(local),
      remote_(remote),
      options_(options),
      hooks_(std::move(hooks)),
      degraded_log_(options.degraded_log_interval) {}

CommitPipeline::~CommitPipeline() {
  try {
    Stop();
  } catch (const std::exception& e) {
    spdlog::error("stopping the commit pipeline: {}", e.what());
  }
}

std::size_t CommitPipeline::LoadOutbox() {
  std::size_t loaded = 0, damaged = 0;
  std::lock_guard lock(mu_);
  local_.Scan(Table::kOutbox, [&](std::string_view key, std::string_view value) {
    auto id = crypto::IdFromBytes(key);
    proto::OutboxEntry e;
    // An entry only says what to send (the bytes are in their own row): a damaged one is
    // dropped with an error rather than keeping the mailstore from mounting; verify and scrub
    // show what the nodes then lack.
    if (!id || !e.ParseFromArray(value.data(), static_cast<int>(value.size())) ||
        e.table() > static_cast<std::uint32_t>(Table::kChunks) || e.key().size() > 64) {
      ++damaged;
      return;
    }
    Entry entry;
    entry.pending.push_back({0, crypto::ObjectVersion{e.version().hlc(), e.version().box_id()}});
    entry.tombstone = e.tombstone();
    if (e.tombstone()) entry.sealed = std::make_shared<const std::string>(e.sealed_tombstone());
    entry.table = static_cast<Table>(e.table());
    entry.key = e.key();
    entry.queued_ms = e.queued_unix_ms();
    entry.failed = true;  // to be replayed
    pending_seqs_.insert(0);
    outbox_[*id] = std::move(entry);
    ++loaded;
  });
  if (damaged) {
    spdlog::error("{} damaged outbox entries ignored: run `cofferctl verify` to see what the "
                  "storage nodes lack",
                  damaged);
  }
  if (loaded) {
    spdlog::warn("{} changes from before the restart are not yet on enough storage nodes; "
                 "replaying them",
                 loaded);
  }
  return loaded;
}

void CommitPipeline::Start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  stopping_ = false;
  committer_done_ = false;
  committer_ = std::thread([this] { CommitterLoop(); });
  local_writer_ = std::thread([this] { LocalWriterLoop(); });
}

void CommitPipeline::Stop() {
  {
    std::lock_guard lock(mu_);
    if (!started_) return;
    stopping_ = true;
    wanted_ = std::max(wanted_, last_taken_ + 1);  // a last batch with whatever is open
  }
  work_cv_.notify_all();
  local_cv_.notify_all();
  if (committer_.joinable()) committer_.join();
  {
    std::lock_guard lock(mu_);
    local_cv_.notify_all();
  }
  if (local_writer_.joinable()) local_writer_.join();
  std::lock_guard lock(mu_);
  started_ = false;
  verdict_cv_.notify_all();
}

void CommitPipeline::Touched() {
  std::lock_guard lock(mu_);
  if (!touched_) {
    touched_ = true;
    touched_at_ = Clock::now();
    work_cv_.notify_one();
  }
}

void CommitPipeline::Request(std::uint64_t seq) {
  std::lock_guard lock(mu_);
  if (seq > wanted_) {
    wanted_ = seq;
    work_cv_.notify_one();
  }
}

std::uint64_t CommitPipeline::next_seq() const {
  std::lock_guard lock(mu_);
  return last_taken_ + 1;
}

int CommitPipeline::Wait(std::uint64_t seq) {
  std::unique_lock lock(mu_);
  if (seq > wanted_) {
    wanted_ = seq;
    work_cv_.notify_one();
  }
  verdict_cv_.wait(lock, [&] { return decided_through_ >= seq || !started_; });
  if (decided_through_ < seq) return sticky_error_ ? sticky_error_ : EIO;
  auto it = verdicts_.find(seq);
  return it == verdicts_.end() ? 0 : it->second;
}

int CommitPipeline::WaitLocal(std::uint64_t seq) {
  std::unique_lock lock(mu_);
  if (seq > wanted_) {
    wanted_ = seq;
    work_cv_.notify_one();
  }
  verdict_cv_.wait(lock, [&] { return local_through_ >= seq || sticky_error_ || !started_; });
  return sticky_error_ ? sticky_error_ : (local_through_ >= seq ? 0 : EIO);
}

void CommitPipeline::QueueLocal(Mutation m) {
  std::lock_guard lock(mu_);
  local_rows_.push_back(std::move(m));
  local_cv_.notify_one();
}

bool CommitPipeline::InOutbox(const crypto::ObjectId& id) const {
  std::lock_guard lock(mu_);
  return outbox_.count(id) != 0;
}

std::optional<crypto::ObjectVersion> CommitPipeline::PendingVersion(
    const crypto::ObjectId& id) const {
  std::lock_guard lock(mu_);
  auto it = outbox_.find(id);
  if (it == outbox_.end() || it->second.pending.empty()) return std::nullopt;
  return it->second.pending.back().version;
}

int CommitPipeline::sticky_error() const {
  std::lock_guard lock(mu_);
  return sticky_error_;
}

PipelineStatus CommitPipeline::status() const {
  std::lock_guard lock(mu_);
  PipelineStatus s = counters_;
  s.outbox = outbox_.size();
  for (const auto& [id, e] : outbox_) {
    if (e.failed) ++s.outbox_failed;
    if (e.queued_ms && (s.oldest_ms == 0 || e.queued_ms < s.oldest_ms)) s.oldest_ms = e.queued_ms;
  }
  s.last_error = last_error_;
  s.sticky_error = sticky_error_;
  return s;
}

// ---- Sealing and the outbox ----

CommitPipeline::Sealed CommitPipeline::Seal(const ChangeSet& cs) const {
  Sealed s;
  const std::uint32_t epoch = keys_.current_epoch();
  const bool to_nodes = remote_ && !options_.read_only;
  s.objects.reserve(to_nodes ? cs.writes.size() : 0);
  s.rows.reserve(cs.writes.size() + cs.local.size());
  // One copy of each object's sealed bytes, shared by its local row and the outbox; the round
  // copies them into its requests and lets go.
  for (const RecordWrite& w : cs.writes) {
    std::shared_ptr<const std::string> bytes;
    if (w.plaintext) {
      bytes = std::make_shared<const std::string>(
          crypto::Seal(keys_, w.kind, w.id, epoch, w.version, *w.plaintext,
                       PaddedSize(w.kind, w.plaintext->size())));
      s.rows.push_back(Mutation{w.table, w.key, std::nullopt, bytes});
      if (w.kind == crypto::ObjectKind::kChunk) s.chunks.push_back(w.id);
    } else {
      if (to_nodes) {  // a local store keeps no tombstones
        proto::Tombstone t;
        t.set_kind(static_cast<std::uint32_t>(w.kind));
        const std::string plain = t.SerializeAsString();
        bytes = std::make_shared<const std::string>(
            crypto::Seal(keys_, crypto::ObjectKind::kTombstone, w.id, epoch, w.version, plain,
                         PaddedSize(crypto::ObjectKind::kTombstone, plain.size())));
      }
      s.rows.push_back(Mutation{w.table, w.key, std::nullopt});
    }
    if (!to_nodes) continue;
    replicator::Object o;
    o.id = w.id;
    o.version = w.version;
    o.tombstone = !w.plaintext;
    s.sealed.push_back(bytes ? bytes : std::make_shared<const std::string>());
    s.where.emplace_back(w.table, w.key);
    s.objects.push_back(std::move(o));
  }
  for (const Mutation& m : cs.local) s.rows.push_back(m);
  return s;
}

std::uint64_t CommitPipeline::MinPendingSeq() const {
  return pending_seqs_.empty() ? UINT64_MAX : *pending_seqs_.begin();
}

std::vector<replicator::Object> CommitPipeline::Enqueue(std::uint64_t seq, Sealed& s,
                                                        Batch* rows) {
  const std::int64_t now = UnixMs();
  std::vector<replicator::Object> send;
  send.reserve(s.objects.size());
  for (std::size_t i = 0; i < s.objects.size(); ++i) {
    replicator::Object& o = s.objects[i];
    auto [it, inserted] = outbox_.try_emplace(o.id);
    Entry& e = it->second;
    if (inserted) e.queued_ms = now;
    e.pending.push_back({seq, o.version});
    pending_seqs_.insert(seq);
    e.tombstone = o.tombstone;
    e.sealed = s.sealed[i];
    e.table = s.where[i].first;
    e.key = s.where[i].second;
    e.failed = false;
    e.in_flight = true;
    // The entry's row, written with the batch's own rows: what to send if this box restarts
    // before the nodes took it (the bytes are in their own row; a tombstone's here).
    proto::OutboxEntry row;
    row.set_seq(e.pending.front().seq);
    row.set_table(static_cast<std::uint32_t>(e.table));
    row.set_key(e.key);
    row.mutable_version()->set_hlc(o.version.hlc);
    row.mutable_version()->set_box_id(o.version.box_id);
    row.set_tombstone(o.tombstone);
    if (o.tombstone) row.set_sealed_tombstone(*e.sealed);
    row.set_queued_unix_ms(e.queued_ms);
    rows->push_back(Mutation{Table::kOutbox, std::string(crypto::IdBytes(o.id)),
                             row.SerializeAsString()});
    o.sealed = *e.sealed;  // the copy the round sends (freed when the requests are built)
    send.push_back(std::move(o));
  }
  return send;
}

std::vector<replicator::Object> CommitPipeline::RetryObjects(std::size_t max_objects,
                                                             std::size_t max_bytes) {
  // mu_ held. Failed entries not in flight, oldest first by their first pending seq.
  std::vector<std::pair<std::uint64_t, crypto::ObjectId>> order;
  for (const auto& [id, e] : outbox_) {
    if (e.failed && !e.in_flight && !e.pending.empty()) order.emplace_back(e.pending.front().seq, id);
  }
  std::sort(order.begin(), order.end());
  std::vector<replicator::Object> out;
  std::size_t bytes = 0;
  for (const auto& [first, id] : order) {
    if (out.size() >= max_objects || bytes >= max_bytes) break;
    Entry& e = outbox_[id];
    replicator::Object o;
    o.id = id;
    o.version = e.pending.back().version;
    o.tombstone = e.tombstone;
    if (e.sealed) {
      o.sealed = *e.sealed;
    } else if (!e.tombstone) {
      // Committed locally: the row holds this version (a newer one would have replaced the
      // entry's newest).
      auto row = local_.Get(e.table, e.key);
      if (!row) {
        spdlog::error("outbox entry {} has no local bytes; dropping it", crypto::ToHex(id));
        for (const auto& p : e.pending) pending_seqs_.erase(pending_seqs_.find(p.seq));
        outbox_.erase(id);
        acked_rows_.insert(id);
        continue;
      }
      o.sealed = std::move(*row);
    }
    bytes += o.sealed.size();
    e.in_flight = true;
    out.push_back(std::move(o));
  }
  return out;
}

void CommitPipeline::SendRound(std::uint64_t seq, std::vector<replicator::Object> objects) {
  // Only ids and versions are needed afterwards: the replicator serialises the bytes at once.
  auto sent = std::make_shared<std::vector<replicator::Object>>();
  sent->reserve(objects.size());
  for (const auto& o : objects) sent->push_back(replicator::Object{o.id, o.version, o.tombstone, {}});
  remote_->PutAsync(objects, [this, seq, sent](replicator::PutResult&& r) {
    OnRound(seq, *sent, std::move(r));
  });
}

void CommitPipeline::OnRound(std::uint64_t seq, const std::vector<replicator::Object>& sent,
                             replicator::PutResult&& result) {
  std::lock_guard lock(mu_);
  ++counters_.rounds;
  for (std::size_t i = 0; i < sent.size(); ++i) {
    auto it = outbox_.find(sent[i].id);
    if (it == outbox_.end()) continue;
    Entry& e = it->second;
    const bool newest = !e.pending.empty() && e.pending.back().version == sent[i].version;
    if (i < result.stored.size() && result.stored[i]) {
      // The nodes hold this version (or a newer one): every older pending version is covered.
      auto keep = std::remove_if(e.pending.begin(), e.pending.end(), [&](const Entry::Pending& p) {
        if (p.version <= sent[i].version) {
          pending_seqs_.erase(pending_seqs_.find(p.seq));
          return true;
        }
        return false;
      });
      e.pending.erase(keep, e.pending.end());
      if (e.pending.empty()) {
        outbox_.erase(it);
        acked_rows_.insert(sent[i].id);
        continue;
      }
    } else if (newest) {
      e.failed = true;
    }
    if (newest) e.in_flight = false;
  }
  if (!result.ok()) last_error_ = result.error;
  if (seq == 0) {
    replaying_ = false;
  } else {
    batches_[seq].round_done = true;
    --in_flight_;
  }
  if (degraded_) {
    const bool any_failed = std::any_of(outbox_.begin(), outbox_.end(),
                                        [](const auto& kv) { return kv.second.failed; });
    if (!any_failed && outbox_.empty()) {
      degraded_ = false;
      spdlog::info("outbox drained: every change is on W={} storage nodes again",
                   remote_->write_quorum());
    }
  }
  rounds_done_ = true;
  work_cv_.notify_one();
  local_cv_.notify_one();  // acknowledged outbox rows can go
}

bool CommitPipeline::StartReplay(std::unique_lock<std::mutex>& lock) {
  std::vector<replicator::Object> objects =
      RetryObjects(options_.max_retry_objects, options_.max_retry_bytes);
  last_replay_ = Clock::now();
  if (objects.empty()) return false;
  replaying_ = true;
  lock.unlock();
  SendRound(0, std::move(objects));
  lock.lock();
  return true;
}

std::size_t CommitPipeline::ReplayNow() {
  {
    std::unique_lock lock(mu_);
    for (auto& [id, e] : outbox_) e.failed = true;
    verdict_cv_.wait(lock, [&] { return !replaying_; });
    if (remote_) StartReplay(lock);
    verdict_cv_.wait_for(lock, std::chrono::minutes(10), [&] { return !replaying_; });
  }
  std::lock_guard lock(mu_);
  return outbox_.size();
}

// ---- Verdicts ----

void CommitPipeline::Decide(std::unique_lock<std::mutex>& lock) {
  while (true) {
    const std::uint64_t next = decided_through_ + 1;
    auto it = batches_.find(next);
    if (it == batches_.end()) break;
    const BatchState& st = it->second;
    int verdict = 0;
    if (!st.round_done) break;
    if (sticky_error_) {
      verdict = sticky_error_;
    } else if (!remote_) {
      if (!st.local_done) break;
    } else if (MinPendingSeq() <= next) {
      // Not every version up to this batch is on W nodes: the one degraded policy.
      if (options_.degraded_queue) {
        if (!st.local_done) break;  // accepted once it is in the local outbox
        std::uint64_t held = 0;
        if (degraded_log_.Allow(&held)) {
          spdlog::warn("DEGRADED (degraded=queue): changes accepted on this box only, held in "
                       "the outbox ({} versions) until W storage nodes take them: {}",
                       outbox_.size(), last_error_);
        }
        degraded_ = true;
      } else {
        verdict = kNotDurableErrno;
      }
    }
    if (verdict == kNotDurableErrno) {
      std::uint64_t held = 0;
      if (degraded_log_.Allow(&held)) {
        spdlog::warn("DEGRADED: a change could not be made durable on W storage nodes; its "
                     "operations fail with {} and their namespace changes are rolled back so "
                     "that mail is deferred ({} more since the last report): {}",
                     std::strerror(kNotDurableErrno), held, last_error_);
      }
      degraded_ = true;
      // Undo before the verdict is public: a caller that sees EAGAIN must not find the name.
      lock.unlock();
      try {
        if (hooks_.failed) hooks_.failed(next);
      } catch (const std::exception& e) {
        spdlog::error("rolling back batch {}: {}", next, e.what());
      }
      lock.lock();
    }
    if (verdict != 0) verdicts_[next] = verdict;
    batches_.erase(next);
    decided_through_ = next;
    while (verdicts_.size() > 4096) verdicts_.erase(verdicts_.begin());
  }
  verdict_cv_.notify_all();
}

// ---- Threads ----

void CommitPipeline::TakeBatch(std::unique_lock<std::mutex>& lock) {
  const std::uint64_t seq = last_taken_ + 1;
  touched_ = false;
  lock.unlock();
  Sealed sealed;
  int error = 0;
  try {
    ChangeSet cs = hooks_.take(seq);
    sealed = Seal(cs);
  } catch (const Error& e) {
    error = e.err() ? e.err() : EIO;
    spdlog::error("sealing batch {} failed, the filesystem now refuses writes: {}", seq,
                  e.what());
  } catch (const std::exception& e) {
    error = EIO;
    spdlog::error("sealing batch {} failed, the filesystem now refuses writes: {}", seq,
                  e.what());
  }
  lock.lock();
  last_taken_ = seq;
  ++counters_.taken;
  BatchState& st = batches_[seq];
  if (error) {
    sticky_error_ = error;
    st.round_done = st.local_done = true;
    rounds_done_ = true;
    verdict_cv_.notify_all();
    return;
  }
  LocalItem item;
  item.seq = seq;
  item.chunks = std::move(sealed.chunks);
  for (const auto& o : sealed.objects) item.objects.push_back(o.id);
  std::vector<replicator::Object> send;
  Batch outbox_rows;
  if (remote_ && !options_.read_only) {
    send = Enqueue(seq, sealed, &outbox_rows);
    for (auto& o : RetryObjects(options_.max_retry_objects, options_.max_retry_bytes))
      send.push_back(std::move(o));
  }
  item.rows = std::move(sealed.rows);
  for (auto& m : outbox_rows) item.rows.push_back(std::move(m));
  local_queue_.push_back(std::move(item));
  local_cv_.notify_one();
  if (!send.empty()) {
    ++in_flight_;
    lock.unlock();
    SendRound(seq, std::move(send));
    lock.lock();
  } else {
    st.round_done = true;
    rounds_done_ = true;
  }
  verdict_cv_.notify_all();
}

void CommitPipeline::CommitterLoop() {
  std::unique_lock lock(mu_);
  while (true) {
    if (rounds_done_) {
      rounds_done_ = false;
      Decide(lock);
    }
    const auto now = Clock::now();
    const bool want = wanted_ > last_taken_;
    const bool timer = touched_ && now - touched_at_ >= options_.commit_interval;
    const bool final_batch = stopping_ && (touched_ || want);
    if ((want || timer || final_batch) && in_flight_ < options_.max_in_flight &&
        !sticky_error_) {
      TakeBatch(lock);
      continue;
    }
    if (sticky_error_ && want) {
      // Nothing more is taken: every requested batch gets the error.
      while (last_taken_ < wanted_) {
        ++last_taken_;
        batches_[last_taken_] = BatchState{true, true};
      }
      rounds_done_ = true;
      continue;
    }
    // Failed entries are replayed every replay_interval while no batch is in flight (a batch's
    // round carries them too).
    if (remote_ && !options_.read_only && !outbox_.empty() && !replaying_ && in_flight_ == 0 &&
        !stopping_ &&
        now - last_replay_ >= options_.replay_interval) {
      if (StartReplay(lock)) continue;
    }
    if (stopping_ && !want && !touched_ && in_flight_ == 0 && !replaying_ && batches_.empty())
      break;
    // Only a deadline that can start something now may shorten the sleep: with every round
    // slot taken, or a round or replay in flight, the end of a round (OnRound) is what wakes
    // this loop, and a deadline already past would turn the wait into a busy loop that takes
    // the CPU from the rounds themselves.
    auto wake = now + std::chrono::milliseconds(100);
    if (touched_ && in_flight_ < options_.max_in_flight && !sticky_error_)
      wake = std::min(wake, touched_at_ + options_.commit_interval);
    if (remote_ && !options_.read_only && !outbox_.empty() && !replaying_ && in_flight_ == 0)
      wake = std::min(wake, last_replay_ + options_.replay_interval);
    work_cv_.wait_until(lock, wake);
  }
  committer_done_ = true;
  local_cv_.notify_all();
}

void CommitPipeline::LocalWriterLoop() {
  std::unique_lock lock(mu_);
  while (true) {
    const bool work = !local_queue_.empty() || !local_rows_.empty() || !acked_rows_.empty();
    if (!work) {
      // The committer takes the last batch before it stops: the writer goes on until then.
      if (stopping_ && committer_done_) break;
      local_cv_.wait_for(lock, std::chrono::milliseconds(stopping_ ? 10 : 1000));
      continue;
    }
    std::deque<LocalItem> items;
    items.swap(local_queue_);
    Batch rows;
    for (auto& it : items) {
      for (auto& m : it.rows) rows.push_back(std::move(m));
    }
    std::vector<crypto::ObjectId> local_chunks;  // fetched chunks cached again
    for (auto& m : local_rows_) {
      if (m.table == Table::kChunks && m.value) {
        if (auto id = crypto::IdFromBytes(m.key)) local_chunks.push_back(*id);
      }
      rows.push_back(std::move(m));
    }
    local_rows_.clear();
    // Rows of acknowledged versions go, unless a newer version of the object is pending (its
    // row is written by its own batch). After the items' rows: an item of this commit may have
    // written the row of a version acknowledged meanwhile.
    for (const auto& id : acked_rows_) {
      if (!outbox_.count(id))
        rows.push_back(Mutation{Table::kOutbox, std::string(crypto::IdBytes(id)), std::nullopt});
    }
    acked_rows_.clear();
    lock.unlock();
    int error = 0;
    std::string what;
    try {
      if (!rows.empty()) local_.Commit(rows);
    } catch (const Error& e) {
      error = e.err() ? e.err() : EIO;
      what = e.what();
    } catch (const std::exception& e) {
      error = EIO;
      what = e.what();
    }
    std::vector<crypto::ObjectId> chunks = std::move(local_chunks);
    for (auto& it : items) {
      for (auto& c : it.chunks) chunks.push_back(c);
    }
    lock.lock();
    ++counters_.local_commits;
    if (error && !sticky_error_) {
      sticky_error_ = error;
      spdlog::error("local commit failed, the filesystem now refuses writes: {}", what);
    }
    for (const auto& it : items) {
      local_done_.insert(it.seq);
      if (auto b = batches_.find(it.seq); b != batches_.end()) b->second.local_done = true;
      if (error) continue;
      // The bytes of these versions are read back from STATE_DIR from now on (tombstones keep
      // theirs: they have no row of their own).
      for (const auto& id : it.objects) {
        auto e = outbox_.find(id);
        if (e != outbox_.end() && !e->second.tombstone && !e->second.pending.empty() &&
            e->second.pending.back().seq == it.seq) {
          e->second.sealed.reset();
        }
      }
    }
    while (local_done_.count(local_through_ + 1)) local_done_.erase(++local_through_);
    rounds_done_ = true;
    work_cv_.notify_one();
    verdict_cv_.notify_all();
    if (!chunks.empty() && hooks_.local_committed && !error) {
      lock.unlock();
      hooks_.local_committed(chunks);
      lock.lock();
    }
  }
}

}  // namespace coffer::fs
