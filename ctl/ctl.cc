// cofferctl core: the command table and the commands of issue 3 (node, scrub).
#include "ctl/ctl.h"

#include <CLI/CLI.hpp>

#include <cerrno>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "common/config.h"
#include "common/control_socket.h"
#include "common/crypto.h"
#include "common/error.h"
#include "common/keyfile.h"
#include "replicator/curve.h"
#include "replicator/handler.h"
#include "replicator/replicator_config.h"
#include "replicator/transport.h"

namespace coffer::ctl {
namespace {

using namespace std::chrono_literals;
namespace rep = coffer::replicator;

// ---- node ENDPOINT stat|ping|play-dead MODE -------------------------------------------------

struct NodeArgs {
  std::string target;        // endpoint, or a node id from --config
  std::string action;        // stat | ping | play-dead
  std::vector<std::string> mode;  // play-dead MODE [MS]
  std::string server_key;    // node public key: file or Z85
  std::string key;           // our secret key file
  std::string config;        // replicator config (nodes and key)
  int timeout_ms = 3000;
};

std::string KeyArg(const std::string& value) {
  if (rep::IsZ85Key(value)) return value;
  return rep::ReadKeyFile(value);
}

int NodeMain(const NodeArgs& a, Io& io) {
  rep::NodeAddress node;
  rep::CurveKeyPair keys;
  try {
    node.id = a.target;
    node.endpoint = a.target;
    if (!a.config.empty()) {
      auto cfg = rep::LoadReplicatorConfig(config::Config::Load(a.config));
      keys = cfg.options.client_keys;
      for (const auto& n : cfg.options.nodes) {
        if (n.id == a.target || n.endpoint == a.target) node = n;
      }
    }
    if (!a.server_key.empty()) node.public_key = KeyArg(a.server_key);
    if (!a.key.empty()) keys = rep::LoadKeyPair(a.key);
    if (node.public_key.empty()) {
      io.err << "cofferctl: no public key for node " << a.target
             << " (use --server-key, or --config naming it)\n";
      return kExitUsage;
    }
    if (keys.secret_key.empty()) {
      io.err << "cofferctl: no client key (use --key FILE.key_secret, or --config)\n";
      return kExitUsage;
    }
    if (node.endpoint.find("://") == std::string::npos) {
      io.err << "cofferctl: " << a.target << " is neither an endpoint nor a node in --config\n";
      return kExitUsage;
    }
  } catch (const Error& e) {
    io.err << "cofferctl: " << e.what() << "\n";
    return kExitConfig;
  }

  rep::wire::Request req;
  if (a.action == "stat") {
    req.mutable_stat();
  } else if (a.action == "ping") {
    req.mutable_ping();
  } else if (a.action == "play-dead") {
    std::string text;
    for (const auto& m : a.mode) text += (text.empty() ? "" : " ") + m;
    auto p = rep::ParsePlayDead(text);
    if (!p) {
      io.err << "cofferctl: play-dead MODE is off|silent|refuse|corrupt|slow MS\n";
      return kExitUsage;
    }
    req.mutable_admin()->set_play_dead(p->mode);
    req.mutable_admin()->set_slow_ms(p->slow_ms);
  } else {
    io.err << "cofferctl: node: unknown action " << a.action << " (stat|ping|play-dead)\n";
    return kExitUsage;
  }

  rep::Transport t({node}, keys);
  // The connection (CURVE handshake) is set up asynchronously: until it is, a send fails as
  // unreachable (ZMQ_IMMEDIATE), so retry within the timeout.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(a.timeout_ms);
  rep::CallResult r;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) break;
    r = t.Call(0, req, left).get();
    if (r.status != rep::CallStatus::kUnreachable) break;
    std::this_thread::sleep_for(20ms);
  }
  if (r.status == rep::CallStatus::kNodeError) {
    io.err << "cofferctl: " << r.Describe(node) << "\n";
    return r.reply.error().code() == rep::wire::ERROR_DENIED ? kExitNoPerm : kExitUnavailable;
  }
  if (r.status != rep::CallStatus::kOk) {
    io.err << "cofferctl: " << r.Describe(node) << " (no answer within " << a.timeout_ms
           << " ms: down, playing dead, or our key is not on its allow list)\n";
    return kExitUnavailable;
  }
  if (a.action == "stat" && r.reply.has_stat()) {
    const auto& s = r.reply.stat();
    io.out << "node        " << s.node_id() << " (" << node.endpoint << ")\n"
           << "objects     " << s.objects() << "\n"
           << "tombstones  " << s.tombstones() << "\n"
           << "bytes       " << s.bytes() << "\n"
           << "seq         " << s.seq() << "\n"
           << "uptime      " << std::fixed << std::setprecision(1)
           << static_cast<double>(s.uptime_ms()) / 1000 << " s\n"
           << "requests    " << s.requests() << "\n"
           << "errors      " << s.errors() << "\n"
           << "play-dead   " << s.play_dead() << "\n";
  } else if (a.action == "ping") {
    io.out << "node " << node.id << ": reply in " << std::fixed << std::setprecision(2)
           << static_cast<double>(r.latency.count()) / 1000 << " ms\n";
  } else if (r.reply.has_admin()) {
    io.out << "node " << node.id << ": play-dead " << r.reply.admin().play_dead() << "\n";
  } else {
    io.err << "cofferctl: unexpected reply from " << node.endpoint << "\n";
    return kExitSoftware;
  }
  return kExitOk;
}

