// The inode table of cofferfs: every inode's attributes, chunk list and names (links), and the
// directory indexes derived from those names, in memory. No I/O and no locking: the filesystem
// facade owns the table under its mutex, the commit pipeline snapshots records from it, and
// records that arrive from the storage nodes are applied to it (last writer wins by version).
//
// Names. Since store format 2 an inode record carries all of its names, (parent, name, version)
// links, as DESIGN.md's data model has it: a directory is the set of inodes that link into it.
// The directory index (name -> inode, readdir cookies) is derived from the links. Locally a name
// is only ever given when it is free; when two inodes claim one name (records from two boxes
// that created it at once), the older link keeps the name and the other is a conflict, kept and
// reported, never silently dropped.
//
// Shape. Callers address inodes by number and get a pointer that is valid until the next call
// that erases inodes, so that the table can later page records from LMDB instead of holding all
// of them; today it holds them all (a few hundred bytes per message).
//
// Thread safety: none (the facade's mutex).
#pragma once

#include <time.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/crypto.h"
#include "fs/records.pb.h"

namespace coffer::fs {

using Version = crypto::ObjectVersion;

inline constexpr std::uint64_t kRootIno = 1;

// A file time: seconds and nanoseconds since the epoch, over the whole range a local
// filesystem keeps (64-bit nanoseconds alone end in 2262).
struct Timestamp {
  std::int64_t sec = 0;
  std::uint32_t nsec = 0;  // < 1e9
  friend auto operator<=>(const Timestamp&, const Timestamp&) = default;
  static Timestamp Now();
  static Timestamp FromTimespec(const timespec& ts);
  timespec ToTimespec() const;
  // One nanosecond later.
  Timestamp Next() const;
  // Nanoseconds from `earlier` to this one, saturated at the int64 range.
  std::int64_t NsSince(const Timestamp& earlier) const;
};

struct InodeLink {
  InodeLink() = default;
  InodeLink(std::uint64_t p, std::string n, Version v)
      : parent(p), name(std::move(n)), version(v) {}
  std::uint64_t parent = 0;
  std::string name;
  Version version;
  // Given by a rename of (from_parent, from_name).
  bool renamed = false;
  std::uint64_t from_parent = 0;
  std::string from_name;
  bool operator==(const InodeLink& o) const { return parent == o.parent && name == o.name; }
};

struct Dir {
  struct Slot {
    std::uint64_t ino = 0;
    std::uint64_t cookie = 0;
    Version version;  // of the link that holds the name
  };
  std::map<std::string, Slot, std::less<>> by_name;
  // Readdir offsets: each name keeps the cookie it got when it appeared (a rename over an
  // existing name keeps that name's cookie), so resuming at an offset never skips or repeats.
  std::map<std::uint64_t, std::string> by_cookie;
  std::uint64_t next_cookie = 3;  // 1 and 2 are "." and ".."
  std::uint32_t subdirs = 0;
};

struct Inode {
  // The record: what is sealed and replicated.
  std::uint64_t ino = 0;
  std::uint32_t mode = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint32_t rdev = 0;
  std::uint64_t size = 0;
  Timestamp atime;
  Timestamp mtime;
  Timestamp ctime;
  std::vector<crypto::ObjectId> chunks;  // chunk i covers [i * chunk_size, ...); zero id: hole
  std::string symlink;
  std::vector<InodeLink> links;  // directories: one (the root: none)
  std::vector<InodeLink> unlinked;  // files: names removed, at the version of the removal
  Version version;
  // Local state, never replicated.
  std::uint32_t nlink = 0;    // files: links; directories: 2 + subdirectories
  std::uint64_t lookups = 0;  // kernel references (FUSE lookup count)
  std::uint32_t opens = 0;
  std::uint32_t pins = 0;     // a rollback may give this inode a name again
  std::map<std::uint64_t, std::string> dirty;  // write buffers: chunk index -> plaintext
  std::unique_ptr<Dir> dir;   // directories

