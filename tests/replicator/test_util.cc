// Test helpers: see test_util.h.
#include "tests/replicator/test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace coffer::testutil {

std::string Id(int n) {
  std::string id(16, '\0');
  for (int i = 0; i < 4; ++i) id[static_cast<std::size_t>(i)] = static_cast<char>((n >> (24 - 8 * i)) & 0xff);
  id[15] = 'x';
  return id;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    throw std::runtime_error("bind failed");
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

NodeProcess::Setup NodeProcess::MakeSetup(const std::string& root, const std::string& name,
                                          replicator::CurveKeyPair* keys) {
  *keys = replicator::GenerateKeyPair();
  replicator::WriteKeyPair(root + "/" + name, *keys);
  Setup s;
  s.node_id = name;
  s.dir = root + "/" + name;
  s.port = FreePort();
  s.secret_key_file = root + "/" + name + ".key_secret";
  s.allowed_keys_file = root + "/allowed";
  s.admin_key_file = root + "/admin.key";
  return s;
}

std::string NodeBinary() {
  const char* p = std::getenv("COFFER_NODE");
  if (!p) throw std::runtime_error("COFFER_NODE is not set (run through meson test)");
  return p;
}

namespace {

bool PortOpen(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

}  // namespace

void NodeProcess::Start() {
  if (pid_ > 0) return;
  std::filesystem::create_directories(setup_.dir);
  std::vector<std::string> argv = {NodeBinary(),
                                   "--node-id", setup_.node_id,
                                   "--data-dir", setup_.dir + "/data",
                                   "--listen", endpoint(),
                                   "--secret-key", setup_.secret_key_file,
                                   "--allowed-keys", setup_.allowed_keys_file,
                                   "--log-level", setup_.log_level};
  if (!setup_.admin_key_file.empty()) {
    argv.push_back("--admin-key");
    argv.push_back(setup_.admin_key_file);
  }
  for (const auto& a : setup_.extra_args) argv.push_back(a);
  std::string log = setup_.dir + "/log";
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  pid_ = pid;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("coffer-node exited at start-up: " + Log());
    }
    if (PortOpen(setup_.port)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Kill();
  throw std::runtime_error("coffer-node did not start listening: " + Log());
}

void NodeProcess::Kill(int sig) {
  if (pid_ <= 0) return;
  kill(pid_, sig);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

int NodeProcess::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 500; ++i) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Kill();
  return -1;
}

std::string NodeProcess::Log() const {
  std::ifstream in(setup_.dir + "/log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace coffer::testutil
