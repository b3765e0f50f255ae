// The cofferfs facade (see filesystem.h for the layers and the contracts).
#include "fs/filesystem.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/bytes.h"
#include "common/error.h"
#include "fs/file_data.h"
#include "fs/maintenance.h"

namespace coffer::fs {

namespace {

const crypto::NameKey& FirstNameKey(const crypto::Keyring& keys) {
  const crypto::DerivedKeys* first = keys.Find(1);
  if (first == nullptr) first = keys.Find(keys.current_epoch());
  return first->name;
}

}  // namespace

// How to take back one namespace change whose batch the nodes did not take (degraded=fail).
struct Filesystem::Undo {
  enum Kind {
    kUnname,   // the name `dir/name -> ino` was given: take it away again
    kRename,   // `ino` moved from `from_dir/from_name` to `dir/name`, replacing `replaced`
    kExchange  // `dir/name` and `from_dir/from_name` swapped inodes
  };
  Kind kind;
  std::uint64_t seq = 0;
  std::uint64_t dir = 0;
  std::string name;
  std::uint64_t ino = 0;
  std::uint64_t from_dir = 0;
  std::string from_name;
  std::uint64_t replaced = 0;
};

Filesystem::Filesystem(std::unique_ptr<LmdbStore> local,
                       std::unique_ptr<replicator::Backend> remote, crypto::Keyring keys,
                       std::string fingerprint, Options options)
    : keys_(std::move(keys)),
      fingerprint_(std::move(fingerprint)),
      options_(std::move(options)),
      local_(std::move(local)),
      remote_(std::move(remote)),
      ids_(FirstNameKey(keys_)) {
  recovery_ = std::make_unique<Recovery>(keys_, fingerprint_, *local_, remote_.get(), ids_);
  PipelineOptions po;
  po.degraded_queue = options_.degraded_queue;
  po.commit_interval = std::chrono::milliseconds(options_.commit_interval_ms);
  po.read_only = options_.read_only;
  PipelineHooks hooks;
  hooks.take = [this](std::uint64_t seq) { return TakeBatch(seq); };
  hooks.failed = [this](std::uint64_t seq) { ApplyUndo(seq); };
  hooks.local_committed = [this](const std::vector<crypto::ObjectId>& ids) {
    chunks_->Committed(ids);
  };
  pipeline_ = std::make_unique<CommitPipeline>(keys_, *local_, remote_.get(), po, hooks);
  chunks_ = std::make_unique<ChunkStore>(
      keys_, *local_, remote_.get(), options_.read_only ? 0 : options_.cache_limit_bytes,
      [this](Mutation m) { pipeline_->QueueLocal(std::move(m)); },
      [this](const crypto::ObjectId& id) { return pipeline_->InOutbox(id); });
  pipeline_->Start();
  try {
    Open_();
  } catch (...) {
    pipeline_->Stop();
    throw;
  }
}

Filesystem::~Filesystem() {
  try {
    Shutdown();
  } catch (const std::exception& e) {
    spdlog::error("final commit failed: {}", e.what());
  }
}

void Filesystem::Start() {
  std::lock_guard lock(mu_);
  if (maintenance_ || shut_down_) return;
  maintenance_ = std::make_unique<Maintenance>(*this, options_);
  maintenance_->Start();
}


void Filesystem::Shutdown() {
  std::unique_ptr<Maintenance> maintenance;
  {
    std::lock_guard lock(mu_);
    if (shut_down_) return;
    shut_down_ = true;
    maintenance = std::move(maintenance_);
  }
  if (maintenance) maintenance->Stop();
  Heartbeat(/*stopping=*/true);  // a registered box's record says it was unmounted cleanly
  {
    std::lock_guard lock(mu_);
    table_.ForEach([&](Inode& inode) { FreezeAll(&inode); });
  }
  pipeline_->Stop();  // takes and commits what is open
}

// ---- Opening ----

void Filesystem::Open_() {
  const std::int64_t open_ms = WallNs() / 1000000;
  started_unix_ = open_ms / 1000;
  std::optional<StoreIdentity> identity = recovery_->Open();
  if (!identity) {
    Initialise();
    return;
  }
  box_id_ = identity->box_id;
  chunk_size_ = identity->chunk_size;
  Version newest;
  {
    std::lock_guard lock(mu_);
    newest = recovery_->Load(&table_, identity->format);
  }
  hlc_.Observe(newest.hlc);
  if (auto h = local_->Get(Table::kMeta, kClockKey); h && h->size() == 8)
    hlc_.Observe(FromBigEndian64(*h));
  chunks_->LoadCache();
  LoadBoxes();
  LoadDeferredChunks();
  if (identity->rebuilt) caught_up_ms_ = open_ms;  // a rebuild read every change
  if (remote_ && !options_.read_only) pipeline_->LoadOutbox();
  if (identity->format == kStoreFormatV1 && !options_.read_only) {
    // The migration writes every record again with a new version: what other boxes changed on
    // the nodes since this STATE_DIR was written must be in the tree first, or the migration
    // would undo it (bring back deleted mail, revert moves). Format 1 kept no feed cursors
    // this box can trust, so every feed is read from the start, and every change must be seen.
    if (remote_ && !identity->rebuilt) {
      CatchUpResult r = CatchUp(/*from_start=*/true);
      if (!r.complete())
        throw Error(EAGAIN, "upgrading this store to format 2 needs every change on the storage "
                            "nodes first: " + std::to_string(r.answered) + " of " +
                            std::to_string(r.nodes) + " nodes answered (" +
                            std::to_string(r.needed) + " needed), " +
                            std::to_string(r.unavailable) +
                            " records undecided; try again when the nodes are up");
      if (r.applied)
        spdlog::info("catch-up before the upgrade: {} records newer on the nodes applied",
                     r.applied);
    }
    Migrate();
  } else if (remote_ && !identity->rebuilt) {
    CatchUpResult r = CatchUp();
    CheckOwnRecord();
    if (!r.complete()) {
      spdlog::warn("catch-up at mount: {} of {} storage nodes read ({} needed to see every "
                   "change), {} records undecided: mounted with what this box has; the feeds "
                   "are read again in the background",
                   r.answered, r.nodes, r.needed, r.unavailable);
    } else if (r.applied) {
      spdlog::info("catch-up at mount: {} records newer on the nodes applied", r.applied);
    }
  }
  // Inodes without a name (unlinked while open when the last daemon stopped or crashed).
  std::size_t purged = 0;
  {
    std::lock_guard lock(mu_);
    std::vector<Inode*> orphans;
    table_.ForEach([&](Inode& inode) {
      if (inode.links.empty() && inode.ino != kRootIno) orphans.push_back(&inode);
    });
    if (!options_.read_only) {
      for (Inode* inode : orphans) MaybeFree(inode);
      purged = orphans.size();
    }
  }
  if (purged) spdlog::info("purged {} inodes that no name held", purged);
  spdlog::info("store opened: {} inodes, box id {:016x}{}", InodeCount(), box_id_,
               identity->rebuilt ? " (rebuilt from the storage nodes)" : "");
}

void Filesystem::Initialise() {
  if (options_.read_only) throw Error(EROFS, "a read-only mount cannot initialise a new store");
  do {
    crypto::primitives::RandomBytes(reinterpret_cast<unsigned char*>(&box_id_), sizeof box_id_);
  } while (box_id_ == 0);
  chunk_size_ = options_.chunk_size;
  proto::StoreMeta meta;
  meta.set_format(kStoreFormat);
  meta.set_fingerprint(fingerprint_);
  meta.set_box_id(box_id_);
  meta.set_created_unix(WallNs() / 1000000000);
  meta.set_chunk_size(chunk_size_);
  std::uint64_t seq;
  {
    std::lock_guard lock(mu_);
    auto root = std::make_unique<Inode>();
    root->ino = kRootIno;
    root->mode = S_IFDIR | 0755;
    root->atime = root->mtime = root->ctime = Timestamp::Now();
    Inode* r = table_.Insert(std::move(root));
    r->nlink = 2;
    Touch(r);
    // The store meta is object 0 on the nodes, written once (version 1 of this box).
    RecordWrite w;
    w.id = RecordIds::Meta();
    w.kind = crypto::ObjectKind::kStoreMeta;
    w.version = Version{1, box_id_};
    w.plaintext = std::make_shared<const std::string>(meta.SerializeAsString());
    w.table = Table::kMeta;
    w.key = kMetaKey;
    meta_write_ = std::move(w);
    local_rows_.push_back(Mutation{Table::kMeta, kFingerprintKey, fingerprint_});
    seq = open_seq_;
  }
  if (int rc = pipeline_->WaitLocal(seq)) throw Error(rc, "cannot initialise the store");
  if (remote_ && pipeline_->Wait(seq) != 0)
    spdlog::warn("the new store is not yet on enough storage nodes; it is held in the outbox");
  spdlog::info("initialised a new store, box id {:016x}", box_id_);
}

void Filesystem::Migrate() {
  // Store format 1 kept names in directory entry records; format 2 keeps them in the inode
  // records (one record per rename: atomic on the nodes). Every record is written again with
  // its names and every directory entry deleted, in one batch.
  std::size_t records = 0, entries = 0;
  std::uint64_t seq;
  {
    std::lock_guard lock(mu_);
    table_.ForEach([&](Inode& inode) {
      Touch(&inode);
      ++records;
    });
    Batch gone;
    local_->Scan(Table::kDirents, [&](std::string_view key, std::string_view) {
      if (key.size() != 24) return;
      auto id = crypto::IdFromBytes(key.substr(8));
      RecordWrite w;
      w.id = *id;
      w.kind = crypto::ObjectKind::kDirEntry;
      w.version = Tick();
      w.table = Table::kDirents;
      w.key = std::string(key);
      legacy_deletes_.push_back(std::move(w));
      ++entries;
    });
    proto::StoreMeta meta;
    meta.set_format(kStoreFormat);
    meta.set_fingerprint(fingerprint_);
    meta.set_box_id(box_id_);
    meta.set_created_unix(WallNs() / 1000000000);
    meta.set_chunk_size(chunk_size_);
    RecordWrite w;
    w.id = RecordIds::Meta();
    w.kind = crypto::ObjectKind::kStoreMeta;
    w.version = Version{2, box_id_};  // newer than the format 1 meta (1, its box)
    w.plaintext = std::make_shared<const std::string>(meta.SerializeAsString());
    w.table = Table::kMeta;
    w.key = kMetaKey;
    meta_write_ = std::move(w);
    seq = open_seq_;
  }
  if (int rc = pipeline_->WaitLocal(seq)) throw Error(rc, "cannot migrate the store to format 2");
  spdlog::info("store migrated to format 2: {} records now carry their names, {} directory "
               "entries deleted",
               records, entries);
}

// ---- The open batch ----

Version Filesystem::Tick() { return Version{hlc_.Tick(), box_id_}; }

void Filesystem::Touch(Inode* inode) {
  inode->version = Tick();
  dirty_inodes_.insert(inode->ino);
  pipeline_->Touched();
}

void Filesystem::TouchDir(Inode* dir, Timestamp now) {
  // The mtime moves forward on every change, even twice within one clock tick: Dovecot and
  // others detect new mail by a changed directory mtime. A time set ahead of the clock (by
  // utimensat) is replaced by now, as on a local filesystem.
  const std::int64_t ahead = dir->mtime.NsSince(now);
  dir->mtime = ahead >= 0 && ahead < 1000000000 ? dir->mtime.Next() : now;
  dir->ctime = dir->mtime;
  Touch(dir);
}

ChangeSet Filesystem::TakeBatch(std::uint64_t seq) {
  std::lock_guard lock(mu_);
  ChangeSet cs;
  cs.seq = seq;
  open_seq_ = seq + 1;
  cs.writes.reserve(new_chunks_.size() + dirty_inodes_.size() + deleted_inodes_.size() +
                    deleted_chunks_.size() + legacy_deletes_.size() + 1);
  if (meta_write_) {
    cs.writes.push_back(std::move(*meta_write_));
    meta_write_.reset();
  }
  // Chunks first: one batch either way, but a record never names a chunk of a later batch.
  for (auto& [id, c] : new_chunks_) {
    cs.writes.push_back(RecordWrite{id, crypto::ObjectKind::kChunk, c.version, c.plaintext,
                                    Table::kChunks, std::string(crypto::IdBytes(id))});
  }
  for (std::uint64_t ino : dirty_inodes_) {
    const Inode* inode = table_.Find(ino);
    if (!inode) continue;  // freed since: its delete is below
    cs.writes.push_back(RecordWrite{
        ids_.Inode(ino), crypto::ObjectKind::kInodeRecord, inode->version,
        std::make_shared<const std::string>(
            InodeTable::ToRecord(*inode, chunk_size_).SerializeAsString()),
        Table::kInodes, BigEndian64(ino)});
  }
  for (const auto& [ino, v] : deleted_inodes_) {
    cs.writes.push_back(RecordWrite{ids_.Inode(ino), crypto::ObjectKind::kInodeRecord, v, nullptr,
                                    Table::kInodes, BigEndian64(ino)});
  }
  for (const auto& [id, v] : deleted_chunks_) {
    chunks_->Forget(id);
    cs.writes.push_back(RecordWrite{id, crypto::ObjectKind::kChunk, v, nullptr, Table::kChunks,
                                    std::string(crypto::IdBytes(id))});
  }
  for (auto& w : legacy_deletes_) cs.writes.push_back(std::move(w));
  for (auto& w : box_writes_) cs.writes.push_back(std::move(w));
  cs.local = std::move(local_rows_);
  if (!cs.writes.empty()) cs.local.push_back(Mutation{Table::kMeta, kClockKey, BigEndian64(hlc_.last())});
  new_chunks_.clear();
  dirty_inodes_.clear();
  deleted_inodes_.clear();
  deleted_chunks_.clear();
  legacy_deletes_.clear();
  box_writes_.clear();
  local_rows_.clear();
  pending_bytes_ = 0;
  return cs;
}

// ---- Helpers (mu_ held) ----

void Filesystem::Stat(const Inode& inode, struct stat* out) const {
  std::memset(out, 0, sizeof *out);
  out->st_ino = inode.ino;
  out->st_mode = inode.mode;
  out->st_nlink = inode.nlink;
  out->st_uid = inode.uid;
  out->st_gid = inode.gid;
  out->st_size = static_cast<off_t>(inode.size);
  out->st_blksize = static_cast<blksize_t>(chunk_size_);
  out->st_blocks = static_cast<blkcnt_t>((inode.size + 511) / 512);
  out->st_rdev = inode.rdev;
  out->st_atim = inode.atime.ToTimespec();
  out->st_mtim = inode.mtime.ToTimespec();
  out->st_ctim = inode.ctime.ToTimespec();
}

Inode* Filesystem::DirFor(std::uint64_t ino, int* err) {
  Inode* dir = table_.Find(ino);
  if (!dir) {
    *err = ENOENT;
    return nullptr;
  }
  if (!dir->is_dir()) {
    *err = ENOTDIR;
    return nullptr;
  }
  *err = 0;
  return dir;
}

int Filesystem::CheckName(std::string_view name) const {
  if (name.empty()) return ENOENT;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos)
    return EINVAL;
  return 0;
}

