// The one-session-per-maildrop rule across access boxes: a lease file kept in the Maildir.
//
// On one box MaildropLocks (maildrop.h) answers [IN-USE]. When several boxes serve the same
// store (cofferfs mounted on each, or any shared filesystem), that process-wide lock cannot see
// the other boxes, so with `pop3.shared_store` a session also holds a lease: the file
// `.coffer-pop3d-lease` in the Maildir names the holder (host name, pid, a random session
// token) and when the lease ends (wall clock, milliseconds since the epoch). Maildir readers
// skip dot files, and the scheme needs nothing from the filesystem beyond rename(2) replacing a
// name and fsync(2) on a directory making that durable; no cofferfs API.
//
// Acquiring (Begin, then Confirm at or after the returned time):
//   1. Read the lease. Another holder whose lease has not ended: [IN-USE].
//   2. Write our lease (end = now + duration) to a temp file of our own and fsync it.
//   3. Read the lease again (the decisive read), rename the temp file over the lease name,
//      fsync the directory (on cofferfs the rename is then on the storage nodes).
//   4. Wait `settle`, then read the lease: still ours, we hold it; anything else, someone
//      raced us and won: [IN-USE]. Once both renames have reached every box, every box sees
//      the same winner, so at most one racer confirms.
// While held, Renew() rewrites the lease with a new end every duration/3 (the server's timer);
// a renewal that finds another holder's lease, or one that cannot be made before our own
// lease ends, marks the lease lost, and a lost lease deletes nothing (Maildrop::Delete asks
// Verify() first and Keep() between unlinks). Release() rewrites our file as given up
// ("expires 0", see Defuse()) and removes the lease file only if it still names us. A lease
// that ended (a crashed box) is taken over like a missing one. A lease file that does not
// parse (it is data on a shared store that users can write) is treated as ended, logged, and
// never trusted.
//
// Timing. Let P be the time a change on one box takes to be seen on the others (cofferfs: it
// follows the nodes' feeds every second), K the largest clock difference between boxes (run
// NTP), S the settle time, B = S/10 and L the duration.
//   - Racers. A racer that read the lease before our rename reached its box, and renamed after
//     that, replaces our lease; its rename reaches us up to P + B + P after our rename. We
//     confirm S after our rename, so S > 2P + B makes us see it and give way. Step 3 therefore
//     bounds the time from the decisive read to the end of the directory fsync by B and
//     abandons (removing its lease if it still names it) when that took longer: a slow racer
//     must not overwrite a lease whose holder already finished settling. (The temp file is
//     written before the decisive read so that a slow write does not count.)
//   - Ends. Another box takes a lease over only S after its end by that box's clock, and the
//     holder stops trusting it S before its end by its own monotonic clock (measured from
//     before it wrote the end), renewing only when the renewal can finish by then. A renewal
//     written just in time reaches the others P later, before any of them may take over,
//     while P + K < 2S.
//   - L >= 4S leaves room for a missed renewal (options.cc enforces it).
// The defaults (S = 3 s, L = 60 s) allow P up to 1.35 s, with K below 4 s.
//
// The class never sleeps: Begin() says when to Confirm(), and the server waits on a timer, so
// that no thread is held during the settle time. LeaseClock is the seam through which tests
// drive the clocks.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/fd.h"

namespace coffer::pop3d {

// Wall and monotonic clocks. The real one is thread-safe; a fake one belongs to one test.
class LeaseClock {
 public:
  virtual ~LeaseClock() = default;
  // Milliseconds since the epoch (the clock the lease's end is written in).
  virtual std::int64_t WallMs() = 0;
  // A monotonic clock (the holder's own view of how long its lease lasts).
  virtual std::chrono::steady_clock::time_point Now() = 0;
  // system_clock and steady_clock.
  static LeaseClock& Real();
};

struct LeaseOptions {
  std::chrono::seconds duration{60};       // pop3.lease_s
  std::chrono::milliseconds settle{3000};  // pop3.lease_settle_ms
};

// What the lease file says. Text, one "key value" per line after a header line:
//   coffer-pop3d-lease 1
//   host mail1.example.org
//   pid 4242
//   token 0123456789abcdef0123456789abcdef
//   expires 1700000060000
// "expires 0": given up (a session that lost a race); nobody holds it.
struct LeaseRecord {
  std::string host;             // 1..255 bytes of printable ASCII without spaces
  std::int64_t pid = 0;         // > 0
  std::string token;            // 32 lower-case hex digits: the holder's identity
  std::int64_t expires_ms = 0;  // wall clock, ms since the epoch
};

std::string FormatLease(const LeaseRecord& record);

// Parses and validates a lease file's text. Never throws: on any defect returns nullopt and
// says why in *why (without echoing the file's bytes). Unknown keys are ignored (a later
// version may add some); each known key must appear exactly once.
std::optional<LeaseRecord> ParseLease(std::string_view text, std::string* why);

// One session's lease on one Maildir. Thread-safe: the server's renewal timer runs Renew() on
// another thread than the session's commands; held()/lost() never block.
class Lease {
 public:
  static constexpr const char* kFileName = ".coffer-pop3d-lease";
  static constexpr std::size_t kMaxFileSize = 4096;
  // The longest lease any box may write (pop3.lease_s's maximum); a lease that claims to last
  // longer than this plus S from now is treated as garbled.
  static constexpr std::chrono::seconds kMaxDuration{3600};

