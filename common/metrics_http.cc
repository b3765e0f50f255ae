// See metrics_http.h.
#include "common/metrics_http.h"

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

namespace coffer::metrics {
namespace {

constexpr std::size_t kMaxRequest = 8192;
constexpr int kRequestTimeoutMs = 2000;

union SockAddr {
  sockaddr sa;
  sockaddr_in v4;
  sockaddr_in6 v6;
};

socklen_t ToSockAddr(const HttpAddress& a, SockAddr* out) {
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
  throw Error(EINVAL, "metrics address " + a.host + ": not a numeric IPv4 or IPv6 address");
}

// Waits for `events` on `fd` until `deadline`; false on timeout.
bool WaitFor(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(left));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

void SendAll(int fd, std::string_view data, std::chrono::steady_clock::time_point deadline) {
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

}  // namespace

HttpAddress ParseHttpAddress(const std::string& text) {
  HttpAddress a;
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    throw Error(EINVAL, "metrics address '" + text + "' is not HOST:PORT");
  }
  a.host = text.substr(0, colon);
  if (a.host.size() >= 2 && a.host.front() == '[' && a.host.back() == ']') {
    a.host = a.host.substr(1, a.host.size() - 2);
  }
  unsigned long port = 0;
  for (char c : text.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) {
      throw Error(EINVAL, "metrics address '" + text + "': bad port");
    }
    port = port * 10 + static_cast<unsigned long>(c - '0');
  }
  if (port > 65535) throw Error(EINVAL, "metrics address '" + text + "': bad port");
  a.port = static_cast<std::uint16_t>(port);
  SockAddr check;
  ToSockAddr(a, &check);
  return a;
}

std::string HttpResponse(std::string_view request, const Registry& registry) {
  auto line_end = request.find("\r\n");
  std::string_view line = request.substr(0, line_end);
  auto reply = [](const char* status, const std::string& type, const std::string& body) {
    return std::string("HTTP/1.0 ") + status + "\r\nContent-Type: " + type +
           "\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n\r\n" + body;
  };
  if (line.substr(0, 4) != "GET " && line.substr(0, 5) != "HEAD ") {
    return reply("405 Method Not Allowed", "text/plain", "only GET /metrics\n");
  }
  auto path_start = line.find(' ') + 1;
  auto path_end = line.find(' ', path_start);
  std::string_view path = line.substr(path_start, path_end == std::string_view::npos
                                                      ? std::string_view::npos
                                                      : path_end - path_start);
  if (path != "/metrics" && path != "/") {
    return reply("404 Not Found", "text/plain", "only /metrics is here\n");
  }
  std::string body = registry.Render();
  if (line.substr(0, 5) == "HEAD ") {
    std::string r = reply("200 OK", "text/plain; version=0.0.4; charset=utf-8", body);
    return r.substr(0, r.size() - body.size());
  }
  return reply("200 OK", "text/plain; version=0.0.4; charset=utf-8", body);
}

void MetricsServer::Start(const std::string& address) {
  HttpAddress a = ParseHttpAddress(address);
  SockAddr sa;
  socklen_t len = ToSockAddr(a, &sa);
  listen_fd_ = UniqueFd(::socket(sa.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_fd_) ThrowErrno("metrics listener socket");
  int one = 1;
  ::setsockopt(listen_fd_.Get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listen_fd_.Get(), &sa.sa, len) != 0) {
    ThrowErrno("cannot listen for metrics on " + address);
  }
  if (::listen(listen_fd_.Get(), 16) != 0) ThrowErrno("listen for metrics on " + address);
  SockAddr bound;
  socklen_t blen = sizeof bound;
  ::getsockname(listen_fd_.Get(), &bound.sa, &blen);
  std::uint16_t port =
      ntohs(bound.sa.sa_family == AF_INET ? bound.v4.sin_port : bound.v6.sin6_port);
  url_ = "http://" + (bound.sa.sa_family == AF_INET6 ? "[" + a.host + "]" : a.host) + ":" +
         std::to_string(port) + "/metrics";
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) ThrowErrno("pipe");
  wake_read_ = UniqueFd(p[0]);
  wake_write_ = UniqueFd(p[1]);
  thread_ = std::thread([this] { Loop(); });
}

void MetricsServer::Stop() {
  if (thread_.joinable()) {
    char c = 0;
    [[maybe_unused]] ssize_t n = ::write(wake_write_.Get(), &c, 1);
    thread_.join();
  }
  listen_fd_.Reset();
  wake_read_.Reset();
  wake_write_.Reset();
}

void MetricsServer::Loop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_.Get(), POLLIN, 0}, {wake_read_.Get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("metrics listener: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    UniqueFd conn(::accept4(listen_fd_.Get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) continue;
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kRequestTimeoutMs);
    std::string request;
    char buf[1024];
    while (request.find("\r\n\r\n") == std::string::npos &&
           request.find("\n\n") == std::string::npos && request.size() < kMaxRequest) {
      if (!WaitFor(conn.Get(), POLLIN, deadline)) break;
      ssize_t n = ::recv(conn.Get(), buf, sizeof buf, 0);
      if (n <= 0) break;
      request.append(buf, static_cast<std::size_t>(n));
    }
    if (request.find('\n') == std::string::npos) continue;  // nothing usable: just close
    try {
      SendAll(conn.Get(), HttpResponse(request, registry_), deadline);
    } catch (const std::exception& e) {
      spdlog::error("metrics: {}", e.what());
    }
  }
}

std::string HttpGet(const std::string& address, const std::string& path, int timeout_ms) {
  HttpAddress a = ParseHttpAddress(address);
  SockAddr sa;
  socklen_t len = ToSockAddr(a, &sa);
  UniqueFd fd(::socket(sa.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) ThrowErrno("socket");
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
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
  SendAll(fd.Get(), "GET " + path + " HTTP/1.0\r\nHost: " + address + "\r\n\r\n", deadline);
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
  auto head_end = answer.find("\r\n\r\n");
  if (answer.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos) {
    throw Error(EPROTO, address + " did not answer HTTP");
  }
  std::string status = answer.substr(0, answer.find("\r\n"));
  if (status.find(" 200 ") == std::string::npos) throw Error(EPROTO, address + ": " + status);
  return answer.substr(head_end + 4);
}

}  // namespace coffer::metrics
