// See passphrase.h.
#include "common/passphrase.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "common/error.h"
#include "common/fd.h"

namespace coffer::passphrase {
namespace {

// Reads one line from `fd` byte by byte straight into locked memory, so no unlocked buffer ever
// holds the passphrase. Stops at LF or EOF; strips a trailing CR.
crypto::SecretBytes ReadLine(int fd, const std::string& what) {
  crypto::SecretBytes buf(kMaxLength + 1);
  std::size_t n = 0;
  for (;;) {
    unsigned char c;
    ssize_t r = ::read(fd, &c, 1);
    if (r < 0) {
      if (errno == EINTR) continue;
      ThrowErrno("cannot read passphrase from " + what);
    }
    if (r == 0 || c == '\n') break;
    if (n == kMaxLength) {
      throw Error(EINVAL, "passphrase from " + what + " is longer than " +
                              std::to_string(kMaxLength) + " bytes");
    }
    buf.data()[n++] = c;
  }
  if (n > 0 && buf.data()[n - 1] == '\r') --n;
  buf.Truncate(n);
  if (n == 0) throw Error(EINVAL, "empty passphrase from " + what);
  return buf;
}

crypto::SecretBytes ReadFromTerminal(int tty, const std::string& prompt) {
  struct termios old_mode;
  if (::tcgetattr(tty, &old_mode) != 0) ThrowErrno("tcgetattr /dev/tty");
  struct termios quiet = old_mode;
  quiet.c_lflag &= static_cast<tcflag_t>(~ECHO);
  quiet.c_lflag |= ECHONL;
  WriteAll(tty, prompt, "/dev/tty");
  if (::tcsetattr(tty, TCSAFLUSH, &quiet) != 0) ThrowErrno("tcsetattr /dev/tty");
  try {
    crypto::SecretBytes p = ReadLine(tty, "the terminal");
    ::tcsetattr(tty, TCSAFLUSH, &old_mode);
    return p;
  } catch (...) {
    ::tcsetattr(tty, TCSAFLUSH, &old_mode);
    throw;
  }
}

}  // namespace

crypto::SecretBytes Read(const Source& source, const std::string& prompt, bool confirm) {
  if (source.file && source.fd) throw Error(EINVAL, "give a passphrase file or a descriptor, not both");
  if (source.file) {
    UniqueFd fd = OpenFile(*source.file, O_RDONLY);
    return ReadLine(fd.Get(), *source.file);
  }
  if (source.fd) return ReadLine(*source.fd, "descriptor " + std::to_string(*source.fd));
  int tty = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (tty < 0) {
    throw Error(ENXIO,
                "no terminal to ask for the passphrase: use --passfile FILE or --passfd N");
  }
  UniqueFd tty_fd(tty);
  crypto::SecretBytes first = ReadFromTerminal(tty, prompt);
  if (confirm) {
    crypto::SecretBytes again = ReadFromTerminal(tty, "Repeat: ");
    if (!first.Equals(again)) throw Error(EINVAL, "the passphrases do not match");
  }
  return first;
}

std::optional<std::string> LoosePermissions(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  const mode_t loose = st.st_mode & 077;
  if (loose == 0) return std::nullopt;
  std::string who = (loose & 070) && (loose & 007) ? "group and others"
                    : (loose & 070)                ? "its group"
                                                   : "others";
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return "passfile " + path + " is accessible to " + who + " (mode " + mode + "): chmod 600 " +
         path;
}

}  // namespace coffer::passphrase