int Filesystem::DirForNewEntry(std::uint64_t parent, std::string_view name, Inode** dir) {
  int err = 0;
  *dir = DirFor(parent, &err);
  if (err) return err;
  if (int e = CheckName(name)) return e;
  if (table_.Lookup(**dir, name)) return EEXIST;
  return 0;
}

Inode* Filesystem::NewInode(mode_t mode, const Context& ctx, Inode* parent,
                             std::uint64_t preferred) {
  // A number this box deleted and has not yet seen acknowledged, or still has a change of in
  // flight, is not free: its record and the delete would cross.
  if (preferred && (deleted_inodes_.count(preferred) ||
                    pipeline_->PendingVersion(ids_.Inode(preferred))))
    preferred = 0;
  Inode* inode = table_.Create(mode, ctx.uid, ctx.gid, Timestamp::Now(), preferred);
  if (parent->mode & S_ISGID) {  // BSD group semantics of setgid directories
    inode->gid = parent->gid;
    if (S_ISDIR(mode)) inode->mode |= S_ISGID;
  }
  Touch(inode);
  return inode;
}

void Filesystem::MaybeFree(Inode* inode) {
  if (!inode->links.empty() || inode->opens != 0 || inode->lookups != 0 ||
      inode->ino == kRootIno || inode->pins != 0)
    return;
  for (const auto& id : inode->chunks)
    if (!file_data::IsHole(id)) DeleteChunk(id);
  for (const auto& [idx, buf] : inode->dirty) pending_bytes_ -= std::min(pending_bytes_, buf.size());
  deleted_inodes_[inode->ino] = Tick();
  dirty_inodes_.erase(inode->ino);
  table_.Erase(inode->ino);
  pipeline_->Touched();
}

