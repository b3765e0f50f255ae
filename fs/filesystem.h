// The cofferfs core: a POSIX filesystem over sealed records, with no FUSE in sight (STYLE.md §5).
//
// Methods mirror the FUSE low-level operations, take plain arguments and return 0 or an errno
// (the errno a local filesystem would give); unit tests drive them without a mount, and
// fs/fuse_glue.cc only translates. Infrastructure failures (a store that cannot commit, a chunk
// no copy of which authenticates) throw coffer::Error, which the glue turns into its errno.
//
// This class is the facade of the layers below it and owns their lock:
//   ids.h             object ids and the hybrid logical clock
//   inode_table.h     inodes, names (links), directory indexes; no I/O
//   file_data.h       write buffers of files, chunk layout, truncation
//   chunk_store.h     chunk contents: in flight, cached in STATE_DIR, fetched from the nodes
//   commit_pipeline.h batches, sealing, local commits and node rounds, verdicts, the outbox,
//                     the one degraded policy
//   recovery.h        opening STATE_DIR, rebuild and catch-up from the nodes' feeds, verify
//   maintenance.h     background work: eviction, scrub, following the feeds
// With storage nodes the store lives on the nodes and STATE_DIR is a replica of it (DESIGN.md
// "Local state"): at every mount the box catches up from the nodes' change feeds (from zero on
// an empty STATE_DIR: that is the rebuild), and applying a record that arrived from the nodes
// is an operation of its own (ApplyRemote), beside those of FUSE.
//
// Durability (DESIGN.md "Durability contract"): fsync, fdatasync and fsyncdir wait for the
// verdict of the batch holding everything before them; with `sync` so do link, rename, mkdir
// and symlink (rolled back when the nodes do not take them, degraded=fail); with nodes, close(2)
// of a written file too. Create, mknod, unlink, rmdir and setattr never wait and never fail for
// node reasons: they reach STATE_DIR and the nodes within commit_interval_ms, or with the next
// operation that waits.
//
// Thread safety: every public method may be called from any thread. mu_ guards the inode
// table, the open files and the open batch; it is never held while waiting for a commit, a
// round, a chunk fetch or crypto (lock order: mu_, then the pipeline's and the chunk store's
// own leaf locks).
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/crypto.h"
#include "fs/box_registry.h"
#include "fs/chunk_store.h"
#include "fs/commit_pipeline.h"
#include "fs/ids.h"
#include "fs/inode_table.h"
#include "fs/recovery.h"
#include "fs/store.h"
#include "replicator/backend.h"

