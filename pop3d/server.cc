// See server.h.
#include "pop3d/server.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <chrono>
#include <csignal>
#include <map>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/metrics.h"
#include "pop3d/session.h"

namespace coffer::pop3d {
namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

bool IsLoopback(const asio::ip::address& a) {
  if (a.is_loopback()) return true;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
  }
  return false;
}

}  // namespace

struct Server::Impl {
  Impl(ServerOptions o, Authenticator& a, Control& c)
      : options(std::move(o)),
        auth(a),
        control(c),
        auth_pool(static_cast<std::size_t>(options.auth_threads)),
        signals(io, SIGINT, SIGTERM),
        hup(io, SIGHUP) {}

  ServerOptions options;
  Authenticator& auth;
  Control& control;
  asio::io_context io;
  // The TLS context for new connections; a reload swaps it, connections keep theirs alive.
  mutable std::mutex ssl_mu;                     // guards ssl; nothing else is taken inside
  std::shared_ptr<asio::ssl::context> ssl;       // guarded by ssl_mu; null: no TLS
  bool tls_ready = false;
  asio::thread_pool auth_pool;
  asio::signal_set signals;
  asio::signal_set hup;
  std::function<void()> on_reload;

  std::shared_ptr<asio::ssl::context> Ssl() const {
    std::lock_guard lock(ssl_mu);
    return ssl;
  }
  void WaitHup() {
    hup.async_wait([this](const asio::error_code& ec, int) {
      if (ec) return;
      if (on_reload) on_reload();
      WaitHup();
    });
  }

  metrics::Counter& sessions_total = metrics::Default().AddCounter(
      "coffer_pop3d_sessions_total", "connections accepted (within the limits)");
  metrics::Counter& refused_total = metrics::Default().AddCounter(
      "coffer_pop3d_connections_refused_total", "connections refused by the connection limits");
  metrics::Counter& logins_total = metrics::Default().AddCounter(
      "coffer_pop3d_logins_total", "successful logins");
  metrics::Counter& login_failures_total = metrics::Default().AddCounter(
      "coffer_pop3d_login_failures_total", "failed logins (any reason)");
  metrics::Counter& retr_bytes_total = metrics::Default().AddCounter(
      "coffer_pop3d_retrieved_bytes_total", "message bytes sent by RETR and TOP");
  metrics::Counter& retr_total = metrics::Default().AddCounter(
      "coffer_pop3d_retrieved_messages_total", "messages sent by RETR");
  metrics::Counter& deleted_total = metrics::Default().AddCounter(
      "coffer_pop3d_deleted_messages_total", "messages deleted at QUIT");
  metrics::Histogram& login_seconds = metrics::Default().AddHistogram(
      "coffer_pop3d_login_seconds", "time to check a password and open the maildrop");
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::vector<bool> acceptor_tls;
  std::unique_ptr<asio::local::stream_protocol::acceptor> control_acceptor;

  // Connection counts. Shared with every Connection, whose destructor may run while the
  // io_context destroys pending coroutines, after the rest of Impl is gone.
  struct Limits {
    Limits(std::size_t max_total, std::size_t max_per_ip, Control& c)
        : max_total(max_total), max_per_ip(max_per_ip), control(c) {}
    const std::size_t max_total, max_per_ip;
    Control& control;  // outlives the server
    std::mutex mutex;
    std::size_t total = 0;                              // guarded by mutex
    std::map<asio::ip::address, std::size_t> per_ip;  // guarded by mutex

    // Admits a new connection from `ip` within the limits; false if over a limit.
    bool Admit(const asio::ip::address& ip) {
      std::lock_guard lock(mutex);
      if (total >= max_total) return false;
      auto it = per_ip.find(ip);
      if (it != per_ip.end() && it->second >= max_per_ip) return false;
      ++per_ip[ip];
      ++total;
      control.connections.store(total);
      return true;
    }
    void Release(const asio::ip::address& ip) {
      std::lock_guard lock(mutex);
      auto it = per_ip.find(ip);
      if (it != per_ip.end() && --it->second == 0) per_ip.erase(it);
      --total;
      control.connections.store(total);
    }
  };
  std::shared_ptr<Limits> limits = std::make_shared<Limits>(
      options.max_connections, options.max_connections_per_ip, control);