void Filesystem::DeleteChunk(const crypto::ObjectId& id) {
  auto it = new_chunks_.find(id);
  if (it != new_chunks_.end()) {  // never written anywhere
    pending_bytes_ -= std::min(pending_bytes_, it->second.plaintext->size());
    new_chunks_.erase(it);
    chunks_->Forget(id);
    return;
  }
  if (remote_ && !options_.read_only) {
    // Tombstoned once every box has applied this change (ReleaseDeferredChunks).
    const std::int64_t now_ms = WallNs() / 1000000;
    deferred_chunks_[id] = now_ms;
    local_rows_.push_back(
        Mutation{Table::kMeta, GcKey(id), BigEndian64(now_ms)});
    return;
  }
  deleted_chunks_[id] = Tick();
}

void Filesystem::FreezeChunk(Inode* inode, std::uint64_t index) {
  auto it = inode->dirty.find(index);
  if (it == inode->dirty.end()) return;
  if (index >= inode->chunks.size()) inode->chunks.resize(index + 1);
  const crypto::ObjectId old = inode->chunks[index];
  crypto::ObjectId id{};
  if (!it->second.empty()) {
    id = crypto::RandomObjectId();
    auto plain = std::make_shared<const std::string>(std::move(it->second));
    chunks_->AddInFlight(id, plain);  // readable at once, until it is committed locally
    new_chunks_[id] = NewChunk{std::move(plain), Tick()};
  }
  inode->chunks[index] = id;
  if (!file_data::IsHole(old)) DeleteChunk(old);
  inode->dirty.erase(it);
  Touch(inode);
}

void Filesystem::FreezeAll(Inode* inode) {
  while (!inode->dirty.empty()) FreezeChunk(inode, inode->dirty.begin()->first);
}

void Filesystem::Truncate(Inode* inode, std::uint64_t size) {
  for (const auto& id : file_data::Truncate(inode, chunk_size_, size)) DeleteChunk(id);
}

bool Filesystem::PrepareWrite(std::unique_lock<std::mutex>& lock, std::uint64_t ino,
                              std::uint64_t offset, std::uint64_t end) {
  while (true) {
    Inode* inode = table_.Find(ino);
    if (!inode) return false;
    std::vector<std::uint64_t> need;
    if (end > offset) {
      need = file_data::PartlyCovered(*inode, chunk_size_, offset, end);
    } else if (auto cut = file_data::CutChunk(*inode, chunk_size_, offset)) {
      need.push_back(*cut);  // a truncation to `offset`
    }
    if (need.empty()) return true;
    std::vector<std::pair<std::uint64_t, crypto::ObjectId>> wanted;
    for (std::uint64_t idx : need) wanted.emplace_back(idx, inode->chunks[idx]);
    // The chunks may have to come from the nodes, and opening them is CPU work: neither needs
    // mu_ (chunks are immutable), so other operations go on meanwhile.
    lock.unlock();
    std::vector<std::shared_ptr<const std::string>> loaded;
    try {
      for (const auto& [idx, id] : wanted) loaded.push_back(chunks_->Read(id));
    } catch (...) {
      lock.lock();
      throw;
    }
    lock.lock();
    inode = table_.Find(ino);
    if (!inode) return false;
    for (std::size_t i = 0; i < wanted.size(); ++i) {
      const auto [idx, id] = wanted[i];
      if (idx < inode->chunks.size() && inode->chunks[idx] == id && !inode->dirty.count(idx)) {
        inode->dirty[idx] = *loaded[i];
        pending_bytes_ += loaded[i]->size();
      }
    }
    // Loop: the file may have changed meanwhile.
  }
}

void Filesystem::KillPriv(Inode* inode, const Context& ctx) {
  if (!(inode->mode & (S_ISUID | S_ISGID)) || ctx.uid == 0) return;
  // Root stands for CAP_FSETID here (a request carries no capabilities).
  std::uint32_t kill = inode->mode & S_ISUID;
  if (inode->mode & S_ISGID) {
    bool in_group = ctx.gid == inode->gid;
    if (!in_group && ctx.groups) {
      const std::vector<gid_t> groups = ctx.groups();
      in_group = std::find(groups.begin(), groups.end(), inode->gid) != groups.end();
    }
    if ((inode->mode & S_IXGRP) || !in_group) kill |= S_ISGID;
  }
  inode->mode &= ~kill;
}

// ---- Durability and rollback ----

int Filesystem::WaitDurable(std::unique_lock<std::mutex>& lock) {
  const std::uint64_t seq = open_seq_;
  lock.unlock();
  const int rc = pipeline_->Wait(seq);
  lock.lock();
  if (rc == 0 || rc != kNotDurableErrno) {
    // Decided: the undo records of this batch and earlier ones are not needed any more.
    std::vector<std::uint64_t> unpinned;
    auto keep = std::remove_if(undo_.begin(), undo_.end(), [&](const Undo& u) {
      if (u.seq > seq) return false;
      if (u.replaced) unpinned.push_back(u.replaced);
      return true;
    });
    undo_.erase(keep, undo_.end());
    for (std::uint64_t ino : unpinned) {
      if (Inode* inode = table_.Find(ino)) {
        if (inode->pins) --inode->pins;
        MaybeFree(inode);
      }
    }
  }
  return rc;
}

int Filesystem::MaybeWaitNamespace(std::unique_lock<std::mutex>& lock) {
  if (!options_.sync_namespace) return 0;
  return WaitDurable(lock);
}

int Filesystem::FailedEntry(int err, std::uint64_t ino) {
  if (err == 0) return 0;
  if (Inode* inode = table_.Find(ino)) {
    if (inode->lookups > 0) --inode->lookups;
    MaybeFree(inode);
  }
  return err;
}

void Filesystem::AddUndo(Undo undo) {
  // Only a change that can fail for node reasons, and only when it is to be rolled back.
  if (!remote_ || options_.degraded_queue || !options_.sync_namespace) return;
  undo.seq = open_seq_;
  if (undo.replaced) {
    if (Inode* r = table_.Find(undo.replaced)) ++r->pins;
  }
  undo_.push_back(std::move(undo));
}

