// See session.h. Modelled on Dovecot's src/pop3/pop3-commands.c: one table of commands, a precise
// "-ERR" for each kind of bad input, and a count of bad commands in a row.
#include "pop3d/session.h"

#include <sodium.h>

#include <algorithm>
#include <exception>

#include <spdlog/spdlog.h>

namespace coffer::pop3d {
namespace {

constexpr unsigned kAuthState = 1;
constexpr unsigned kTransState = 2;

unsigned StateBit(State s) {
  switch (s) {
    case State::kAuthorization: return kAuthState;
    case State::kTransaction: return kTransState;
    default: return 0;
  }
}

// An argument echoed back in an error: printable ASCII only, bounded.
std::string Echo(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 40)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  return out;
}

Reply Text(std::string text) {
  Reply r;
  r.text = std::move(text);
  return r;
}

}  // namespace

struct Session::Command {
  std::string_view name;
  unsigned states;
  int min_args;
  int max_args;  // -1: the rest of the line is one argument (USER, PASS)
  Handler handler;
};

const Session::Command Session::kCommands[] = {
    {"CAPA", kAuthState | kTransState, 0, 0, &Session::Capa},
    {"QUIT", kAuthState | kTransState, 0, 0, &Session::Quit},
    {"USER", kAuthState, 1, -1, &Session::User},
    {"PASS", kAuthState, 0, -1, &Session::Pass},
    {"AUTH", kAuthState, 0, 2, &Session::Auth},
    {"APOP", kAuthState, 2, 2, &Session::Apop},
    {"STLS", kAuthState, 0, 0, &Session::Stls},
    {"UTF8", kAuthState, 0, 0, &Session::Utf8},
    {"STAT", kTransState, 0, 0, &Session::Stat},
    {"LIST", kTransState, 0, 1, &Session::List},
    {"RETR", kTransState, 1, 1, &Session::Retr},
    {"TOP", kTransState, 2, 2, &Session::Top},
    {"DELE", kTransState, 1, 1, &Session::Dele},
    {"NOOP", kTransState, 0, 0, &Session::Noop},
    {"RSET", kTransState, 0, 0, &Session::Rset},
    {"UIDL", kTransState, 0, 1, &Session::Uidl},
};

Session::Session(SessionOptions options) : options_(std::move(options)) {}

std::string Session::Greeting() const {
  return options_.implementation.empty() ? "+OK POP3 server ready.\r\n"
                                         : "+OK " + options_.implementation + " ready.\r\n";
}

Reply Session::Bad(std::string_view text) {
  ++stats_.bad_commands;
  Reply r;
  if (++bad_in_a_row_ >= options_.max_bad_commands) {
    r.text = "-ERR Too many bad commands, closing connection.\r\n";
    r.close = true;
    return r;
  }
  r.text = "-ERR ";
  r.text.append(text);
  r.text.append("\r\n");
  return r;
}

Reply Session::OnLine(std::string_view line) noexcept {
  try {
    if (state_ == State::kSaslContinue) {
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      state_ = State::kAuthorization;
      if (line == "*") return Bad("Authentication cancelled.");
      return SaslPlain(line);
    }
    if (state_ != State::kAuthorization && state_ != State::kTransaction) {
      return Text("-ERR [SYS/TEMP] Command not expected now.\r\n");
    }
    ParsedCommand cmd = ParseCommand(line);
    if (cmd.error != ParseError::kNone) return Bad(std::string(ParseErrorText(cmd.error)) + ".");
    return Dispatch(cmd);
  } catch (...) {
    return Text("-ERR [SYS/TEMP] Internal error.\r\n");
  }
}

Reply Session::OnOverlongLine() noexcept {
  try {
    if (state_ == State::kSaslContinue) state_ = State::kAuthorization;
    return Bad("Line too long.");
  } catch (...) {
    Reply r;
    r.close = true;
    return r;
  }
}

