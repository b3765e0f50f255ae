// Version: see version.h.
#include "replicator/version.h"

namespace coffer::replicator {

std::string ToString(const Version& v) {
  return std::to_string(v.hlc) + "." + std::to_string(v.box_id);
}

}  // namespace coffer::replicator
