// Unit tests of the box's verifier of node replies (fs/object_verifier.h): a copy is genuine only
// if it opens with the key as exactly the version and kind the node claims, in both sealed
// object formats.
#include "fs/object_verifier.h"

#include <gtest/gtest.h>

#include "common/crypto.pb.h"
#include "fs/records.pb.h"

namespace coffer::fs {
namespace {

using replicator::Verdict;

class ObjectVerifierTest : public ::testing::Test {
 protected:
  ObjectVerifierTest() { keys_.Add(1, crypto::GenerateMasterKey()); }

  replicator::Object Claim(const std::string& sealed, replicator::Version v, bool tombstone) {
    replicator::Object o;
    o.id = id_;
    o.version = v;
    o.tombstone = tombstone;
    o.sealed = sealed;
    return o;
  }
  std::string SealV2(crypto::ObjectKind kind, replicator::Version v, const std::string& plain) {
    return crypto::Seal(keys_, kind, id_, 1, {v.hlc, v.box_id}, plain);
  }
  // Format 1 written the way boxes before format 2 wrote it (crypto.h documents the format):
  // the AAD has no version, the plaintext is not framed.
  std::string SealV1(crypto::ObjectKind kind, const std::string& plain) {
    const crypto::DerivedKeys* d = keys_.Find(1);
    const std::string base(kind == crypto::ObjectKind::kChunk ? d->data.bytes().view()
                                                               : d->record.bytes().view());
    const std::string id(reinterpret_cast<const char*>(id_.data()), id_.size());
    crypto::SecretBytes key =
        crypto::primitives::Hkdf(base, "", std::string("coffer/v1/object") + id, 32);
    std::string aad = "coffer/v1/aad";
    aad += std::string("\0\0\0\x01", 4);
    aad += static_cast<char>(kind);
    aad += id;
    aad += std::string("\0\0\0\x01", 4);
    const std::string nonce = crypto::primitives::RandomString(crypto::kNonceSize);
    coffer::proto::SealedObject msg;
    msg.set_version(1);
    msg.set_kind(static_cast<std::uint32_t>(kind));
    msg.set_epoch(1);
    msg.set_nonce(nonce);
    msg.set_ciphertext(crypto::primitives::GcmEncrypt(key.view(), nonce, aad, plain));
    return msg.SerializeAsString();
  }
  Verdict Check(const replicator::Object& o) { return VerifyObject(keys_, o); }

