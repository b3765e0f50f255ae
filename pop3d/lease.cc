// See lease.h.
#include "pop3d/lease.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/fd.h"

namespace coffer::pop3d {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr std::string_view kHeader = "coffer-pop3d-lease 1";

class RealClock final : public LeaseClock {
 public:
  std::int64_t WallMs() override {
    return duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
  std::chrono::steady_clock::time_point Now() override { return std::chrono::steady_clock::now(); }
};

bool PrintableWord(std::string_view s, std::size_t max) {
  if (s.empty() || s.size() > max) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
}

// A decimal number of 1..18 digits (no sign, no spaces): always fits in int64.
std::optional<std::int64_t> Decimal(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

bool Token(std::string_view s) {
  return s.size() == 32 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string RandomToken() {
  unsigned char bytes[16];
  randombytes_buf(bytes, sizeof bytes);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

std::string ThisHost() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  std::string host(buf);
  for (char& c : host) {
    if (c < 0x21 || c > 0x7e) c = '?';
  }
  if (host.empty()) host = "unknown";
  if (host.size() > 255) host.resize(255);
  return host;
}

void SyncDir(const std::string& dir) {
  UniqueFd fd = OpenFile(dir, O_RDONLY | O_DIRECTORY);
  if (::fsync(fd.Get()) != 0) ThrowErrno("fsync " + dir);
}

std::int64_t Ms(std::chrono::steady_clock::duration d) {
  return duration_cast<milliseconds>(d).count();
}

}  // namespace

LeaseClock& LeaseClock::Real() {
  static RealClock clock;
  return clock;
}

std::string FormatLease(const LeaseRecord& r) {
  std::string out(kHeader);
  out += "\nhost " + r.host + "\npid " + std::to_string(r.pid) + "\ntoken " + r.token +
         "\nexpires " + std::to_string(r.expires_ms) + "\n";
  return out;
}

std::optional<LeaseRecord> ParseLease(std::string_view text, std::string* why) {
  auto fail = [why](std::string reason) -> std::optional<LeaseRecord> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  if (text.size() > Lease::kMaxFileSize) return fail("larger than 4096 bytes");
  if (text.find('\0') != std::string_view::npos) return fail("contains NUL bytes");
  LeaseRecord r;
  bool host = false, pid = false, token = false, expires = false;
  std::size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) return fail("the last line does not end");
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (++line_no == 1) {
      if (line != kHeader) return fail("no \"coffer-pop3d-lease 1\" header");
      continue;
    }
    std::size_t sp = line.find(' ');
    if (sp == std::string_view::npos)
      return fail("line " + std::to_string(line_no) + " is not \"key value\"");
    std::string_view key = line.substr(0, sp), value = line.substr(sp + 1);
    auto once = [&](bool& seen) {
      if (seen) return false;
      seen = true;
      return true;
    };
    if (key == "host") {
      if (!once(host)) return fail("host given twice");
      if (!PrintableWord(value, 255)) return fail("bad host");
      r.host = std::string(value);
    } else if (key == "pid") {
      if (!once(pid)) return fail("pid given twice");
      auto v = Decimal(value);
      if (!v || *v <= 0 || *v > INT32_MAX) return fail("bad pid");
      r.pid = *v;
    } else if (key == "token") {
      if (!once(token)) return fail("token given twice");
      if (!Token(value)) return fail("bad token");
      r.token = std::string(value);
    } else if (key == "expires") {
      if (!once(expires)) return fail("expires given twice");
      auto v = Decimal(value);
      if (!v) return fail("bad expires");
      r.expires_ms = *v;
    } else if (!PrintableWord(key, 64)) {
      return fail("line " + std::to_string(line_no) + " has a bad key");
    }
  }
  if (line_no == 0) return fail("empty");
  if (!host || !pid || !token || !expires) return fail("host, pid, token or expires missing");
  return r;
}

Lease::Lease(std::string maildir, LeaseOptions options, LeaseClock& clock, std::string host,
             pid_t pid)
    : dir_(std::move(maildir)),
      path_(dir_ + "/" + kFileName),
      token_(RandomToken()),
      temp_path_(path_ + "." + token_ + ".tmp"),
      options_(options),
      clock_(clock),
      host_(host.empty() ? ThisHost() : std::move(host)),
      pid_(pid == 0 ? ::getpid() : pid) {}

Lease::~Lease() { Release(); }

std::chrono::milliseconds Lease::renew_interval() const noexcept {
  return duration_cast<milliseconds>(options_.duration) / 3;
}

std::string Lease::Describe(const LeaseRecord& r) const {
  std::int64_t left = r.expires_ms - clock_.WallMs();
  return "host " + r.host + " pid " + std::to_string(r.pid) + " (ends in " +
         std::to_string(left / 1000) + " s)";
}

Lease::Current Lease::Read() {
  Current c;
  int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return c;
    if (errno == ELOOP) {
      c.kind = Kind::kGarbled;
      c.why = "a symbolic link";
      return c;
    }
    ThrowErrno("open " + path_);
  }
  UniqueFd owner(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) ThrowErrno("fstat " + path_);
  if (!S_ISREG(st.st_mode)) {
    c.kind = Kind::kGarbled;
    c.why = "not a regular file";
    return c;
  }
  std::string text;
  try {
    text = ReadAllFd(fd, kMaxFileSize, path_);
  } catch (const Error& e) {
    if (e.err() != EFBIG) throw;
    c.kind = Kind::kGarbled;
    c.why = "larger than 4096 bytes";
    return c;
  }
  if (auto r = ParseLease(text, &c.why)) {
    c.kind = Kind::kRecord;
    c.record = std::move(*r);
  } else {
    c.kind = Kind::kGarbled;
  }
  return c;
}