void Filesystem::ApplyUndo(std::uint64_t seq) {
  std::lock_guard lock(mu_);
  const Timestamp now = Timestamp::Now();
  // Newest first; a change made since (by this box) is left alone.
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) {
    const Undo& u = *it;
    if (u.seq != seq) continue;
    Inode* dir = table_.Find(u.dir);
    Inode* child = table_.Find(u.ino);
    if (!dir || !dir->is_dir() || !child) continue;
    auto named = [&](Inode* d, std::string_view name) {
      return table_.Lookup(*d, name).value_or(0);
    };
    switch (u.kind) {
      case Undo::kUnname:
        if (named(dir, u.name) != u.ino) break;
        if (child->is_dir() && !child->dir->by_name.empty()) break;
        table_.RemoveLink(dir, u.name);
        child->ctime = now;
        Touch(child);
        TouchDir(dir, now);
        break;
      case Undo::kRename: {
        Inode* from = table_.Find(u.from_dir);
        if (!from || !from->is_dir() || named(dir, u.name) != u.ino ||
            named(from, u.from_name) != 0)
          break;
        table_.RemoveLink(dir, u.name);
        table_.AddLink(from, u.from_name, child, Tick());
        if (Inode* replaced = u.replaced ? table_.Find(u.replaced) : nullptr;
            replaced && !replaced->is_dir() && !named(dir, u.name)) {
          table_.AddLink(dir, u.name, replaced, Tick());
          replaced->ctime = now;
          Touch(replaced);
        }
        child->ctime = now;
        Touch(child);
        TouchDir(dir, now);
        if (from != dir) TouchDir(from, now);
        break;
      }
      case Undo::kExchange: {
        Inode* from = table_.Find(u.from_dir);
        Inode* other = table_.Find(u.replaced);
        if (!from || !other || named(dir, u.name) != u.ino || named(from, u.from_name) != u.replaced)
          break;
        table_.RemoveLink(dir, u.name);
        table_.RemoveLink(from, u.from_name);
        table_.AddLink(dir, u.name, other, Tick());
        table_.AddLink(from, u.from_name, child, Tick());
        Touch(child);
        Touch(other);
        TouchDir(dir, now);
        if (from != dir) TouchDir(from, now);
        break;
      }
    }
  }
  // The decided batch's records are done; unpin what they held.
  std::vector<std::uint64_t> unpinned;
  auto keep = std::remove_if(undo_.begin(), undo_.end(), [&](const Undo& u) {
    if (u.seq > seq) return false;
    if (u.replaced) unpinned.push_back(u.replaced);
    return true;
  });
  undo_.erase(keep, undo_.end());
  for (std::uint64_t ino : unpinned) {
    if (Inode* inode = table_.Find(ino)) {
      if (inode->pins) --inode->pins;
      MaybeFree(inode);
    }
  }
}

// ---- Records from the nodes ----

std::optional<Version> Filesystem::LocalVersion(const crypto::ObjectId& id) {
  // What this box holds of the record, or has written of it and not yet seen acknowledged (a
  // delete is not in the table any more, but its tombstone may still be on its way).
  std::optional<Version> v;
  const std::uint64_t ino = RecordIds::InoOf(id);
  if (const Inode* inode = table_.Find(ino)) v = inode->version;
  if (auto d = deleted_inodes_.find(ino); d != deleted_inodes_.end()) v = std::max(v.value_or(Version{}), d->second);
  if (auto p = pipeline_->PendingVersion(id)) v = std::max(v.value_or(Version{}), *p);
  return v;
}

void Filesystem::SetInvalidator(Invalidator fn) {
  std::lock_guard lock(inval_mu_);
  invalidator_ = std::move(fn);
}

std::size_t Filesystem::ApplyRemote(const std::vector<RemoteRecord>& records) {
  std::vector<Invalidation> inval;
  std::vector<crypto::ObjectId> keep;
  const std::size_t applied = ApplyRemoteLocked(records, &inval, &keep);
  // Files open here that another box deleted stay readable: their chunks are fetched now, while
  // the deleting box still waits for this box to catch up before it deletes them.
  for (const crypto::ObjectId& id : keep) {
    try {
      chunks_->Read(id);
    } catch (const std::exception& e) {
      spdlog::warn("a file open here was deleted by another box and chunk {} cannot be kept: {}",
                   crypto::ToHex(id), e.what());
    }
  }
  if (!inval.empty()) {
    std::lock_guard lock(inval_mu_);
    if (invalidator_) invalidator_(inval);
  }
  return applied;
}

std::size_t Filesystem::ApplyRemoteLocked(const std::vector<RemoteRecord>& records,
                                          std::vector<Invalidation>* out,
                                          std::vector<crypto::ObjectId>* keep) {
  std::vector<Invalidation>& inval = *out;
  const auto note = [&inval](std::uint64_t ino, const Applied& a) {
    inval.push_back(Invalidation{ino, a.data, 0, {}});
    for (const auto& [dir, name] : a.names_gone) inval.push_back(Invalidation{0, false, dir, name});
    for (const auto& [dir, name] : a.names_added) inval.push_back(Invalidation{0, false, dir, name});
  };
  std::size_t applied = 0;
  std::lock_guard lock(mu_);
  bool reindex = false;
  // Deletes first: a rename over an existing name on another box is the renamed inode's record
  // and the replaced one's tombstone; applied the other way round they would claim the name
  // together for a moment (a spurious conflict).
  std::vector<const RemoteRecord*> ordered;
  ordered.reserve(records.size());
  for (const RemoteRecord& rec : records)
    if (rec.tombstone) ordered.push_back(&rec);
  for (const RemoteRecord& rec : records)
    if (!rec.tombstone) ordered.push_back(&rec);
  for (const RemoteRecord* recp : ordered) {
    const RemoteRecord& rec = *recp;
    hlc_.Observe(rec.version.hlc);
    if (rec.kind == RecordIds::Kind::kBox) {
      if (ApplyBoxRecord(rec)) ++applied;
      continue;
    }
    if (rec.kind != RecordIds::Kind::kInode) continue;
    const std::uint64_t ino = RecordIds::InoOf(rec.id);
    if (auto local = LocalVersion(rec.id); local && !(*local < rec.version)) continue;
    Applied a;
    if (rec.tombstone) {
      a = table_.ApplyDelete(ino, rec.version);
      if (!a.changed) continue;
      a.data = true;
      note(ino, a);
      local_rows_.push_back(Mutation{Table::kInodes, BigEndian64(ino), std::nullopt});
      Inode* inode = table_.Find(ino);
      if (inode && inode->opens == 0 && inode->lookups == 0 && inode->pins == 0) {
        // Deleted by another box, which deleted its chunks on the nodes too: only the local
        // copies go (no tombstone of this box's).
        for (const auto& id : inode->chunks) {
          if (file_data::IsHole(id)) continue;
          local_rows_.push_back(Mutation{Table::kChunks, std::string(crypto::IdBytes(id)), std::nullopt});
          chunks_->Forget(id);
        }
        dirty_inodes_.erase(ino);
        table_.Erase(ino);
      } else if (inode && inode->opens > 0) {
        for (const auto& id : inode->chunks)
          if (!file_data::IsHole(id)) keep->push_back(id);
      }
    } else {
      const Inode* before = table_.Find(ino);
      std::vector<crypto::ObjectId> old_chunks = before ? before->chunks : std::vector<crypto::ObjectId>{};
      const proto::InodeRecord* incoming = &rec.inode;
      proto::InodeRecord legacy;
      if (before && rec.inode.links_size() == 0) {
        // A record of store format 1 carries no names (they were in directory entry records):
        // it changes the attributes and content, the names stay.
        auto info = crypto::Inspect(rec.sealed);
        if (info && info->format == crypto::kSealFormatV1) {
          legacy = rec.inode;
          *legacy.mutable_links() = InodeTable::ToRecord(*before, chunk_size_).links();
          incoming = &legacy;
        }
      }
      a = table_.Apply(*incoming);
      if (!a.changed) continue;
      note(ino, a);
      local_rows_.push_back(Mutation{Table::kInodes, BigEndian64(ino), rec.sealed});
      dirty_inodes_.erase(ino);  // this box's pending version lost to the newer one
      Inode* after = table_.Find(ino);
      if (a.rewrite) {
        // The writer had not seen a name change made here or elsewhere: the merged names go out
        // as a newer version, so that every box and a rebuild converge on them.
        if (after->links.empty()) {
          MaybeFree(after);
          ++applied;
          continue;
        }
        Touch(after);
      }
      // A delete here that another box's newer change undid (a rename racing the unlink): the
      // content is referenced again and must stay on the nodes.
      for (const auto& id : after->chunks) {
        if (!deferred_chunks_.empty() && deferred_chunks_.erase(id))
          local_rows_.push_back(
              Mutation{Table::kMeta, GcKey(id), std::nullopt});
      }
      for (const auto& id : old_chunks) {
        if (file_data::IsHole(id) ||
            std::find(after->chunks.begin(), after->chunks.end(), id) != after->chunks.end())
          continue;
        local_rows_.push_back(Mutation{Table::kChunks, std::string(crypto::IdBytes(id)), std::nullopt});
        chunks_->Forget(id);
      }
      for (const InodeLink& l : after->links) {
        if (!table_.Find(l.parent)) reindex = true;
      }
    }
    ++applied;
  }
  std::vector<NameConflict> conflicts = table_.TakeConflicts();
  if (reindex) {
    std::vector<NameConflict> more = table_.Reindex();
    conflicts.insert(conflicts.end(), more.begin(), more.end());
  }
  for (const NameConflict& c : conflicts) {
    spdlog::warn("name conflict in directory {}: inode {} keeps the name, inode {} does not",
                 c.dir, c.winner, c.loser);
    inval.push_back(Invalidation{0, false, c.dir, c.name});
  }
  if (!local_rows_.empty()) pipeline_->Touched();
  return applied;
}

