// coffer-node: a storage node. Parses options, loads keys, locks and opens the store and runs
// the server; everything else is in replicator_core (node_server, handler, store).
//
// Signals are taken by one thread with sigwait(2) (they are blocked everywhere else, so ZeroMQ's
// and LMDB's threads never see them): SIGTERM/SIGINT stop the server, SIGHUP reloads what can be
// reloaded (the allow list, the admin key, the log level) and logs what changed.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cerrno>
#include <chrono>
#include <iostream>
#include <thread>

#include "common/error.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/metrics_http.h"
#include "common/service.h"
#include "common/sysexits.h"
#include "common/version.h"
#include "replicator/curve.h"
#include "replicator/node_config.h"
#include "replicator/node_server.h"
#include "replicator/play_dead.h"

namespace {

using namespace coffer;
using namespace coffer::replicator;

int ExitCodeFor(int err) {
  switch (err) {
    case ENOENT: return exits::kNoInput;
    case EACCES: case EPERM: return exits::kNoPerm;
    case EADDRINUSE: case EADDRNOTAVAIL: case EWOULDBLOCK: return exits::kUnavailable;
    case ENOSPC: case EIO: return exits::kIoErr;
    case EINVAL: return exits::kConfig;
    default: return exits::kSoftware;
  }
}

// The command line, kept so that a reload applies the same overrides to the re-read file.
struct Flags {
  std::string config_path;
  std::string data_dir, secret_key, allowed_keys, admin_key, node_id, log_level, log_file,
      metrics_listen, play_dead;
  std::vector<std::string> listen;
  std::int64_t max_object_size = 0, max_batch = 0, max_message_size = 0;
  bool syslog = false, keep_first_copies = false;
};

NodeConfig BuildConfig(const Flags& f) {
  NodeConfig cfg = LoadNodeConfig(f.config_path.empty() ? config::Config::Empty()
                                                        : config::Config::Load(f.config_path));
  if (!f.data_dir.empty()) cfg.data_dir = f.data_dir;
  if (!f.listen.empty()) cfg.listen = f.listen;
  if (!f.secret_key.empty()) cfg.secret_key_file = f.secret_key;
  if (!f.allowed_keys.empty()) cfg.allowed_keys_file = f.allowed_keys;
  if (!f.admin_key.empty()) cfg.admin_key_file = f.admin_key;
  if (!f.node_id.empty()) cfg.node_id = f.node_id;
  if (f.max_object_size > 0) cfg.limits.max_object_size = static_cast<std::size_t>(f.max_object_size);
  if (f.max_batch > 0) cfg.limits.max_batch = static_cast<std::size_t>(f.max_batch);
  if (f.max_message_size > 0) {
    cfg.limits.max_message_size = static_cast<std::size_t>(f.max_message_size);
  }
  if (!f.log_level.empty()) cfg.log_level = f.log_level;
  if (!f.log_file.empty()) cfg.log_file = f.log_file;
  if (!f.metrics_listen.empty()) cfg.metrics_listen = f.metrics_listen;
  if (f.syslog) cfg.syslog = true;
  if (!f.play_dead.empty()) cfg.play_dead = f.play_dead;
  if (f.keep_first_copies) cfg.keep_first_copies = true;
  ValidateNodeConfig(cfg);
  if (!log::ParseLevel(cfg.log_level)) {
    throw config::ConfigError("log_level must be one of " + std::string(log::kLevelNames));
  }
  return cfg;
}

// Takes an exclusive lock on DATA_DIR/lock for the life of the process, so that a second node
// on the same store fails at start-up instead of sharing the LMDB environment. The file holds
// the PID of the holder, for the error message.
UniqueFd LockDataDir(const std::string& dir) {
  std::string path = dir + "/lock";
  UniqueFd fd = OpenFile(path, O_RDWR | O_CREAT, 0600);
  if (::flock(fd.Get(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    std::string holder = ReadAllFd(fd.Get(), 64, path);
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    if (err == EWOULDBLOCK) {
      throw Error(EWOULDBLOCK, "data_dir " + dir + " is in use by another coffer-node" +
                                   (holder.empty() ? "" : " (pid " + holder + ")"));
    }
    ThrowErrno(err, "cannot lock " + path);
  }
  if (::ftruncate(fd.Get(), 0) != 0) ThrowErrno("truncate " + path);
  WriteAll(fd.Get(), std::to_string(::getpid()) + "\n", path);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"coffer-node: a coffer storage node (ZeroMQ + CURVE over an LMDB object store)",
               "coffer-node"};
  Flags f;
  app.set_version_flag("-V,--version", std::string("coffer-node ") + kVersion);
  app.add_option("-c,--config", f.config_path, "TOML config file (see coffer-node(8))");
  app.add_option("--data-dir", f.data_dir, "directory of the LMDB object store");
  app.add_option("--listen", f.listen, "endpoint to listen on, e.g. tcp://127.0.0.1:7401 (repeat)");
  app.add_option("--secret-key", f.secret_key,
                 "file with the node's CURVE secret key (Z85); a relative name is looked up in "
                 "$CREDENTIALS_DIRECTORY when set");
  app.add_option("--allowed-keys", f.allowed_keys, "file of box public keys (Z85), one a line");
  app.add_option("--admin-key", f.admin_key, "file with the admin public key (Z85)");
  app.add_option("--node-id", f.node_id, "name reported by STAT");
  app.add_option("--max-object-size", f.max_object_size, "largest sealed object in bytes");
  app.add_option("--max-batch", f.max_batch, "most objects or ids in one request");
  app.add_option("--max-message-size", f.max_message_size, "largest request in bytes");
  app.add_option("--log-level", f.log_level, std::string(log::kLevelNames));
  app.add_option("--log-file", f.log_file, "also log to this file");
  app.add_flag("--syslog", f.syslog, "also log to syslog (facility daemon)");
  app.add_option("--metrics-listen", f.metrics_listen,
                 "serve Prometheus metrics on HOST:PORT (e.g. 127.0.0.1:9401)");
  app.add_option("--play-dead", f.play_dead, std::string("initial play-dead mode (tests): ") + kPlayDeadModes);
  app.add_flag("--keep-first-copies", f.keep_first_copies,
               "keep the first copy of every replaced object, for play-dead rollback (tests)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return e.get_exit_code() == 0 ? 0 : (rc == 0 ? 0 : exits::kUsage);
  }

  NodeConfig cfg;
  try {
    cfg = BuildConfig(f);
  } catch (const Error& e) {
    std::cerr << "coffer-node: " << e.what() << "\n";
    return exits::kConfig;
  }

  log::Options log_options;
  log_options.program = "coffer-node";
  log_options.level = *log::ParseLevel(cfg.log_level);
  log_options.to_syslog = cfg.syslog;
  log_options.file = cfg.log_file;
  try {
    log::Init(log_options);
  } catch (const Error& e) {
    std::cerr << "coffer-node: " << e.what() << "\n";
    return exits::kCantCreate;
  }

  // Before any thread exists, so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  try {
    NodeServerOptions so;
    so.listen = cfg.listen;
    so.server_keys = LoadKeyPair(ResolveCredential(cfg.secret_key_file));
    so.allowed_keys = ReadKeyList(cfg.allowed_keys_file);
    if (!cfg.admin_key_file.empty()) so.admin_key = ReadKeyFile(cfg.admin_key_file);
    so.max_message_size = cfg.limits.max_message_size;
    so.max_group = cfg.max_group;
    so.heartbeat_ms = cfg.heartbeat_ms;
    so.linger_ms = cfg.linger_ms;
    std::vector<std::string> current_keys = so.allowed_keys;
    std::string current_admin = so.admin_key;

    if (mkdir(cfg.data_dir.c_str(), 0700) != 0 && errno != EEXIST) {
      ThrowErrno("cannot create data directory " + cfg.data_dir);
    }
    UniqueFd lock = LockDataDir(cfg.data_dir);
    ObjectStore store(cfg.data_dir, static_cast<std::size_t>(cfg.map_size_mb) << 20,
                      cfg.keep_first_copies);
    if (cfg.keep_first_copies)
      spdlog::warn("keep_first_copies: the first copy of every replaced object is kept (for the "
                   "rollback play-dead mode of tests; never on a production node)");
    RequestHandler handler(store, cfg.node_id, cfg.limits);
    handler.set_play_dead(*ParsePlayDead(cfg.play_dead));

    const auto started = std::chrono::steady_clock::now();
    metrics::Default().AddCollector([&store, &handler, started](metrics::Emitter& e) {
      auto st = store.Stats();
      e.Gauge("coffer_node_objects", "live objects held", "", static_cast<double>(st.objects));
      e.Gauge("coffer_node_tombstones", "tombstones held", "", static_cast<double>(st.tombstones));
      e.Gauge("coffer_node_stored_bytes", "sealed bytes of the live objects", "",
              static_cast<double>(st.bytes));
      e.Counter("coffer_node_feed_seq", "sequence number of the last accepted change", "",
                static_cast<double>(st.seq));
      e.Gauge("coffer_node_uptime_seconds", "seconds since the node started", "",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      e.Gauge("coffer_node_play_dead", "1 when a play-dead mode is on (tests)",
              "mode=\"" + handler.play_dead().ToString() + "\"",
              handler.play_dead().mode == wire::PLAY_DEAD_OFF ? 0 : 1);
    });
    metrics::MetricsServer metrics_server(metrics::Default());
    if (!cfg.metrics_listen.empty()) metrics_server.Start(cfg.metrics_listen);

    NodeServer server(so, handler);

    // SIGTERM/SIGINT: stop; SIGHUP: reload. The thread ends with the server (SIGTERM sent to
    // ourselves when Run() returned for another reason).
    std::thread signal_thread([&] {
      for (;;) {
        int sig = 0;
        if (sigwait(&signals, &sig) != 0) continue;
        if (sig != SIGHUP) {
          spdlog::info("signal {}: stopping", sig);
          service::Stopping();
          server.RequestStop();
          return;
        }
        service::Reloading();
        try {
          NodeConfig next = BuildConfig(f);
          auto keys = ReadKeyList(next.allowed_keys_file);
          std::string admin = next.admin_key_file.empty() ? "" : ReadKeyFile(next.admin_key_file);
          ReloadPlan plan = PlanReload(cfg, next, current_keys, keys, current_admin, admin);
          server.SetKeys(keys, admin);
          log::SetLevel(*log::ParseLevel(next.log_level));
          current_keys = keys;
          current_admin = admin;
          cfg.allowed_keys_file = next.allowed_keys_file;
          cfg.admin_key_file = next.admin_key_file;
          cfg.log_level = next.log_level;
          if (plan.applied.empty() && plan.needs_restart.empty()) {
            spdlog::info("reload: nothing changed");
          }
          for (const auto& line : plan.applied) spdlog::info("reload: {}", line);
          for (const auto& line : plan.needs_restart) spdlog::warn("reload: {}", line);
        } catch (const std::exception& e) {
          spdlog::error("reload failed, keeping the running settings: {}", e.what());
        }
        service::Ready("serving (reloaded)");
      }
    });

    auto stats = store.Stats();
    for (const auto& ep : server.endpoints()) spdlog::info("listening on {}", ep);
    if (!cfg.metrics_listen.empty()) spdlog::info("metrics on {}", metrics_server.url());
    std::string ready = "node " + cfg.node_id + " ready: " + std::to_string(stats.objects) +
                        " objects, " + std::to_string(stats.tombstones) + " tombstones, seq " +
                        std::to_string(stats.seq) + ", " + std::to_string(so.allowed_keys.size()) +
                        " allowed keys" + (so.admin_key.empty() ? "" : " + admin");
    spdlog::info("{}", ready);
    service::Ready(ready);
    try {
      server.Run();
    } catch (...) {
      ::kill(::getpid(), SIGTERM);
      signal_thread.join();
      throw;
    }
    ::kill(::getpid(), SIGTERM);  // ends the signal thread if Run() returned on its own
    signal_thread.join();
    metrics_server.Stop();
    spdlog::info("node {} stopped cleanly", cfg.node_id);
    return 0;
  } catch (const Error& e) {
    spdlog::critical("{}", e.what());
    return ExitCodeFor(e.err());
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return exits::kSoftware;
  }
}
