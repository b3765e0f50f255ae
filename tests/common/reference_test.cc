// Formats are frozen by data (STYLE.md §7): tests/reference/vN/ holds a key file (with and without
// a passphrase) and sealed objects of every kind under two key epochs, written once by sealed
// object format N (tests/reference/make_reference.cc). Every later version of coffer must still
// unlock those key files and open those objects to the committed plaintexts (v2: authenticated
// as the committed versions). If this test fails, the change broke users' data: fix the code,
// never the data.
//
// The files are found through COFFER_SOURCE_ROOT (set by tests/meson.build).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/crypto.h"
#include "common/fd.h"
#include "common/keyfile.h"
#include "common/passphrase.h"

namespace coffer {
namespace {

// The identity of each reference store. Written here as well as in MANIFEST so that silently
// regenerating the data (or changing how fingerprints are derived) fails this test.
struct Reference {
  const char* dir;
  std::uint32_t format;
  const char* fingerprint;
  std::size_t objects;
  std::size_t kinds;
};
constexpr Reference kV1{"v1", 1, "c7ab-a4cc-f116-73dd-6a69-6fda-a33e-a302", 9, 4};
constexpr Reference kV2{"v2", 2, "5c54-3cf0-9c29-3d0a-be87-3b8b-d239-61a0", 11, 5};

struct EpochLine {
  std::uint32_t epoch;
  std::int64_t created_unix;
  std::string fingerprint;
};
struct ObjectLine {
  std::string name;
  std::uint32_t kind;
  std::uint32_t epoch;
  std::string id_hex;
  crypto::ObjectVersion version;  // format 2
  std::size_t padded = 0;         // format 2
};

class ReferenceTest : public ::testing::TestWithParam<Reference> {
 protected:
  void SetUp() override {
    const char* root = std::getenv("COFFER_SOURCE_ROOT");
    ASSERT_NE(root, nullptr) << "COFFER_SOURCE_ROOT is not set (run through meson test)";
    ref_ = GetParam();
    dir_ = std::string(root) + "/tests/reference/" + ref_.dir;
    std::ifstream manifest(dir_ + "/MANIFEST");
    ASSERT_TRUE(manifest) << dir_ << "/MANIFEST is missing";
    std::string line;
    while (std::getline(manifest, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream in(line);
      std::string what;
      in >> what;
      if (what == "epoch") {
        EpochLine e;
        ASSERT_TRUE(in >> e.epoch >> e.created_unix >> e.fingerprint) << line;
        epochs_.push_back(e);
      } else if (what == "object") {
        ObjectLine o;
        ASSERT_TRUE(in >> o.name >> o.kind >> o.epoch >> o.id_hex) << line;
        if (ref_.format >= 2) {
          ASSERT_TRUE(in >> o.version.hlc >> o.version.box_id >> o.padded) << line;
        }
        objects_.push_back(o);
      } else {
        FAIL() << "unknown MANIFEST line: " << line;
      }
    }
    ASSERT_EQ(epochs_.size(), 2u);
    ASSERT_EQ(objects_.size(), ref_.objects);
  }

  std::string Read(const std::string& name) const {
    return ReadFile(dir_ + "/" + name, std::size_t{1} << 20);
  }
  crypto::SecretBytes Passphrase() const {
    passphrase::Source source;
    source.file = dir_ + "/passphrase.txt";
    return passphrase::Read(source, "", false);
  }
  // Opens every reference object with `ring` and compares it with its plaintext.
  void ExpectAllObjectsOpen(const crypto::Keyring& ring) const {
    std::set<std::uint32_t> kinds_seen;
    for (const ObjectLine& o : objects_) {
      SCOPED_TRACE(o.name);
      std::optional<crypto::ObjectId> id = crypto::ObjectIdFromHex(o.id_hex);
      ASSERT_TRUE(id.has_value());
      ASSERT_TRUE(crypto::IsValidKind(o.kind));
      auto kind = static_cast<crypto::ObjectKind>(o.kind);
      std::string sealed = Read("objects/" + o.name + ".sealed");
      std::string plain = Read("objects/" + o.name + ".plain");

      std::optional<crypto::SealedInfo> info = crypto::Inspect(sealed);
      ASSERT_TRUE(info.has_value());
      EXPECT_EQ(info->format, ref_.format);
      EXPECT_EQ(info->kind, kind);
      EXPECT_EQ(info->epoch, o.epoch);
      if (ref_.format == 1) {
        EXPECT_EQ(info->payload_size, plain.size());
        EXPECT_FALSE(info->version.has_value());
      } else {
        EXPECT_EQ(info->payload_size, std::max(plain.size() + 1, o.padded));
        ASSERT_TRUE(info->version.has_value());
        EXPECT_EQ(*info->version, o.version);
      }

      std::optional<std::string> opened = crypto::Open(ring, kind, *id, sealed);
      ASSERT_TRUE(opened.has_value()) << "a reference object no longer opens";
      EXPECT_EQ(*opened, plain);
      std::optional<crypto::Opened> object = crypto::OpenObject(ring, *id, sealed);
      ASSERT_TRUE(object.has_value());
      EXPECT_EQ(object->plaintext, plain);
      EXPECT_EQ(object->format, ref_.format);
      if (ref_.format >= 2) {
        ASSERT_TRUE(object->version.has_value());
        EXPECT_EQ(*object->version, o.version);
      }

      // And the reference objects are as tamper-evident as new ones.
      crypto::ObjectId other = *id;
      other[0] ^= 1;
      EXPECT_FALSE(crypto::Open(ring, kind, other, sealed));
      std::string flipped = sealed;
      flipped.back() = static_cast<char>(flipped.back() ^ 1);
      EXPECT_FALSE(crypto::Open(ring, kind, *id, flipped));
      kinds_seen.insert(o.kind);
    }
    EXPECT_EQ(kinds_seen.size(), ref_.kinds) << "every object kind is represented";
  }
  void ExpectEpochs(const std::vector<keyfile::EpochInfo>& epochs) const {
    ASSERT_EQ(epochs.size(), epochs_.size());
    for (std::size_t i = 0; i < epochs.size(); ++i) {
      EXPECT_EQ(epochs[i].epoch, epochs_[i].epoch);
      EXPECT_EQ(epochs[i].created_unix, epochs_[i].created_unix);
      EXPECT_EQ(epochs[i].fingerprint, epochs_[i].fingerprint);
    }
  }

  Reference ref_{};
  std::string dir_;
  std::vector<EpochLine> epochs_;
  std::vector<ObjectLine> objects_;
};

TEST_P(ReferenceTest, ManifestNamesTheKnownStore) {
  EXPECT_EQ(epochs_[0].epoch, 1u);
  EXPECT_EQ(epochs_[1].epoch, 2u);
  EXPECT_EQ(epochs_[0].fingerprint, ref_.fingerprint);
}

TEST_P(ReferenceTest, PassphraseKeyFileHeaderReads) {
  keyfile::Info info = keyfile::ReadInfo(Read("keyfile-passphrase.key"));
  EXPECT_EQ(info.format_version, 1u);
  EXPECT_EQ(info.purpose, keyfile::Purpose::kKeyFile);
  EXPECT_EQ(info.created_unix, 1700000000);
  ASSERT_TRUE(info.kdf.has_value());
  EXPECT_EQ(info.kdf->n, 1024u);
  EXPECT_EQ(info.kdf->r, 8u);
  EXPECT_EQ(info.kdf->p, 1u);
  EXPECT_EQ(info.current_epoch, 2u);
  EXPECT_EQ(info.store_fingerprint(), ref_.fingerprint);
  ExpectEpochs(info.epochs);
}

TEST_P(ReferenceTest, PassphraseKeyFileUnlocksAndOpensEveryObject) {
  crypto::SecretBytes passphrase = Passphrase();
  keyfile::KeySet keys = keyfile::Unlock(Read("keyfile-passphrase.key"), &passphrase);
  EXPECT_EQ(keys.store_fingerprint(), ref_.fingerprint);
  EXPECT_EQ(keys.current_epoch(), 2u);
  EXPECT_EQ(keys.created_unix(), 1700000000);
  ExpectEpochs(keys.epochs());
  crypto::Keyring ring = keys.MakeKeyring();
  EXPECT_EQ(ring.current_epoch(), 2u);
  ExpectAllObjectsOpen(ring);
}

TEST_P(ReferenceTest, PlainKeyFileUnlocksAndOpensEveryObject) {
  std::string bytes = Read("keyfile-plain.key");
  keyfile::Info info = keyfile::ReadInfo(bytes);
  EXPECT_EQ(info.format_version, 1u);
  EXPECT_FALSE(info.kdf.has_value());
  ExpectEpochs(info.epochs);
  // keyfile::Load would refuse this file: git does not keep its 0600 mode. Unlock is what Load
  // calls once the mode is checked.
  keyfile::KeySet keys = keyfile::Unlock(bytes, nullptr);
  EXPECT_EQ(keys.store_fingerprint(), ref_.fingerprint);
  ExpectEpochs(keys.epochs());
  ExpectAllObjectsOpen(keys.MakeKeyring());
}

TEST_P(ReferenceTest, WrongPassphraseIsRefused) {
  crypto::SecretBytes wrong = crypto::SecretBytes::CopyOf("not the reference passphrase");
  try {
    keyfile::Unlock(Read("keyfile-passphrase.key"), &wrong);
    ADD_FAILURE() << "unlocked with a wrong passphrase";
  } catch (const keyfile::KeyFileError& e) {
    EXPECT_EQ(e.err(), EACCES);
  }
  try {
    keyfile::Unlock(Read("keyfile-passphrase.key"), nullptr);
    ADD_FAILURE() << "unlocked without a passphrase";
  } catch (const keyfile::KeyFileError& e) {
    EXPECT_EQ(e.err(), ENOKEY);
  }
}

INSTANTIATE_TEST_SUITE_P(EveryFormat, ReferenceTest, ::testing::Values(kV1, kV2),
                         [](const ::testing::TestParamInfo<Reference>& info) {
                           return std::string(info.param.dir);
                         });

}  // namespace
}  // namespace coffer