CatchUpResult Filesystem::CatchUp(bool from_start) {
  if (!remote_) return {};
  const proto::FeedCursors from = from_start ? proto::FeedCursors() : recovery_->SavedCursors();
  const std::int64_t started_ms = WallNs() / 1000000;
  ChangesRead read = recovery_->ReadChanges(from, [this](const crypto::ObjectId& id) {
    if (id == RecordIds::Meta()) return std::optional<Version>(Version{UINT64_MAX, UINT64_MAX});
    const RecordIds::Kind kind = ids_.Classify(id);
    std::lock_guard lock(mu_);
    if (kind == RecordIds::Kind::kBox) {
      std::optional<Version> v;
      boxes_.ForEach([&](const proto::BoxRecord& b) {
        if (ids_.Box(b.box_id()) == id) v = Version{b.version().hlc(), b.version().box_id()};
      });
      return v;
    }
    if (kind != RecordIds::Kind::kInode) return std::optional<Version>();
    return LocalVersion(id);
  });
  read.result.applied = ApplyRemote(read.records);
  if (read.result.complete()) {
    std::lock_guard lock(mu_);
    caught_up_ms_ = std::max(caught_up_ms_, started_ms);
  }
  if (read.cursors.SerializeAsString() != from.SerializeAsString()) {
    std::lock_guard lock(mu_);
    // Saved with the records just applied: one local commit.
    local_rows_.push_back(Mutation{Table::kMeta, kCursorsKey, read.cursors.SerializeAsString()});
    pipeline_->Touched();
  }
  return read.result;
}

// ---- Operations ----

#define COFFER_LOCK std::unique_lock lock(mu_)
#define COFFER_WRITABLE                                       \
  do {                                                        \
    if (options_.read_only) return EROFS;                     \
    if (!stop_reason_.empty()) return EROFS;                  \
    if (pipeline_->sticky_error()) return EIO;                \
  } while (0)

int Filesystem::Lookup(std::uint64_t parent, std::string_view name, struct stat* out) {
  COFFER_LOCK;
  int err = 0;
  Inode* dir = DirFor(parent, &err);
  if (err) return err;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  std::uint64_t child_ino;
  if (name == ".") {
    child_ino = parent;
  } else if (name == "..") {
    child_ino = dir->parent();
  } else {
    auto found = table_.Lookup(*dir, name);
    if (!found) return ENOENT;
    child_ino = *found;
  }
  Inode* child = table_.Find(child_ino);
  if (!child) return ENOENT;
  ++child->lookups;
  Stat(*child, out);
  return 0;
}

void Filesystem::Forget(std::uint64_t ino, std::uint64_t nlookup) {
  COFFER_LOCK;
  Inode* inode = table_.Find(ino);
  if (!inode) return;
  inode->lookups -= std::min(inode->lookups, nlookup);
  if (!options_.read_only) MaybeFree(inode);
}

int Filesystem::GetAttr(std::uint64_t ino, struct stat* out) {
  COFFER_LOCK;
  Inode* inode = table_.Find(ino);
  if (!inode) return ENOENT;
  Stat(*inode, out);
  return 0;
}

int Filesystem::SetAttr(std::uint64_t ino, const SetAttrRequest& req, struct stat* out,
                        const Context& ctx) {
  COFFER_LOCK;
  COFFER_WRITABLE;
  Inode* inode = table_.Find(ino);
  if (!inode) return ENOENT;
  if (req.size) {
    if (inode->is_dir()) return EISDIR;
    if (!S_ISREG(inode->mode)) return EINVAL;
    if (*req.size > file_data::kMaxFileSize) return EFBIG;
    if (!PrepareWrite(lock, ino, *req.size, *req.size)) return ENOENT;
    inode = table_.Find(ino);
    Truncate(inode, *req.size);
    if (!req.mode) KillPriv(inode, ctx);
  }
  const Timestamp now = Timestamp::Now();
  if (req.size) inode->mtime = now;
  if (req.mode) inode->mode = (inode->mode & S_IFMT) | (*req.mode & 07777);
  if (req.uid) inode->uid = *req.uid;
  if (req.gid) inode->gid = *req.gid;
  if (req.atime)
    inode->atime = req.atime->tv_nsec == UTIME_NOW ? now : Timestamp::FromTimespec(*req.atime);
  if (req.mtime)
    inode->mtime = req.mtime->tv_nsec == UTIME_NOW ? now : Timestamp::FromTimespec(*req.mtime);
  inode->ctime = now;
  Touch(inode);
  Stat(*inode, out);
  return 0;  // reaches the nodes within the commit interval (DESIGN.md)
}

int Filesystem::ReadLink(std::uint64_t ino, std::string* out) {
  COFFER_LOCK;
  Inode* inode = table_.Find(ino);
  if (!inode) return ENOENT;
  if (!S_ISLNK(inode->mode)) return EINVAL;
  *out = inode->symlink;
  return 0;
}

int Filesystem::MkNod(std::uint64_t parent, std::string_view name, mode_t mode, dev_t rdev,
                      const Context& ctx, struct stat* out) {
  COFFER_LOCK;
  COFFER_WRITABLE;
  // Devices are stored like FIFOs: a FUSE mount is nodev, so they stay inert.
  if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISSOCK(mode) && !S_ISCHR(mode) && !S_ISBLK(mode))
    return EINVAL;
  Inode* dir = nullptr;
  if (int e = DirForNewEntry(parent, name, &dir)) return e;
  Inode* inode = NewInode((mode & S_IFMT) | (mode & 07777), ctx, dir);
  inode->rdev = static_cast<std::uint32_t>(rdev);
  table_.AddLink(dir, name, inode, inode->version);
  TouchDir(dir, inode->ctime);
  ++inode->lookups;
  Stat(*inode, out);
  return 0;  // a name for no data: made durable with the next operation that waits
}

int Filesystem::MkDir(std::uint64_t parent, std::string_view name, mode_t mode,
                      const Context& ctx, struct stat* out) {
  COFFER_LOCK;
  COFFER_WRITABLE;
  Inode* dir = nullptr;
  if (int e = DirForNewEntry(parent, name, &dir)) return e;
  Inode* inode = NewInode(S_IFDIR | (mode & 07777), ctx, dir, ids_.DirIno(dir->ino, name));
  table_.AddLink(dir, name, inode, inode->version);
  TouchDir(dir, inode->ctime);
  ++inode->lookups;
  Stat(*inode, out);
  const std::uint64_t ino = inode->ino;
  AddUndo(Undo{Undo::kUnname, 0, dir->ino, std::string(name), ino, 0, {}, 0});
  int rc = MaybeWaitNamespace(lock);
  if (rc == 0) {
    if (Inode* d = table_.Find(ino)) Stat(*d, out);
  }
  return FailedEntry(rc, ino);
}

