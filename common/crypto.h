// The crypto core of coffer: key types, key derivation, and the sealed object format.
//
// This header and common/crypto*.cc are the only place that touches key bytes, and the .cc files
// the only ones that include Crypto++ (STYLE.md §6). Key bytes live in SecretBytes: memory from
// libsodium's sodium_malloc (mlock'ed, guard pages, wiped on free). Keys are distinct types so
// that a record key can never be passed where a data key is expected, and none of them can be
// printed or logged (no formatter exists).
//
// Sealed objects are SealedObject protocol buffers (common/crypto.proto) in one canonical
// encoding (protobuf's own field order): the format version, the object kind, the key epoch, a
// random 96-bit nonce, the AES-256-GCM ciphertext with its 128-bit tag and (format 2) the object
// version. The
// per-object key is HKDF-SHA256(kind's key, salt = "", info = "coffer/v1/object" || object id)
// in both formats.
//
// Format 1 (frozen by tests/reference/v1, still read, no longer written): the AAD binds
// "coffer/v1/aad", the format version, the kind, the object id and the epoch, so a node cannot
// swap objects, replay one under another id or kind, change its epoch or truncate it.
//
// Format 2 (written now; tests/reference/v2): the AAD also binds the object's version (HLC and
// writing box), which the header carries in clear. A storage node can therefore not serve an old
// copy as a newer version, nor make up a version: the version a box believes is the version a
// box with the key wrote. Deletes are sealed objects too (kind kTombstone), so a node cannot forge
// one. The plaintext is framed as payload || 0x80 || 0x00..., padded inside the AEAD to the size
// the caller asks for, so a node cannot strip or alter the padding.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace coffer::crypto {

inline constexpr std::size_t kKeySize = 32;
inline constexpr std::size_t kNonceSize = 12;
inline constexpr std::size_t kTagSize = 16;
inline constexpr std::size_t kObjectIdSize = 16;
inline constexpr std::uint32_t kSealFormatV1 = 1;
inline constexpr std::uint32_t kSealFormatVersion = 2;  // the format Seal() writes
// Upper bound on one sealed object (plaintext + overhead) that Open() will look at.
inline constexpr std::size_t kMaxSealedSize = std::size_t{64} << 20;

// Initialises libsodium and makes the process safe to hold keys: no core dumps
// (RLIMIT_CORE = 0, PR_SET_DUMPABLE = 0). Call once at the start of main() of every program that
// loads a key. Throws coffer::Error if the process cannot be hardened.
void HardenProcess();

// A buffer of secret bytes in locked memory, wiped when freed. Move-only. Size fixed at creation.
class SecretBytes {
 public:
  SecretBytes() noexcept = default;
  explicit SecretBytes(std::size_t size);  // zero-filled
  // Copies `bytes` into locked memory (for test vectors and for data that arrives from a file).
  static SecretBytes CopyOf(std::string_view bytes);
  SecretBytes(SecretBytes&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  SecretBytes& operator=(SecretBytes&& o) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes();

  SecretBytes Clone() const;
  unsigned char* data() noexcept { return data_; }
  const unsigned char* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::string_view view() const noexcept {
    return {reinterpret_cast<const char*>(data_), size_};
  }
  // Shrinks the logical size (the extra bytes are wiped). For buffers read up to a maximum.
  void Truncate(std::size_t size) noexcept;
  // Constant-time comparison.
  bool Equals(const SecretBytes& other) const noexcept;

 private:
  unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
};

// A 256-bit key of a given role. The tag type makes roles distinct at compile time.
template <class Tag>
class Key {
 public:
  Key() = default;
  explicit Key(SecretBytes bytes);  // throws coffer::Error(EINVAL) unless 32 bytes
  const SecretBytes& bytes() const noexcept { return bytes_; }
  Key Clone() const { return Key(bytes_.Clone()); }
  bool Valid() const noexcept { return bytes_.size() == kKeySize; }

