// cofferctl core: the command table and the commands of issue 3 (node, scrub).
#include "ctl/ctl.h"

#include <CLI/CLI.hpp>

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "common/config.h"
#include "common/control_socket.h"
#include "common/crypto.h"
#include "common/error.h"
#include "common/keyfile.h"
#include "fs/object_verifier.h"
#include "replicator/curve.h"
#include "replicator/play_dead.h"
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
      io.err << "cofferctl: play-dead MODE is " << rep::kPlayDeadModes << "\n";
      return kExitUsage;
    }
    req.mutable_admin()->set_play_dead(p->mode);
    req.mutable_admin()->set_slow_ms(p->slow_ms);
    req.mutable_admin()->set_offset_ms(p->offset_ms);
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
  std::string key_file;  // optional: authenticate with the key and repair; otherwise report only
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
  // Without the key nothing a node lists can be authenticated: a lying node could make such a
  // scrub spread forged tombstones or old versions. It only reports what differs.
  if (keyring) {
    cfg.options.verifier =
        fs::MakeVerifier(std::make_shared<const crypto::Keyring>(std::move(*keyring)));
  } else if (!a.quiet) {
    io.err << "cofferctl: scrub without --key-file only reports: without the key nothing the "
              "nodes list can be authenticated, so nothing is repaired\n";
  }
  const bool repair = keyring.has_value();
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
  rep::ScrubReport report = replicator.Scrub(
      [&](std::uint64_t done, std::uint64_t total) {
        if (a.quiet) return;
        if (io.progress_tty) {
          io.err << "\rscrub: " << done << "/" << total << " objects" << std::flush;
        } else {
          io.err << "scrub: " << done << "/" << total << " objects\n";
        }
      },
      repair);
  if (!a.quiet && io.progress_tty) io.err << "\n";
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  io.out << "checked " << report.checked << ", differing " << report.differing << ", repaired "
         << report.repaired << ", moved "
         << report.moved << ", unreachable " << report.unreachable << ", unrecoverable "
         << report.unrecoverable << " (" << std::fixed << std::setprecision(1) << secs << " s"
         << (repair ? ", verified with the key" : ", report only: no key to authenticate with")
         << ")\n";
  for (const auto& n : report.unreachable_nodes) io.out << "node " << n << ": unreachable\n";
  const auto stats = replicator.stats();
  bool lying = false;
  for (std::size_t i = 0; i < stats.nodes.size(); ++i) {
    const auto& t = stats.nodes[i];
    if (t.lies == 0 && t.corrupt == 0 && t.future == 0) continue;
    io.out << "node " << replicator.transport().nodes()[i].id << ": ";
    if (t.lies) io.out << "LYING (" << t.lies << " forged or rolled-back replies) ";
    if (t.corrupt) io.out << t.corrupt << " copies that did not authenticate ";
    if (t.future) io.out << t.future << " versions too far in the future";
    io.out << "\n";
    lying = lying || t.lies > 0;
  }
  if (report.unrecoverable > 0 || lying) return kExitDataErr;
  if (report.unreachable > 0 || !report.unreachable_nodes.empty()) return kExitTempFail;
  if (!repair && report.differing > 0) return 1;  // found, not repaired
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

// ---- status|verify STATE_DIR|MOUNTPOINT -----------------------------------------------------
// A running cofferfs answers on STATE_DIR/control.sock; a mount point leads to its STATE_DIR
// through /proc/self/mountinfo (cofferfs mounts with fsname=STATE_DIR, type fuse.cofferfs).

struct FsArgs {
  std::string target;  // STATE_DIR or MOUNTPOINT
  std::string socket;  // --socket: a control socket elsewhere
  int timeout_ms = 10000;
};