Reply Session::Dispatch(const ParsedCommand& cmd) noexcept {
  try {
    if (state_ == State::kTransaction && maildrop_ && maildrop_->lease_lost()) {
      return LeaseLost();
    }
    const Command* found = nullptr;
    for (const Command& c : kCommands) {
      if (c.name == cmd.name) {
        found = &c;
        break;
      }
    }
    if (found == nullptr) return Bad("Unknown command: " + Echo(cmd.name));
    if ((found->states & StateBit(state_)) == 0) {
      return Bad(state_ == State::kAuthorization ? "Not logged in." : "Already logged in.");
    }
    if (found->max_args >= 0) {
      if (cmd.args.size() > static_cast<std::size_t>(found->max_args)) {
        return Bad("Too many arguments.");
      }
    }
    if (cmd.args.size() < static_cast<std::size_t>(found->min_args)) {
      return Bad("Missing argument.");
    }
    Reply reply = (this->*(found->handler))(cmd);
    if (reply.text.rfind("+", 0) == 0) bad_in_a_row_ = 0;
    return reply;
  } catch (const std::exception& e) {
    spdlog::error("pop3 command {} failed: {}", cmd.name, e.what());
    return Text("-ERR [SYS/TEMP] " + Echo(cmd.name) + " failed, try again later.\r\n");
  } catch (...) {
    return Text("-ERR [SYS/TEMP] Internal error.\r\n");
  }
}

std::string Session::Capabilities() const {
  std::string out = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
                    "AUTH-RESP-CODE\r\nPIPELINING\r\nUTF8 USER\r\n";
  if (state_ == State::kAuthorization) {
    if (PlaintextAllowed()) out += "USER\r\nSASL PLAIN\r\n";
    if (options_.tls_available && !options_.secure) out += "STLS\r\n";
  }
  if (options_.login_delay_s > 0) {
    out += "LOGIN-DELAY " + std::to_string(options_.login_delay_s) + "\r\n";
  }
  if (options_.expire_days == -2) out += "EXPIRE NEVER\r\n";
  if (options_.expire_days >= 0) out += "EXPIRE " + std::to_string(options_.expire_days) + "\r\n";
  if (!options_.implementation.empty()) {
    out += "IMPLEMENTATION " + options_.implementation + "\r\n";
  }
  out += ".\r\n";
  return out;
}

Reply Session::LeaseLost() {
  // Not UPDATE: the client's deletions are forgotten, as if the connection had dropped.
  maildrop_.reset();
  deleted_.clear();
  stats_.lease_lost = true;
  state_ = State::kAuthorization;
  Reply r;
  r.text = "-ERR [IN-USE] Another session took over this maildrop; nothing was deleted.\r\n";
  r.close = true;
  return r;
}

Reply Session::Capa(const ParsedCommand&) { return Text(Capabilities()); }

Reply Session::Quit(const ParsedCommand&) {
  Reply r;
  r.close = true;
  if (state_ == State::kTransaction && maildrop_) {
    state_ = State::kUpdate;
    std::vector<std::size_t> doomed;
    for (std::size_t i = 0; i < deleted_.size(); ++i) {
      if (deleted_[i]) doomed.push_back(i);
    }
    DeleteResult done = maildrop_->Delete(doomed);
    stats_.deleted = done.removed;
    stats_.lease_lost = done.lease_lost;
    maildrop_.reset();
    if (done.lease_lost && done.removed == 0) {
      r.text = "-ERR [IN-USE] Another session took over this maildrop; nothing was deleted.\r\n";
    } else {
      r.text = done.failed == 0 ? "+OK Logging out.\r\n"
                                : "-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n";
    }
    return r;
  }
  state_ = State::kUpdate;
  r.text = "+OK Logging out.\r\n";
  return r;
}

