// coffer-node: a storage node. Parses options, loads keys, opens the store and runs the server;
// everything else is in replicator_core (node_server, handler, store).
#include <signal.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>

#include <cerrno>
#include <iostream>

#include "common/error.h"
#include "common/log.h"
#include "replicator/node_config.h"
#include "replicator/node_server.h"

namespace {

coffer::replicator::NodeServer* g_server = nullptr;

extern "C" void OnSignal(int) {
  if (g_server) g_server->RequestStop();
}

int ExitCodeFor(int err) {
  switch (err) {
    case ENOENT: return 66;
    case EACCES: case EPERM: return 77;
    case EADDRINUSE: case EADDRNOTAVAIL: return 69;
    case ENOSPC: case EIO: return 74;
    case EINVAL: return 78;
    default: return 70;
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace coffer;
  using namespace coffer::replicator;
  CLI::App app{"coffer-node: a coffer storage node (ZeroMQ + CURVE over an LMDB object store)",
               "coffer-node"};
  std::string config_path;
  std::string data_dir, secret_key, allowed_keys, admin_key, node_id, log_level, play_dead;
  std::vector<std::string> listen;
  std::int64_t max_object_size = 0, max_batch = 0, max_message_size = 0;
  bool syslog = false, keep_first_copies = false;
  app.add_option("-c,--config", config_path, "TOML config file (see coffer-node(8))");
  app.add_option("--data-dir", data_dir, "directory of the LMDB object store");
  app.add_option("--listen", listen, "endpoint to listen on, e.g. tcp://127.0.0.1:7401 (repeat)");
  app.add_option("--secret-key", secret_key, "file with the node's CURVE secret key (Z85)");
  app.add_option("--allowed-keys", allowed_keys, "file of box public keys (Z85), one a line");
  app.add_option("--admin-key", admin_key, "file with the admin public key (Z85)");
  app.add_option("--node-id", node_id, "name reported by STAT");
  app.add_option("--max-object-size", max_object_size, "largest sealed object in bytes");
  app.add_option("--max-batch", max_batch, "most objects or ids in one request");
  app.add_option("--max-message-size", max_message_size, "largest request in bytes");
  app.add_option("--log-level", log_level, std::string(log::kLevelNames));
  app.add_flag("--syslog", syslog, "log to syslog instead of stderr");
  app.add_option("--play-dead", play_dead,
                 std::string("initial play-dead mode (tests): ") + kPlayDeadModes);
  app.add_flag("--keep-first-copies", keep_first_copies,
               "keep the first copy of every replaced object, for play-dead rollback (tests)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return e.get_exit_code() == 0 ? 0 : (rc == 0 ? 0 : 64);
  }

  NodeConfig cfg;
  try {
    cfg = LoadNodeConfig(config_path.empty() ? config::Config::Empty()
                                             : config::Config::Load(config_path));
    if (!data_dir.empty()) cfg.data_dir = data_dir;
    if (!listen.empty()) cfg.listen = listen;
    if (!secret_key.empty()) cfg.secret_key_file = secret_key;
    if (!allowed_keys.empty()) cfg.allowed_keys_file = allowed_keys;
    if (!admin_key.empty()) cfg.admin_key_file = admin_key;
    if (!node_id.empty()) cfg.node_id = node_id;
    if (max_object_size > 0) cfg.limits.max_object_size = static_cast<std::size_t>(max_object_size);
    if (max_batch > 0) cfg.limits.max_batch = static_cast<std::size_t>(max_batch);
    if (max_message_size > 0) {
      cfg.limits.max_message_size = static_cast<std::size_t>(max_message_size);
    }
    if (!log_level.empty()) cfg.log_level = log_level;
    if (syslog) cfg.syslog = true;
    if (!play_dead.empty()) cfg.play_dead = play_dead;
    if (keep_first_copies) cfg.keep_first_copies = true;
    ValidateNodeConfig(cfg);
  } catch (const Error& e) {
    std::cerr << "coffer-node: " << e.what() << "\n";
    return 78;
  }

  log::Options log_options;
  log_options.program = "coffer-node";
  auto level = log::ParseLevel(cfg.log_level);
  if (!level) {
    std::cerr << "coffer-node: log level must be one of " << log::kLevelNames << "\n";
    return 78;
  }
  log_options.level = *level;
  log_options.to_stderr = !cfg.syslog;
  log_options.to_syslog = cfg.syslog;
  log::Init(log_options);

  try {
    NodeServerOptions so;
    so.listen = cfg.listen;
    so.server_keys = LoadKeyPair(cfg.secret_key_file);
    so.allowed_keys = ReadKeyList(cfg.allowed_keys_file);
    if (!cfg.admin_key_file.empty()) so.admin_key = ReadKeyFile(cfg.admin_key_file);
    so.max_message_size = cfg.limits.max_message_size;
    so.max_group = cfg.max_group;
    so.heartbeat_ms = cfg.heartbeat_ms;
    so.linger_ms = cfg.linger_ms;

    if (mkdir(cfg.data_dir.c_str(), 0700) != 0 && errno != EEXIST) {
      ThrowErrno("cannot create data directory " + cfg.data_dir);
    }
    ObjectStore store(cfg.data_dir, static_cast<std::size_t>(cfg.map_size_mb) << 20,
                      cfg.keep_first_copies);
    if (cfg.keep_first_copies)
      spdlog::warn("keep_first_copies: the first copy of every replaced object is kept (for the "
                   "rollback play-dead mode of tests; never on a production node)");
    RequestHandler handler(store, cfg.node_id, cfg.limits);
    handler.set_play_dead(*ParsePlayDead(cfg.play_dead));
    NodeServer server(so, handler);
    g_server = &server;
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    auto stats = store.Stats();
    for (const auto& ep : server.endpoints()) spdlog::info("listening on {}", ep);
    spdlog::info("node {} ready: {} objects, {} tombstones, seq {}, {} allowed keys{}",
                 cfg.node_id, stats.objects, stats.tombstones, stats.seq,
                 so.allowed_keys.size(), so.admin_key.empty() ? "" : " + admin");
    server.Run();
    g_server = nullptr;
    spdlog::info("node {} stopped cleanly", cfg.node_id);
    return 0;
  } catch (const Error& e) {
    spdlog::critical("{}", e.what());
    return ExitCodeFor(e.err());
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 70;
  }
}
