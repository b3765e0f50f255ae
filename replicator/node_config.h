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
  std::string play_dead = "off";             // initial play-dead mode (tests only)
  bool keep_first_copies = false;            // for the rollback play-dead mode (tests only)
};

// Reads the settings of `cfg` (rejecting unknown keys) over the defaults. Throws
// config::ConfigError naming file:line:key.
NodeConfig LoadNodeConfig(const config::Config& cfg);

// Checks that required settings are present; throws config::ConfigError.
void ValidateNodeConfig(const NodeConfig& c);

}  // namespace coffer::replicator
