// See error.h.
#include "common/error.h"

#include <cerrno>
#include <cstring>

namespace coffer {

void ThrowErrno(std::string_view what) { ThrowErrno(errno, what); }

void ThrowErrno(int err, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  throw Error(err, std::move(msg));
}

}  // namespace coffer
