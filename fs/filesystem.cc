// The cofferfs core (see filesystem.h for the design).
#include "fs/filesystem.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "fs/records.pb.h"

namespace coffer::fs {

namespace {

constexpr std::uint32_t kStoreFormat = 1;
constexpr std::uint64_t kMaxFileSize = std::uint64_t{1} << 44;  // 16 TiB

std::string BigEndian64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i) {
    s[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return s;
}

std::uint64_t FromBigEndian64(std::string_view s) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

crypto::ObjectId InodeObjectId(std::uint64_t ino) {
  crypto::ObjectId id{};
  std::string be = BigEndian64(ino);
  std::memcpy(id.data(), be.data(), 8);
  return id;
}

crypto::ObjectId IdFromBytes(std::string_view bytes) {
  crypto::ObjectId id{};
  if (bytes.size() == id.size()) std::memcpy(id.data(), bytes.data(), id.size());
  return id;
}

std::string_view IdBytes(const crypto::ObjectId& id) {
  return {reinterpret_cast<const char*>(id.data()), id.size()};
}

bool IsZero(const crypto::ObjectId& id) {
  return std::all_of(id.begin(), id.end(), [](std::uint8_t b) { return b == 0; });
}

std::int64_t WallNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

timespec ToTimespec(std::int64_t ns) {
  timespec ts;
  ts.tv_sec = ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1000000000;
    ts.tv_sec -= 1;
  }
  return ts;
}

std::int64_t FromTimespec(const timespec& ts) {
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

struct Filesystem::Dir {
  struct Slot {
    std::uint64_t ino;
    std::uint64_t cookie;
  };
  std::map<std::string, Slot, std::less<>> by_name;
  // Readdir offsets: each entry keeps the cookie it got when its name appeared (a rename over an
  // existing name keeps that name's cookie), so resuming at an offset never skips or repeats.
  std::map<std::uint64_t, std::string> by_cookie;
  std::uint64_t next_cookie = 3;  // 1 and 2 are "." and ".."
};

struct Filesystem::Inode {
  std::uint64_t ino = 0;
  std::uint32_t mode = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint64_t size = 0;
  std::uint32_t nlink = 0;
  std::int64_t atime = 0;
  std::int64_t mtime = 0;
  std::int64_t ctime = 0;
  std::uint32_t rdev = 0;
  std::vector<crypto::ObjectId> chunks;  // zero id: hole
  std::string symlink;
  std::uint64_t parent = 0;
  std::uint64_t hlc = 0;
  std::uint64_t version_box = 0;
  // Run-time only.
  std::uint64_t lookups = 0;  // kernel references (FUSE lookup count)
  std::uint32_t opens = 0;
  std::map<std::uint64_t, std::string> dirty;  // chunk index -> plaintext not yet sealed
  std::unique_ptr<Dir> dir;
};

Filesystem::Filesystem(std::unique_ptr<Store> store, crypto::Keyring keys, std::string fingerprint,
                       Options options)
    : store_(std::move(store)),
      keys_(std::move(keys)),
      fingerprint_(std::move(fingerprint)),
      options_(std::move(options)) {
  const crypto::DerivedKeys* first = keys_.Find(1);
  if (first == nullptr) first = keys_.Find(keys_.current_epoch());
  name_key_ = &first->name.bytes();
  Load();
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
  if (committer_.joinable()) return;
  committer_ = std::thread([this] { CommitLoop(); });
}

void Filesystem::Shutdown() {
  std::unique_lock lock(mu_);
  for (auto& [ino, inode] : inodes_) SealAll(inode.get());
  if (committer_.joinable()) {
    stopping_ = true;
    commit_cv_.notify_all();
    std::thread t = std::move(committer_);
    lock.unlock();
    t.join();
    lock.lock();
  }
  while (!commit_error_ && (!dirty_inodes_.empty() || !dirty_entries_.empty() ||
                            !pending_chunks_.empty() || !deleted_chunks_.empty()))
    CommitOnce(lock);
}

// ---- Loading and initialisation ----

void Filesystem::Load() {
  auto meta_sealed = store_->Get(Table::kMeta, "meta");
  auto stored_fpr = store_->Get(Table::kMeta, "fingerprint");
  if (!meta_sealed) {
    bool empty = true;
    store_->Scan(Table::kInodes, [&](std::string_view, std::string_view) { empty = false; });
    if (!empty) throw Error(EBADMSG, "store has inodes but no store meta record: damaged");
    Initialise();
    return;
  }
  auto meta_plain =
      crypto::Open(keys_, crypto::ObjectKind::kStoreMeta, crypto::ObjectId{}, *meta_sealed);
  if (!meta_plain) {
    std::string msg = "this STATE_DIR was made with another key";
    if (stored_fpr) msg += " (store key fingerprint " + *stored_fpr + ", this key " + fingerprint_ + ")";
    throw Error(EACCES, msg);
  }
  proto::StoreMeta meta;
  if (!meta.ParseFromString(*meta_plain) || meta.format() != kStoreFormat)
    throw Error(EBADMSG, "store meta record of an unknown format");
  box_id_ = meta.box_id();
  chunk_size_ = meta.chunk_size() ? meta.chunk_size() : (64 << 10);
  if (auto n = store_->Get(Table::kMeta, "next_ino"); n && n->size() == 8)
    next_ino_ = FromBigEndian64(*n);

  store_->Scan(Table::kInodes, [&](std::string_view key, std::string_view value) {
    if (key.size() != 8) throw Error(EBADMSG, "malformed inode key in store");
    std::uint64_t ino = FromBigEndian64(key);
    auto plain =
        crypto::Open(keys_, crypto::ObjectKind::kInodeRecord, InodeObjectId(ino), value);
    proto::InodeRecord rec;
    if (!plain || !rec.ParseFromString(*plain) || rec.ino() != ino)
      throw Error(EBADMSG, "inode record " + std::to_string(ino) + " fails authentication");
    auto inode = std::make_unique<Inode>();
    inode->ino = ino;
    inode->mode = rec.mode();
    inode->uid = rec.uid();
    inode->gid = rec.gid();
    inode->size = rec.size();
    inode->nlink = rec.nlink();
    inode->atime = rec.atime_ns();
    inode->mtime = rec.mtime_ns();
    inode->ctime = rec.ctime_ns();
    inode->rdev = rec.rdev();
    inode->symlink = rec.symlink();
    inode->parent = rec.parent();
    inode->hlc = rec.version().hlc();
    inode->version_box = rec.version().box_id();
    for (const auto& c : rec.chunks()) inode->chunks.push_back(IdFromBytes(c));
    if (S_ISDIR(inode->mode)) inode->dir = std::make_unique<Dir>();
    hlc_ = std::max(hlc_, inode->hlc);
    next_ino_ = std::max(next_ino_, ino + 1);
    inodes_[ino] = std::move(inode);
  });
  if (!Find(kRootIno)) throw Error(EBADMSG, "store has no root directory");

  store_->Scan(Table::kDirents, [&](std::string_view key, std::string_view value) {
    if (key.size() != 24) throw Error(EBADMSG, "malformed directory entry key in store");
    auto plain = crypto::Open(keys_, crypto::ObjectKind::kDirEntry, IdFromBytes(key.substr(8)),
                              value);
    proto::DirEntry rec;
    if (!plain || !rec.ParseFromString(*plain) || rec.parent() != FromBigEndian64(key))
      throw Error(EBADMSG, "directory entry fails authentication");
    Inode* dir = Find(rec.parent());
    if (!dir || !dir->dir || !Find(rec.child())) {
      spdlog::warn("dropping a directory entry of inode {} that points nowhere", rec.parent());
      return;
    }
    Dir& d = *dir->dir;
    std::uint64_t cookie = d.next_cookie++;
    d.by_name[rec.name()] = Dir::Slot{rec.child(), cookie};
    d.by_cookie[cookie] = rec.name();
    hlc_ = std::max(hlc_, rec.version().hlc());
  });

  // Inodes without a name (unlinked while open when the last daemon stopped or crashed).
  std::vector<Inode*> orphans;
  for (auto& [ino, inode] : inodes_)
    if (inode->nlink == 0 && ino != kRootIno) orphans.push_back(inode.get());
  for (Inode* inode : orphans) {
    spdlog::info("purging unlinked inode {}", inode->ino);
    MaybeFree(inode);
  }
  if (!orphans.empty()) {
    std::unique_lock lock(mu_);
    CommitOnce(lock);
  }
  spdlog::info("store opened: {} inodes, box id {:016x}", inodes_.size(), box_id_);
}

void Filesystem::Initialise() {
  crypto::primitives::RandomBytes(reinterpret_cast<unsigned char*>(&box_id_), sizeof box_id_);
  chunk_size_ = options_.chunk_size;
  proto::StoreMeta meta;
  meta.set_format(kStoreFormat);
  meta.set_fingerprint(fingerprint_);
  meta.set_box_id(box_id_);
  meta.set_created_unix(WallNs() / 1000000000);
  meta.set_chunk_size(chunk_size_);
  std::string sealed = crypto::Seal(keys_, crypto::ObjectKind::kStoreMeta, crypto::ObjectId{},
                                    keys_.current_epoch(), meta.SerializeAsString());
  store_->Commit({Mutation{Table::kMeta, "meta", sealed},
                  Mutation{Table::kMeta, "fingerprint", fingerprint_}});
  auto root = std::make_unique<Inode>();
  root->ino = kRootIno;
  root->mode = S_IFDIR | 0755;
  root->nlink = 2;
  root->parent = kRootIno;
  root->atime = root->mtime = root->ctime = Now();
  root->dir = std::make_unique<Dir>();
  Inode* r = root.get();
  inodes_[kRootIno] = std::move(root);
  std::unique_lock lock(mu_);
  Touch(r);
  CommitOnce(lock);
  if (commit_error_) throw Error(commit_error_, "cannot initialise the store");
  spdlog::info("initialised a new store, box id {:016x}", box_id_);
}

// ---- Helpers (mu_ held) ----

Filesystem::Inode* Filesystem::Find(std::uint64_t ino) {
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second.get();
}

std::int64_t Filesystem::Now() const { return WallNs(); }

void Filesystem::Touch(Inode* inode) {
  hlc_ = std::max<std::uint64_t>(hlc_ + 1, static_cast<std::uint64_t>(WallNs()));
  inode->hlc = hlc_;
  inode->version_box = box_id_;
  dirty_inodes_.insert(inode->ino);
}

void Filesystem::TouchDir(Inode* dir, std::int64_t now) {
  // Always move the mtime forward, even within one clock tick: Dovecot and others detect new
  // mail by a changed directory mtime.
  dir->mtime = std::max(now, dir->mtime + 1);
  dir->ctime = dir->mtime;
  Touch(dir);
}

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
  out->st_atim = ToTimespec(inode.atime);
  out->st_mtim = ToTimespec(inode.mtime);
  out->st_ctim = ToTimespec(inode.ctime);
}

std::string Filesystem::DirentKey(std::uint64_t parent, std::string_view name) const {
  std::string be = BigEndian64(parent);
  std::string mac = crypto::primitives::HmacSha256(name_key_->view(), be, name);
  return be + mac.substr(0, crypto::kObjectIdSize);
}

void Filesystem::PutEntry(Inode* dir, std::string_view name, std::uint64_t child) {
  Dir& d = *dir->dir;
  auto it = d.by_name.find(name);
  if (it != d.by_name.end()) {
    it->second.ino = child;
  } else {
    std::uint64_t cookie = d.next_cookie++;
    d.by_name.emplace(std::string(name), Dir::Slot{child, cookie});
    d.by_cookie.emplace(cookie, std::string(name));
  }
  hlc_ = std::max<std::uint64_t>(hlc_ + 1, static_cast<std::uint64_t>(WallNs()));
  proto::DirEntry rec;
  rec.set_parent(dir->ino);
  rec.set_name(std::string(name));
  rec.set_child(child);
  rec.mutable_version()->set_hlc(hlc_);
  rec.mutable_version()->set_box_id(box_id_);
  dirty_entries_[DirentKey(dir->ino, name)] = rec.SerializeAsString();
}

void Filesystem::RemoveEntry(Inode* dir, std::string_view name) {
  Dir& d = *dir->dir;
  auto it = d.by_name.find(name);
  if (it == d.by_name.end()) return;
  d.by_cookie.erase(it->second.cookie);
  d.by_name.erase(it);
  dirty_entries_[DirentKey(dir->ino, name)] = std::nullopt;
}

Filesystem::Inode* Filesystem::NewInode(mode_t mode, const Context& ctx, Inode* parent) {
  auto inode = std::make_unique<Inode>();
  inode->ino = next_ino_++;
  inode->mode = mode;
  inode->uid = ctx.uid;
  inode->gid = ctx.gid;
  if (parent->mode & S_ISGID) {  // BSD group semantics of setgid directories
    inode->gid = parent->gid;
    if (S_ISDIR(mode)) inode->mode |= S_ISGID;
  }
  inode->nlink = S_ISDIR(mode) ? 2 : 1;
  inode->atime = inode->mtime = inode->ctime = Now();
  inode->parent = parent->ino;
  if (S_ISDIR(mode)) inode->dir = std::make_unique<Dir>();
  Inode* raw = inode.get();
  inodes_[raw->ino] = std::move(inode);
  Touch(raw);
  return raw;
}

int Filesystem::CheckName(std::string_view name) const {
  if (name.empty()) return ENOENT;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos)
    return EINVAL;
  return 0;
}