namespace coffer::fs {

inline constexpr std::size_t kNameMax = 255;
inline constexpr std::size_t kSymlinkMax = 4095;

class Maintenance;

struct Options {
  std::uint32_t chunk_size = 64 << 10;  // for new stores; an existing store keeps its own
  std::uint32_t commit_interval_ms = 200;
  // true: link, rename, mkdir and symlink return only once durable. false: within
  // commit_interval_ms, or at the next fsync.
  bool sync_namespace = true;
  // Plaintext written but not yet committed locally (writers wait beyond it): memory bound.
  std::size_t max_pending_bytes = std::size_t{16} << 20;
  std::string statfs_path;  // statvfs() of this path is reported (STATE_DIR)
  // With storage nodes: what a change that W nodes did not acknowledge within the operation
  // timeout means. false (degraded=fail): the operation fails with kNotDurableErrno and a
  // namespace change is rolled back. true (degraded=queue): it succeeds, held in the outbox.
  bool degraded_queue = false;
  bool read_only = false;  // no writes at all, locally or to the nodes (no repair either)
  std::uint64_t cache_limit_bytes = 0;              // 0: keep every chunk locally
  std::chrono::seconds scrub_interval{3600};         // 0: no periodic scrub
  std::chrono::milliseconds follow_interval{500};    // reading the nodes' feeds
  std::chrono::milliseconds maintenance_interval{500};
  // Several boxes: this box's record on the nodes is written at mount, every heartbeat and at
  // unmount (not by a read-only mount). A box that has not caught up for longer than the
  // tombstone grace no longer holds back the collection of deletes: it is marked LAPSED and must
  // rebuild. The margin allows for the boxes' clocks differing.
  std::chrono::seconds heartbeat_interval{30};
  std::chrono::seconds tombstone_grace{7 * 24 * 3600};
  std::chrono::milliseconds clock_margin{300000};
  // Beyond the grace before another box is marked LAPSED: its own record lags its state by up
  // to a heartbeat, so it is never marked while it still counts itself as caught up.
  std::chrono::milliseconds lapse_slack{3600 * 1000};
  std::string mountpoint;  // for the box record (what operators see in cofferctl boxes)
};

// Who is asking (from the FUSE request context).
struct Context {
  uid_t uid = 0;
  gid_t gid = 0;
  // The caller's supplementary groups, looked up only when needed (empty function: none).
  std::function<std::vector<gid_t>()> groups;
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
  // ReadDirPlus only: the entry's attributes (st_ino 0 for "." and "..": no lookup of those).
  struct stat attr {};
};

// A change of another box's that the kernel's caches must forget: a name in a directory
// (ino == 0) or an inode's attributes, and with `data` its contents too.
struct Invalidation {
  std::uint64_t ino = 0;
  bool data = false;
  std::uint64_t parent = 0;
  std::string name;
};
// Called with what records from the nodes changed, after they were applied, without the
// filesystem lock held (the kernel may call back into the filesystem meanwhile).
using Invalidator = std::function<void(const std::vector<Invalidation>&)>;

class Filesystem {
 public:
  // Opens the filesystem over STATE_DIR (`local`) and, when `remote` is given, the storage
  // nodes: initialises a new store, or checks that the store was made with this key, rebuilds
  // STATE_DIR from the nodes when it is empty, and catches up from the nodes' feeds. Throws
  // coffer::Error: EACCES "made with another key" (naming both fingerprints when known),
  // EBADMSG for damaged records, EAGAIN when too few nodes answer to rebuild safely.
  // `fingerprint` is the public fingerprint of `keys`' first epoch.
  Filesystem(std::unique_ptr<LmdbStore> local, std::unique_ptr<replicator::Backend> remote,
             crypto::Keyring keys, std::string fingerprint, Options options);
  ~Filesystem();  // Shutdown()
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  // Starts the background work (eviction, scrub, following the feeds). Not in the constructor:
  // tests drive it by hand.
  void Start();
  // Commits everything pending and waits for it; stops every thread (final flush at unmount).
  void Shutdown();