 private:
  SecretBytes bytes_;
};

struct MasterTag {};
struct DataTag {};
struct RecordTag {};
struct NameTag {};
struct FingerprintTag {};
using MasterKey = Key<MasterTag>;             // the root secret of one key epoch
using DataKey = Key<DataTag>;                 // seals file content (chunks)
using RecordKey = Key<RecordTag>;             // seals inode records and other metadata
using NameKey = Key<NameTag>;                 // keyed hashing of names, for index lookups
using FingerprintKey = Key<FingerprintTag>;   // only ever hashed into a public fingerprint

// A fresh random master key.
MasterKey GenerateMasterKey();

// The keys derived from one master key by HKDF-SHA256 with distinct info strings
// ("coffer/v1/data", "coffer/v1/record", "coffer/v1/name", "coffer/v1/fingerprint").
struct DerivedKeys {
  DataKey data;
  RecordKey record;
  NameKey name;
  FingerprintKey fingerprint;
};
DerivedKeys DeriveKeys(const MasterKey& master);

// Public fingerprint of a master key: 128 bits of SHA-256(fingerprint key), as 8 groups of 4
// lowercase hex digits joined by '-'. Safe to show and log; reveals nothing about the key.
std::string Fingerprint(const MasterKey& master);

// What an object is. The kind selects the key (chunks: data key; everything else: record key)
// and is bound into the AAD. Values are part of the format: never renumber.
enum class ObjectKind : std::uint8_t {
  kChunk = 1,
  kInodeRecord = 2,
  kDirEntry = 3,
  kStoreMeta = 4,
  kTombstone = 5,  // a delete (format 2 and later), sealed with the record key
  kBoxRecord = 6,  // an access box's registration and heartbeat
};
bool IsValidKind(std::uint32_t kind) noexcept;

using ObjectId = std::array<std::uint8_t, kObjectIdSize>;
ObjectId RandomObjectId();
// The id's 16 bytes (as keys and on the wire), and back: nullopt unless exactly 16 bytes.
inline std::string_view IdBytes(const ObjectId& id) {
  return {reinterpret_cast<const char*>(id.data()), id.size()};
}
std::optional<ObjectId> IdFromBytes(std::string_view bytes);
std::string ToHex(std::string_view bytes);
std::string ToHex(const ObjectId& id);
// nullopt unless `hex` is exactly 2 * kObjectIdSize hex digits.
std::optional<ObjectId> ObjectIdFromHex(std::string_view hex);

// The version of an object (DESIGN.md "Versions"): hybrid logical clock, then the id of the box
// that wrote it, ordered lexicographically. Format 2 binds it into the AAD.
struct ObjectVersion {
  std::uint64_t hlc = 0;
  std::uint64_t box_id = 0;
  friend auto operator<=>(const ObjectVersion&, const ObjectVersion&) = default;
};

// HMAC-SHA256 under the name key over data || more: keyed ids of names and records, so that the
// fs core never holds the name key's bytes. 32 bytes.
std::string KeyedHash(const NameKey& key, std::string_view data, std::string_view more = {});

// The unlocked keys of every epoch of a key file. Thread-compatible: fill it once at start-up,
// then share it const between threads (Seal/Open only read it).
class Keyring {
 public:
  // Adds an epoch (derives and keeps its keys; the master key itself is not kept).
  // Throws coffer::Error(EEXIST) if the epoch is already present.
  void Add(std::uint32_t epoch, const MasterKey& master);
  bool Has(std::uint32_t epoch) const { return epochs_.count(epoch) != 0; }
  bool empty() const { return epochs_.empty(); }
  // The newest epoch: new objects are sealed under it. Throws if empty.
  std::uint32_t current_epoch() const;
  // Derived keys of `epoch`, or nullptr.
  const DerivedKeys* Find(std::uint32_t epoch) const;

