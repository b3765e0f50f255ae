// See fd.h.
#include "common/fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common/error.h"

namespace coffer {

void UniqueFd::Reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

void UniqueFd::Close() {
  int fd = std::exchange(fd_, -1);
  if (fd >= 0 && ::close(fd) != 0 && errno != EINTR) ThrowErrno("close");
}

UniqueFd OpenFile(const std::string& path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) ThrowErrno(path);
  return UniqueFd(fd);
}

void WriteAll(int fd, std::string_view data, std::string_view what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      ThrowErrno(what);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string ReadAllFd(int fd, std::size_t max_size, std::string_view what) {
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      ThrowErrno(what);
    }
    if (n == 0) break;
    if (out.size() + static_cast<std::size_t>(n) > max_size) {
      throw Error(EFBIG, std::string(what) + ": larger than " + std::to_string(max_size) +
                             " bytes");
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

std::string ReadFile(const std::string& path, std::size_t max_size) {
  UniqueFd fd = OpenFile(path, O_RDONLY);
  return ReadAllFd(fd.Get(), max_size, path);
}

static std::string ParentDir(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void SyncParentDir(const std::string& path) {
  UniqueFd dir = OpenFile(ParentDir(path), O_RDONLY | O_DIRECTORY);
  if (::fsync(dir.Get()) != 0) ThrowErrno("fsync " + ParentDir(path));
}

void AtomicWriteFile(const std::string& path, std::string_view data, mode_t mode,
                     bool exclusive) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    UniqueFd fd = OpenFile(tmp, O_WRONLY | O_CREAT | O_EXCL, mode);
    try {
      // The umask must not widen or narrow what the caller asked for (0600 key files).
      if (::fchmod(fd.Get(), mode) != 0) ThrowErrno("chmod " + tmp);
      WriteAll(fd.Get(), data, tmp);
      if (::fsync(fd.Get()) != 0) ThrowErrno("fsync " + tmp);
      fd.Close();
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
  }
  if (exclusive) {
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      ThrowErrno(err, path);
    }
    ::unlink(tmp.c_str());
  } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    ThrowErrno(err, "rename " + tmp + " to " + path);
  }
  SyncParentDir(path);
}

}  // namespace coffer
