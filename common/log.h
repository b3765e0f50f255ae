// Logging for every coffer program: spdlog to stderr and/or syslog, with levels.
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
};

// Installs the default logger. Safe to call again (replaces the previous one).
void Init(const Options& options);

// "trace", "debug", "info", "warn"/"warning", "error", "critical", "off".
std::optional<spdlog::level::level_enum> ParseLevel(std::string_view name);

// Names the valid levels, for error messages and --help.
inline constexpr std::string_view kLevelNames = "trace|debug|info|warn|error|critical|off";

}  // namespace coffer::log
