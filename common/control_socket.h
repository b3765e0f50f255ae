// The client side of the one-line control sockets that every long-running coffer program offers
// for "play dead" and status (DESIGN.md): connect to a Unix stream socket, send one line, read
// one line back. cofferctl, the programs' own --send options and the tests all use this.
#pragma once

#include <string>
#include <string_view>

namespace coffer::control {

// Sends `line` (a newline is appended) to the Unix socket at `socket_path` and returns the
// answer line without its newline. Waits at most `timeout_ms` for the answer. Throws
// coffer::Error: ENAMETOOLONG for a path that does not fit, the connect(2) errno (ENOENT,
// ECONNREFUSED, EACCES) naming the path, ETIMEDOUT when no answer comes.
std::string Request(const std::string& socket_path, std::string_view line, int timeout_ms = 5000);

}  // namespace coffer::control
