// Logging for every coffer program: spdlog to stderr, syslog and/or a file, with levels.
//
// The same meaning everywhere: stderr is always on for daemons in the foreground (under
// systemd that is the journal, and the lines then carry no timestamp of their own); --syslog
// (log_syslog, log.syslog) adds syslog(3) with facility daemon; log_file adds a file (appended,
// reopened by SIGHUP reloads). Nothing is ever logged only to a sink that may not exist: see
// SyslogAvailable().
//
// After Init() use spdlog's free functions (spdlog::info(...), spdlog::warn(...)). Rules that
// hold everywhere (STYLE.md §12): never log key material (the key types in crypto.h have no
// formatter, so trying does not compile), never log message content, and never log mail names or
// headers unless an explicit debug option says so.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace coffer::log {

struct Options {
  std::string program = "coffer";  // syslog ident and stderr prefix
  spdlog::level::level_enum level = spdlog::level::info;
  bool to_stderr = true;
  bool to_syslog = false;
  int syslog_facility = 3 << 3;  // LOG_DAEMON
  std::string file;              // "" = no log file
};

// Installs the default logger. Safe to call again (replaces the previous one). Throws
// coffer::Error naming the file when `file` cannot be opened.
void Init(const Options& options);

// Changes the level of the default logger (SIGHUP reloads).
void SetLevel(spdlog::level::level_enum level);

// The name of a level as ParseLevel() reads it ("info", "warn", ...).
std::string LevelName(spdlog::level::level_enum level);

// True when syslog(3) has somewhere to go (/dev/log exists). Without it every syslog line is
// silently lost, so programs keep another sink then.
bool SyslogAvailable();

// "trace", "debug", "info", "warn"/"warning", "error", "critical", "off".
std::optional<spdlog::level::level_enum> ParseLevel(std::string_view name);

// Names the valid levels, for error messages and --help.
inline constexpr std::string_view kLevelNames = "trace|debug|info|warn|error|critical|off";

}  // namespace coffer::log
