// See auth.h.
#include "pop3d/auth.h"

#include <crypt.h>
#include <sodium.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/fd.h"

namespace coffer::pop3d {
namespace {

constexpr std::size_t kMaxPasswdFileSize = 64u << 20;

// Checked for unknown users too, so that "no such user" takes as long as "wrong password".
constexpr const char* kDummyHash =
    "$6$Vb2lTcyqGbkY2a7e$8z8X3n3uS0C7P1bqC2RMHbyAJ8m0x2dcbJcj3jQ4HfF5Kqg6o0O3fU8w7m3ln1.n2ux3JBJ"
    "kq9mQm2mfF4Zc1";

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t p = s.find(sep, start);
    if (p == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, p - start));
    start = p + 1;
  }
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool CryptVerify(std::string_view hash, std::string_view password) {
  if (hash.empty()) return false;
  std::string checked(hash);
  // Refuses malformed settings and methods the library has disabled. (Also makes libcrypt a
  // needed library: under ASan, crypt_r alone would bind to the sanitizer's interceptor and the
  // linker would drop libcrypt, leaving the interceptor nothing to call.)
  int check = ::crypt_checksalt(checked.c_str());
  if (check != CRYPT_SALT_OK && check != CRYPT_SALT_METHOD_LEGACY) return false;
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  std::string pw(password), setting(hash);
  const char* out = ::crypt_r(pw.c_str(), setting.c_str(), data.get());
  sodium_memzero(pw.data(), pw.size());
  if (out == nullptr || out[0] == '*') return false;
  return ConstantTimeEquals(out, hash);
}

}  // namespace

std::unordered_map<std::string, UserRecord> ParsePasswdFile(std::string_view text,
                                                            std::vector<int>* bad_lines) {
  std::unordered_map<std::string, UserRecord> users;
  int line_no = 0;
  for (std::string_view line : Split(text, '\n')) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#') continue;
    auto fields = Split(line, ':');
    if (fields.size() < 2 || fields[0].empty()) {
      if (bad_lines) bad_lines->push_back(line_no);
      continue;
    }
    UserRecord r;
    r.user = std::string(fields[0]);
    std::string_view pw = fields[1];
    if (pw.size() > 2 && pw[0] == '{') {
      std::size_t close = pw.find('}');
      if (close == std::string_view::npos) {
        if (bad_lines) bad_lines->push_back(line_no);
        continue;
      }
      r.scheme = std::string(pw.substr(1, close - 1));
      std::transform(r.scheme.begin(), r.scheme.end(), r.scheme.begin(),
                     [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
      r.hash = std::string(pw.substr(close + 1));
    } else {
      r.scheme = "CRYPT";
      r.hash = std::string(pw);
    }
    // A crypt(3) hash contains '$' but never ':'; Argon2 strings contain ',' and '$' only, so
    // splitting on ':' is safe for every supported scheme except PLAIN passwords with ':'.
    if (fields.size() > 2) r.uid = std::string(fields[2]);
    if (fields.size() > 3) r.gid = std::string(fields[3]);
    if (fields.size() > 5) r.home = std::string(fields[5]);
    users[r.user] = std::move(r);
  }
  return users;
}

std::optional<UserRecord> PasswdFile::Lookup(const std::string& user) {
  struct stat st;
  if (::stat(path_.c_str(), &st) != 0) ThrowErrno("stat " + path_);
  std::int64_t mtime = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 +
                       st.st_mtim.tv_nsec;
  std::lock_guard lock(mutex_);
  if (mtime != mtime_ns_ || st.st_size != size_) {
    std::vector<int> bad;
    users_ = ParsePasswdFile(ReadFile(path_, kMaxPasswdFileSize), &bad);
    for (int n : bad) spdlog::warn("{}:{}: malformed passwd-file line ignored", path_, n);
    mtime_ns_ = mtime;
    size_ = st.st_size;
  }
  auto it = users_.find(user);
  if (it == users_.end()) return std::nullopt;
  return it->second;
}

bool VerifyPassword(std::string_view scheme, std::string_view hash, std::string_view password) {
  if (scheme == "CRYPT" || scheme == "SHA512-CRYPT" || scheme == "SHA256-CRYPT" ||
      scheme == "MD5-CRYPT" || scheme == "BLF-CRYPT" || scheme == "DES-CRYPT") {
    return CryptVerify(hash, password);
  }
  if (scheme == "ARGON2ID" || scheme == "ARGON2I") {
    std::string h(hash), pw(password);
    bool ok = crypto_pwhash_str_verify(h.c_str(), pw.data(), pw.size()) == 0;
    sodium_memzero(pw.data(), pw.size());
    return ok;
  }
  if (scheme == "PLAIN" || scheme == "CLEARTEXT") return ConstantTimeEquals(hash, password);
  return false;
}

std::string ExpandMailLocation(std::string_view templ, std::string_view user,
                               std::string_view home) {
  std::size_t at = user.rfind('@');
  std::string_view local = at == std::string_view::npos ? user : user.substr(0, at);
  std::string_view domain = at == std::string_view::npos ? "" : user.substr(at + 1);
  std::string out;
  for (std::size_t i = 0; i < templ.size(); ++i) {
    if (templ[i] != '%' || i + 1 == templ.size()) {
      out.push_back(templ[i]);
      continue;
    }
    switch (templ[++i]) {
      case 'u': out.append(user); break;
      case 'n': out.append(local); break;
      case 'd': out.append(domain); break;
      case 'h': out.append(home); break;
      case '%': out.push_back('%'); break;
      default: out.push_back('%'); out.push_back(templ[i]); break;
    }
  }
  return out;
}

bool SafeUserName(std::string_view user) {
  if (user.empty() || user.size() > 255) return false;
  for (char c : user) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '/' || c == ':' || c == '%') return false;
  }
  std::size_t at = user.rfind('@');
  for (std::string_view part : {user.substr(0, at), at == std::string_view::npos
                                                        ? std::string_view()
                                                        : user.substr(at + 1)}) {
    if (part == "." || part == "..") return false;
  }
  return user != "." && user != "..";
}

