// Load generator for tests/bench/pop3_bench.py: N threads, one per user, each logging in over
// POP3 again and again for a fixed time and either retrieving every message (mode "retr") or
// only logging in and out (mode "login"). Prints "<count> <bytes>" (messages or logins, and
// body bytes received). C++ so that the client is not the bottleneck on a small machine.
//
//   pop3_bench_client retr|login PORT SECONDS PASSWORD USER...
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

class Client {
 public:
  explicit Client(int port) : buf_(1 << 18) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      throw std::runtime_error("connect failed");
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~Client() { ::close(fd_); }

  void Send(const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      off += static_cast<std::size_t>(n);
    }
  }

  std::string Line() {
    for (;;) {
      for (std::size_t i = start_; i + 1 < end_; ++i) {
        if (buf_[i] == '\r' && buf_[i + 1] == '\n') {
          std::string line(buf_.data() + start_, i - start_);
          start_ = i + 2;
          return line;
        }
      }
      Fill();
    }
  }

  // Consumes a multi-line body up to and including the ".\r\n" line; returns its size.
  std::uint64_t Body() {
    std::uint64_t n = 0;
    int state = 1;  // 1: at line start, 2: ".", 3: ".\r", 0: inside a line
    for (;;) {
      while (start_ < end_) {
        char c = buf_[start_++];
        ++n;
        switch (state) {
          case 1: state = c == '.' ? 2 : (c == '\n' ? 1 : 0); break;
          case 2: state = c == '\r' ? 3 : (c == '\n' ? 1 : 0); break;
          case 3:
            if (c == '\n') return n;
            state = 0;
            break;
          default: state = c == '\n' ? 1 : 0; break;
        }
      }
      Fill();
    }
  }

  void Login(const std::string& user, const std::string& password) {
    Expect(Line(), "greeting");
    Send("USER " + user + "\r\n");
    Expect(Line(), "USER");
    Send("PASS " + password + "\r\n");
    Expect(Line(), "PASS");
  }

  static void Expect(const std::string& line, const char* what) {
    if (line.rfind("+OK", 0) != 0) {
      throw std::runtime_error(std::string(what) + ": " + line);
    }
  }

 private:
  void Fill() {
    if (start_ == end_) {
      start_ = end_ = 0;
    } else if (end_ == buf_.size()) {
      std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
      end_ -= start_;
      start_ = 0;
    }
    ssize_t n = ::recv(fd_, buf_.data() + end_, buf_.size() - end_, 0);
    if (n <= 0) throw std::runtime_error("connection closed");
    end_ += static_cast<std::size_t>(n);
  }

  int fd_;
  std::vector<char> buf_;
  std::size_t start_ = 0, end_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s retr|login PORT SECONDS PASSWORD USER...\n", argv[0]);
    return 64;
  }
  std::string mode = argv[1];
  int port = std::atoi(argv[2]);
  double seconds = std::atof(argv[3]);
  std::string password = argv[4];
  std::vector<std::string> users(argv + 5, argv + argc);
  std::atomic<std::uint64_t> count{0}, bytes{0};
  std::atomic<int> errors{0};
  auto stop_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(seconds));
  std::vector<std::thread> threads;
  for (const auto& user : users) {
    threads.emplace_back([&, user] {
      try {
        while (Clock::now() < stop_at) {
          Client c(port);
          c.Login(user, password);
          if (mode == "retr") {
            c.Send("STAT\r\n");
            std::string stat = c.Line();
            Client::Expect(stat, "STAT");
            int messages = std::atoi(stat.c_str() + 4);
            for (int i = 1; i <= messages && Clock::now() < stop_at; ++i) {
              c.Send("RETR " + std::to_string(i) + "\r\n");
              Client::Expect(c.Line(), "RETR");
              bytes += c.Body();
              ++count;
            }
          } else {
            ++count;
          }
          c.Send("QUIT\r\n");
          c.Line();
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "client %s: %s\n", user.c_str(), e.what());
        ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  std::printf("%llu %llu\n", static_cast<unsigned long long>(count.load()),
              static_cast<unsigned long long>(bytes.load()));
  return errors.load() == 0 ? 0 : 1;
}
