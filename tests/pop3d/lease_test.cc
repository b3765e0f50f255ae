// Tests for pop3d/lease.cc: the maildrop lease on a plain temporary directory, driven through a
// fake clock. Another box is another Lease object on the same directory (with its own clock
// when the test needs the boxes' clocks to differ), or a lease record the test writes itself
// (a racer's rename that arrives late, a crashed holder, a garbled file).
#include "pop3d/lease.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "tests/pop3d/test_util.h"

namespace coffer::pop3d {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using testing::ListNames;
using testing::ReadText;
using testing::TempDir;
using testing::WriteText;

using FakeClock = testing::FakeLeaseClock;
constexpr std::int64_t kWallStart = FakeClock::kWallStart;

class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.duration = 60s;
    options_.settle = 3000ms;
    file_ = dir_.path() + "/" + Lease::kFileName;
  }

  std::unique_ptr<Lease> Make(const std::string& host, FakeClock& clock) {
    return std::make_unique<Lease>(dir_.path(), options_, clock, host, 4242);
  }

  // Begin, wait the settle time, Confirm.
  Lease::Outcome Acquire(Lease& lease, FakeClock& clock) {
    Lease::Result begun = lease.Begin();
    if (begun.outcome != Lease::Outcome::kSettling) return begun.outcome;
    clock.Advance(options_.settle);
    return lease.Confirm().outcome;
  }

  std::optional<LeaseRecord> OnDisk() {
    std::string why;
    return ParseLease(ReadText(file_), &why);
  }

  // Another box's lease: renamed over the name, as every box does.
  void WriteRecord(const std::string& host, const std::string& token, std::int64_t expires) {
    testing::ReplaceLeaseFile(dir_.path(), FormatLease({host, 99, token, expires}));
  }

  // Every name in the directory but the lease file: leftover temp files.
  std::vector<std::string> Others() {
    std::vector<std::string> out;
    for (auto& n : ListNames(dir_.path())) {
      if (n != Lease::kFileName) out.push_back(n);
    }
    return out;
  }

  TempDir dir_;
  std::string file_;
  LeaseOptions options_;
  FakeClock clock_;
};

const std::string kOtherToken = "0123456789abcdef0123456789abcdef";

