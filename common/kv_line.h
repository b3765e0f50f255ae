// The "key=value key=value ..." lines that the control sockets answer with (cofferfs status,
// verify, scrub): parsed in one place for cofferctl and for cofferfs's own metrics.
#pragma once

#include <map>
#include <string>

namespace coffer {

// "ok a=1 b=2 ... last_error=free text | problem | problem": the fields (words without '=' are
// skipped); `rest` gets what follows the first " | " (verify's problem list). last_error, when
// present, takes the rest of the head, spaces included.
std::map<std::string, std::string> ParseKeyValueLine(const std::string& line,
                                                     std::string* rest = nullptr);

}  // namespace coffer
