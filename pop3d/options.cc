// See options.h.
#include "pop3d/options.h"

#include <thread>

namespace coffer::pop3d {

ListenAddress ParseListenAddress(const std::string& text, bool tls) {
  ListenAddress a;
  a.tls = tls;
  std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    throw config::ConfigError("listen address '" + text + "' is not HOST:PORT");
  }
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "*" || host.empty()) host = "0.0.0.0";
  std::string port = text.substr(colon + 1);
  unsigned long value = 0;
  for (char c : port) {
    if (c < '0' || c > '9' || value > 65535) {
      throw config::ConfigError("listen address '" + text + "': bad port");
    }
    value = value * 10 + static_cast<unsigned long>(c - '0');
  }
  if (value > 65535) throw config::ConfigError("listen address '" + text + "': bad port");
  a.host = host;
  a.port = static_cast<std::uint16_t>(value);
  return a;
}

ServerOptions LoadServerOptions(const config::Config& c) {
  c.RejectUnknown({"listen.plain", "listen.tls", "tls.certificate", "tls.key",
                   "server.user", "server.threads", "server.auth_threads",
                   "server.control_socket", "auth.passwd_file", "auth.mail_location",
                   "auth.allow_plaintext", "auth.plaintext_on_loopback",
                   "auth.failure_delay_ms",
                   "auth.failure_delay_max_ms", "limits.max_connections",
                   "limits.max_connections_per_ip", "limits.idle_timeout",
                   "limits.max_line_length", "limits.max_bad_commands",
                   "limits.max_failed_logins", "pop3.uidl", "pop3.mark_seen",
                   "pop3.login_delay", "pop3.expire", "pop3.implementation",
                   "pop3.create_maildir", "pop3.shared_store", "pop3.lease_s",
                   "pop3.lease_settle_ms", "log.level", "log.syslog", "log.file",
                   "metrics.listen"});
  ServerOptions o;
  for (const auto& s : c.StringArray("listen.plain", {"127.0.0.1:110"})) {
    o.listen.push_back(ParseListenAddress(s, false));
  }
  for (const auto& s : c.StringArray("listen.tls", {})) {
    o.listen.push_back(ParseListenAddress(s, true));
  }
  o.certificate = c.String("tls.certificate", "");
  o.private_key = c.String("tls.key", "");
  o.run_as = c.String("server.user", "");
  unsigned hw = std::thread::hardware_concurrency();
  o.threads = static_cast<int>(c.Int("server.threads", hw == 0 ? 1 : hw, 1, 256));
  o.auth_threads = static_cast<int>(c.Int("server.auth_threads", 2, 1, 64));
  o.control_socket = c.String("server.control_socket", "");
  o.auth.passwd_file = c.String("auth.passwd_file", "/etc/coffer/coffer-pop3d.passwd");
  o.auth.mail_location = c.String("auth.mail_location", "/srv/mail/%d/%n/Maildir");
  o.allow_plaintext = c.Bool("auth.allow_plaintext", false);
  o.plaintext_on_loopback = c.Bool("auth.plaintext_on_loopback", true);
  o.session.failure_delay =
      std::chrono::milliseconds(c.Int("auth.failure_delay_ms", 1000, 0, 60000));
  o.session.failure_delay_max =
      std::chrono::milliseconds(c.Int("auth.failure_delay_max_ms", 15000, 0, 600000));
  o.max_connections = static_cast<std::size_t>(c.Int("limits.max_connections", 1000, 1, 1000000));
  o.max_connections_per_ip =
      static_cast<std::size_t>(c.Int("limits.max_connections_per_ip", 50, 1, 1000000));
  o.idle_timeout = std::chrono::seconds(c.Int("limits.idle_timeout", 600, 1, 86400));
  o.max_line_length = static_cast<std::size_t>(c.Int("limits.max_line_length", 2048, 64, 65536));
  o.session.max_bad_commands = static_cast<int>(c.Int("limits.max_bad_commands", 10, 1, 1000));
  o.session.max_failed_logins = static_cast<int>(c.Int("limits.max_failed_logins", 3, 1, 1000));
  std::string uidl = c.String("pop3.uidl", "maildir");
  if (uidl == "maildir") {
    o.auth.maildrop.uidl = UidlMode::kMaildir;
  } else if (uidl == "dovecot") {
    o.auth.maildrop.uidl = UidlMode::kDovecot;
  } else {
    c.Fail("pop3.uidl", "must be \"maildir\" or \"dovecot\"");
  }
  o.auth.maildrop.mark_seen = c.Bool("pop3.mark_seen", true);
  o.auth.maildrop.create = c.Bool("pop3.create_maildir", true);
  o.auth.maildrop.shared_store = c.Bool("pop3.shared_store", false);
  o.auth.maildrop.lease.duration =
      std::chrono::seconds(c.Int("pop3.lease_s", 60, 5, Lease::kMaxDuration.count()));
  o.auth.maildrop.lease.settle =
      std::chrono::milliseconds(c.Int("pop3.lease_settle_ms", 3000, 100, 60000));
  if (o.auth.maildrop.lease.duration < 4 * o.auth.maildrop.lease.settle) {
    c.Fail("pop3.lease_s",
           "must be at least 4 times pop3.lease_settle_ms (a renewal every "
           "lease_s/3 must end well before the lease does)");
  }
  o.session.login_delay_s = c.Int("pop3.login_delay", 0, 0, 86400 * 365);
  o.auth.login_delay = std::chrono::seconds(o.session.login_delay_s);
  if (c.Has("pop3.expire")) {
    std::string e = c.String("pop3.expire", "");
    if (e == "NEVER" || e == "never") {
      o.session.expire_days = -2;
    } else {
      std::int64_t days = -1;
      if (!e.empty() && e.size() <= 5 && e.find_first_not_of("0123456789") == std::string::npos) {
        days = std::stoll(e);
      }
      if (days < 0) c.Fail("pop3.expire", "must be \"NEVER\" or a number of days as a string");
      o.session.expire_days = days;
    }
  }
  o.session.implementation = c.String("pop3.implementation", "coffer-pop3d");
  o.log_level = c.String("log.level", "info");
  o.log_syslog = c.Bool("log.syslog", false);
  o.log_file = c.String("log.file", "");
  o.metrics_listen = c.String("metrics.listen", "");
  return o;
}

void ValidateServerOptions(const ServerOptions& o) {
  if (o.listen.empty()) throw config::ConfigError("no listen address configured");
  bool any_tls = false;
  for (const auto& l : o.listen) any_tls |= l.tls;
  if (any_tls && (o.certificate.empty() || o.private_key.empty())) {
    throw config::ConfigError("a TLS listener needs tls.certificate and tls.key");
  }
  if (o.certificate.empty() != o.private_key.empty()) {
    throw config::ConfigError("tls.certificate and tls.key go together");
  }
  if (o.auth.passwd_file.empty()) throw config::ConfigError("auth.passwd_file is empty");
  if (o.auth.mail_location.empty()) throw config::ConfigError("auth.mail_location is empty");
}

}  // namespace coffer::pop3d
