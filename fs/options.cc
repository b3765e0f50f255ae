// Mount option parsing (see options.h).
#include "fs/options.h"

#include <cerrno>
#include <charconv>
#include <set>
#include <string_view>

#include "common/error.h"

namespace coffer::fs {

void ApplyConfig(const config::Config& cfg, MountOptions* out) {
  cfg.RejectUnknown({"keyfile", "passfile", "control_socket", "log_level", "log_syslog",
                     "log_file", "metrics_listen", "nonempty",
                     "allow_other", "sync", "commit_interval_ms", "entry_timeout",
                     "attr_timeout", "negative_timeout", "keep_cache", "readdirplus",
                     "max_threads",
                     "replicator", "degraded", "cache_limit_mb", "scrub_interval_s",
                     "tombstone_grace_s", "follow_interval_ms", "heartbeat_s"});
  out->keyfile = cfg.String("keyfile", out->keyfile);
  out->passfile = cfg.String("passfile", out->passfile);
  out->control_socket = cfg.String("control_socket", out->control_socket);
  out->log_level = cfg.String("log_level", out->log_level);
  out->log_syslog = cfg.Bool("log_syslog", out->log_syslog);
  out->log_file = cfg.String("log_file", out->log_file);
  out->metrics_listen = cfg.String("metrics_listen", out->metrics_listen);
  out->nonempty = cfg.Bool("nonempty", out->nonempty);
  out->allow_other = cfg.Bool("allow_other", out->allow_other);
  out->sync = cfg.Bool("sync", out->sync);
  out->commit_interval_ms =
      static_cast<std::uint32_t>(cfg.Int("commit_interval_ms", out->commit_interval_ms, 1, 60000));
  out->entry_timeout = cfg.Double("entry_timeout", out->entry_timeout, 0, 3600);
  out->attr_timeout = cfg.Double("attr_timeout", out->attr_timeout, 0, 3600);
  out->negative_timeout = cfg.Double("negative_timeout", out->negative_timeout, 0, 3600);
  out->keep_cache = cfg.Bool("keep_cache", out->keep_cache);
  out->readdirplus = cfg.Bool("readdirplus", out->readdirplus);
  out->max_threads = static_cast<std::uint32_t>(cfg.Int("max_threads", out->max_threads, 1, 256));
  out->replicator = cfg.String("replicator", out->replicator);
  std::string degraded = cfg.String("degraded", out->degraded_queue ? "queue" : "fail");
  if (degraded != "fail" && degraded != "queue") cfg.Fail("degraded", "must be fail or queue");
  out->degraded_queue = degraded == "queue";
  out->cache_limit_mb =
      static_cast<std::uint64_t>(cfg.Int("cache_limit_mb", static_cast<std::int64_t>(out->cache_limit_mb), 0, INT64_MAX / (1 << 20)));
  out->scrub_interval_s = static_cast<std::uint32_t>(
      cfg.Int("scrub_interval_s", out->scrub_interval_s, 0, 365 * 24 * 3600));
  out->tombstone_grace_s = static_cast<std::uint32_t>(
      cfg.Int("tombstone_grace_s", out->tombstone_grace_s, 0, 3650 * 24 * 3600));
  out->follow_interval_ms = static_cast<std::uint32_t>(
      cfg.Int("follow_interval_ms", out->follow_interval_ms, 50, 3600 * 1000));
  out->heartbeat_s = static_cast<std::uint32_t>(cfg.Int("heartbeat_s", out->heartbeat_s, 1, 3600));
}

namespace {

std::vector<std::pair<std::string, std::string>> Split(const std::vector<std::string>& strings) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string& s : strings) {
    std::size_t start = 0;
    while (start <= s.size()) {
      std::size_t comma = s.find(',', start);
      if (comma == std::string::npos) comma = s.size();
      std::string item = s.substr(start, comma - start);
      start = comma + 1;
      if (item.empty()) continue;
      std::size_t eq = item.find('=');
      if (eq == std::string::npos) {
        out.emplace_back(item, "");
      } else {
        out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
      }
    }
  }
  return out;
}

double ParseDouble(const std::string& key, const std::string& value, double min, double max) {
  try {
    std::size_t used = 0;
    double d = std::stod(value, &used);
    if (used == value.size() && d >= min && d <= max) return d;
  } catch (const std::exception&) {
  }
  throw Error(EINVAL, "option " + key + "=" + value + ": expected a number in [" +
                          std::to_string(min) + ", " + std::to_string(max) + "]");
}

