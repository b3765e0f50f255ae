// The verdict on a cofferfs status line (the "key=value" answer of the control socket's `status`):
// healthy, degraded or not serving, with the reasons. It is the one definition of "is this box
// all right", used by `cofferctl status` (its exit code 0/1/2) and by cofferfs's own health check
// (fs/health.h), so that the two never disagree.
//
// The verdict is honest about the contract: a mount is *healthy* only when every node answers,
// nothing waits in the outbox, no object is known to be below R and no node has lied; any of
// those makes it *degraded* (exit 1); a mount that does not answer, plays dead, cannot write
// (a sticky write error: every write fails until cofferfs restarts), or cannot reach W nodes while
// degraded=fail (every delivery would fail) is *not serving* (exit 2). Fields that are missing
// count as the harmless value, so that older cofferfs versions are judged too.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/sysexits.h"

namespace coffer::fs {

inline constexpr int kStatusHealthy = exits::kOk;
inline constexpr int kStatusDegraded = exits::kDegraded;
inline constexpr int kStatusNotServing = exits::kNotServing;

// The fields of a status line (common/kv_line.h).
using StatusFields = std::map<std::string, std::string>;

struct Verdict {
  int code = kStatusHealthy;
  std::vector<std::string> reasons;  // empty when healthy
  // For people: "healthy", "DEGRADED", "NOT SERVING".
  const char* word() const {
    return code == kStatusHealthy ? "healthy" : code == kStatusDegraded ? "DEGRADED"
                                                                         : "NOT SERVING";
  }
  // For scripts (cofferctl status --json, the health check): "healthy", "degraded",
  // "not_serving".
  const char* name() const {
    return code == kStatusHealthy ? "healthy" : code == kStatusDegraded ? "degraded"
                                                                         : "not_serving";
  }
};

// Pure: no I/O.
Verdict Judge(const StatusFields& f);

}  // namespace coffer::fs
