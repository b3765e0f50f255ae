// coffer-pop3d: command line and wiring only (see server.h, session.h, coffer-pop3d(8)).
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "common/config.h"
#include "common/error.h"
#include "common/log.h"
#include "pop3d/auth.h"
#include "pop3d/control.h"
#include "pop3d/options.h"
#include "pop3d/server.h"

namespace {

constexpr int kExitUsage = 64;
constexpr int kExitUnavailable = 69;
constexpr int kExitSoftware = 70;
constexpr int kExitNoPerm = 77;
constexpr int kExitConfig = 78;
constexpr const char* kDefaultConfig = "/etc/coffer/pop3d.toml";

}  // namespace

int main(int argc, char** argv) {
  using namespace coffer;
  CLI::App app{"coffer-pop3d: a small, fast, hardened POP3 server for any Maildir tree"};
  std::string config_path, log_level, control_socket, control_command;
  std::vector<std::string> listen, listen_tls;
  std::string cert, key, passwd_file, mail_location, user;
  std::optional<int> threads;
  bool allow_plaintext = false, check_config = false, syslog = false;
  app.add_option("-c,--config", config_path, "TOML config file (default " +
                                                 std::string(kDefaultConfig) + " if present)");
  app.add_option("--listen", listen, "plain POP3 listener HOST:PORT (repeatable; replaces "
                                     "listen.plain)");
  app.add_option("--listen-tls", listen_tls, "implicit-TLS listener HOST:PORT (repeatable; "
                                             "replaces listen.tls)");
  app.add_option("--cert", cert, "TLS certificate chain (PEM)");
  app.add_option("--key", key, "TLS private key (PEM)");
  app.add_option("--passwd-file", passwd_file, "Dovecot-style passwd-file");
  app.add_option("--mail-location", mail_location, "Maildir template, e.g. /srv/mail/%d/%n/Maildir");
  app.add_option("--user", user, "run as this user after binding");
  app.add_option("--threads", threads, "I/O threads")->check(CLI::Range(1, 256));
  app.add_flag("--allow-plaintext", allow_plaintext,
               "allow USER/PASS and AUTH PLAIN without TLS from any address");
  app.add_option("--log-level", log_level, std::string("log level: ") +
                                               std::string(log::kLevelNames));
  app.add_flag("--syslog", syslog, "log to syslog as well as stderr");
  app.add_option("--control-socket", control_socket, "play-dead control socket path");
  app.add_option("--send", control_command,
                 "client mode: send this control line (e.g. \"play-dead refuse\") to "
                 "--control-socket, print the answer and exit");
  app.add_flag("--check-config", check_config, "validate the configuration and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }

  if (!control_command.empty()) {
    if (control_socket.empty()) {
      std::cerr << "coffer-pop3d: --send needs --control-socket\n";
      return kExitUsage;
    }
    try {
      std::string answer = pop3d::SendControl(control_socket, control_command);
      std::cout << answer << "\n";
      return answer.rfind("ok", 0) == 0 ? 0 : kExitSoftware;
    } catch (const Error& e) {
      std::cerr << "coffer-pop3d: " << e.what() << "\n";
      return kExitUnavailable;
    }
  }

  pop3d::ServerOptions options;
  try {
    config::Config config = config::Config::Empty();
    if (!config_path.empty()) {
      config = config::Config::Load(config_path);
    } else if (::access(kDefaultConfig, F_OK) == 0) {
      config = config::Config::Load(kDefaultConfig);
    }
    options = pop3d::LoadServerOptions(config);
    if (!listen.empty() || !listen_tls.empty()) {
      options.listen.clear();
      for (const auto& l : listen) options.listen.push_back(pop3d::ParseListenAddress(l, false));
      for (const auto& l : listen_tls) options.listen.push_back(pop3d::ParseListenAddress(l, true));
    }
    if (!cert.empty()) options.certificate = cert;
    if (!key.empty()) options.private_key = key;
    if (!passwd_file.empty()) options.auth.passwd_file = passwd_file;
    if (!mail_location.empty()) options.auth.mail_location = mail_location;
    if (!user.empty()) options.run_as = user;
    if (threads) options.threads = *threads;
    if (allow_plaintext) options.allow_plaintext = true;
    if (!log_level.empty()) options.log_level = log_level;
    if (syslog) options.log_syslog = true;
    if (!control_socket.empty()) options.control_socket = control_socket;
    pop3d::ValidateServerOptions(options);
  } catch (const Error& e) {
    std::cerr << "coffer-pop3d: " << e.what() << "\n";
    return kExitConfig;
  }
  auto level = log::ParseLevel(options.log_level);
  if (!level) {
    std::cerr << "coffer-pop3d: bad log level '" << options.log_level << "' (" << log::kLevelNames
              << ")\n";
    return kExitConfig;
  }
  log::Init({.program = "coffer-pop3d", .level = *level, .to_stderr = true,
             .to_syslog = options.log_syslog});
  if (options.certificate.empty() && !options.allow_plaintext) {
    spdlog::warn("no TLS certificate and auth.allow_plaintext is false: only loopback clients "
                 "can log in");
  }
  if (check_config) {
    std::cout << "coffer-pop3d: configuration OK\n";
    return 0;
  }

  ::signal(SIGPIPE, SIG_IGN);
  ::prctl(PR_SET_DUMPABLE, 0);  // no core dumps with passwords in them
  try {
    pop3d::Control control;
    pop3d::Authenticator auth(options.auth);
    std::string run_as = options.run_as;
    pop3d::Server server(options, auth, control);
    try {
      server.Bind();
    } catch (const Error& e) {
      spdlog::critical("{}", e.what());
      return kExitUnavailable;
    }
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
    server.Run();
  } catch (const std::exception& e) {
    spdlog::critical("fatal: {}", e.what());
    return kExitSoftware;
  }
  spdlog::info("stopped");
  return 0;
}
