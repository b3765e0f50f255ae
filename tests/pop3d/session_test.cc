// Tests for pop3d/session.cc: the POP3 state machine driven line by line, without sockets.
#include "pop3d/session.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/pop3d/test_util.h"

namespace coffer::pop3d {
namespace {

using testing::ListNames;
using testing::MakeMaildir;
using testing::TempDir;
using testing::WriteText;

bool StartsWith(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    md_ = dir_.path() + "/Maildir";
    MakeMaildir(md_);
    WriteText(md_ + "/new/1000.a.host", "Subject: one\n\nline 1\n.dotted\nline 3\n");
    WriteText(md_ + "/new/1001.b.host", "Subject: two\n\nsecond\n");
    WriteText(md_ + "/cur/1002.c.host:2,S", "Subject: three\r\n\r\nthird\r\n");
    options_.plaintext_ok = true;
    options_.failure_delay = std::chrono::milliseconds(100);
    options_.failure_delay_max = std::chrono::milliseconds(300);
  }

  // Drives USER/PASS and completes the login with the real maildrop.
  void Login(Session& s) {
    EXPECT_EQ(s.OnLine("USER alice").text, "+OK\r\n");
    Reply r = s.OnLine("PASS secret");
    ASSERT_TRUE(r.login);
    EXPECT_EQ(r.login->user, "alice");
    EXPECT_EQ(r.login->password, "secret");
    EXPECT_EQ(s.state(), State::kAuthWait);
    EXPECT_EQ(s.CompleteLogin(Ok()).text, "+OK Logged in.\r\n");
    EXPECT_EQ(s.state(), State::kTransaction);
  }

  LoginResult Ok() {
    LoginResult r;
    r.status = LoginStatus::kOk;
    r.user = "alice";
    auto opened = Maildrop::Open(md_, {}, nullptr, locks_);
    EXPECT_EQ(opened.status, OpenStatus::kOk);
    r.maildrop = std::move(opened.maildrop);
    return r;
  }

  static std::string Body(Reply& r) {
    std::string all, chunk;
    while (r.body && r.body->Next(chunk)) all += chunk;
    return all;
  }

