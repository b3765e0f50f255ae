// The POP3 session state machine (RFC 1939, 2449, 3206, 2595, 5034, 6856): lines in, replies
// out, no sockets.
//
// The server feeds each input line to OnLine() and carries out what the returned Reply asks:
// send `text`, then stream `body` (and call BodySent() once it is all written), run a login on
// the auth thread pool and hand the result to CompleteLogin(), start TLS, or close. Commands
// come from one table {name, states, min/max args, handler}; Dispatch() is noexcept and turns
// any exception from a handler into "-ERR [SYS/TEMP]". Deletions happen only in Quit() from
// TRANSACTION state; a session destroyed in any other way deletes nothing. A session whose
// maildrop lease was lost to another box (pop3.shared_store) answers its next command with
// "-ERR [IN-USE]" and closes, deleting nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pop3d/auth.h"
#include "pop3d/command.h"
#include "pop3d/maildrop.h"
#include "pop3d/message_stream.h"

namespace coffer::pop3d {

enum class State {
  kAuthorization,
  kAuthWait,        // a login is running; no input is processed
  kSaslContinue,    // "AUTH PLAIN" sent "+ ", waiting for the base64 response
  kTransaction,
  kUpdate,          // after QUIT: closed
};

struct SessionOptions {
  bool tls_available = false;   // STLS may be offered (a certificate is configured)
  bool secure = false;          // already TLS (implicit TLS port, or after STLS)
  bool plaintext_ok = false;    // USER/PASS/AUTH PLAIN allowed without TLS (loopback, config)
  std::string implementation = "coffer-pop3d";  // "" hides the IMPLEMENTATION capability
  std::int64_t login_delay_s = 0;   // advertised LOGIN-DELAY (0: not advertised)
  std::int64_t expire_days = -1;    // advertised EXPIRE (-1: not advertised, -2: NEVER)
  int max_bad_commands = 10;        // in a row; then the connection is closed
  int max_failed_logins = 3;        // then the connection is closed
  std::chrono::milliseconds failure_delay{1000};      // first failed login; doubles
  std::chrono::milliseconds failure_delay_max{15000};
  std::size_t chunk_size = 64 * 1024;  // RETR/TOP read size
};

struct Credentials {
  std::string user;
  std::string password;
};

struct Reply {
  std::string text;                      // complete lines, CRLF-terminated
  std::unique_ptr<MessageStream> body;   // streamed after text; then call BodySent()
  std::optional<Credentials> login;      // run Authenticator::Login, then CompleteLogin()
  std::chrono::milliseconds delay{0};    // wait this long before sending text (failed logins)
  bool start_tls = false;                // after text: TLS handshake; discard buffered input
  bool close = false;                    // after text: close the connection
};

// Per-session counters for the log line at the end.
struct SessionStats {
  std::uint64_t retr = 0, retr_bytes = 0, top = 0, dele = 0, deleted = 0;
  std::uint64_t bad_commands = 0, failed_logins = 0;
  bool lease_lost = false;  // ended because another box took the maildrop's lease
};

class Session {
 public:
  explicit Session(SessionOptions options);

  // The greeting line.
  std::string Greeting() const;

  // Handles one input line (without CRLF). noexcept: errors become "-ERR" replies.
  // Must not be called while state() is kAuthWait or a body is being streamed.
  Reply OnLine(std::string_view line) noexcept;

  // A line longer than the limit was received (and discarded): counts as a bad command.
  Reply OnOverlongLine() noexcept;

  // Delivers the result of the login requested by the last Reply.
  Reply CompleteLogin(LoginResult result) noexcept;

  // The body of the last RETR was written completely (marks the message seen).
  void BodySent() noexcept;

  // TLS is now active (after a successful STLS handshake): forget USER, re-offer capabilities.
  void TlsStarted() noexcept;

  State state() const noexcept { return state_; }
  const std::string& user() const noexcept { return user_; }
  const SessionStats& stats() const noexcept { return stats_; }
  const SessionOptions& options() const noexcept { return options_; }
  bool utf8() const noexcept { return utf8_; }
  // The maildrop's lease while logged in with pop3.shared_store (the server renews it); null
  // otherwise.
  std::shared_ptr<Lease> lease() const noexcept { return maildrop_ ? maildrop_->lease() : nullptr; }

 private:
  struct Command;
  using Handler = Reply (Session::*)(const ParsedCommand&);

  Reply Dispatch(const ParsedCommand& cmd) noexcept;
  Reply Bad(std::string_view text);
  std::string Capabilities() const;
  bool PlaintextAllowed() const noexcept { return options_.secure || options_.plaintext_ok; }
  // Parses a message-number argument; on failure sets *error to the reply.
  std::optional<std::size_t> MessageArg(const std::string& arg, Reply* error);
  Reply StartLogin(std::string user, std::string password);
  Reply SaslPlain(std::string_view base64);
  Reply LeaseLost();

  Reply Capa(const ParsedCommand&);
  Reply Quit(const ParsedCommand&);
  Reply User(const ParsedCommand&);
  Reply Pass(const ParsedCommand&);
  Reply Auth(const ParsedCommand&);
  Reply Apop(const ParsedCommand&);
  Reply Stls(const ParsedCommand&);
  Reply Utf8(const ParsedCommand&);
  Reply Stat(const ParsedCommand&);
  Reply List(const ParsedCommand&);
  Reply Retr(const ParsedCommand&);
  Reply Top(const ParsedCommand&);
  Reply Dele(const ParsedCommand&);
  Reply Noop(const ParsedCommand&);
  Reply Rset(const ParsedCommand&);
  Reply Uidl(const ParsedCommand&);

  static const Command kCommands[];

  SessionOptions options_;
  State state_ = State::kAuthorization;
  std::string user_;           // after USER (authorization) / after login
  bool utf8_ = false;
  int bad_in_a_row_ = 0;
  int failed_logins_ = 0;
  std::unique_ptr<Maildrop> maildrop_;
  std::vector<bool> deleted_;
  std::uint64_t live_count_ = 0, live_size_ = 0;
  std::optional<std::size_t> pending_seen_;
  SessionStats stats_;
};

}  // namespace coffer::pop3d