// ---- scrub --config FILE ----------------------------------------------------------------------

struct ScrubArgs {
  std::string config;
  std::string key_file;  // optional: verify with the key (GCM); otherwise structure + majority
  bool quiet = false;
};

int ScrubMain(const ScrubArgs& a, Io& io) {
  rep::ReplicatorConfig cfg;
  std::optional<crypto::Keyring> keyring;
  try {
    cfg = rep::LoadReplicatorConfig(config::Config::Load(a.config));
    if (!a.key_file.empty()) {
      keyring = keyfile::Load(a.key_file, nullptr).MakeKeyring();
    }
  } catch (const Error& e) {
    io.err << "cofferctl: " << e.what() << "\n";
    return kExitConfig;
  }
  if (keyring) {
    const crypto::Keyring* k = &*keyring;
    cfg.options.verifier = [k](const crypto::ObjectId& id, std::string_view sealed) {
      auto info = crypto::Inspect(sealed);
      return info && crypto::Open(*k, info->kind, id, sealed).has_value();
    };
  } else {
    // Without the key only the structure can be checked; copies that differ are settled by
    // majority of digests (see Replicator::Scrub).
    cfg.options.verifier = [](const crypto::ObjectId&, std::string_view sealed) {
      return crypto::Inspect(sealed).has_value();
    };
  }
  rep::Replicator replicator(std::move(cfg.options));
  // Let the connections come up before the first LIST.
  for (std::size_t i = 0; i < replicator.transport().size(); ++i) {
    for (int k = 0; k < 25; ++k) {
      try {
        replicator.Stat(i);
        break;
      } catch (const Error&) {
        std::this_thread::sleep_for(40ms);
      }
    }
  }
  auto start = std::chrono::steady_clock::now();
  rep::ScrubReport report = replicator.Scrub([&](std::uint64_t done, std::uint64_t total) {
    if (a.quiet) return;
    if (io.progress_tty) {
      io.err << "\rscrub: " << done << "/" << total << " objects" << std::flush;
    } else {
      io.err << "scrub: " << done << "/" << total << " objects\n";
    }
  });
  if (!a.quiet && io.progress_tty) io.err << "\n";
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  io.out << "checked " << report.checked << ", repaired " << report.repaired << ", moved "
         << report.moved << ", unreachable " << report.unreachable << ", unrecoverable "
         << report.unrecoverable << " (" << std::fixed << std::setprecision(1) << secs << " s"
         << (keyring ? ", verified with the key" : ", structure and digests only") << ")\n";
  for (const auto& n : report.unreachable_nodes) io.out << "node " << n << ": unreachable\n";
  if (report.unrecoverable > 0) return kExitDataErr;
  if (report.unreachable > 0 || !report.unreachable_nodes.empty()) return kExitTempFail;
  return kExitOk;
}

}  // namespace

// ---- fs|pop3d SOCKET status | play-dead MODE -------------------------------------------------
// Both programs speak a one-line protocol on a Unix control socket (fs/control.h,
// pop3d/control.h); cofferctl translates the common "play-dead MODE" vocabulary to each.

struct SocketArgs {
  std::string program;            // "fs" or "pop3d"
  std::string socket;             // control socket path
  std::string action;             // status | play-dead
  std::vector<std::string> mode;  // play-dead MODE [MS]
  int timeout_ms = 5000;
};

int SocketMain(const SocketArgs& a, Io& io) {
  std::string line;
  if (a.action == "status") {
    line = "status";
  } else if (a.action == "play-dead") {
    const std::string mode = a.mode.empty() ? "" : a.mode[0];
    const std::string ms = a.mode.size() > 1 ? a.mode[1] : "";
    const bool fs = a.program == "fs";
    if (mode == "off") {
      line = fs ? "normal" : "play-dead off";
    } else if (mode == "slow" && !ms.empty() &&
               ms.find_first_not_of("0123456789") == std::string::npos) {
      line = (fs ? "slow " : "play-dead slow ") + ms;
    } else if (fs && mode == "eio") {
      line = "eio";
    } else if (!fs && (mode == "refuse" || mode == "stop")) {
      line = "play-dead " + mode;
    } else {
      io.err << "cofferctl: play-dead needs one of "
             << (fs ? "off | eio | slow MS" : "off | refuse | slow MS | stop") << "\n";
      return kExitUsage;
    }
  } else {
    io.err << "cofferctl: unknown action '" << a.action << "' (status | play-dead MODE)\n";
    return kExitUsage;
  }
  std::string answer;
  try {
    answer = control::Request(a.socket, line, a.timeout_ms);
  } catch (const Error& e) {
    io.err << "cofferctl: " << e.what() << "\n";
    return e.err() == EACCES ? kExitNoPerm : kExitUnavailable;
  }
  if (answer.rfind("ok", 0) != 0) {
    io.err << "cofferctl: " << a.program << " answered: " << answer << "\n";
    return kExitDataErr;
  }
  io.out << answer << "\n";
  return kExitOk;
}