int Filesystem::Unlink(std::uint64_t parent, std::string_view name) {
  COFFER_LOCK;
  COFFER_WRITABLE;
  int err = 0;
  Inode* dir = DirFor(parent, &err);
  if (err) return err;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  auto found = table_.Lookup(*dir, name);
  if (!found) return ENOENT;
  Inode* child = table_.Find(*found);
  if (child && child->is_dir()) return EISDIR;
  // Applied at once, never fails for node reasons (DESIGN.md): the removal reaches the nodes
  // within the commit interval or with the next operation that waits.
  const Timestamp now = Timestamp::Now();
  table_.RemoveLink(dir, name, Tick());
  TouchDir(dir, now);
  if (child) {
    child->ctime = now;
    Touch(child);
    MaybeFree(child);
  }
  return 0;
}

int Filesystem::RmDir(std::uint64_t parent, std::string_view name) {
  COFFER_LOCK;
  COFFER_WRITABLE;
  int err = 0;
  Inode* dir = DirFor(parent, &err);
  if (err) return err;
  if (name == ".") return EINVAL;
  if (name == "..") return ENOTEMPTY;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  auto found = table_.Lookup(*dir, name);
  if (!found) return ENOENT;
  Inode* child = table_.Find(*found);
  if (!child || !child->is_dir()) return ENOTDIR;
  if (!child->dir->by_name.empty()) return ENOTEMPTY;
  const Timestamp now = Timestamp::Now();
  table_.RemoveLink(dir, name);
  TouchDir(dir, now);
  child->ctime = now;
  child->nlink = 0;
  Touch(child);
  MaybeFree(child);
  return 0;
}

int Filesystem::Symlink(std::string_view target, std::uint64_t parent, std::string_view name,
                        const Context& ctx, struct stat* out) {
  COFFER_LOCK;
  COFFER_WRITABLE;
  if (target.empty()) return ENOENT;
  if (target.size() > kSymlinkMax) return ENAMETOOLONG;
  Inode* dir = nullptr;
  if (int e = DirForNewEntry(parent, name, &dir)) return e;
  Inode* inode = NewInode(S_IFLNK | 0777, ctx, dir);
  inode->mode = S_IFLNK | 0777;  // no setgid inheritance for symlinks
  inode->symlink = std::string(target);
  inode->size = target.size();
  table_.AddLink(dir, name, inode, inode->version);
  TouchDir(dir, inode->ctime);
  ++inode->lookups;
  Stat(*inode, out);
  const std::uint64_t ino = inode->ino;
  AddUndo(Undo{Undo::kUnname, 0, dir->ino, std::string(name), ino, 0, {}, 0});
  return FailedEntry(MaybeWaitNamespace(lock), ino);
}

int Filesystem::Rename(std::uint64_t parent, std::string_view name, std::uint64_t new_parent,
                       std::string_view new_name, unsigned flags, const Context& ctx) {
  COFFER_LOCK;
  COFFER_WRITABLE;
  if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT))
    return EINVAL;
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) return EINVAL;
  if ((flags & RENAME_WHITEOUT) && (flags & RENAME_EXCHANGE)) return EINVAL;
  int err = 0;
  Inode* src_dir = DirFor(parent, &err);
  if (err) return err;
  Inode* dst_dir = DirFor(new_parent, &err);
  if (err) return err;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  if (int e = CheckName(new_name)) return e;
  auto src_ino = table_.Lookup(*src_dir, name);
  if (!src_ino) return ENOENT;
  Inode* src = table_.Find(*src_ino);
  if (!src) return ENOENT;
  auto dst_ino = table_.Lookup(*dst_dir, new_name);
  Inode* dst = dst_ino ? table_.Find(*dst_ino) : nullptr;
  if ((flags & RENAME_NOREPLACE) && dst) return EEXIST;
  if ((flags & RENAME_EXCHANGE) && !dst) return ENOENT;
  if (dst == src) return 0;  // two names of one file: POSIX says do nothing
  // A directory cannot move below itself.
  auto below = [&](Inode* dir, Inode* ancestor) {
    for (Inode* d = dir; d; d = d->ino == kRootIno ? nullptr : table_.Find(d->parent()))
      if (d == ancestor) return true;
    return false;
  };
  if (src->is_dir() && below(dst_dir, src)) return EINVAL;
  if ((flags & RENAME_EXCHANGE) && dst->is_dir() && below(src_dir, dst)) return EINVAL;
  const Timestamp now = Timestamp::Now();
  if (flags & RENAME_EXCHANGE) {
    table_.RemoveLink(src_dir, name, Tick());
    table_.RemoveLink(dst_dir, new_name, Tick());
    table_.AddLink(dst_dir, new_name, src, Tick());
    table_.AddLink(src_dir, name, dst, Tick());
    src->ctime = dst->ctime = now;
    Touch(src);
    Touch(dst);
    TouchDir(src_dir, now);
    if (dst_dir != src_dir) TouchDir(dst_dir, now);
    AddUndo(Undo{Undo::kExchange, 0, dst_dir->ino, std::string(new_name), src->ino, src_dir->ino,
                 std::string(name), dst->ino});
    return MaybeWaitNamespace(lock);
  }
  if (dst) {
    if (src->is_dir() && !dst->is_dir()) return ENOTDIR;
    if (!src->is_dir() && dst->is_dir()) return EISDIR;
    if (dst->is_dir() && !dst->dir->by_name.empty()) return ENOTEMPTY;
  }
  AddUndo(Undo{Undo::kRename, 0, dst_dir->ino, std::string(new_name), src->ino, src_dir->ino,
               std::string(name), dst && !dst->is_dir() ? dst->ino : 0});
  const InodeLink moved_from{src_dir->ino, std::string(name), Tick()};
  table_.RemoveLink(src_dir, name, moved_from.version);
  if (flags & RENAME_WHITEOUT) {
    // The old name becomes a whiteout: a character device 0:0 (overlay filesystems use it).
    Inode* w = NewInode(S_IFCHR, ctx, src_dir);
    w->rdev = 0;
    table_.AddLink(src_dir, name, w, w->version);
  }
  if (dst) {
    // The name keeps its readdir cookie.
    table_.ReplaceLink(dst_dir, new_name, src, Tick(), &moved_from);
    dst->ctime = now;
    if (dst->is_dir()) dst->nlink = 0;
    Touch(dst);
  } else {
    table_.AddLink(dst_dir, new_name, src, Tick(), &moved_from);
  }
  src->ctime = now;
  Touch(src);
  TouchDir(src_dir, now);
  if (dst_dir != src_dir) TouchDir(dst_dir, now);
  if (dst) MaybeFree(dst);
  return MaybeWaitNamespace(lock);
}

int Filesystem::Link(std::uint64_t ino, std::uint64_t new_parent, std::string_view new_name,
                     struct stat* out) {
  COFFER_LOCK;
  COFFER_WRITABLE;
  Inode* inode = table_.Find(ino);
  int err = 0;
  Inode* dir = DirFor(new_parent, &err);
  if (!inode) return ENOENT;
  if (err) return err;
  if (inode->is_dir()) return EPERM;
  if (int e = CheckName(new_name)) return e;
  if (table_.Lookup(*dir, new_name)) return EEXIST;
  if (inode->links.empty()) return ENOENT;
  if (inode->nlink >= 65000) return EMLINK;
  const Timestamp now = Timestamp::Now();
  table_.AddLink(dir, new_name, inode, Tick());
  inode->ctime = now;
  Touch(inode);
  TouchDir(dir, now);
  ++inode->lookups;
  Stat(*inode, out);
  AddUndo(Undo{Undo::kUnname, 0, dir->ino, std::string(new_name), ino, 0, {}, 0});
  return FailedEntry(MaybeWaitNamespace(lock), ino);
}

