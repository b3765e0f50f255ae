// libFuzzer target for the key file reader: ReadInfo() and Unlock() parse a file a user may have
// damaged or an attacker may have written. Whatever the bytes, they must either succeed or throw
// coffer::Error (KeyFileError for bad files) — no crash, no other exception, no huge allocation.
// A key file that unlocks must survive a re-encode (without passphrase) and unlock to the same
// epochs.
//
// The passphrase is the reference one (tests/reference/v1/passphrase.txt) so that the seed corpus
// made from the reference key files (scripts/fuzz.sh) reaches the unlocked path.
//
// CheckScryptParams bounds scrypt to 1 GiB, which is right for a real key file but would make a
// fuzzer spend seconds per input on costly parameters; this target (only) skips Unlock with a
// passphrase when N * r * p exceeds the reference file's 2^10 * 8 * 1. Such inputs still go
// through ReadInfo and the no-passphrase path (which refuses them before running scrypt).
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/crypto.h"
#include "common/error.h"
#include "common/keyfile.h"

namespace {

constexpr char kPassphrase[] = "coffer reference data, format version 1";
constexpr std::uint64_t kMaxScryptWork = std::uint64_t{1} << 13;  // N * r * p

const coffer::crypto::SecretBytes* passphrase = nullptr;

void CheckSame(const coffer::keyfile::KeySet& a, const coffer::keyfile::KeySet& b) {
  if (a.epochs().size() != b.epochs().size() || a.current_epoch() != b.current_epoch() ||
      a.created_unix() != b.created_unix()) {
    __builtin_trap();
  }
  for (std::size_t i = 0; i < a.epochs().size(); ++i) {
    if (a.epochs()[i].epoch != b.epochs()[i].epoch ||
        a.epochs()[i].fingerprint != b.epochs()[i].fingerprint) {
      __builtin_trap();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // malformed input is the point; keep the log quiet
  passphrase = new coffer::crypto::SecretBytes(coffer::crypto::SecretBytes::CopyOf(kPassphrase));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace keyfile = coffer::keyfile;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  keyfile::Info info;
  try {
    info = keyfile::ReadInfo(input);
  } catch (const coffer::Error&) {
    return 0;
  }
  if (info.epochs.empty() || info.store_fingerprint() != info.epochs.front().fingerprint) {
    __builtin_trap();
  }
  // Without a passphrase: cheap for every input (a wrapped file is refused before scrypt).
  try {
    keyfile::KeySet keys = keyfile::Unlock(input, nullptr);
    if (info.kdf) __builtin_trap();  // a passphrase-protected file opened without one
    keyfile::KeySet again =
        keyfile::Unlock(keyfile::Encode(keys, keyfile::Purpose::kKeyFile, nullptr), nullptr);
    CheckSame(keys, again);
  } catch (const coffer::Error&) {
  }
  if (!info.kdf || info.kdf->n * info.kdf->r * info.kdf->p > kMaxScryptWork) return 0;
  try {
    keyfile::KeySet keys = keyfile::Unlock(input, passphrase);
    keyfile::KeySet again =
        keyfile::Unlock(keyfile::Encode(keys, keyfile::Purpose::kKeyFile, nullptr), nullptr);
    CheckSame(keys, again);
    if (keys.MakeKeyring().current_epoch() != info.current_epoch) __builtin_trap();
  } catch (const coffer::Error&) {
  }
  return 0;
}
