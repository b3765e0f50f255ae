// cofferctl core: the command table and its commands (node, scrub, status, verify, fs, pop3d,
// metrics).
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
#include "common/fd.h"
#include "common/keyfile.h"
#include "common/metrics_http.h"
#include "common/passphrase.h"
#include "common/version.h"
#include "ctl/status.h"
#include "ctl/target.h"
#include "fs/object_verifier.h"
#include "replicator/curve.h"
#include "replicator/play_dead.h"
#include "replicator/replicator_config.h"
#include "replicator/transport.h"

namespace coffer::ctl {

struct FsArgs {
  std::string program = "fs";     // "fs" or "pop3d"
  std::string target;             // socket, STATE_DIR, mount point or a path inside the mount
  std::string action;             // status | verify | scrub | play-dead
  std::vector<std::string> mode;  // play-dead MODE [MS]
  std::string socket;             // --socket: a control socket elsewhere
  std::string record;             // status: the cofferctl scrub record to show
  bool json = false;
  int timeout_ms = 10000;
  std::string box;     // retire-box: the box id
  bool force = false;  // retire-box: even with a recent heartbeat
};

int FsScrubMain(const FsArgs& a, Io& io);

namespace {

using namespace std::chrono_literals;
namespace rep = coffer::replicator;

// Where `cofferctl scrub --config` keeps its last result for `cofferctl status`.
constexpr const char* kDefaultScrubRecord = "/var/lib/coffer/last-scrub";

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
  if (a.action == "list") {
    req.mutable_list();
  } else if (a.action == "stat") {
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
    io.err << "cofferctl: node: unknown action " << a.action << " (stat|ping|list|play-dead)\n";
    return kExitUsage;
  }

  rep::Transport t({node}, keys);
  // The connection (CURVE handshake) is set up asynchronously: until it is, a send fails as
  // unreachable (ZMQ_IMMEDIATE), so retry within the timeout (of each call).
  auto call = [&](const rep::wire::Request& request, rep::CallResult* r) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(a.timeout_ms);
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) break;
      *r = t.Call(0, request, left).get();
      if (r->status != rep::CallStatus::kUnreachable) break;
      std::this_thread::sleep_for(20ms);
    }
    if (r->status == rep::CallStatus::kNodeError) {
      io.err << "cofferctl: " << r->Describe(node) << "\n";
      return r->reply.error().code() == rep::wire::ERROR_DENIED ? kExitNoPerm : kExitUnavailable;
    }
    if (r->status != rep::CallStatus::kOk) {
      io.err << "cofferctl: " << r->Describe(node) << " (no answer within " << a.timeout_ms
             << " ms" << (r->status == rep::CallStatus::kTimeout ? ": down or playing dead" : "")
             << ")\n";
      return kExitUnavailable;
    }
    return kExitOk;
  };
  rep::CallResult r;
  if (a.action == "list") {
    // What the node's operator sees of every object: no more than this.
    std::uint64_t count = 0;
    while (true) {
      if (int rc = call(req, &r)) return rc;
      if (!r.reply.has_list()) break;
      const auto& l = r.reply.list();
      for (const auto& e : l.entries()) {
        io.out << "seq=" << e.seq() << " id=" << crypto::ToHex(e.id())
               << " version=" << e.version().hlc() << "." << e.version().box_id()
               << " size=" << e.size() << (e.tombstone() ? " tombstone" : "") << "\n";
        ++count;
      }
      if (l.done() || l.entries_size() == 0) break;
      req.mutable_list()->set_after(l.entries(l.entries_size() - 1).id());
    }
    io.err << count << " objects\n";
    return kExitOk;
  }
  if (int rc = call(req, &r)) return rc;
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
  std::string target;    // a cofferfs mount: scrub through it
  std::string config;
  std::string key_file;  // optional: authenticate with the key and repair; otherwise report only
  std::string passfile;
  std::string record;
  int timeout_ms = 3600000;
  bool quiet = false;
};

