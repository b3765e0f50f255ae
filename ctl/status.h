// What `cofferctl status` makes of a cofferfs status line: the key=value fields, a verdict for
// Nagios-style checks, and the two renderings (text for people, JSON for scripts).
//
// The verdict is honest about the contract: a mount is *healthy* only when every node answers,
// nothing waits in the outbox, no object is known to be below R and no node has lied; any of
// those makes it *degraded* (exit 1); a mount that does not answer, plays dead, or cannot reach
// W nodes while degraded=fail (every delivery would fail) is *not serving* (exit 2).
// Unknown fields are kept and shown in the JSON as they are, so that newer cofferfs versions
// can add fields without a new cofferctl.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/sysexits.h"

namespace coffer::ctl {

inline constexpr int kStatusHealthy = exits::kOk;
inline constexpr int kStatusDegraded = exits::kDegraded;
inline constexpr int kStatusNotServing = exits::kNotServing;

using Fields = std::map<std::string, std::string>;

// "ok a=1 b=2 ... last_error=free text | problem | problem": the fields; `rest` gets what
// follows the first " | " (verify's problem list). last_error takes the rest of the head.
Fields ParseFields(const std::string& answer, std::string* rest = nullptr);

// The result of a `cofferctl scrub --config` run, kept in a small file so that status shows
// manual scrubs that did not go through the mount (see scrub's --record).
struct ScrubRecord {
  std::int64_t unix_time = 0;
  std::string config;
  std::uint64_t checked = 0, repaired = 0, moved = 0, unreachable = 0, unrecoverable = 0;
};
std::string FormatScrubRecord(const ScrubRecord& r);   // one key=value line
std::optional<ScrubRecord> ParseScrubRecord(const std::string& line);

struct Verdict {
  int code = kStatusHealthy;
  std::vector<std::string> reasons;  // empty when healthy
  const char* word() const {
    return code == kStatusHealthy ? "healthy" : code == kStatusDegraded ? "DEGRADED"
                                                                         : "NOT SERVING";
  }
};
Verdict Judge(const Fields& f);

void RenderText(const Fields& f, const Verdict& v, const std::optional<ScrubRecord>& manual,
                std::ostream& out);
void RenderJson(const Fields& f, const Verdict& v, const std::optional<ScrubRecord>& manual,
                std::ostream& out);

// The access boxes of the store, from the "box.<id>" fields (cofferfs with storage nodes).
struct BoxView {
  std::string id, state, host, mountpoint;
  std::int64_t heartbeat_unix = 0;
  std::int64_t caught_up_ms = 0;  // 0: never
  bool self = false;
};
std::vector<BoxView> Boxes(const Fields& f);
// A table of the boxes (for `cofferctl boxes` and status), ages relative to `now_unix`.
void RenderBoxes(const std::vector<BoxView>& boxes, std::int64_t now_unix, std::ostream& out);

// JSON string escaping (RFC 8259).
std::string JsonString(const std::string& s);

}  // namespace coffer::ctl
