// A minimal HTTP/1.0 server for the daemons' plain-text endpoints (GET /metrics for Prometheus,
// GET /health for load balancers), and the matching client for cofferctl and tests. It exists so
// that a daemon can be scraped and checked without an HTTP library and without exposing anything
// else: one thread, one request per connection, a fixed table of paths, requests bounded to
// 8 KiB and 2 s, no keep-alive.
//
// The request handling is a pure function (Respond: bytes in, bytes out) so that tests drive it
// without a socket; the Server only reads a bounded request, calls it and writes the answer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/fd.h"

namespace coffer::http {

inline constexpr std::size_t kMaxRequestBytes = 8192;  // request line and headers
inline constexpr int kRequestTimeoutMs = 2000;         // to read the request and to answer

// "HOST:PORT" (numeric IPv4, or [IPv6] in brackets); port 0 picks a free one. Throws coffer::Error
// (EINVAL) saying what is wrong with `text`.
struct Address {
  std::string host;
  std::uint16_t port = 0;
  bool operator==(const Address&) const = default;
};
Address ParseAddress(const std::string& text);

// What a handler answers: the status code (200, 503, ...) and a body.
struct Reply {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// One path of the table. The handler runs on the server's thread, once per valid GET or HEAD of
// exactly this path (a query string is ignored); it must be thread-safe with respect to the rest
// of the program and quick (the next client waits). It may throw: the client then gets 500.
struct Route {
  std::string path;
  std::function<Reply()> handler;
};
using Routes = std::vector<Route>;

// The answer to one request (the bytes read from the connection: request line and headers):
//   400 a request over kMaxRequestBytes, one without its blank line, a malformed request line
//       (not "METHOD SP /target SP HTTP/1.x"), a control character, a header line without ':';
//   405 a method other than GET and HEAD (with "Allow: GET, HEAD");
//   404 a path that is not in `routes`;
//   otherwise what the handler answers (HEAD: the same headers, no body).
// No handler is called for a 400, 404 or 405: a bad request changes nothing.
std::string Respond(std::string_view request, const Routes& routes);

// A bound, listening socket, not yet served. Binding apart from serving lets a program fail on a
// port in use before it changes anything, and serve only once what the handlers read exists.
class Listener {
 public:
  Listener() = default;
  // Binds and listens on `address`. `what` names the listener in errors and logs ("metrics",
  // "health checks"). Throws coffer::Error: EINVAL for a bad address, the errno of bind(2)
  // (EADDRINUSE, EADDRNOTAVAIL, EACCES) with the address in the message.
  static Listener Bind(const std::string& address, const std::string& what);
  bool bound() const { return static_cast<bool>(fd_); }
  // "http://HOST:PORT" with the port actually bound.
  const std::string& base_url() const { return base_url_; }

 private:
  friend class Server;
  UniqueFd fd_;
  std::string what_;
  std::string base_url_;
};

// Serves `routes` on one listener. Not copyable; Stop() (or the destructor) closes the listener
// and ends the thread. Construct, Start() and Stop() from one thread.
class Server {
 public:
  Server() = default;
  ~Server() { Stop(); }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts serving `routes` on `listener` (which must be bound).
  void Start(Listener listener, Routes routes);
  // Listener::Bind(address, what), then Start().
  void Start(const std::string& address, Routes routes, const std::string& what) {
    Start(Listener::Bind(address, what), std::move(routes));
  }
  void Stop();
  bool running() const { return thread_.joinable(); }
  // "http://HOST:PORT" with the port actually bound (after Start).
  const std::string& base_url() const { return listener_.base_url(); }

 private:
  void Loop();
  Listener listener_;
  Routes routes_;  // fixed while the thread runs
  UniqueFd wake_read_, wake_write_;
  std::thread thread_;
};

// Sends "METHOD PATH HTTP/1.0" to `address` and returns the status code and body. Throws
// coffer::Error with the connect errno (ECONNREFUSED...), ETIMEDOUT, or EPROTO for an answer that
// is not HTTP.
struct Response {
  int status = 0;
  std::string body;
};
Response Fetch(const std::string& address, std::string_view method, const std::string& path,
               int timeout_ms);

// Fetch() of a GET that must answer 200: returns the body; throws coffer::Error (EPROTO, with the
// status line) for any other status. For cofferctl and tests.
std::string HttpGet(const std::string& address, const std::string& path, int timeout_ms);

}  // namespace coffer::http
