// make_reference: writes the reference data of the current formats into a directory (see
// tests/reference/README.md). The data committed under tests/reference/vN/ was made once by this
// program (v1 by its format-1 ancestor, v2 by this one) and must never be regenerated: it is what
// every later version of coffer must still open. When a format version changes, write the new
// version's data into a new directory (vN+1/) and keep the old ones.
//
// Usage: make_reference <empty output directory>
// Output: passphrase.txt, keyfile-passphrase.key (scrypt N=2^10 so that the test stays fast),
// keyfile-plain.key (no passphrase; the same keys), objects/<name>.sealed and .plain, and
// MANIFEST (what reference_test.cc reads: epochs with their fingerprints, and the objects).
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "common/crypto.h"
#include "common/error.h"
#include "common/fd.h"
#include "common/keyfile.h"

namespace coffer {
namespace {

constexpr char kPassphrase[] = "coffer reference data, format version 2";
constexpr std::int64_t kCreated = 1700000000;  // 2023-11-14T22:13:20Z
constexpr std::int64_t kRotated = 1700086400;  // one day later

struct Object {
  const char* name;
  crypto::ObjectKind kind;
  std::uint32_t epoch;
  std::string plaintext;
  crypto::ObjectVersion version;
  std::size_t padded_size = 0;
};

std::vector<Object> Objects() {
  std::string mail =
      "Return-Path: <alice@example.org>\r\n"
      "From: Alice <alice@example.org>\r\n"
      "To: Bob <bob@example.org>\r\n"
      "Subject: reference message\r\n"
      "Message-ID: <reference-1@example.org>\r\n"
      "\r\n"
      "This message is sealed in tests/reference/v2 and must open forever.\r\n";
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  std::string large;
  for (int i = 0; i < 2000; ++i) large.push_back(static_cast<char>('a' + (i * 7) % 26));
  // Versions as cofferfs writes them: an HLC in nanoseconds since the epoch and a box id.
  const crypto::ObjectVersion v1{1700000000000000001ull, 0x0123456789abcdefull};
  const crypto::ObjectVersion v2{1700086400123456789ull, 0xfedcba9876543210ull};
  std::string tombstone_of_inode("\x08\x02", 2);  // fs::proto::Tombstone{kind: inode record}
  return {
      {"chunk-e1", crypto::ObjectKind::kChunk, 1, mail, v1, 0},
      {"chunk-e2", crypto::ObjectKind::kChunk, 2, large, v2, 4096},
      {"chunk-empty-e2", crypto::ObjectKind::kChunk, 2, "", v2, 0},
      {"inode-e1", crypto::ObjectKind::kInodeRecord, 1, binary, v1, 512},
      {"inode-e2", crypto::ObjectKind::kInodeRecord, 2, binary.substr(0, 40), v2, 0},
      {"dirent-e1", crypto::ObjectKind::kDirEntry, 1, "cur/1700000000.M1P1.box:2,S", v1, 256},
      {"dirent-e2", crypto::ObjectKind::kDirEntry, 2, "new/1700086400.M2P2.box", v2, 0},
      {"storemeta-e1", crypto::ObjectKind::kStoreMeta, 1, "store meta, epoch 1", {1, v1.box_id}, 0},
      {"storemeta-e2", crypto::ObjectKind::kStoreMeta, 2, "store meta, epoch 2", {1, v2.box_id}, 0},
      {"tombstone-e1", crypto::ObjectKind::kTombstone, 1, tombstone_of_inode, v1, 0},
      {"tombstone-e2", crypto::ObjectKind::kTombstone, 2, tombstone_of_inode, v2, 64},
  };
}

void Write(const std::string& path, std::string_view data) {
  AtomicWriteFile(path, data, 0644, /*exclusive=*/true);
}

int Main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_reference <empty output directory>\n");
    return 64;
  }
  std::string dir = argv[1];
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) ThrowErrno("mkdir " + dir);
  if (::mkdir((dir + "/objects").c_str(), 0755) != 0) ThrowErrno("mkdir " + dir + "/objects");

  keyfile::KeySet keys = keyfile::KeySet::Generate(kCreated);
  keys.Rotate(kRotated);
  crypto::SecretBytes passphrase = crypto::SecretBytes::CopyOf(kPassphrase);
  keyfile::ScryptParams cheap{std::uint64_t{1} << 10, 8, 1};
  Write(dir + "/passphrase.txt", std::string(kPassphrase) + "\n");
  Write(dir + "/keyfile-passphrase.key",
        keyfile::Encode(keys, keyfile::Purpose::kKeyFile, &passphrase, cheap));
  Write(dir + "/keyfile-plain.key", keyfile::Encode(keys, keyfile::Purpose::kKeyFile, nullptr));

  std::string manifest =
      "# coffer reference data, format version 2 (written by tests/reference/make_reference.cc).\n"
      "# epoch <number> <created_unix> <fingerprint>\n"
      "# object <name> <kind> <epoch> <object id> <hlc> <box id> <padded size>:\n"
      "#   objects/<name>.sealed opens to <name>.plain, authenticated as version (hlc, box id)\n";
  for (const keyfile::EpochInfo& e : keys.epochs()) {
    manifest += "epoch " + std::to_string(e.epoch) + " " + std::to_string(e.created_unix) + " " +
                e.fingerprint + "\n";
  }
  crypto::Keyring ring = keys.MakeKeyring();
  for (const Object& o : Objects()) {
    crypto::ObjectId id = crypto::RandomObjectId();
    std::string base = dir + "/objects/" + o.name;
    Write(base + ".plain", o.plaintext);
    Write(base + ".sealed",
          crypto::Seal(ring, o.kind, id, o.epoch, o.version, o.plaintext, o.padded_size));
    manifest += std::string("object ") + o.name + " " + std::to_string(static_cast<int>(o.kind)) +
                " " + std::to_string(o.epoch) + " " + crypto::ToHex(id) + " " +
                std::to_string(o.version.hlc) + " " + std::to_string(o.version.box_id) + " " +
                std::to_string(o.padded_size) + "\n";
  }
  Write(dir + "/MANIFEST", manifest);
  std::printf("wrote %s (store fingerprint %s)\n", dir.c_str(), keys.store_fingerprint().c_str());
  return 0;
}

}  // namespace
}  // namespace coffer

int main(int argc, char** argv) {
  try {
    return coffer::Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_reference: %s\n", e.what());
    return 73;
  }
}