TEST_F(LeaseTest, FormatParsesBack) {
  LeaseRecord r{"mail1.example.org", 31337, kOtherToken, 1700000060000};
  std::string text = FormatLease(r);
  EXPECT_EQ(text, "coffer-pop3d-lease 1\nhost mail1.example.org\npid 31337\ntoken " + kOtherToken +
                      "\nexpires 1700000060000\n");
  std::string why;
  auto back = ParseLease(text, &why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(back->host, r.host);
  EXPECT_EQ(back->pid, r.pid);
  EXPECT_EQ(back->token, r.token);
  EXPECT_EQ(back->expires_ms, r.expires_ms);
  // A later version may add keys.
  EXPECT_TRUE(ParseLease(text + "box 7\n", &why)) << why;
}

TEST_F(LeaseTest, ParseNamesEachDefect) {
  const std::string good = FormatLease({"h", 1, kOtherToken, 5});
  struct Case {
    std::string text, why;
  } cases[] = {
      {"", "empty"},
      {"coffer-pop3d-lease 2\n", "no \"coffer-pop3d-lease 1\" header"},
      {good.substr(0, good.size() - 1), "the last line does not end"},
      {good + "host again\n", "host given twice"},
      {good + "garbage\n", "line 6 is not \"key value\""},
      {"coffer-pop3d-lease 1\nhost h\npid 1\ntoken " + kOtherToken + "\n",
       "host, pid, token or expires missing"},
      {"coffer-pop3d-lease 1\nhost h\npid 0\ntoken " + kOtherToken + "\nexpires 5\n", "bad pid"},
      {"coffer-pop3d-lease 1\nhost h\npid -3\ntoken " + kOtherToken + "\nexpires 5\n", "bad pid"},
      {"coffer-pop3d-lease 1\nhost h\npid 1\ntoken " + kOtherToken +
           "\nexpires 99999999999999999999\n",
       "bad expires"},
      {"coffer-pop3d-lease 1\nhost h\npid 1\ntoken 0123456789ABCDEF0123456789abcdef\nexpires 5\n",
       "bad token"},
      {"coffer-pop3d-lease 1\nhost a b\npid 1\ntoken " + kOtherToken + "\nexpires 5\n", "bad host"},
      {"coffer-pop3d-lease 1\nhost \x01\npid 1\ntoken " + kOtherToken + "\nexpires 5\n",
       "bad host"},
      {good + std::string(5000, 'x'), "larger than 4096 bytes"},
      {std::string("coffer-pop3d-lease 1\n\0\n", 23), "contains NUL bytes"},
  };
  for (const Case& c : cases) {
    std::string why;
    EXPECT_FALSE(ParseLease(c.text, &why)) << c.why;
    EXPECT_EQ(why, c.why);
  }
}

TEST_F(LeaseTest, AcquireWritesSettlesAndHolds) {
  auto a = Make("box-a", clock_);
  Lease::Result begun = a->Begin();
  ASSERT_EQ(begun.outcome, Lease::Outcome::kSettling) << begun.detail;
  EXPECT_EQ(begun.settle_until, clock_.Now() + options_.settle);
  auto record = OnDisk();
  ASSERT_TRUE(record);
  EXPECT_EQ(record->host, "box-a");
  EXPECT_EQ(record->pid, 4242);
  EXPECT_EQ(record->token, a->token());
  EXPECT_EQ(record->expires_ms, kWallStart + 60000);
  EXPECT_EQ(Others(), std::vector<std::string>{});  // the temp file was renamed
  EXPECT_FALSE(a->held());

  // Not before the settle time.
  clock_.Advance(options_.settle - 1ms);
  Lease::Result early = a->Confirm();
  EXPECT_EQ(early.outcome, Lease::Outcome::kError);
  EXPECT_EQ(early.err, EINVAL);
  clock_.Advance(1ms);
  EXPECT_EQ(a->Confirm().outcome, Lease::Outcome::kHeld);
  EXPECT_TRUE(a->held());
  EXPECT_FALSE(a->lost());
  EXPECT_EQ(a->renew_interval(), 20000ms);
}

TEST_F(LeaseTest, SecondSessionIsInUseAndWritesNothing) {
  auto a = Make("box-a", clock_);
  ASSERT_EQ(Acquire(*a, clock_), Lease::Outcome::kHeld);
  const std::string before = ReadText(file_);
  FakeClock other;
  other.Advance(4s);
  auto b = Make("box-b", other);
  Lease::Result r = b->Begin();
  EXPECT_EQ(r.outcome, Lease::Outcome::kInUse);
  EXPECT_NE(r.detail.find("host box-a pid 4242"), std::string::npos) << r.detail;
  EXPECT_EQ(ReadText(file_), before);
  EXPECT_EQ(Others(), std::vector<std::string>{});
  b.reset();  // its release must not remove a's lease
  EXPECT_EQ(ReadText(file_), before);
  // Also while a is still settling.
  a.reset();
  auto c = Make("box-c", clock_);
  ASSERT_EQ(c->Begin().outcome, Lease::Outcome::kSettling);
  auto d = Make("box-d", clock_);
  EXPECT_EQ(d->Begin().outcome, Lease::Outcome::kInUse);
}

TEST_F(LeaseTest, LostRaceGivesWayAndKeepsTheWinnersFile) {
  auto a = Make("box-a", clock_);
  ASSERT_EQ(a->Begin().outcome, Lease::Outcome::kSettling);
  // A racer on another box read the lease before a's rename reached it; its rename reaches
  // this box during a's settle time and wins.
  WriteRecord("box-b", kOtherToken, kWallStart + 60000);
  clock_.Advance(options_.settle);
  Lease::Result r = a->Confirm();
  EXPECT_EQ(r.outcome, Lease::Outcome::kInUse);
  EXPECT_NE(r.detail.find("host box-b"), std::string::npos) << r.detail;
  EXPECT_TRUE(a->lost());
  EXPECT_FALSE(a->Verify());
  EXPECT_FALSE(a->Keep());
  EXPECT_FALSE(a->Renew());
  a->Release();
  auto record = OnDisk();
  ASSERT_TRUE(record);
  EXPECT_EQ(record->token, kOtherToken);
}

TEST_F(LeaseTest, LoserGivesItsLeaseUpInCaseItGetsTheNameLater) {
  // cofferfs keeps the loser of two links that claim one name at once, hidden, and gives it
  // the name when the winner's goes. Here a hard link stands for that hidden link.
  auto a = Make("box-a", clock_);
  ASSERT_EQ(a->Begin().outcome, Lease::Outcome::kSettling);
  const std::string hidden = dir_.path() + "/hidden";
  std::filesystem::create_hard_link(file_, hidden);
  WriteRecord("box-b", kOtherToken, kWallStart + 60000);
  clock_.Advance(options_.settle);
  ASSERT_EQ(a->Confirm().outcome, Lease::Outcome::kInUse);
  a.reset();
  std::string why;
  auto given_up = ParseLease(ReadText(hidden), &why);
  ASSERT_TRUE(given_up) << why;
  EXPECT_EQ(given_up->host, "box-a");
  EXPECT_EQ(given_up->expires_ms, 0);
  EXPECT_EQ(OnDisk()->token, kOtherToken);  // the winner's file is untouched
  // The winner goes and the loser's link takes the name: nobody is kept out by it.
  std::filesystem::rename(hidden, file_);
  auto c = Make("box-c", clock_);
  EXPECT_EQ(Acquire(*c, clock_), Lease::Outcome::kHeld);
}

TEST_F(LeaseTest, TwoRacersExactlyOneWins) {
  // Box b's clock is far enough ahead that a's lease looks ended to it (the race the settle time
  // exists for, made visible on one directory): b replaces a's file during a's settle time.
  auto a = Make("box-a", clock_);
  ASSERT_EQ(a->Begin().outcome, Lease::Outcome::kSettling);
  FakeClock b_clock;
  b_clock.skew_ms = 60000 + 3001;
  auto b = Make("box-b", b_clock);
  ASSERT_EQ(b->Begin().outcome, Lease::Outcome::kSettling);
  clock_.Advance(options_.settle);
  b_clock.Advance(options_.settle);
  EXPECT_EQ(a->Confirm().outcome, Lease::Outcome::kInUse);
  EXPECT_EQ(b->Confirm().outcome, Lease::Outcome::kHeld);
  a.reset();
  EXPECT_EQ(OnDisk()->token, b->token());
  b.reset();
  EXPECT_FALSE(std::filesystem::exists(file_));
}

TEST_F(LeaseTest, SlowRenameIsAbandoned) {
  // A slow temp-file write does not count; a slow read-to-rename does (bound: settle / 10).
  auto a = Make("box-a", clock_);
  clock_.steps = {0ms, 5000ms, 300ms};  // written_at, read_at (after the write), done
  Lease::Result ok = a->Begin();
  EXPECT_EQ(ok.outcome, Lease::Outcome::kSettling) << ok.detail;
  a.reset();
  EXPECT_FALSE(std::filesystem::exists(file_));

  // An earlier holder's ended lease is there: the slow racer replaced it, and takes its own
  // lease away again (the earlier one had ended anyway).
  WriteRecord("box-old", kOtherToken, kWallStart - 10000);
  auto b = Make("box-b", clock_);
  clock_.steps = {0ms, 0ms, 301ms};
  Lease::Result slow = b->Begin();
  EXPECT_EQ(slow.outcome, Lease::Outcome::kError);
  EXPECT_EQ(slow.err, ETIMEDOUT);
  EXPECT_NE(slow.detail.find("took 301 ms (more than 300 ms"), std::string::npos) << slow.detail;
  EXPECT_FALSE(std::filesystem::exists(file_));
  EXPECT_EQ(Others(), std::vector<std::string>{});
  EXPECT_FALSE(b->held());
  EXPECT_EQ(b->Confirm().outcome, Lease::Outcome::kError);
}

TEST_F(LeaseTest, RenewExtendsTheEnd) {
  auto a = Make("box-a", clock_);
  ASSERT_EQ(Acquire(*a, clock_), Lease::Outcome::kHeld);
  const std::int64_t first_end = OnDisk()->expires_ms;
  // Keep() does nothing before a renewal is due.
  clock_.Advance(10s);
  EXPECT_TRUE(a->Keep());
  EXPECT_EQ(OnDisk()->expires_ms, first_end);
  clock_.Advance(10s);  // 23 s after the write: due
  EXPECT_TRUE(a->Keep());
  EXPECT_EQ(OnDisk()->expires_ms, kWallStart + 23000 + 60000);
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(20s);
    ASSERT_TRUE(a->Renew()) << i;
  }
  EXPECT_EQ(OnDisk()->expires_ms, kWallStart + 223000 + 60000);
  EXPECT_EQ(OnDisk()->token, a->token());
  EXPECT_TRUE(a->Verify());
  EXPECT_EQ(Others(), std::vector<std::string>{});
  // Long after the first lease would have ended, nobody may take it.
  FakeClock later;
  later.Advance(223s);
  auto b = Make("box-b", later);
  EXPECT_EQ(b->Begin().outcome, Lease::Outcome::kInUse);
}

