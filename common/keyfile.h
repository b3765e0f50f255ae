// Key files: the on-disk form of a box's master keys (one per key epoch), versioned and
// authenticated, optionally wrapped under a passphrase with scrypt. Used by coffer-keytool and by
// every program that loads the key (cofferfs, cofferctl).
//
// Format (common/crypto.proto, KeyFile): an authenticated header that anyone can read
// (format version, creation time, KDF parameters, the epochs with their public fingerprints)
// and the master keys, either sealed with AES-256-GCM under scrypt(passphrase) with the header
// as AAD, or stored plainly with an HMAC over header and keys (then the file must be 0600).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.h"
#include "common/error.h"

namespace coffer::keyfile {

inline constexpr std::uint32_t kFormatVersion = 1;
inline constexpr std::string_view kMagic = "coffer-keyfile";
// Key files are tiny; anything bigger is not one and is refused before parsing.
inline constexpr std::size_t kMaxFileSize = 64 << 10;
inline constexpr std::uint32_t kMaxEpochs = 1000;

// A key file that is malformed, truncated, tampered with, of an unknown version, or that does not
// open with the passphrase given. err() is EBADMSG for damaged files, EACCES for a wrong
// passphrase or loose permissions, EINVAL for implausible parameters.
class KeyFileError : public Error {
 public:
  KeyFileError(int err, std::string what) : Error(err, std::move(what)) {}
};

struct ScryptParams {
  std::uint64_t n = std::uint64_t{1} << 17;  // see DefaultScryptParams()
  std::uint32_t r = 8;
  std::uint32_t p = 1;
};
// scrypt cost of new key files. N = 2^17, r = 8, p = 1 (128 MiB, about a second on the 2-core
// machines we measured; see coffer-keytool(1)).
ScryptParams DefaultScryptParams();
// Refuses parameters that would make unlocking cost absurd memory or time (a hostile file must not
// make us allocate gigabytes): 2^10 <= N <= 2^22, N a power of two, 1 <= r <= 32, 1 <= p <= 16,
// 128 * r * N <= 1 GiB.
void CheckScryptParams(const ScryptParams& params);

enum class Purpose { kKeyFile, kExport };

struct EpochInfo {
  std::uint32_t epoch = 0;
  std::int64_t created_unix = 0;
  std::string fingerprint;
};

// What a key file says about itself without being unlocked (authenticated only once unlocked).
struct Info {
  std::uint32_t format_version = 0;
  Purpose purpose = Purpose::kKeyFile;
  std::int64_t created_unix = 0;
  std::optional<ScryptParams> kdf;  // nullopt: not passphrase-protected
  std::vector<EpochInfo> epochs;
  std::uint32_t current_epoch = 0;
  // The fingerprint of the first epoch: the identity of the mailstore, equal on every box that
  // shares the key.
  const std::string& store_fingerprint() const;
};

// The unlocked master keys of a key file, one per epoch, oldest first.
class KeySet {
 public:
  // A new key set with one fresh random epoch 1.
  static KeySet Generate(std::int64_t now_unix);

  // Adds a new epoch (number = last + 1) with a fresh random key; returns its number.
  std::uint32_t Rotate(std::int64_t now_unix);

  const std::vector<EpochInfo>& epochs() const { return epochs_; }
  std::uint32_t current_epoch() const { return epochs_.back().epoch; }
  std::int64_t created_unix() const { return created_unix_; }
  const std::string& store_fingerprint() const { return epochs_.front().fingerprint; }
  // A keyring with every epoch, for Seal/Open.
  crypto::Keyring MakeKeyring() const;

 private:
  friend KeySet Unlock(std::string_view, const crypto::SecretBytes*);
  friend std::string Encode(const KeySet&, Purpose, const crypto::SecretBytes*,
                            const ScryptParams&);
  std::int64_t created_unix_ = 0;
  std::vector<EpochInfo> epochs_;
  std::vector<crypto::MasterKey> keys_;  // parallel to epochs_
};

// Parses the public header. Throws KeyFileError for anything that is not a well-formed key file of
// a known version.
Info ReadInfo(std::string_view file_bytes);

// Decodes and authenticates a key file. `passphrase` must be given iff the file has one.
// Throws KeyFileError: EACCES "wrong passphrase or damaged key file", EBADMSG for structural
// damage or a failed MAC, EINVAL for implausible parameters, ENOKEY when a passphrase is needed
// but none was given.
KeySet Unlock(std::string_view file_bytes, const crypto::SecretBytes* passphrase);

// Encodes `keys` as a key file. With `passphrase`, wraps the keys under scrypt(passphrase, fresh
// salt, `params`); without, stores them with a MAC (the caller must write the file 0600).
std::string Encode(const KeySet& keys, Purpose purpose, const crypto::SecretBytes* passphrase,
                   const ScryptParams& params = DefaultScryptParams());

// Loads and unlocks a key file from disk for use by a program (cofferfs, cofferctl). A file
// without a passphrase is refused (EACCES) unless its mode gives nothing to group and others.
// Throws KeyFileError or coffer::Error naming `path`.
KeySet Load(const std::string& path, const crypto::SecretBytes* passphrase);

// Whether the file at `path` needs a passphrase (reads only the header).
bool NeedsPassphrase(const std::string& path);

}  // namespace coffer::keyfile
