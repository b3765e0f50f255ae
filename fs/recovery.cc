// Recovery and catch-up (see recovery.h).
#include "fs/recovery.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>

#include <spdlog/spdlog.h>

#include "common/bytes.h"
#include "common/error.h"
#include "replicator/digest.h"

namespace coffer::fs {

namespace {

using Clock = std::chrono::steady_clock;

Version FromProto(const proto::Version& v) { return Version{v.hlc(), v.box_id()}; }

}  // namespace

std::string BoxKey(std::uint64_t box_id) { return kBoxKeyPrefix + BigEndian64(box_id); }

std::string GcKey(const crypto::ObjectId& chunk) {
  return kGcKeyPrefix + std::string(crypto::IdBytes(chunk));
}

Recovery::Recovery(const crypto::Keyring& keys, const std::string& fingerprint,
                   LmdbStore& local, replicator::Backend* remote, const RecordIds& ids)
    : keys_(keys), fingerprint_(fingerprint), local_(local), remote_(remote), ids_(ids) {}

proto::StoreMeta Recovery::OpenMeta(const std::string& sealed,
                                    const std::optional<std::string>& stored_fpr) {
  auto plain = crypto::Open(keys_, crypto::ObjectKind::kStoreMeta, RecordIds::Meta(), sealed);
  if (!plain) {
    std::string msg = "this STATE_DIR was made with another key";
    if (stored_fpr) msg += " (store key fingerprint " + *stored_fpr + ", this key " + fingerprint_ + ")";
    throw Error(EACCES, msg);
  }
  proto::StoreMeta meta;
  if (!meta.ParseFromString(*plain) ||
      (meta.format() != kStoreFormatV1 && meta.format() != kStoreFormat))
    throw Error(EBADMSG, "store meta record of an unknown format");
  return meta;
}

std::optional<StoreIdentity> Recovery::Open() {
  auto meta_sealed = local_.Get(Table::kMeta, kMetaKey);
  bool rebuilt = false;
  if (!meta_sealed) {
    bool empty = true;
    local_.Scan(Table::kInodes, [&](std::string_view, std::string_view) { empty = false; });
    if (!empty) throw Error(EBADMSG, "store has inodes but no store meta record: damaged");
    if (!remote_ || !Rebuild()) return std::nullopt;
    meta_sealed = local_.Get(Table::kMeta, kMetaKey);
    if (!meta_sealed) throw Error(EIO, "the rebuilt store has no meta record");
    rebuilt = true;
  }
  proto::StoreMeta meta = OpenMeta(*meta_sealed, local_.Get(Table::kMeta, kFingerprintKey));
  StoreIdentity id;
  id.box_id = meta.box_id();
  id.chunk_size = meta.chunk_size() ? meta.chunk_size() : (64 << 10);
  id.format = meta.format();
  id.rebuilt = rebuilt;
  return id;
}

bool Recovery::Rebuild() {
  spdlog::info("the state directory holds no store: looking for one on the storage nodes");
  const auto started = Clock::now();
  ChangesRead read = ReadChanges({}, [](const crypto::ObjectId&) { return std::nullopt; });
  const CatchUpResult& r = read.result;
  const RemoteRecord* meta = nullptr;
  std::size_t inodes = 0, entries = 0, deleted = 0;
  Version newest;
  for (const RemoteRecord& rec : read.records) {
    newest = std::max(newest, rec.version);
    if (rec.tombstone) {
      ++deleted;
      continue;
    }
    if (rec.kind == RecordIds::Kind::kMeta) meta = &rec;
  }
  spdlog::info("rebuild: {} of {} nodes read: {} objects changed, {} records fetched ({} "
               "deleted), {} listed but not backed by any node",
               r.answered, r.nodes, r.listed, r.fetched, deleted, r.unbacked);
  if (!meta) {
    if (r.answered == r.nodes && r.listed == 0) {
      spdlog::info("the storage nodes hold no store: initialising a new one");
      return false;
    }
    if (r.answered < r.nodes)
      throw Error(EAGAIN, "the state directory is empty and only " + std::to_string(r.answered) +
                              " of " + std::to_string(r.nodes) +
                              " storage nodes answered: refusing to start a new store that could "
                              "hide an existing one; try again when the nodes are up");
    if (r.unavailable > 0)
      throw Error(EAGAIN, "the store meta record could not be fetched: a node holding it did "
                          "not answer; try again");
    throw Error(EBADMSG, "the storage nodes hold objects but no store meta record this key (" +
                             fingerprint_ +
                             ") opens: refusing to start a new store over them (made with "
                             "another key?)");
  }
  if (!r.complete())
    throw Error(EAGAIN, "rebuild needs " + std::to_string(r.needed) + " of " +
                            std::to_string(r.nodes) +
                            " storage nodes to see every acknowledged change, " +
                            std::to_string(r.answered) + " answered" +
                            (r.unavailable ? " and " + std::to_string(r.unavailable) +
                                                 " records could not be fetched"
                                           : std::string()));
  proto::StoreMeta store_meta = OpenMeta(meta->sealed, std::nullopt);
  Batch batch;
  auto flush = [&] {
    if (batch.empty()) return;
    local_.Commit(batch);
    batch.clear();
  };
  for (const RemoteRecord& rec : read.records) {
    if (rec.tombstone) continue;
    switch (rec.kind) {
      case RecordIds::Kind::kInode:
        batch.push_back(Mutation{Table::kInodes, BigEndian64(rec.inode.ino()), rec.sealed});
        ++inodes;
        break;
      case RecordIds::Kind::kBox:
        batch.push_back(Mutation{Table::kMeta, BoxKey(rec.box.box_id()), rec.sealed});
        break;
      case RecordIds::Kind::kLegacyDirent:
        batch.push_back(Mutation{Table::kDirents,
                                 BigEndian64(rec.dirent.parent()) + std::string(crypto::IdBytes(rec.id)),
                                 rec.sealed});
        ++entries;
        break;
      default:
        break;
    }
    if (batch.size() >= 4096) flush();
  }
  // This box gets its own id (the tie-breaker of versions); the store meta on the nodes stays.
  std::uint64_t new_box = 0;
  do {
    crypto::primitives::RandomBytes(reinterpret_cast<unsigned char*>(&new_box), sizeof new_box);
  } while (new_box == 0);
  const std::uint64_t old_box = store_meta.box_id();
  store_meta.set_box_id(new_box);
  batch.push_back(Mutation{Table::kMeta, kClockKey, BigEndian64(newest.hlc)});
  batch.push_back(Mutation{Table::kMeta, kCursorsKey, read.cursors.SerializeAsString()});
  batch.push_back(Mutation{Table::kMeta, kFingerprintKey, fingerprint_});
  flush();
  // The meta record last: a rebuild cut short leaves no meta, and the next mount starts over.
  // It keeps the version the nodes hold (verify compares with it).
  local_.Commit({Mutation{Table::kMeta, kMetaKey,
                          crypto::Seal(keys_, crypto::ObjectKind::kStoreMeta, RecordIds::Meta(),
                                       keys_.current_epoch(), meta->version,
                                       store_meta.SerializeAsString())}});
  const double secs = std::chrono::duration<double>(Clock::now() - started).count();
  spdlog::info("rebuild: index rebuilt from the storage nodes in {:.1f} s: {} inodes{}; content "
               "stays on the nodes until read; this box joins the store as box {:016x} (the "
               "store was created by box {:016x})",
               secs, inodes,
               entries ? ", " + std::to_string(entries) + " directory entries of format 1" : "",
               new_box, old_box);
  return true;
}

Version Recovery::Load(InodeTable* table, std::uint32_t format) {
  Version newest;
  local_.Scan(Table::kInodes, [&](std::string_view key, std::string_view value) {
    if (key.size() != 8) throw Error(EBADMSG, "malformed inode key in store");
    const std::uint64_t ino = FromBigEndian64(key);
    auto plain = crypto::Open(keys_, crypto::ObjectKind::kInodeRecord, ids_.Inode(ino), value);
    proto::InodeRecord rec;
    if (!plain || !rec.ParseFromString(*plain) || rec.ino() != ino)
      throw Error(EBADMSG, "inode record " + std::to_string(ino) + " fails authentication");
    auto inode = InodeTable::FromRecord(rec);
    newest = std::max(newest, inode->version);
    table->Insert(std::move(inode));
  });
  if (!table->Find(kRootIno)) throw Error(EBADMSG, "store has no root directory");
  if (format == kStoreFormatV1) {
    // Names of format 1 are directory entry rows; records migrated already carry their own.
    std::size_t dangling = 0;
    local_.Scan(Table::kDirents, [&](std::string_view key, std::string_view value) {
      if (key.size() != 24) throw Error(EBADMSG, "malformed directory entry key in store");
      auto id = crypto::IdFromBytes(key.substr(8));
      auto plain = crypto::Open(keys_, crypto::ObjectKind::kDirEntry, *id, value);
      proto::DirEntry rec;
      if (!plain || !rec.ParseFromString(*plain) || rec.parent() != FromBigEndian64(key))
        throw Error(EBADMSG, "directory entry fails authentication");
      Inode* child = table->Find(rec.child());
      Inode* dir = table->Find(rec.parent());
      if (!child || !dir || !dir->is_dir()) {
        ++dangling;
        return;
      }
      const Version v = FromProto(rec.version());
      newest = std::max(newest, v);
      InodeLink link{rec.parent(), rec.name(), v};
      if (std::find(child->links.begin(), child->links.end(), link) == child->links.end())
        child->links.push_back(std::move(link));
    });
    if (dangling) spdlog::warn("dropped {} directory entries that point nowhere", dangling);
  }
  for (const NameConflict& c : table->Reindex()) {
    spdlog::warn("name conflict in directory {}: inode {} keeps the name, inode {} does not",
                 c.dir, c.winner, c.loser);
  }
  return newest;
}

proto::FeedCursors Recovery::SavedCursors() {
  proto::FeedCursors c;
  if (auto v = local_.Get(Table::kMeta, kCursorsKey)) {
    if (!c.ParseFromString(*v)) {
      spdlog::warn("damaged feed cursors in STATE_DIR: the feeds are read from the start");
      c.Clear();
    }
  }
  return c;
}

std::vector<replicator::GetResult> Recovery::ResolveAll(
    const std::vector<replicator::Listed>& listed, bool log_progress, bool newest_on_replicas) {
  std::vector<replicator::GetResult> out(listed.size());
  std::mutex m;
  std::condition_variable cv;
  std::size_t in_flight = 0, done = 0;
  constexpr std::size_t kWindow = 256;
  const auto started = Clock::now();
  auto last = started;
  for (std::size_t i = 0; i < listed.size(); ++i) {
    {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return in_flight < kWindow; });
      ++in_flight;
    }
    auto deliver = [&, i](replicator::GetResult&& r) {
      std::lock_guard lock(m);
      out[i] = std::move(r);
      --in_flight;
      ++done;
      cv.notify_all();
    };
    if (newest_on_replicas) {
      std::vector<std::size_t> claimants;
      for (const auto& c : listed[i].claims) claimants.push_back(c.node);
      remote_->ReadNewestAsync(listed[i].id, claimants, deliver);
    } else {
      remote_->ResolveAsync(listed[i], deliver);
    }
    if (log_progress && Clock::now() - last > std::chrono::seconds(2)) {
      last = Clock::now();
      std::size_t d;
      {
        std::lock_guard lock(m);
        d = done;
      }
      spdlog::info("rebuild: fetched {} of {} records ({:.1f} s)", d, listed.size(),
                   std::chrono::duration<double>(Clock::now() - started).count());
    }
  }
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return in_flight == 0; });
  return out;
}

