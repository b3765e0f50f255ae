// Key files at the library level: round trips, authentication of every part, bounds on what a
// hostile file can make us do, passphrase sources, and the process hardening.
#include "common/keyfile.h"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/crypto.pb.h"
#include "common/passphrase.h"
#include "tests/support/subprocess.h"

namespace coffer::keyfile {
namespace {

using ::testing::HasSubstr;
using coffer::testing::TempDir;
using coffer::testing::WriteTextFile;

const ScryptParams kCheap{1 << 10, 8, 1};

crypto::SecretBytes Pass(std::string_view p) { return crypto::SecretBytes::CopyOf(p); }

int ErrOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.err();
  }
  return 0;
}

TEST(KeyFileTest, RoundTripWithPassphrase) {
  KeySet keys = KeySet::Generate(1700000000);
  keys.Rotate(1700000100);
  auto p = Pass("hunter2");
  std::string file = Encode(keys, Purpose::kKeyFile, &p, kCheap);
  Info info = ReadInfo(file);
  EXPECT_EQ(info.format_version, 1u);
  EXPECT_EQ(info.created_unix, 1700000000);
  ASSERT_TRUE(info.kdf);
  EXPECT_EQ(info.kdf->n, 1u << 10);
  ASSERT_EQ(info.epochs.size(), 2u);
  EXPECT_EQ(info.current_epoch, 2u);
  EXPECT_EQ(info.epochs[1].created_unix, 1700000100);
  EXPECT_EQ(info.store_fingerprint(), keys.store_fingerprint());

  KeySet back = Unlock(file, &p);
  EXPECT_EQ(back.store_fingerprint(), keys.store_fingerprint());
  EXPECT_EQ(back.current_epoch(), 2u);
  // The unlocked keys open what the original keys sealed, in both epochs.
  crypto::Keyring a = keys.MakeKeyring(), b = back.MakeKeyring();
  crypto::ObjectId id = crypto::RandomObjectId();
  for (std::uint32_t epoch : {1u, 2u}) {
    std::string sealed = crypto::Seal(a, crypto::ObjectKind::kInodeRecord, id, epoch, {7, 1}, "rec");
    EXPECT_EQ(crypto::Open(b, crypto::ObjectKind::kInodeRecord, id, sealed), "rec");
  }
}

TEST(KeyFileTest, RoundTripWithoutPassphrase) {
  KeySet keys = KeySet::Generate(5);
  std::string file = Encode(keys, Purpose::kKeyFile, nullptr);
  EXPECT_FALSE(ReadInfo(file).kdf);
  EXPECT_EQ(Unlock(file, nullptr).store_fingerprint(), keys.store_fingerprint());
}

TEST(KeyFileTest, WrongPassphraseIsEacces) {
  KeySet keys = KeySet::Generate(5);
  auto p = Pass("right"), q = Pass("wrong");
  std::string file = Encode(keys, Purpose::kKeyFile, &p, kCheap);
  EXPECT_EQ(ErrOf([&] { Unlock(file, &q); }), EACCES);
  EXPECT_EQ(ErrOf([&] { Unlock(file, nullptr); }), ENOKEY);
}

TEST(KeyFileTest, EveryByteIsAuthenticated) {
  KeySet keys = KeySet::Generate(5);
  auto p = Pass("right");
  for (bool with_pass : {true, false}) {
    std::string file = Encode(keys, Purpose::kKeyFile, with_pass ? &p : nullptr, kCheap);
    for (std::size_t i = 0; i < file.size(); ++i) {
      for (unsigned char bit : {0x01, 0x80}) {
        std::string bad = file;
        bad[i] = static_cast<char>(bad[i] ^ bit);
        int err = ErrOf([&] { Unlock(bad, with_pass ? &p : nullptr); });
        EXPECT_NE(err, 0) << "byte " << i << " bit " << int(bit) << " pass " << with_pass;
      }
    }
    for (std::size_t len = 0; len < file.size(); ++len) {
      EXPECT_NE(ErrOf([&] { Unlock(file.substr(0, len), with_pass ? &p : nullptr); }), 0);
    }
  }
}

TEST(KeyFileTest, HeaderCannotBeSwappedBetweenFiles) {
  auto p = Pass("right");
  KeySet a = KeySet::Generate(5), b = KeySet::Generate(6);
  proto::KeyFile fa, fb;
  ASSERT_TRUE(fa.ParseFromString(Encode(a, Purpose::kKeyFile, &p, kCheap)));
  ASSERT_TRUE(fb.ParseFromString(Encode(b, Purpose::kKeyFile, &p, kCheap)));
  fa.set_header(fb.header());
  EXPECT_NE(ErrOf([&] { Unlock(fa.SerializeAsString(), &p); }), 0);
  // Without a passphrase, a header from another file fails the MAC / fingerprint check.
  proto::KeyFile na, nb;
  ASSERT_TRUE(na.ParseFromString(Encode(a, Purpose::kKeyFile, nullptr)));
  ASSERT_TRUE(nb.ParseFromString(Encode(b, Purpose::kKeyFile, nullptr)));
  na.set_header(nb.header());
  EXPECT_EQ(ErrOf([&] { Unlock(na.SerializeAsString(), nullptr); }), EBADMSG);
}