bool Lease::Ours(const Current& c) const {
  return c.kind == Kind::kRecord && c.record.token == token_;
}

std::string Lease::NotOurs(const Current& c) const {
  switch (c.kind) {
    case Kind::kRecord:
      return "the lease file names " + Describe(c.record);
    case Kind::kMissing:
      return "the lease file was removed";
    case Kind::kGarbled:
      break;
  }
  return "the lease file is garbled (" + c.why + ")";
}

bool Lease::OtherHolds(const Current& c, std::string* detail, bool quiet) {
  if (c.kind == Kind::kMissing || Ours(c)) return false;
  if (c.kind == Kind::kGarbled) {
    if (!quiet) spdlog::warn("{}: {}: treated as an ended lease", path_, c.why);
    return false;
  }
  const std::int64_t now = clock_.WallMs();
  const std::int64_t settle = options_.settle.count();
  const std::int64_t longest = duration_cast<milliseconds>(kMaxDuration).count();
  if (c.record.expires_ms > now + longest + settle) {
    if (!quiet)
      spdlog::warn(
          "{}: the lease of host {} pid {} ends more than {} s from now (is that box's "
          "clock right?): treated as an ended lease",
          path_, c.record.host, c.record.pid, kMaxDuration.count());
    return false;
  }
  if (c.record.expires_ms == 0) return false;  // given up by a session that lost a race
  // Another box takes a lease over only S after its end (clock differences, see lease.h).
  if (now > c.record.expires_ms + settle) {
    if (!quiet)
      spdlog::info("{}: taking over the lease of host {} pid {}, which ended {} s ago", path_,
                   c.record.host, c.record.pid, (now - c.record.expires_ms) / 1000);
    return false;
  }
  if (detail) *detail = Describe(c.record);
  return true;
}

UniqueFd Lease::WriteTemp(std::int64_t expires_ms) {
  const std::string text = FormatLease({host_, pid_, token_, expires_ms});
  UniqueFd fd = OpenFile(temp_path_, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
  WriteAll(fd.Get(), text, temp_path_);
  if (::fsync(fd.Get()) != 0) ThrowErrno("fsync " + temp_path_);
  return fd;
}

void Lease::Publish(UniqueFd written) {
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) ThrowErrno("rename to " + path_);
  published_ = std::move(written);
  SyncDir(dir_);
}

