// Users and logins: a Dovecot-compatible passwd-file, password hash checks, the mail location
// template, LOGIN-DELAY bookkeeping, and opening the user's maildrop.
//
// Login() is blocking (crypt(3) and Argon2 are deliberately slow), so the server runs it on a
// separate thread pool: a password check never stalls other sessions. Everything here is
// thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "pop3d/maildrop.h"

namespace coffer::pop3d {

// One passwd-file line: user:{SCHEME}hash:uid:gid:gecos:home:shell:extra
struct UserRecord {
  std::string user;
  std::string scheme;  // upper-case, e.g. "SHA512-CRYPT"; "CRYPT" when no {SCHEME} prefix
  std::string hash;    // without the {SCHEME} prefix
  std::string uid, gid, home;
};

// Parses passwd-file text. Blank lines and '#' comments are skipped; malformed lines too (their
// line numbers are returned in `bad_lines` if given).
std::unordered_map<std::string, UserRecord> ParsePasswdFile(
    std::string_view text, std::vector<int>* bad_lines = nullptr);

// A passwd-file that is re-read when its modification time or size changes.
class PasswdFile {
 public:
  explicit PasswdFile(std::string path) : path_(std::move(path)) {}
  // Throws coffer::Error if the file cannot be read (the login then fails with [SYS/TEMP]).
  std::optional<UserRecord> Lookup(const std::string& user);

 private:
  std::string path_;
  std::mutex mutex_;  // a leaf lock
  // guarded by mutex_
  std::int64_t mtime_ns_ = -1;
  std::int64_t size_ = -1;
  std::unordered_map<std::string, UserRecord> users_;
};

// Checks `password` against a stored hash. Schemes: CRYPT, SHA512-CRYPT, SHA256-CRYPT,
// MD5-CRYPT, BLF-CRYPT (all crypt(3) via libxcrypt), ARGON2ID and ARGON2I (libsodium), PLAIN and
// CLEARTEXT (tests only). Unknown schemes never match. Constant-time comparison.
bool VerifyPassword(std::string_view scheme, std::string_view hash, std::string_view password);

// Expands %u (full user), %n (user part before '@'), %d (domain part), %h (home), %% in a mail
// location template such as "/srv/mail/%d/%n/Maildir".
std::string ExpandMailLocation(std::string_view templ, std::string_view user,
                               std::string_view home);

// A user name we are willing to turn into a path: 1..255 bytes, no '/', no NUL, no control
// bytes, not "." or "..", no ".." component after splitting at '@'.
bool SafeUserName(std::string_view user);

enum class LoginStatus {
  kOk,
  kBadCredentials,  // -ERR [AUTH]
  kInUse,           // -ERR [IN-USE]
  kLoginDelay,      // -ERR [LOGIN-DELAY]
  kTempFail,        // -ERR [SYS/TEMP]
  kPermFail,        // -ERR [SYS/PERM]: the maildrop cannot be used until an admin acts
  kSettling,        // pop3.shared_store: wait until settle_until, then FinishLogin()
};

struct LoginResult {
  LoginStatus status = LoginStatus::kTempFail;
  std::string user;
  std::unique_ptr<Maildrop> maildrop;                    // kOk; kSettling: not yet scanned
  std::chrono::steady_clock::time_point settle_until{};  // kSettling
};

struct AuthOptions {
  std::string passwd_file;
  std::string mail_location = "/srv/mail/%d/%n/Maildir";
  MaildropOptions maildrop;
  std::chrono::seconds login_delay{0};  // minimum time between two logins of one user
};

class Authenticator {
 public:
  explicit Authenticator(AuthOptions options);
  // Checks the credentials and opens the maildrop. Blocking; thread-safe; never throws.
  // With maildrop.shared_store a login that may proceed answers kSettling: the caller waits
  // (without holding a thread) until settle_until and passes the result to FinishLogin().
  LoginResult Login(const std::string& user, const std::string& password);
  // Confirms the lease of a kSettling login and scans the maildrop: kOk, kInUse (another box
  // won), kTempFail or kPermFail. Any other result is returned unchanged. Blocking;
  // thread-safe; never throws.
  LoginResult FinishLogin(LoginResult pending);
  const AuthOptions& options() const noexcept { return options_; }

 private:
  // Turns an Open() or Settle() answer into the login's.
  void TakeOpened(Maildrop::OpenResult opened, LoginResult* result);

  AuthOptions options_;
  PasswdFile passwd_;
  SizeCache sizes_;
  std::mutex delay_mutex_;  // a leaf lock (never held with passwd_'s or sizes_' mutex)
  std::map<std::string, std::chrono::steady_clock::time_point> last_login_;  // by delay_mutex_
};

}  // namespace coffer::pop3d