int Filesystem::DirForNewEntry(std::uint64_t parent, std::string_view name, Inode** dir) {
  *dir = Find(parent);
  if (!*dir) return ENOENT;
  if (!(*dir)->dir) return ENOTDIR;
  if (int e = CheckName(name)) return e;
  if ((*dir)->dir->by_name.count(name)) return EEXIST;
  return 0;
}

void Filesystem::DropLink(Inode* inode) {
  if (S_ISDIR(inode->mode)) {
    inode->nlink = 0;
  } else if (inode->nlink > 0) {
    --inode->nlink;
  }
  inode->ctime = Now();
  Touch(inode);
}

void Filesystem::MaybeFree(Inode* inode) {
  if (inode->nlink != 0 || inode->opens != 0 || inode->lookups != 0 || inode->ino == kRootIno)
    return;
  for (const auto& id : inode->chunks)
    if (!IsZero(id)) DeleteChunk(id);
  dirty_inodes_.insert(inode->ino);  // absent from inodes_: TakeBatch deletes the record
  inodes_.erase(inode->ino);
}

void Filesystem::DeleteChunk(const crypto::ObjectId& id) {
  auto it = pending_chunks_.find(id);
  if (it != pending_chunks_.end()) {
    pending_bytes_ -= std::min(pending_bytes_, it->second.size());
    pending_chunks_.erase(it);
    return;
  }
  deleted_chunks_.insert(id);
}