std::string Unescape(const std::string& s) {  // mountinfo's \040 and friends
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() + 0 && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string ResolveControlSocket(const FsArgs& a) {
  if (!a.socket.empty()) return a.socket;
  struct stat st{};
  if (::stat((a.target + "/control.sock").c_str(), &st) == 0) return a.target + "/control.sock";
  char* real = ::realpath(a.target.c_str(), nullptr);
  std::string target = real ? real : a.target;
  std::free(real);
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    std::string word;
    while (fields >> word) f.push_back(word);
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || dash + 2 >= f.end()) continue;
    if (Unescape(f[4]) != target || *(dash + 1) != "fuse.cofferfs") continue;
    return Unescape(*(dash + 2)) + "/control.sock";
  }
  throw Error(ENOENT, a.target + " is neither a cofferfs state directory with a running "
                      "cofferfs (no control.sock) nor a cofferfs mount point");
}

std::map<std::string, std::string> ParseFields(const std::string& answer,
                                               std::string* rest = nullptr) {
  std::map<std::string, std::string> out;
  std::string head = answer;
  if (auto bar = answer.find(" | "); bar != std::string::npos) {
    head = answer.substr(0, bar);
    if (rest) *rest = answer.substr(bar + 3);
  }
  if (auto le = head.find(" last_error="); le != std::string::npos) {
    out["last_error"] = head.substr(le + 12);
    head.resize(le);
  }
  std::istringstream words(head);
  std::string w;
  while (words >> w) {
    auto eq = w.find('=');
    if (eq != std::string::npos) out[w.substr(0, eq)] = w.substr(eq + 1);
  }
  return out;
}

int FsRequest(const FsArgs& a, const std::string& line, Io& io, std::string* answer) {
  try {
    *answer = control::Request(ResolveControlSocket(a), line, a.timeout_ms);
  } catch (const Error& e) {
    io.err << "cofferctl: " << e.what() << "\n";
    return e.err() == EACCES ? kExitNoPerm : kExitUnavailable;
  }
  if (answer->rfind("ok", 0) != 0) {
    io.err << "cofferctl: cofferfs answered: " << *answer << "\n";
    return kExitDataErr;
  }
  return kExitOk;
}

std::string HumanBytes(const std::string& bytes) {
  double b = std::strtod(bytes.c_str(), nullptr);
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  std::ostringstream o;
  o << std::fixed << std::setprecision(u == 0 ? 0 : 1) << b << " " << units[u];
  return o.str();
}

int StatusMain(const FsArgs& a, Io& io) {
  std::string answer;
  if (int rc = FsRequest(a, "status", io, &answer)) return rc;
  auto f = ParseFields(answer);
  io.out << "play-dead   " << f["mode"] << "\n";
  if (f["replicated"] != "yes") {
    io.out << "storage     local only (no storage nodes)\n";
  } else {
    io.out << "state       " << f["state"] << (f["state"] == "healthy" ? "" : "  (changes not yet on W nodes)") << "\n";
    io.out << "nodes       " << f["nodes_up"] << " of " << f["nodes"] << " up, R=" << f["R"]
           << " W=" << f["W"] << ", degraded=" << f["degraded"] << "\n";
    for (const auto& [k, v] : f) {
      if (k.rfind("node.", 0) != 0) continue;
      std::string state = v, latency;
      if (auto slash = v.find('/'); slash != std::string::npos) {
        state = v.substr(0, slash);
        latency = v.substr(slash + 1);
      }
      io.out << "  " << std::left << std::setw(10) << k.substr(5) << state
             << (latency.empty() ? "" : "  " + latency) << "\n";
    }
    io.out << "outbox      " << f["outbox"] << " objects, oldest " << f["outbox_age_s"] << " s\n";
    io.out << "cache       " << HumanBytes(f["cache_bytes"]) << " in " << f["cached_chunks"]
           << " chunks, limit "
           << (f["cache_limit"] == "0" ? std::string("none") : HumanBytes(f["cache_limit"]))
           << "; " << f["evicted"] << " evicted, " << f["fetched"] << " fetched\n";
    io.out << "under-replicated " << f["under_replicated"] << " objects\n";
    if (f["last_scrub_unix"] == "0" || f["last_scrub_unix"].empty()) {
      io.out << "last scrub  never" << (f["scrubbing"] == "yes" ? " (running)" : "") << "\n";
    } else {
      std::time_t t = static_cast<std::time_t>(std::stoll(f["last_scrub_unix"]));
      std::tm tm{};
      ::gmtime_r(&t, &tm);
      io.out << "last scrub  " << std::put_time(&tm, "%Y-%m-%d %H:%M:%S UTC") << ": checked "
             << f["scrub_checked"] << ", repaired " << f["scrub_repaired"] << ", collected "
             << f["scrub_collected"] << ", unreachable " << f["scrub_unreachable"]
             << ", unrecoverable " << f["scrub_unrecoverable"] << "\n";
    }
    if (!f["last_error"].empty()) io.out << "last error  " << f["last_error"] << "\n";
  }
  io.out << answer << "\n";
  return kExitOk;
}