  awaitable<void> AcceptLoop(tcp::acceptor& acceptor, bool tls);
  awaitable<void> ControlLoop();
  awaitable<void> Refuse(tcp::socket socket, std::string text);
};

namespace {

// One client connection. Lives in its coroutine frame (Run); the watchdog shares it on the
// same strand through a shared_ptr.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server::Impl& server, tcp::socket socket, asio::ip::address remote, bool tls)
      : server_(server),
        socket_(std::move(socket)),
        remote_(std::move(remote)),
        implicit_tls_(tls),
        timer_(socket_.get_executor()),
        delay_timer_(socket_.get_executor()),
        lease_timer_(socket_.get_executor()),
        limits_(server.limits),
        session_(MakeSessionOptions(server, remote_, tls)) {}

  ~Connection() { limits_->Release(remote_); }

  awaitable<void> Run() {
    auto self = shared_from_this();
    Touch();
    asio::co_spawn(socket_.get_executor(), Watchdog(self), asio::detached);
    try {
      co_await Serve();
    } catch (const std::system_error& e) {
      spdlog::debug("connection {}: {}", remote_.to_string(), e.what());
    } catch (const std::exception& e) {
      spdlog::warn("connection {}: {}", remote_.to_string(), e.what());
    }
    Close();
    if (logged_in_) {
      const SessionStats& s = session_.stats();
      server_.retr_bytes_total.Inc(s.retr_bytes);
      server_.retr_total.Inc(s.retr);
      server_.deleted_total.Inc(s.deleted);
      spdlog::info(
          "logout user={} remote={} retr={} retr_bytes={} top={} dele={} deleted={} "
          "bad={} completed={}{}",
          session_.user(), remote_.to_string(), s.retr, s.retr_bytes, s.top, s.dele, s.deleted,
          s.bad_commands, session_.state() == State::kUpdate, s.lease_lost ? " lease=lost" : "");
    }
  }

 private:
  static SessionOptions MakeSessionOptions(Server::Impl& server, const asio::ip::address& remote,
                                           bool tls) {
    SessionOptions o = server.options.session;
    o.tls_available = server.tls_ready;
    o.secure = tls;
    o.plaintext_ok = server.options.allow_plaintext ||
                     (server.options.plaintext_on_loopback && IsLoopback(remote));
    return o;
  }

  void Touch() { deadline_ = Clock::now() + server_.options.idle_timeout; }

  void Close() {
    closed_ = true;
    asio::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    timer_.cancel();
    delay_timer_.cancel();
    lease_timer_.cancel();
  }

  static awaitable<void> Watchdog(std::shared_ptr<Connection> self) {
    while (!self->closed_) {
      self->timer_.expires_at(self->deadline_);
      asio::error_code ec;
      co_await self->timer_.async_wait(asio::redirect_error(use_awaitable, ec));
      if (self->closed_) break;
      if (Clock::now() >= self->deadline_) {
        spdlog::info("connection {}: idle timeout", self->remote_.to_string());
        self->Close();
        break;
      }
    }
  }

