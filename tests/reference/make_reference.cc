// make_reference: writes the reference data of the current formats into a directory (see
// tests/reference/README.md). The data committed under tests/reference/v1/ was made once by this
// program and must never be regenerated: it is what every later version of coffer must still
// open. When a format version changes, write the new version's data into a new directory (v2/)
// and keep v1/.
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

constexpr char kPassphrase[] = "coffer reference data, format version 1";
constexpr std::int64_t kCreated = 1700000000;  // 2023-11-14T22:13:20Z
constexpr std::int64_t kRotated = 1700086400;  // one day later

struct Object {
  const char* name;
  crypto::ObjectKind kind;
  std::uint32_t epoch;
  std::string plaintext;
};

std::vector<Object> Objects() {
  std::string mail =
      "Return-Path: <alice@example.org>\r\n"
      "From: Alice <alice@example.org>\r\n"
      "To: Bob <bob@example.org>\r\n"
      "Subject: reference message\r\n"
      "Message-ID: <reference-1@example.org>\r\n"
      "\r\n"
      "This message is sealed in tests/reference/v1 and must open forever.\r\n";
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  std::string large;
  for (int i = 0; i < 2000; ++i) large.push_back(static_cast<char>('a' + (i * 7) % 26));
  return {
      {"chunk-e1", crypto::ObjectKind::kChunk, 1, mail},
      {"chunk-e2", crypto::ObjectKind::kChunk, 2, large},
      {"chunk-empty-e2", crypto::ObjectKind::kChunk, 2, ""},
      {"inode-e1", crypto::ObjectKind::kInodeRecord, 1, binary},
      {"inode-e2", crypto::ObjectKind::kInodeRecord, 2, binary.substr(0, 40)},
      {"dirent-e1", crypto::ObjectKind::kDirEntry, 1, "cur/1700000000.M1P1.box:2,S"},
      {"dirent-e2", crypto::ObjectKind::kDirEntry, 2, "new/1700086400.M2P2.box"},
      {"storemeta-e1", crypto::ObjectKind::kStoreMeta, 1, "store meta, epoch 1"},
      {"storemeta-e2", crypto::ObjectKind::kStoreMeta, 2, "store meta, epoch 2"},
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
      "# coffer reference data, format version 1 (written by tests/reference/make_reference.cc).\n"
      "# epoch <number> <created_unix> <fingerprint>\n"
      "# object <name> <kind> <epoch> <object id>: objects/<name>.sealed opens to <name>.plain\n";
  for (const keyfile::EpochInfo& e : keys.epochs()) {
    manifest += "epoch " + std::to_string(e.epoch) + " " + std::to_string(e.created_unix) + " " +
                e.fingerprint + "\n";
  }
  crypto::Keyring ring = keys.MakeKeyring();
  for (const Object& o : Objects()) {
    crypto::ObjectId id = crypto::RandomObjectId();
    std::string base = dir + "/objects/" + o.name;
    Write(base + ".plain", o.plaintext);
    Write(base + ".sealed", crypto::Seal(ring, o.kind, id, o.epoch, o.plaintext));
    manifest += std::string("object ") + o.name + " " + std::to_string(static_cast<int>(o.kind)) +
                " " + std::to_string(o.epoch) + " " + crypto::ToHex(id) + "\n";
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