ChangesRead Recovery::ReadChanges(
    const proto::FeedCursors& from,
    const std::function<std::optional<Version>(const crypto::ObjectId&)>& local_version) {
  ChangesRead out;
  CatchUpResult& r = out.result;
  const std::vector<std::string> nodes = remote_->node_ids();
  std::vector<std::uint64_t> since(nodes.size(), 0);
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    auto it = from.seq().find(nodes[i]);
    if (it != from.seq().end()) since[i] = it->second;
  }
  std::vector<replicator::Listed> candidates;
  std::vector<RecordIds::Kind> kinds;
  replicator::FeedSummary fs = remote_->ReadFeeds(since, [&](replicator::Listed&& l) {
    ++r.listed;
    const RecordIds::Kind kind = ids_.Classify(l.id);  // a keyed tag: a node cannot make one up
    if (kind == RecordIds::Kind::kChunk) return;
    const replicator::Claim& newest = l.newest();
    if (newest.refused) return;
    std::optional<Version> local = local_version(l.id);
    if (local && !(*local < newest.version)) return;  // this box has it, or a newer one
    const bool any_live = std::any_of(l.claims.begin(), l.claims.end(), [](const auto& c) {
      return !c.tombstone && !c.refused;
    });
    if (!local && !any_live) return;  // deleted before this box knew it
    candidates.push_back(std::move(l));
    kinds.push_back(kind);
  });
  r.nodes = nodes.size();
  r.answered = fs.answered_count();
  r.needed = r.nodes - std::min(r.nodes, remote_->write_quorum()) + 1;
  // From zero every node's whole feed is read, so the claims name every holder: resolving
  // them is enough. From a cursor, the feeds name only recent changes: what a record is now is
  // read from all of its replicas (a node that missed the newest change, or lies, could
  // otherwise present an older version as the latest, e.g. bring back a delete).
  const bool from_zero = from.seq().empty();
  std::vector<replicator::GetResult> resolved = ResolveAll(candidates, from_zero, !from_zero);
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    replicator::GetResult& g = resolved[i];
    if (g.status == replicator::GetStatus::kUnavailable) {
      ++r.unavailable;
      continue;
    }
    if (g.status == replicator::GetStatus::kNotFound) {
      ++r.unbacked;
      continue;
    }
    RemoteRecord rec;
    rec.id = candidates[i].id;
    rec.kind = kinds[i];
    rec.version = g.object.version;
    rec.tombstone = g.object.tombstone;
    std::optional<Version> local = local_version(rec.id);
    if (local && !(*local < rec.version)) continue;  // the newer claims were not backed
    if (!rec.tombstone) {
      // Authenticated by the backend's verifier already; parsed here.
      std::optional<crypto::Opened> opened = crypto::OpenObject(keys_, rec.id, g.object.sealed);
      bool ok = opened.has_value();
      if (ok && rec.kind == RecordIds::Kind::kInode) {
        ok = opened->kind == crypto::ObjectKind::kInodeRecord &&
             rec.inode.ParseFromString(opened->plaintext) &&
             ids_.Inode(rec.inode.ino()) == rec.id;
      } else if (ok && rec.kind == RecordIds::Kind::kBox) {
        ok = opened->kind == crypto::ObjectKind::kBoxRecord &&
             rec.box.ParseFromString(opened->plaintext) && ids_.Box(rec.box.box_id()) == rec.id &&
             rec.box.version().hlc() == rec.version.hlc &&
             rec.box.version().box_id() == rec.version.box_id;
      } else if (ok && rec.kind == RecordIds::Kind::kLegacyDirent) {
        ok = opened->kind == crypto::ObjectKind::kDirEntry &&
             rec.dirent.ParseFromString(opened->plaintext) &&
             ids_.LegacyDirent(rec.dirent.parent(), rec.dirent.name()) == rec.id;
      } else if (ok) {
        ok = opened->kind == crypto::ObjectKind::kStoreMeta;
      }
      if (!ok) {
        ++r.unbacked;
        spdlog::warn("object {} from the nodes is not a record of its kind: ignored",
                     crypto::ToHex(rec.id));
        continue;
      }
      rec.sealed = std::move(g.object.sealed);
    }
    ++r.fetched;
    out.records.push_back(std::move(rec));
  }
  // Cursors move on only when everything named was decided: an undecided record must be seen
  // again next time. Nodes that did not answer keep theirs.
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    std::uint64_t seq = since[i];
    if (r.unavailable == 0 && fs.answered[i]) seq = fs.reached[i];
    if (seq) (*out.cursors.mutable_seq())[nodes[i]] = seq;
  }
  return out;
}