// Keeps the result where `cofferctl status` finds it, when that directory exists (the package
// makes /var/lib/coffer); a failure to write is reported but does not change the exit code.
void WriteScrubRecord(const std::string& path, const ScrubRecord& r, Io& io) {
  if (path.empty()) return;
  auto slash = path.rfind('/');
  struct stat st {};
  if (slash != std::string::npos && ::stat(path.substr(0, slash == 0 ? 1 : slash).c_str(), &st) != 0) {
    return;
  }
  try {
    AtomicWriteFile(path, FormatScrubRecord(r) + "\n", 0644);
  } catch (const Error& e) {
    io.err << "cofferctl: cannot keep the scrub record: " << e.what() << "\n";
  }
}

int ScrubMain(const ScrubArgs& a, Io& io) {
  if (!a.target.empty() == !a.config.empty()) {
    io.err << "cofferctl: scrub needs either a cofferfs mount (TARGET) or --config FILE\n";
    return kExitUsage;
  }
  if (!a.target.empty()) {
    FsArgs fa;
    fa.target = a.target;
    fa.timeout_ms = a.timeout_ms;
    return FsScrubMain(fa, io);
  }
  rep::ReplicatorConfig cfg;
  std::optional<crypto::Keyring> keyring;
  try {
    cfg = rep::LoadReplicatorConfig(config::Config::Load(a.config));
    if (!a.key_file.empty()) {
      std::optional<crypto::SecretBytes> pass;
      if (keyfile::NeedsPassphrase(a.key_file)) {
        passphrase::Source src;
        if (!a.passfile.empty()) {
          src.file = a.passfile;
          if (auto w = passphrase::LoosePermissions(a.passfile)) io.err << "cofferctl: warning: " << *w << "\n";
        }
        pass = passphrase::Read(src, "Passphrase for " + a.key_file + ": ", false);
      }
      keyring = keyfile::Load(a.key_file, pass ? &*pass : nullptr).MakeKeyring();
    }
  } catch (const Error& e) {
    io.err << "cofferctl: " << e.what() << "\n";
    return e.err() == ENOKEY || e.err() == EACCES ? kExitNoPerm : kExitConfig;
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
  ScrubRecord rec;
  rec.unix_time = static_cast<std::int64_t>(std::time(nullptr));
  rec.config = a.config;
  rec.checked = report.checked;
  rec.repaired = report.repaired;
  rec.moved = report.moved;
  rec.unreachable = report.unreachable;
  rec.unrecoverable = report.unrecoverable;
  WriteScrubRecord(a.record, rec, io);
  if (report.unrecoverable > 0 || lying) return kExitDataErr;
  if (report.unreachable > 0 || !report.unreachable_nodes.empty()) return kExitTempFail;
  if (!repair && report.differing > 0) return 1;  // found, not repaired
  return kExitOk;
}

}  // namespace

// ---- status|verify|scrub TARGET, fs TARGET ..., pop3d SOCKET ... --------------------------
// cofferfs and coffer-pop3d speak a one-line protocol on a Unix control socket (fs/control.h,
// pop3d/control.h); cofferctl translates the common "play-dead MODE" vocabulary to each.

int Request(const FsArgs& a, const std::string& line, Io& io, std::string* answer,
            bool not_serving_code = false) {
  try {
    std::string socket = !a.socket.empty()      ? a.socket
                         : a.program == "pop3d" ? a.target
                                                : ResolveControlSocket(a.target);
    *answer = control::Request(socket, line, a.timeout_ms);
  } catch (const Error& e) {
    io.err << "cofferctl: " << e.what() << "\n";
    if (not_serving_code) return kStatusNotServing;
    return e.err() == EACCES ? kExitNoPerm : kExitUnavailable;
  }
  if (answer->rfind("ok", 0) != 0) {
    io.err << "cofferctl: " << (a.program == "fs" ? "cofferfs" : "coffer-pop3d")
           << " answered: " << *answer << "\n";
    return kExitDataErr;
  }
  return kExitOk;
}

std::optional<ScrubRecord> ReadScrubRecord(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return ParseScrubRecord(line);
}