  // Renews the maildrop's lease (pop3.shared_store) every lease_s/3 on the password-check
  // pool (the file I/O may wait for the storage nodes), until the connection closes or the
  // lease is released or lost. A lost lease is noticed by the session at the next command.
  static awaitable<void> KeepLease(std::shared_ptr<Connection> self, std::shared_ptr<Lease> lease) {
    while (!self->closed_ && lease->held()) {
      self->lease_timer_.expires_after(lease->renew_interval());
      asio::error_code ec;
      co_await self->lease_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
      if (self->closed_ || !lease->held()) break;
      // `lease` (this frame's parameter) keeps the lease alive; the lambda takes a plain
      // pointer because GCC 12 destroys a lambda passed by value inside a co_await expression
      // twice: a captured shared_ptr would lose a reference at every renewal (and the lease
      // would be released under the session's feet).
      Lease* renewing = lease.get();
      co_await asio::co_spawn(
          self->server_.auth_pool, [renewing]() -> awaitable<bool> { co_return renewing->Renew(); },
          use_awaitable);
    }
  }

  awaitable<void> SleepUntil(Clock::time_point t) {
    delay_timer_.expires_at(t);
    asio::error_code ec;
    co_await delay_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
    if (closed_) throw std::system_error(asio::error::operation_aborted);
  }

  awaitable<void> Sleep(std::chrono::milliseconds d) {
    delay_timer_.expires_after(d);
    asio::error_code ec;
    co_await delay_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
    if (closed_) throw std::system_error(asio::error::operation_aborted);
  }

  awaitable<void> Write(std::string_view data) {
    if (data.empty()) co_return;
    if (server_.control.mode() == PlayDead::kSlow) co_await Sleep(server_.control.slow_delay());
    Touch();
    if (tls_) {
      co_await asio::async_write(*tls_, asio::buffer(data), use_awaitable);
    } else {
      co_await asio::async_write(socket_, asio::buffer(data), use_awaitable);
    }
    Touch();
  }

  awaitable<std::size_t> ReadSome() {
    std::size_t old = inbuf_.size();
    inbuf_.resize(old + 4096);
    std::size_t n;
    if (tls_) {
      n = co_await tls_->async_read_some(asio::buffer(inbuf_.data() + old, 4096), use_awaitable);
    } else {
      n = co_await socket_.async_read_some(asio::buffer(inbuf_.data() + old, 4096),
                                           use_awaitable);
    }
    inbuf_.resize(old + n);
    Touch();
    co_return n;
  }