bool ParseBool(const std::string& key, const std::string& value) {
  if (value.empty() || value == "1" || value == "true" || value == "yes") return true;
  if (value == "0" || value == "false" || value == "no") return false;
  throw Error(EINVAL, "option " + key + "=" + value + ": expected a boolean");
}

}  // namespace

void ApplyOptionStrings(const std::vector<std::string>& option_strings, MountOptions* out) {
  auto items = Split(option_strings);
  for (const auto& [key, value] : items) {
    if (key == "config") {
      if (value.empty()) throw Error(EINVAL, "option config= needs a file");
      out->config_file = value;
      ApplyConfig(config::Config::Load(value), out);
    }
  }
  static const std::set<std::string, std::less<>> kIgnored = {
      "rw", "defaults", "auto", "noauto", "nofail", "_netdev", "user", "users", "nouser",
      "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime", "relatime",
      "default_permissions"};
  for (const auto& [key, value] : items) {
    if (key == "config") continue;
    if (key == "keyfile") {
      out->keyfile = value;
    } else if (key == "passfile") {
      out->passfile = value;
    } else if (key == "control" || key == "control_socket") {
      out->control_socket = value;
    } else if (key == "log_level") {
      out->log_level = value;
    } else if (key == "log_syslog") {
      out->log_syslog = ParseBool(key, value);
    } else if (key == "log_file") {
      out->log_file = value;
    } else if (key == "metrics_listen") {
      out->metrics_listen = value;
    } else if (key == "nonempty") {
      out->nonempty = ParseBool(key, value);
    } else if (key == "allow_other") {
      out->allow_other = ParseBool(key, value);
    } else if (key == "ro") {
      out->read_only = true;
    } else if (key == "sync") {
      out->sync = true;
    } else if (key == "async") {
      out->sync = false;
    } else if (key == "commit_interval_ms") {
      out->commit_interval_ms = static_cast<std::uint32_t>(ParseDouble(key, value, 1, 60000));
    } else if (key == "entry_timeout") {
      out->entry_timeout = ParseDouble(key, value, 0, 3600);
    } else if (key == "attr_timeout") {
      out->attr_timeout = ParseDouble(key, value, 0, 3600);
    } else if (key == "negative_timeout") {
      out->negative_timeout = ParseDouble(key, value, 0, 3600);
    } else if (key == "keep_cache") {
      out->keep_cache = ParseBool(key, value);
    } else if (key == "readdirplus") {
      out->readdirplus = ParseBool(key, value);
    } else if (key == "max_threads") {
      out->max_threads = static_cast<std::uint32_t>(ParseDouble(key, value, 1, 256));
    } else if (key == "replicator") {
      out->replicator = value;
    } else if (key == "degraded") {
      if (value != "fail" && value != "queue")
        throw Error(EINVAL, "option degraded=" + value + ": expected fail or queue");
      out->degraded_queue = value == "queue";
    } else if (key == "cache_limit_mb") {
      out->cache_limit_mb = static_cast<std::uint64_t>(ParseDouble(key, value, 0, 1e12));
    } else if (key == "scrub_interval_s") {
      out->scrub_interval_s = static_cast<std::uint32_t>(ParseDouble(key, value, 0, 365 * 24 * 3600));
    } else if (key == "tombstone_grace_s") {
      out->tombstone_grace_s =
          static_cast<std::uint32_t>(ParseDouble(key, value, 0, 3650.0 * 24 * 3600));
    } else if (key == "follow_interval_ms") {
      out->follow_interval_ms = static_cast<std::uint32_t>(ParseDouble(key, value, 50, 3600 * 1000));
    } else if (key == "heartbeat_s") {
      out->heartbeat_s = static_cast<std::uint32_t>(ParseDouble(key, value, 1, 3600));
    } else if (key == "debug") {
      out->debug = true;
      out->foreground = true;
    } else if (kIgnored.count(key) || key.rfind("x-", 0) == 0 || key.rfind("comment=", 0) == 0) {
      continue;
    } else {
      throw Error(EINVAL, "unknown mount option '" + key + "'");
    }
  }
}

}  // namespace coffer::fs