TEST_F(LeaseTest, RenewalFindingAnotherHolderLosesTheLease) {
  auto a = Make("box-a", clock_);
  ASSERT_EQ(Acquire(*a, clock_), Lease::Outcome::kHeld);
  WriteRecord("box-b", kOtherToken, kWallStart + 90000);
  clock_.Advance(20s);
  EXPECT_FALSE(a->Renew());
  EXPECT_TRUE(a->lost());
  EXPECT_FALSE(a->held());
  EXPECT_FALSE(a->Keep());
  a->Release();
  EXPECT_EQ(OnDisk()->token, kOtherToken);  // only ours is ever removed
}

TEST_F(LeaseTest, VerifyReadsTheFileAgain) {
  auto a = Make("box-a", clock_);
  ASSERT_EQ(Acquire(*a, clock_), Lease::Outcome::kHeld);
  EXPECT_TRUE(a->Verify());
  testing::ReplaceLeaseFile(dir_.path(), "garbled");
  EXPECT_TRUE(a->Keep());  // no I/O: does not know yet
  EXPECT_FALSE(a->Verify());
  EXPECT_TRUE(a->lost());
}

// Written at 0 s, settled at 3 s: trusted until 60 - 3 = 57 s by our clock; a renewal must be
// able to finish (within settle / 10 = 300 ms) by then.
TEST_F(LeaseTest, RenewalJustInTime) {
  auto a = Make("box-a", clock_);
  ASSERT_EQ(Acquire(*a, clock_), Lease::Outcome::kHeld);
  clock_.Advance(56699ms - 3s);
  EXPECT_TRUE(a->Renew());
  EXPECT_EQ(OnDisk()->expires_ms, kWallStart + 56699 + 60000);
}

