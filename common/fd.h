// UniqueFd: the one owner of a POSIX file descriptor (STYLE.md §4), plus the few whole-file
// helpers every program needs (bounded reads, durable atomic replace).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

namespace coffer {

// Move-only owner of a file descriptor; closes it in the destructor (errors there are ignored:
// call Close() where a close error matters, e.g. after writing).
class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int Get() const noexcept { return fd_; }
  bool Valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return Valid(); }

  // Gives up ownership without closing.
  int Release() noexcept { return std::exchange(fd_, -1); }
  // Closes the current descriptor (ignoring errors) and takes `fd`.
  void Reset(int fd = -1) noexcept;
  // Closes and throws coffer::Error if close(2) reports an error.
  void Close();

 private:
  int fd_ = -1;
};

// open(2) that retries on EINTR, sets O_CLOEXEC and throws coffer::Error naming `path`.
UniqueFd OpenFile(const std::string& path, int flags, mode_t mode = 0);

// Writes all of `data` (retrying short writes and EINTR); throws on error.
void WriteAll(int fd, std::string_view data, std::string_view what);

// Reads a whole file of at most `max_size` bytes. Throws coffer::Error(EFBIG) when it is larger,
// so a hostile or broken file cannot make us allocate without bound.
std::string ReadFile(const std::string& path, std::size_t max_size);

// Reads at most `max_size` bytes from `fd` until EOF.
std::string ReadAllFd(int fd, std::size_t max_size, std::string_view what);

// Replaces `path` with `data` so that after a crash at any moment either the complete old or the
// complete new file is there: writes `path.tmp.<pid>` with `mode`, fsyncs it, renames it over
// `path` and fsyncs the directory. With `exclusive`, fails with EEXIST if `path` exists (the
// check and the rename are one step: link(2) is used instead of rename(2)).
void AtomicWriteFile(const std::string& path, std::string_view data, mode_t mode,
                     bool exclusive = false);

// fsync(2) on the directory that holds `path`.
void SyncParentDir(const std::string& path);

}  // namespace coffer
