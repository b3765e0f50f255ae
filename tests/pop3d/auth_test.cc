// Tests for pop3d/auth.cc: passwd-file parsing, every supported hash scheme, the mail location
// template, user-name safety and the Authenticator's login outcomes.
#include "pop3d/auth.h"

#include <crypt.h>
#include <sodium.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/pop3d/test_util.h"

namespace coffer::pop3d {
namespace {

using testing::TempDir;
using testing::WriteText;

std::string Crypt(const char* prefix, const std::string& password) {
  const char* setting = crypt_gensalt(prefix, 0, nullptr, 0);
  EXPECT_NE(setting, nullptr);
  crypt_data data{};
  const char* out = crypt_r(password.c_str(), setting, &data);
  EXPECT_NE(out, nullptr);
  return out;
}

std::string Argon2id(const std::string& password) {
  EXPECT_GE(sodium_init(), 0);
  char out[crypto_pwhash_STRBYTES];
  EXPECT_EQ(crypto_pwhash_str_alg(out, password.data(), password.size(),
                                  crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN,
                                  crypto_pwhash_ALG_ARGON2ID13),
            0);
  return out;
}

TEST(PasswdFileTest, ParsesDovecotFormat) {
  std::vector<int> bad;
  auto users = ParsePasswdFile(
      "# comment\n"
      "\n"
      "alice@example.org:{SHA512-CRYPT}$6$salt$hash:1000:1000::/home/alice::\n"
      "bob:$2y$05$abc:::\n"
      "carol:{plain}pw\n"
      ":nouser\n"
      "justname\n",
      &bad);
  ASSERT_EQ(users.size(), 3u);
  EXPECT_EQ(users["alice@example.org"].scheme, "SHA512-CRYPT");
  EXPECT_EQ(users["alice@example.org"].hash, "$6$salt$hash");
  EXPECT_EQ(users["alice@example.org"].home, "/home/alice");
  EXPECT_EQ(users["alice@example.org"].uid, "1000");
  EXPECT_EQ(users["bob"].scheme, "CRYPT");
  EXPECT_EQ(users["carol"].scheme, "PLAIN");
  EXPECT_EQ(bad, (std::vector<int>{6, 7}));
}

TEST(VerifyPasswordTest, CryptSchemes) {
  for (const char* prefix : {"$6$", "$5$", "$2b$", "$1$"}) {
    std::string hash = Crypt(prefix, "s3cret pw");
    EXPECT_TRUE(VerifyPassword("CRYPT", hash, "s3cret pw")) << prefix;
    EXPECT_FALSE(VerifyPassword("CRYPT", hash, "s3cret")) << prefix;
  }
  std::string sha512 = Crypt("$6$", "x");
  EXPECT_TRUE(VerifyPassword("SHA512-CRYPT", sha512, "x"));
  std::string blf = Crypt("$2y$", "blowfish");
  EXPECT_TRUE(VerifyPassword("BLF-CRYPT", blf, "blowfish"));
  EXPECT_FALSE(VerifyPassword("BLF-CRYPT", blf, "Blowfish"));
}

TEST(VerifyPasswordTest, Argon2id) {
  std::string hash = Argon2id("correct horse");
  EXPECT_TRUE(VerifyPassword("ARGON2ID", hash, "correct horse"));
  EXPECT_FALSE(VerifyPassword("ARGON2ID", hash, "wrong horse"));
}

TEST(VerifyPasswordTest, PlainAndUnknown) {
  EXPECT_TRUE(VerifyPassword("PLAIN", "pw", "pw"));
  EXPECT_FALSE(VerifyPassword("PLAIN", "pw", "pw2"));
  EXPECT_FALSE(VerifyPassword("PLAIN", "pw", ""));
  EXPECT_FALSE(VerifyPassword("MD4", "pw", "pw"));
  EXPECT_FALSE(VerifyPassword("CRYPT", "", ""));
  EXPECT_FALSE(VerifyPassword("CRYPT", "*", ""));
}

TEST(ExpandMailLocationTest, Variables) {
  EXPECT_EQ(ExpandMailLocation("/srv/mail/%d/%n/Maildir", "alice@example.org", ""),
            "/srv/mail/example.org/alice/Maildir");
  EXPECT_EQ(ExpandMailLocation("/m/%u", "bob", ""), "/m/bob");
  EXPECT_EQ(ExpandMailLocation("/m/%d/%n", "bob", ""), "/m//bob");
  EXPECT_EQ(ExpandMailLocation("%h/Maildir", "bob", "/home/bob"), "/home/bob/Maildir");
  EXPECT_EQ(ExpandMailLocation("/a%%b%x%", "u", ""), "/a%b%x%");
}

TEST(SafeUserNameTest, RejectsPathTricks) {
  EXPECT_TRUE(SafeUserName("alice@example.org"));
  EXPECT_TRUE(SafeUserName("j\xc3\xbcrgen"));
  EXPECT_FALSE(SafeUserName(""));
  EXPECT_FALSE(SafeUserName(".."));
  EXPECT_FALSE(SafeUserName("../etc"));
  EXPECT_FALSE(SafeUserName("a/b"));
  EXPECT_FALSE(SafeUserName("..@example.org"));
  EXPECT_FALSE(SafeUserName("a@.."));
  EXPECT_FALSE(SafeUserName("a%d"));
  EXPECT_FALSE(SafeUserName(std::string(256, 'a')));
}

class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    passwd_ = dir_.path() + "/passwd";
    WriteText(passwd_, "alice@example.org:{SHA512-CRYPT}" + Crypt("$6$", "secret") + "\n" +
                           "bob@example.org:{ARGON2ID}" + Argon2id("pw") + "\n");
    options_.passwd_file = passwd_;
    options_.mail_location = dir_.path() + "/%d/%n/Maildir";
  }
  TempDir dir_;
  std::string passwd_;
  AuthOptions options_;
};

