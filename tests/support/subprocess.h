// Runs a program as a child process for tests: arguments as a vector (no shell), optional stdin
// bytes and extra inherited descriptors, captures stdout and stderr, returns the exit status.
// Used to test programs as a user runs them (exit codes, messages), not through internals.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace coffer::testing {

struct RunResult {
  int exit_code = -1;  // exit status, or 128 + signal number if killed by a signal
  std::string out;
  std::string err;
};

struct RunOptions {
  std::string stdin_data;
  // Descriptors to hand to the child as-is: child fd number -> content written into a pipe.
  std::map<int, std::string> extra_fds;
  std::map<std::string, std::string> env;  // added to the environment
  bool new_session = true;  // setsid(): no controlling terminal, so /dev/tty is unavailable
};

RunResult Run(const std::vector<std::string>& argv, const RunOptions& options = {});

// A fresh temporary directory, removed (recursively) by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void WriteTextFile(const std::string& path, const std::string& data, int mode = 0644);
std::string ReadTextFile(const std::string& path);
// The file's mode bits (07777), or -1 if it does not exist.
int FileMode(const std::string& path);
bool FileExists(const std::string& path);

}  // namespace coffer::testing
