// cofferfs: mounts an encrypted Maildir store (STATE_DIR) on MOUNTPOINT. Parses options, loads the
// key, opens the store and hands it to the FUSE glue; everything else lives in fs_core.
//
// Going to the background: we fork first and let the child do all the work (open the store, check
// the key, mount) while the parent waits on a pipe for the child's verdict, so `mount` and fstab
// see a real exit status and message ("made with another key") instead of a daemon that died
// after detaching. LMDB and the committer thread are only ever touched in the child. Until the
// mount exists the child logs to the stderr it inherited (so the reason a mount failed always
// reaches whoever ran it) as well as to its other sinks; only then does it detach and let go of
// stderr. Another sink always takes the lines: log_file=, syslog where /dev/log exists, or else
// STATE_DIR/cofferfs.log.
//
// A non-empty mount point is refused (unless -o nonempty): mail delivered into the bare
// directory while coffer was not mounted would sit there in plaintext, hidden by the mount.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "common/crypto.h"
#include "common/error.h"
#include "common/keyfile.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/metrics_http.h"
#include "common/passphrase.h"
#include "common/service.h"
#include "common/sysexits.h"
#include "common/version.h"
#include "fs/control.h"
#include "fs/filesystem.h"
#include "fs/fs_metrics.h"
#include "fs/fuse_glue.h"
#include "fs/options.h"
#include "fs/object_verifier.h"
#include "replicator/replicator.h"
#include "replicator/replicator_config.h"

namespace {

// The shared table (common/sysexits.h, cofferfs(8) EXIT STATUS).
constexpr int kExUsage = coffer::exits::kUsage, kExNoInput = coffer::exits::kNoInput,
              kExUnavailable = coffer::exits::kUnavailable, kExSoftware = coffer::exits::kSoftware,
              kExCantCreate = coffer::exits::kCantCreate, kExIoErr = coffer::exits::kIoErr,
              kExNoPerm = coffer::exits::kNoPerm, kExConfig = coffer::exits::kConfig;

int ExitCodeFor(int err) {
  switch (err) {
    case ENOENT: return kExNoInput;
    case EACCES: case EPERM: case ENOKEY: return kExNoPerm;
    case EBUSY: case EAGAIN: return kExUnavailable;
    case EINVAL: return kExConfig;
    case EBADMSG: case ESTALE: return coffer::exits::kDataErr;
    case ENOSPC: case EROFS: return kExCantCreate;
    default: return kExIoErr;
  }
}

// Entries of `dir` other than "." and ".." (at most `max` names, for the message).
std::vector<std::string> DirEntries(const std::string& dir, std::size_t max) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    names.push_back(n);
    if (names.size() >= max) break;
  }
  ::closedir(d);
  return names;
}

