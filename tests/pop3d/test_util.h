// Helpers shared by the coffer-pop3d unit tests: temporary Maildirs with messages in them.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace coffer::pop3d::testing {

// A temporary directory removed (recursively) at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "pop3d_test.XXXXXX").string();
    char* p = ::mkdtemp(templ.data());
    if (p == nullptr) std::abort();
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void WriteText(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Creates dir/{new,cur,tmp}.
inline void MakeMaildir(const std::string& dir) {
  std::filesystem::create_directories(dir + "/new");
  std::filesystem::create_directories(dir + "/cur");
  std::filesystem::create_directories(dir + "/tmp");
}

inline std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace coffer::pop3d::testing