int Filesystem::Create(std::uint64_t parent, std::string_view name, mode_t mode, int flags,
                       const Context& ctx, struct stat* out, std::uint64_t* fh) {
  COFFER_LOCK;
  COFFER_WRITABLE;
  Inode* dir = nullptr;
  if (int e = DirForNewEntry(parent, name, &dir)) return e;
  Inode* inode = NewInode(S_IFREG | (mode & 07777), ctx, dir);
  table_.AddLink(dir, name, inode, inode->version);
  TouchDir(dir, inode->ctime);
  ++inode->lookups;
  ++inode->opens;
  *fh = next_fh_++;
  handles_[*fh] = Handle{inode->ino, flags};
  Stat(*inode, out);
  // Not waited for: the fsync, close or link that follows makes the file durable, so that a
  // delivery agent never sees open(O_CREAT) fail because nodes are down.
  return 0;
}

int Filesystem::Open(std::uint64_t ino, int flags, std::uint64_t* fh) {
  COFFER_LOCK;
  Inode* inode = table_.Find(ino);
  if (!inode) return ENOENT;
  if (inode->is_dir()) return EISDIR;
  if (S_ISLNK(inode->mode)) return ELOOP;
  // O_TRUNC truncates whatever the access mode (Linux; the kernel checked write permission).
  if ((flags & O_TRUNC) && S_ISREG(inode->mode)) {
    COFFER_WRITABLE;
    if (inode->size != 0 || !inode->chunks.empty() || !inode->dirty.empty()) {
      Truncate(inode, 0);
    }
    // open(2) with O_TRUNC sets mtime and ctime even when the file was empty.
    inode->mtime = inode->ctime = Timestamp::Now();
    Touch(inode);
  }
  ++inode->opens;
  *fh = next_fh_++;
  handles_[*fh] = Handle{ino, flags};
  return 0;
}

int Filesystem::Read(std::uint64_t ino, std::uint64_t /*fh*/, std::uint64_t offset,
                     std::size_t size, std::string* out) {
  std::vector<file_data::Piece> pieces;
  {
    COFFER_LOCK;
    Inode* inode = table_.Find(ino);
    if (!inode) return ENOENT;
    if (inode->is_dir()) return EISDIR;
    pieces = file_data::PlanRead(*inode, chunk_size_, offset, size);
  }
  // Chunks are immutable: read (maybe from the nodes) and opened without the lock.
  *out = file_data::Assemble(pieces, [this](const crypto::ObjectId& id) { return chunks_->Read(id); });
  return 0;
}

int Filesystem::Write(std::uint64_t ino, std::uint64_t fh, std::uint64_t offset,
                      std::string_view data, std::size_t* written, const Context& ctx) {
  COFFER_LOCK;
  *written = 0;
  COFFER_WRITABLE;
  Inode* inode = table_.Find(ino);
  if (!inode) return ENOENT;
  if (!S_ISREG(inode->mode)) return EINVAL;
  auto handle = handles_.find(fh);
  if (handle != handles_.end() && (handle->second.flags & O_APPEND)) offset = inode->size;
  if (data.empty()) return 0;
  const std::uint64_t end = offset + data.size();
  if (end > file_data::kMaxFileSize || end < offset) return EFBIG;
  if (!PrepareWrite(lock, ino, offset, end)) return ENOENT;
  inode = table_.Find(ino);
  if (handle = handles_.find(fh); handle != handles_.end() && (handle->second.flags & O_APPEND) &&
                                  offset != inode->size) {
    return Write(ino, fh, inode->size, data, written, ctx);  // the file grew while loading
  }
  KillPriv(inode, ctx);
  const std::vector<std::uint64_t> full = file_data::Write(inode, chunk_size_, offset, data);
  pending_bytes_ += data.size();
  inode->mtime = inode->ctime = Timestamp::Now();
  Touch(inode);
  for (std::uint64_t idx : full) FreezeChunk(inode, idx);
  if (inode->dirty.size() > 16) FreezeAll(inode);
  *written = data.size();
  if (handle != handles_.end()) handle->second.written = true;
  if (pending_bytes_ > options_.max_pending_bytes) {
    // Bounded memory: wait until what is open now is committed locally.
    const std::uint64_t seq = open_seq_;
    lock.unlock();
    const int rc = pipeline_->WaitLocal(seq);
    lock.lock();
    return rc;
  }
  return 0;
}

int Filesystem::Fallocate(std::uint64_t ino, std::uint64_t fh, int mode, std::uint64_t offset,
                          std::uint64_t length) {
  COFFER_LOCK;
  COFFER_WRITABLE;
  Inode* inode = table_.Find(ino);
  if (!inode) return ENOENT;
  if (!S_ISREG(inode->mode)) return inode->is_dir() ? EISDIR : ENODEV;
  const std::uint64_t end = offset + length;
  if (length == 0 || end < offset) return EINVAL;
  if (end > file_data::kMaxFileSize) return EFBIG;
  // Nothing is allocated ahead here (chunks are written when data is): mode 0 only extends the
  // size; KEEP_SIZE changes nothing; PUNCH_HOLE zeroes the range.
  if (mode == 0) {
    if (end <= inode->size) return 0;
    if (!PrepareWrite(lock, ino, end, end)) return ENOENT;
    inode = table_.Find(ino);
    Truncate(inode, end);  // up: zeros
  } else if (mode == FALLOC_FL_KEEP_SIZE) {
    // Nothing to allocate; the times move as on a local filesystem.
  } else if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
    const std::uint64_t stop = std::min(end, inode->size);
    if (offset >= stop) return 0;
    std::size_t written = 0;
    lock.unlock();
    // Not through `fh`: an O_APPEND descriptor must not move the zeros to the end.
    (void)fh;
    return Write(ino, 0, offset, std::string(stop - offset, '\0'), &written);
  } else {
    return EOPNOTSUPP;
  }
  const Timestamp now = Timestamp::Now();
  inode->mtime = inode->ctime = now;
  Touch(inode);
  return 0;
}

int Filesystem::Flush(std::uint64_t ino, std::uint64_t fh) {
  COFFER_LOCK;
  Inode* inode = table_.Find(ino);
  if (!inode) return 0;
  FreezeAll(inode);
  if (pipeline_->sticky_error()) return EIO;
  // With storage nodes, close() of a written file is a durability point (DESIGN.md).
  auto handle = handles_.find(fh);
  if (!remote_ || handle == handles_.end() || !handle->second.written) return 0;
  const int rc = WaitDurable(lock);
  if (rc == 0) {
    if (auto h = handles_.find(fh); h != handles_.end()) h->second.written = false;
  }
  return rc;
}

int Filesystem::Release(std::uint64_t ino, std::uint64_t fh) {
  COFFER_LOCK;
  handles_.erase(fh);
  Inode* inode = table_.Find(ino);
  if (!inode) return 0;
  FreezeAll(inode);
  if (inode->opens > 0) --inode->opens;
  if (!options_.read_only) MaybeFree(inode);
  return 0;
}

int Filesystem::Fsync(std::uint64_t ino, bool /*datasync*/) {
  COFFER_LOCK;
  if (Inode* inode = table_.Find(ino)) FreezeAll(inode);
  if (options_.read_only) return 0;
  const int rc = WaitDurable(lock);
  if (rc == 0) {
    for (auto& [fh, h] : handles_)
      if (h.ino == ino) h.written = false;
  }
  return rc;
}

int Filesystem::OpenDir(std::uint64_t ino, std::uint64_t* fh) {
  COFFER_LOCK;
  int err = 0;
  DirFor(ino, &err);
  *fh = 0;
  return err;
}

int Filesystem::ReadDir(std::uint64_t ino, std::uint64_t offset,
                        const std::function<bool(const DirEntryOut&)>& emit) {
  return ReadDir_(ino, offset, emit, false);
}

int Filesystem::ReadDirPlus(std::uint64_t ino, std::uint64_t offset,
                            const std::function<bool(const DirEntryOut&)>& emit) {
  return ReadDir_(ino, offset, emit, true);
}