 private:
  std::map<std::uint32_t, DerivedKeys> epochs_;
};

// Seals `plaintext` as object `id` of `kind` at `version` under `epoch` (which must be in `keys`)
// with a fresh random nonce, in format 2. The framed plaintext is padded with zeros to
// `padded_size` bytes when that is larger than payload + 1 (0: no padding beyond the one
// framing byte). Thread-safe for a const Keyring. Throws coffer::Error: EINVAL for an unknown
// epoch or kind, EFBIG for a plaintext that would not fit in kMaxSealedSize.
std::string Seal(const Keyring& keys, ObjectKind kind, const ObjectId& id, std::uint32_t epoch,
                 const ObjectVersion& version, std::string_view plaintext,
                 std::size_t padded_size = 0);

// What an authenticated object says about itself.
struct Opened {
  std::string plaintext;                 // without the padding
  std::uint32_t format = 0;              // kSealFormatV1 or kSealFormatVersion
  ObjectKind kind = ObjectKind::kChunk;
  std::uint32_t epoch = 0;
  std::optional<ObjectVersion> version;  // authenticated; format 1 objects carry none
};

// Opens a sealed object that claims to be object `id` (any kind, any supported format). Returns
// nullopt if anything is wrong: unknown format version, malformed or non-canonical encoding (only
// the exact bytes Seal writes are accepted: no appended, repeated or reordered fields), wrong id,
// kind, epoch or version, unknown epoch, truncation, bad padding, or any modified byte. Never
// throws for bad input.
std::optional<Opened> OpenObject(const Keyring& keys, const ObjectId& id,
                                 std::string_view sealed);

// The same for an object that must be of `kind`; returns the plaintext only.
std::optional<std::string> Open(const Keyring& keys, ObjectKind kind, const ObjectId& id,
                                std::string_view sealed);

// What can be read from a sealed object without a key (for scrub, eviction and re-sealing on
// rotation). Nothing here is authenticated until the object was opened.
struct SealedInfo {
  std::uint32_t format;
  ObjectKind kind;
  std::uint32_t epoch;
  std::size_t payload_size;              // ciphertext minus tag: padded plaintext (format 2)
  std::optional<ObjectVersion> version;  // format 2 only
};
std::optional<SealedInfo> Inspect(std::string_view sealed);

// ---- Primitives. Used by the key file code, tests (NIST/RFC vectors) and benchmarks. ----
namespace primitives {

void RandomBytes(unsigned char* out, std::size_t size);
std::string RandomString(std::size_t size);

// HKDF-SHA256 (RFC 5869). Output in locked memory.
SecretBytes Hkdf(std::string_view ikm, std::string_view salt, std::string_view info,
                 std::size_t length);

// scrypt (RFC 7914). Throws coffer::Error(EINVAL) for parameters scrypt rejects.
SecretBytes Scrypt(std::string_view passphrase, std::string_view salt, std::uint64_t n,
                   std::uint32_t r, std::uint32_t p, std::size_t length);

std::string Sha256(std::string_view data);
// HMAC-SHA256 over the concatenation data || more (no temporary copy of either).
std::string HmacSha256(std::string_view key, std::string_view data, std::string_view more = {});

// AES-256-GCM with a 96-bit nonce and a 128-bit tag; output is ciphertext || tag.
std::string GcmEncrypt(std::string_view key, std::string_view nonce, std::string_view aad,
                       std::string_view plaintext);
// nullopt when the tag does not verify (or sizes are wrong).
std::optional<std::string> GcmDecrypt(std::string_view key, std::string_view nonce,
                                      std::string_view aad, std::string_view ciphertext_and_tag);
// The same, decrypting into locked memory (for wrapped keys).
std::optional<SecretBytes> GcmDecryptSecret(std::string_view key, std::string_view nonce,
                                            std::string_view aad,
                                            std::string_view ciphertext_and_tag);

bool ConstantTimeEqual(std::string_view a, std::string_view b) noexcept;

}  // namespace primitives

}  // namespace coffer::crypto
