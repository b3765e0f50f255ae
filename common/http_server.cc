// See http_server.h.
#include "common/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/error.h"

namespace coffer::http {
namespace {

using Clock = std::chrono::steady_clock;

union SockAddr {
  sockaddr sa;
  sockaddr_in v4;
  sockaddr_in6 v6;
};

socklen_t ToSockAddr(const Address& a, SockAddr* out) {
  std::memset(out, 0, sizeof *out);
  if (::inet_pton(AF_INET, a.host.c_str(), &out->v4.sin_addr) == 1) {
    out->v4.sin_family = AF_INET;
    out->v4.sin_port = htons(a.port);
    return sizeof out->v4;
  }
  if (::inet_pton(AF_INET6, a.host.c_str(), &out->v6.sin6_addr) == 1) {
    out->v6.sin6_family = AF_INET6;
    out->v6.sin6_port = htons(a.port);
    return sizeof out->v6;
  }
  throw Error(EINVAL, "address " + a.host + ": not a numeric IPv4 or IPv6 address");
}

// Waits for `events` on `fd` until `deadline`; false on timeout.
bool WaitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(left));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

void SendAll(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!WaitFor(fd, POLLOUT, deadline)) return;
    } else {
      return;
    }
  }
}

const char* StatusText(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

std::string Format(const Reply& r, bool with_body, std::string_view extra_headers = {}) {
  std::string out = "HTTP/1.0 " + std::to_string(r.status) + " " + StatusText(r.status) +
                    "\r\nContent-Type: " + r.content_type +
                    "\r\nContent-Length: " + std::to_string(r.body.size()) +
                    "\r\nCache-Control: no-store\r\nConnection: close\r\n";
  out += extra_headers;
  out += "\r\n";
  if (with_body) out += r.body;
  return out;
}

std::string BadRequest(const std::string& why) {
  return Format(Reply{400, "text/plain; charset=utf-8", "bad request: " + why + "\n"}, true);
}

bool IsTokenChar(char c) { return c >= 'A' && c <= 'Z'; }

// Where the head (request line and headers) ends: the first blank line ("\r\n\r\n" or
// "\n\n"); npos when there is none yet.
std::size_t HeadEnd(std::string_view request) {
  const std::size_t crlf = request.find("\r\n\r\n");
  const std::size_t lf = request.find("\n\n");
  return crlf < lf ? crlf : lf;  // npos is the largest value
}

}  // namespace

Address ParseAddress(const std::string& text) {
  Address a;
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw Error(EINVAL, "address '" + text + "' is not HOST:PORT");
  }
  a.host = text.substr(0, colon);
  if (a.host.size() >= 2 && a.host.front() == '[' && a.host.back() == ']') {
    a.host = a.host.substr(1, a.host.size() - 2);
  } else if (a.host.find(':') != std::string::npos) {
    throw Error(EINVAL, "address '" + text + "': an IPv6 address goes in brackets ([::1]:PORT)");
  }
  unsigned long port = 0;
  for (char c : text.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) {
      throw Error(EINVAL, "address '" + text + "': bad port");
    }
    port = port * 10 + static_cast<unsigned long>(c - '0');
  }
  if (port > 65535) throw Error(EINVAL, "address '" + text + "': bad port");
  a.port = static_cast<std::uint16_t>(port);
  SockAddr check;
  ToSockAddr(a, &check);
  return a;
}

