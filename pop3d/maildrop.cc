// See maildrop.h.
#include "pop3d/maildrop.h"

#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "pop3d/message_stream.h"

namespace coffer::pop3d {
namespace {

constexpr std::size_t kMaxUidlistSize = 256u << 20;

bool ValidUidl(const std::string& s) {
  if (s.empty() || s.size() > 70) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
}

// A UIDL for a unique name that is not valid as one (too long, odd bytes): a hash of it.
std::string HashedUidl(const std::string& unique) {
  unsigned char digest[16];
  crypto_generichash(digest, sizeof digest, reinterpret_cast<const unsigned char*>(unique.data()),
                     unique.size(), nullptr, 0);
  char hex[33];
  for (int i = 0; i < 16; ++i) std::snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  return std::string(hex, 32);
}

struct Entry {
  std::string subdir;
  std::string filename;
};

// Lists regular-looking entries of dir (skips dot files). Throws on errors other than ENOENT.
std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) ThrowErrno("opendir " + dir);
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    names.emplace_back(e->d_name);
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) ThrowErrno(err, "readdir " + dir);
  return names;
}

void MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) ThrowErrno("mkdir " + path);
}

void SyncDir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

std::size_t SizeCache::KeyHash::operator()(const Key& k) const noexcept {
  std::size_t h = std::hash<std::uint64_t>()(static_cast<std::uint64_t>(k.ino));
  h ^= std::hash<std::uint64_t>()(static_cast<std::uint64_t>(k.dev)) + 0x9e3779b97f4a7c15ULL +
       (h << 6) + (h >> 2);
  h ^= std::hash<std::int64_t>()(k.mtime_ns) + (h << 6) + (h >> 2);
  return h;
}

