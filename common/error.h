// coffer::Error: the one exception type of the project (STYLE.md §3).
//
// Everything inside coffer throws coffer::Error (or lets a library exception escape to one of the
// three catch-all places: the FUSE trampoline, the POP3 dispatcher, the node message loop). It
// carries an errno so that the FUSE glue can reply with the right error and the programs can map
// it to an exit code. Expected outcomes (not found, would block, tag mismatch) are values, never
// exceptions.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace coffer {

class Error : public std::runtime_error {
 public:
  // `err` is an errno value (EIO, ENOENT, ...); `what` is a complete, human-readable sentence
  // fragment that names the object concerned (a path, a key, a node).
  Error(int err, std::string what) : std::runtime_error(std::move(what)), err_(err) {}

  int err() const noexcept { return err_; }

 private:
  int err_;
};

// Throws Error(errno, "<what>: <strerror(errno)>"). Call right after the failing system call.
[[noreturn]] void ThrowErrno(std::string_view what);

// Throws Error(err, "<what>: <strerror(err)>").
[[noreturn]] void ThrowErrno(int err, std::string_view what);

}  // namespace coffer