  awaitable<void> StartTls() {
    ssl_ = server_.Ssl();
    if (!ssl_) throw std::runtime_error("TLS is not configured");
    tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, *ssl_);
    co_await tls_->async_handshake(asio::ssl::stream_base::server, use_awaitable);
    Touch();
  }

  awaitable<void> Serve() {
    if (implicit_tls_) co_await StartTls();
    if (server_.control.mode() == PlayDead::kRefuse) {
      co_await Write("-ERR [SYS/TEMP] Service temporarily unavailable.\r\n");
      co_return;
    }
    co_await Write(session_.Greeting());
    std::string out;
    bool discarding = false;  // skipping the rest of an overlong line
    for (;;) {
      while (server_.control.mode() == PlayDead::kStop) co_await Sleep(std::chrono::milliseconds(100));
      std::size_t nl;
      while ((nl = inbuf_.find('\n')) != std::string::npos) {
        std::string line = inbuf_.substr(0, nl);
        inbuf_.erase(0, nl + 1);
        if (discarding) {
          discarding = false;
          continue;
        }
        if (line.size() > server_.options.max_line_length) {
          Reply r = session_.OnOverlongLine();
          out += r.text;
          if (r.close) {
            co_await Write(out);
            co_return;
          }
          continue;
        }
        if (server_.control.mode() == PlayDead::kRefuse) {
          out += "-ERR [SYS/TEMP] Service temporarily unavailable.\r\n";
          std::string head = line.substr(0, 4);
          for (char& c : head) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
          if (head == "QUIT") {
            co_await Write(out);
            co_return;  // nothing is deleted
          }
          continue;
        }
        Reply r = session_.OnLine(line);
        if (!co_await Handle(std::move(r), out)) co_return;
        if (tls_restarted_) {
          tls_restarted_ = false;
          inbuf_.clear();  // plaintext sent after STLS must not be executed (CVE-2011-0411)
          break;
        }
      }
      if (!discarding && inbuf_.size() > server_.options.max_line_length) {
        inbuf_.clear();
        discarding = true;
        Reply r = session_.OnOverlongLine();
        out += r.text;
        if (r.close) {
          co_await Write(out);
          co_return;
        }
      } else if (discarding) {
        inbuf_.clear();
      }
      co_await Write(out);
      out.clear();
      if (inbuf_.capacity() > 65536) inbuf_.shrink_to_fit();
      co_await ReadSome();
    }
  }

  // Carries out one reply; `out` collects plain replies to write in one go. False: close.
  awaitable<bool> Handle(Reply r, std::string& out) {
    if (r.login) {
      co_await Write(out);
      out.clear();
      Credentials creds = std::move(*r.login);
      Authenticator& auth = server_.auth;
      const auto login_started = Clock::now();
      LoginResult result = co_await asio::co_spawn(
          server_.auth_pool,
          [&auth, &creds]() -> awaitable<LoginResult> { co_return auth.Login(creds.user, creds.password); },
          use_awaitable);
      if (result.status == LoginStatus::kSettling) {
        // pop3.shared_store: the lease is written; give the other boxes time to see it (or to
        // show us theirs) without holding a thread, then confirm it and scan.
        co_await SleepUntil(result.settle_until);
        result = co_await asio::co_spawn(
            server_.auth_pool,
            [&auth, &result]() -> awaitable<LoginResult> {
              co_return auth.FinishLogin(std::move(result));
            },
            use_awaitable);
      }
      server_.login_seconds.Observe(
          std::chrono::duration<double>(Clock::now() - login_started).count());
      LoginStatus status = result.status;
      std::string user = creds.user;
      r = session_.CompleteLogin(std::move(result));
      if (status == LoginStatus::kOk) {
        logged_in_ = true;
        if (auto lease = session_.lease()) {
          asio::co_spawn(socket_.get_executor(), KeepLease(shared_from_this(), std::move(lease)),
                         asio::detached);
        }
        ++server_.control.logins;
        server_.logins_total.Inc();
        spdlog::info("login user={} remote={} tls={}", user, remote_.to_string(),
                     tls_ ? "yes" : "no");
      } else {
        ++server_.control.failed_logins;
        server_.login_failures_total.Inc();
        spdlog::warn("login failed user={} remote={} reason={}", user, remote_.to_string(),
                     status == LoginStatus::kBadCredentials ? "credentials"
                     : status == LoginStatus::kInUse        ? "in-use"
                     : status == LoginStatus::kLoginDelay   ? "login-delay"
                     : status == LoginStatus::kPermFail     ? "permanent-failure"
                                                            : "temporary-failure");
      }
    }
    if (r.delay.count() > 0) {
      co_await Write(out);
      out.clear();
      co_await Sleep(r.delay);
    }
    out += r.text;
    if (r.body) {
      // The status line, the body and the terminator share writes: one write for a small
      // message, chunk-sized writes (each awaited: back-pressure) for a large one.
      std::string chunk;
      const std::size_t flush_at = session_.options().chunk_size;
      while (r.body->Next(chunk)) {
        out += chunk;
        if (out.size() >= flush_at) {
          co_await Write(out);
          out.clear();
        }
      }
      co_await Write(out);
      out.clear();
      session_.BodySent();
    }
    if (r.start_tls) {
      co_await Write(out);
      out.clear();
      co_await StartTls();
      session_.TlsStarted();
      tls_restarted_ = true;
    }
    if (r.close) {
      co_await Write(out);
      out.clear();
      co_return false;
    }
    co_return true;
  }

  Server::Impl& server_;
  tcp::socket socket_;
  asio::ip::address remote_;
  bool implicit_tls_;
  std::shared_ptr<asio::ssl::context> ssl_;  // before tls_: outlives the stream
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;
  asio::steady_timer timer_;
  asio::steady_timer delay_timer_;
  asio::steady_timer lease_timer_;  // KeepLease
  Clock::time_point deadline_;
  bool closed_ = false;
  bool logged_in_ = false;
  bool tls_restarted_ = false;
  std::string inbuf_;
  std::shared_ptr<Server::Impl::Limits> limits_;
  Session session_;
};

}  // namespace

