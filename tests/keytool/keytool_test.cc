// coffer-keytool as a user runs it: the real binary, its exit codes, its messages, the files it
// leaves. Every failure case an admin can meet is here: wrong passphrase, truncated or tampered
// file, refusing to overwrite, loose permissions, no terminal, and "nothing changed" after each.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <cstdlib>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/crypto.h"
#include "common/crypto.pb.h"
#include "common/keyfile.h"
#include "keytool/keytool.h"
#include "tests/support/subprocess.h"

namespace coffer::keytool {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using coffer::testing::FileExists;
using coffer::testing::FileMode;
using coffer::testing::ReadTextFile;
using coffer::testing::RunOptions;
using coffer::testing::RunResult;
using coffer::testing::TempDir;
using coffer::testing::WriteTextFile;

class KeytoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("COFFER_KEYTOOL");
    ASSERT_NE(bin, nullptr) << "COFFER_KEYTOOL must name the coffer-keytool binary";
    bin_ = bin;
    WriteTextFile(dir_ / "pass", "correct horse battery\n", 0600);
    WriteTextFile(dir_ / "pass2", "another passphrase\n", 0600);
    WriteTextFile(dir_ / "wrong", "not the passphrase\n", 0600);
  }

  RunResult Keytool(std::vector<std::string> args, RunOptions options = {}) {
    args.insert(args.begin(), bin_);
    return coffer::testing::Run(args, options);
  }

  // A passphrase-protected key file with cheap scrypt parameters.
  std::string MakeKey(const std::string& name = "a.key") {
    std::string path = dir_ / name;
    RunResult r = Keytool({"init", "-k", path, "--passfile", dir_ / "pass", "--scrypt-logn", "10"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return path;
  }

  static std::string FingerprintIn(const std::string& text) {
    auto pos = text.find("fingerprint");
    if (pos == std::string::npos) return "";
    pos = text.find_first_of("0123456789abcdef", pos + 11);
    return text.substr(pos, 39);
  }

  TempDir dir_;
  std::string bin_;
};

TEST_F(KeytoolTest, InitShowVerify) {
  std::string key = dir_ / "a.key";
  RunResult r = Keytool({"init", "-k", key, "--passfile", dir_ / "pass", "--scrypt-logn", "10"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(FileMode(key), 0600);
  std::string fp = FingerprintIn(r.out);
  EXPECT_THAT(fp, ::testing::MatchesRegex("([0-9a-f]{4}-){7}[0-9a-f]{4}"));

  r = Keytool({"show", "-k", key});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("format version: 1"));
  EXPECT_THAT(r.out, HasSubstr("scrypt N=2^10 r=8 p=1"));
  EXPECT_THAT(r.out, HasSubstr("current epoch:  1"));
  EXPECT_THAT(r.out, HasSubstr(fp));
  EXPECT_THAT(r.out, HasSubstr("created:"));

  r = Keytool({"verify", "-k", key, "--passfile", dir_ / "pass"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("OK"));
  EXPECT_THAT(r.out, HasSubstr(fp));
}

TEST_F(KeytoolTest, PassphraseFromDescriptor) {
  std::string key = dir_ / "fd.key";
  RunOptions with_fd;
  with_fd.extra_fds[3] = "from a pipe\n";
  RunResult r = Keytool({"init", "-k", key, "--passfd", "3", "--scrypt-logn", "10"}, with_fd);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Keytool({"verify", "-k", key, "--passfd", "3"}, with_fd);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  RunOptions wrong;
  wrong.extra_fds[3] = "from another pipe\n";
  r = Keytool({"verify", "-k", key, "--passfd", "3"}, wrong);
  EXPECT_EQ(r.exit_code, kExitNoPerm);
}

TEST_F(KeytoolTest, DefaultScryptCostIsRecorded) {
  std::string key = dir_ / "slow.key";
  RunResult r = Keytool({"init", "-k", key, "--passfile", dir_ / "pass"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Keytool({"show", "-k", key});
  EXPECT_THAT(r.out, HasSubstr("scrypt N=2^17 r=8 p=1 (128 MiB)"));
}

TEST_F(KeytoolTest, NoTerminalAndNoPassfileIsAUsageError) {
  std::string key = dir_ / "a.key";
  RunResult r = Keytool({"init", "-k", key, "--scrypt-logn", "10"});  // setsid(): no tty
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--passfile"));
  EXPECT_FALSE(FileExists(key));
}

TEST_F(KeytoolTest, ConflictingOptionsAreUsageErrors) {
  RunResult r = Keytool({"init", "-k", dir_ / "x.key", "--passfile", dir_ / "pass", "--no-passphrase"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_FALSE(FileExists(dir_ / "x.key"));
  r = Keytool({"frobnicate"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  r = Keytool({});
  EXPECT_EQ(r.exit_code, kExitUsage);
  r = Keytool({"init", "-k", dir_ / "x.key", "--passphrase", "on-the-command-line"});
  EXPECT_EQ(r.exit_code, kExitUsage) << "passphrases must never be taken from argv";
  EXPECT_FALSE(FileExists(dir_ / "x.key"));
}

TEST_F(KeytoolTest, HelpForEverySubcommand) {
  for (const char* cmd : {"init", "show", "verify", "passwd", "rotate", "export", "import",
                          "curve-keygen"}) {
    RunResult r = Keytool({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd;
    EXPECT_THAT(r.out, HasSubstr("Usage")) << cmd;
  }
  RunResult r = Keytool({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("curve-keygen"));
}

TEST_F(KeytoolTest, RefusesToOverwrite) {
  std::string key = MakeKey();
  std::string before = ReadTextFile(key);
  RunResult r = Keytool({"init", "-k", key, "--passfile", dir_ / "pass2", "--scrypt-logn", "10"});
  EXPECT_EQ(r.exit_code, kExitCantCreate);
  EXPECT_THAT(r.err, HasSubstr("already exists"));
  EXPECT_EQ(ReadTextFile(key), before);
  r = Keytool({"init", "-k", key, "--no-passphrase"});
  EXPECT_EQ(r.exit_code, kExitCantCreate);
  EXPECT_EQ(ReadTextFile(key), before);
}

TEST_F(KeytoolTest, WrongPassphraseChangesNothing) {
  std::string key = MakeKey();
  std::string before = ReadTextFile(key);
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"verify", "-k", key, "--passfile", dir_ / "wrong"},
           {"rotate", "-k", key, "--passfile", dir_ / "wrong"},
           {"passwd", "-k", key, "--passfile", dir_ / "wrong", "--new-passfile", dir_ / "pass2",
            "--scrypt-logn", "10"},
           {"export", "-k", key, "--passfile", dir_ / "wrong", "-o", dir_ / "x.export"}}) {
    RunResult r = Keytool(args);
    EXPECT_EQ(r.exit_code, kExitNoPerm) << args[0] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("wrong passphrase")) << args[0];
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one clear message: " << r.err;
    EXPECT_EQ(ReadTextFile(key), before) << args[0];
  }
  EXPECT_FALSE(FileExists(dir_ / "x.export"));
}

TEST_F(KeytoolTest, WarnsAboutAPassfileOthersCanRead) {
  WriteTextFile(dir_ / "loose", "correct horse battery\n", 0644);
  RunResult r = Keytool({"init", "-k", dir_ / "l.key", "--passfile", dir_ / "loose",
                         "--scrypt-logn", "10"});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_THAT(r.err, HasSubstr("warning: passfile " + (dir_ / "loose") +
                               " is accessible to group and others (mode 0644)"));
  r = Keytool({"verify", "-k", dir_ / "l.key", "--passfile", dir_ / "pass"});
  EXPECT_THAT(r.err, Not(HasSubstr("warning")));
}

TEST_F(KeytoolTest, Version) {
  RunResult r = Keytool({"--version"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("coffer-keytool 0."));
}

TEST_F(KeytoolTest, MissingFileAndEmptyPassphrase) {
  RunResult r = Keytool({"verify", "-k", dir_ / "nope.key", "--passfile", dir_ / "pass"});
  EXPECT_EQ(r.exit_code, kExitNoInput);
  EXPECT_THAT(r.err, HasSubstr("nope.key"));
  r = Keytool({"show", "-k", dir_ / "nope.key"});
  EXPECT_EQ(r.exit_code, kExitNoInput);
  WriteTextFile(dir_ / "empty", "\n", 0600);
  r = Keytool({"init", "-k", dir_ / "e.key", "--passfile", dir_ / "empty", "--scrypt-logn", "10"});
  EXPECT_EQ(r.exit_code, kExitDataErr);
  EXPECT_THAT(r.err, HasSubstr("empty passphrase"));
  EXPECT_FALSE(FileExists(dir_ / "e.key"));
}

TEST_F(KeytoolTest, TruncatedFileIsRefusedAtEveryLength) {
  std::string key = MakeKey();
  std::string bytes = ReadTextFile(key);
  for (std::size_t len = 0; len < bytes.size(); ++len) {
    WriteTextFile(dir_ / "t.key", bytes.substr(0, len), 0600);
    RunResult r = Keytool({"verify", "-k", dir_ / "t.key", "--passfile", dir_ / "pass"});
    EXPECT_NE(r.exit_code, 0) << "length " << len;
    EXPECT_TRUE(r.exit_code == kExitDataErr || r.exit_code == kExitNoPerm)
        << "length " << len << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST_F(KeytoolTest, TamperedFileIsRefused) {
  for (bool with_passphrase : {true, false}) {
    std::string key = dir_ / (with_passphrase ? "p.key" : "n.key");
    RunResult r = with_passphrase ? Keytool({"init", "-k", key, "--passfile", dir_ / "pass",
                                             "--scrypt-logn", "10"})
                                  : Keytool({"init", "-k", key, "--no-passphrase"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::string bytes = ReadTextFile(key);
    // Every byte, one bit at a time would be slow through scrypt; flip each byte once.
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ 0x01);
      WriteTextFile(dir_ / "bad.key", bad, 0600);
      r = Keytool({"verify", "-k", dir_ / "bad.key", "--passfile", dir_ / "pass"});
      if (!with_passphrase) r = Keytool({"verify", "-k", dir_ / "bad.key"});
      EXPECT_NE(r.exit_code, 0) << "byte " << i << (with_passphrase ? " (passphrase)" : "");
      EXPECT_NE(r.exit_code, kExitSoftware) << r.err;
    }
  }
}

TEST_F(KeytoolTest, NoPassphraseFileMustBePrivate) {
  std::string key = dir_ / "n.key";
  RunResult r = Keytool({"init", "-k", key, "--no-passphrase"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(FileMode(key), 0600);
  r = Keytool({"verify", "-k", key});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  chmod(key.c_str(), 0640);
  r = Keytool({"verify", "-k", key});
  EXPECT_EQ(r.exit_code, kExitNoPerm);
  EXPECT_THAT(r.err, HasSubstr("chmod 600"));
  EXPECT_THROW(keyfile::Load(key, nullptr), keyfile::KeyFileError);
  chmod(key.c_str(), 0600);
  EXPECT_NO_THROW(keyfile::Load(key, nullptr));
}

TEST_F(KeytoolTest, ShowAndVerifyNeverPrintKeyBytes) {
  std::string key = dir_ / "n.key";
  ASSERT_EQ(Keytool({"init", "-k", key, "--no-passphrase"}).exit_code, 0);
  proto::KeyFile file;
  ASSERT_TRUE(file.ParseFromString(ReadTextFile(key)));
  std::string key_hex = crypto::ToHex(file.plain_keys());
  ASSERT_EQ(key_hex.size(), 64u);
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"show", "-k", key}, {"verify", "-k", key}, {"rotate", "-k", key}, {"show", "-k", key}}) {
    RunResult r = Keytool(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    for (std::size_t i = 0; i + 8 <= key_hex.size(); i += 8) {
      EXPECT_THAT(r.out + r.err, Not(HasSubstr(key_hex.substr(i, 8))));
    }
    EXPECT_THAT(r.out + r.err, Not(HasSubstr(file.plain_keys().substr(0, 8))));
  }
}

TEST_F(KeytoolTest, PasswdRewrapsAtomically) {
  std::string key = MakeKey();
  std::string fp = FingerprintIn(Keytool({"show", "-k", key}).out);
  RunResult r = Keytool({"passwd", "-k", key, "--passfile", dir_ / "pass", "--new-passfile",
                         dir_ / "pass2", "--scrypt-logn", "11"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(FileMode(key), 0600);
  EXPECT_EQ(Keytool({"verify", "-k", key, "--passfile", dir_ / "pass"}).exit_code, kExitNoPerm);
  r = Keytool({"verify", "-k", key, "--passfile", dir_ / "pass2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(fp));
  EXPECT_THAT(Keytool({"show", "-k", key}).out, HasSubstr("N=2^11"));
  // No temporary file is left behind.
  r = coffer::testing::Run({"sh", "-c", "ls -a " + dir_.path()});
  EXPECT_THAT(r.out, Not(HasSubstr(".tmp")));
  // And to no passphrase and back.
  r = Keytool({"passwd", "-k", key, "--passfile", dir_ / "pass2", "--no-passphrase"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Keytool({"verify", "-k", key}).exit_code, 0);
  r = Keytool({"passwd", "-k", key, "--new-passfile", dir_ / "pass", "--scrypt-logn", "10"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Keytool({"verify", "-k", key, "--passfile", dir_ / "pass"}).exit_code, 0);
}

// kill -9 at many moments during passwd (scrypt of the new wrap, write, fsync, rename): the key
// file afterwards opens with either the old or the new passphrase, never neither.
TEST_F(KeytoolTest, PasswdSurvivesKill9AtAnyMoment) {
  std::string key = MakeKey();
  std::string fp = FingerprintIn(Keytool({"show", "-k", key}).out);
  std::string current = dir_ / "pass", next = dir_ / "pass2";
  int rewrapped = 0;
  for (int delay_ms : {0, 5, 20, 40, 60, 80, 100, 150, 250}) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      execl(bin_.c_str(), bin_.c_str(), "passwd", "-k", key.c_str(), "--passfile",
            current.c_str(), "--new-passfile", next.c_str(), "--scrypt-logn", "14",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    usleep(static_cast<useconds_t>(delay_ms) * 1000);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    bool old_ok = Keytool({"verify", "-k", key, "--passfile", current}).exit_code == 0;
    bool new_ok = Keytool({"verify", "-k", key, "--passfile", next}).exit_code == 0;
    ASSERT_TRUE(old_ok || new_ok) << "key file lost after kill at " << delay_ms << " ms";
    EXPECT_THAT(Keytool({"show", "-k", key}).out, HasSubstr(fp));
    if (new_ok) {
      ++rewrapped;
      std::swap(current, next);
    }
    // Leftover temporary files from the killed process are harmless and removable.
    coffer::testing::Run({"sh", "-c", "rm -f " + key + ".tmp.*"});
  }
  EXPECT_EQ(FileMode(key), 0600);
  RecordProperty("rewrapped", rewrapped);
}

TEST_F(KeytoolTest, RotateKeepsOldEpochsReadable) {
  std::string key = MakeKey();
  crypto::SecretBytes pass = crypto::SecretBytes::CopyOf("correct horse battery");
  crypto::ObjectId id = crypto::RandomObjectId();
  std::string old_sealed;
  std::string fp;
  {
    keyfile::KeySet keys = keyfile::Load(key, &pass);
    fp = keys.store_fingerprint();
    crypto::Keyring ring = keys.MakeKeyring();
    old_sealed = crypto::Seal(ring, crypto::ObjectKind::kChunk, id, 1, {1, 1}, "old mail");
  }
  RunResult r = Keytool({"rotate", "-k", key, "--passfile", dir_ / "pass"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("epoch 2"));
  r = Keytool({"show", "-k", key});
  EXPECT_THAT(r.out, HasSubstr("current epoch:  2"));
  EXPECT_THAT(r.out, HasSubstr("scrypt N=2^10"));  // rotation keeps the KDF parameters
  keyfile::KeySet keys = keyfile::Load(key, &pass);
  EXPECT_EQ(keys.current_epoch(), 2u);
  EXPECT_EQ(keys.store_fingerprint(), fp);
  EXPECT_NE(keys.epochs()[1].fingerprint, fp);
  crypto::Keyring ring = keys.MakeKeyring();
  EXPECT_EQ(ring.current_epoch(), 2u);
  EXPECT_EQ(crypto::Open(ring, crypto::ObjectKind::kChunk, id, old_sealed), "old mail");
  std::string new_sealed = crypto::Seal(ring, crypto::ObjectKind::kChunk, id, 2, {2, 1}, "new mail");
  EXPECT_EQ(crypto::Inspect(new_sealed)->epoch, 2u);
  EXPECT_EQ(crypto::Open(ring, crypto::ObjectKind::kChunk, id, new_sealed), "new mail");
}

TEST_F(KeytoolTest, ExportImportWithGeneratedPassphrase) {
  std::string key = MakeKey();
  Keytool({"rotate", "-k", key, "--passfile", dir_ / "pass"});
  std::string fp = FingerprintIn(Keytool({"show", "-k", key}).out);
  std::string exported = dir_ / "transfer";
  RunResult r = Keytool({"export", "-k", key, "--passfile", dir_ / "pass", "-o", exported});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(FileMode(exported), 0600);
  // The last line is the one-time passphrase.
  std::string out = r.out;
  out.pop_back();
  std::string one_time = out.substr(out.rfind('\n') + 1);
  EXPECT_THAT(one_time, ::testing::MatchesRegex("([a-z2-9]{5}-){5}[a-z2-9]{5}"));
  EXPECT_THAT(Keytool({"show", "-k", exported}).out, HasSubstr("export file"));
  // An export file is not a key file.
  r = Keytool({"verify", "-k", exported, "--passfile", dir_ / "pass"});
  EXPECT_EQ(r.exit_code, kExitDataErr);
  EXPECT_THAT(r.err, HasSubstr("import"));
  // Wrong one-time passphrase: nothing is created.
  std::string imported = dir_ / "b.key";
  RunOptions wrong;
  wrong.extra_fds[3] = "aaaaa-aaaaa-aaaaa-aaaaa-aaaaa-aaaaa\n";
  r = Keytool({"import", "-i", exported, "--export-passfd", "3", "-k", imported, "--passfile",
               dir_ / "pass2", "--scrypt-logn", "10"},
              wrong);
  EXPECT_EQ(r.exit_code, kExitNoPerm) << r.err;
  EXPECT_FALSE(FileExists(imported));
  RunOptions right;
  right.extra_fds[3] = one_time + "\n";
  r = Keytool({"import", "-i", exported, "--export-passfd", "3", "-k", imported, "--passfile",
               dir_ / "pass2", "--scrypt-logn", "10"},
              right);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Keytool({"verify", "-k", imported, "--passfile", dir_ / "pass2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(fp));
  EXPECT_THAT(r.out, HasSubstr("2 key epochs"));
  // Importing a plain key file, or over an existing file, is refused.
  r = Keytool({"import", "-i", key, "--export-passfile", dir_ / "pass", "-k", dir_ / "c.key",
               "--no-passphrase"});
  EXPECT_EQ(r.exit_code, kExitDataErr);
  EXPECT_FALSE(FileExists(dir_ / "c.key"));
  r = Keytool({"import", "-i", exported, "--export-passfd", "3", "-k", imported,
               "--no-passphrase"},
              right);
  EXPECT_EQ(r.exit_code, kExitCantCreate);
  r = Keytool({"export", "-k", key, "--passfile", dir_ / "pass", "-o", exported});
  EXPECT_EQ(r.exit_code, kExitCantCreate);
}

TEST_F(KeytoolTest, ExportWithGivenPassphrase) {
  std::string key = MakeKey();
  std::string exported = dir_ / "transfer";
  WriteTextFile(dir_ / "otp", "one time secret\n", 0600);
  RunResult r = Keytool({"export", "-k", key, "--passfile", dir_ / "pass", "-o", exported,
                         "--export-passfile", dir_ / "otp"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("one-time passphrase (")));
  r = Keytool({"import", "-i", exported, "--export-passfile", dir_ / "otp", "-k", dir_ / "n.key",
               "--no-passphrase"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(FileMode(dir_ / "n.key"), 0600);
  EXPECT_EQ(Keytool({"verify", "-k", dir_ / "n.key"}).exit_code, 0);
}

TEST_F(KeytoolTest, CurveKeygen) {
  std::string prefix = dir_ / "node1";
  RunResult r = Keytool({"curve-keygen", "--out", prefix});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(FileMode(prefix + ".key_secret"), 0600);
  EXPECT_EQ(FileMode(prefix + ".key"), 0644);
  std::string secret = ReadTextFile(prefix + ".key_secret");
  std::string pub = ReadTextFile(prefix + ".key");
  ASSERT_EQ(secret.size(), 41u);
  ASSERT_EQ(pub.size(), 41u);
  EXPECT_EQ(secret.back(), '\n');
  char derived[41];
  ASSERT_EQ(zmq_curve_public(derived, secret.substr(0, 40).c_str()), 0);
  EXPECT_EQ(std::string(derived, 40), pub.substr(0, 40));
  EXPECT_THAT(r.out, HasSubstr(pub.substr(0, 40)));
  EXPECT_THAT(r.out, Not(HasSubstr(secret.substr(0, 40))));
  r = Keytool({"curve-keygen", "--out", prefix});
  EXPECT_EQ(r.exit_code, kExitCantCreate);
  EXPECT_EQ(ReadTextFile(prefix + ".key_secret"), secret);
}

TEST_F(KeytoolTest, ConfigFileSetsDefaults) {
  std::string key = dir_ / "conf.key";
  WriteTextFile(dir_ / "keytool.toml", "keyfile = \"" + key + "\"\nscrypt_logn = 11\n");
  RunResult r = Keytool({"--config", dir_ / "keytool.toml", "init", "--passfile", dir_ / "pass"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(Keytool({"show", "-k", key}).out, HasSubstr("N=2^11"));
  // Subcommands without --scrypt-logn work with the same config file.
  r = Keytool({"--config", dir_ / "keytool.toml", "curve-keygen", "--out", dir_ / "c"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Keytool({"--config", dir_ / "keytool.toml", "show"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  WriteTextFile(dir_ / "bad.toml", "keyfile = \"x\"\nscrypt_lgon = 11\n");
  r = Keytool({"--config", dir_ / "bad.toml", "show"});
  EXPECT_EQ(r.exit_code, 78);
  EXPECT_THAT(r.err, HasSubstr("bad.toml:2"));
  EXPECT_THAT(r.err, HasSubstr("scrypt_lgon"));
}

}  // namespace
}  // namespace coffer::keytool
