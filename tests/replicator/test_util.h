// Helpers shared by the replicator and ctl tests: temporary directories, ids, free ports, and
// real coffer-node processes started from the built binary ($COFFER_NODE) and always stopped.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "replicator/curve.h"
#include "tests/support/subprocess.h"

namespace coffer::testutil {

using TempDir = coffer::testing::TempDir;

// A 16-byte id made from `n` (distinct n, distinct ids).
std::string Id(int n);

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

// A coffer-node child process. Start() waits until the port accepts connections.
class NodeProcess {
 public:
  struct Setup {
    std::string node_id;
    std::string dir;             // data dir is dir/data, log dir/log
    int port = 0;
    std::string secret_key_file;
    std::string allowed_keys_file;
    std::string admin_key_file;
    std::string log_level = "info";
    std::vector<std::string> extra_args;
  };
  // The usual layout under `root`: keys root/NAME.key_secret (written here, with a fresh pair
  // returned through `keys`), data in root/NAME, root/allowed and root/admin.key as allow list
  // and admin key, a free port.
  static Setup MakeSetup(const std::string& root, const std::string& name,
                         replicator::CurveKeyPair* keys);
  explicit NodeProcess(Setup setup) : setup_(std::move(setup)) {}
  ~NodeProcess() { Kill(); }
  NodeProcess(const NodeProcess&) = delete;
  NodeProcess& operator=(const NodeProcess&) = delete;

  void Start();
  void Kill(int sig = SIGKILL);  // sends sig and reaps; no-op if not running
  // SIGTERM and waits; returns the exit status (or -1).
  int Stop();
  bool running() const { return pid_ > 0; }
  std::string endpoint() const { return "tcp://127.0.0.1:" + std::to_string(setup_.port); }
  const Setup& setup() const { return setup_; }
  std::string Log() const;

 private:
  Setup setup_;
  pid_t pid_ = -1;
};

// Path of the built coffer-node binary (from $COFFER_NODE).
std::string NodeBinary();

}  // namespace coffer::testutil