Authenticator::Authenticator(AuthOptions options)
    : options_(std::move(options)), passwd_(options_.passwd_file) {
  if (sodium_init() < 0) throw Error(EIO, "libsodium initialisation failed");
}

LoginResult Authenticator::Login(const std::string& user, const std::string& password) {
  LoginResult result;
  result.user = user;
  try {
    std::optional<UserRecord> record;
    if (SafeUserName(user)) record = passwd_.Lookup(user);
    if (!record) {
      VerifyPassword("SHA512-CRYPT", kDummyHash, password);
      result.status = LoginStatus::kBadCredentials;
      return result;
    }
    if (!VerifyPassword(record->scheme, record->hash, password)) {
      result.status = LoginStatus::kBadCredentials;
      return result;
    }
    if (options_.login_delay.count() > 0) {
      std::lock_guard lock(delay_mutex_);
      auto now = std::chrono::steady_clock::now();
      auto it = last_login_.find(user);
      if (it != last_login_.end() && now - it->second < options_.login_delay) {
        result.status = LoginStatus::kLoginDelay;
        return result;
      }
      last_login_[user] = now;
      if (last_login_.size() > 100000) last_login_.clear();
    }
    std::string path = ExpandMailLocation(options_.mail_location, user, record->home);
    TakeOpened(Maildrop::Open(path, options_.maildrop, &sizes_), &result);
  } catch (const std::exception& e) {
    spdlog::error("user {}: login failed: {}", user, e.what());
    result.status = LoginStatus::kTempFail;
  }
  return result;
}

LoginResult Authenticator::FinishLogin(LoginResult pending) {
  if (pending.status != LoginStatus::kSettling) return pending;
  LoginResult result;
  result.user = pending.user;
  try {
    TakeOpened(Maildrop::Settle(std::move(pending.maildrop), &sizes_), &result);
  } catch (const std::exception& e) {
    spdlog::error("user {}: login failed: {}", result.user, e.what());
    result.status = LoginStatus::kTempFail;
  }
  return result;
}

void Authenticator::TakeOpened(Maildrop::OpenResult opened, LoginResult* result) {
  switch (opened.status) {
    case OpenStatus::kOk:
      result->status = LoginStatus::kOk;
      result->maildrop = std::move(opened.maildrop);
      return;
    case OpenStatus::kSettling:
      result->status = LoginStatus::kSettling;
      result->maildrop = std::move(opened.maildrop);
      result->settle_until = opened.settle_until;
      return;
    case OpenStatus::kInUse:
      result->status = LoginStatus::kInUse;
      return;
    case OpenStatus::kError:
      break;
  }
  spdlog::error("user {}: cannot open maildrop: {}", result->user, opened.error);
  int e = opened.err;
  bool permanent = e == EACCES || e == EPERM || e == ENOTDIR || e == EFBIG || e == ELOOP ||
                   e == ENAMETOOLONG || e == EROFS;
  result->status = permanent ? LoginStatus::kPermFail : LoginStatus::kTempFail;
}

}  // namespace coffer::pop3d
