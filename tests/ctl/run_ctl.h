// Runs cofferctl's Run() in-process with string streams, for the ctl tests.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "ctl/ctl.h"

namespace coffer::ctl::testing {

struct Result {
  int rc;
  std::string out, err;
};

inline Result RunCtl(std::vector<std::string> args) {
  std::ostringstream out, err;
  Io io{out, err, false};
  int rc = Run(args, io);
  return {rc, out.str(), err.str()};
}

}  // namespace coffer::ctl::testing
