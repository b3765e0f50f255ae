// coffer-pop3d's settings: the TOML config file (documented in examples/coffer-pop3d.toml and
// coffer-pop3d(8)) turned into typed options for the server, the sessions and the authenticator.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "pop3d/auth.h"
#include "pop3d/session.h"

namespace coffer::pop3d {

struct ListenAddress {
  std::string host;  // numeric IPv4/IPv6 address
  std::uint16_t port = 0;
  bool tls = false;  // implicit TLS (RFC 8314)
};

struct ServerOptions {
  std::vector<ListenAddress> listen;
  std::string certificate;      // PEM chain; enables STLS and the TLS listeners
  std::string private_key;      // PEM
  std::string run_as;           // user to switch to after binding ("" = stay)
  std::string control_socket;   // Unix socket for play-dead control ("" = none)
  int threads = 1;              // I/O threads
  int auth_threads = 2;         // password-check threads
  std::size_t max_connections = 1000;
  std::size_t max_connections_per_ip = 50;
  std::chrono::seconds idle_timeout{600};
  std::size_t max_line_length = 2048;
  bool allow_plaintext = false;  // USER/PASS without TLS on non-loopback connections
  bool plaintext_on_loopback = true;  // USER/PASS without TLS from 127.0.0.0/8 and ::1
  SessionOptions session;        // template; secure/plaintext_ok set per connection
  AuthOptions auth;
  std::string log_level = "info";
  bool log_syslog = false;
  std::string log_file;         // "" = none
  std::string metrics_listen;   // HOST:PORT of the Prometheus listener; "" = off
};

// "HOST:PORT", "[V6]:PORT" or "*:PORT" (all IPv4 addresses). Throws config::ConfigError.
ListenAddress ParseListenAddress(const std::string& text, bool tls);

// Reads every setting (with its documented default) and rejects unknown keys. Throws
// config::ConfigError naming file:line:key.
ServerOptions LoadServerOptions(const config::Config& config);

// Checks cross-setting rules (a TLS listener needs a certificate, at least one listener...).
// Throws config::ConfigError.
void ValidateServerOptions(const ServerOptions& options);

}  // namespace coffer::pop3d