std::string Filesystem::LoadChunk(const crypto::ObjectId& id) {
  std::optional<std::string> sealed;
  if (auto it = pending_chunks_.find(id); it != pending_chunks_.end()) {
    sealed = it->second;
  } else if (committing_chunks_) {
    if (auto c = committing_chunks_->find(id); c != committing_chunks_->end()) sealed = c->second;
  }
  if (!sealed) sealed = store_->Get(Table::kChunks, IdBytes(id));
  if (!sealed) throw Error(EIO, "chunk " + crypto::ToHex(id) + " is missing from the store");
  auto plain = crypto::Open(keys_, crypto::ObjectKind::kChunk, id, *sealed);
  if (!plain) throw Error(EIO, "chunk " + crypto::ToHex(id) + " fails authentication");
  return std::move(*plain);
}

std::string& Filesystem::DirtyChunk(Inode* inode, std::uint64_t index) {
  auto it = inode->dirty.find(index);
  if (it != inode->dirty.end()) return it->second;
  std::string data;
  if (index < inode->chunks.size() && !IsZero(inode->chunks[index]))
    data = LoadChunk(inode->chunks[index]);
  return inode->dirty.emplace(index, std::move(data)).first->second;
}

void Filesystem::SealChunk(Inode* inode, std::uint64_t index) {
  auto it = inode->dirty.find(index);
  if (it == inode->dirty.end()) return;
  if (index >= inode->chunks.size()) inode->chunks.resize(index + 1);
  crypto::ObjectId old = inode->chunks[index];
  crypto::ObjectId id{};
  if (!it->second.empty()) {
    id = crypto::RandomObjectId();
    std::string sealed =
        crypto::Seal(keys_, crypto::ObjectKind::kChunk, id, keys_.current_epoch(), it->second);
    pending_bytes_ += sealed.size();
    pending_chunks_.emplace(id, std::move(sealed));
  }
  inode->chunks[index] = id;
  if (!IsZero(old)) DeleteChunk(old);
  inode->dirty.erase(it);
  Touch(inode);
}