int VerifyMain(const FsArgs& a, Io& io) {
  std::string answer;
  if (int rc = FsRequest(a, "verify", io, &answer)) return rc;
  std::string problems;
  auto f = ParseFields(answer, &problems);
  io.out << "objects " << f["objects"] << ": " << f["ok"] << " ok, " << f["pending"]
         << " pending in the outbox, " << f["missing"] << " missing, " << f["stale"]
         << " stale, " << f["corrupt"] << " differing, " << f["under_quorum"]
         << " on fewer than W nodes; " << f["extra"] << " records only on the nodes; "
         << f["nodes_answered"] << " nodes answered";
  if (!f["liars"].empty() && f["liars"] != "0") io.out << "; " << f["liars"] << " LYING nodes";
  if (!f["unchecked"].empty() && f["unchecked"] != "0")
    io.out << "; " << f["unchecked"] << " claims could not be checked";
  io.out << "\n";
  while (!problems.empty()) {
    auto bar = problems.find(" | ");
    io.out << "  " << problems.substr(0, bar) << "\n";
    problems = bar == std::string::npos ? "" : problems.substr(bar + 3);
  }
  io.out << (f["clean"] == "yes" ? "the tree matches the storage nodes\n"
                                 : "MISMATCH between the tree and the storage nodes\n");
  return f["clean"] == "yes" ? kExitOk : 1;
}

std::function<std::function<int(Io&)>(CLI::App&)> AddFsCommand(const char* name,
                                                               const char* help,
                                                               int (*main)(const FsArgs&, Io&),
                                                               int timeout_ms) {
  return [=](CLI::App& app) -> std::function<int(Io&)> {
    auto a = std::make_shared<FsArgs>();
    a->timeout_ms = timeout_ms;
    auto* sub = app.add_subcommand(name, help);
    sub->add_option("target", a->target, "the cofferfs STATE_DIR or its mount point")->required();
    sub->add_option("--socket", a->socket, "the control socket, if not STATE_DIR/control.sock");
    sub->add_option("--timeout", a->timeout_ms, "milliseconds to wait for the answer")
        ->check(CLI::Range(1, 3600000));
    return [a, sub, main](Io& io) { return sub->parsed() ? main(*a, io) : -1; };
  };
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
      {"status", "a running cofferfs: nodes, outbox, cache, under-replicated objects, last scrub",
       AddFsCommand("status",
                    "a running cofferfs (STATE_DIR or MOUNTPOINT): nodes up/down with latency, "
                    "outbox depth and age, cache use, under-replicated objects, last scrub",
                    StatusMain, 10000)},
      {"verify", "compare a cofferfs tree (names, versions, content digests) with the nodes",
       AddFsCommand("verify",
                    "compare the tree of a running cofferfs (STATE_DIR or MOUNTPOINT) with what "
                    "the storage nodes hold; exit 1 on any difference",
                    VerifyMain, 600000)},
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