  enum class Outcome {
    kSettling,  // Begin: our lease is written; Confirm() at or after settle_until
    kHeld,      // Confirm: the lease is ours
    kInUse,     // another session holds the maildrop (or won the race)
    kError,     // I/O error or a step that took too long: err says which; try again later
  };
  struct Result {
    Outcome outcome = Outcome::kError;
    std::chrono::steady_clock::time_point settle_until{};  // kSettling
    // For logs: the holder, or what failed.
    std::string detail;
    // kError: an errno (ETIMEDOUT when a step took too long).
    int err = 0;
  };

  // `maildir` must exist. `clock` must outlive the lease. `host` and `pid` only name the
  // holder for people reading the file or the logs ("" and 0: this host and process).
  Lease(std::string maildir, LeaseOptions options, LeaseClock& clock = LeaseClock::Real(),
        std::string host = "", pid_t pid = 0);
  // Releases (see Release()).
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  // Steps 1 to 3. Call once. Never throws.
  Result Begin();
  // Step 4: kHeld, kInUse or kError. Call once, after a kSettling Begin(), no earlier than
  // settle_until by the lease's clock (earlier: kError EINVAL). Never throws.
  Result Confirm();

  // Rewrites the held lease with a new end. False when the lease is (now) lost; an I/O error
  // is logged and keeps the lease until its end, when the next call will say lost. Never
  // throws; blocks on the filesystem.
  bool Renew();
  // Between unlinks: renews when a renewal is due; true while the lease is held and has not
  // ended by our clock. No I/O unless a renewal is due.
  bool Keep();
  // Before changing the maildrop: Keep(), and the file still names us (read again). A read
  // that fails leaves the answer to the clock (the lease has not ended).
  bool Verify();
  // Rewrites the file we published as given up (see Defuse()), then removes the lease file if
  // it still names us, and our temp file. Idempotent; never throws. A renewal after it does
  // nothing. (Between the read and the unlink another box may replace the file; it can only do
  // so once our lease ended, and it then finds its lease gone when it confirms or renews: that
  // box refuses, nothing is deleted twice.)
  void Release() noexcept;

  bool held() const noexcept { return state_.load() == State::kHeld; }
  bool lost() const noexcept { return state_.load() == State::kLost; }
  // How often the server should call Renew().
  std::chrono::milliseconds renew_interval() const noexcept;
  const std::string& token() const noexcept { return token_; }
  const std::string& path() const noexcept { return path_; }

 private:
  enum class State { kIdle, kSettling, kHeld, kLost, kReleased };
  enum class Kind { kMissing, kGarbled, kRecord };
  struct Current {
    Kind kind = Kind::kMissing;
    LeaseRecord record;
    std::string why;  // kGarbled
  };

  // Reads the lease file; throws coffer::Error on I/O errors other than ENOENT.
  Current Read();
  // Another holder's lease that has not ended. Unless `quiet`, logs garbled leases and
  // take-overs.
  bool OtherHolds(const Current& current, std::string* detail, bool quiet);
  bool Ours(const Current& current) const;
  // Why `current` (not ours) is not ours, for logs.
  std::string NotOurs(const Current& current) const;
  // Writes our record ending at `expires_ms` to the temp file (fsynced) and returns it open.
  // Throws.
  UniqueFd WriteTemp(std::int64_t expires_ms);
  // Renames the temp file over the lease, keeps `written` as published_, and fsyncs the
  // directory. Throws.
  void Publish(UniqueFd written);
  // Rewrites the lease we published, through published_, as given up (expires 0), wherever
  // that file is now. For a lease that lost a race: cofferfs keeps the loser of two links that
  // claim one name at once (hidden: the older link keeps the name) and gives it the name when
  // the winner's goes; it must then not look like a live lease. Never throws (logs).
  void Defuse() noexcept;
  void RemoveTemp() noexcept;
  bool RenewLocked();
  void MarkLost(const std::string& why);
  void ReleaseLocked() noexcept;
  std::string Describe(const LeaseRecord& r) const;

  const std::string dir_;
  const std::string path_;
  const std::string token_;      // random per session: who we are
  const std::string temp_path_;  // named after token_: no other session writes it
  const LeaseOptions options_;
  LeaseClock& clock_;
  const std::string host_;
  const std::int64_t pid_;

  // Lock order: a leaf lock. It is held across the lease file's I/O, which only this session
  // waits for (the session's own commands and its renewal timer); no other lock is taken
  // inside, and callers hold none.
  std::mutex mu_;
  std::atomic<State> state_{State::kIdle};  // written under mu_; read anywhere
  // Guarded by mu_:
  std::chrono::steady_clock::time_point written_at_{};  // before the end now in the file
  std::chrono::steady_clock::time_point settle_until_{};
  std::chrono::steady_clock::time_point valid_until_{};  // written_at_ + L - S
  UniqueFd published_;  // the file we last renamed over the lease name (for Defuse())
};

}  // namespace coffer::pop3d
