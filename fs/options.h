// Mount options of cofferfs: from the config file (TOML, config=FILE) and from -o, which wins.
// Kept apart from main.cc so that tests check parsing without mounting.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"

namespace coffer::fs {

struct MountOptions {
  std::string state_dir;
  std::string mountpoint;
  bool foreground = false;
  bool debug = false;  // libfuse request tracing (implies foreground)

  std::string config_file;
  std::string keyfile;         // required: the key file (coffer-keytool init)
  std::string passfile;        // passphrase file for a passphrase-protected key file
  std::string control_socket;  // default: STATE_DIR/control.sock
  std::string log_level = "info";
  bool log_syslog = false;     // also log to syslog (in the background without log_file: on)
  std::string log_file;        // also log to this file
  std::string metrics_listen;  // HOST:PORT of the Prometheus listener; "" = off
  bool nonempty = false;       // allow mounting over a non-empty directory
  bool allow_other = false;
  bool read_only = false;
  bool sync = true;            // namespace changes durable before they return
  std::uint32_t commit_interval_ms = 200;
  double entry_timeout = 1.0;
  double attr_timeout = 1.0;
  double negative_timeout = 1.0;
  bool keep_cache = true;
  bool readdirplus = true;       // listings carry the entries' attributes (FUSE readdirplus)
  std::uint32_t max_threads = 16;
  // Storage nodes: the replicator client config; "" = local only.
  std::string replicator;
  bool degraded_queue = false;          // degraded=fail|queue
  std::uint64_t cache_limit_mb = 0;     // 0: keep every chunk locally
  std::uint32_t scrub_interval_s = 3600;
  std::uint32_t tombstone_grace_s = 7 * 24 * 3600;
  std::uint32_t follow_interval_ms = 500;  // reading the nodes' feeds (other boxes' changes)
  std::uint32_t heartbeat_s = 30;          // this box's record on the nodes
};

// Applies a config file's settings. Throws config::ConfigError naming file:line:key.
void ApplyConfig(const config::Config& cfg, MountOptions* out);

// Splits "-o" strings ("a=b,c") into options and applies them; a config=FILE option is applied
// first (so that the other -o options override the file). Standard mount(8) options with no
// meaning here (rw, defaults, auto, noauto, nofail, _netdev, user, dev, suid, exec, x-*, ...)
// are accepted and ignored. Throws coffer::Error(EINVAL) naming an unknown or malformed option.
void ApplyOptionStrings(const std::vector<std::string>& option_strings, MountOptions* out);

// The config keys and -o options, for --help and the man page test.
inline constexpr const char* kConfigKeys[] = {
    "keyfile", "passfile", "control_socket", "log_level", "log_syslog", "log_file",
    "metrics_listen", "nonempty", "allow_other", "sync",
    "commit_interval_ms", "entry_timeout", "attr_timeout", "negative_timeout", "keep_cache",
    "readdirplus", "max_threads", "replicator", "degraded", "cache_limit_mb", "scrub_interval_s",
    "tombstone_grace_s", "follow_interval_ms", "heartbeat_s"};

}  // namespace coffer::fs
