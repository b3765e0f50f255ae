// cofferctl: the admin tool of a coffer installation (status, scrub, play-dead control).
//
// A command table (STYLE.md, after MPD and Dovecot): each command is one entry with its name,
// its help and a function that adds its CLI11 subcommand and returns the action to run; a new
// command is a new entry in kCommands in ctl.cc that touches no other. Run() is the whole
// program minus main(): tests call it with an argv and string streams, no process needed.
//
// Exit codes (common/sysexits.h): 0 ok; status: 1 degraded, 2 not serving; verify: 1 mismatch;
// 64 usage, 65 data error (unrecoverable objects), 69 unavailable (a node or program did not
// answer), 70 internal error, 75 temporary failure (scrub saw unreachable nodes), 77 permission
// denied (admin key refused, wrong passphrase), 78 configuration error.
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "common/sysexits.h"

namespace CLI {
class App;
}

namespace coffer::ctl {

inline constexpr int kExitOk = exits::kOk;  // status also: 1 degraded, 2 not serving
inline constexpr int kExitUsage = exits::kUsage;
inline constexpr int kExitDataErr = exits::kDataErr;
inline constexpr int kExitUnavailable = exits::kUnavailable;
inline constexpr int kExitSoftware = exits::kSoftware;
inline constexpr int kExitTempFail = exits::kTempFail;
inline constexpr int kExitNoPerm = exits::kNoPerm;
inline constexpr int kExitConfig = exits::kConfig;

struct Io {
  std::ostream& out;  // results
  std::ostream& err;  // errors and progress
  bool progress_tty = false;  // progress as one rewritten line (stderr is a terminal)
};

// One entry of the command table. `add` registers the subcommand on `app` and returns the
// action to run when it was chosen (called after parsing; returns an exit code).
struct Command {
  const char* name;
  const char* help;
  std::function<std::function<int(Io&)>(CLI::App& app)> add;
};

// The command table.
const std::vector<Command>& Commands();

// Parses `args` (without the program name) and runs the chosen command.
int Run(const std::vector<std::string>& args, Io& io);

}  // namespace coffer::ctl