std::string Respond(std::string_view request, const Routes& routes) {
  if (request.size() > kMaxRequestBytes) {
    return BadRequest("request too large (more than " + std::to_string(kMaxRequestBytes) +
                      " bytes)");
  }
  const std::size_t head_end = HeadEnd(request);
  if (head_end == std::string_view::npos) {
    return BadRequest("incomplete request (no blank line after the headers)");
  }
  const std::string_view head = request.substr(0, head_end);
  for (std::size_t i = 0; i < head.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(head[i]);
    const bool line_end =
        c == '\n' || (c == '\r' && (i + 1 == head.size() || head[i + 1] == '\n'));
    if ((c < 0x20 && c != '\t' && !line_end) || c == 0x7f) {
      return BadRequest("control character in the request");
    }
  }
  // Lines, without their "\r\n" or "\n".
  std::vector<std::string_view> lines;
  for (std::size_t start = 0; start <= head.size();) {
    std::size_t nl = head.find('\n', start);
    if (nl == std::string_view::npos) nl = head.size();
    std::string_view l = head.substr(start, nl - start);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    lines.push_back(l);
    start = nl + 1;
  }
  // "METHOD SP TARGET SP HTTP/1.x": exactly three words, single spaces.
  const std::string_view line = lines.front();
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
      line.find(' ', sp2 + 1) != std::string_view::npos) {
    return BadRequest("malformed request line");
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (method.empty() || method.size() > 16) return BadRequest("malformed request line");
  for (char c : method) {
    if (!IsTokenChar(c)) return BadRequest("malformed request line");
  }
  if (target.empty() || target.front() != '/' || target.find('\t') != std::string_view::npos) {
    return BadRequest("malformed request target (must start with /)");
  }
  if (version != "HTTP/1.0" && version != "HTTP/1.1") {
    return BadRequest("unsupported protocol version (HTTP/1.0 or HTTP/1.1)");
  }
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const std::size_t colon = lines[i].find(':');
    if (colon == std::string_view::npos || colon == 0 ||
        lines[i].substr(0, colon).find_first_of(" \t") != std::string_view::npos) {
      return BadRequest("malformed header line");
    }
  }
  std::string allowed;
  for (const Route& r : routes) allowed += (allowed.empty() ? "" : ", ") + r.path;
  if (method != "GET" && method != "HEAD") {
    return Format(
        Reply{405, "text/plain; charset=utf-8", "only GET and HEAD of " + allowed + "\n"}, true,
        "Allow: GET, HEAD\r\n");
  }
  const std::string_view path = target.substr(0, target.find('?'));
  const bool with_body = method == "GET";
  for (const Route& r : routes) {
    if (r.path != path) continue;
    Reply reply;
    try {
      reply = r.handler();
    } catch (const std::exception& e) {
      spdlog::error("http {}: {}", r.path, e.what());
      reply = Reply{500, "text/plain; charset=utf-8",
                    std::string("internal error: ") + e.what() + "\n"};
    }
    return Format(reply, with_body);
  }
  return Format(Reply{404, "text/plain; charset=utf-8", "not here; try " + allowed + "\n"},
                with_body);
}

Listener Listener::Bind(const std::string& address, const std::string& what) {
  Address a = ParseAddress(address);
  SockAddr sa;
  socklen_t len = ToSockAddr(a, &sa);
  Listener l;
  l.fd_ = UniqueFd(::socket(sa.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!l.fd_) ThrowErrno(what + " listener socket");
  int one = 1;
  ::setsockopt(l.fd_.Get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(l.fd_.Get(), &sa.sa, len) != 0) {
    ThrowErrno("cannot listen for " + what + " on " + address);
  }
  if (::listen(l.fd_.Get(), 16) != 0) ThrowErrno("listen for " + what + " on " + address);
  SockAddr bound;
  socklen_t blen = sizeof bound;
  ::getsockname(l.fd_.Get(), &bound.sa, &blen);
  const std::uint16_t port =
      ntohs(bound.sa.sa_family == AF_INET ? bound.v4.sin_port : bound.v6.sin6_port);
  l.what_ = what;
  l.base_url_ = "http://" + (bound.sa.sa_family == AF_INET6 ? "[" + a.host + "]" : a.host) +
                ":" + std::to_string(port);
  return l;
}

void Server::Start(Listener listener, Routes routes) {
  if (!listener.bound()) throw Error(EINVAL, "http server: the listener is not bound");
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) ThrowErrno("pipe");
  wake_read_ = UniqueFd(p[0]);
  wake_write_ = UniqueFd(p[1]);
  listener_ = std::move(listener);
  routes_ = std::move(routes);
  thread_ = std::thread([this] { Loop(); });
}

