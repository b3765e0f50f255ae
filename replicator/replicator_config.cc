// Replicator client config: see replicator_config.h.
#include "replicator/replicator_config.h"

#include <set>

#include "replicator/curve.h"

namespace coffer::replicator {

ReplicatorConfig LoadReplicatorConfig(const config::Config& cfg) {
  cfg.RejectUnknown({"box_id", "secret_key_file", "replicas", "write_quorum", "write_timeout_ms",
                     "read_timeout_ms", "hedge_delay_ms", "admin_timeout_ms", "max_batch",
                     "heartbeat_ms", "hinted_handoff", "max_clock_skew_s", "node"});
  ReplicatorConfig c;
  ReplicatorOptions& o = c.options;
  c.box_id = static_cast<std::uint64_t>(cfg.Int("box_id", 1, 1, INT64_MAX));
  c.secret_key_file = cfg.String("secret_key_file", "");
  if (c.secret_key_file.empty()) cfg.Fail("secret_key_file", "is required");
  o.replicas = static_cast<std::size_t>(cfg.Int("replicas", 3, 1, 16));
  o.write_quorum = static_cast<std::size_t>(cfg.Int("write_quorum", 0, 0, 16));
  o.write_timeout = std::chrono::milliseconds(cfg.Int("write_timeout_ms", 5000, 10, 600000));
  o.read_timeout = std::chrono::milliseconds(cfg.Int("read_timeout_ms", 2000, 10, 600000));
  o.hedge_delay = std::chrono::milliseconds(cfg.Int("hedge_delay_ms", 30, 1, 60000));
  o.admin_timeout = std::chrono::milliseconds(cfg.Int("admin_timeout_ms", 5000, 10, 600000));
  o.max_batch = static_cast<std::size_t>(cfg.Int("max_batch", 256, 1, 65536));
  o.hinted_handoff = cfg.Bool("hinted_handoff", false);
  o.max_clock_skew = std::chrono::seconds(
      cfg.Int("max_clock_skew_s", o.max_clock_skew.count(), 1, 7 * 24 * 3600));
  o.transport.heartbeat_ms = static_cast<int>(cfg.Int("heartbeat_ms", 1000, 100, 600000));
  if (o.write_quorum > o.replicas) cfg.Fail("write_quorum", "must not exceed replicas");
  std::set<std::string> ids;
  for (const config::Config& node : cfg.TableArray("node")) {
    node.RejectUnknown({"id", "endpoint", "public_key", "public_key_file"});
    NodeAddress a;
    a.id = node.String("id", "");
    a.endpoint = node.String("endpoint", "");
    if (a.id.empty()) node.Fail("id", "every [[node]] needs an id");
    if (a.endpoint.empty()) node.Fail("endpoint", "every [[node]] needs an endpoint");
    if (!ids.insert(a.id).second) node.Fail("id", "duplicate node id " + a.id);
    if (auto key = node.OptionalString("public_key")) {
      if (!IsZ85Key(*key)) node.Fail("public_key", "not a Z85 CURVE public key");
      a.public_key = *key;
    } else if (auto file = node.OptionalString("public_key_file")) {
      a.public_key = ReadKeyFile(*file);
    } else {
      node.Fail("public_key", "every [[node]] needs public_key or public_key_file");
    }
    o.nodes.push_back(std::move(a));
  }
  if (o.nodes.empty()) cfg.Fail("node", "no [[node]] configured");
  o.client_keys = LoadKeyPair(c.secret_key_file);
  return c;
}

}  // namespace coffer::replicator
