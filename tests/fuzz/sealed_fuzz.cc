// libFuzzer target for the sealed object reader: Inspect() and Open() see bytes from storage
// nodes, which we do not trust. Whatever the bytes, they must return a value (never crash, never
// throw, never read out of bounds), and Open() may only succeed on an object Inspect() agrees
// about.
//
// Input: 16 bytes of object id, then the sealed object. The keyring is the one of a reference
// store (tests/reference/v2/keyfile-plain.key via COFFER_SOURCE_ROOT, or COFFER_FUZZ_KEYFILE) so
// that the seed corpus made from the reference objects (scripts/fuzz.sh) starts on the success
// path; without it, two fixed epochs.
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "common/crypto.h"
#include "common/error.h"
#include "common/fd.h"
#include "common/keyfile.h"

namespace {

using namespace coffer::crypto;  // NOLINT(google-build-using-namespace): a fuzz target

const Keyring* ring = nullptr;

Keyring MakeRing() {
  if (const char* root = std::getenv("COFFER_SOURCE_ROOT")) {
    try {
      const char* file = std::getenv("COFFER_FUZZ_KEYFILE");
      std::string bytes = coffer::ReadFile(
          file ? std::string(file) : std::string(root) + "/tests/reference/v2/keyfile-plain.key",
          coffer::keyfile::kMaxFileSize);
      return coffer::keyfile::Unlock(bytes, nullptr).MakeKeyring();
    } catch (const coffer::Error&) {
      // Fall through to fixed keys.
    }
  }
  Keyring fixed;
  for (std::uint32_t epoch : {1u, 2u}) {
    std::string bytes(kKeySize, static_cast<char>(epoch));
    fixed.Add(epoch, MasterKey(SecretBytes::CopyOf(bytes)));
  }
  return fixed;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // malformed input is the point; keep the log quiet
  ring = new Keyring(MakeRing());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::optional<SealedInfo> whole = Inspect(input);
  if (whole && !IsValidKind(static_cast<std::uint32_t>(whole->kind))) __builtin_trap();
  if (size < kObjectIdSize) return 0;

  ObjectId id;
  std::memcpy(id.data(), data, kObjectIdSize);
  std::string_view sealed = input.substr(kObjectIdSize);
  std::optional<SealedInfo> info = Inspect(sealed);
  for (ObjectKind kind : {ObjectKind::kChunk, ObjectKind::kInodeRecord, ObjectKind::kDirEntry,
                          ObjectKind::kStoreMeta, ObjectKind::kTombstone}) {
    std::optional<std::string> plain = Open(*ring, kind, id, sealed);
    if (!plain) continue;
    // Success only for a well-formed object of that kind, of a size that fits what Inspect()
    // reports (format 2 pads), carrying a version exactly when it is format 2, whose re-sealed
    // form opens to the same bytes and version.
    std::optional<Opened> opened = OpenObject(*ring, id, sealed);
    if (!info || info->kind != kind || !ring->Has(info->epoch) || !opened ||
        opened->plaintext != *plain || opened->version != info->version ||
        (info->format == kSealFormatV1 && info->payload_size != plain->size()) ||
        (info->format == kSealFormatVersion && info->payload_size < plain->size() + 1) ||
        (info->format != kSealFormatV1 && info->format != kSealFormatVersion)) {
      __builtin_trap();
    }
    const ObjectVersion version = info->version.value_or(ObjectVersion{1, 1});
    std::string again = Seal(*ring, kind, id, info->epoch, version, *plain, info->payload_size);
    std::optional<Opened> reopened = OpenObject(*ring, id, again);
    if (!reopened || reopened->plaintext != *plain || *reopened->version != version)
      __builtin_trap();
  }
  return 0;
}
