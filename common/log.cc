// See log.h.
#include "common/log.h"

#include "common/error.h"
#include "common/service.h"

#include <sys/stat.h>
#include <syslog.h>

#include <memory>
#include <vector>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>

namespace coffer::log {

void Init(const Options& options) {
  std::vector<spdlog::sink_ptr> sinks;
  if (options.to_stderr) {
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    // The journal stamps every line itself.
    sink->set_pattern(service::StderrIsJournal() ? "%l: %v" : "%Y-%m-%dT%H:%M:%S.%e %n[%P] %l: %v");
    sinks.push_back(std::move(sink));
  }
  if (!options.file.empty()) {
    try {
      auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file);
      sink->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n[%P] %l: %v");
      sinks.push_back(std::move(sink));
    } catch (const spdlog::spdlog_ex& e) {
      throw Error(EACCES, "cannot open log file " + options.file + ": " + e.what());
    }
  }
  if (options.to_syslog) {
    auto sink = std::make_shared<spdlog::sinks::syslog_sink_mt>(
        options.program, LOG_PID, options.syslog_facility, /*enable_formatting=*/false);
    sink->set_pattern("%v");
    sinks.push_back(std::move(sink));
  }
  auto logger = std::make_shared<spdlog::logger>(options.program, sinks.begin(), sinks.end());
  logger->set_level(options.level);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

void SetLevel(spdlog::level::level_enum level) { spdlog::default_logger()->set_level(level); }

std::string LevelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

bool SyslogAvailable() {
  struct stat st {};
  return ::stat("/dev/log", &st) == 0 && S_ISSOCK(st.st_mode);
}

std::optional<spdlog::level::level_enum> ParseLevel(std::string_view name) {
  if (name == "trace") return spdlog::level::trace;
  if (name == "debug") return spdlog::level::debug;
  if (name == "info") return spdlog::level::info;
  if (name == "warn" || name == "warning") return spdlog::level::warn;
  if (name == "error") return spdlog::level::err;
  if (name == "critical") return spdlog::level::critical;
  if (name == "off") return spdlog::level::off;
  return std::nullopt;
}

}  // namespace coffer::log