int StatusMain(const FsArgs& a, Io& io) {
  std::string answer;
  if (Request(a, "status", io, &answer, /*not_serving_code=*/true) != kExitOk) {
    if (a.json) {
      io.out << "{\"status\":\"not_serving\",\"exit_code\":2,\"reasons\":["
             << JsonString("no answer from cofferfs for " + a.target) << "]}\n";
    } else {
      io.out << "status      NOT SERVING\n  - no answer from cofferfs for " << a.target << "\n";
    }
    return kStatusNotServing;
  }
  Fields f = ParseFields(answer);
  Verdict v = Judge(f);
  auto manual = ReadScrubRecord(a.record);
  if (a.json) {
    RenderJson(f, v, manual, io.out);
  } else {
    RenderText(f, v, manual, io.out);
    io.out << answer << "\n";
  }
  return v.code;
}

int BoxesMain(const FsArgs& a, Io& io) {
  std::string answer;
  if (int rc = Request(a, "status", io, &answer)) return rc;
  Fields f = ParseFields(answer);
  if (f["replicated"] != "yes") {
    io.out << "local only: no storage nodes, no other boxes\n";
    return kExitOk;
  }
  const auto boxes = Boxes(f);
  io.out << boxes.size() << " boxes known to box " << f["box"] << "\n";
  RenderBoxes(boxes, static_cast<std::int64_t>(std::time(nullptr)), io.out);
  return kExitOk;
}

int RetireBoxMain(const FsArgs& a, Io& io) {
  std::string answer;
  const int rc = Request(a, "retire-box " + a.box + (a.force ? " force" : ""), io, &answer);
  if (rc == kExitOk) {
    io.out << answer.substr(std::min<std::size_t>(answer.size(), 3)) << "\n";
    return kExitOk;
  }
  if (rc != kExitDataErr) return rc;  // cofferfs did not answer
  // cofferfs answered "err ..." (Request printed it): what it means.
  if (answer.rfind("err busy", 0) == 0) return kExitTempFail;
  if (answer.rfind("err unknown", 0) == 0) return exits::kNoInput;
  if (answer.rfind("err already", 0) == 0) return kExitOk;
  if (answer.rfind("err retire-box", 0) == 0 || answer.rfind("err usage", 0) == 0)
    return kExitUsage;
  return kExitUnavailable;
}

