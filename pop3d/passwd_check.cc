// See passwd_check.h.
#include "pop3d/passwd_check.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "common/error.h"
#include "common/fd.h"
#include "pop3d/auth.h"
#include "pop3d/server.h"

namespace coffer::pop3d {

bool KnownScheme(std::string_view s) {
  for (const char* k : {"CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "BLF-CRYPT",
                        "DES-CRYPT", "ARGON2ID", "ARGON2I", "PLAIN", "CLEARTEXT"}) {
    if (s == k) return true;
  }
  return false;
}

PasswdReport CheckPasswdText(std::string_view text, const std::string& path) {
  PasswdReport report;
  std::vector<int> bad;
  auto users = ParsePasswdFile(text, &bad);
  report.users = users.size();
  for (int line : bad) {
    report.problems.push_back(path + ":" + std::to_string(line) +
                              ": malformed line (user:{SCHEME}hash:uid:gid::home), ignored");
  }
  // Unknown schemes by line: find each user's line again for the message.
  std::map<int, std::string> unknown;
  int line_no = 0;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t nl = text.find('\n', start);
    std::string_view line = text.substr(start, nl == std::string_view::npos ? text.npos : nl - start);
    ++line_no;
    auto colon = line.find(':');
    if (colon != std::string_view::npos) {
      auto it = users.find(std::string(line.substr(0, colon)));
      if (it != users.end() && !KnownScheme(it->second.scheme)) {
        unknown[line_no] = "user " + it->second.user + ": unknown password scheme {" +
                           it->second.scheme + "}: this user cannot log in";
      }
    }
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  for (const auto& [n, msg] : unknown) report.problems.push_back(path + ":" + std::to_string(n) + ": " + msg);
  return report;
}

PasswdReport CheckPasswdFile(const std::string& path) {
  return CheckPasswdText(ReadFile(path, std::size_t{64} << 20), path);
}

std::string CheckReadableAs(const std::string& path, const std::string& run_as) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return "pipe: " + std::string(std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    return "fork: " + std::string(std::strerror(errno));
  }
  if (pid == 0) {
    ::close(pipefd[0]);
    int err = 0;
    try {
      if (!run_as.empty()) DropPrivileges(run_as);
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) err = errno;
    } catch (const Error& e) {
      err = e.err() ? e.err() : EPERM;
    }
    [[maybe_unused]] ssize_t n = ::write(pipefd[1], &err, sizeof err);
    ::_exit(0);
  }
  ::close(pipefd[1]);
  int err = EIO;
  ssize_t n;
  do {
    n = ::read(pipefd[0], &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (n != sizeof err) return "could not check " + path + " as " + run_as;
  if (err == 0) return "";
  return (run_as.empty() ? std::string("this user") : "user " + run_as) + " cannot read " + path +
         ": " + std::strerror(err);
}

}  // namespace coffer::pop3d