void Filesystem::SealAll(Inode* inode) {
  while (!inode->dirty.empty()) SealChunk(inode, inode->dirty.begin()->first);
}

void Filesystem::Truncate(Inode* inode, std::uint64_t size) {
  const std::uint64_t c = chunk_size_;
  std::uint64_t keep = (size + c - 1) / c;
  if (size < inode->size) {
    for (std::uint64_t i = keep; i < inode->chunks.size(); ++i)
      if (!IsZero(inode->chunks[i])) DeleteChunk(inode->chunks[i]);
    inode->dirty.erase(inode->dirty.lower_bound(keep), inode->dirty.end());
    if (inode->chunks.size() > keep) inode->chunks.resize(keep);
    if (size % c != 0) {
      std::string& buf = DirtyChunk(inode, size / c);
      if (buf.size() > size % c) buf.resize(size % c);
    }
  }
  if (inode->chunks.size() < keep) inode->chunks.resize(keep);
  inode->size = size;
}

// ---- Commits ----

Batch Filesystem::TakeBatch() {
  Batch batch;
  const std::uint32_t epoch = keys_.current_epoch();
  for (std::uint64_t ino : dirty_inodes_) {
    std::string key = BigEndian64(ino);
    Inode* inode = Find(ino);
    if (!inode) {
      batch.push_back(Mutation{Table::kInodes, std::move(key), std::nullopt});
      continue;
    }
    proto::InodeRecord rec;
    rec.set_ino(ino);
    rec.set_mode(inode->mode);
    rec.set_uid(inode->uid);
    rec.set_gid(inode->gid);
    rec.set_size(inode->size);
    rec.set_nlink(inode->nlink);
    rec.set_atime_ns(inode->atime);
    rec.set_mtime_ns(inode->mtime);
    rec.set_ctime_ns(inode->ctime);
    rec.set_rdev(inode->rdev);
    rec.set_symlink(inode->symlink);
    rec.set_parent(inode->parent);
    rec.set_chunk_size(chunk_size_);
    rec.mutable_version()->set_hlc(inode->hlc);
    rec.mutable_version()->set_box_id(inode->version_box);
    for (const auto& id : inode->chunks)
      rec.add_chunks(IsZero(id) ? std::string() : std::string(IdBytes(id)));
    batch.push_back(Mutation{Table::kInodes, std::move(key),
                             crypto::Seal(keys_, crypto::ObjectKind::kInodeRecord,
                                          InodeObjectId(ino), epoch, rec.SerializeAsString())});
  }
  for (auto& [key, value] : dirty_entries_) {
    if (value) {
      batch.push_back(Mutation{Table::kDirents, key,
                               crypto::Seal(keys_, crypto::ObjectKind::kDirEntry,
                                            IdFromBytes(std::string_view(key).substr(8)), epoch,
                                            *value)});
    } else {
      batch.push_back(Mutation{Table::kDirents, key, std::nullopt});
    }
  }
  for (const auto& id : deleted_chunks_)
    batch.push_back(Mutation{Table::kChunks, std::string(IdBytes(id)), std::nullopt});
  if (!dirty_inodes_.empty())
    batch.push_back(Mutation{Table::kMeta, "next_ino", BigEndian64(next_ino_)});
  dirty_inodes_.clear();
  dirty_entries_.clear();
  deleted_chunks_.clear();
  return batch;
}

