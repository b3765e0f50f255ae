// The network glue of coffer-pop3d: Asio (standalone) with C++20 coroutines and OpenSSL.
//
// One coroutine per connection, on its own strand; sessions (session.h) do all protocol work and
// this file only moves bytes: it splits input into lines (bounded by the line-length limit),
// batches the replies to pipelined commands into one write, streams RETR/TOP bodies chunk by
// chunk awaiting each write (back-pressure: a slow reader costs one chunk of memory), runs
// password checks on a separate thread pool, enforces the connection limits and the idle
// timeout, and applies the play-dead modes of control.h. SIGINT/SIGTERM stop it; SIGHUP calls
// the reload handler (main.cc re-reads the config). Sessions, logins and bytes are counted in
// metrics::Default().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pop3d/auth.h"
#include "pop3d/control.h"
#include "pop3d/options.h"

namespace coffer::pop3d {

class Server {
 public:
  // `auth` and `control` must outlive the server.
  Server(ServerOptions options, Authenticator& auth, Control& control);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every listener and the control socket and loads the TLS certificate. Call before
  // dropping privileges. Throws coffer::Error.
  void Bind();
  // The ports actually bound, in the order of options.listen (useful with port 0).
  std::vector<std::uint16_t> BoundPorts() const;
  // Serves until Stop() or SIGINT/SIGTERM. Blocks; runs options.threads I/O threads.
  void Run();
  // Thread-safe. Open sessions are dropped without any deletion.
  void Stop();

  // Called on the I/O thread for each SIGHUP. Set before Run().
  void SetReloadHandler(std::function<void()> handler);
  // Loads a new certificate chain and key for connections accepted from now on (sessions already
  // in TLS keep theirs). Throws coffer::Error naming the file; the old certificate stays then.
  // Thread-safe.
  void ReloadTls(const std::string& certificate, const std::string& private_key);

  // The state shared by the accept loops and the connections (defined in server.cc).
  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Switches to `user` (its uid, gid and supplementary groups) for good. Throws coffer::Error
// (EPERM) if that fails or could be undone.
void DropPrivileges(const std::string& user);

}  // namespace coffer::pop3d
