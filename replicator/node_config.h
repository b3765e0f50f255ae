// NodeConfig: every setting of coffer-node, from its TOML file (examples/coffer-node.toml
// documents each one and its default) and then from command-line flags, which win.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "replicator/handler.h"

namespace coffer::replicator {

struct NodeConfig {
  std::string node_id = "node";
  std::string data_dir;                      // required
  std::vector<std::string> listen = {"tcp://127.0.0.1:7401"};
  std::string secret_key_file;               // required: Z85 one-line CURVE secret key
  std::string allowed_keys_file;             // required: box public keys, one a line
  std::string admin_key_file;                // optional: the admin public key
  HandlerLimits limits;
  std::uint64_t map_size_mb = 65536;
  std::size_t max_group = 64;
  int heartbeat_ms = 1000;
  int linger_ms = 1000;
  std::string log_level = "info";
  bool syslog = false;
  std::string log_file;                      // "" = none
  std::string metrics_listen;                // HOST:PORT of the Prometheus listener; "" = off
  std::string play_dead = "off";             // initial play-dead mode (tests only)
  bool keep_first_copies = false;            // for the rollback play-dead mode (tests only)
};

// Reads the settings of `cfg` (rejecting unknown keys) over the defaults. Throws
// config::ConfigError naming file:line:key.
NodeConfig LoadNodeConfig(const config::Config& cfg);

// Checks that required settings are present; throws config::ConfigError.
void ValidateNodeConfig(const NodeConfig& c);

// A relative secret_key_file is looked up in $CREDENTIALS_DIRECTORY when that is set (systemd's
// LoadCredential= hands a root-only key to a service running as coffer-node); otherwise it is
// used as it is. Returns the path to read.
std::string ResolveCredential(const std::string& path);

// What a SIGHUP reload of `next` over `current` changes, one sentence each, for the log:
// reloadable settings (allow list and admin key files, log level) are described as applied;
// everything else that differs is described as "needs a restart". Empty: nothing changed.
// `current_keys`/`next_keys` are the allow lists as read from the files.
struct ReloadPlan {
  std::vector<std::string> applied;
  std::vector<std::string> needs_restart;
};
ReloadPlan PlanReload(const NodeConfig& current, const NodeConfig& next,
                      const std::vector<std::string>& current_keys,
                      const std::vector<std::string>& next_keys,
                      const std::string& current_admin, const std::string& next_admin);

}  // namespace coffer::replicator
