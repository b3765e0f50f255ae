// The play-dead control socket (see control.h).
#include "fs/control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/control_socket.h"
#include "common/error.h"

namespace coffer::fs {

namespace {

std::string Status(const PlayDead& s) {
  const char* names[] = {"normal", "eio", "slow"};
  int mode = s.mode.load();
  return std::string("ok mode=") + names[mode < 0 || mode > 2 ? 0 : mode] +
         " delay_ms=" + std::to_string(s.delay_ms.load());
}

sockaddr_un Address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    throw Error(ENAMETOOLONG, "control socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace

std::string HandleControlCommand(std::string_view line, PlayDead* state) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  if (line == "status") return Status(*state);
  if (line == "normal") {
    state->mode = PlayDead::kNormal;
    state->delay_ms = 0;
    return "ok mode=normal";
  }
  if (line == "eio") {
    state->mode = PlayDead::kEio;
    return "ok mode=eio";
  }
  if (line.substr(0, 5) == "slow ") {
    std::string_view arg = line.substr(5);
    int ms = -1;
    auto [ptr, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), ms);
    if (ec != std::errc() || ptr != arg.data() + arg.size() || ms < 0 || ms > 60000)
      return "err slow needs milliseconds between 0 and 60000";
    state->delay_ms = ms;
    state->mode = PlayDead::kSlow;
    return "ok mode=slow delay_ms=" + std::to_string(ms);
  }
  return "err unknown command (status|normal|eio|slow <ms>)";
}

std::string ControlRequest(const std::string& path, std::string_view request) {
  return control::Request(path, request);
}

void ControlServer::Start(const std::string& path, PlayDead* state, Extra extra) {
  path_ = path;
  state_ = state;
  extra_ = std::move(extra);
  sockaddr_un addr = Address(path);
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) ThrowErrno("socket");
  ::unlink(path.c_str());
  mode_t old = ::umask(077);
  int rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0) ThrowErrno("cannot bind control socket " + path);
  if (::listen(listen_fd_, 8) != 0) ThrowErrno("listen on " + path);
  if (::pipe2(wake_fd_, O_CLOEXEC) != 0) ThrowErrno("pipe");
  thread_ = std::thread([this] { Loop(); });
}

void ControlServer::Stop() {
  if (thread_.joinable()) {
    char c = 0;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_[1], &c, 1);
    thread_.join();
  }
  for (int* fd : {&listen_fd_, &wake_fd_[0], &wake_fd_[1]}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  if (!path_.empty()) ::unlink(path_.c_str());
  path_.clear();
}

void ControlServer::Loop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    // One short line; a client that sends nothing for 2 s is dropped.
    std::string line;
    char buf[256];
    while (line.find('\n') == std::string::npos && line.size() < 1024) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) break;
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
    }
    if (auto nl = line.find('\n'); nl != std::string::npos) {
      line.resize(nl);
      std::optional<std::string> handled;
      try {
        if (extra_) handled = extra_(line);
      } catch (const std::exception& e) {
        handled = std::string("err ") + e.what();
      }
      std::string reply = (handled ? *handled : HandleControlCommand(line, state_)) + "\n";
      // Play-dead switches are loud (a mount that fails on purpose must show in the log);
      // status, verify and scrub are ordinary requests.
      if (line == "status") {
        spdlog::debug("control: '{}' -> {}", line, reply.substr(0, reply.size() - 1));
      } else if (handled) {
        spdlog::info("control: '{}' -> {}", line, reply.substr(0, reply.size() - 1));
      } else {
        spdlog::warn("control: '{}' -> {}", line, reply.substr(0, reply.size() - 1));
      }
      [[maybe_unused]] ssize_t n = ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
    }
    ::close(fd);
  }
}

}  // namespace coffer::fs