  int Lookup(std::uint64_t parent, std::string_view name, struct stat* out);
  void Forget(std::uint64_t ino, std::uint64_t nlookup);
  int GetAttr(std::uint64_t ino, struct stat* out);
  // A truncation by someone other than root clears setuid/setgid as Write does.
  int SetAttr(std::uint64_t ino, const SetAttrRequest& req, struct stat* out,
              const Context& ctx = {});
  int ReadLink(std::uint64_t ino, std::string* out);
  int MkNod(std::uint64_t parent, std::string_view name, mode_t mode, dev_t rdev,
            const Context& ctx, struct stat* out);
  int MkDir(std::uint64_t parent, std::string_view name, mode_t mode, const Context& ctx,
            struct stat* out);
  int Unlink(std::uint64_t parent, std::string_view name);
  int RmDir(std::uint64_t parent, std::string_view name);
  int Symlink(std::string_view target, std::uint64_t parent, std::string_view name,
              const Context& ctx, struct stat* out);
  // flags: 0, RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT (`ctx` owns the whiteout).
  int Rename(std::uint64_t parent, std::string_view name, std::uint64_t new_parent,
             std::string_view new_name, unsigned flags, const Context& ctx = {});
  int Link(std::uint64_t ino, std::uint64_t new_parent, std::string_view new_name,
           struct stat* out);
  // Creates and opens a regular file (O_EXCL semantics: EEXIST if the name exists).
  int Create(std::uint64_t parent, std::string_view name, mode_t mode, int flags,
             const Context& ctx, struct stat* out, std::uint64_t* fh);
  // Opens a file; O_TRUNC truncates it (the kernel passes it here: atomic_o_trunc).
  int Open(std::uint64_t ino, int flags, std::uint64_t* fh);
  // Reads up to `size` bytes at `offset` into `out` (short at end of file).
  int Read(std::uint64_t ino, std::uint64_t fh, std::uint64_t offset, std::size_t size,
           std::string* out);
  // A write by someone other than root clears setuid, and setgid when the file is group-
  // executable or the writer is not in its group (Linux's rule; FUSE leaves it to us).
  int Write(std::uint64_t ino, std::uint64_t fh, std::uint64_t offset, std::string_view data,
            std::size_t* written, const Context& ctx = {});
  // fallocate(2): mode 0 (extend), FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE|KEEP_SIZE; others
  // EOPNOTSUPP.
  int Fallocate(std::uint64_t ino, std::uint64_t fh, int mode, std::uint64_t offset,
                std::uint64_t length);
  int Flush(std::uint64_t ino, std::uint64_t fh);
  int Release(std::uint64_t ino, std::uint64_t fh);
  int Fsync(std::uint64_t ino, bool datasync);
  int OpenDir(std::uint64_t ino, std::uint64_t* fh);
  // Calls `emit` for entries after `offset` (0: from the start, then a previous next_offset)
  // until it returns false. Entries that exist for the whole of a scan are reported exactly once
  // however the directory changes between calls.
  int ReadDir(std::uint64_t ino, std::uint64_t offset,
              const std::function<bool(const DirEntryOut&)>& emit);
  // ReadDir with each entry's attributes (FUSE readdirplus): every entry other than "." and
  // ".." that `emit` took counts as a lookup, as Lookup does (the kernel forgets it later).
  int ReadDirPlus(std::uint64_t ino, std::uint64_t offset,
                  const std::function<bool(const DirEntryOut&)>& emit);
  int ReleaseDir(std::uint64_t ino, std::uint64_t fh);
  int FsyncDir(std::uint64_t ino);
  int StatFs(struct statvfs* out);

  // Applies records that arrived from the nodes (newest authenticated versions), last writer
  // wins per record: newer ones replace this box's, older ones change nothing. Their sealed
  // bytes are written into STATE_DIR with the next local commit. Returns how many changed
  // something.
  std::size_t ApplyRemote(const std::vector<RemoteRecord>& records);
  // Who tells the kernel what ApplyRemote changed (the FUSE glue, while mounted); nullptr: no
  // one. Returns once no call of the previous invalidator is running.
  void SetInvalidator(Invalidator fn);
  // Reads the nodes' feeds from the saved cursors (or every feed from its start) and applies
  // what is newer (see Recovery).
  CatchUpResult CatchUp(bool from_start = false);

  // ---- Several boxes (filesystem_boxes.cc) ----
  // Writes this box's record (state ACTIVE, or STOPPED at unmount) with its heartbeat and how far
  // it caught up. Not on a read-only mount or without nodes.
  void Heartbeat(bool stopping = false);
  // Every box this one knows of (its own included), from the nodes' feeds.
  std::vector<proto::BoxRecord> Boxes();
  // Retires another box: it no longer holds back the collection of deletes, and it refuses to
  // mount again with its STATE_DIR. EINVAL for this box, ENOENT for an unknown id, EBUSY for a
  // box whose heartbeat is recent (unless `force`), EALREADY when already retired; otherwise the
  // result of making the record durable. `message` says what happened.
  int RetireBox(std::uint64_t box_id, bool force, std::string* message);
  // For the collection of deletes: true when every box that counts has applied everything that
  // was on the nodes at `t_ms` (this box: a complete catch-up that started after it; others:
  // the same, as their records say, with the clock margin).
  bool EveryBoxCaughtUpAfter(std::int64_t t_ms);
  // Content chunks a change made unreferenced (a delete, a rewrite) are deleted on the nodes only
  // once every box has applied that change: a box that has the file open fetches the chunks it
  // lacks when it applies the delete, so the file stays readable there as on a local
  // filesystem. Writes the tombstones of those that every box has caught up past; returns how
  // many. (Local-only mounts delete at once.)
  std::size_t ReleaseDeferredChunks();
  // Marks LAPSED the boxes that have not caught up within the tombstone grace (and an hour), and
  // waits until the marks are durable. Returns false when they could not be made durable (then
  // nothing may be collected past those boxes).
  bool LapseStaleBoxes();
  // When this box last completed a catch-up (ms since the epoch; 0: not since the mount).
  std::int64_t caught_up_ms();
  // Why this box no longer writes (retired or lapsed, as another box marked it), or "".
  std::string stop_reason();
  // Status fields of the boxes (leading space): " box=ID box_state=STATE boxes=N" and per box
  // " box.ID=STATE,HEARTBEAT_UNIX,CAUGHT_UP_MS,HOST,MOUNTPOINT" (host and mountpoint
  // percent-encoded).
  std::string BoxFields();