Reply Session::User(const ParsedCommand& cmd) {
  if (!PlaintextAllowed()) {
    return Text("-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
  }
  std::string name = cmd.rest;
  while (!name.empty() && name.front() == ' ') name.erase(name.begin());
  while (!name.empty() && name.back() == ' ') name.pop_back();
  if (name.empty()) return Bad("Missing argument.");
  user_ = std::move(name);
  return Text("+OK\r\n");
}

Reply Session::Pass(const ParsedCommand& cmd) {
  if (!PlaintextAllowed()) {
    return Text("-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
  }
  if (user_.empty()) return Bad("No username given.");
  if (cmd.rest.empty()) return Bad("No password given.");
  std::string user = std::move(user_);
  user_.clear();
  return StartLogin(std::move(user), cmd.rest);
}

Reply Session::StartLogin(std::string user, std::string password) {
  state_ = State::kAuthWait;
  Reply r;
  r.login = Credentials{std::move(user), std::move(password)};
  return r;
}

Reply Session::Auth(const ParsedCommand& cmd) {
  if (cmd.args.empty()) return Text("+OK\r\nPLAIN\r\n.\r\n");
  std::string mech = cmd.args[0];
  std::transform(mech.begin(), mech.end(), mech.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  if (mech != "PLAIN") return Bad("Unsupported authentication mechanism.");
  if (!PlaintextAllowed()) {
    return Text("-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
  }
  if (cmd.args.size() == 2) return SaslPlain(cmd.args[1]);
  state_ = State::kSaslContinue;
  return Text("+ \r\n");
}

Reply Session::SaslPlain(std::string_view base64) {
  if (base64 == "=") base64 = "";
  std::string decoded(base64.size(), '\0');
  std::size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(decoded.data()), decoded.size(),
                        base64.data(), base64.size(), nullptr, &len, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0) {
    return Bad("Invalid base64 data.");
  }
  decoded.resize(len);
  // authzid NUL authcid NUL passwd
  std::size_t a = decoded.find('\0');
  std::size_t b = a == std::string::npos ? a : decoded.find('\0', a + 1);
  if (b == std::string::npos) return Bad("Invalid SASL PLAIN response.");
  std::string authzid = decoded.substr(0, a);
  std::string authcid = decoded.substr(a + 1, b - a - 1);
  std::string password = decoded.substr(b + 1);
  sodium_memzero(decoded.data(), decoded.size());
  if (authcid.empty() || password.find('\0') != std::string::npos ||
      (!authzid.empty() && authzid != authcid)) {
    ++failed_logins_;
    return Text("-ERR [AUTH] Authentication failed.\r\n");
  }
  return StartLogin(std::move(authcid), std::move(password));
}

Reply Session::CompleteLogin(LoginResult result) noexcept {
  try {
    state_ = State::kAuthorization;
    switch (result.status) {
      case LoginStatus::kOk: {
        maildrop_ = std::move(result.maildrop);
        user_ = result.user;
        state_ = State::kTransaction;
        deleted_.assign(maildrop_->Count(), false);
        live_count_ = maildrop_->Count();
        live_size_ = 0;
        for (std::size_t i = 0; i < maildrop_->Count(); ++i) live_size_ += maildrop_->At(i).size;
        bad_in_a_row_ = 0;
        return Text("+OK Logged in.\r\n");
      }
      case LoginStatus::kBadCredentials: {
        ++failed_logins_;
        ++stats_.failed_logins;
        Reply r;
        auto delay = options_.failure_delay;
        for (int i = 1; i < failed_logins_ && delay < options_.failure_delay_max; ++i) delay *= 2;
        r.delay = std::min(delay, options_.failure_delay_max);
        if (failed_logins_ >= options_.max_failed_logins) {
          r.text = "-ERR [AUTH] Authentication failed, closing connection.\r\n";
          r.close = true;
        } else {
          r.text = "-ERR [AUTH] Authentication failed.\r\n";
        }
        return r;
      }
      case LoginStatus::kInUse:
        return Text("-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n");
      case LoginStatus::kLoginDelay:
        return Text("-ERR [LOGIN-DELAY] Minimum time between logins has not passed.\r\n");
      case LoginStatus::kPermFail:
        return Text("-ERR [SYS/PERM] Mailbox unavailable, contact the administrator.\r\n");
      case LoginStatus::kTempFail:
      case LoginStatus::kSettling:  // the server finishes settling first; never here
        break;
    }
  } catch (...) {
  }
  maildrop_.reset();
  state_ = State::kAuthorization;
  return Text("-ERR [SYS/TEMP] Temporary failure, try again later.\r\n");
}

Reply Session::Apop(const ParsedCommand&) {
  return Text("-ERR APOP is not supported; use USER/PASS or AUTH PLAIN.\r\n");
}

Reply Session::Stls(const ParsedCommand&) {
  if (options_.secure) return Bad("TLS is already active.");
  if (!options_.tls_available) return Bad("TLS is not available.");
  Reply r;
  r.text = "+OK Begin TLS negotiation now.\r\n";
  r.start_tls = true;
  return r;
}

void Session::TlsStarted() noexcept {
  options_.secure = true;
  user_.clear();
}

Reply Session::Utf8(const ParsedCommand&) {
  utf8_ = true;
  return Text("+OK UTF8 enabled.\r\n");
}

std::optional<std::size_t> Session::MessageArg(const std::string& arg, Reply* error) {
  auto n = ParseNumber(arg);
  if (!n) {
    *error = Bad("Invalid message number: " + Echo(arg));
    return std::nullopt;
  }
  if (*n == 0 || *n > maildrop_->Count()) {
    *error = Bad("There's no message " + std::to_string(*n) + ".");
    return std::nullopt;
  }
  std::size_t index = static_cast<std::size_t>(*n - 1);
  if (deleted_[index]) {
    *error = Bad("Message is deleted.");
    return std::nullopt;
  }
  return index;
}

Reply Session::Stat(const ParsedCommand&) {
  return Text("+OK " + std::to_string(live_count_) + " " + std::to_string(live_size_) + "\r\n");
}

Reply Session::List(const ParsedCommand& cmd) {
  if (!cmd.args.empty()) {
    Reply error;
    auto index = MessageArg(cmd.args[0], &error);
    if (!index) return error;
    return Text("+OK " + std::to_string(*index + 1) + " " +
                std::to_string(maildrop_->At(*index).size) + "\r\n");
  }
  std::string out = "+OK " + std::to_string(live_count_) + " messages (" +
                    std::to_string(live_size_) + " octets)\r\n";
  out.reserve(out.size() + maildrop_->Count() * 16);
  for (std::size_t i = 0; i < maildrop_->Count(); ++i) {
    if (deleted_[i]) continue;
    out += std::to_string(i + 1);
    out += ' ';
    out += std::to_string(maildrop_->At(i).size);
    out += "\r\n";
  }
  out += ".\r\n";
  return Text(std::move(out));
}

Reply Session::Uidl(const ParsedCommand& cmd) {
  if (!cmd.args.empty()) {
    Reply error;
    auto index = MessageArg(cmd.args[0], &error);
    if (!index) return error;
    return Text("+OK " + std::to_string(*index + 1) + " " + maildrop_->At(*index).uidl + "\r\n");
  }
  std::string out = "+OK\r\n";
  for (std::size_t i = 0; i < maildrop_->Count(); ++i) {
    if (deleted_[i]) continue;
    out += std::to_string(i + 1);
    out += ' ';
    out += maildrop_->At(i).uidl;
    out += "\r\n";
  }
  out += ".\r\n";
  return Text(std::move(out));
}

Reply Session::Retr(const ParsedCommand& cmd) {
  Reply error;
  auto index = MessageArg(cmd.args[0], &error);
  if (!index) return error;
  UniqueFd fd = maildrop_->OpenMessage(*index);
  if (!fd) return Text("-ERR Message no longer exists.\r\n");
  Reply r;
  r.text = "+OK " + std::to_string(maildrop_->At(*index).size) + " octets\r\n";
  // The virtual size is never below the stored size: a good read-buffer size hint.
  r.body = std::make_unique<MessageStream>(std::move(fd), std::nullopt, options_.chunk_size,
                                           maildrop_->At(*index).size);
  pending_seen_ = *index;
  ++stats_.retr;
  stats_.retr_bytes += maildrop_->At(*index).size;
  return r;
}

Reply Session::Top(const ParsedCommand& cmd) {
  Reply error;
  auto index = MessageArg(cmd.args[0], &error);
  if (!index) return error;
  auto lines = ParseNumber(cmd.args[1]);
  if (!lines) return Bad("Invalid number of lines: " + Echo(cmd.args[1]));
  UniqueFd fd = maildrop_->OpenMessage(*index);
  if (!fd) return Text("-ERR Message no longer exists.\r\n");
  Reply r;
  r.text = "+OK\r\n";
  r.body = std::make_unique<MessageStream>(std::move(fd), *lines, options_.chunk_size);
  ++stats_.top;
  return r;
}

void Session::BodySent() noexcept {
  if (!pending_seen_ || !maildrop_) return;
  std::size_t index = *pending_seen_;
  pending_seen_.reset();
  try {
    maildrop_->MarkSeen(index);
  } catch (...) {
  }
}

Reply Session::Dele(const ParsedCommand& cmd) {
  Reply error;
  auto index = MessageArg(cmd.args[0], &error);
  if (!index) return error;
  deleted_[*index] = true;
  --live_count_;
  live_size_ -= maildrop_->At(*index).size;
  ++stats_.dele;
  return Text("+OK Marked to be deleted.\r\n");
}

Reply Session::Noop(const ParsedCommand&) { return Text("+OK\r\n"); }

Reply Session::Rset(const ParsedCommand&) {
  std::fill(deleted_.begin(), deleted_.end(), false);
  live_count_ = maildrop_->Count();
  live_size_ = 0;
  for (std::size_t i = 0; i < maildrop_->Count(); ++i) live_size_ += maildrop_->At(i).size;
  return Text("+OK\r\n");
}

}  // namespace coffer::pop3d