awaitable<void> Server::Impl::Refuse(tcp::socket socket, std::string text) {
  asio::error_code ec;
  co_await asio::async_write(socket, asio::buffer(text), asio::redirect_error(use_awaitable, ec));
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

awaitable<void> Server::Impl::AcceptLoop(tcp::acceptor& acceptor, bool tls) {
  for (;;) {
    while (control.mode() == PlayDead::kStop) {
      asio::steady_timer t(acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await t.async_wait(use_awaitable);
    }
    asio::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(asio::make_strand(io),
                                                        asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      spdlog::warn("accept: {}", ec.message());
      asio::steady_timer t(acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await t.async_wait(use_awaitable);
      continue;
    }
    asio::ip::address remote = socket.remote_endpoint(ec).address();
    if (ec) continue;
    socket.set_option(tcp::no_delay(true), ec);
    if (!limits->Admit(remote)) {
      refused_total.Inc();
      spdlog::warn("connection from {} refused: connection limit", remote.to_string());
      if (!tls) {
        asio::co_spawn(socket.get_executor(),
                       Refuse(std::move(socket), "-ERR [SYS/TEMP] Too many connections.\r\n"),
                       asio::detached);
      }
      continue;
    }
    sessions_total.Inc();
    auto executor = socket.get_executor();
    auto conn = std::make_shared<Connection>(*this, std::move(socket), remote, tls);
    asio::co_spawn(executor, [conn]() -> awaitable<void> { co_await conn->Run(); },
                   asio::detached);
  }
}

awaitable<void> Server::Impl::ControlLoop() {
  for (;;) {
    asio::error_code ec;
    auto socket = co_await control_acceptor->async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;
    std::string line;
    auto n = co_await asio::async_read_until(socket, asio::dynamic_buffer(line, 1024), '\n',
                                             asio::redirect_error(use_awaitable, ec));
    if (ec) continue;
    std::string answer = HandleControlLine(std::string_view(line).substr(0, n), control);
    spdlog::info("control: {} -> {}", line.substr(0, n > 0 ? n - 1 : 0), answer);
    answer.push_back('\n');
    co_await asio::async_write(socket, asio::buffer(answer),
                               asio::redirect_error(use_awaitable, ec));
  }
}

Server::Server(ServerOptions options, Authenticator& auth, Control& control)
    : impl_(std::make_unique<Impl>(std::move(options), auth, control)) {}

Server::~Server() {
  if (impl_ && !impl_->options.control_socket.empty()) {
    ::unlink(impl_->options.control_socket.c_str());
  }
}

namespace {

std::shared_ptr<asio::ssl::context> MakeTlsContext(const std::string& certificate,
                                                   const std::string& private_key) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                   asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
  try {
    ctx->use_certificate_chain_file(certificate);
  } catch (const std::system_error& e) {
    throw Error(EINVAL, "TLS certificate " + certificate + ": " + e.what());
  }
  try {
    ctx->use_private_key_file(private_key, asio::ssl::context::pem);
  } catch (const std::system_error& e) {
    throw Error(EINVAL, "TLS key " + private_key + ": " + e.what());
  }
  return ctx;
}

}  // namespace

void Server::Bind() {
  Impl& s = *impl_;
  if (!s.options.certificate.empty()) {
    auto ctx = MakeTlsContext(s.options.certificate, s.options.private_key);
    std::lock_guard lock(s.ssl_mu);
    s.ssl = std::move(ctx);
    s.tls_ready = true;
  }
  for (const auto& l : s.options.listen) {
    const std::string where = (l.host.find(':') != std::string::npos ? "[" + l.host + "]" : l.host) +
                              ":" + std::to_string(l.port) + (l.tls ? " (TLS)" : "");
    try {
      tcp::endpoint ep(asio::ip::make_address(l.host), l.port);
      auto acc = std::make_unique<tcp::acceptor>(s.io);
      acc->open(ep.protocol());
      acc->set_option(tcp::acceptor::reuse_address(true));
      if (ep.address().is_v6()) acc->set_option(asio::ip::v6_only(true));
      acc->bind(ep);
      acc->listen(1024);
      s.acceptors.push_back(std::move(acc));
      s.acceptor_tls.push_back(l.tls);
    } catch (const std::system_error& e) {
      throw Error(e.code().value() ? e.code().value() : EIO,
                  "cannot listen on " + where + ": " + e.code().message());
    }
  }
  if (!s.options.control_socket.empty()) {
    try {
      ::unlink(s.options.control_socket.c_str());
      mode_t old = ::umask(0077);
      s.control_acceptor = std::make_unique<asio::local::stream_protocol::acceptor>(
          s.io, asio::local::stream_protocol::endpoint(s.options.control_socket));
      ::umask(old);
    } catch (const std::system_error& e) {
      throw Error(e.code().value() ? e.code().value() : EIO,
                  "cannot bind control socket " + s.options.control_socket + ": " +
                      e.code().message());
    }
  }
}

void Server::SetReloadHandler(std::function<void()> handler) {
  impl_->on_reload = std::move(handler);
}

void Server::ReloadTls(const std::string& certificate, const std::string& private_key) {
  auto ctx = MakeTlsContext(certificate, private_key);
  std::lock_guard lock(impl_->ssl_mu);
  impl_->ssl = std::move(ctx);
}

std::vector<std::uint16_t> Server::BoundPorts() const {
  std::vector<std::uint16_t> ports;
  for (const auto& a : impl_->acceptors) ports.push_back(a->local_endpoint().port());
  return ports;
}

void Server::Run() {
  Impl& s = *impl_;
  s.signals.async_wait([&s](const asio::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: stopping", sig);
    s.io.stop();
  });
  s.WaitHup();
  for (std::size_t i = 0; i < s.acceptors.size(); ++i) {
    asio::co_spawn(s.io, s.AcceptLoop(*s.acceptors[i], s.acceptor_tls[i]), asio::detached);
    spdlog::info("listening on {}:{}{}", s.acceptors[i]->local_endpoint().address().to_string(),
                 s.acceptors[i]->local_endpoint().port(), s.acceptor_tls[i] ? " (TLS)" : "");
  }
  if (s.control_acceptor) asio::co_spawn(s.io, s.ControlLoop(), asio::detached);
  std::vector<std::thread> threads;
  for (int i = 1; i < s.options.threads; ++i) threads.emplace_back([&s] { s.io.run(); });
  s.io.run();
  for (auto& t : threads) t.join();
  s.auth_pool.join();
}

void Server::Stop() { impl_->io.stop(); }

void DropPrivileges(const std::string& user) {
  struct passwd pw_storage;
  struct passwd* pw = nullptr;
  std::vector<char> buf(16384);
  if (::getpwnam_r(user.c_str(), &pw_storage, buf.data(), buf.size(), &pw) != 0 || pw == nullptr) {
    throw Error(EINVAL, "run-as user '" + user + "' does not exist");
  }
  if (::setgroups(1, &pw->pw_gid) != 0) ThrowErrno("setgroups");
  if (::setgid(pw->pw_gid) != 0) ThrowErrno("setgid");
  if (::setuid(pw->pw_uid) != 0) ThrowErrno("setuid");
  if (pw->pw_uid != 0 && (::setuid(0) == 0 || ::geteuid() == 0)) {
    throw Error(EPERM, "privileges could be regained after switching to '" + user + "'");
  }
}

}  // namespace coffer::pop3d