void Server::Stop() {
  if (thread_.joinable()) {
    char c = 0;
    [[maybe_unused]] ssize_t n = ::write(wake_write_.Get(), &c, 1);
    thread_.join();
  }
  listener_.fd_.Reset();
  wake_read_.Reset();
  wake_write_.Reset();
}

void Server::Loop() {
  for (;;) {
    pollfd fds[2] = {{listener_.fd_.Get(), POLLIN, 0}, {wake_read_.Get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("{} listener: poll: {}", listener_.what_, std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    UniqueFd conn(::accept4(listener_.fd_.Get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) continue;
    const auto deadline = Clock::now() + std::chrono::milliseconds(kRequestTimeoutMs);
    std::string request;
    char buf[1024];
    // Reads until the blank line after the headers, a request over the limit (answered 400
    // without reading the rest), the peer's end or the deadline.
    while (HeadEnd(request) == std::string::npos &&
           request.size() <= kMaxRequestBytes) {
      if (!WaitFor(conn.Get(), POLLIN, deadline)) break;
      ssize_t n = ::recv(conn.Get(), buf, sizeof buf, 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) break;
      request.append(buf, static_cast<std::size_t>(n));
    }
    if (request.empty()) continue;  // a port probe: nothing to answer
    SendAll(conn.Get(), Respond(request, routes_), deadline);
    if (request.size() > kMaxRequestBytes) {
      // The rest of an oversized request is still coming: closing now would reset the
      // connection and could lose the 400 on its way. Read and drop it until the client
      // closes or the deadline.
      ::shutdown(conn.Get(), SHUT_WR);
      while (WaitFor(conn.Get(), POLLIN, deadline)) {
        ssize_t n = ::recv(conn.Get(), buf, sizeof buf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) break;
      }
    }
  }
}

Response Fetch(const std::string& address, std::string_view method, const std::string& path,
               int timeout_ms) {
  Address a = ParseAddress(address);
  SockAddr sa;
  socklen_t len = ToSockAddr(a, &sa);
  UniqueFd fd(::socket(sa.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) ThrowErrno("socket");
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  if (::connect(fd.Get(), &sa.sa, len) != 0) {
    if (errno != EINPROGRESS) ThrowErrno("cannot connect to " + address);
    if (!WaitFor(fd.Get(), POLLOUT, deadline)) {
      throw Error(ETIMEDOUT, "cannot connect to " + address + ": timed out");
    }
    int err = 0;
    socklen_t elen = sizeof err;
    ::getsockopt(fd.Get(), SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0) ThrowErrno(err, "cannot connect to " + address);
  }
  SendAll(fd.Get(),
          std::string(method) + " " + path + " HTTP/1.0\r\nHost: " + address + "\r\n\r\n",
          deadline);
  std::string answer;
  char buf[16384];
  for (;;) {
    if (!WaitFor(fd.Get(), POLLIN, deadline)) {
      throw Error(ETIMEDOUT, "no answer from " + address + " within " +
                                 std::to_string(timeout_ms) + " ms");
    }
    ssize_t n = ::recv(fd.Get(), buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) ThrowErrno("reading from " + address);
    if (n == 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
    if (answer.size() > (std::size_t{64} << 20)) throw Error(EFBIG, address + ": answer too large");
  }
  const auto head_end = answer.find("\r\n\r\n");
  if (answer.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos || answer.size() < 12) {
    throw Error(EPROTO, address + " did not answer HTTP");
  }
  Response r;
  for (std::size_t i = 9; i < 12; ++i) {
    if (answer[i] < '0' || answer[i] > '9') throw Error(EPROTO, address + " did not answer HTTP");
    r.status = r.status * 10 + (answer[i] - '0');
  }
  r.body = answer.substr(head_end + 4);
  return r;
}

std::string HttpGet(const std::string& address, const std::string& path, int timeout_ms) {
  Response r = Fetch(address, "GET", path, timeout_ms);
  if (r.status != 200) {
    throw Error(EPROTO, address + ": HTTP " + std::to_string(r.status) + " " +
                            StatusText(r.status) + " for " + path);
  }
  return std::move(r.body);
}

}  // namespace coffer::http
