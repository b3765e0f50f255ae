// See kv_line.h.
#include "common/kv_line.h"

#include <sstream>

namespace coffer {

std::map<std::string, std::string> ParseKeyValueLine(const std::string& line, std::string* rest) {
  std::map<std::string, std::string> out;
  std::string head = line;
  if (auto bar = line.find(" | "); bar != std::string::npos) {
    head = line.substr(0, bar);
    if (rest) *rest = line.substr(bar + 3);
  }
  if (auto le = head.find(" last_error="); le != std::string::npos) {
    out["last_error"] = head.substr(le + 12);
    head.resize(le);
  }
  std::istringstream words(head);
  std::string w;
  while (words >> w) {
    auto eq = w.find('=');
    if (eq != std::string::npos) out[w.substr(0, eq)] = w.substr(eq + 1);
  }
  return out;
}

}  // namespace coffer