void Filesystem::CommitOnce(std::unique_lock<std::mutex>& lock) {
  while (committing_) durable_cv_.wait(lock);
  committing_ = true;
  const std::uint64_t seq = open_seq_++;
  Batch batch = TakeBatch();
  auto chunks = std::make_shared<std::map<crypto::ObjectId, std::string>>(
      std::move(pending_chunks_));
  pending_chunks_.clear();
  pending_bytes_ = 0;
  committing_chunks_ = chunks;
  lock.unlock();
  int err = 0;
  if (!batch.empty() || !chunks->empty()) {
    try {
      batch.reserve(batch.size() + chunks->size());
      // Chunks first in the batch: one transaction either way, but it keeps the order readable.
      Batch all;
      all.reserve(batch.size() + chunks->size());
      for (const auto& [id, sealed] : *chunks)
        all.push_back(Mutation{Table::kChunks, std::string(IdBytes(id)), sealed});
      for (auto& m : batch) all.push_back(std::move(m));
      store_->Commit(all);
    } catch (const Error& e) {
      err = e.err() ? e.err() : EIO;
      spdlog::error("commit failed, the filesystem now refuses writes: {}", e.what());
    } catch (const std::exception& e) {
      err = EIO;
      spdlog::error("commit failed, the filesystem now refuses writes: {}", e.what());
    }
  }
  lock.lock();
  committing_chunks_.reset();
  committing_ = false;
  if (err) {
    commit_error_ = err;
  } else {
    committed_seq_ = seq;
  }
  durable_cv_.notify_all();
}

void Filesystem::CommitLoop() {
  std::unique_lock lock(mu_);
  const auto interval = std::chrono::milliseconds(options_.commit_interval_ms);
  while (true) {
    commit_cv_.wait_for(lock, interval, [&] { return commit_requested_ || stopping_; });
    bool pending = !dirty_inodes_.empty() || !dirty_entries_.empty() ||
                   !pending_chunks_.empty() || !deleted_chunks_.empty();
    bool requested = commit_requested_;
    commit_requested_ = false;
    if (commit_error_) {
      durable_cv_.notify_all();
      if (stopping_) return;
      continue;
    }
    if (pending || requested) CommitOnce(lock);
    if (stopping_ && !commit_requested_) return;
  }
}

int Filesystem::WaitDurable(std::unique_lock<std::mutex>& lock) {
  if (commit_error_) return EIO;
  const std::uint64_t target = open_seq_;
  if (!committer_.joinable()) {
    while (committed_seq_ < target && !commit_error_) CommitOnce(lock);
  } else {
    commit_requested_ = true;
    commit_cv_.notify_one();
    durable_cv_.wait(lock, [&] { return committed_seq_ >= target || commit_error_ != 0; });
  }
  return commit_error_ ? EIO : 0;
}

int Filesystem::MaybeWaitNamespace(std::unique_lock<std::mutex>& lock) {
  return options_.sync_namespace ? WaitDurable(lock) : 0;
}

// ---- Operations ----

#define COFFER_LOCK std::unique_lock lock(mu_)

int Filesystem::Lookup(std::uint64_t parent, std::string_view name, struct stat* out) {
  COFFER_LOCK;
  Inode* dir = Find(parent);
  if (!dir) return ENOENT;
  if (!dir->dir) return ENOTDIR;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  std::uint64_t child_ino;
  if (name == ".") {
    child_ino = parent;
  } else if (name == "..") {
    child_ino = dir->parent;
  } else {
    auto it = dir->dir->by_name.find(name);
    if (it == dir->dir->by_name.end()) return ENOENT;
    child_ino = it->second.ino;
  }
  Inode* child = Find(child_ino);
  if (!child) return ENOENT;
  ++child->lookups;
  Stat(*child, out);
  return 0;
}

void Filesystem::Forget(std::uint64_t ino, std::uint64_t nlookup) {
  COFFER_LOCK;
  Inode* inode = Find(ino);
  if (!inode) return;
  inode->lookups -= std::min(inode->lookups, nlookup);
  MaybeFree(inode);
}

int Filesystem::GetAttr(std::uint64_t ino, struct stat* out) {
  COFFER_LOCK;
  Inode* inode = Find(ino);
  if (!inode) return ENOENT;
  Stat(*inode, out);
  return 0;
}

int Filesystem::SetAttr(std::uint64_t ino, const SetAttrRequest& req, struct stat* out) {
  COFFER_LOCK;
  if (commit_error_) return EIO;
  Inode* inode = Find(ino);
  if (!inode) return ENOENT;
  const std::int64_t now = Now();
  if (req.size) {
    if (S_ISDIR(inode->mode)) return EISDIR;
    if (!S_ISREG(inode->mode)) return EINVAL;
    if (*req.size > kMaxFileSize) return EFBIG;
    Truncate(inode, *req.size);
    inode->mtime = now;
  }
  if (req.mode) inode->mode = (inode->mode & S_IFMT) | (*req.mode & 07777);
  if (req.uid) inode->uid = *req.uid;
  if (req.gid) inode->gid = *req.gid;
  if (req.atime)
    inode->atime = req.atime->tv_nsec == UTIME_NOW ? now : FromTimespec(*req.atime);
  if (req.mtime)
    inode->mtime = req.mtime->tv_nsec == UTIME_NOW ? now : FromTimespec(*req.mtime);
  inode->ctime = now;
  Touch(inode);
  Stat(*inode, out);
  return MaybeWaitNamespace(lock);
}