  TempDir dir_;
  std::string md_;
  SessionOptions options_;
  MaildropLocks locks_;
};

TEST_F(SessionTest, GreetingNamesImplementation) {
  Session s(options_);
  EXPECT_EQ(s.Greeting(), "+OK coffer-pop3d ready.\r\n");
  options_.implementation = "";
  EXPECT_EQ(Session(options_).Greeting(), "+OK POP3 server ready.\r\n");
}

TEST_F(SessionTest, CapaListsExtensions) {
  options_.tls_available = true;
  options_.login_delay_s = 300;
  options_.expire_days = -2;
  Session s(options_);
  std::string capa = s.OnLine("CAPA").text;
  for (const char* c : {"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER",
                        "SASL PLAIN", "STLS", "UTF8 USER", "LOGIN-DELAY 300", "EXPIRE NEVER",
                        "IMPLEMENTATION coffer-pop3d"}) {
    EXPECT_NE(capa.find(std::string("\r\n") + c + "\r\n"), std::string::npos) << c;
  }
  EXPECT_TRUE(capa.ends_with("\r\n.\r\n"));
}

TEST_F(SessionTest, CapaWithoutTlsOrPlaintext) {
  options_.plaintext_ok = false;
  options_.expire_days = 30;
  Session s(options_);
  std::string capa = s.OnLine("capa").text;
  EXPECT_EQ(capa.find("\r\nUSER\r\n"), std::string::npos);
  EXPECT_EQ(capa.find("SASL"), std::string::npos);
  EXPECT_EQ(capa.find("STLS"), std::string::npos);
  EXPECT_NE(capa.find("EXPIRE 30\r\n"), std::string::npos);
}

TEST_F(SessionTest, PlaintextRefusedWithoutTls) {
  options_.plaintext_ok = false;
  options_.tls_available = true;
  Session s(options_);
  EXPECT_TRUE(StartsWith(s.OnLine("USER alice").text, "-ERR [AUTH] Plaintext"));
  EXPECT_TRUE(StartsWith(s.OnLine("AUTH PLAIN AGFsaWNlAHNlY3JldA==").text, "-ERR [AUTH]"));
  Reply r = s.OnLine("STLS");
  EXPECT_EQ(r.text, "+OK Begin TLS negotiation now.\r\n");
  EXPECT_TRUE(r.start_tls);
  s.TlsStarted();
  EXPECT_EQ(s.OnLine("USER alice").text, "+OK\r\n");
  EXPECT_TRUE(StartsWith(s.OnLine("STLS").text, "-ERR"));
}

TEST_F(SessionTest, FullTransaction) {
  Session s(options_);
  Login(s);
  EXPECT_EQ(s.OnLine("STAT").text, "+OK 3 " + std::to_string(41 + 24 + 25) + "\r\n");
  EXPECT_EQ(s.OnLine("LIST").text, "+OK 3 messages (90 octets)\r\n1 41\r\n2 24\r\n3 25\r\n.\r\n");
  EXPECT_EQ(s.OnLine("LIST 2").text, "+OK 2 24\r\n");
  EXPECT_EQ(s.OnLine("UIDL").text, "+OK\r\n1 1000.a.host\r\n2 1001.b.host\r\n3 1002.c.host\r\n.\r\n");
  EXPECT_EQ(s.OnLine("UIDL 3").text, "+OK 3 1002.c.host\r\n");
  Reply r = s.OnLine("RETR 1");
  EXPECT_EQ(r.text, "+OK 41 octets\r\n");
  EXPECT_EQ(Body(r), "Subject: one\r\n\r\nline 1\r\n..dotted\r\nline 3\r\n.\r\n");
  s.BodySent();
  EXPECT_TRUE(std::filesystem::exists(md_ + "/cur/1000.a.host:2,S"));
  r = s.OnLine("TOP 2 0");
  EXPECT_EQ(r.text, "+OK\r\n");
  EXPECT_EQ(Body(r), "Subject: two\r\n\r\n.\r\n");
  EXPECT_EQ(s.OnLine("DELE 2").text, "+OK Marked to be deleted.\r\n");
  EXPECT_EQ(s.OnLine("STAT").text, "+OK 2 66\r\n");
  EXPECT_EQ(s.OnLine("LIST").text, "+OK 2 messages (66 octets)\r\n1 41\r\n3 25\r\n.\r\n");
  EXPECT_EQ(s.OnLine("RETR 2").text, "-ERR Message is deleted.\r\n");
  EXPECT_EQ(s.OnLine("NOOP").text, "+OK\r\n");
  r = s.OnLine("QUIT");
  EXPECT_EQ(r.text, "+OK Logging out.\r\n");
  EXPECT_TRUE(r.close);
  EXPECT_EQ(s.state(), State::kUpdate);
  EXPECT_EQ(ListNames(md_ + "/new"), std::vector<std::string>{});
  EXPECT_EQ(ListNames(md_ + "/cur"),
            (std::vector<std::string>{"1000.a.host:2,S", "1002.c.host:2,S"}));
  EXPECT_EQ(s.stats().retr, 1u);
  EXPECT_EQ(s.stats().deleted, 1u);
}

TEST_F(SessionTest, RsetUndeletes) {
  Session s(options_);
  Login(s);
  s.OnLine("DELE 1");
  s.OnLine("DELE 3");
  EXPECT_EQ(s.OnLine("STAT").text, "+OK 1 24\r\n");
  EXPECT_EQ(s.OnLine("RSET").text, "+OK\r\n");
  EXPECT_EQ(s.OnLine("STAT").text, "+OK 3 90\r\n");
  s.OnLine("QUIT");
  EXPECT_EQ(ListNames(md_ + "/new").size() + ListNames(md_ + "/cur").size(), 3u);
}

TEST_F(SessionTest, DroppedSessionDeletesNothing) {
  {
    Session s(options_);
    Login(s);
    s.OnLine("DELE 1");
    s.OnLine("DELE 2");
    s.OnLine("DELE 3");
    Reply r = s.OnLine("RETR 1");
    EXPECT_TRUE(StartsWith(r.text, "-ERR"));
  }  // connection lost: no QUIT
  EXPECT_EQ(ListNames(md_ + "/new").size() + ListNames(md_ + "/cur").size(), 3u);
  // And the lock is released.
  EXPECT_EQ(Maildrop::Open(md_, {}, nullptr, locks_).status, OpenStatus::kOk);
}

// pop3.shared_store: a session whose lease another box took deletes nothing.
class SharedSessionTest : public SessionTest {
 protected:
  void LoginShared(Session& s) {
    EXPECT_EQ(s.OnLine("USER alice").text, "+OK\r\n");
    ASSERT_TRUE(s.OnLine("PASS secret").login);
    MaildropOptions o;
    o.shared_store = true;
    o.lease_clock = &clock_;
    auto opened = Maildrop::Open(md_, o, nullptr, locks_);
    ASSERT_EQ(opened.status, OpenStatus::kSettling) << opened.error;
    clock_.Advance(o.lease.settle);
    auto settled = Maildrop::Settle(std::move(opened.maildrop), nullptr);
    ASSERT_EQ(settled.status, OpenStatus::kOk) << settled.error;
    LoginResult r;
    r.status = LoginStatus::kOk;
    r.user = "alice";
    r.maildrop = std::move(settled.maildrop);
    EXPECT_EQ(s.CompleteLogin(std::move(r)).text, "+OK Logged in.\r\n");
    ASSERT_TRUE(s.lease());
  }
  std::size_t MessageCount() {
    return ListNames(md_ + "/new").size() + ListNames(md_ + "/cur").size();
  }