  // Compares the tree with what the storage nodes hold (cofferctl verify). Only with nodes.
  VerifyReport Verify();
  // A scrub now (cofferctl scrub through the control socket). Only with nodes.
  replicator::ScrubReport Scrub();
  // "key=value ..." for the control socket ("replicated=no" without nodes).
  std::string StatusLine();

  // Test hooks and statistics.
  std::size_t InodeCount();
  std::uint64_t box_id() const { return box_id_; }
  CommitPipeline& pipeline() { return *pipeline_; }
  ChunkStore& chunks() { return *chunks_; }
  replicator::Backend* remote() { return remote_.get(); }
  LmdbStore& local() { return *local_; }

 private:
  struct Handle {
    std::uint64_t ino;
    int flags;
    bool written = false;  // since the last durable flush
  };
  struct Undo;
  struct NewChunk {
    std::shared_ptr<const std::string> plaintext;
    Version version;
  };

  void Open_();  // the constructor's work: open, load, migrate, catch up, initialise
  // ReadDir and ReadDirPlus (takes mu_).
  int ReadDir_(std::uint64_t ino, std::uint64_t offset,
               const std::function<bool(const DirEntryOut&)>& emit, bool plus);
  void Initialise();
  void Migrate();  // store format 1 -> 2 (names into inode records)
  // Takes the open batch (the pipeline's take hook).
  ChangeSet TakeBatch(std::uint64_t seq);
  void ApplyUndo(std::uint64_t seq);  // the pipeline's failed hook
  // The newest version of an inode record this box holds or has written (mu_ held).
  std::optional<Version> LocalVersion(const crypto::ObjectId& id);

