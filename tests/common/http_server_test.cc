// Tests of common/http_server: the request handling as a pure function (status codes, HEAD,
// validation: a bad request gets 400 and calls no handler), and a real listener on 127.0.0.1
// (limits, a stalled client, a port in use, the client).
#include "common/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/fd.h"

namespace coffer::http {
namespace {

// A table with one path whose answer the test sets, counting the handler's calls.
struct Table {
  std::atomic<int> calls{0};
  Reply reply{200, "text/plain; charset=utf-8", "ok state=healthy\n"};
  Routes routes() {
    return {{"/health", [this] {
               ++calls;
               return reply;
             }}};
  }
};

std::string StatusLine(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

std::string Body(const std::string& response) {
  auto end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

TEST(HttpRespondTest, GetAnswersTheHandlersStatusAndBody) {
  Table t;
  std::string r = Respond("GET /health HTTP/1.0\r\nHost: x\r\n\r\n", t.routes());
  EXPECT_EQ(StatusLine(r), "HTTP/1.0 200 OK");
  EXPECT_EQ(Body(r), "ok state=healthy\n");
  EXPECT_NE(r.find("\r\nContent-Length: 17\r\n"), std::string::npos) << r;
  EXPECT_NE(r.find("\r\nConnection: close\r\n"), std::string::npos) << r;
  EXPECT_EQ(t.calls, 1);

  t.reply = Reply{503, "text/plain; charset=utf-8", "unavailable state=read_only\n"};
  r = Respond("GET /health HTTP/1.1\nHost: x\n\n", t.routes());  // bare LF line ends are fine
  EXPECT_EQ(StatusLine(r), "HTTP/1.0 503 Service Unavailable");
  EXPECT_EQ(Body(r), "unavailable state=read_only\n");
  EXPECT_EQ(t.calls, 2);

  // A query string does not change the path.
  EXPECT_EQ(StatusLine(Respond("GET /health?from=lb HTTP/1.0\r\n\r\n", t.routes())),
            "HTTP/1.0 503 Service Unavailable");
  EXPECT_EQ(t.calls, 3);
}

TEST(HttpRespondTest, HeadHasTheHeadersOfGetWithoutTheBody) {
  Table t;
  std::string r = Respond("HEAD /health HTTP/1.0\r\n\r\n", t.routes());
  EXPECT_EQ(StatusLine(r), "HTTP/1.0 200 OK");
  EXPECT_NE(r.find("\r\nContent-Length: 17\r\n"), std::string::npos) << r;
  EXPECT_EQ(Body(r), "");
  EXPECT_EQ(r.substr(r.size() - 4), "\r\n\r\n");
  EXPECT_EQ(t.calls, 1);
}

TEST(HttpRespondTest, OtherPathsAre404AndOtherMethods405WithoutCallingTheHandler) {
  Table t;
  std::string r = Respond("GET /metrics HTTP/1.0\r\n\r\n", t.routes());
  EXPECT_EQ(StatusLine(r), "HTTP/1.0 404 Not Found");
  EXPECT_NE(Body(r).find("/health"), std::string::npos) << r;
  EXPECT_EQ(StatusLine(Respond("GET /health/ HTTP/1.0\r\n\r\n", t.routes())),
            "HTTP/1.0 404 Not Found");
  EXPECT_EQ(StatusLine(Respond("GET / HTTP/1.0\r\n\r\n", t.routes())), "HTTP/1.0 404 Not Found");
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS", "TRACE"}) {
    r = Respond(std::string(method) + " /health HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
                t.routes());
    EXPECT_EQ(StatusLine(r), "HTTP/1.0 405 Method Not Allowed") << method;
    EXPECT_NE(r.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos) << r;
  }
  EXPECT_EQ(t.calls, 0);
}

TEST(HttpRespondTest, MalformedAndOversizedRequestsAre400AndChangeNothing) {
  Table t;
  const std::string big_header = "X-Pad: " + std::string(kMaxRequestBytes, 'a') + "\r\n";
  const struct {
    std::string request;
    std::string why;
  } cases[] = {
      {"GET /health HTTP/1.0\r\n" + big_header + "\r\n", "request too large"},
      {"GET /health HTTP/1.0\r\n", "incomplete request"},
      {"GET /health HTTP/1.0", "incomplete request"},
      {"\r\n\r\n", "malformed request line"},
      {"GET /health\r\n\r\n", "malformed request line"},           // HTTP/0.9
      {"GET  /health HTTP/1.0\r\n\r\n", "malformed request line"},  // two spaces
      {"GET /health HTTP/1.0 x\r\n\r\n", "malformed request line"},
      {"get /health HTTP/1.0\r\n\r\n", "malformed request line"},
      {"G\xc3\x89T /health HTTP/1.0\r\n\r\n", "malformed request line"},
      {"GET health HTTP/1.0\r\n\r\n", "must start with /"},
      {"GET http://x/health HTTP/1.0\r\n\r\n", "must start with /"},
      {"GET /health HTTP/2.0\r\n\r\n", "unsupported protocol version"},
      {"GET /health FTP/1.0\r\n\r\n", "unsupported protocol version"},
      {std::string("GET /hea\0lth HTTP/1.0\r\n\r\n", 25), "control character"},
      {"GET /health HTTP/1.0\r\nHost: a\rb\r\n\r\n", "control character"},
      {"GET /health HTTP/1.0\r\nX: \x1b[2J\r\n\r\n", "control character"},
      {"GET /health HTTP/1.0\r\nno colon here\r\n\r\n", "malformed header line"},
      {"GET /health HTTP/1.0\r\n: empty name\r\n\r\n", "malformed header line"},
      {"GET /health HTTP/1.0\r\nBad Name: x\r\n\r\n", "malformed header line"},
      {"POST /health\r\n\r\n", "malformed request line"},  // 400 before 405
  };
  for (const auto& c : cases) {
    std::string r = Respond(c.request, t.routes());
    EXPECT_EQ(StatusLine(r), "HTTP/1.0 400 Bad Request") << c.request;
    EXPECT_NE(Body(r).find(c.why), std::string::npos) << c.request << " -> " << r;
  }
  EXPECT_EQ(t.calls, 0);
  // Just at the limit is fine.
  std::string at_limit = "GET /health HTTP/1.0\r\nX-Pad: ";
  at_limit += std::string(kMaxRequestBytes - at_limit.size() - 4, 'a') + "\r\n\r\n";
  ASSERT_EQ(at_limit.size(), kMaxRequestBytes);
  EXPECT_EQ(StatusLine(Respond(at_limit, t.routes())), "HTTP/1.0 200 OK");
  EXPECT_EQ(t.calls, 1);
}

TEST(HttpRespondTest, AHandlerThatThrowsIs500) {
  Routes routes = {{"/health", []() -> Reply { throw Error(EIO, "status unreadable"); }}};
  std::string r = Respond("GET /health HTTP/1.0\r\n\r\n", routes);
  EXPECT_EQ(StatusLine(r), "HTTP/1.0 500 Internal Server Error");
  EXPECT_NE(Body(r).find("status unreadable"), std::string::npos) << r;
}

TEST(HttpAddressTest, NumericHostAndPortOnly) {
  EXPECT_EQ(ParseAddress("127.0.0.1:9402"), (Address{"127.0.0.1", 9402}));
  EXPECT_EQ(ParseAddress("[::1]:9401"), (Address{"::1", 9401}));
  EXPECT_EQ(ParseAddress("0.0.0.0:0").port, 0);
  for (const char* bad : {"localhost:80", "127.0.0.1:99999", "127.0.0.1", "127.0.0.1:", ":80",
                          "127.0.0.1:80x", "", "::1:80"}) {
    try {
      ParseAddress(bad);
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.err(), EINVAL) << bad;
    }
  }
}

// Sends `data` to 127.0.0.1:port (half-closing when `close_write`) and reads until the server
// closes or `timeout_ms` passes.
std::string Exchange(std::uint16_t port, const std::string& data, bool close_write,
                     int timeout_ms = 5000) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.Get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    return "connect failed";
  }
  std::size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd.Get(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer 400 and close before reading everything
    sent += static_cast<std::size_t>(n);
  }
  if (close_write) ::shutdown(fd.Get(), SHUT_WR);
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{fd.Get(), POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) break;
    ssize_t n = ::recv(fd.Get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

std::uint16_t PortOf(const Server& s) {
  const std::string& url = s.base_url();
  return static_cast<std::uint16_t>(std::stoi(url.substr(url.rfind(':') + 1)));
}

TEST(HttpServerTest, ServesTheTableAndSurvivesBadClients) {
  Table t;
  Server server;
  server.Start("127.0.0.1:0", t.routes(), "health checks");
  ASSERT_TRUE(server.running());
  const std::uint16_t port = PortOf(server);
  const std::string address = "127.0.0.1:" + std::to_string(port);
  ASSERT_EQ(server.base_url(), "http://" + address);

  Response r = Fetch(address, "GET", "/health", 5000);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok state=healthy\n");
  r = Fetch(address, "HEAD", "/health", 5000);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  t.reply = Reply{503, "text/plain; charset=utf-8", "unavailable state=unmounting\n"};
  r = Fetch(address, "GET", "/health", 5000);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "unavailable state=unmounting\n");
  try {
    HttpGet(address, "/health", 5000);
    ADD_FAILURE() << "503 must throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), EPROTO);
    EXPECT_NE(std::string(e.what()).find("503"), std::string::npos) << e.what();
  }
  EXPECT_EQ(Fetch(address, "GET", "/nothing", 5000).status, 404);
  EXPECT_EQ(Fetch(address, "DELETE", "/health", 5000).status, 405);
  const int calls = t.calls;
  EXPECT_EQ(calls, 4);

  // Oversized: answered 400 without reading it all; the handler is not called.
  std::string huge = "GET /health HTTP/1.0\r\nX-Pad: " + std::string(64 * 1024, 'a') + "\r\n\r\n";
  EXPECT_EQ(StatusLine(Exchange(port, huge, false)), "HTTP/1.0 400 Bad Request");
  // Garbage, then a client that closes without a blank line, then a port probe.
  EXPECT_EQ(StatusLine(Exchange(port, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", true)),
            "HTTP/1.0 400 Bad Request");
  EXPECT_EQ(StatusLine(Exchange(port, "GET /health HTTP/1.0\r\n", true)),
            "HTTP/1.0 400 Bad Request");
  EXPECT_EQ(Exchange(port, "", true), "");
  // A client that stalls mid-request is answered once the 2 s are up, and holds nobody up
  // longer.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(StatusLine(Exchange(port, "GET /health HTTP/1.0\r\nHost:", false)),
            "HTTP/1.0 400 Bad Request");
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, std::chrono::milliseconds(kRequestTimeoutMs - 100));
  EXPECT_LT(waited, std::chrono::milliseconds(kRequestTimeoutMs + 2000));
  EXPECT_EQ(t.calls, calls);

  // Still serving.
  EXPECT_EQ(Fetch(address, "GET", "/health", 5000).status, 503);
  EXPECT_EQ(t.calls, calls + 1);

  // A port in use: a clear error naming the address; the running server is untouched.
  try {
    Listener::Bind(address, "health checks");
    ADD_FAILURE() << "second bind succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), EADDRINUSE);
    EXPECT_NE(std::string(e.what()).find("cannot listen for health checks on " + address),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(Fetch(address, "GET", "/health", 5000).status, 503);

  server.Stop();
  EXPECT_FALSE(server.running());
  try {
    Fetch(address, "GET", "/health", 2000);
    ADD_FAILURE() << "connection refused expected";
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), ECONNREFUSED) << e.what();
  }
}

TEST(HttpServerTest, BindingApartFromServing) {
  Listener l = Listener::Bind("127.0.0.1:0", "metrics");
  ASSERT_TRUE(l.bound());
  const std::string url = l.base_url();
  Table t;
  Server server;
  server.Start(std::move(l), t.routes());
  EXPECT_EQ(server.base_url(), url);
  EXPECT_EQ(Fetch(url.substr(7), "GET", "/health", 5000).status, 200);
  Server unbound;
  EXPECT_THROW(unbound.Start(Listener(), t.routes()), Error);
  EXPECT_FALSE(unbound.running());
}

}  // namespace
}  // namespace coffer::http