int VerifyMain(const FsArgs& a, Io& io) {
  std::string answer;
  if (int rc = Request(a, "verify", io, &answer)) return rc;
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

int FsScrubMain(const FsArgs& a, Io& io) {
  std::string answer;
  if (int rc = Request(a, "scrub", io, &answer)) return rc;
  auto f = ParseFields(answer);
  io.out << "checked " << f["checked"] << ", repaired " << f["repaired"] << ", moved "
         << f["moved"] << ", collected " << f["collected"] << ", unreachable "
         << f["unreachable"] << ", unrecoverable " << f["unrecoverable"]
         << " (run by cofferfs, verified with its key)\n";
  if (f["unrecoverable"] != "0") return kExitDataErr;
  if (f["unreachable"] != "0") return kExitTempFail;
  return kExitOk;
}

int PlayDeadMain(const FsArgs& a, Io& io) {
  std::string line;
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
  std::string answer;
  if (int rc = Request(a, line, io, &answer)) return rc;
  io.out << answer << "\n";
  return kExitOk;
}

int SocketMain(const FsArgs& a, Io& io) {
  if (a.action == "play-dead") return PlayDeadMain(a, io);
  if (a.action == "status") {
    std::string answer;
    if (int rc = Request(a, "status", io, &answer)) return rc;
    io.out << answer << "\n";
    return kExitOk;
  }
  if (a.program == "fs" && a.action == "verify") return VerifyMain(a, io);
  if (a.program == "fs" && a.action == "scrub") return FsScrubMain(a, io);
  io.err << "cofferctl: unknown action '" << a.action << "' ("
         << (a.program == "fs" ? "status | verify | scrub | play-dead MODE"
                               : "status | play-dead MODE")
         << ")\n";
  return kExitUsage;
}

// ---- metrics ADDRESS -------------------------------------------------------------------------

struct MetricsArgs {
  std::string address;  // HOST:PORT or http://HOST:PORT/metrics
  int timeout_ms = 5000;
};

int MetricsMain(const MetricsArgs& a, Io& io) {
  std::string address = a.address;
  if (address.rfind("http://", 0) == 0) address = address.substr(7);
  if (auto slash = address.find('/'); slash != std::string::npos) address.resize(slash);
  try {
    io.out << metrics::HttpGet(address, "/metrics", a.timeout_ms);
  } catch (const Error& e) {
    io.err << "cofferctl: metrics from " << a.address << ": " << e.what() << "\n";
    return e.err() == EINVAL ? kExitUsage : kExitUnavailable;
  }
  return kExitOk;
}

std::function<std::function<int(Io&)>(CLI::App&)> AddFsCommand(const char* name,
                                                               const char* help,
                                                               int (*main)(const FsArgs&, Io&),
                                                               int timeout_ms) {
  return [=](CLI::App& app) -> std::function<int(Io&)> {
    auto a = std::make_shared<FsArgs>();
    a->timeout_ms = timeout_ms;
    a->record = kDefaultScrubRecord;
    auto* sub = app.add_subcommand(name, help);
    sub->add_option("target", a->target,
                    "the cofferfs mount point, any path inside it, its STATE_DIR or its control "
                    "socket")
        ->required();
    sub->add_option("--socket", a->socket, "the control socket, if not STATE_DIR/control.sock");
    sub->add_option("--timeout", a->timeout_ms, "milliseconds to wait for the answer")
        ->check(CLI::Range(1, 3600000));
    if (std::string(name) == "retire-box") {
      sub->add_option("box", a->box, "the box id (16 hex digits, from cofferctl boxes)")
          ->required();
      sub->add_flag("--force", a->force,
                    "retire it even though its last heartbeat is recent (it must be down)");
    }
    if (std::string(name) == "status") {
      sub->add_flag("--json", a->json, "one JSON object instead of text (same exit codes)");
      sub->add_option("--scrub-record", a->record,
                      "the record of `cofferctl scrub --config` runs to show")
          ->capture_default_str();
    }
    return [a, sub, main](Io& io) { return sub->parsed() ? main(*a, io) : -1; };
  };
}

std::function<std::function<int(Io&)>(CLI::App&)> AddSocketCommand(const char* program,
                                                                   const char* help,
                                                                   const char* actions,
                                                                   const char* modes) {
  return [=](CLI::App& app) -> std::function<int(Io&)> {
    auto a = std::make_shared<FsArgs>();
    a->program = program;
    a->timeout_ms = std::string(program) == "fs" ? 600000 : 5000;
    auto* sub = app.add_subcommand(program, help);
    sub->add_option("target", a->target,
                    std::string(program) == "fs"
                        ? "the mount point, a path inside it, the STATE_DIR or the control socket"
                        : "the program's control socket")
        ->required();
    sub->add_option("action", a->action, actions)->required();
    sub->add_option("mode", a->mode, std::string("for play-dead: ") + modes);
    sub->add_option("--timeout", a->timeout_ms, "milliseconds to wait for the answer")
        ->check(CLI::Range(1, 3600000));
    return [a, sub](Io& io) { return sub->parsed() ? SocketMain(*a, io) : -1; };
  };
}

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"node", "talk to one storage node: stat, ping, list, play-dead MODE",
       [](CLI::App& app) -> std::function<int(Io&)> {
         auto a = std::make_shared<NodeArgs>();
         auto* sub = app.add_subcommand(
             "node", "talk to one storage node: stat, ping, list (every object as the node "
                     "sees it), play-dead MODE");
         sub->add_option("target", a->target, "node endpoint (tcp://host:port) or node id in --config")
             ->required();
         sub->add_option("action", a->action, "stat | ping | list | play-dead")->required();
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
         a->record = kDefaultScrubRecord;
         auto* sub = app.add_subcommand(
             "scrub",
             "walk every node and re-replicate what is missing, old or misplaced: through a "
             "running cofferfs (TARGET: its mount point, a path inside it or its STATE_DIR), "
             "or from this process with --config");
         sub->add_option("target", a->target,
                         "a cofferfs mount (or a path inside it, or its STATE_DIR): it scrubs "
                         "with its own key and shows the result in its status");
         sub->add_option("--config", a->config, "replicator config (nodes, R, W, our key)");
         sub->add_option("--keyfile,--key-file", a->key_file,
                         "key file to verify objects with (GCM); without it only structure "
                         "and digests are compared");
         sub->add_option("--passfile", a->passfile,
                         "passphrase file for a passphrase-protected --keyfile");
         sub->add_option("--record", a->record,
                         "where to keep the result for `cofferctl status` (written only when "
                         "its directory exists)")
             ->capture_default_str();
         sub->add_option("--timeout", a->timeout_ms,
                         "with TARGET: milliseconds to wait for cofferfs's scrub")
             ->check(CLI::Range(1, 86400000));
         sub->add_flag("-q,--quiet", a->quiet, "no progress display");
         return [a, sub](Io& io) { return sub->parsed() ? ScrubMain(*a, io) : -1; };
       }},
      {"status", "a running cofferfs: healthy (0), degraded (1) or not serving (2)",
       AddFsCommand("status",
                    "a running cofferfs: healthy (exit 0), degraded (1: a node down or lying, "
                    "changes in the outbox, objects below R) or not serving (2); nodes with "
                    "latency, outbox depth and age, cache use, last scrub",
                    StatusMain, 10000)},
      {"boxes", "the access boxes that mount the store, as a running cofferfs knows them",
       AddFsCommand("boxes",
                    "list the access boxes of the store (id, state, host and mount point, last "
                    "heartbeat, how far each caught up) as a running cofferfs knows them",
                    BoxesMain, 10000)},
      {"retire-box", "retire a box that will not come back (from another, running box)",
       AddFsCommand("retire-box",
                    "retire a box for good, through a running cofferfs on another box: it no "
                    "longer holds back the collection of deletes, and its STATE_DIR can never "
                    "be mounted again (it would have to rebuild as a new box)",
                    RetireBoxMain, 30000)},
      {"verify", "compare a cofferfs tree (names, versions, content digests) with the nodes",
       AddFsCommand("verify",
                    "compare the tree of a running cofferfs with what the storage nodes hold; "
                    "exit 1 on any difference",
                    VerifyMain, 600000)},
      {"fs", "a running cofferfs: status, verify, scrub, play-dead off | eio | slow MS",
       AddSocketCommand("fs",
                        "a running cofferfs: status (its raw status line), verify, scrub, "
                        "play-dead MODE",
                        "status | verify | scrub | play-dead", "off | eio | slow MS")},
      {"pop3d", "a running coffer-pop3d: status, play-dead off | refuse | slow MS | stop",
       AddSocketCommand("pop3d",
                        "a running coffer-pop3d (its control socket): status, play-dead MODE",
                        "status | play-dead", "off | refuse | slow MS | stop")},
      {"metrics", "print a daemon's Prometheus metrics (from its metrics listener)",
       [](CLI::App& app) -> std::function<int(Io&)> {
         auto a = std::make_shared<MetricsArgs>();
         auto* sub = app.add_subcommand(
             "metrics",
             "print the Prometheus metrics of coffer-node, cofferfs or coffer-pop3d, fetched "
             "from the metrics listener it was given (metrics_listen)");
         sub->add_option("address", a->address, "HOST:PORT or http://HOST:PORT/metrics")
             ->required();
         sub->add_option("--timeout", a->timeout_ms, "milliseconds to wait for the answer")
             ->check(CLI::Range(1, 600000));
         return [a, sub](Io& io) { return sub->parsed() ? MetricsMain(*a, io) : -1; };
       }},
  };
  return kCommands;
}

int Run(const std::vector<std::string>& args, Io& io) {
  CLI::App app{"cofferctl: status, scrub, metrics and play-dead control of a coffer installation",
               "cofferctl"};
  app.require_subcommand(1);
  app.set_version_flag("-V,--version", std::string("cofferctl ") + kVersion);
  std::vector<std::function<int(Io&)>> actions;
  for (const auto& c : Commands()) actions.push_back(c.add(app));
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 wants them reversed
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    io.out << app.help();
    return kExitOk;
  } catch (const CLI::CallForVersion& e) {
    io.out << e.what() << "\n";
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
