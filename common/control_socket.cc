// See control_socket.h.
#include "common/control_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "common/fd.h"

namespace coffer::control {

std::string Request(const std::string& socket_path, std::string_view line, int timeout_ms) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    throw Error(ENAMETOOLONG, "control socket path too long: " + socket_path);
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) ThrowErrno("socket");
  if (::connect(fd.Get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ThrowErrno("cannot connect to control socket " + socket_path);
  }
  std::string request(line);
  request.push_back('\n');
  WriteAll(fd.Get(), request, "control socket " + socket_path);
  std::string answer;
  char buf[512];
  for (;;) {
    pollfd p{fd.Get(), POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) ThrowErrno("poll control socket " + socket_path);
    if (r == 0) throw Error(ETIMEDOUT, "control socket " + socket_path + ": no answer");
    ssize_t n = ::read(fd.Get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ThrowErrno("read control socket " + socket_path);
    if (n == 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
    if (answer.find('\n') != std::string::npos || answer.size() > 4096) break;
  }
  if (std::size_t nl = answer.find('\n'); nl != std::string::npos) answer.resize(nl);
  return answer;
}

}  // namespace coffer::control