void Lease::Defuse() noexcept {
  if (!published_) return;
  const std::string text = FormatLease({host_, pid_, token_, 0});
  if (::ftruncate(published_.Get(), 0) != 0 ||
      ::pwrite(published_.Get(), text.data(), text.size(), 0) !=
          static_cast<ssize_t>(text.size()) ||
      ::fsync(published_.Get()) != 0) {
    spdlog::warn("{}: could not mark our lost lease as given up: {}", path_, std::strerror(errno));
  }
}

void Lease::RemoveTemp() noexcept { ::unlink(temp_path_.c_str()); }

Lease::Result Lease::Begin() {
  std::lock_guard lock(mu_);
  Result result;
  if (state_.load() != State::kIdle) {
    result.err = EINVAL;
    result.detail = "lease already begun";
    return result;
  }
  const auto bound = options_.settle / 10;
  try {
    // 1. The cheap refusal: no temp file is written while someone holds the maildrop.
    if (OtherHolds(Read(), &result.detail, /*quiet=*/true)) {
      result.outcome = Outcome::kInUse;
      return result;
    }
    // 2. Our lease, durable under a name of our own.
    written_at_ = clock_.Now();
    UniqueFd written =
        WriteTemp(clock_.WallMs() + duration_cast<milliseconds>(options_.duration).count());
    // 3. The decisive read, then the rename, within the bound (see lease.h).
    const auto read_at = clock_.Now();
    if (OtherHolds(Read(), &result.detail, /*quiet=*/false)) {
      RemoveTemp();
      result.outcome = Outcome::kInUse;
      return result;
    }
    state_ = State::kSettling;  // from here on Release() removes what we may have published
    Publish(std::move(written));
    const auto done = clock_.Now();
    if (done - read_at > bound) {
      ReleaseLocked();
      result.err = ETIMEDOUT;
      result.detail = "reading and replacing the lease file took " +
                      std::to_string(Ms(done - read_at)) + " ms (more than " +
                      std::to_string(bound.count()) + " ms, a tenth of pop3.lease_settle_ms)";
      return result;
    }
    settle_until_ = done + options_.settle;
    valid_until_ = written_at_ + options_.duration - options_.settle;
    result.outcome = Outcome::kSettling;
    result.settle_until = settle_until_;
  } catch (const Error& e) {
    RemoveTemp();
    if (state_.load() == State::kSettling) ReleaseLocked();
    state_ = State::kReleased;
    result.outcome = Outcome::kError;
    result.err = e.err();
    result.detail = e.what();
  }
  return result;
}

Lease::Result Lease::Confirm() {
  std::lock_guard lock(mu_);
  Result result;
  if (state_.load() != State::kSettling) {
    result.err = EINVAL;
    result.detail = "no lease is settling";
    return result;
  }
  const auto now = clock_.Now();
  if (now < settle_until_) {
    result.err = EINVAL;
    result.detail = "confirmed " + std::to_string(Ms(settle_until_ - now)) + " ms early";
    return result;
  }
  try {
    Current current = Read();
    if (!Ours(current)) {
      // Someone raced us and won (or removed the file): never touch it, it is not ours.
      result.outcome = Outcome::kInUse;
      result.detail = NotOurs(current);
      state_ = State::kLost;
      return result;
    }
    if (now >= valid_until_) {
      ReleaseLocked();
      result.err = ETIMEDOUT;
      result.detail = "confirmed too late to hold the lease (" +
                      std::to_string(Ms(now - settle_until_)) + " ms after the settle time)";
      return result;
    }
    state_ = State::kHeld;
    result.outcome = Outcome::kHeld;
  } catch (const Error& e) {
    ReleaseLocked();
    result.err = e.err();
    result.detail = e.what();
  }
  return result;
}

