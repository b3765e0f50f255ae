// The cofferfs core: a POSIX filesystem over sealed records, with no FUSE in sight (STYLE.md §5).
//
// Methods mirror the FUSE low-level operations, take plain arguments and return 0 or an errno
// (the errno a local filesystem would give); unit tests drive them without a mount, and
// fs/fuse_glue.cc only translates. Infrastructure failures (a store that cannot commit, a chunk
// that fails authentication) throw coffer::Error, which the glue turns into its errno.
//
// Design. The whole namespace and every inode's attributes live in memory, decrypted (a mailstore
// index is small: 100,000 entries are a few tens of MiB); LMDB is its durable form. Each change
// marks records dirty; a committer thread seals the dirty records and writes them, with the
// sealed chunks written since, as one LMDB transaction (group commit). fsync/fdatasync/fsyncdir
// (and, with `sync`, every namespace change) wait for the commit that holds their change, so a
// kill -9 loses nothing that was acknowledged as durable; everything else is durable within
// commit_interval. Content is cut into chunks (64 KiB): writes collect in per-inode plaintext
// chunk buffers that are sealed as soon as a chunk is full (or at flush/fsync/close), so a
// 100 MiB file streams through a bounded amount of memory (pending sealed bytes are bounded too:
// writers wait for a commit beyond max_pending_bytes).
//
// Inodes are freed only when no name, no open file and no kernel lookup refers to them, so a
// reader that resolved a name just before a rename-over still opens the old file; inodes left
// with no name by a crash are purged at the next mount.
//
// Thread safety: every public method may be called from any thread. One mutex (mu_) guards all
// in-memory state; crypto of small records runs under it, the LMDB commit does not.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/crypto.h"
#include "fs/store.h"

namespace coffer::fs {

inline constexpr std::uint64_t kRootIno = 1;
inline constexpr std::size_t kNameMax = 255;
inline constexpr std::size_t kSymlinkMax = 4095;

struct Options {
  std::uint32_t chunk_size = 64 << 10;  // for new stores; an existing store keeps its own
  std::uint32_t commit_interval_ms = 200;
  // true: namespace changes (create, link, rename, unlink, mkdir, rmdir, symlink, setattr) return
  // only once durable. false: within commit_interval_ms, or at the next fsync.
  bool sync_namespace = true;
  std::size_t max_pending_bytes = std::size_t{64} << 20;
  std::string statfs_path;  // statvfs() of this path is reported (STATE_DIR)
  // With storage nodes (a store with remote()): what a change that W nodes did not acknowledge
  // within the operation timeout means. false (degraded=fail): the operation fails with
  // kNotDurableErrno and a namespace change is rolled back. true (degraded=queue): it succeeds,
  // held in the outbox until the nodes take it.
  bool degraded_queue = false;
};

// The errno of "could not be made durable now" (storage nodes unreachable): every common
// delivery agent treats it as temporary and defers (Postfix local(8)/virtual(8) map EAGAIN to
// 4.2.0, Dovecot LDA to a temporary failure, maildrop to EX_TEMPFAIL), where EIO bounces.
inline constexpr int kNotDurableErrno = EAGAIN;

// What `Verify` found (cofferctl verify).
struct VerifyReport {
  std::uint64_t objects = 0;       // objects the local tree references
  std::uint64_t ok = 0;            // on the nodes with the same version (and digest)
  std::uint64_t pending = 0;       // changed here, still in the outbox
  std::uint64_t missing = 0;       // on no node
  std::uint64_t stale = 0;         // nodes hold an authenticated newer version or tombstone
  std::uint64_t corrupt = 0;       // digest differs from the local copy
  std::uint64_t under_quorum = 0;  // on fewer than W nodes
  std::uint64_t extra = 0;         // live records on the nodes that the tree does not have
  std::uint64_t unchecked = 0;     // disagreeing claims that could not be resolved (no answer)
  std::size_t nodes = 0, answered = 0;
  std::vector<std::string> liars;     // nodes caught lying (forged or rolled-back versions)
  std::vector<std::string> problems;  // the first few, readable
  bool clean() const {
    return missing == 0 && stale == 0 && corrupt == 0 && under_quorum == 0 && extra == 0 &&
           unchecked == 0 && liars.empty() && answered == nodes;
  }
};

// Who is asking (from the FUSE request context).
struct Context {
  uid_t uid = 0;
  gid_t gid = 0;
};

// Which attributes SetAttr changes.
struct SetAttrRequest {
  std::optional<mode_t> mode;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::optional<std::uint64_t> size;
  std::optional<timespec> atime;  // tv_nsec == UTIME_NOW: now
  std::optional<timespec> mtime;
};

// One directory entry as ReadDir reports it; `next_offset` resumes after it.
struct DirEntryOut {
  std::string name;
  std::uint64_t ino;
  mode_t type;  // S_IFDIR, S_IFREG, ...
  std::uint64_t next_offset;
};

class Filesystem {
 public:
  // Opens the filesystem in `store`: initialises an empty store (store meta, root directory) or
  // checks that the store was made with this key. Throws coffer::Error: EACCES "made with another
  // key" (naming both fingerprints when known), EBADMSG for damaged records.
  // `fingerprint` is the public fingerprint of `keys`' first epoch.
  Filesystem(std::unique_ptr<Store> store, crypto::Keyring keys, std::string fingerprint,
             Options options);
  ~Filesystem();  // stops the committer after a final commit
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  // Starts the committer thread (not in the constructor: cofferfs may fork to the background
  // between the two). Without it, Commit() still works synchronously.
  void Start();
  // Commits everything pending now and waits for it (final flush at unmount).
  void Shutdown();

