// NodeConfig: see node_config.h.
#include "replicator/node_config.h"

namespace coffer::replicator {

NodeConfig LoadNodeConfig(const config::Config& cfg) {
  cfg.RejectUnknown({"node_id", "data_dir", "listen", "secret_key_file", "allowed_keys_file",
                     "admin_key_file", "max_object_size", "max_message_size", "max_batch",
                     "max_list", "map_size_mb", "max_group", "heartbeat_ms", "linger_ms",
                     "log_level", "syslog", "play_dead", "keep_first_copies"});
  NodeConfig c;
  c.node_id = cfg.String("node_id", c.node_id);
  c.data_dir = cfg.String("data_dir", "");
  c.listen = cfg.StringArray("listen", c.listen);
  c.secret_key_file = cfg.String("secret_key_file", "");
  c.allowed_keys_file = cfg.String("allowed_keys_file", "");
  c.admin_key_file = cfg.String("admin_key_file", "");
  c.limits.max_object_size = static_cast<std::size_t>(
      cfg.Int("max_object_size", static_cast<std::int64_t>(c.limits.max_object_size), 1,
              std::int64_t{1} << 30));
  c.limits.max_message_size = static_cast<std::size_t>(
      cfg.Int("max_message_size", static_cast<std::int64_t>(c.limits.max_message_size), 1024,
              std::int64_t{1} << 31));
  c.limits.max_batch = static_cast<std::size_t>(
      cfg.Int("max_batch", static_cast<std::int64_t>(c.limits.max_batch), 1, 1 << 20));
  c.limits.max_list = static_cast<std::size_t>(
      cfg.Int("max_list", static_cast<std::int64_t>(c.limits.max_list), 1, 1 << 20));
  c.map_size_mb = static_cast<std::uint64_t>(
      cfg.Int("map_size_mb", static_cast<std::int64_t>(c.map_size_mb), 16, std::int64_t{1} << 26));
  c.max_group = static_cast<std::size_t>(
      cfg.Int("max_group", static_cast<std::int64_t>(c.max_group), 1, 4096));
  c.heartbeat_ms = static_cast<int>(cfg.Int("heartbeat_ms", c.heartbeat_ms, 100, 600000));
  c.linger_ms = static_cast<int>(cfg.Int("linger_ms", c.linger_ms, 0, 600000));
  c.log_level = cfg.String("log_level", c.log_level);
  c.syslog = cfg.Bool("syslog", c.syslog);
  c.play_dead = cfg.String("play_dead", c.play_dead);
  c.keep_first_copies = cfg.Bool("keep_first_copies", c.keep_first_copies);
  if (!ParsePlayDead(c.play_dead))
    cfg.Fail("play_dead", std::string("expected ") + kPlayDeadModes);
  if (c.listen.empty()) cfg.Fail("listen", "at least one endpoint is needed");
  return c;
}

void ValidateNodeConfig(const NodeConfig& c) {
  if (c.data_dir.empty()) throw config::ConfigError("data_dir is not set (--data-dir)");
  if (c.secret_key_file.empty()) {
    throw config::ConfigError("secret_key_file is not set (--secret-key)");
  }
  if (c.allowed_keys_file.empty()) {
    throw config::ConfigError("allowed_keys_file is not set (--allowed-keys)");
  }
  if (c.listen.empty()) throw config::ConfigError("no listen endpoint (--listen)");
  if (!ParsePlayDead(c.play_dead)) throw config::ConfigError("play_dead: bad mode " + c.play_dead);
}

}  // namespace coffer::replicator