void Lease::MarkLost(const std::string& why) {
  if (state_.load() == State::kHeld) spdlog::warn("{}: lease lost: {}", path_, why);
  state_ = State::kLost;
}

bool Lease::RenewLocked() {
  if (state_.load() != State::kHeld) return false;
  const auto start = clock_.Now();
  const auto bound = options_.settle / 10;
  if (start + bound >= valid_until_) {
    MarkLost("too late to renew (the last renewal was " + std::to_string(Ms(start - written_at_)) +
             " ms ago)");
    return false;
  }
  try {
    Current current = Read();
    if (!Ours(current)) {
      MarkLost(NotOurs(current));
      return false;
    }
    Publish(WriteTemp(clock_.WallMs() + duration_cast<milliseconds>(options_.duration).count()));
    const auto done = clock_.Now();
    if (done > valid_until_) {
      MarkLost("the renewal finished " + std::to_string(Ms(done - valid_until_)) +
               " ms after the lease could be trusted");
      return false;
    }
    written_at_ = start;
    valid_until_ = start + options_.duration - options_.settle;
    return true;
  } catch (const Error& e) {
    RemoveTemp();
    spdlog::warn("{}: renewing the lease failed: {} (held for {} ms more unless renewed)", path_,
                 e.what(), Ms(valid_until_ - clock_.Now()));
    if (clock_.Now() >= valid_until_) {
      MarkLost("renewals failed until the lease ended");
      return false;
    }
    return true;
  }
}

bool Lease::Renew() {
  std::lock_guard lock(mu_);
  return RenewLocked();
}

bool Lease::Keep() {
  std::lock_guard lock(mu_);
  if (state_.load() != State::kHeld) return false;
  const auto now = clock_.Now();
  if (now - written_at_ >= renew_interval()) return RenewLocked();
  if (now >= valid_until_) {
    MarkLost("the lease ended");
    return false;
  }
  return true;
}

bool Lease::Verify() {
  std::lock_guard lock(mu_);
  if (state_.load() != State::kHeld) return false;
  const auto now = clock_.Now();
  if (now - written_at_ >= renew_interval()) return RenewLocked();  // reads the file too
  if (now >= valid_until_) {
    MarkLost("the lease ended");
    return false;
  }
  try {
    Current current = Read();
    if (!Ours(current)) {
      MarkLost(NotOurs(current));
      return false;
    }
  } catch (const Error& e) {
    spdlog::warn("{}: cannot read the lease to check it: {}", path_, e.what());
  }
  return true;
}

void Lease::ReleaseLocked() noexcept {
  const State s = state_.load();
  if (s == State::kSettling || s == State::kHeld || s == State::kLost) {
    // First, whatever happens next: the file we published reads as given up, wherever it is
    // (under the lease name, or hidden after a lost race, see Defuse()).
    Defuse();
    try {
      if (Ours(Read())) {
        if (::unlink(path_.c_str()) != 0 && errno != ENOENT) ThrowErrno("unlink " + path_);
        // A racer's lease that lost to ours may take the name now; once it says it was given
        // up, it is nobody's and goes too.
        for (int i = 0; i < 4; ++i) {
          Current next = Read();
          if (next.kind != Kind::kRecord || next.record.expires_ms != 0) break;
          if (::unlink(path_.c_str()) != 0 && errno != ENOENT) ThrowErrno("unlink " + path_);
        }
        SyncDir(dir_);
      }
    } catch (const std::exception& e) {
      spdlog::warn("{}: could not remove the lease file (it says the lease was given up): {}",
                   path_, e.what());
    }
    published_.Reset();
    RemoveTemp();
  }
  state_ = State::kReleased;
}

void Lease::Release() noexcept {
  std::lock_guard lock(mu_);
  ReleaseLocked();
}

}  // namespace coffer::pop3d