  int Lookup(std::uint64_t parent, std::string_view name, struct stat* out);
  void Forget(std::uint64_t ino, std::uint64_t nlookup);
  int GetAttr(std::uint64_t ino, struct stat* out);
  int SetAttr(std::uint64_t ino, const SetAttrRequest& req, struct stat* out);
  int ReadLink(std::uint64_t ino, std::string* out);
  int MkNod(std::uint64_t parent, std::string_view name, mode_t mode, dev_t rdev,
            const Context& ctx, struct stat* out);
  int MkDir(std::uint64_t parent, std::string_view name, mode_t mode, const Context& ctx,
            struct stat* out);
  int Unlink(std::uint64_t parent, std::string_view name);
  int RmDir(std::uint64_t parent, std::string_view name);
  int Symlink(std::string_view target, std::uint64_t parent, std::string_view name,
              const Context& ctx, struct stat* out);
  // flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE.
  int Rename(std::uint64_t parent, std::string_view name, std::uint64_t new_parent,
             std::string_view new_name, unsigned flags);
  int Link(std::uint64_t ino, std::uint64_t new_parent, std::string_view new_name,
           struct stat* out);
  // Creates and opens a regular file (O_EXCL semantics: EEXIST if the name exists).
  int Create(std::uint64_t parent, std::string_view name, mode_t mode, int flags,
             const Context& ctx, struct stat* out, std::uint64_t* fh);
  int Open(std::uint64_t ino, int flags, std::uint64_t* fh);
  // Reads up to `size` bytes at `offset` into `out` (short at end of file).
  int Read(std::uint64_t ino, std::uint64_t fh, std::uint64_t offset, std::size_t size,
           std::string* out);
  int Write(std::uint64_t ino, std::uint64_t fh, std::uint64_t offset, std::string_view data,
            std::size_t* written);
  int Flush(std::uint64_t ino, std::uint64_t fh);
  int Release(std::uint64_t ino, std::uint64_t fh);
  int Fsync(std::uint64_t ino, bool datasync);
  int OpenDir(std::uint64_t ino, std::uint64_t* fh);
  // Calls `emit` for entries after `offset` (0: from the start, then a previous next_offset)
  // until it returns false. Entries that exist for the whole of a scan are reported exactly once
  // however the directory changes between calls.
  int ReadDir(std::uint64_t ino, std::uint64_t offset,
              const std::function<bool(const DirEntryOut&)>& emit);
  int ReleaseDir(std::uint64_t ino, std::uint64_t fh);
  int FsyncDir(std::uint64_t ino);
  int StatFs(struct statvfs* out);

  // Compares the tree (every inode record, directory entry and chunk it references, by version
  // and content digest) with what the storage nodes hold. Only with a remote store.
  VerifyReport Verify();
  // "key=value ..." about the store for the control socket ("replicated=no" without nodes).
  std::string StatusLine();

  // Test hooks and statistics.
  std::size_t InodeCount();
  std::uint64_t CommittedSeq();

 private:
  struct Dir;
  struct Inode;

