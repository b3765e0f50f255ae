// Version: see version.h.
#include "replicator/version.h"

namespace coffer::replicator {

std::string Version::ToString() const {
  return std::to_string(hlc) + "." + std::to_string(box_id);
}

}  // namespace coffer::replicator
