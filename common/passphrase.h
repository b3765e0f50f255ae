// Reading passphrases into locked memory: from a terminal without echo, from a file, or from an
// inherited file descriptor. Never from the command line (it would show in ps and shell history).
#pragma once

#include <optional>
#include <string>

#include "common/crypto.h"

namespace coffer::passphrase {

inline constexpr std::size_t kMaxLength = 1024;

// Where a passphrase comes from. Exactly one of `file` and `fd` may be set; if neither is, the
// controlling terminal is used (and its absence is an error).
struct Source {
  std::optional<std::string> file;  // first line of the file (trailing CR/LF stripped)
  std::optional<int> fd;            // first line read from this descriptor
};

// Reads one passphrase. `prompt` is shown on the terminal; with `confirm`, a terminal user types
// it twice and a mismatch is an error. Empty passphrases are refused. Throws coffer::Error
// (ENXIO: no terminal; EINVAL: empty, too long or mismatch).
crypto::SecretBytes Read(const Source& source, const std::string& prompt, bool confirm);

// A warning when the passphrase file `path` can be read or written by anyone but its owner
// ("passfile /x is readable by group and others (mode 0644): chmod 600 /x"), or nullopt when it
// is private (or cannot be examined: Read() reports that). Programs print it, then go on: the
// passphrase is already exposed, refusing would only break the boot.
std::optional<std::string> LoosePermissions(const std::string& path);

}  // namespace coffer::passphrase