std::function<std::function<int(Io&)>(CLI::App&)> AddSocketCommand(const char* program,
                                                                   const char* help,
                                                                   const char* modes) {
  return [=](CLI::App& app) -> std::function<int(Io&)> {
    auto a = std::make_shared<SocketArgs>();
    a->program = program;
    auto* sub = app.add_subcommand(program, help);
    sub->add_option("socket", a->socket, "the program's control socket")->required();
    sub->add_option("action", a->action, "status | play-dead")->required();
    sub->add_option("mode", a->mode, std::string("for play-dead: ") + modes);
    sub->add_option("--timeout", a->timeout_ms, "milliseconds to wait for the answer")
        ->check(CLI::Range(1, 600000));
    return [a, sub](Io& io) { return sub->parsed() ? SocketMain(*a, io) : -1; };
  };
}

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"node", "talk to one storage node: stat, ping, play-dead MODE",
       [](CLI::App& app) -> std::function<int(Io&)> {
         auto a = std::make_shared<NodeArgs>();
         auto* sub = app.add_subcommand("node", "talk to one storage node: stat, ping, play-dead MODE");
         sub->add_option("target", a->target, "node endpoint (tcp://host:port) or node id in --config")
             ->required();
         sub->add_option("action", a->action, "stat | ping | play-dead")->required();
         sub->add_option("mode", a->mode, "for play-dead: off | silent | refuse | corrupt | slow MS");
         sub->add_option("--server-key", a->server_key, "the node's public key (file or Z85)");
         sub->add_option("--key", a->key, "our secret key file (the admin key for play-dead)");
         sub->add_option("--config", a->config, "replicator config: node keys and our key");
         sub->add_option("--timeout", a->timeout_ms, "milliseconds to wait for the node")
             ->check(CLI::Range(1, 600000));
         return [a, sub](Io& io) { return sub->parsed() ? NodeMain(*a, io) : -1; };
       }},
      {"scrub", "walk every node and re-replicate what is missing, old or misplaced",
       [](CLI::App& app) -> std::function<int(Io&)> {
         auto a = std::make_shared<ScrubArgs>();
         auto* sub = app.add_subcommand("scrub", "walk every node and re-replicate what is missing, old or misplaced");
         sub->add_option("--config", a->config, "replicator config (nodes, R, W, our key)")->required();
         sub->add_option("--key-file", a->key_file, "key file (no passphrase) to verify objects");
         sub->add_flag("-q,--quiet", a->quiet, "no progress display");
         return [a, sub](Io& io) { return sub->parsed() ? ScrubMain(*a, io) : -1; };
       }},
      {"fs", "a running cofferfs: status, play-dead off | eio | slow MS",
       AddSocketCommand("fs", "a running cofferfs (its control socket): status, play-dead MODE",
                        "off | eio | slow MS")},
      {"pop3d", "a running coffer-pop3d: status, play-dead off | refuse | slow MS | stop",
       AddSocketCommand("pop3d",
                        "a running coffer-pop3d (its control socket): status, play-dead MODE",
                        "off | refuse | slow MS | stop")},
  };
  return kCommands;
}

int Run(const std::vector<std::string>& args, Io& io) {
  CLI::App app{"cofferctl: status, scrub and play-dead control of a coffer installation",
               "cofferctl"};
  app.require_subcommand(1);
  std::vector<std::function<int(Io&)>> actions;
  for (const auto& c : Commands()) actions.push_back(c.add(app));
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 wants them reversed
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    io.out << app.help();
    return kExitOk;
  } catch (const CLI::CallForAllHelp& e) {
    io.out << app.help("", CLI::AppFormatMode::All);
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    // Subcommand help (`cofferctl node --help`) arrives here too.
    if (e.get_exit_code() == 0) {
      for (auto* sub : app.get_subcommands()) io.out << sub->help();
      if (app.get_subcommands().empty()) io.out << app.help();
      return kExitOk;
    }
    io.err << "cofferctl: " << e.what() << "\n" << "Run with --help for more information.\n";
    return kExitUsage;
  }
  try {
    for (auto& action : actions) {
      int rc = action(io);
      if (rc >= 0) return rc;
    }
  } catch (const std::exception& e) {
    io.err << "cofferctl: " << e.what() << "\n";
    return kExitSoftware;
  }
  io.err << "cofferctl: no command\n";
  return kExitUsage;
}

}  // namespace coffer::ctl
