// See control.h.
#include "pop3d/control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/error.h"
#include "common/fd.h"

namespace coffer::pop3d {

std::string_view PlayDeadName(PlayDead mode) noexcept {
  switch (mode) {
    case PlayDead::kOff: return "off";
    case PlayDead::kRefuse: return "refuse";
    case PlayDead::kSlow: return "slow";
    case PlayDead::kStop: return "stop";
  }
  return "?";
}

std::string HandleControlLine(std::string_view line, Control& control) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ')) {
    line.remove_suffix(1);
  }
  std::vector<std::string_view> words;
  std::size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && line[pos] == ' ') ++pos;
    std::size_t end = line.find(' ', pos);
    if (end == std::string_view::npos) end = line.size();
    if (end > pos) words.push_back(line.substr(pos, end - pos));
    pos = end;
  }
  if (words.size() == 1 && words[0] == "status") {
    return "ok mode=" + std::string(PlayDeadName(control.mode())) +
           " connections=" + std::to_string(control.connections.load()) +
           " logins=" + std::to_string(control.logins.load()) +
           " failed_logins=" + std::to_string(control.failed_logins.load());
  }
  if (words.size() >= 2 && words[0] == "play-dead") {
    std::string_view m = words[1];
    if (m == "off" && words.size() == 2) {
      control.SetMode(PlayDead::kOff);
    } else if (m == "refuse" && words.size() == 2) {
      control.SetMode(PlayDead::kRefuse);
    } else if (m == "stop" && words.size() == 2) {
      control.SetMode(PlayDead::kStop);
    } else if (m == "slow" && words.size() <= 3) {
      std::int64_t ms = 2000;
      if (words.size() == 3) {
        ms = 0;
        if (words[2].empty() || words[2].size() > 7) return "error bad delay";
        for (char c : words[2]) {
          if (c < '0' || c > '9') return "error bad delay";
          ms = ms * 10 + (c - '0');
        }
      }
      control.SetMode(PlayDead::kSlow, ms);
    } else {
      return "error usage: play-dead off|refuse|stop|slow [MS]";
    }
    return "ok play-dead " + std::string(PlayDeadName(control.mode()));
  }
  return "error unknown command (try: status, play-dead MODE)";
}

std::string SendControl(const std::string& socket_path, std::string_view line) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    throw Error(ENAMETOOLONG, "control socket path too long: " + socket_path);
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) ThrowErrno("socket");
  if (::connect(fd.Get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ThrowErrno("connect " + socket_path);
  }
  std::string request(line);
  request.push_back('\n');
  WriteAll(fd.Get(), request, "control socket");
  std::string answer;
  char buf[512];
  for (;;) {
    pollfd p{fd.Get(), POLLIN, 0};
    int r = ::poll(&p, 1, 5000);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) ThrowErrno("poll control socket");
    if (r == 0) throw Error(ETIMEDOUT, "control socket " + socket_path + ": no answer");
    ssize_t n = ::read(fd.Get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ThrowErrno("read control socket");
    if (n == 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
    if (answer.find('\n') != std::string::npos || answer.size() > 4096) break;
  }
  std::size_t nl = answer.find('\n');
  if (nl != std::string::npos) answer.resize(nl);
  return answer;
}

}  // namespace coffer::pop3d
