// coffer-pop3d: command line and wiring only (see server.h, session.h, coffer-pop3d(8)).
//
// Start-up checks everything a login will need before the first client comes: the config, the
// passwd-file (malformed lines and unknown schemes are reported, and the server.user must be
// able to read it), the TLS files and the listen addresses. SIGHUP re-reads the config and
// applies what can change while running (log level, TLS certificate, the passwd-file's
// contents), saying in the log what changed.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "common/config.h"
#include "common/error.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/metrics_http.h"
#include "common/service.h"
#include "common/sysexits.h"
#include "common/version.h"
#include "pop3d/auth.h"
#include "pop3d/control.h"
#include "pop3d/options.h"
#include "pop3d/passwd_check.h"
#include "pop3d/server.h"

namespace {

using namespace coffer;

constexpr int kExitUsage = exits::kUsage;
constexpr int kExitUnavailable = exits::kUnavailable;
constexpr int kExitSoftware = exits::kSoftware;
constexpr int kExitNoPerm = exits::kNoPerm;
constexpr int kExitConfig = exits::kConfig;
constexpr const char* kDefaultConfig = "/etc/coffer/coffer-pop3d.toml";

// The command line, kept so that a reload applies the same overrides to the re-read file.
struct Flags {
  std::string config_path, log_level, log_file, metrics_listen, control_socket;
  std::vector<std::string> listen, listen_tls;
  std::string cert, key, passwd_file, mail_location, user;
  std::optional<int> threads;
  bool allow_plaintext = false, syslog = false;
};

pop3d::ServerOptions BuildOptions(const Flags& f) {
  config::Config config = config::Config::Empty();
  if (!f.config_path.empty()) {
    config = config::Config::Load(f.config_path);
  } else if (::access(kDefaultConfig, F_OK) == 0) {
    config = config::Config::Load(kDefaultConfig);
  }
  pop3d::ServerOptions options = pop3d::LoadServerOptions(config);
  if (!f.listen.empty() || !f.listen_tls.empty()) {
    options.listen.clear();
    for (const auto& l : f.listen) options.listen.push_back(pop3d::ParseListenAddress(l, false));
    for (const auto& l : f.listen_tls) options.listen.push_back(pop3d::ParseListenAddress(l, true));
  }
  if (!f.cert.empty()) options.certificate = f.cert;
  if (!f.key.empty()) options.private_key = f.key;
  if (!f.passwd_file.empty()) options.auth.passwd_file = f.passwd_file;
  if (!f.mail_location.empty()) options.auth.mail_location = f.mail_location;
  if (!f.user.empty()) options.run_as = f.user;
  if (f.threads) options.threads = *f.threads;
  if (f.allow_plaintext) options.allow_plaintext = true;
  if (!f.log_level.empty()) options.log_level = f.log_level;
  if (!f.log_file.empty()) options.log_file = f.log_file;
  if (!f.metrics_listen.empty()) options.metrics_listen = f.metrics_listen;
  if (f.syslog) options.log_syslog = true;
  if (!f.control_socket.empty()) options.control_socket = f.control_socket;
  pop3d::ValidateServerOptions(options);
  if (!log::ParseLevel(options.log_level)) {
    throw config::ConfigError("bad log level '" + options.log_level + "' (" +
                              std::string(log::kLevelNames) + ")");
  }
  return options;
}

// Reports the passwd-file's problems; returns false when the server cannot use it at all.
bool CheckPasswd(const pop3d::ServerOptions& options, bool to_stderr) {
  auto say = [&](bool error, const std::string& line) {
    if (to_stderr) {
      std::cerr << "coffer-pop3d: " << (error ? "" : "warning: ") << line << "\n";
    } else if (error) {
      spdlog::critical("{}", line);
    } else {
      spdlog::warn("{}", line);
    }
  };
  try {
    auto report = pop3d::CheckPasswdFile(options.auth.passwd_file);
    for (const auto& p : report.problems) say(false, p);
    if (report.users == 0) say(false, options.auth.passwd_file + ": no users: nobody can log in");
  } catch (const Error& e) {
    say(true, std::string("passwd-file: ") + e.what());
    return false;
  }
  std::string denied = pop3d::CheckReadableAs(options.auth.passwd_file, options.run_as);
  if (!denied.empty()) {
    say(true, denied + " (every login would fail): make it readable by server.user, e.g. "
                       "chgrp " + (options.run_as.empty() ? std::string("GROUP") : options.run_as) +
                       " " + options.auth.passwd_file + " && chmod 640 " +
                       options.auth.passwd_file);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"coffer-pop3d: a small, fast, hardened POP3 server for any Maildir tree"};
  Flags f;
  std::string control_command;
  bool check_config = false;
  app.set_version_flag("-V,--version", std::string("coffer-pop3d ") + kVersion);
  app.add_option("-c,--config", f.config_path, "TOML config file (default " +
                                                   std::string(kDefaultConfig) + " if present)");
  app.add_option("--listen", f.listen, "plain POP3 listener HOST:PORT (repeatable; replaces "
                                       "listen.plain)");
  app.add_option("--listen-tls", f.listen_tls, "implicit-TLS listener HOST:PORT (repeatable; "
                                               "replaces listen.tls)");
  app.add_option("--cert", f.cert, "TLS certificate chain (PEM)");
  app.add_option("--key", f.key, "TLS private key (PEM)");
  app.add_option("--passwd-file", f.passwd_file, "Dovecot-style passwd-file");
  app.add_option("--mail-location", f.mail_location, "Maildir template, e.g. /srv/mail/%d/%n/Maildir");
  app.add_option("--user", f.user, "run as this user after binding");
  app.add_option("--threads", f.threads, "I/O threads")->check(CLI::Range(1, 256));
  app.add_flag("--allow-plaintext", f.allow_plaintext,
               "allow USER/PASS and AUTH PLAIN without TLS from any address");
  app.add_option("--log-level", f.log_level, std::string("log level: ") +
                                                 std::string(log::kLevelNames));
  app.add_option("--log-file", f.log_file, "also log to this file");
  app.add_flag("--syslog", f.syslog, "also log to syslog (facility daemon)");
  app.add_option("--metrics-listen", f.metrics_listen,
                 "serve Prometheus metrics on HOST:PORT (e.g. 127.0.0.1:9403)");
  app.add_option("--control-socket", f.control_socket, "play-dead control socket path");
  app.add_option("--send", control_command,
                 "client mode: send this control line (e.g. \"play-dead refuse\") to "
                 "--control-socket, print the answer and exit");
  app.add_flag("--check-config", check_config,
               "validate the configuration, the passwd-file (as server.user) and the TLS files, "
               "then exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }

  if (!control_command.empty()) {
    if (f.control_socket.empty()) {
      std::cerr << "coffer-pop3d: --send needs --control-socket\n";
      return kExitUsage;
    }
    try {
      std::string answer = pop3d::SendControl(f.control_socket, control_command);
      std::cout << answer << "\n";
      return answer.rfind("ok", 0) == 0 ? 0 : kExitSoftware;
    } catch (const Error& e) {
      std::cerr << "coffer-pop3d: " << e.what() << "\n";
      return kExitUnavailable;
    }
  }

  pop3d::ServerOptions options;
  try {
    options = BuildOptions(f);
  } catch (const Error& e) {
    std::cerr << "coffer-pop3d: " << e.what() << "\n";
    return kExitConfig;
  }
  if (check_config) {
    bool ok = CheckPasswd(options, /*to_stderr=*/true);
    if (!options.certificate.empty()) {
      pop3d::Control control;
      pop3d::Authenticator auth(options.auth);
      pop3d::ServerOptions tls_only = options;
      tls_only.listen.clear();
      tls_only.control_socket.clear();
      try {
        pop3d::Server(tls_only, auth, control).Bind();
      } catch (const Error& e) {
        std::cerr << "coffer-pop3d: " << e.what() << "\n";
        ok = false;
      }
    }
    if (!ok) return kExitConfig;
    std::cout << "coffer-pop3d: configuration OK\n";
    return 0;
  }
  try {
    log::Init({.program = "coffer-pop3d", .level = *log::ParseLevel(options.log_level),
               .to_stderr = true, .to_syslog = options.log_syslog, .file = options.log_file});
  } catch (const Error& e) {
    std::cerr << "coffer-pop3d: " << e.what() << "\n";
    return exits::kCantCreate;
  }
  if (options.certificate.empty() && !options.allow_plaintext) {
    spdlog::warn("no TLS certificate and auth.allow_plaintext is false: only loopback clients "
                 "can log in");
  }
  if (!CheckPasswd(options, /*to_stderr=*/false)) return kExitNoPerm;

  ::signal(SIGPIPE, SIG_IGN);
  ::prctl(PR_SET_DUMPABLE, 0);  // no core dumps with passwords in them
  try {
    pop3d::Control control;
    pop3d::Authenticator auth(options.auth);
    std::string run_as = options.run_as;
    pop3d::Server server(options, auth, control);
    metrics::MetricsServer metrics_server(metrics::Default());
    try {
      server.Bind();
      if (!options.metrics_listen.empty()) metrics_server.Start(options.metrics_listen);
    } catch (const Error& e) {
      spdlog::critical("{}", e.what());
      return e.err() == EINVAL ? kExitConfig : kExitUnavailable;
    }
    metrics::Default().AddCollector([&control](metrics::Emitter& e) {
      e.Gauge("coffer_pop3d_connections", "connections open now", "",
              static_cast<double>(control.connections.load()));
      e.Gauge("coffer_pop3d_play_dead", "1 when a play-dead mode is on (tests)",
              "mode=\"" + std::string(pop3d::PlayDeadName(control.mode())) + "\"",
              control.mode() == pop3d::PlayDead::kOff ? 0 : 1);
    });
    if (!run_as.empty()) {
      try {
        pop3d::DropPrivileges(run_as);
        ::prctl(PR_SET_DUMPABLE, 0);
        spdlog::info("running as user {}", run_as);
      } catch (const Error& e) {
        spdlog::critical("{}", e.what());
        return kExitNoPerm;
      }
    }
    server.SetReloadHandler([&] {
      service::Reloading();
      try {
        pop3d::ServerOptions next = BuildOptions(f);
        std::vector<std::string> changes;
        if (next.log_level != options.log_level) {
          log::SetLevel(*log::ParseLevel(next.log_level));
          changes.push_back("log level " + options.log_level + " -> " + next.log_level);
          options.log_level = next.log_level;
        }
        if (!next.certificate.empty()) {
          server.ReloadTls(next.certificate, next.private_key);
          changes.push_back("TLS certificate " + next.certificate + " reloaded");
          options.certificate = next.certificate;
          options.private_key = next.private_key;
        }
        if (next.auth.passwd_file != options.auth.passwd_file) {
          spdlog::warn("reload: auth.passwd_file changed: needs a restart");
        } else {
          auto report = pop3d::CheckPasswdFile(next.auth.passwd_file);
          for (const auto& p : report.problems) spdlog::warn("{}", p);
          changes.push_back("passwd-file " + next.auth.passwd_file + ": " +
                            std::to_string(report.users) + " users");
        }
        if (next.listen.size() != options.listen.size() || next.run_as != options.run_as ||
            next.auth.mail_location != options.auth.mail_location ||
            next.control_socket != options.control_socket ||
            next.metrics_listen != options.metrics_listen) {
          spdlog::warn("reload: listen, server.user, mail_location, control_socket or "
                       "metrics.listen changed: needs a restart");
        }
        const pop3d::MaildropOptions& was = options.auth.maildrop;
        const pop3d::MaildropOptions& now = next.auth.maildrop;
        if (now.shared_store != was.shared_store || now.lease.duration != was.lease.duration ||
            now.lease.settle != was.lease.settle) {
          spdlog::warn(
              "reload: pop3.shared_store, pop3.lease_s or pop3.lease_settle_ms "
              "changed: needs a restart");
        }
        for (const auto& c : changes) spdlog::info("reload: {}", c);
      } catch (const std::exception& e) {
        spdlog::error("reload failed, keeping the running settings: {}", e.what());
      }
      service::Ready("serving (reloaded)");
    });
    if (!options.metrics_listen.empty()) spdlog::info("metrics on {}", metrics_server.url());
    service::Ready("serving POP3");
    server.Run();
    service::Stopping();
    metrics_server.Stop();
  } catch (const std::exception& e) {
    spdlog::critical("fatal: {}", e.what());
    return kExitSoftware;
  }
  spdlog::info("stopped");
  return 0;
}