std::optional<std::uint64_t> SizeCache::Get(const struct stat& st) {
  Key key{st.st_dev, st.st_ino, st.st_size,
          static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
  std::lock_guard lock(mutex_);
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

void SizeCache::Put(const struct stat& st, std::uint64_t size) {
  Key key{st.st_dev, st.st_ino, st.st_size,
          static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
  std::lock_guard lock(mutex_);
  if (map_.size() >= max_entries_) map_.clear();
  map_[key] = size;
}

bool MaildropLocks::TryLock(const std::string& key) {
  std::lock_guard lock(mutex_);
  return held_.insert(key).second;
}

void MaildropLocks::Unlock(const std::string& key) {
  std::lock_guard lock(mutex_);
  held_.erase(key);
}

MaildropLocks& MaildropLocks::Global() {
  static MaildropLocks locks;
  return locks;
}

std::string MaildirUniqueName(const std::string& filename) {
  return filename.substr(0, filename.find(':'));
}

std::unordered_map<std::string, std::string> ParseDovecotUidlist(const std::string& text) {
  std::unordered_map<std::string, std::string> out;
  std::size_t pos = text.find('\n');
  if (pos == std::string::npos) return out;
  std::string header = text.substr(0, pos);
  int version = 0;
  unsigned long uid_validity = 0;
  if (header.rfind("3 ", 0) == 0) {
    version = 3;
    std::size_t v = header.find(" V");
    if (v == std::string::npos) return out;
    uid_validity = std::strtoul(header.c_str() + v + 2, nullptr, 10);
  } else if (header.rfind("1 ", 0) == 0) {
    version = 1;
    uid_validity = std::strtoul(header.c_str() + 2, nullptr, 10);
  } else {
    return out;
  }
  ++pos;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    char* after = nullptr;
    unsigned long uid = std::strtoul(line.c_str(), &after, 10);
    if (uid == 0 || after == line.c_str() || *after != ' ') continue;
    std::string rest(after + 1);
    std::string filename;
    std::string stored_uidl;
    if (version == 3) {
      std::size_t colon = rest.find(':');
      if (colon == std::string::npos) continue;
      // Extension fields before the ':' are "<letter><value>" separated by spaces.
      std::string ext = rest.substr(0, colon);
      std::size_t e = 0;
      while (e < ext.size()) {
        std::size_t sp = ext.find(' ', e);
        if (sp == std::string::npos) sp = ext.size();
        if (sp > e + 1 && ext[e] == 'P') stored_uidl = ext.substr(e + 1, sp - e - 1);
        e = sp + 1;
      }
      filename = rest.substr(colon + 1);
    } else {
      filename = rest;
    }
    std::string unique = MaildirUniqueName(filename);
    if (unique.empty()) continue;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%08lX%08lX", uid, uid_validity);
    out[unique] = ValidUidl(stored_uidl) ? stored_uidl : std::string(buf);
  }
  return out;
}

Maildrop::Maildrop(std::string path, std::string lock_key, MaildropOptions options,
                   MaildropLocks& locks)
    : path_(std::move(path)), lock_key_(std::move(lock_key)), options_(options), locks_(locks) {}

Maildrop::~Maildrop() {
  // The lease first: another session of this box must not start while the file still names us.
  if (lease_) lease_->Release();
  locks_.Unlock(lock_key_);
}

Maildrop::OpenResult Maildrop::Open(const std::string& path, const MaildropOptions& options,
                                    SizeCache* sizes, MaildropLocks& locks) {
  OpenResult result;
  try {
    if (options.create) {
      struct stat st;
      if (::stat((path + "/cur").c_str(), &st) != 0) {
        // Create the chain the template names (e.g. /srv/mail/dom/user/Maildir).
        std::string partial;
        for (std::size_t i = 1; i <= path.size(); ++i) {
          if (i == path.size() || path[i] == '/') {
            partial = path.substr(0, i);
            MakeDir(partial);
          }
        }
        MakeDir(path + "/new");
        MakeDir(path + "/cur");
        MakeDir(path + "/tmp");
      }
    }
    char* real = ::realpath(path.c_str(), nullptr);
    if (real == nullptr) ThrowErrno("realpath " + path);
    std::string key(real);
    std::free(real);
    if (!locks.TryLock(key)) {
      result.status = OpenStatus::kInUse;
      return result;
    }
    std::unique_ptr<Maildrop> drop(new Maildrop(path, key, options, locks));
    if (options.shared_store) {
      drop->lease_ = std::make_shared<Lease>(
          key, options.lease, options.lease_clock ? *options.lease_clock : LeaseClock::Real());
      Lease::Result begun = drop->lease_->Begin();
      switch (begun.outcome) {
        case Lease::Outcome::kSettling:
          result.status = OpenStatus::kSettling;
          result.settle_until = begun.settle_until;
          result.maildrop = std::move(drop);
          return result;
        case Lease::Outcome::kInUse:
          spdlog::info("maildrop {}: in use on another box: {}", path, begun.detail);
          result.status = OpenStatus::kInUse;
          return result;
        case Lease::Outcome::kHeld:
        case Lease::Outcome::kError:
          break;
      }
      throw Error(begun.err ? begun.err : EIO,
                  "lease " + drop->lease_->path() + ": " + begun.detail);
    }
    drop->Scan(sizes);
    result.maildrop = std::move(drop);
    result.status = OpenStatus::kOk;
  } catch (const Error& e) {
    result.status = OpenStatus::kError;
    result.error = e.what();
    result.err = e.err();
  } catch (const std::exception& e) {
    result.status = OpenStatus::kError;
    result.error = e.what();
    result.err = EIO;
  }
  return result;
}

Maildrop::OpenResult Maildrop::Settle(std::unique_ptr<Maildrop> pending, SizeCache* sizes) {
  OpenResult result;
  try {
    if (!pending || !pending->lease_) throw Error(EINVAL, "no maildrop is settling");
    Lease::Result confirmed = pending->lease_->Confirm();
    switch (confirmed.outcome) {
      case Lease::Outcome::kHeld:
        pending->Scan(sizes);
        result.maildrop = std::move(pending);
        result.status = OpenStatus::kOk;
        return result;
      case Lease::Outcome::kInUse:
        spdlog::info("maildrop {}: another box won the lease: {}", pending->path_,
                     confirmed.detail);
        result.status = OpenStatus::kInUse;
        return result;
      case Lease::Outcome::kSettling:
      case Lease::Outcome::kError:
        break;
    }
    throw Error(confirmed.err ? confirmed.err : EIO,
                "lease " + pending->lease_->path() + ": " + confirmed.detail);
  } catch (const Error& e) {
    result.status = OpenStatus::kError;
    result.error = e.what();
    result.err = e.err();
  } catch (const std::exception& e) {
    result.status = OpenStatus::kError;
    result.error = e.what();
    result.err = EIO;
  }
  return result;
}

void Maildrop::Scan(SizeCache* sizes) {
  std::vector<Entry> entries;
  for (const char* sub : {"new", "cur"}) {
    for (auto& name : ListDir(path_ + "/" + sub)) entries.push_back({sub, std::move(name)});
    if (entries.size() > options_.max_messages) {
      throw Error(EFBIG, "maildrop " + path_ + " holds too many messages");
    }
  }
  std::unordered_map<std::string, std::string> dovecot;
  if (options_.uidl == UidlMode::kDovecot) {
    try {
      dovecot = ParseDovecotUidlist(ReadFile(path_ + "/dovecot-uidlist", kMaxUidlistSize));
    } catch (const Error& e) {
      if (e.err() != ENOENT) throw;
    }
  }
  messages_.reserve(entries.size());
  std::set<std::string> seen_unique;
  for (auto& entry : entries) {
    std::string full = path_ + "/" + entry.subdir + "/" + entry.filename;
    // stat first: with the size cache warm, a login opens no message file at all.
    struct stat st;
    if (::lstat(full.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;  // moved meanwhile
      ThrowErrno("stat " + full);
    }
    if (!S_ISREG(st.st_mode)) continue;  // symlinks, directories
    MessageInfo info;
    info.unique = MaildirUniqueName(entry.filename);
    // The same message seen twice (renamed between the two readdirs) is listed once.
    if (!seen_unique.insert(info.unique).second) continue;
    std::optional<std::uint64_t> size = sizes ? sizes->Get(st) : std::nullopt;
    if (!size) {
      int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) {
        if (errno == ENOENT || errno == ELOOP) {
          seen_unique.erase(info.unique);
          continue;
        }
        ThrowErrno("open " + full);
      }
      UniqueFd owner(fd);
      if (::fstat(fd, &st) != 0) ThrowErrno("fstat " + full);
      size = VirtualSizeOfFd(fd);
      if (sizes) sizes->Put(st, *size);
    }
    info.size = *size;
    info.subdir = std::move(entry.subdir);
    info.filename = std::move(entry.filename);
    if (auto it = dovecot.find(info.unique); it != dovecot.end()) {
      info.uidl = it->second;
    } else {
      info.uidl = ValidUidl(info.unique) ? info.unique : HashedUidl(info.unique);
    }
    messages_.push_back(std::move(info));
  }
  if (options_.uidl == UidlMode::kDovecot && !dovecot.empty()) {
    // Dovecot's order is its UID order; its UIDLs start with the UID in fixed-width hex, so
    // sorting by them gives that order. Messages Dovecot never saw come after, by name.
    std::stable_sort(messages_.begin(), messages_.end(),
                     [&](const MessageInfo& a, const MessageInfo& b) {
                       bool ka = dovecot.count(a.unique) > 0, kb = dovecot.count(b.unique) > 0;
                       if (ka != kb) return ka;
                       return ka ? a.uidl < b.uidl : a.unique < b.unique;
                     });
  } else {
    std::sort(messages_.begin(), messages_.end(),
              [](const MessageInfo& a, const MessageInfo& b) { return a.unique < b.unique; });
  }
}

bool Maildrop::Relocate(std::size_t index) {
  MessageInfo& info = messages_.at(index);
  for (const char* sub : {"cur", "new"}) {
    std::vector<std::string> names;
    try {
      names = ListDir(path_ + "/" + sub);
    } catch (const Error&) {
      continue;
    }
    for (auto& name : names) {
      if (MaildirUniqueName(name) == info.unique) {
        info.subdir = sub;
        info.filename = name;
        return true;
      }
    }
  }
  return false;
}

UniqueFd Maildrop::OpenMessage(std::size_t index) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    const MessageInfo& info = messages_.at(index);
    std::string full = path_ + "/" + info.subdir + "/" + info.filename;
    int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
      return UniqueFd(fd);
    }
    if (errno != ENOENT) ThrowErrno("open " + full);
    if (!Relocate(index)) break;
  }
  return UniqueFd();
}