TEST_F(LeaseTest, RenewalJustTooLate) {
  auto a = Make("box-a", clock_);
  ASSERT_EQ(Acquire(*a, clock_), Lease::Outcome::kHeld);
  clock_.Advance(56700ms - 3s);
  EXPECT_FALSE(a->Keep());  // due, and too late to renew
  EXPECT_TRUE(a->lost());
  EXPECT_EQ(OnDisk()->expires_ms, kWallStart + 60000);  // not rewritten
}

TEST_F(LeaseTest, HolderStopsTrustingBeforeOthersMayTakeOver) {
  auto a = Make("box-a", clock_);
  ASSERT_EQ(Acquire(*a, clock_), Lease::Outcome::kHeld);
  // No renewal (the process was stopped, or the store failed): at 57 s a gives the lease up ...
  clock_.Advance(54s);
  EXPECT_FALSE(a->Keep());
  EXPECT_TRUE(a->lost());
  EXPECT_EQ(OnDisk()->token, a->token());
  // ... and another box may take it only S after its end, at 63 s: 2 S later.
  FakeClock other;
  other.Advance(63s);
  auto b = Make("box-b", other);
  EXPECT_EQ(b->Begin().outcome, Lease::Outcome::kInUse);
  other.Advance(1ms);
  b = Make("box-b", other);
  ASSERT_EQ(b->Begin().outcome, Lease::Outcome::kSettling);
  a.reset();  // its release leaves b's lease alone
  EXPECT_EQ(OnDisk()->token, b->token());
}

TEST_F(LeaseTest, RenewTooLateIsLostAndReleaseRemovesOurFile) {
  auto a = Make("box-a", clock_);
  ASSERT_EQ(Acquire(*a, clock_), Lease::Outcome::kHeld);
  clock_.Advance(60s);
  EXPECT_FALSE(a->Renew());
  EXPECT_TRUE(a->lost());
  EXPECT_TRUE(std::filesystem::exists(file_));
  a->Release();
  EXPECT_FALSE(std::filesystem::exists(file_));
}