VerifyReport Recovery::Verify(const std::map<crypto::ObjectId, Expected>& expected,
                              const std::function<bool(const crypto::ObjectId&)>& in_outbox) {
  VerifyReport report;
  report.objects = expected.size();
  const std::size_t write_quorum = remote_->write_quorum();
  std::set<crypto::ObjectId> seen;
  auto problem = [&](std::string text) {
    if (report.problems.size() < 20) report.problems.push_back(std::move(text));
  };
  // Claims that disagree with the tree are checked against authenticated copies afterwards: a
  // node's claim alone proves nothing (it may lie, DESIGN.md "Versions").
  std::vector<replicator::Listed> to_check;
  std::vector<const Expected*> to_check_expect;  // nullptr: a record the tree does not have
  replicator::ListSummary summary = remote_->ListAll([&](replicator::Listed&& e) {
    auto it = expected.find(e.id);
    if (it == expected.end()) {
      const bool any_live = std::any_of(e.claims.begin(), e.claims.end(), [](const auto& c) {
        return !c.tombstone && !c.refused;
      });
      const RecordIds::Kind kind = ids_.Classify(e.id);
      // Box records are not part of the tree (other boxes' heartbeats move on all the time).
      if (any_live && kind != RecordIds::Kind::kChunk && kind != RecordIds::Kind::kLegacyDirent &&
          kind != RecordIds::Kind::kBox && !in_outbox(e.id)) {
        to_check.push_back(std::move(e));
        to_check_expect.push_back(nullptr);
      }
      return;
    }
    seen.insert(e.id);
    const Expected& x = it->second;
    if (in_outbox(e.id)) {
      ++report.pending;
      return;
    }
    std::optional<std::string> local_digest;
    if (x.chunk) {
      if (auto local = local_.Get(Table::kChunks, crypto::IdBytes(e.id)))
        local_digest = replicator::Digest(*local);
    }
    std::size_t holders = 0;
    bool newer = false, differs = false;
    for (const replicator::Claim& c : e.claims) {
      if (x.chunk) {
        if (c.tombstone || c.refused) {
          newer = true;
        } else if (local_digest && c.digest != *local_digest) {
          differs = true;
        } else {
          ++holders;
        }
      } else if (c.version.hlc == x.hlc && !c.tombstone) {
        ++holders;
      } else if (c.version.hlc > x.hlc || c.tombstone) {
        newer = true;
      }
    }
    if (newer) {
      to_check.push_back(std::move(e));
      to_check_expect.push_back(&x);
      return;
    }
    if (differs) {
      ++report.corrupt;
      problem(x.what + ": a node's copy differs from this box's");
      return;
    }
    if (holders < write_quorum) {
      ++report.under_quorum;
      problem(x.what + ": on " + std::to_string(holders) + " nodes, fewer than W=" +
              std::to_string(write_quorum));
      return;
    }
    ++report.ok;
  });
  // Only an authenticated newer version or tombstone makes the tree stale, and only an
  // authenticated live record the tree lacks is extra.
  std::vector<replicator::GetResult> resolved = ResolveAll(to_check, false, false);
  for (std::size_t i = 0; i < to_check.size(); ++i) {
    const Expected* x = to_check_expect[i];
    const replicator::GetResult& r = resolved[i];
    const std::string what = x ? x->what : "record " + crypto::ToHex(to_check[i].id);
    if (r.status == replicator::GetStatus::kUnavailable) {
      ++report.unchecked;
      problem(what + ": could not be checked: " + r.error);
      continue;
    }
    const bool live = r.status == replicator::GetStatus::kFound && !r.object.tombstone;
    if (!x) {
      if (live && !in_outbox(to_check[i].id)) {
        ++report.extra;
        problem("the nodes hold a live " + what + " that this tree does not have");
      }
      continue;
    }
    if (live && (x->chunk || r.object.version.hlc == x->hlc)) {
      // The newer claims were not backed (counted against their nodes).
      std::size_t holders = 0;
      for (const auto& c : to_check[i].claims)
        if (!c.tombstone && !c.refused && (x->chunk || c.version.hlc == x->hlc)) ++holders;
      if (holders < write_quorum) {
        ++report.under_quorum;
        problem(what + ": on " + std::to_string(holders) + " nodes, fewer than W=" +
                std::to_string(write_quorum));
      } else {
        ++report.ok;
      }
      continue;
    }
    if (r.status == replicator::GetStatus::kNotFound) {
      ++report.missing;
      problem(what + ": no node backs any version of it");
      continue;
    }
    ++report.stale;
    problem(what + ": the nodes hold " +
            (r.object.tombstone ? std::string("an authenticated tombstone")
                                : "an authenticated newer version"));
  }
  report.nodes = summary.nodes();
  report.answered = summary.answered_count();
  if (report.answered < report.nodes)
    problem(std::to_string(report.nodes - report.answered) + " storage nodes did not answer");
  for (const auto& [id, x] : expected) {
    if (seen.count(id)) continue;
    if (in_outbox(id)) {
      ++report.pending;
      continue;
    }
    ++report.missing;
    problem(x.what + ": on no storage node");
  }
  const auto stats = remote_->stats();
  const auto ids = remote_->node_ids();
  for (std::size_t i = 0; i < stats.nodes.size() && i < ids.size(); ++i) {
    if (stats.nodes[i].lies == 0) continue;
    report.liars.push_back(ids[i]);
    problem("node " + ids[i] + " LIED " + std::to_string(stats.nodes[i].lies) +
            " times (forged or rolled-back versions): nothing it says is believed without "
            "authentication");
  }
  return report;
}

}  // namespace coffer::fs