  crypto::Keyring keys_;
  crypto::ObjectId id_ = crypto::RandomObjectId();
  const replicator::Version v_{1765000000000000000ull, 7};
  const replicator::Version newer_{1765000001000000000ull, 7};
};

TEST_F(ObjectVerifierTest, Format2CopiesMustBeWhatTheNodeClaims) {
  const std::string record = SealV2(crypto::ObjectKind::kInodeRecord, v_, "record");
  EXPECT_EQ(Check(Claim(record, v_, false)), Verdict::kGenuine);
  // An old copy served as a newer version (rollback), or any other version.
  EXPECT_EQ(Check(Claim(record, newer_, false)), Verdict::kForged);
  EXPECT_EQ(Check(Claim(record, {v_.hlc, v_.box_id + 1}, false)), Verdict::kForged);
  // Live bytes claimed as a tombstone (a forged delete).
  EXPECT_EQ(Check(Claim(record, newer_, true)), Verdict::kForged);
  EXPECT_EQ(Check(Claim(record, v_, true)), Verdict::kForged);
  // A sealed tombstone is genuine as a tombstone at its own version only.
  proto::Tombstone t;
  t.set_kind(static_cast<std::uint32_t>(crypto::ObjectKind::kInodeRecord));
  const std::string tomb = SealV2(crypto::ObjectKind::kTombstone, newer_, t.SerializeAsString());
  EXPECT_EQ(Check(Claim(tomb, newer_, true)), Verdict::kGenuine);
  EXPECT_EQ(Check(Claim(tomb, newer_, false)), Verdict::kForged);
  EXPECT_EQ(Check(Claim(tomb, v_, true)), Verdict::kForged);
}

TEST_F(ObjectVerifierTest, UnsealedTombstonesAndDamageAuthenticateNothing) {
  EXPECT_EQ(Check(Claim("", newer_, true)), Verdict::kUnauthenticated);
  EXPECT_EQ(Check(Claim("", v_, false)), Verdict::kCorrupt);
  std::string record = SealV2(crypto::ObjectKind::kDirEntry, v_, "entry");
  record[record.size() / 2] ^= 1;
  EXPECT_EQ(Check(Claim(record, v_, false)), Verdict::kCorrupt);
  EXPECT_EQ(Check(Claim("not a sealed object", v_, false)), Verdict::kCorrupt);
  // Another store's key.
  crypto::Keyring other;
  other.Add(1, crypto::GenerateMasterKey());
  const std::string foreign = crypto::Seal(other, crypto::ObjectKind::kChunk, id_, 1,
                                           {v_.hlc, v_.box_id}, "foreign");
  EXPECT_EQ(Check(Claim(foreign, v_, false)), Verdict::kCorrupt);
}

TEST_F(ObjectVerifierTest, Format1RecordsAreCheckedAgainstTheVersionInside) {
  proto::InodeRecord inode;
  inode.set_ino(5);
  inode.mutable_version()->set_hlc(v_.hlc);
  inode.mutable_version()->set_box_id(v_.box_id);
  const std::string old_inode = SealV1(crypto::ObjectKind::kInodeRecord, inode.SerializeAsString());
  ASSERT_EQ(crypto::Inspect(old_inode)->format, crypto::kSealFormatV1);
  EXPECT_EQ(Check(Claim(old_inode, v_, false)), Verdict::kGenuine);
  EXPECT_EQ(Check(Claim(old_inode, newer_, false)), Verdict::kForged);
  EXPECT_EQ(Check(Claim(old_inode, newer_, true)), Verdict::kForged);

  proto::DirEntry entry;
  entry.set_parent(1);
  entry.set_name("new/1.M1P1.box");
  entry.set_child(5);
  entry.mutable_version()->set_hlc(v_.hlc);
  entry.mutable_version()->set_box_id(v_.box_id);
  const std::string old_entry = SealV1(crypto::ObjectKind::kDirEntry, entry.SerializeAsString());
  EXPECT_EQ(Check(Claim(old_entry, v_, false)), Verdict::kGenuine);
  EXPECT_EQ(Check(Claim(old_entry, newer_, false)), Verdict::kForged);

  // The store meta was written once, at hlc 1, by the box named inside.
  proto::StoreMeta meta;
  meta.set_format(1);
  meta.set_box_id(42);
  const std::string old_meta = SealV1(crypto::ObjectKind::kStoreMeta, meta.SerializeAsString());
  EXPECT_EQ(Check(Claim(old_meta, {1, 42}, false)), Verdict::kGenuine);
  EXPECT_EQ(Check(Claim(old_meta, {2, 42}, false)), Verdict::kForged);
  EXPECT_EQ(Check(Claim(old_meta, {1, 43}, false)), Verdict::kForged);

  // A format 1 chunk carries no version: its content is immutable under its random id.
  const std::string old_chunk = SealV1(crypto::ObjectKind::kChunk, "mail");
  EXPECT_EQ(Check(Claim(old_chunk, v_, false)), Verdict::kGenuine);
  EXPECT_EQ(Check(Claim(old_chunk, newer_, true)), Verdict::kForged);
  // Damage is damage in format 1 too.
  std::string rotten = old_inode;
  rotten.back() ^= 1;
  EXPECT_EQ(Check(Claim(rotten, v_, false)), Verdict::kCorrupt);
}

TEST_F(ObjectVerifierTest, MakeVerifierKeepsItsKeys) {
  replicator::Verifier verify;
  {
    auto keys = std::make_shared<crypto::Keyring>();
    keys->Add(1, crypto::GenerateMasterKey());
    const std::string sealed =
        crypto::Seal(*keys, crypto::ObjectKind::kChunk, id_, 1, {v_.hlc, v_.box_id}, "x");
    verify = MakeVerifier(keys);
    keys.reset();
    EXPECT_EQ(verify(Claim(sealed, v_, false)), Verdict::kGenuine);
  }
}

}  // namespace
}  // namespace coffer::fs
