// A POP3 maildrop over a Maildir: scanning new/ and cur/, UIDLs, reading, "seen" marking, and the
// UPDATE-state deletions.
//
// This is the only code that touches mail files, so the "no message is lost or deleted by
// mistake" promise is checked here: nothing is unlinked except by Delete(), which the session
// calls only when a client says QUIT in TRANSACTION state. A message renamed meanwhile by someone
// else (an IMAP server setting flags) is found again by its unique name.
//
// One session per maildrop at a time: Open() takes a process-wide lock on the Maildir's real
// path and the Maildrop releases it when destroyed.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/fd.h"

namespace coffer::pop3d {

enum class UidlMode {
  kMaildir,  // the Maildir unique name (base file name up to ':'), as Courier does
  kDovecot,  // from dovecot-uidlist: "%08Xu%08Xv" (Dovecot's default pop3_uidl_format)
};

struct MaildropOptions {
  UidlMode uidl = UidlMode::kMaildir;
  bool mark_seen = true;         // RETR moves new/ -> cur/ and sets the S flag
  bool create = true;            // create a missing Maildir (new/ cur/ tmp/)
  std::size_t max_messages = 1000000;
};

struct MessageInfo {
  std::string unique;    // Maildir unique name
  std::string uidl;      // what UIDL answers (printable ASCII, <= 70 chars)
  std::string subdir;    // "new" or "cur"
  std::string filename;  // current file name in subdir
  std::uint64_t size = 0;  // virtual (CRLF) size
};

// Process-wide cache of virtual sizes keyed by (device, inode, size, mtime): the size of a file
// that has not changed is never computed twice. Thread-safe; bounded (cleared when full).
class SizeCache {
 public:
  explicit SizeCache(std::size_t max_entries = 1 << 20) : max_entries_(max_entries) {}
  std::optional<std::uint64_t> Get(const struct stat& st);
  void Put(const struct stat& st, std::uint64_t size);

 private:
  struct Key {
    dev_t dev;
    ino_t ino;
    off_t size;
    std::int64_t mtime_ns;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept;
  };
  std::size_t max_entries_;
  std::mutex mutex_;  // a leaf lock
  std::unordered_map<Key, std::uint64_t, KeyHash> map_;  // guarded by mutex_
};

// Process-wide set of locked maildrops (by real path). Thread-safe.
class MaildropLocks {
 public:
  bool TryLock(const std::string& key);
  void Unlock(const std::string& key);
  static MaildropLocks& Global();

 private:
  std::mutex mutex_;  // a leaf lock
  std::set<std::string> held_;  // guarded by mutex_
};

enum class OpenStatus { kOk, kInUse, kError };

class Maildrop {
 public:
  struct OpenResult {
    OpenStatus status = OpenStatus::kError;
    std::unique_ptr<Maildrop> maildrop;
    std::string error;  // for logs (never sent to clients verbatim)
    int err = 0;        // errno of a kError (EACCES, ENOENT, ...)
  };

  // Locks and scans the Maildir at `path`. Never throws: I/O errors are kError.
  // `sizes` may be null (no caching); it must outlive the call.
  static OpenResult Open(const std::string& path, const MaildropOptions& options,
                         SizeCache* sizes, MaildropLocks& locks = MaildropLocks::Global());

  ~Maildrop();
  Maildrop(const Maildrop&) = delete;
  Maildrop& operator=(const Maildrop&) = delete;

  std::size_t Count() const noexcept { return messages_.size(); }
  const MessageInfo& At(std::size_t index) const { return messages_.at(index); }
  const std::string& path() const noexcept { return path_; }

  // Opens message `index` for reading. Returns an invalid UniqueFd if the message is gone
  // (deleted by someone else); throws coffer::Error on other errors.
  UniqueFd OpenMessage(std::size_t index);

  // Marks message `index` as seen (new/X -> cur/X:2,S; cur/X:2,F -> cur/X:2,FS) when the option
  // is on. Best effort: a failed rename is logged, never fatal.
  void MarkSeen(std::size_t index);

  // UPDATE state: unlinks the given messages and syncs the directories. Returns how many could
  // not be removed (0 on success). A message that is already gone counts as removed.
  std::size_t Delete(const std::vector<std::size_t>& indexes);

 private:
  Maildrop(std::string path, std::string lock_key, MaildropOptions options,
           MaildropLocks& locks);
  void Scan(SizeCache* sizes);
  // Finds the current file of message `index` again after ENOENT; false if it is gone.
  bool Relocate(std::size_t index);

  std::string path_;
  std::string lock_key_;
  MaildropOptions options_;
  MaildropLocks& locks_;
  std::vector<MessageInfo> messages_;
};

// The unique part of a Maildir file name: everything before the first ':'.
std::string MaildirUniqueName(const std::string& filename);

// Parses a dovecot-uidlist file's text into unique name -> UIDL (Dovecot's default format
// "%08Xu%08Xv", or the stored 'P' extension when present). Versions 1 and 3. Malformed lines
// are skipped.
std::unordered_map<std::string, std::string> ParseDovecotUidlist(const std::string& text);

}  // namespace coffer::pop3d