int Filesystem::ReadLink(std::uint64_t ino, std::string* out) {
  COFFER_LOCK;
  Inode* inode = Find(ino);
  if (!inode) return ENOENT;
  if (!S_ISLNK(inode->mode)) return EINVAL;
  *out = inode->symlink;
  return 0;
}

int Filesystem::MkNod(std::uint64_t parent, std::string_view name, mode_t mode, dev_t rdev,
                      const Context& ctx, struct stat* out) {
  COFFER_LOCK;
  if (commit_error_) return EIO;
  if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISSOCK(mode)) return EPERM;
  Inode* dir = nullptr;
  if (int e = DirForNewEntry(parent, name, &dir)) return e;
  Inode* inode = NewInode((mode & S_IFMT) | (mode & 07777), ctx, dir);
  inode->rdev = static_cast<std::uint32_t>(rdev);
  PutEntry(dir, name, inode->ino);
  TouchDir(dir, inode->ctime);
  ++inode->lookups;
  Stat(*inode, out);
  return MaybeWaitNamespace(lock);
}

int Filesystem::MkDir(std::uint64_t parent, std::string_view name, mode_t mode,
                      const Context& ctx, struct stat* out) {
  COFFER_LOCK;
  if (commit_error_) return EIO;
  Inode* dir = nullptr;
  if (int e = DirForNewEntry(parent, name, &dir)) return e;
  Inode* inode = NewInode(S_IFDIR | (mode & 07777), ctx, dir);
  PutEntry(dir, name, inode->ino);
  ++dir->nlink;
  TouchDir(dir, inode->ctime);
  ++inode->lookups;
  Stat(*inode, out);
  return MaybeWaitNamespace(lock);
}

int Filesystem::Unlink(std::uint64_t parent, std::string_view name) {
  COFFER_LOCK;
  if (commit_error_) return EIO;
  Inode* dir = Find(parent);
  if (!dir) return ENOENT;
  if (!dir->dir) return ENOTDIR;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  auto it = dir->dir->by_name.find(name);
  if (it == dir->dir->by_name.end()) return ENOENT;
  Inode* child = Find(it->second.ino);
  if (child && child->dir) return EISDIR;
  RemoveEntry(dir, name);
  TouchDir(dir, Now());
  if (child) {
    DropLink(child);
    MaybeFree(child);
  }
  return MaybeWaitNamespace(lock);
}

int Filesystem::RmDir(std::uint64_t parent, std::string_view name) {
  COFFER_LOCK;
  if (commit_error_) return EIO;
  Inode* dir = Find(parent);
  if (!dir) return ENOENT;
  if (!dir->dir) return ENOTDIR;
  if (name == ".") return EINVAL;
  if (name == "..") return ENOTEMPTY;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  auto it = dir->dir->by_name.find(name);
  if (it == dir->dir->by_name.end()) return ENOENT;
  Inode* child = Find(it->second.ino);
  if (!child || !child->dir) return ENOTDIR;
  if (!child->dir->by_name.empty()) return ENOTEMPTY;
  RemoveEntry(dir, name);
  if (dir->nlink > 2) --dir->nlink;
  TouchDir(dir, Now());
  DropLink(child);
  MaybeFree(child);
  return MaybeWaitNamespace(lock);
}

int Filesystem::Symlink(std::string_view target, std::uint64_t parent, std::string_view name,
                        const Context& ctx, struct stat* out) {
  COFFER_LOCK;
  if (commit_error_) return EIO;
  if (target.empty()) return ENOENT;
  if (target.size() > kSymlinkMax) return ENAMETOOLONG;
  Inode* dir = nullptr;
  if (int e = DirForNewEntry(parent, name, &dir)) return e;
  Inode* inode = NewInode(S_IFLNK | 0777, ctx, dir);
  inode->mode = S_IFLNK | 0777;  // no setgid inheritance for symlinks
  inode->symlink = std::string(target);
  inode->size = target.size();
  PutEntry(dir, name, inode->ino);
  TouchDir(dir, inode->ctime);
  ++inode->lookups;
  Stat(*inode, out);
  return MaybeWaitNamespace(lock);
}

