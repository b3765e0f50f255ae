// See control.h.
#include "pop3d/control.h"

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/control_socket.h"
#include "common/error.h"

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
  return control::Request(socket_path, line);
}

}  // namespace coffer::pop3d
