// The replicator's client config (examples/replicator.toml): this box's CURVE key pair, the node
// set, R, W, timeouts. Shared by cofferfs and cofferctl.
#pragma once

#include <string>

#include "common/config.h"
#include "replicator/replicator.h"

namespace coffer::replicator {

struct ReplicatorConfig {
  ReplicatorOptions options;     // without verifier: the program plugs in its own
  std::uint64_t box_id = 0;      // this box's id in versions
  std::string secret_key_file;
};

// Reads the [replicator] settings of `cfg` (the whole file when `table` is empty) and loads the
// keys they name. Throws config::ConfigError naming file:line:key, or coffer::Error for a
// missing or malformed key file.
ReplicatorConfig LoadReplicatorConfig(const config::Config& cfg);

}  // namespace coffer::replicator
