// See target.h.
#include "ctl/target.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/error.h"

namespace coffer::ctl {

std::string UnescapeMountinfo(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() + 0 &&
        std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

namespace {

bool Within(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

}  // namespace

std::string ResolveControlSocket(const std::string& target, const std::string& mountinfo) {
  struct stat st {};
  if (::stat(target.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) return target;
  if (::stat((target + "/control.sock").c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    return target + "/control.sock";
  }
  char* real = ::realpath(target.c_str(), nullptr);
  std::string path = real ? real : target;
  std::free(real);
  std::ifstream in(mountinfo);
  std::string line, best_mount, best_state;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    std::string word;
    while (fields >> word) f.push_back(word);
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || dash + 2 >= f.end()) continue;
    if (*(dash + 1) != "fuse.cofferfs") continue;
    std::string mount = UnescapeMountinfo(f[4]);
    if (Within(path, mount) && mount.size() >= best_mount.size()) {
      best_mount = mount;
      best_state = UnescapeMountinfo(*(dash + 2));
    }
  }
  if (!best_state.empty()) return best_state + "/control.sock";
  throw Error(ENOENT, target + " is neither a control socket, nor a cofferfs state directory with "
                      "a running cofferfs (no control.sock), nor inside a cofferfs mount");
}

}  // namespace coffer::ctl