TEST_F(AuthenticatorTest, LoginOpensMaildrop) {
  Authenticator auth(options_);
  auto r = auth.Login("alice@example.org", "secret");
  ASSERT_EQ(r.status, LoginStatus::kOk);
  ASSERT_TRUE(r.maildrop);
  EXPECT_EQ(r.maildrop->path(), dir_.path() + "/example.org/alice/Maildir");
  EXPECT_EQ(auth.Login("bob@example.org", "pw").status, LoginStatus::kOk);
}

TEST_F(AuthenticatorTest, WrongPasswordUnknownUserAndUnsafeName) {
  Authenticator auth(options_);
  EXPECT_EQ(auth.Login("alice@example.org", "nope").status, LoginStatus::kBadCredentials);
  EXPECT_EQ(auth.Login("mallory@example.org", "secret").status, LoginStatus::kBadCredentials);
  EXPECT_EQ(auth.Login("../alice", "secret").status, LoginStatus::kBadCredentials);
}

TEST_F(AuthenticatorTest, SecondSessionIsInUse) {
  Authenticator auth(options_);
  auto first = auth.Login("alice@example.org", "secret");
  ASSERT_EQ(first.status, LoginStatus::kOk);
  EXPECT_EQ(auth.Login("alice@example.org", "secret").status, LoginStatus::kInUse);
  first.maildrop.reset();
  EXPECT_EQ(auth.Login("alice@example.org", "secret").status, LoginStatus::kOk);
}

TEST_F(AuthenticatorTest, PasswdFileIsReReadWhenChanged) {
  Authenticator auth(options_);
  EXPECT_EQ(auth.Login("carol", "pw").status, LoginStatus::kBadCredentials);
  WriteText(passwd_, "carol:{PLAIN}pw:::::: \n");
  EXPECT_EQ(auth.Login("carol", "pw").status, LoginStatus::kOk);
}

TEST_F(AuthenticatorTest, MissingPasswdFileIsTemporaryFailure) {
  options_.passwd_file = dir_.path() + "/missing";
  Authenticator auth(options_);
  EXPECT_EQ(auth.Login("alice@example.org", "secret").status, LoginStatus::kTempFail);
}

TEST_F(AuthenticatorTest, LoginDelayIsEnforced) {
  options_.login_delay = std::chrono::seconds(3600);
  Authenticator auth(options_);
  auto first = auth.Login("alice@example.org", "secret");
  ASSERT_EQ(first.status, LoginStatus::kOk);
  first.maildrop.reset();
  EXPECT_EQ(auth.Login("alice@example.org", "secret").status, LoginStatus::kLoginDelay);
}

TEST_F(AuthenticatorTest, UnopenableMaildropIsTemporaryFailure) {
  options_.mail_location = "/proc/no/such/%n";
  Authenticator auth(options_);
  EXPECT_EQ(auth.Login("alice@example.org", "secret").status, LoginStatus::kTempFail);
}

TEST_F(AuthenticatorTest, MaildropUnderAFileIsPermanentFailure) {
  WriteText(dir_.path() + "/file", "x");
  options_.mail_location = dir_.path() + "/file/%n/Maildir";
  Authenticator auth(options_);
  EXPECT_EQ(auth.Login("alice@example.org", "secret").status, LoginStatus::kPermFail);
}

}  // namespace
}  // namespace coffer::pop3d