  // Helpers; mu_ held.
  Version Tick();                 // a new version of this box
  void Touch(Inode* inode);       // the inode's record changed: new version, in the open batch
  void TouchDir(Inode* dir, Timestamp now);
  Inode* DirFor(std::uint64_t ino, int* err);
  int CheckName(std::string_view name) const;
  // The directory `parent` where `name` is to be created, or the errno a local filesystem
  // gives (ENOENT, ENOTDIR, ENAMETOOLONG/EINVAL for the name, EEXIST).
  int DirForNewEntry(std::uint64_t parent, std::string_view name, Inode** dir);
  // `preferred`: the inode number to take when it is free (directories: RecordIds::DirIno).
  Inode* NewInode(mode_t mode, const Context& ctx, Inode* parent, std::uint64_t preferred = 0);
  void MaybeFree(Inode* inode);
  void DeleteChunk(const crypto::ObjectId& id);
  void FreezeChunk(Inode* inode, std::uint64_t index);  // a write buffer becomes a new chunk
  void FreezeAll(Inode* inode);
  void Truncate(Inode* inode, std::uint64_t size);
  void Stat(const Inode& inode, struct stat* out) const;
  // Clears setuid/setgid after a write or truncation by `ctx` (Linux's rule).
  void KillPriv(Inode* inode, const Context& ctx);
  void AddUndo(Undo undo);
  // Box records: loads this STATE_DIR's; applies one from the nodes (under mu_); checks at
  // mount whether this box was retired or lapsed (throws).
  void LoadBoxes();
  void LoadDeferredChunks();
  bool ApplyBoxRecord(const RemoteRecord& rec);
  void CheckOwnRecord();
  // Queues `rec` (version set here) for the next batch, with its local row.
  void WriteBoxRecord(proto::BoxRecord rec);
  // Every box, this one included, has applied every change made before this time (ms).
  std::int64_t CaughtUpFloor() const;
  // ApplyRemote under mu_; appends what the kernel must forget to `inval`.
  // `keep`: chunks of files open here that the records deleted (fetched after the lock).
  std::size_t ApplyRemoteLocked(const std::vector<RemoteRecord>& records,
                                std::vector<Invalidation>* inval,
                                std::vector<crypto::ObjectId>* keep);
  // Durability. `lock` is released while waiting and held again on return.
  int WaitDurable(std::unique_lock<std::mutex>& lock);
  // With `sync`: waits for a namespace change (link, rename, mkdir, symlink).
  int MaybeWaitNamespace(std::unique_lock<std::mutex>& lock);
  // After a failed wait, the kernel does not learn of the entry: take back its lookup.
  int FailedEntry(int err, std::uint64_t ino);
  // Loads the old contents of chunks that a write only partly covers, without mu_ held.
  // Returns with `lock` held and every such chunk in the inode's write buffers (or the inode
  // gone: false).
  bool PrepareWrite(std::unique_lock<std::mutex>& lock, std::uint64_t ino, std::uint64_t offset,
                    std::uint64_t end);

  // Set at construction.
  const crypto::Keyring keys_;
  const std::string fingerprint_;
  const Options options_;
  std::unique_ptr<LmdbStore> local_;
  std::unique_ptr<replicator::Backend> remote_;
  const RecordIds ids_;
  Hlc hlc_;
  std::uint64_t box_id_ = 0;
  std::uint32_t chunk_size_ = 64 << 10;
  std::unique_ptr<Recovery> recovery_;
  std::unique_ptr<ChunkStore> chunks_;
  std::unique_ptr<CommitPipeline> pipeline_;
  std::unique_ptr<Maintenance> maintenance_;
  std::mutex inval_mu_;  // guards invalidator_ and is held while it runs (never with mu_ held)
  Invalidator invalidator_;

  std::mutex mu_;  // guards everything below (lock order: first)
  InodeTable table_;
  std::unordered_map<std::uint64_t, Handle> handles_;
  std::uint64_t next_fh_ = 1;
  // The open batch.
  std::uint64_t open_seq_ = 1;
  std::set<std::uint64_t> dirty_inodes_;
  std::map<std::uint64_t, Version> deleted_inodes_;
  std::map<crypto::ObjectId, NewChunk> new_chunks_;
  std::map<crypto::ObjectId, Version> deleted_chunks_;
  Batch local_rows_;        // rows for STATE_DIR only (records applied from the nodes, cursors)
  std::optional<RecordWrite> meta_write_;    // the store meta (initialisation, migration)
  std::vector<RecordWrite> legacy_deletes_;  // store format 1 directory entries (migration)
  std::vector<RecordWrite> box_writes_;      // box records (heartbeats, retirements)
  BoxRegistry boxes_;
  std::int64_t started_unix_ = 0;
  std::int64_t caught_up_ms_ = 0;  // start of the last complete catch-up
  std::string stop_reason_;        // retired or lapsed: no more writes
  // Chunks no longer referenced, not yet tombstoned on the nodes: id -> when (ms since the
  // epoch); kept in STATE_DIR (kGcKeyPrefix rows).
  std::map<crypto::ObjectId, std::int64_t> deferred_chunks_;
  bool registered_ = false;        // this mount wrote an ACTIVE record
  std::size_t pending_bytes_ = 0;  // plaintext in write buffers and new chunks not yet taken
  std::vector<Undo> undo_;  // namespace changes of batches not yet decided (degraded=fail)
  bool shut_down_ = false;
};

}  // namespace coffer::fs