  struct Undo;
  void Load();
  void Initialise();
  // Empty STATE_DIR with storage nodes: fetches the store meta, every inode record and every
  // directory entry from the nodes into the local store (chunks stay on the nodes until read).
  // Returns false when the nodes hold no store at all (a new store is to be initialised).
  bool RebuildFromNodes(Remote* remote);
  crypto::ObjectId InodeId(std::uint64_t ino) const;
  crypto::ObjectId DirentId(std::uint64_t parent, std::string_view name) const;
  enum class IdClass { kMeta, kInode, kDirent, kChunk };
  IdClass Classify(const crypto::ObjectId& id) const;
  std::uint64_t Tick();  // the next HLC value (mu_ held)
  // Rollback of namespace changes whose batch the nodes did not take (degraded=fail).
  bool Undoable() const;
  void AddUndo(Undo undo);
  void ApplyUndo(const Undo& undo);
  void ReleaseUndo(std::uint64_t through_seq);
  // After a failed wait, the kernel does not learn of the entry: take back its lookup.
  int FailedEntry(int err, std::uint64_t ino);
  Inode* Find(std::uint64_t ino);
  void Stat(const Inode& inode, struct stat* out) const;
  std::int64_t Now() const;
  void Touch(Inode* inode);  // bump the version, mark dirty
  void TouchDir(Inode* dir, std::int64_t now);
  std::string DirentKey(std::uint64_t parent, std::string_view name) const;
  void PutEntry(Inode* dir, std::string_view name, std::uint64_t child);
  void RemoveEntry(Inode* dir, std::string_view name);
  Inode* NewInode(mode_t mode, const Context& ctx, Inode* parent);
  int CheckName(std::string_view name) const;
  // The directory `parent` where `name` is to be created, or the errno a local filesystem gives
  // (ENOENT, ENOTDIR, ENAMETOOLONG/EINVAL for the name, EEXIST). Caller holds mu_.
  int DirForNewEntry(std::uint64_t parent, std::string_view name, Inode** dir);
  void DropLink(Inode* inode);
  void MaybeFree(Inode* inode);
  // `lock`: released while the store is asked (it may fetch from the nodes) and the chunk opened.
  std::string LoadChunk(const crypto::ObjectId& id, std::unique_lock<std::mutex>* lock = nullptr);
  std::string& DirtyChunk(Inode* inode, std::uint64_t index);
  void SealChunk(Inode* inode, std::uint64_t index);
  void SealAll(Inode* inode);
  void DeleteChunk(const crypto::ObjectId& id);
  void Truncate(Inode* inode, std::uint64_t size);
  // Waits (releasing `lock`) until everything changed so far is durable. Returns 0, EIO (the
  // local store failed) or kNotDurableErrno (the nodes did not take it, degraded=fail).
  // `local_only`: wait only for the local commit (flow control of writes).
  int WaitDurable(std::unique_lock<std::mutex>& lock, bool local_only = false);
  // With `sync`: waits for the change to be durable. `nodes`: the durability contract covers
  // it (rename, link, unlink, mkdir, rmdir, setattr); creating a file, node or symlink waits
  // for the local commit without nodes and for nothing with them (its content and name reach
  // the nodes with the next fsync, close or link: a delivery agent never sees a create fail
  // because nodes are down).
  int MaybeWaitNamespace(std::unique_lock<std::mutex>& lock, bool nodes = true);
  void CommitLoop();
  // Takes the pending changes as a sealed batch (under mu_).
  Batch TakeBatch();
  // The sealed tombstone of object `id` (of `kind`) deleted at `hlc` by this box; empty without
  // storage nodes.
  std::string SealTombstone(const crypto::ObjectId& id, crypto::ObjectKind kind,
                            std::uint64_t hlc) const;
  void CommitOnce(std::unique_lock<std::mutex>& lock);

  std::unique_ptr<Store> store_;
  const crypto::Keyring keys_;
  const std::string fingerprint_;
  const Options options_;
  std::uint32_t chunk_size_ = 64 << 10;
  std::uint64_t box_id_ = 0;
  const crypto::SecretBytes* name_key_ = nullptr;  // in keys_: the name key of epoch 1

  std::mutex mu_;  // guards everything below
  std::condition_variable commit_cv_;   // wakes the committer
  std::condition_variable durable_cv_;  // wakes waiters on committed_seq_
  std::unordered_map<std::uint64_t, std::unique_ptr<Inode>> inodes_;
  std::uint64_t next_ino_ = 2;
  std::uint64_t hlc_ = 0;
  struct Handle {
    std::uint64_t ino;
    int flags;
    bool written = false;  // since the last durable flush
  };
  std::unordered_map<std::uint64_t, Handle> handles_;
  std::uint64_t next_fh_ = 1;
  // Pending changes (the open batch).
  std::set<std::uint64_t> dirty_inodes_;
  struct DirtyEntry {
    std::optional<std::string> value;  // serialized DirEntry; nullopt: removed
    std::uint64_t hlc = 0;
  };
  std::map<std::string, DirtyEntry> dirty_entries_;  // dirent key -> change
  std::map<crypto::ObjectId, std::string> pending_chunks_;  // sealed, not yet committed
  std::map<crypto::ObjectId, std::uint64_t> chunk_hlc_;     // of pending_chunks_
  std::map<crypto::ObjectId, std::uint64_t> deleted_chunks_;  // -> hlc of the tombstone
  std::size_t pending_bytes_ = 0;
  // The batch being committed (its chunks stay readable until the commit is visible in LMDB).
  std::shared_ptr<const std::map<crypto::ObjectId, std::string>> committing_chunks_;
  std::uint64_t open_seq_ = 1;       // sequence number of the open batch
  std::uint64_t committed_seq_ = 0;  // every batch <= this is durable
  bool commit_requested_ = false;
  bool committing_ = false;
  bool stopping_ = false;
  int commit_error_ = 0;  // errno of a failed commit (sticky: the store refuses further writes)
  std::thread committer_;
  Remote* remote_ = nullptr;  // store_->remote()
  std::set<std::uint64_t> unreplicated_seqs_;  // batches the nodes did not take (degraded=fail)
  std::vector<Undo> undo_;                     // of batches not yet on the nodes
  std::multiset<std::uint64_t> pinned_;        // inodes an undo may give a name again
  std::chrono::steady_clock::time_point last_degraded_log_{};
};

}  // namespace coffer::fs