int Filesystem::Rename(std::uint64_t parent, std::string_view name, std::uint64_t new_parent,
                       std::string_view new_name, unsigned flags) {
  COFFER_LOCK;
  if (commit_error_) return EIO;
  if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE | RENAME_EXCHANGE)) return EINVAL;
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) return EINVAL;
  Inode* src_dir = Find(parent);
  Inode* dst_dir = Find(new_parent);
  if (!src_dir || !dst_dir) return ENOENT;
  if (!src_dir->dir || !dst_dir->dir) return ENOTDIR;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  if (int e = CheckName(new_name)) return e;
  auto sit = src_dir->dir->by_name.find(name);
  if (sit == src_dir->dir->by_name.end()) return ENOENT;
  Inode* src = Find(sit->second.ino);
  if (!src) return ENOENT;
  auto dit = dst_dir->dir->by_name.find(new_name);
  Inode* dst = dit == dst_dir->dir->by_name.end() ? nullptr : Find(dit->second.ino);
  if ((flags & RENAME_NOREPLACE) && dst) return EEXIST;
  if ((flags & RENAME_EXCHANGE) && !dst) return ENOENT;
  if (dst == src) return 0;  // two names of one file: POSIX says do nothing
  // A directory cannot move below itself.
  auto below = [&](Inode* dir, Inode* ancestor) {
    for (Inode* d = dir; d; d = d->ino == kRootIno ? nullptr : Find(d->parent))
      if (d == ancestor) return true;
    return false;
  };
  if (src->dir && below(dst_dir, src)) return EINVAL;
  if ((flags & RENAME_EXCHANGE) && dst->dir && below(src_dir, dst)) return EINVAL;
  const std::int64_t now = Now();
  if (flags & RENAME_EXCHANGE) {
    PutEntry(dst_dir, new_name, src->ino);
    PutEntry(src_dir, name, dst->ino);
    if (src_dir != dst_dir) {
      if (src->dir) {
        src->parent = dst_dir->ino;
        ++dst_dir->nlink;
        --src_dir->nlink;
      }
      if (dst->dir) {
        dst->parent = src_dir->ino;
        ++src_dir->nlink;
        --dst_dir->nlink;
      }
    }
    src->ctime = dst->ctime = now;
    Touch(src);
    Touch(dst);
    TouchDir(src_dir, now);
    if (dst_dir != src_dir) TouchDir(dst_dir, now);
    return MaybeWaitNamespace(lock);
  }
  if (dst) {
    if (src->dir && !dst->dir) return ENOTDIR;
    if (!src->dir && dst->dir) return EISDIR;
    if (dst->dir && !dst->dir->by_name.empty()) return ENOTEMPTY;
  }
  if (dst) {
    if (dst->dir && dst_dir->nlink > 2) --dst_dir->nlink;
    DropLink(dst);
  }
  PutEntry(dst_dir, new_name, src->ino);  // an existing name keeps its readdir cookie
  RemoveEntry(src_dir, name);
  if (src->dir && src_dir != dst_dir) {
    if (src_dir->nlink > 2) --src_dir->nlink;
    ++dst_dir->nlink;
    src->parent = dst_dir->ino;
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
  if (commit_error_) return EIO;
  Inode* inode = Find(ino);
  Inode* dir = Find(new_parent);
  if (!inode || !dir) return ENOENT;
  if (!dir->dir) return ENOTDIR;
  if (inode->dir) return EPERM;
  if (int e = CheckName(new_name)) return e;
  if (dir->dir->by_name.count(new_name)) return EEXIST;
  if (inode->nlink == 0) return ENOENT;
  if (inode->nlink >= 65000) return EMLINK;
  ++inode->nlink;
  const std::int64_t now = Now();
  inode->ctime = now;
  Touch(inode);
  PutEntry(dir, new_name, inode->ino);
  TouchDir(dir, now);
  ++inode->lookups;
  Stat(*inode, out);
  return MaybeWaitNamespace(lock);
}

int Filesystem::Create(std::uint64_t parent, std::string_view name, mode_t mode, int flags,
                       const Context& ctx, struct stat* out, std::uint64_t* fh) {
  COFFER_LOCK;
  if (commit_error_) return EIO;
  Inode* dir = nullptr;
  if (int e = DirForNewEntry(parent, name, &dir)) return e;
  Inode* inode = NewInode(S_IFREG | (mode & 07777), ctx, dir);
  PutEntry(dir, name, inode->ino);
  TouchDir(dir, inode->ctime);
  ++inode->lookups;
  ++inode->opens;
  *fh = next_fh_++;
  handles_[*fh] = {inode->ino, flags};
  Stat(*inode, out);
  return MaybeWaitNamespace(lock);
}

int Filesystem::Open(std::uint64_t ino, int flags, std::uint64_t* fh) {
  COFFER_LOCK;
  Inode* inode = Find(ino);
  if (!inode) return ENOENT;
  if (inode->dir) return EISDIR;
  if (S_ISLNK(inode->mode)) return ELOOP;
  ++inode->opens;
  *fh = next_fh_++;
  handles_[*fh] = {ino, flags};
  return 0;
}

int Filesystem::Read(std::uint64_t ino, std::uint64_t /*fh*/, std::uint64_t offset,
                     std::size_t size, std::string* out) {
  COFFER_LOCK;
  out->clear();
  Inode* inode = Find(ino);
  if (!inode) return ENOENT;
  if (inode->dir) return EISDIR;
  if (offset >= inode->size || size == 0) return 0;
  const std::uint64_t end = std::min<std::uint64_t>(offset + size, inode->size);
  const std::uint64_t c = chunk_size_;
  out->reserve(end - offset);
  for (std::uint64_t idx = offset / c; idx * c < end; ++idx) {
    const std::uint64_t cstart = idx * c;
    const std::uint64_t a = std::max(offset, cstart) - cstart;
    const std::uint64_t b = std::min(end, cstart + c) - cstart;
    std::string loaded;
    const std::string* data = nullptr;
    if (auto it = inode->dirty.find(idx); it != inode->dirty.end()) {
      data = &it->second;
    } else if (idx < inode->chunks.size() && !IsZero(inode->chunks[idx])) {
      loaded = LoadChunk(inode->chunks[idx]);
      data = &loaded;
    }
    std::uint64_t have = data ? std::min<std::uint64_t>(data->size(), b) : 0;
    if (have > a) out->append(*data, a, have - a);
    std::uint64_t filled = std::max(have, a);
    if (b > filled) out->append(b - filled, '\0');
  }
  return 0;
}

