// A POP3 maildrop over a Maildir: scanning new/ and cur/, UIDLs, reading, "seen" marking, and the
// UPDATE-state deletions.
//
// This is the only code that touches mail files, so the "no message is lost or deleted by
// mistake" promise is checked here: nothing is unlinked except by Delete(), which the session
// calls only when a client says QUIT in TRANSACTION state. A message renamed meanwhile by someone
// else (an IMAP server setting flags) is found again by its unique name.
//
// One session per maildrop at a time: Open() takes a process-wide lock on the Maildir's real
// path and the Maildrop releases it when destroyed. With `shared_store` (other boxes serve the
// same Maildir) the session also needs the Maildir's lease (lease.h): Open() begins it and
// answers kSettling, and Settle() (after the settle time) confirms it and scans; Delete() then
// removes nothing once the lease is lost.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
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
#include "pop3d/lease.h"

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
  bool shared_store = false;          // other boxes serve this Maildir too: hold its lease
  LeaseOptions lease;                 // with shared_store
  LeaseClock* lease_clock = nullptr;  // tests; null: the real clocks
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

enum class OpenStatus {
  kOk,
  kInUse,
  kError,
  kSettling,  // shared_store: our lease is written; call Settle() at settle_until
};

// What Delete() did.
struct DeleteResult {
  std::size_t removed = 0;  // unlinked, or already gone
  std::size_t failed = 0;   // still there
  bool lease_lost = false;  // shared_store: stopped (or never started) because the lease is lost
};

class Maildrop {
 public:
  struct OpenResult {
    OpenStatus status = OpenStatus::kError;
    std::unique_ptr<Maildrop> maildrop;
    std::string error;  // for logs (never sent to clients verbatim)
    int err = 0;        // errno of a kError (EACCES, ENOENT, ...)
    std::chrono::steady_clock::time_point settle_until{};  // kSettling (by the lease's clock)
  };

  // Locks and scans the Maildir at `path`. Never throws: I/O errors are kError.
  // `sizes` may be null (no caching); it must outlive the call. With options.shared_store the
  // answer is kSettling (a maildrop, not yet scanned, that holds the local lock and a written
  // lease), kInUse or kError.
  static OpenResult Open(const std::string& path, const MaildropOptions& options,
                         SizeCache* sizes, MaildropLocks& locks = MaildropLocks::Global());
  // Finishes a kSettling Open(), no earlier than its settle_until: confirms the lease and scans.
  // kOk, kInUse (another box won the lease) or kError. Never throws.
  static OpenResult Settle(std::unique_ptr<Maildrop> pending, SizeCache* sizes);

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

  // UPDATE state: unlinks the given messages and syncs the directories. A message that is
  // already gone counts as removed. With a lease, nothing is unlinked unless Lease::Verify()
  // says it is still ours, and unlinking stops if Lease::Keep() says it was lost meanwhile.
  DeleteResult Delete(const std::vector<std::size_t>& indexes);

  // shared_store: the lease (for the server's renewal timer); null otherwise.
  const std::shared_ptr<Lease>& lease() const noexcept { return lease_; }
  // The lease is known to be lost: the session must end without deleting. No I/O.
  bool lease_lost() const noexcept { return lease_ && lease_->lost(); }

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
  std::shared_ptr<Lease> lease_;  // shared_store; the server's renewal timer shares it
  std::vector<MessageInfo> messages_;
};

// The unique part of a Maildir file name: everything before the first ':'.
std::string MaildirUniqueName(const std::string& filename);

// Parses a dovecot-uidlist file's text into unique name -> UIDL (Dovecot's default format
// "%08Xu%08Xv", or the stored 'P' extension when present). Versions 1 and 3. Malformed lines
// are skipped.
std::unordered_map<std::string, std::string> ParseDovecotUidlist(const std::string& text);

}  // namespace coffer::pop3d