  bool is_dir() const { return dir != nullptr; }
  // Directories: the parent (the root is its own parent).
  std::uint64_t parent() const { return links.empty() ? ino : links.front().parent; }
};

// What applying a record from the nodes changed (for the kernel's caches).
struct Applied {
  bool changed = false;  // the record was newer than this box's and was taken
  bool data = false;     // size or content changed
  // The names merged with this box's knowledge differ from the record's (a removal the writer
  // had not seen): this box must write the merged record.
  bool rewrite = false;
  std::vector<std::pair<std::uint64_t, std::string>> names_gone;   // (directory, name)
  std::vector<std::pair<std::uint64_t, std::string>> names_added;
};

// Two inodes claiming one name: `loser` does not get it.
struct NameConflict {
  std::uint64_t dir = 0;
  std::string name;
  std::uint64_t winner = 0;
  std::uint64_t loser = 0;
};

class InodeTable {
 public:
  InodeTable() = default;
  InodeTable(const InodeTable&) = delete;
  InodeTable& operator=(const InodeTable&) = delete;

  Inode* Find(std::uint64_t ino);
  const Inode* Find(std::uint64_t ino) const;
  std::size_t size() const { return inodes_.size(); }

  // A new inode with a random number (never 0, 1 or one in use), linked nowhere.
  // A new inode with a random number, or `preferred` when that is free (not 0 and not the root).
  Inode* Create(std::uint32_t mode, std::uint32_t uid, std::uint32_t gid, Timestamp now,
                std::uint64_t preferred = 0);
  // Adds a loaded inode as it is (directories get an empty index). Its links are indexed by
  // Reindex(). Replaces an inode of the same number.
  Inode* Insert(std::unique_ptr<Inode> inode);
  // Removes an inode that no name, open file or kernel reference holds.
  void Erase(std::uint64_t ino);

  std::optional<std::uint64_t> Lookup(const Inode& dir, std::string_view name) const;
  // Gives `child` the name `name` in `dir` at version `v`. The name must be free. `from`: the
  // name a rename moves away (it is recorded with the new one).
  void AddLink(Inode* dir, std::string_view name, Inode* child, const Version& v,
               const InodeLink* from = nullptr);
  // Takes `name` in `dir` away from its inode (which keeps its other names); returns that inode,
  // or nullptr when the name is not there. With a version, a file remembers the removal (see
  // Apply); without one (taking back a change that never became durable) it does not.
  Inode* RemoveLink(Inode* dir, std::string_view name, const Version& v = Version{});
  // Gives the existing name `name` in `dir` to `child` instead of its holder (rename over an
  // existing name): the name keeps its readdir cookie. Returns the former holder.
  Inode* ReplaceLink(Inode* dir, std::string_view name, Inode* child, const Version& v,
                     const InodeLink* from = nullptr);

  // Rebuilds every directory index and link count from the links (after a bulk load). Names
  // claimed twice are resolved as the class comment says and returned.
  std::vector<NameConflict> Reindex();

  // Applies an inode record from the nodes if its version is newer than this box's (or the
  // inode is new here). Local write buffers of the inode are dropped when the record wins.
  Applied Apply(const proto::InodeRecord& record);
  // Applies a delete of `ino` at version `v` if newer than this box's record.
  Applied ApplyDelete(std::uint64_t ino, const Version& v);
  // Conflicts found since the last call (from Apply, ApplyDelete and Reindex).
  std::vector<NameConflict> TakeConflicts();

  // Conversions between an inode and its record.
  static proto::InodeRecord ToRecord(const Inode& inode, std::uint32_t chunk_size);
  static std::unique_ptr<Inode> FromRecord(const proto::InodeRecord& record);

  template <class Fn>
  void ForEach(Fn&& fn) {
    for (auto& [ino, inode] : inodes_) fn(*inode);
  }

 private:
  // Puts (dir, name) -> ino into the index, resolving a conflict with an existing holder.
  void Index(Inode* dir, const InodeLink& link, std::uint64_t ino);
  // Removes (dir, name) from the index if `ino` holds it.
  void Unindex(Inode* dir, std::string_view name, std::uint64_t ino);
  void Recount(Inode* inode);

  std::unordered_map<std::uint64_t, std::unique_ptr<Inode>> inodes_;
  std::vector<NameConflict> conflicts_;
  // Inodes that link to a name another inode holds: (directory, name) -> them.
  std::map<std::pair<std::uint64_t, std::string>, std::vector<std::uint64_t>> contenders_;
};

}  // namespace coffer::fs