TEST(KeyFileTest, ImplausibleKdfParametersAreRefusedBeforeScrypt) {
  KeySet keys = KeySet::Generate(5);
  auto p = Pass("x");
  proto::KeyFile f;
  ASSERT_TRUE(f.ParseFromString(Encode(keys, Purpose::kKeyFile, &p, kCheap)));
  proto::KeyFileHeader h;
  ASSERT_TRUE(h.ParseFromString(f.header()));
  for (auto [n, r, pp] : std::vector<std::tuple<std::uint64_t, std::uint32_t, std::uint32_t>>{
           {1ull << 30, 8, 1}, {1000, 8, 1}, {1 << 20, 64, 1}, {1 << 10, 8, 1000},
           {0, 8, 1}, {1 << 22, 8, 1}}) {
    h.mutable_kdf()->set_n(n);
    h.mutable_kdf()->set_r(r);
    h.mutable_kdf()->set_p(pp);
    f.set_header(h.SerializeAsString());
    std::string bad = f.SerializeAsString();
    EXPECT_EQ(ErrOf([&] { ReadInfo(bad); }), EINVAL) << n << " " << r << " " << pp;
    EXPECT_EQ(ErrOf([&] { Unlock(bad, &p); }), EINVAL);
  }
  EXPECT_EQ(ErrOf([] { CheckScryptParams({1 << 17, 8, 1}); }), 0);
  EXPECT_EQ(ErrOf([] { CheckScryptParams({1 << 20, 8, 1}); }), 0);  // exactly 1 GiB
}

TEST(KeyFileTest, UnknownVersionAndGarbage) {
  KeySet keys = KeySet::Generate(5);
  proto::KeyFile f;
  ASSERT_TRUE(f.ParseFromString(Encode(keys, Purpose::kKeyFile, nullptr)));
  proto::KeyFileHeader h;
  ASSERT_TRUE(h.ParseFromString(f.header()));
  h.set_format_version(2);
  f.set_header(h.SerializeAsString());
  try {
    ReadInfo(f.SerializeAsString());
    FAIL();
  } catch (const KeyFileError& e) {
    EXPECT_THAT(e.what(), HasSubstr("version 2 is not supported"));
  }
  EXPECT_EQ(ErrOf([] { ReadInfo("this is not a key file at all"); }), EBADMSG);
  EXPECT_EQ(ErrOf([] { ReadInfo(""); }), EBADMSG);
  EXPECT_EQ(ErrOf([] { ReadInfo(std::string(kMaxFileSize + 1, 'x')); }), EBADMSG);
}

TEST(KeyFileTest, LoadChecksModeAndPurpose) {
  TempDir dir;
  KeySet keys = KeySet::Generate(5);
  WriteTextFile(dir / "k", Encode(keys, Purpose::kKeyFile, nullptr), 0600);
  EXPECT_EQ(Load(dir / "k", nullptr).store_fingerprint(), keys.store_fingerprint());
  EXPECT_FALSE(NeedsPassphrase(dir / "k"));
  chmod((dir / "k").c_str(), 0604);
  EXPECT_EQ(ErrOf([&] { Load(dir / "k", nullptr); }), EACCES);
  auto p = Pass("x");
  WriteTextFile(dir / "e", Encode(keys, Purpose::kExport, &p, kCheap), 0644);
  EXPECT_TRUE(NeedsPassphrase(dir / "e"));
  EXPECT_EQ(ErrOf([&] { Load(dir / "e", &p); }), EINVAL);
  EXPECT_EQ(ErrOf([&] { Load(dir / "missing", nullptr); }), ENOENT);
}

TEST(PassphraseTest, FromFileAndDescriptor) {
  TempDir dir;
  WriteTextFile(dir / "p", "secret words\r\nsecond line\n");
  EXPECT_EQ(passphrase::Read({dir / "p", std::nullopt}, "", false).view(), "secret words");
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(write(fds[1], "via fd", 6), 6);
  close(fds[1]);
  EXPECT_EQ(passphrase::Read({std::nullopt, fds[0]}, "", false).view(), "via fd");
  close(fds[0]);
  WriteTextFile(dir / "long", std::string(passphrase::kMaxLength + 1, 'x'));
  EXPECT_EQ(ErrOf([&] { passphrase::Read({dir / "long", std::nullopt}, "", false); }), EINVAL);
  WriteTextFile(dir / "empty", "");
  EXPECT_EQ(ErrOf([&] { passphrase::Read({dir / "empty", std::nullopt}, "", false); }), EINVAL);
  EXPECT_EQ(ErrOf([&] { passphrase::Read({dir / "p", 0}, "", false); }), EINVAL);
}

TEST(HardenProcessTest, DisablesCoreDumps) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    crypto::HardenProcess();
    struct rlimit rl;
    getrlimit(RLIMIT_CORE, &rl);
    bool ok = rl.rlim_cur == 0 && rl.rlim_max == 0 && prctl(PR_GET_DUMPABLE) == 0;
    _exit(ok ? 0 : 1);
  }
  int status;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(SecretBytesTest, LockedMoveOnlyAndWiped) {
  crypto::SecretBytes a = crypto::SecretBytes::CopyOf("abcdef");
  EXPECT_EQ(a.view(), "abcdef");
  crypto::SecretBytes b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(b.view(), "abcdef");
  b.Truncate(3);
  EXPECT_EQ(b.view(), "abc");
  EXPECT_EQ(b.data()[3], 0) << "truncated bytes are wiped";
  EXPECT_TRUE(b.Equals(crypto::SecretBytes::CopyOf("abc")));
  EXPECT_FALSE(b.Equals(crypto::SecretBytes::CopyOf("abd")));
  EXPECT_THROW(crypto::MasterKey(crypto::SecretBytes(31)), Error);
}

}  // namespace
}  // namespace coffer::keyfile