  testing::FakeLeaseClock clock_;
};

TEST_F(SharedSessionTest, LostRenewalEndsTheSessionAtTheNextCommand) {
  Session s(options_);
  LoginShared(s);
  EXPECT_EQ(s.OnLine("DELE 1").text, "+OK Marked to be deleted.\r\n");
  testing::WriteOtherLease(md_, clock_.WallMs() + 60000);
  clock_.Advance(std::chrono::seconds(20));
  EXPECT_FALSE(s.lease()->Renew());  // the server's renewal timer
  Reply r = s.OnLine("STAT");
  EXPECT_EQ(r.text,
            "-ERR [IN-USE] Another session took over this maildrop; nothing was "
            "deleted.\r\n");
  EXPECT_TRUE(r.close);
  EXPECT_TRUE(s.stats().lease_lost);
  EXPECT_FALSE(s.lease());
  EXPECT_EQ(MessageCount(), 3u);
  EXPECT_EQ(s.OnLine("QUIT").text, "+OK Logging out.\r\n");  // not logged in any more
  EXPECT_EQ(MessageCount(), 3u);
}

TEST_F(SharedSessionTest, QuitChecksTheLeaseBeforeDeleting) {
  Session s(options_);
  LoginShared(s);
  s.OnLine("DELE 1");
  s.OnLine("DELE 3");
  testing::WriteOtherLease(md_, clock_.WallMs() + 60000);  // no renewal noticed it yet
  Reply r = s.OnLine("QUIT");
  EXPECT_EQ(r.text,
            "-ERR [IN-USE] Another session took over this maildrop; nothing was "
            "deleted.\r\n");
  EXPECT_TRUE(r.close);
  EXPECT_EQ(s.stats().deleted, 0u);
  EXPECT_TRUE(s.stats().lease_lost);
  EXPECT_EQ(MessageCount(), 3u);
}

TEST_F(SharedSessionTest, QuitWithTheLeaseDeletesAndReleases) {
  Session s(options_);
  LoginShared(s);
  s.OnLine("DELE 1");
  s.OnLine("DELE 3");
  EXPECT_EQ(s.OnLine("QUIT").text, "+OK Logging out.\r\n");
  EXPECT_EQ(s.stats().deleted, 2u);
  EXPECT_FALSE(s.stats().lease_lost);
  EXPECT_EQ(MessageCount(), 1u);
  EXPECT_FALSE(std::filesystem::exists(md_ + "/" + Lease::kFileName));
}

TEST_F(SessionTest, QuitInAuthorizationState) {
  Session s(options_);
  Reply r = s.OnLine("QUIT");
  EXPECT_EQ(r.text, "+OK Logging out.\r\n");
  EXPECT_TRUE(r.close);
}

TEST_F(SessionTest, WrongStateCommands) {
  Session s(options_);
  EXPECT_EQ(s.OnLine("STAT").text, "-ERR Not logged in.\r\n");
  EXPECT_EQ(s.OnLine("RETR 1").text, "-ERR Not logged in.\r\n");
  EXPECT_EQ(s.OnLine("PASS x").text, "-ERR No username given.\r\n");
  Login(s);
  EXPECT_EQ(s.OnLine("USER bob").text, "-ERR Already logged in.\r\n");
  EXPECT_EQ(s.OnLine("STLS").text, "-ERR Already logged in.\r\n");
  EXPECT_EQ(s.OnLine("AUTH PLAIN").text, "-ERR Already logged in.\r\n");
}

TEST_F(SessionTest, BadArguments) {
  Session s(options_);
  Login(s);
  EXPECT_EQ(s.OnLine("RETR").text, "-ERR Missing argument.\r\n");
  EXPECT_EQ(s.OnLine("RETR 1 2").text, "-ERR Too many arguments.\r\n");
  EXPECT_EQ(s.OnLine("RETR 0").text, "-ERR There's no message 0.\r\n");
  EXPECT_EQ(s.OnLine("RETR 4").text, "-ERR There's no message 4.\r\n");
  EXPECT_EQ(s.OnLine("NOOP").text, "+OK\r\n");  // resets the bad-command count
  EXPECT_EQ(s.OnLine("RETR -1").text, "-ERR Invalid message number: -1\r\n");
  EXPECT_EQ(s.OnLine("RETR abc").text, "-ERR Invalid message number: abc\r\n");
  EXPECT_EQ(s.OnLine("DELE 99999999999").text, "-ERR Invalid message number: 99999999999\r\n");
  EXPECT_EQ(s.OnLine("TOP 1 x").text, "-ERR Invalid number of lines: x\r\n");
  EXPECT_EQ(s.OnLine("TOP 1").text, "-ERR Missing argument.\r\n");
  EXPECT_EQ(s.OnLine("STAT 1").text, "-ERR Too many arguments.\r\n");
  EXPECT_EQ(s.OnLine("XYZZY").text, "-ERR Unknown command: XYZZY\r\n");
  EXPECT_EQ(s.OnLine("").text, "-ERR Empty command.\r\n");
  EXPECT_EQ(s.state(), State::kTransaction);
}

TEST_F(SessionTest, TooManyBadCommandsCloses) {
  options_.max_bad_commands = 3;
  Session s(options_);
  EXPECT_FALSE(s.OnLine("FOO").close);
  EXPECT_FALSE(s.OnLine(std::string_view("BAR\0", 4)).close);
  Reply r = s.OnOverlongLine();
  EXPECT_TRUE(r.close);
  EXPECT_EQ(r.text, "-ERR Too many bad commands, closing connection.\r\n");
}

TEST_F(SessionTest, FailedLoginsDelayAndClose) {
  Session s(options_);
  for (int i = 1; i <= 3; ++i) {
    s.OnLine("USER alice");
    Reply r = s.OnLine("PASS wrong");
    ASSERT_TRUE(r.login);
    LoginResult bad;
    bad.status = LoginStatus::kBadCredentials;
    Reply done = s.CompleteLogin(std::move(bad));
    EXPECT_TRUE(StartsWith(done.text, "-ERR [AUTH] Authentication failed"));
    EXPECT_EQ(done.delay, std::chrono::milliseconds(std::min(100 << (i - 1), 300)));
    EXPECT_EQ(done.close, i == 3);
    EXPECT_EQ(s.state(), State::kAuthorization);
  }
}

TEST_F(SessionTest, InUseAndTempFailAndLoginDelayCodes) {
  Session s(options_);
  auto attempt = [&](LoginStatus status) {
    s.OnLine("USER alice");
    s.OnLine("PASS secret");
    LoginResult r;
    r.status = status;
    return s.CompleteLogin(std::move(r)).text;
  };
  EXPECT_TRUE(StartsWith(attempt(LoginStatus::kInUse), "-ERR [IN-USE]"));
  EXPECT_TRUE(StartsWith(attempt(LoginStatus::kTempFail), "-ERR [SYS/TEMP]"));
  EXPECT_TRUE(StartsWith(attempt(LoginStatus::kLoginDelay), "-ERR [LOGIN-DELAY]"));
  EXPECT_TRUE(StartsWith(attempt(LoginStatus::kPermFail), "-ERR [SYS/PERM]"));
  EXPECT_EQ(s.state(), State::kAuthorization);
}

TEST_F(SessionTest, AuthPlainInitialResponse) {
  Session s(options_);
  // "\0alice\0secret"
  Reply r = s.OnLine("AUTH PLAIN AGFsaWNlAHNlY3JldA==");
  ASSERT_TRUE(r.login);
  EXPECT_EQ(r.login->user, "alice");
  EXPECT_EQ(r.login->password, "secret");
}

TEST_F(SessionTest, AuthPlainContinuationAndCancel) {
  Session s(options_);
  EXPECT_EQ(s.OnLine("AUTH PLAIN").text, "+ \r\n");
  EXPECT_EQ(s.state(), State::kSaslContinue);
  EXPECT_EQ(s.OnLine("*").text, "-ERR Authentication cancelled.\r\n");
  EXPECT_EQ(s.OnLine("AUTH plain").text, "+ \r\n");
  // "alice\0alice\0secret": authzid equal to authcid is fine.
  Reply r = s.OnLine("YWxpY2UAYWxpY2UAc2VjcmV0");
  ASSERT_TRUE(r.login);
  EXPECT_EQ(r.login->user, "alice");
}

TEST_F(SessionTest, AuthPlainBadInput) {
  Session s(options_);
  EXPECT_EQ(s.OnLine("AUTH").text, "+OK\r\nPLAIN\r\n.\r\n");
  EXPECT_EQ(s.OnLine("AUTH CRAM-MD5").text, "-ERR Unsupported authentication mechanism.\r\n");
  EXPECT_EQ(s.OnLine("AUTH PLAIN !!!").text, "-ERR Invalid base64 data.\r\n");
  EXPECT_EQ(s.OnLine("AUTH PLAIN YWxpY2U=").text, "-ERR Invalid SASL PLAIN response.\r\n");
  // "bob\0alice\0secret": proxy authorisation is refused.
  EXPECT_EQ(s.OnLine("AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==").text,
            "-ERR [AUTH] Authentication failed.\r\n");
}

TEST_F(SessionTest, PasswordWithSpacesAndUtf8) {
  Session s(options_);
  EXPECT_EQ(s.OnLine("UTF8").text, "+OK UTF8 enabled.\r\n");
  EXPECT_TRUE(s.utf8());
  s.OnLine("USER j\xc3\xbcrgen");
  Reply r = s.OnLine("PASS two words ");
  ASSERT_TRUE(r.login);
  EXPECT_EQ(r.login->user, "j\xc3\xbcrgen");
  EXPECT_EQ(r.login->password, "two words ");
}

TEST_F(SessionTest, ApopIsRefusedPolitely) {
  Session s(options_);
  EXPECT_TRUE(StartsWith(s.OnLine("APOP alice 0123456789abcdef").text, "-ERR APOP"));
}

TEST_F(SessionTest, DeletedMessageFailureReportsSysTemp) {
  Session s(options_);
  Login(s);
  s.OnLine("DELE 1");
  // Make the unlink fail: replace cur/ and new/ by read-only directories is not possible as
  // root, so remove the file and put a non-empty directory with the same name instead.
  std::filesystem::remove(md_ + "/new/1000.a.host");
  std::filesystem::create_directories(md_ + "/new/1000.a.host/x");
  Reply r = s.OnLine("QUIT");
  EXPECT_EQ(r.text, "-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n");
  EXPECT_TRUE(r.close);
}

TEST_F(SessionTest, MessageVanishedBeforeRetr) {
  Session s(options_);
  Login(s);
  std::filesystem::remove(md_ + "/new/1001.b.host");
  EXPECT_EQ(s.OnLine("RETR 2").text, "-ERR Message no longer exists.\r\n");
  EXPECT_EQ(s.OnLine("TOP 2 1").text, "-ERR Message no longer exists.\r\n");
}

}  // namespace
}  // namespace coffer::pop3d