void Maildrop::MarkSeen(std::size_t index) {
  if (!options_.mark_seen) return;
  MessageInfo& info = messages_.at(index);
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string new_name;
    std::size_t info_pos = info.filename.find(":2,");
    if (info_pos == std::string::npos) {
      new_name = info.unique + ":2,S";
    } else {
      std::string flags = info.filename.substr(info_pos + 3);
      if (flags.find('S') != std::string::npos && info.subdir == "cur") return;
      flags.push_back('S');
      std::sort(flags.begin(), flags.end());
      flags.erase(std::unique(flags.begin(), flags.end()), flags.end());
      new_name = info.filename.substr(0, info_pos) + ":2," + flags;
    }
    std::string from = path_ + "/" + info.subdir + "/" + info.filename;
    std::string to = path_ + "/cur/" + new_name;
    if (::rename(from.c_str(), to.c_str()) == 0) {
      info.subdir = "cur";
      info.filename = new_name;
      return;
    }
    if (errno != ENOENT || !Relocate(index)) {
      spdlog::warn("maildrop {}: could not mark a message seen: {}", path_, std::strerror(errno));
      return;
    }
  }
}

DeleteResult Maildrop::Delete(const std::vector<std::size_t>& indexes) {
  DeleteResult result;
  if (indexes.empty()) return result;
  if (lease_ && !lease_->Verify()) {
    spdlog::warn("maildrop {}: the lease is lost: none of {} deleted messages removed", path_,
                 indexes.size());
    result.failed = indexes.size();
    result.lease_lost = true;
    return result;
  }
  for (std::size_t index : indexes) {
    if (lease_ && !lease_->Keep()) {
      result.lease_lost = true;
      result.failed = indexes.size() - result.removed;
      spdlog::warn("maildrop {}: the lease was lost while deleting: {} of {} messages removed",
                   path_, result.removed, indexes.size());
      break;
    }
    bool done = false;
    for (int attempt = 0; attempt < 2 && !done; ++attempt) {
      const MessageInfo& info = messages_.at(index);
      std::string full = path_ + "/" + info.subdir + "/" + info.filename;
      if (::unlink(full.c_str()) == 0) {
        done = true;
      } else if (errno != ENOENT) {
        spdlog::warn("maildrop {}: unlink failed: {}", path_, std::strerror(errno));
        break;
      } else if (!Relocate(index)) {
        done = true;  // already gone
      }
    }
    if (done) {
      ++result.removed;
    } else {
      ++result.failed;
    }
  }
  SyncDir(path_ + "/cur");
  SyncDir(path_ + "/new");
  return result;
}

}  // namespace coffer::pop3d