int Filesystem::Write(std::uint64_t ino, std::uint64_t fh, std::uint64_t offset,
                      std::string_view data, std::size_t* written) {
  COFFER_LOCK;
  *written = 0;
  if (commit_error_) return EIO;
  Inode* inode = Find(ino);
  if (!inode) return ENOENT;
  if (!S_ISREG(inode->mode)) return EINVAL;
  if (auto h = handles_.find(fh); h != handles_.end() && (h->second.second & O_APPEND))
    offset = inode->size;
  if (data.empty()) return 0;
  const std::uint64_t end = offset + data.size();
  if (end > kMaxFileSize || end < offset) return EFBIG;
  const std::uint64_t c = chunk_size_;
  if (end > inode->size) {
    inode->chunks.resize((end + c - 1) / c);
  }
  std::vector<std::uint64_t> full;
  for (std::uint64_t idx = offset / c; idx * c < end; ++idx) {
    const std::uint64_t cstart = idx * c;
    const std::uint64_t from = std::max(offset, cstart);
    const std::uint64_t to = std::min(end, cstart + c);
    std::string& buf = DirtyChunk(inode, idx);
    if (buf.size() < to - cstart) buf.resize(to - cstart, '\0');
    std::memcpy(buf.data() + (from - cstart), data.data() + (from - offset), to - from);
    if (buf.size() == c) full.push_back(idx);
  }
  inode->size = std::max(inode->size, end);
  inode->mtime = inode->ctime = Now();
  Touch(inode);
  for (std::uint64_t idx : full) SealChunk(inode, idx);
  if (inode->dirty.size() > 16) SealAll(inode);
  *written = data.size();
  if (pending_bytes_ > options_.max_pending_bytes) return WaitDurable(lock);
  return 0;
}

int Filesystem::Flush(std::uint64_t ino, std::uint64_t /*fh*/) {
  COFFER_LOCK;
  Inode* inode = Find(ino);
  if (!inode) return 0;
  SealAll(inode);
  return commit_error_ ? EIO : 0;
}

int Filesystem::Release(std::uint64_t ino, std::uint64_t fh) {
  COFFER_LOCK;
  handles_.erase(fh);
  Inode* inode = Find(ino);
  if (!inode) return 0;
  SealAll(inode);
  if (inode->opens > 0) --inode->opens;
  MaybeFree(inode);
  return 0;
}

int Filesystem::Fsync(std::uint64_t ino, bool /*datasync*/) {
  COFFER_LOCK;
  if (Inode* inode = Find(ino)) SealAll(inode);
  return WaitDurable(lock);
}

int Filesystem::OpenDir(std::uint64_t ino, std::uint64_t* fh) {
  COFFER_LOCK;
  Inode* inode = Find(ino);
  if (!inode) return ENOENT;
  if (!inode->dir) return ENOTDIR;
  *fh = 0;
  return 0;
}

int Filesystem::ReadDir(std::uint64_t ino, std::uint64_t offset,
                        const std::function<bool(const DirEntryOut&)>& emit) {
  COFFER_LOCK;
  Inode* inode = Find(ino);
  if (!inode) return ENOENT;
  if (!inode->dir) return ENOTDIR;
  if (offset < 1 && !emit(DirEntryOut{".", ino, S_IFDIR, 1})) return 0;
  if (offset < 2 && !emit(DirEntryOut{"..", inode->parent, S_IFDIR, 2})) return 0;
  const Dir& d = *inode->dir;
  for (auto it = d.by_cookie.upper_bound(std::max<std::uint64_t>(offset, 2));
       it != d.by_cookie.end(); ++it) {
    auto slot = d.by_name.find(it->second);
    if (slot == d.by_name.end()) continue;
    const Inode* child = Find(slot->second.ino);
    mode_t type = child ? (child->mode & S_IFMT) : S_IFREG;
    if (!emit(DirEntryOut{it->second, slot->second.ino, type, it->first})) break;
  }
  return 0;
}

int Filesystem::ReleaseDir(std::uint64_t /*ino*/, std::uint64_t /*fh*/) { return 0; }

int Filesystem::FsyncDir(std::uint64_t /*ino*/) {
  COFFER_LOCK;
  return WaitDurable(lock);
}

int Filesystem::StatFs(struct statvfs* out) {
  std::memset(out, 0, sizeof *out);
  if (!options_.statfs_path.empty() && ::statvfs(options_.statfs_path.c_str(), out) != 0)
    return errno;
  COFFER_LOCK;
  if (out->f_bsize == 0) {
    out->f_bsize = out->f_frsize = 4096;
  }
  out->f_files = out->f_ffree + inodes_.size();
  if (out->f_ffree == 0) {
    out->f_ffree = out->f_favail = std::uint64_t{1} << 32;
    out->f_files = out->f_ffree + inodes_.size();
  }
  out->f_namemax = kNameMax;
  out->f_flag = 0;
  return 0;
}

std::size_t Filesystem::InodeCount() {
  COFFER_LOCK;
  return inodes_.size();
}

std::uint64_t Filesystem::CommittedSeq() {
  COFFER_LOCK;
  return committed_seq_;
}

}  // namespace coffer::fs