TEST_F(LeaseTest, CrashedHoldersLeaseIsTakenOverAfterItEnds) {
  // A box crashed holding the lease: its file stays.
  WriteRecord("box-dead", kOtherToken, kWallStart + 60000);
  auto b = Make("box-b", clock_);
  Lease::Result r = b->Begin();
  EXPECT_EQ(r.outcome, Lease::Outcome::kInUse);
  EXPECT_NE(r.detail.find("host box-dead pid 99 (ends in 60 s)"), std::string::npos) << r.detail;
  clock_.Advance(60s);
  b = Make("box-b", clock_);
  EXPECT_EQ(b->Begin().outcome, Lease::Outcome::kInUse);  // ended, but not S ago
  clock_.Advance(3001ms);
  b = Make("box-b", clock_);
  EXPECT_EQ(Acquire(*b, clock_), Lease::Outcome::kHeld);
  EXPECT_EQ(OnDisk()->token, b->token());
}

TEST_F(LeaseTest, GarbledLeasesAreTreatedAsEnded) {
  const std::string big(5000, 'a');
  for (const std::string& text :
       {std::string(), std::string("garbage"), std::string("\xff\xfe\0\x01", 4),
        std::string("coffer-pop3d-lease 1\n"), big, std::string("far future")}) {
    if (text == "far future") {
      // Ends more than the longest lease (plus S) from now: a box with a wrong clock.
      WriteRecord("box-x", kOtherToken, clock_.WallMs() + 3600000 + 3001);
    } else {
      WriteText(file_, text);
    }
    auto a = Make("box-a", clock_);
    ASSERT_EQ(Acquire(*a, clock_), Lease::Outcome::kHeld) << text.substr(0, 40);
    EXPECT_EQ(OnDisk()->token, a->token());
  }
  // A lease that claims to last almost as long as the longest allowed one is honoured.
  std::filesystem::remove(file_);
  WriteRecord("box-x", kOtherToken, clock_.WallMs() + 3600000);
  EXPECT_EQ(Make("box-a", clock_)->Begin().outcome, Lease::Outcome::kInUse);
}

TEST_F(LeaseTest, SymlinkOrDirectoryAtTheLeaseName) {
  // A symbolic link: treated as garbled; the rename replaces the link, not its target.
  WriteText(dir_.path() + "/target", "keep me");
  ASSERT_EQ(::symlink("target", file_.c_str()), 0);
  auto a = Make("box-a", clock_);
  ASSERT_EQ(Acquire(*a, clock_), Lease::Outcome::kHeld);
  EXPECT_EQ(ReadText(dir_.path() + "/target"), "keep me");
  a.reset();
  std::filesystem::remove(dir_.path() + "/target");
  // A directory: the rename fails, the login fails with an error, nothing is left behind.
  ASSERT_EQ(::mkdir(file_.c_str(), 0700), 0);
  auto b = Make("box-b", clock_);
  Lease::Result r = b->Begin();
  EXPECT_EQ(r.outcome, Lease::Outcome::kError);
  EXPECT_EQ(r.err, EISDIR);
  EXPECT_EQ(Others(), std::vector<std::string>{});
}

TEST_F(LeaseTest, ReleaseIsIdempotentAndStopsRenewals) {
  auto a = Make("box-a", clock_);
  ASSERT_EQ(Acquire(*a, clock_), Lease::Outcome::kHeld);
  a->Release();
  EXPECT_FALSE(std::filesystem::exists(file_));
  a->Release();
  clock_.Advance(20s);
  EXPECT_FALSE(a->Renew());
  EXPECT_FALSE(std::filesystem::exists(file_));
  // A release while settling removes the lease too (the client went away during the settle).
  auto b = Make("box-b", clock_);
  ASSERT_EQ(b->Begin().outcome, Lease::Outcome::kSettling);
  b.reset();
  EXPECT_FALSE(std::filesystem::exists(file_));
  EXPECT_EQ(Others(), std::vector<std::string>{});
}

TEST_F(LeaseTest, ConfirmTooLateGivesUp) {
  auto a = Make("box-a", clock_);
  ASSERT_EQ(a->Begin().outcome, Lease::Outcome::kSettling);
  clock_.Advance(60s);  // the timer fired very late
  Lease::Result r = a->Confirm();
  EXPECT_EQ(r.outcome, Lease::Outcome::kError);
  EXPECT_EQ(r.err, ETIMEDOUT);
  EXPECT_FALSE(std::filesystem::exists(file_));
}

TEST_F(LeaseTest, MissingDirectoryIsAnError) {
  Lease a(dir_.path() + "/nope", options_, clock_, "box-a", 1);
  Lease::Result r = a.Begin();
  EXPECT_EQ(r.outcome, Lease::Outcome::kError);
  EXPECT_EQ(r.err, ENOENT);
}

}  // namespace
}  // namespace coffer::pop3d
