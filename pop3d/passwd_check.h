// Start-up checks of coffer-pop3d's passwd-file, so that a broken user file is reported when the
// server starts (and by --check-config), not as "Permission denied" or a failed login at the
// first user's attempt: malformed lines, unknown password schemes, and whether the user the
// server runs as (server.user) can read the file at all.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace coffer::pop3d {

struct PasswdReport {
  std::size_t users = 0;
  std::vector<std::string> problems;  // "FILE:LINE: ..." one per bad line
};

// True for the schemes VerifyPassword() knows.
bool KnownScheme(std::string_view scheme);

// Parses `text` (the contents of `path`) and reports malformed lines and unknown schemes.
PasswdReport CheckPasswdText(std::string_view text, const std::string& path);

// Reads and checks `path`. Throws coffer::Error (the open errno) when it cannot be read.
PasswdReport CheckPasswdFile(const std::string& path);

// Whether `run_as` (a user name; "" = the current user) can open `path` for reading: checked in
// a child process that switches to that user, so nothing changes in this one. Returns "" when
// it can, otherwise the reason ("user vmail cannot read /etc/coffer/coffer-pop3d.passwd: Permission
// denied").
std::string CheckReadableAs(const std::string& path, const std::string& run_as);

}  // namespace coffer::pop3d