int Run(coffer::fs::MountOptions& opts, int status_fd, const coffer::log::Options& log_options) {
  using namespace coffer;
  auto report = [&](int code) {
    if (status_fd >= 0) {
      unsigned char c = static_cast<unsigned char>(code);
      [[maybe_unused]] ssize_t n = ::write(status_fd, &c, 1);
      ::close(status_fd);
      status_fd = -1;
    }
  };
  try {
    crypto::HardenProcess();
    if (opts.keyfile.empty()) {
      spdlog::error("no key file: give -o keyfile=PATH or keyfile in the config file");
      report(kExUsage);
      return kExUsage;
    }
    std::optional<crypto::SecretBytes> pass;
    if (keyfile::NeedsPassphrase(opts.keyfile)) {
      passphrase::Source src;
      if (!opts.passfile.empty()) {
        src.file = opts.passfile;
        if (auto w = passphrase::LoosePermissions(opts.passfile)) spdlog::warn("{}", *w);
      }
      pass = passphrase::Read(src, "Passphrase for " + opts.keyfile + ": ", false);
    }
    keyfile::KeySet keyset = keyfile::Load(opts.keyfile, pass ? &*pass : nullptr);
    pass.reset();

    fs::Options fo;
    fo.commit_interval_ms = opts.commit_interval_ms;
    fo.sync_namespace = opts.sync;
    fo.statfs_path = opts.state_dir;
    fo.degraded_queue = opts.degraded_queue;
    fo.read_only = opts.read_only;
    fo.cache_limit_bytes = opts.cache_limit_mb << 20;
    fo.scrub_interval = std::chrono::seconds(opts.scrub_interval_s);
    fo.follow_interval = std::chrono::milliseconds(opts.follow_interval_ms);
    fo.heartbeat_interval = std::chrono::seconds(opts.heartbeat_s);
    fo.tombstone_grace = std::chrono::seconds(opts.tombstone_grace_s);
    fo.mountpoint = opts.mountpoint;
    std::unique_ptr<replicator::Backend> backend;
    if (opts.replicator.empty()) {
      spdlog::info("no storage nodes configured: local only (durable in {})", opts.state_dir);
    } else {
      auto rc = replicator::LoadReplicatorConfig(config::Config::Load(opts.replicator));
      rc.options.verifier =
          fs::MakeVerifier(std::make_shared<const crypto::Keyring>(keyset.MakeKeyring()));
      // A read-only mount writes nothing to the nodes: no tombstone collection, no read repair,
      // no hinted handoff.
      rc.options.collect_tombstones = opts.tombstone_grace_s > 0 && !opts.read_only;
      rc.options.tombstone_grace = std::chrono::seconds(opts.tombstone_grace_s);
      rc.options.read_repair = !opts.read_only;
      if (opts.read_only) rc.options.hinted_handoff = false;
      const std::size_t nodes = rc.options.nodes.size();
      const auto timeout_ms = rc.options.write_timeout.count();
      auto replicator = std::make_unique<replicator::Replicator>(std::move(rc.options));
      // Connections come up asynchronously: give every node a moment to answer before the
      // first commit or catch-up, so that a healthy cluster does not start out looking degraded.
      const std::size_t up = replicator->WaitConnected(std::chrono::milliseconds(3000));
      if (up < nodes) {
        spdlog::warn("{} of {} storage nodes answer", up, nodes);
      } else {
        spdlog::info("all {} storage nodes answer", nodes);
      }
      spdlog::info("storage nodes ({}): {} configured, R={} W={}, operation timeout {} ms; "
                   "degraded={}; cache limit {}",
                   opts.replicator, nodes, replicator->replicas(), replicator->write_quorum(),
                   timeout_ms, opts.degraded_queue ? "queue" : "fail",
                   opts.cache_limit_mb ? std::to_string(opts.cache_limit_mb) + " MiB" : "none");
      if (opts.degraded_queue)
        spdlog::warn("degraded=queue: when fewer than W nodes answer, changes are accepted on "
                     "this box only and held in the outbox (a lost box loses them)");
      backend = std::move(replicator);
    }
    const bool replicated = backend != nullptr;
    fs::Filesystem filesystem(fs::LmdbStore::Open(opts.state_dir), std::move(backend),
                              keyset.MakeKeyring(), keyset.store_fingerprint(), fo);
    filesystem.Start();
    if (!opts.sync)
      spdlog::warn("async: namespace changes become durable within {} ms or at the next fsync",
                   opts.commit_interval_ms);
    fs::PlayDead play_dead;
    fs::ControlServer control;
    std::atomic<std::int64_t> manual_scrub_unix{0};  // last scrub asked for on the socket
    std::string control_path =
        opts.control_socket.empty() ? opts.state_dir + "/control.sock" : opts.control_socket;
    control.Start(control_path, &play_dead,
                  [&](std::string_view line) -> std::optional<std::string> {
      if (line == "status") {
        return fs::HandleControlCommand(line, &play_dead) + " " + filesystem.StatusLine() +
               " manual_scrub_unix=" + std::to_string(manual_scrub_unix.load());
      }
      if (line == "verify") {
        if (!replicated) return std::string("err verify needs storage nodes (local-only mount)");
        fs::VerifyReport r = filesystem.Verify();
        std::string out = std::string("ok clean=") + (r.clean() ? "yes" : "no") +
                          " objects=" + std::to_string(r.objects) + " ok=" + std::to_string(r.ok) +
                          " pending=" + std::to_string(r.pending) +
                          " missing=" + std::to_string(r.missing) +
                          " stale=" + std::to_string(r.stale) +
                          " corrupt=" + std::to_string(r.corrupt) +
                          " under_quorum=" + std::to_string(r.under_quorum) +
                          " extra=" + std::to_string(r.extra) +
                          " unchecked=" + std::to_string(r.unchecked) +
                          " liars=" + std::to_string(r.liars.size()) +
                          " nodes_answered=" + std::to_string(r.answered) + "/" +
                          std::to_string(r.nodes);
        for (const auto& p : r.problems) {
          spdlog::warn("verify: {}", p);
          out += " | " + p;
        }
        return out;
      }
      if (line.rfind("retire-box ", 0) == 0) {
        // "retire-box ID [force]"
        std::string rest(line.substr(11));
        bool force = false;
        if (auto sp = rest.find(' '); sp != std::string::npos) {
          force = rest.substr(sp + 1) == "force";
          if (!force) return std::string("err usage: retire-box ID [force]");
          rest.resize(sp);
        }
        char* end = nullptr;
        errno = 0;
        const unsigned long long id = std::strtoull(rest.c_str(), &end, 16);
        if (rest.empty() || rest.size() > 16 || *end != '\0' || errno != 0 || id == 0)
          return std::string("err retire-box: '" + rest + "' is not a box id (16 hex digits)");
        std::string message;
        const int rc = filesystem.RetireBox(id, force, &message);
        if (rc == 0) return "ok " + message;
        return "err " + std::string(rc == EBUSY ? "busy" : rc == ENOENT ? "unknown"
                                    : rc == EALREADY ? "already" : "failed") + ": " + message;
      }
      if (line == "scrub") {
        if (!replicated) return std::string("err scrub needs storage nodes (local-only mount)");
        auto r = filesystem.Scrub();
        manual_scrub_unix = static_cast<std::int64_t>(std::time(nullptr));
        return "ok checked=" + std::to_string(r.checked) + " differing=" +
               std::to_string(r.differing) + " repaired=" +
               std::to_string(r.repaired) + " moved=" + std::to_string(r.moved) +
               " collected=" + std::to_string(r.collected) +
               " unreachable=" + std::to_string(r.unreachable) +
               " unrecoverable=" + std::to_string(r.unrecoverable);
      }
      return std::nullopt;
    });

    metrics::MetricsServer metrics_server(metrics::Default());
    if (!opts.metrics_listen.empty()) {
      fs::SetOpObserver(fs::RegisterOpMetrics(metrics::Default()));
      fs::RegisterStoreMetrics(
          metrics::Default(),
          [&] { return fs::HandleControlCommand("status", &play_dead) + " " + filesystem.StatusLine(); },
          &filesystem);
      metrics_server.Start(opts.metrics_listen);
      spdlog::info("metrics on {}", metrics_server.url());
    }

    int rc = fs::ServeFuse(&filesystem, &play_dead, opts, [&] {
      report(0);
      const std::string ready = "mounted " + opts.state_dir + " on " + opts.mountpoint +
                                (replicated ? " (storage nodes: " + opts.replicator + ")"
                                            : " (local only)");
      service::Ready(ready);
      if (!opts.foreground) {
        ::setsid();
        if (::chdir("/") != 0) spdlog::warn("chdir /: {}", std::strerror(errno));
        // Keep stderr only when it is the journal (or, should it happen, nothing else takes
        // the lines: main() gives the background a log file when there is no syslog).
        const bool syslog_ok = log_options.to_syslog && log::SyslogAvailable();
        const bool keep_stderr =
            service::StderrIsJournal() || (log_options.file.empty() && !syslog_ok);
        // The logger keeps its stderr sink (replacing the logger while other threads log is
        // not safe); what it writes there goes to /dev/null once another sink has the lines.
        int null = ::open("/dev/null", O_RDWR);
        if (null >= 0) {
          ::dup2(null, 0);
          ::dup2(null, 1);
          if (!keep_stderr) ::dup2(null, 2);
          if (null > 2) ::close(null);
        }
      }
    });
    service::Stopping();
    metrics_server.Stop();
    fs::SetOpObserver(nullptr);
    control.Stop();
    filesystem.Shutdown();
    spdlog::info("clean shutdown, everything committed");
    return rc == 0 ? 0 : kExIoErr;
  } catch (const config::ConfigError& e) {
    spdlog::error("{}", e.what());
    report(kExConfig);
    return kExConfig;
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    report(ExitCodeFor(e.err()));
    return ExitCodeFor(e.err());
  } catch (const std::exception& e) {
    spdlog::error("internal error: {}", e.what());
    report(kExSoftware);
    return kExSoftware;
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace coffer;
  CLI::App app{
      "cofferfs: mount an encrypted coffer Maildir store (STATE_DIR) on MOUNTPOINT.\n"
      "Options (-o, comma-separated): config=FILE, keyfile=PATH, passfile=PATH, allow_other,\n"
      "sync, async, commit_interval_ms=N, entry_timeout=S, attr_timeout=S, negative_timeout=S,\n"
      "keep_cache=0|1, readdirplus=0|1, max_threads=N, control_socket=PATH, log_level=LEVEL,\n"
      "log_syslog, ro, debug,\n"
      "replicator=FILE (storage nodes), degraded=fail|queue, cache_limit_mb=N, scrub_interval_s=N,\n"
      "tombstone_grace_s=N, follow_interval_ms=N, heartbeat_s=N, log_file=FILE, metrics_listen=HOST:PORT, nonempty.\n"
      "See cofferfs(8)."};
  fs::MountOptions opts;
  std::vector<std::string> o_strings;
  app.set_version_flag("-V,--version", std::string("cofferfs ") + kVersion);
  app.add_option("STATE_DIR", opts.state_dir, "state directory (created and initialised if empty)")
      ->required();
  app.add_option("MOUNTPOINT", opts.mountpoint, "where to mount")->required()->check(
      CLI::ExistingDirectory);
  app.add_flag("-f,--foreground", opts.foreground, "stay in the foreground, log to stderr");
  app.add_flag("-d,--debug", opts.debug, "trace FUSE requests (implies -f)");
  app.add_option("-o", o_strings, "mount options, comma-separated (see above)")
      ->allow_extra_args(false);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    app.exit(e);
    return kExUsage;
  }
  try {
    fs::ApplyOptionStrings(o_strings, &opts);
  } catch (const config::ConfigError& e) {
    std::cerr << "cofferfs: " << e.what() << "\n";
    return kExConfig;
  } catch (const Error& e) {
    std::cerr << "cofferfs: " << e.what() << "\n";
    return kExUsage;
  }
  if (opts.debug) opts.foreground = true;
  if (!opts.state_dir.empty() && opts.state_dir[0] != '/') {
    char buf[4096];
    if (::getcwd(buf, sizeof buf)) opts.state_dir = std::string(buf) + "/" + opts.state_dir;
  }
  if (!opts.control_socket.empty() && opts.control_socket[0] != '/') {
    std::cerr << "cofferfs: control_socket must be an absolute path\n";
    return kExUsage;
  }
  auto level = log::ParseLevel(opts.log_level);
  if (!level) {
    std::cerr << "cofferfs: log_level must be one of " << log::kLevelNames << "\n";
    return kExUsage;
  }
  if (!opts.nonempty) {
    auto names = DirEntries(opts.mountpoint, 3);
    if (!names.empty()) {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      std::cerr << "cofferfs: mount point " << opts.mountpoint << " is not empty (" << list
                << (names.size() >= 3 ? ", ..." : "")
                << "): refusing to mount over it. Files there were written while coffer was "
                   "not mounted and are not encrypted; move them away (into the mount once it "
                   "is up), or mount anyway with -o nonempty\n";
      return exits::kCantCreate;
    }
  }
  log::Options lo;
  lo.program = "cofferfs";
  lo.level = *level;
  lo.to_stderr = true;
  lo.file = opts.log_file;
  // In the background syslog is the default sink when there is no log file; under systemd
  // (stderr is the journal) it would only duplicate the lines.
  lo.to_syslog = opts.log_syslog ||
                 (!opts.foreground && opts.log_file.empty() && !service::StderrIsJournal());
  // In the background stderr is let go once mounted (a caller that reads it must see it close),
  // so some other sink must take the lines: without log_file= and without /dev/log they go to
  // STATE_DIR/cofferfs.log.
  if (!opts.foreground && opts.log_file.empty() && !service::StderrIsJournal() &&
      !(lo.to_syslog && log::SyslogAvailable())) {
    lo.file = opts.state_dir + "/cofferfs.log";
    std::cerr << "cofferfs: no syslog (/dev/log) and no log_file=: logging to " << lo.file
              << "\n";
  }
  try {
    log::Init(lo);
  } catch (const Error& e) {
    std::cerr << "cofferfs: " << e.what() << "\n";
    return exits::kCantCreate;
  }

  if (opts.foreground) return Run(opts, -1, lo);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("cofferfs: pipe");
    return kExSoftware;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("cofferfs: fork");
    return kExSoftware;
  }
  if (pid == 0) {
    ::close(fds[0]);
    return Run(opts, fds[1], lo);
  }
  ::close(fds[1]);
  unsigned char code = kExSoftware;
  ssize_t n;
  do {
    n = ::read(fds[0], &code, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : kExSoftware;
  }
  return code;
}
