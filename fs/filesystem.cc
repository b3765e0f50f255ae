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
    std::uint64_t hlc = 0;  // version of the entry (verify)
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

// How to take back one namespace change whose batch the nodes did not take (degraded=fail).
struct Filesystem::Undo {
  enum Kind {
    kUnname,   // a name `dir/name -> ino` was added: remove it again
    kRename,   // `ino` moved from `from_dir/from_name` to `dir/name`, replacing `replaced`
  };
  Kind kind;
  std::uint64_t seq;
  std::uint64_t dir;
  std::string name;
  std::uint64_t ino;
  std::uint64_t from_dir = 0;
  std::string from_name;
  std::uint64_t replaced = 0;
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
  remote_ = store_->remote();
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
  store_->Start();
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
  lock.unlock();
  store_->Stop();
}

// ---- Loading and initialisation ----

void Filesystem::Load() {
  auto meta_sealed = store_->Get(Table::kMeta, "meta");
  auto stored_fpr = store_->Get(Table::kMeta, "fingerprint");
  if (!meta_sealed && remote_ && RebuildFromNodes(remote_)) {
    meta_sealed = store_->Get(Table::kMeta, "meta");
    stored_fpr = store_->Get(Table::kMeta, "fingerprint");
  }
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
  if (auto h = store_->Get(Table::kMeta, "hlc"); h && h->size() == 8)
    hlc_ = FromBigEndian64(*h);  // the newest version the nodes held at a rebuild

  store_->Scan(Table::kInodes, [&](std::string_view key, std::string_view value) {
    if (key.size() != 8) throw Error(EBADMSG, "malformed inode key in store");
    std::uint64_t ino = FromBigEndian64(key);
    auto plain = crypto::Open(keys_, crypto::ObjectKind::kInodeRecord, InodeId(ino), value);
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
    d.by_name[rec.name()] = Dir::Slot{rec.child(), cookie, rec.version().hlc()};
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
  std::string sealed =
      crypto::Seal(keys_, crypto::ObjectKind::kStoreMeta, crypto::ObjectId{}, keys_.current_epoch(),
                   crypto::ObjectVersion{1, box_id_}, meta.SerializeAsString());
  // The store meta is object 0 on the nodes (version 1: written once, never replaced).
  store_->Commit({Mutation{Table::kMeta, "meta", sealed,
                           RemoteRef{crypto::ObjectId{}, 1, box_id_, {}}},
                  Mutation{Table::kMeta, "fingerprint", fingerprint_, std::nullopt}});
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
  if (unreplicated_seqs_.count(committed_seq_))
    spdlog::warn("the new store is not yet on enough storage nodes; it is held in the outbox");
  spdlog::info("initialised a new store, box id {:016x}", box_id_);
}

// ---- Helpers (mu_ held) ----

Filesystem::Inode* Filesystem::Find(std::uint64_t ino) {
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second.get();
}

std::int64_t Filesystem::Now() const { return WallNs(); }

std::uint64_t Filesystem::Tick() {
  hlc_ = std::max<std::uint64_t>(hlc_ + 1, static_cast<std::uint64_t>(WallNs()));
  return hlc_;
}

void Filesystem::Touch(Inode* inode) {
  inode->hlc = Tick();
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

// Object ids on the nodes. Inode records and directory entries carry a keyed tag in their last
// 8 bytes, so that a box rebuilding from the nodes tells records from chunks (random ids) by id
// alone, without fetching them; to the nodes all ids look random. A directory entry's id is a
// keyed hash of (parent, name): names never leave the box.
namespace {
constexpr std::string_view kInodeTag = "coffer inode id v1";
constexpr std::string_view kDirentTag = "coffer dirent id v1";
}  // namespace

crypto::ObjectId Filesystem::InodeId(std::uint64_t ino) const {
  crypto::ObjectId id{};
  std::string be = BigEndian64(ino);
  std::string tag = crypto::primitives::HmacSha256(name_key_->view(), kInodeTag, be);
  std::memcpy(id.data(), be.data(), 8);
  std::memcpy(id.data() + 8, tag.data(), 8);
  return id;
}

crypto::ObjectId Filesystem::DirentId(std::uint64_t parent, std::string_view name) const {
  crypto::ObjectId id{};
  std::string mac = crypto::primitives::HmacSha256(name_key_->view(), BigEndian64(parent), name);
  std::string tag =
      crypto::primitives::HmacSha256(name_key_->view(), kDirentTag, mac.substr(0, 8));
  std::memcpy(id.data(), mac.data(), 8);
  std::memcpy(id.data() + 8, tag.data(), 8);
  return id;
}

Filesystem::IdClass Filesystem::Classify(const crypto::ObjectId& id) const {
  if (IsZero(id)) return IdClass::kMeta;
  std::string_view head(reinterpret_cast<const char*>(id.data()), 8);
  std::string_view tail(reinterpret_cast<const char*>(id.data()) + 8, 8);
  std::string t = crypto::primitives::HmacSha256(name_key_->view(), kInodeTag, head);
  if (crypto::primitives::ConstantTimeEqual(std::string_view(t).substr(0, 8), tail))
    return IdClass::kInode;
  t = crypto::primitives::HmacSha256(name_key_->view(), kDirentTag, head);
  if (crypto::primitives::ConstantTimeEqual(std::string_view(t).substr(0, 8), tail))
    return IdClass::kDirent;
  return IdClass::kChunk;
}

std::string Filesystem::DirentKey(std::uint64_t parent, std::string_view name) const {
  return BigEndian64(parent) + std::string(IdBytes(DirentId(parent, name)));
}

void Filesystem::PutEntry(Inode* dir, std::string_view name, std::uint64_t child) {
  Dir& d = *dir->dir;
  auto it = d.by_name.find(name);
  if (it != d.by_name.end()) {
    it->second.ino = child;
  } else {
    std::uint64_t cookie = d.next_cookie++;
    it = d.by_name.emplace(std::string(name), Dir::Slot{child, cookie}).first;
    d.by_cookie.emplace(cookie, std::string(name));
  }
  Tick();
  it->second.hlc = hlc_;
  proto::DirEntry rec;
  rec.set_parent(dir->ino);
  rec.set_name(std::string(name));
  rec.set_child(child);
  rec.mutable_version()->set_hlc(hlc_);
  rec.mutable_version()->set_box_id(box_id_);
  dirty_entries_[DirentKey(dir->ino, name)] = DirtyEntry{rec.SerializeAsString(), hlc_};
}

void Filesystem::RemoveEntry(Inode* dir, std::string_view name) {
  Dir& d = *dir->dir;
  auto it = d.by_name.find(name);
  if (it == d.by_name.end()) return;
  d.by_cookie.erase(it->second.cookie);
  d.by_name.erase(it);
  dirty_entries_[DirentKey(dir->ino, name)] = DirtyEntry{std::nullopt, Tick()};
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
  if (inode->nlink != 0 || inode->opens != 0 || inode->lookups != 0 || inode->ino == kRootIno ||
      pinned_.count(inode->ino))
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
    chunk_hlc_.erase(id);
    return;
  }
  deleted_chunks_[id] = Tick();
}

std::string Filesystem::LoadChunk(const crypto::ObjectId& id, std::unique_lock<std::mutex>* lock) {
  std::optional<std::string> sealed;
  if (auto it = pending_chunks_.find(id); it != pending_chunks_.end()) {
    sealed = it->second;
  } else if (committing_chunks_) {
    if (auto c = committing_chunks_->find(id); c != committing_chunks_->end()) sealed = c->second;
  }
  // The store may have to fetch the chunk from the nodes, and opening it is CPU work: neither
  // needs mu_ (chunks are immutable), so other operations go on meanwhile.
  if (lock) lock->unlock();
  struct Relock {
    std::unique_lock<std::mutex>* l;
    ~Relock() {
      if (l) l->lock();
    }
  } relock{lock};
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
    const std::uint64_t hlc = Tick();
    std::string sealed = crypto::Seal(keys_, crypto::ObjectKind::kChunk, id, keys_.current_epoch(),
                                      crypto::ObjectVersion{hlc, box_id_}, it->second);
    pending_bytes_ += sealed.size();
    pending_chunks_.emplace(id, std::move(sealed));
    chunk_hlc_[id] = hlc;
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

std::string Filesystem::SealTombstone(const crypto::ObjectId& id, crypto::ObjectKind kind,
                                      std::uint64_t hlc) const {
  if (remote_ == nullptr) return {};  // a local store keeps no tombstones
  proto::Tombstone t;
  t.set_kind(static_cast<std::uint32_t>(kind));
  return crypto::Seal(keys_, crypto::ObjectKind::kTombstone, id, keys_.current_epoch(),
                      crypto::ObjectVersion{hlc, box_id_}, t.SerializeAsString());
}

Batch Filesystem::TakeBatch() {
  Batch batch;
  const std::uint32_t epoch = keys_.current_epoch();
  for (std::uint64_t ino : dirty_inodes_) {
    std::string key = BigEndian64(ino);
    Inode* inode = Find(ino);
    if (!inode) {
      const crypto::ObjectId id = InodeId(ino);
      const std::uint64_t hlc = Tick();
      batch.push_back(
          Mutation{Table::kInodes, std::move(key), std::nullopt,
                   RemoteRef{id, hlc, box_id_,
                             SealTombstone(id, crypto::ObjectKind::kInodeRecord, hlc)}});
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
    const crypto::ObjectId id = InodeId(ino);
    batch.push_back(Mutation{Table::kInodes, std::move(key),
                             crypto::Seal(keys_, crypto::ObjectKind::kInodeRecord, id, epoch,
                                          crypto::ObjectVersion{inode->hlc, inode->version_box},
                                          rec.SerializeAsString()),
                             RemoteRef{id, inode->hlc, inode->version_box}});
  }
  for (auto& [key, change] : dirty_entries_) {
    const crypto::ObjectId id = IdFromBytes(std::string_view(key).substr(8));
    if (change.value) {
      batch.push_back(Mutation{Table::kDirents, key,
                               crypto::Seal(keys_, crypto::ObjectKind::kDirEntry, id, epoch,
                                            crypto::ObjectVersion{change.hlc, box_id_},
                                            *change.value),
                               RemoteRef{id, change.hlc, box_id_, {}}});
    } else {
      batch.push_back(Mutation{
          Table::kDirents, key, std::nullopt,
          RemoteRef{id, change.hlc, box_id_,
                    SealTombstone(id, crypto::ObjectKind::kDirEntry, change.hlc)}});
    }
  }
  for (const auto& [id, hlc] : deleted_chunks_)
    batch.push_back(Mutation{Table::kChunks, std::string(IdBytes(id)), std::nullopt,
                             RemoteRef{id, hlc, box_id_,
                                       SealTombstone(id, crypto::ObjectKind::kChunk, hlc)}});
  if (!dirty_inodes_.empty())
    batch.push_back(Mutation{Table::kMeta, "next_ino", BigEndian64(next_ino_), std::nullopt});
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
  std::map<crypto::ObjectId, std::uint64_t> chunk_hlc;
  chunk_hlc.swap(chunk_hlc_);
  pending_bytes_ = 0;
  committing_chunks_ = chunks;
  lock.unlock();
  int err = 0;
  CommitResult result;
  // With storage nodes an empty batch still goes to the store: its round retries the outbox and
  // its result says whether everything so far is on W nodes (a waiter's fsync needs to know).
  if (!batch.empty() || !chunks->empty() || remote_ != nullptr) {
    try {
      batch.reserve(batch.size() + chunks->size());
      // Chunks first in the batch: one transaction either way, but it keeps the order readable.
      Batch all;
      all.reserve(batch.size() + chunks->size());
      for (const auto& [id, sealed] : *chunks)
        all.push_back(Mutation{Table::kChunks, std::string(IdBytes(id)), sealed,
                               RemoteRef{id, chunk_hlc[id], box_id_, {}}});
      for (auto& m : batch) all.push_back(std::move(m));
      result = store_->Commit(all);
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
    if (result.replicated) {
      ReleaseUndo(seq);
    } else if (options_.degraded_queue) {
      ReleaseUndo(seq);
      const auto now = std::chrono::steady_clock::now();
      if (now - last_degraded_log_ > std::chrono::seconds(10)) {
        last_degraded_log_ = now;
        spdlog::warn("DEGRADED (degraded=queue): changes accepted on this box only, held in the "
                     "outbox until W storage nodes take them: {}",
                     result.error);
      }
    } else {
      unreplicated_seqs_.insert(seq);
      while (unreplicated_seqs_.size() > 4096) unreplicated_seqs_.erase(unreplicated_seqs_.begin());
      // Roll back this batch's namespace changes, newest first; the rollback is itself a change
      // (newer versions) that goes to the nodes with the next batch.
      std::size_t undone = 0;
      for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) {
        if (it->seq != seq) continue;
        ApplyUndo(*it);
        ++undone;
      }
      ReleaseUndo(seq);
      const auto now = std::chrono::steady_clock::now();
      if (now - last_degraded_log_ > std::chrono::seconds(10)) {
        last_degraded_log_ = now;
        spdlog::warn("DEGRADED: a change could not be made durable on W storage nodes; its "
                     "operations fail with {} ({} namespace changes rolled back) so that mail is "
                     "deferred: {}",
                     std::strerror(kNotDurableErrno), undone, result.error);
      }
    }
  }
  durable_cv_.notify_all();
}

// ---- Rollback (degraded=fail) ----

bool Filesystem::Undoable() const {
  return remote_ != nullptr && !options_.degraded_queue && options_.sync_namespace;
}

void Filesystem::AddUndo(Undo undo) {
  if (!Undoable()) return;
  undo.seq = open_seq_;
  if (undo.replaced) pinned_.insert(undo.replaced);
  undo_.push_back(std::move(undo));
}

void Filesystem::ReleaseUndo(std::uint64_t through_seq) {
  std::vector<std::uint64_t> unpinned;
  auto keep = std::remove_if(undo_.begin(), undo_.end(), [&](const Undo& u) {
    if (u.seq > through_seq) return false;
    if (u.replaced) unpinned.push_back(u.replaced);
    return true;
  });
  undo_.erase(keep, undo_.end());
  for (std::uint64_t ino : unpinned) {
    if (auto it = pinned_.find(ino); it != pinned_.end()) pinned_.erase(it);
    if (Inode* inode = Find(ino)) MaybeFree(inode);
  }
}

void Filesystem::ApplyUndo(const Undo& u) {
  const std::int64_t now = Now();
  Inode* dir = Find(u.dir);
  Inode* child = Find(u.ino);
  if (!dir || !dir->dir) return;
  auto named = [&](Inode* d, std::string_view name) -> std::uint64_t {
    auto it = d->dir->by_name.find(name);
    return it == d->dir->by_name.end() ? 0 : it->second.ino;
  };
  switch (u.kind) {
    case Undo::kUnname: {
      if (named(dir, u.name) != u.ino) return;  // changed since: leave it
      if (child && child->dir && !child->dir->by_name.empty()) return;
      RemoveEntry(dir, u.name);
      TouchDir(dir, now);
      if (child) {
        if (child->dir && dir->nlink > 2) --dir->nlink;
        DropLink(child);
        MaybeFree(child);
      }
      return;
    }
    case Undo::kRename: {
      Inode* from = Find(u.from_dir);
      if (!child || !from || !from->dir || named(dir, u.name) != u.ino ||
          named(from, u.from_name) != 0)
        return;
      PutEntry(from, u.from_name, u.ino);
      Inode* replaced = u.replaced ? Find(u.replaced) : nullptr;
      if (replaced && !replaced->dir) {
        PutEntry(dir, u.name, u.replaced);
        ++replaced->nlink;
        replaced->ctime = now;
        Touch(replaced);
      } else {
        RemoveEntry(dir, u.name);
      }
      if (child->dir && from != dir) {
        if (dir->nlink > 2) --dir->nlink;
        ++from->nlink;
        child->parent = from->ino;
      }
      child->ctime = now;
      Touch(child);
      TouchDir(dir, now);
      if (from != dir) TouchDir(from, now);
      return;
    }
  }
}

int Filesystem::FailedEntry(int err, std::uint64_t ino) {
  if (err == 0) return 0;
  if (Inode* inode = Find(ino)) {
    if (inode->lookups > 0) --inode->lookups;
    MaybeFree(inode);
  }
  return err;
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

int Filesystem::WaitDurable(std::unique_lock<std::mutex>& lock, bool local_only) {
  if (commit_error_) return EIO;
  const std::uint64_t target = open_seq_;
  if (!committer_.joinable()) {
    while (committed_seq_ < target && !commit_error_) CommitOnce(lock);
  } else {
    commit_requested_ = true;
    commit_cv_.notify_one();
    durable_cv_.wait(lock, [&] { return committed_seq_ >= target || commit_error_ != 0; });
  }
  if (commit_error_) return EIO;
  if (!local_only && unreplicated_seqs_.count(target)) return kNotDurableErrno;
  return 0;
}

int Filesystem::MaybeWaitNamespace(std::unique_lock<std::mutex>& lock, bool nodes) {
  if (!options_.sync_namespace) return 0;
  // With storage nodes a create is made durable by the fsync, close or link that follows (the
  // nodes, not the local disk, are what makes anything durable there): no commit to wait for.
  if (!nodes && remote_ != nullptr) return 0;
  return WaitDurable(lock, /*local_only=*/!nodes);
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
  const std::uint64_t ino = inode->ino;
  return FailedEntry(MaybeWaitNamespace(lock, /*nodes=*/false), ino);
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
  const std::uint64_t ino = inode->ino;
  AddUndo(Undo{Undo::kUnname, 0, dir->ino, std::string(name), ino, 0, {}, 0});
  return FailedEntry(MaybeWaitNamespace(lock), ino);
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
  // A failed unlink is not rolled back: the name stays removed here and its tombstone waits in
  // the outbox. Giving the name back would make Postfix, which removes its tmp file after a
  // failed delivery and may reuse that name within the same second, bounce the next message
  // with "File exists"; a removal that a lost box never sent only brings a deleted file back.
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
  const std::uint64_t ino = inode->ino;
  return FailedEntry(MaybeWaitNamespace(lock, /*nodes=*/false), ino);
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
  AddUndo(Undo{Undo::kRename, 0, dst_dir->ino, std::string(new_name), src->ino, src_dir->ino,
               std::string(name), dst && !dst->dir ? dst->ino : 0});
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
  AddUndo(Undo{Undo::kUnname, 0, dir->ino, std::string(new_name), ino, 0, {}, 0});
  return FailedEntry(MaybeWaitNamespace(lock), ino);
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
  handles_[*fh] = Handle{inode->ino, flags};
  Stat(*inode, out);
  const std::uint64_t ino = inode->ino;
  int rc = MaybeWaitNamespace(lock, /*nodes=*/false);
  if (rc != 0) {
    handles_.erase(*fh);
    if (Inode* created = Find(ino); created && created->opens > 0) --created->opens;
    return FailedEntry(rc, ino);
  }
  return 0;
}

int Filesystem::Open(std::uint64_t ino, int flags, std::uint64_t* fh) {
  COFFER_LOCK;
  Inode* inode = Find(ino);
  if (!inode) return ENOENT;
  if (inode->dir) return EISDIR;
  if (S_ISLNK(inode->mode)) return ELOOP;
  ++inode->opens;
  *fh = next_fh_++;
  handles_[*fh] = Handle{ino, flags};
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
      const crypto::ObjectId id = inode->chunks[idx];  // a copy: the vector may change
      loaded = LoadChunk(id, &lock);                   // releases mu_ meanwhile
      data = &loaded;
      inode = Find(ino);  // still there: this open file holds it
      if (!inode) return EIO;
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
  auto handle = handles_.find(fh);
  if (handle != handles_.end() && (handle->second.flags & O_APPEND)) offset = inode->size;
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
  if (handle != handles_.end()) handle->second.written = true;
  if (pending_bytes_ > options_.max_pending_bytes) return WaitDurable(lock, /*local_only=*/true);
  return 0;
}

int Filesystem::Flush(std::uint64_t ino, std::uint64_t fh) {
  COFFER_LOCK;
  Inode* inode = Find(ino);
  if (!inode) return 0;
  SealAll(inode);
  if (commit_error_) return EIO;
  // With storage nodes, close() of a written file is a durability point (DESIGN.md).
  auto handle = handles_.find(fh);
  if (remote_ == nullptr || handle == handles_.end() || !handle->second.written) return 0;
  int rc = WaitDurable(lock);
  if (rc == 0) {
    if (auto h = handles_.find(fh); h != handles_.end()) h->second.written = false;
  }
  return rc;
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
  int rc = WaitDurable(lock);
  if (rc == 0) {
    for (auto& [fh, h] : handles_)
      if (h.ino == ino) h.written = false;
  }
  return rc;
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

// ---- Storage nodes: rebuild, verify, status ----

bool Filesystem::RebuildFromNodes(Remote* remote) {
  spdlog::info("the state directory holds no store: looking for one on the storage nodes");
  const auto started = std::chrono::steady_clock::now();
  // Records with a live claim somewhere: what the rebuild resolves. An id every node lists as a
  // tombstone has nothing to restore; one claim of a live version is enough to ask (a claimed
  // tombstone over it is believed only once authenticated).
  std::vector<replicator::Listed> records;
  std::optional<replicator::Listed> meta_listed;
  std::uint64_t max_hlc = 0, max_ino = 0, listed = 0, chunks = 0, tombstones = 0;
  replicator::ListSummary summary = remote->ListAll([&](replicator::Listed&& e) {
    ++listed;
    // Claims beyond the clock skew were refused while listing; the others cannot push this
    // box's clock further than that.
    if (!e.newest().refused) max_hlc = std::max(max_hlc, e.newest().version.hlc);
    IdClass c = Classify(e.id);  // a keyed tag: a node cannot make up a record id
    if (c == IdClass::kInode) max_ino = std::max(max_ino, FromBigEndian64(IdBytes(e.id)));
    const bool any_live =
        std::any_of(e.claims.begin(), e.claims.end(),
                    [](const replicator::Claim& k) { return !k.tombstone && !k.refused; });
    if (!any_live) {
      ++tombstones;
      return;
    }
    switch (c) {
      case IdClass::kMeta: meta_listed = std::move(e); break;
      case IdClass::kInode: case IdClass::kDirent: records.push_back(std::move(e)); break;
      case IdClass::kChunk: ++chunks; break;
    }
  });
  const std::size_t nodes = summary.nodes(), answered = summary.answered_count();
  const std::size_t write_quorum = remote->write_quorum();
  spdlog::info("rebuild: {} of {} nodes listed: {} objects ({} records, {} chunks, {} deleted)",
               answered, nodes, listed, records.size() + (meta_listed ? 1 : 0), chunks,
               tombstones);
  // An acknowledged object is on W nodes: listing all but W-1 of them sees every one.
  const std::size_t needed = nodes - std::min(nodes, write_quorum) + 1;
  if (!meta_listed) {
    if (answered == nodes && listed == 0) {
      spdlog::info("the storage nodes hold no store: initialising a new one");
      return false;
    }
    if (answered < nodes)
      throw Error(EAGAIN, "the state directory is empty and only " + std::to_string(answered) +
                              " of " + std::to_string(nodes) +
                              " storage nodes answered: refusing to start a new store that could "
                              "hide an existing one; try again when the nodes are up");
    throw Error(EBADMSG, "the storage nodes hold objects but no store meta record (or one made "
                         "with another key): refusing to start a new store over them");
  }
  if (answered < needed)
    throw Error(EAGAIN, "rebuild needs " + std::to_string(needed) + " of " +
                            std::to_string(nodes) + " storage nodes to see every "
                            "acknowledged change, only " + std::to_string(answered) +
                            " answered");
  // The store meta first: if no node has one this key opens, the store is another key's.
  Remote::Resolved meta_resolved = remote->ResolveMany({*meta_listed}, {}).front();
  if (meta_resolved.state != Remote::Resolved::kLive) {
    if (meta_resolved.state == Remote::Resolved::kUnbacked && answered == nodes)
      throw Error(EACCES, "the store on the storage nodes was made with another key: no node "
                          "holds a store meta record this key (" + fingerprint_ +
                          ") authenticates");
    throw Error(EAGAIN, "the store meta record could not be fetched: " + meta_resolved.error);
  }
  auto progress = [&](std::size_t done, std::size_t total) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
                            .count();
    spdlog::info("rebuild: fetched {} of {} records ({:.1f} s)", done, total, secs);
  };
  // Every record at the newest version a node backs with an authenticated copy: a replica that
  // missed later writes does not count, and neither does a node that lists what it cannot back.
  auto resolve_all = [&] {
    std::vector<Remote::Resolved> out = remote->ResolveMany(records, progress);
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (out[i].state == Remote::Resolved::kUnavailable)
        throw Error(EAGAIN, "no storage node served " + out[i].error);
    }
    return out;
  };
  std::vector<Remote::Resolved> fetched;
  try {
    fetched = resolve_all();
  } catch (const Error& e) {
    if (e.err() != EAGAIN) throw;
    spdlog::warn("rebuild: {}; running a scrub to bring every replica to the newest version, "
                 "then fetching again",
                 e.what());
    spdlog::info("rebuild: scrub: {}", remote->Converge());
    fetched = resolve_all();
  }
  Batch batch;
  std::uint64_t inodes = 0, entries = 0, dropped = 0, deleted = 0, unbacked = 0;
  auto flush = [&] {
    if (batch.empty()) return;
    store_->Commit(batch);
    batch.clear();
  };
  for (std::size_t i = 0; i < records.size(); ++i) {
    const Remote::Resolved& r = fetched[i];
    if (r.state == Remote::Resolved::kTombstone) {
      ++deleted;
      continue;
    }
    if (r.state != Remote::Resolved::kLive) {
      ++unbacked;
      continue;
    }
    const crypto::ObjectId& id = records[i].id;
    const std::string& sealed = r.sealed;
    switch (Classify(id)) {
      case IdClass::kInode: {
        auto plain = crypto::Open(keys_, crypto::ObjectKind::kInodeRecord, id, sealed);
        proto::InodeRecord rec;
        if (!plain || !rec.ParseFromString(*plain) || InodeId(rec.ino()) != id) {
          ++dropped;
          continue;
        }
        batch.push_back(Mutation{Table::kInodes, BigEndian64(rec.ino()), sealed, std::nullopt});
        ++inodes;
        break;
      }
      case IdClass::kDirent: {
        auto plain = crypto::Open(keys_, crypto::ObjectKind::kDirEntry, id, sealed);
        proto::DirEntry rec;
        if (!plain || !rec.ParseFromString(*plain) || DirentId(rec.parent(), rec.name()) != id) {
          ++dropped;
          continue;
        }
        batch.push_back(Mutation{Table::kDirents, DirentKey(rec.parent(), rec.name()), sealed,
                                 std::nullopt});
        ++entries;
        break;
      }
      default:
        break;
    }
    if (batch.size() >= 4096) flush();
  }
  auto meta_plain = crypto::Open(keys_, crypto::ObjectKind::kStoreMeta, crypto::ObjectId{},
                                 meta_resolved.sealed);
  proto::StoreMeta meta;
  if (!meta_plain) {
    throw Error(EACCES, "the store on the storage nodes was made with another key (this key " +
                            fingerprint_ + ")");
  }
  if (!meta.ParseFromString(*meta_plain)) throw Error(EBADMSG, "store meta record of an unknown format");
  if (dropped) spdlog::warn("rebuild: {} records failed authentication and were left out", dropped);
  if (unbacked)
    spdlog::warn("rebuild: {} records were listed but no node served an authenticated copy of "
                 "any version listed: left out (see the lying or corrupt nodes above)",
                 unbacked);
  // This box gets its own id (the tie-breaker of versions); the store meta on the nodes stays.
  std::uint64_t new_box = 0;
  crypto::primitives::RandomBytes(reinterpret_cast<unsigned char*>(&new_box), sizeof new_box);
  const std::uint64_t old_box = meta.box_id();
  meta.set_box_id(new_box);
  batch.push_back(Mutation{Table::kMeta, "hlc", BigEndian64(max_hlc), std::nullopt});
  batch.push_back(Mutation{Table::kMeta, "next_ino", BigEndian64(max_ino + 1), std::nullopt});
  batch.push_back(Mutation{Table::kMeta, "fingerprint", fingerprint_, std::nullopt});
  flush();
  // The meta record last: a rebuild cut short leaves no meta, and the next mount starts over.
  store_->Commit({Mutation{Table::kMeta, "meta",
                           crypto::Seal(keys_, crypto::ObjectKind::kStoreMeta, crypto::ObjectId{},
                                        keys_.current_epoch(), crypto::ObjectVersion{1, new_box},
                                        meta.SerializeAsString()),
                           std::nullopt}});
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  spdlog::info("rebuild: index rebuilt from the storage nodes in {:.1f} s: {} inodes, {} "
               "directory entries ({} records deleted since listed ones); {} chunks stay on the "
               "nodes until read (box id {:016x} replaces {:016x})",
               secs, inodes, entries, deleted, chunks, new_box, old_box);
  return true;
}

VerifyReport Filesystem::Verify() {
  VerifyReport report;
  if (!remote_) throw Error(ENOTSUP, "verify needs storage nodes (this mount is local only)");
  struct Expect {
    std::uint64_t hlc;
    bool chunk;
    std::string what;
  };
  std::map<crypto::ObjectId, Expect> expected;
  {
    std::unique_lock lock(mu_);
    // Commit what is pending so that the comparison is with a settled tree.
    for (auto& [ino, inode] : inodes_) SealAll(inode.get());
    WaitDurable(lock, /*local_only=*/true);
    expected[crypto::ObjectId{}] = Expect{1, false, "store meta"};
    for (const auto& [ino, inode] : inodes_) {
      expected[InodeId(ino)] = Expect{inode->hlc, false, "inode " + std::to_string(ino)};
      for (std::size_t i = 0; i < inode->chunks.size(); ++i) {
        if (!IsZero(inode->chunks[i]))
          expected[inode->chunks[i]] =
              Expect{0, true, "chunk " + std::to_string(i) + " of inode " + std::to_string(ino)};
      }
      if (inode->dir) {
        for (const auto& [name, slot] : inode->dir->by_name)
          expected[DirentId(ino, name)] =
              Expect{slot.hlc, false, "entry '" + name + "' of inode " + std::to_string(ino)};
      }
    }
  }
  report.objects = expected.size();
  const std::size_t write_quorum = remote_->write_quorum();
  std::set<crypto::ObjectId> seen;
  auto problem = [&](std::string text) {
    if (report.problems.size() < 20) report.problems.push_back(std::move(text));
  };
  // Claims that disagree with the tree are checked against authenticated copies afterwards:
  // a node's claim alone proves nothing (it may lie, DESIGN.md "Versions").
  std::vector<replicator::Listed> to_check;
  std::vector<const Expect*> to_check_expect;  // nullptr: a record the tree does not have
  replicator::ListSummary summary = remote_->ListAll([&](replicator::Listed&& e) {
    auto it = expected.find(e.id);
    if (it == expected.end()) {
      const bool any_live =
          std::any_of(e.claims.begin(), e.claims.end(),
                      [](const replicator::Claim& c) { return !c.tombstone && !c.refused; });
      if (any_live && Classify(e.id) != IdClass::kChunk && !remote_->InOutbox(e.id)) {
        to_check.push_back(std::move(e));
        to_check_expect.push_back(nullptr);
      }
      return;
    }
    seen.insert(e.id);
    const Expect& x = it->second;
    if (remote_->InOutbox(e.id)) {
      ++report.pending;
      return;
    }
    // Holders of this tree's version (chunks: any version, with the same bytes as here).
    std::optional<std::string> local_digest;
    if (x.chunk) {
      if (auto local = remote_->GetLocal(Table::kChunks, IdBytes(e.id)))
        local_digest = remote_->Digest(*local);
    }
    std::size_t holders = 0;
    bool newer = false, differs = false;
    for (const replicator::Claim& c : e.claims) {
      if (x.chunk) {
        if (c.tombstone) {
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
  // Resolve what disagrees: only an authenticated newer version or tombstone makes the tree
  // stale, and only an authenticated live record the tree lacks is extra.
  std::vector<Remote::Resolved> resolved = remote_->ResolveMany(to_check, {});
  for (std::size_t i = 0; i < to_check.size(); ++i) {
    const Expect* x = to_check_expect[i];
    const Remote::Resolved& r = resolved[i];
    const std::string what = x ? x->what : "record " + crypto::ToHex(to_check[i].id);
    if (r.state == Remote::Resolved::kUnavailable) {
      ++report.unchecked;
      problem(what + ": could not be checked: " + r.error);
      continue;
    }
    if (!x) {
      if (r.state == Remote::Resolved::kLive) {
        ++report.extra;
        problem("the nodes hold a live " + what + " that this tree does not have");
      }
      continue;
    }
    if (r.state == Remote::Resolved::kLive && (x->chunk || r.version.hlc == x->hlc)) {
      // The newer claims were not backed (counted against their nodes); the tree's version is
      // the newest authenticated one.
      std::size_t holders = 0;
      for (const auto& c : to_check[i].claims)
        if (!c.tombstone && (x->chunk || c.version.hlc == x->hlc)) ++holders;
      if (holders < write_quorum) {
        ++report.under_quorum;
        problem(what + ": on " + std::to_string(holders) + " nodes, fewer than W=" +
                std::to_string(write_quorum));
      } else {
        ++report.ok;
      }
      continue;
    }
    ++report.stale;
    problem(what + ": the nodes hold " +
            (r.state == Remote::Resolved::kTombstone ? std::string("an authenticated tombstone")
                                                      : "an authenticated newer version"));
  }
  report.nodes = summary.nodes();
  report.answered = summary.answered_count();
  if (report.answered < report.nodes)
    problem(std::to_string(report.nodes - report.answered) + " storage nodes did not answer");
  for (const auto& [id, x] : expected) {
    if (seen.count(id)) continue;
    if (remote_->InOutbox(id)) {
      ++report.pending;
      continue;
    }
    ++report.missing;
    problem(x.what + ": on no storage node");
  }
  for (const auto& [node, trust] : remote_->Trust()) {
    if (trust.lies == 0) continue;
    report.liars.push_back(node);
    problem("node " + node + " LIED " + std::to_string(trust.lies) +
            " times (forged or rolled-back versions): nothing it says is believed without "
            "authentication");
  }
  return report;
}

std::string Filesystem::StatusLine() {
  if (!remote_) return "replicated=no";
  return remote_->StatusLine();
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