int Filesystem::ReadDir_(std::uint64_t ino, std::uint64_t offset,
                         const std::function<bool(const DirEntryOut&)>& emit, bool plus) {
  COFFER_LOCK;
  int err = 0;
  Inode* inode = DirFor(ino, &err);
  if (err) return err;
  if (offset < 1 && !emit(DirEntryOut{".", ino, S_IFDIR, 1})) return 0;
  if (offset < 2 && !emit(DirEntryOut{"..", inode->parent(), S_IFDIR, 2})) return 0;
  const Dir& d = *inode->dir;
  for (auto it = d.by_cookie.upper_bound(std::max<std::uint64_t>(offset, 2));
       it != d.by_cookie.end(); ++it) {
    auto slot = d.by_name.find(it->second);
    if (slot == d.by_name.end()) continue;
    Inode* child = table_.Find(slot->second.ino);
    const mode_t type = child ? (child->mode & S_IFMT) : S_IFREG;
    DirEntryOut e{it->second, slot->second.ino, type, it->first};
    if (plus && child) Stat(*child, &e.attr);
    if (!emit(e)) break;
    if (plus && child) ++child->lookups;  // the kernel holds the entry now
  }
  return 0;
}

int Filesystem::ReleaseDir(std::uint64_t /*ino*/, std::uint64_t /*fh*/) { return 0; }

int Filesystem::FsyncDir(std::uint64_t /*ino*/) {
  COFFER_LOCK;
  if (options_.read_only) return 0;
  return WaitDurable(lock);
}

int Filesystem::StatFs(struct statvfs* out) {
  std::memset(out, 0, sizeof *out);
  if (!options_.statfs_path.empty() && ::statvfs(options_.statfs_path.c_str(), out) != 0)
    return errno;
  COFFER_LOCK;
  if (out->f_bsize == 0) out->f_bsize = out->f_frsize = 4096;
  if (out->f_ffree == 0) out->f_ffree = out->f_favail = std::uint64_t{1} << 32;
  out->f_files = out->f_ffree + table_.size();
  out->f_namemax = kNameMax;
  out->f_flag = 0;
  return 0;
}

// ---- Storage nodes: verify, scrub, status ----

VerifyReport Filesystem::Verify() {
  if (!remote_) throw Error(ENOTSUP, "verify needs storage nodes (this mount is local only)");
  std::map<crypto::ObjectId, Expected> expected;
  std::uint64_t seq;
  {
    std::lock_guard lock(mu_);
    // Commit what is pending so that the comparison is with a settled tree.
    table_.ForEach([&](Inode& inode) { FreezeAll(&inode); });
    seq = open_seq_;
  }
  pipeline_->WaitLocal(seq);
  {
    std::lock_guard lock(mu_);
    std::uint64_t meta_hlc = 1;  // format 1 kept no version in the sealed header: 1
    if (auto m = local_->Get(Table::kMeta, kMetaKey)) {
      // The local copy carries the version of the store meta on the nodes: the one this box
      // wrote (new store, migration) or the one it rebuilt from.
      auto info = crypto::Inspect(*m);
      if (info && info->version) meta_hlc = info->version->hlc;
    }
    expected[RecordIds::Meta()] = Expected{meta_hlc, false, "store meta"};
    table_.ForEach([&](Inode& inode) {
      expected[ids_.Inode(inode.ino)] =
          Expected{inode.version.hlc, false, "inode " + std::to_string(inode.ino)};
      for (std::size_t i = 0; i < inode.chunks.size(); ++i) {
        if (!file_data::IsHole(inode.chunks[i]))
          expected[inode.chunks[i]] = Expected{
              0, true, "chunk " + std::to_string(i) + " of inode " + std::to_string(inode.ino)};
      }
    });
  }
  return recovery_->Verify(expected,
                           [this](const crypto::ObjectId& id) { return pipeline_->InOutbox(id); });
}

replicator::ScrubReport Filesystem::Scrub() {
  if (!remote_) throw Error(ENOTSUP, "scrub needs storage nodes (this mount is local only)");
  // Without the background work (tests) nothing tells whether every box saw a delete: no
  // tombstone is collected.
  return maintenance_ ? maintenance_->ScrubNow()
                      : remote_->Scrub({}, !options_.read_only,
                                       [](const crypto::ObjectId&, const Version&) { return false; });
}

std::string Filesystem::StatusLine() {
  if (!remote_) return "replicated=no";
  const PipelineStatus p = pipeline_->status();
  const ChunkCacheStatus c = chunks_->status();
  auto pings = remote_->PingAll(std::chrono::milliseconds(1000));
  const auto trust = remote_->stats().nodes;
  const auto nodes = remote_->node_ids();
  std::size_t up = 0, liars = 0;
  std::string node_fields;
  for (std::size_t i = 0; i < pings.size() && i < nodes.size(); ++i) {
    // Replies that failed authentication: lies (forged or rolled-back versions), copies that
    // did not authenticate at all, claims too far in the future.
    if (i < trust.size()) {
      node_fields += " lies." + nodes[i] + "=" + std::to_string(trust[i].lies) + " corrupt." +
                     nodes[i] + "=" + std::to_string(trust[i].corrupt) + " future." + nodes[i] +
                     "=" + std::to_string(trust[i].future);
      if (trust[i].lies > 0) ++liars;
    }
    node_fields += " node." + nodes[i] + "=";
    if (pings[i]) {
      ++up;
      char buf[32];
      std::snprintf(buf, sizeof buf, "up/%.3fms", static_cast<double>(pings[i]->count()) / 1000);
      node_fields += buf;
    } else {
      node_fields += "down";
    }
  }
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  const std::int64_t age = p.oldest_ms == 0 ? 0 : std::max<std::int64_t>(0, (now_ms - p.oldest_ms) / 1000);
  const MaintenanceStatus m = maintenance_ ? maintenance_->status() : MaintenanceStatus{};
  std::string s = "replicated=yes nodes=" + std::to_string(nodes.size()) +
                  " nodes_up=" + std::to_string(up) + " liars=" + std::to_string(liars) +
                  " R=" + std::to_string(remote_->replicas()) +
                  " W=" + std::to_string(remote_->write_quorum()) +
                  " degraded=" + (options_.degraded_queue ? "queue" : "fail") +
                  " state=" + (p.outbox_failed == 0 ? "healthy" : "DEGRADED") +
                  " outbox=" + std::to_string(p.outbox) +
                  " outbox_failed=" + std::to_string(p.outbox_failed) +
                  " outbox_age_s=" + std::to_string(age) +
                  " cache_bytes=" + std::to_string(c.bytes) +
                  " cache_limit=" + std::to_string(c.limit) +
                  " cached_chunks=" + std::to_string(c.chunks) +
                  " evicted=" + std::to_string(c.evicted) +
                  " fetched=" + std::to_string(c.fetched) +
                  " under_replicated=" + std::to_string(p.outbox + m.last_scrub.unreachable) +
                  " last_scrub_unix=" + std::to_string(m.last_scrub_unix) +
                  " scrubbing=" + (m.scrubbing ? "yes" : "no") +
                  " scrub_checked=" + std::to_string(m.last_scrub.checked) +
                  " scrub_repaired=" + std::to_string(m.last_scrub.repaired) +
                  " scrub_collected=" + std::to_string(m.last_scrub.collected) +
                  " scrub_unreachable=" + std::to_string(m.last_scrub.unreachable) +
                  " scrub_unrecoverable=" + std::to_string(m.last_scrub.unrecoverable) +
                  " catchup_unix=" + std::to_string(m.last_catch_up_unix) +
                  " catchup_applied=" + std::to_string(m.catch_up_applied) + node_fields +
                  BoxFields();
  if (p.outbox_failed && !p.last_error.empty()) {
    std::string e = p.last_error;
    std::replace(e.begin(), e.end(), '\n', ' ');
    std::replace(e.begin(), e.end(), '\r', ' ');
    s += " last_error=" + e;
  }
  return s;
}

std::size_t Filesystem::InodeCount() {
  std::lock_guard lock(mu_);
  return table_.size();
}

}  // namespace coffer::fs
