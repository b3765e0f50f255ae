// See crypto.h. The only translation unit that includes Crypto++.
#include "common/crypto.h"

#include <sodium.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <mutex>

#include <crypto++/aes.h>
#include <crypto++/filters.h>
#include <crypto++/gcm.h>
#include <crypto++/hkdf.h>
#include <crypto++/hmac.h>
#include <crypto++/misc.h>
#include <crypto++/scrypt.h>
#include <crypto++/sha.h>

#include "common/error.h"
#include "common/crypto.pb.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

namespace coffer::crypto {
namespace {

const CryptoPP::byte* B(std::string_view s) {
  return reinterpret_cast<const CryptoPP::byte*>(s.data());
}

void EnsureSodium() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) throw Error(EIO, "libsodium failed to initialise");
  });
}

constexpr std::string_view kObjectInfo = "coffer/v1/object";
constexpr std::string_view kAadLabelV1 = "coffer/v1/aad";
constexpr std::string_view kAadLabelV2 = "coffer/v2/aad";

// Format 1: AAD = label || format (4, big-endian) || kind (1) || id (16) || epoch (4).
// Format 2: AAD = label || format (4) || kind (1) || id (16) || epoch (4) || hlc (8) || box (8).
// A MAC input, not a stored format: it only has to be unambiguous, which fixed sizes make it.
std::string MakeAad(std::uint32_t format, ObjectKind kind, const ObjectId& id,
                    std::uint32_t epoch, const ObjectVersion& version) {
  std::string aad(format == kSealFormatV1 ? kAadLabelV1 : kAadLabelV2);
  auto put = [&aad](std::uint64_t v, int bytes) {
    for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8)
      aad.push_back(static_cast<char>(v >> shift));
  };
  put(format, 4);
  aad.push_back(static_cast<char>(kind));
  aad.append(reinterpret_cast<const char*>(id.data()), id.size());
  put(epoch, 4);
  if (format != kSealFormatV1) {
    put(version.hlc, 8);
    put(version.box_id, 8);
  }
  return aad;
}

constexpr unsigned char kPadMarker = 0x80;

// The per-object key lives in a per-thread buffer of locked memory for the duration of one
// Seal/Open and is wiped right after. Allocating locked memory per call (sodium_malloc: mmap,
// mlock, guard pages) cost ~23 us against ~3 us for a whole 4 KiB GCM operation (measured with
// tests/bench/crypto_bench), so the buffer is allocated once per thread instead.
class ObjectKeyScope {
 public:
  ObjectKeyScope(const DerivedKeys& keys, ObjectKind kind, const ObjectId& id) {
    thread_local SecretBytes scratch(kKeySize);
    key_ = &scratch;
    const SecretBytes& base =
        kind == ObjectKind::kChunk ? keys.data.bytes() : keys.record.bytes();
    unsigned char info[kObjectInfo.size() + kObjectIdSize];
    std::memcpy(info, kObjectInfo.data(), kObjectInfo.size());
    std::memcpy(info + kObjectInfo.size(), id.data(), id.size());
    CryptoPP::HKDF<CryptoPP::SHA256>().DeriveKey(scratch.data(), kKeySize, base.data(),
                                                 base.size(), nullptr, 0, info, sizeof info);
  }
  ~ObjectKeyScope() { sodium_memzero(key_->data(), key_->size()); }
  ObjectKeyScope(const ObjectKeyScope&) = delete;
  ObjectKeyScope& operator=(const ObjectKeyScope&) = delete;
  std::string_view view() const { return key_->view(); }

 private:
  SecretBytes* key_;
};

// The bytes of a sealed object around the ciphertext, in protobuf's own field order: fields 1-4
// and the tag and length of field 5 before it, fields 6-7 (format 2) after it. Seal writes
// exactly prefix, ciphertext, suffix, so the object is the SealedObject that any protobuf
// implementation serializes, built without copying the ciphertext; Open accepts only this
// canonical encoding (see ParseSealed).
struct Frame {
  std::string prefix, suffix;
};
Frame SealedFrame(std::uint32_t format, std::uint32_t kind, std::uint32_t epoch,
                  std::string_view nonce, const ObjectVersion& version,
                  std::size_t ciphertext_size) {
  proto::SealedObject head;
  head.set_version(format);
  head.set_kind(kind);
  head.set_epoch(epoch);
  head.set_nonce(std::string(nonce));
  Frame f;
  f.prefix = head.SerializeAsString();
  using google::protobuf::internal::WireFormatLite;
  std::uint8_t frame[16];
  std::uint8_t* end = WireFormatLite::WriteTagToArray(
      proto::SealedObject::kCiphertextFieldNumber, WireFormatLite::WIRETYPE_LENGTH_DELIMITED,
      frame);
  end = google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(ciphertext_size, end);
  f.prefix.append(reinterpret_cast<const char*>(frame), static_cast<std::size_t>(end - frame));
  if (format != kSealFormatV1) {
    proto::SealedObject tail;
    tail.set_hlc(version.hlc);
    tail.set_box_id(version.box_id);
    f.suffix = tail.SerializeAsString();
  }
  return f;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
void HardenProcess() {
  EnsureSodium();
  struct rlimit no_core = {0, 0};
  if (setrlimit(RLIMIT_CORE, &no_core) != 0) ThrowErrno("setrlimit(RLIMIT_CORE)");
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) ThrowErrno("prctl(PR_SET_DUMPABLE)");
}

SecretBytes::SecretBytes(std::size_t size) : size_(size) {
  EnsureSodium();
  // sodium_malloc(0) is valid but returns a pointer we must still free; keep it uniform.
  data_ = static_cast<unsigned char*>(sodium_malloc(size == 0 ? 1 : size));
  if (data_ == nullptr) throw Error(ENOMEM, "cannot allocate locked memory for a secret");
  sodium_memzero(data_, size == 0 ? 1 : size);
}

SecretBytes SecretBytes::CopyOf(std::string_view bytes) {
  SecretBytes out(bytes.size());
  if (!bytes.empty()) std::memcpy(out.data_, bytes.data(), bytes.size());
  return out;
}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
  if (this != &o) {
    if (data_) sodium_free(data_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

SecretBytes::~SecretBytes() {
  if (data_) sodium_free(data_);  // wipes before freeing
}

SecretBytes SecretBytes::Clone() const { return CopyOf(view()); }

void SecretBytes::Truncate(std::size_t size) noexcept {
  if (size >= size_) return;
  sodium_memzero(data_ + size, size_ - size);
  size_ = size;
}

bool SecretBytes::Equals(const SecretBytes& other) const noexcept {
  return primitives::ConstantTimeEqual(view(), other.view());
}

template <class Tag>
Key<Tag>::Key(SecretBytes bytes) : bytes_(std::move(bytes)) {
  if (bytes_.size() != kKeySize) throw Error(EINVAL, "a key must be 32 bytes");
}
template class Key<MasterTag>;
template class Key<DataTag>;
template class Key<RecordTag>;
template class Key<NameTag>;
template class Key<FingerprintTag>;

MasterKey GenerateMasterKey() {
  SecretBytes bytes(kKeySize);
  primitives::RandomBytes(bytes.data(), bytes.size());
  return MasterKey(std::move(bytes));
}

DerivedKeys DeriveKeys(const MasterKey& master) {
  auto derive = [&](std::string_view info) {
    return primitives::Hkdf(master.bytes().view(), {}, info, kKeySize);
  };
  return DerivedKeys{DataKey(derive("coffer/v1/data")), RecordKey(derive("coffer/v1/record")),
                     NameKey(derive("coffer/v1/name")),
                     FingerprintKey(derive("coffer/v1/fingerprint"))};
}

std::string Fingerprint(const MasterKey& master) {
  DerivedKeys keys = DeriveKeys(master);
  std::string hex = ToHex(primitives::Sha256(keys.fingerprint.bytes().view()).substr(0, 16));
  std::string out;
  for (std::size_t i = 0; i < hex.size(); i += 4) {
    if (i) out.push_back('-');
    out.append(hex, i, 4);
  }
  return out;
}

bool IsValidKind(std::uint32_t kind) noexcept {
  return kind >= static_cast<std::uint32_t>(ObjectKind::kChunk) &&
         kind <= static_cast<std::uint32_t>(ObjectKind::kBoxRecord);
}

ObjectId RandomObjectId() {
  ObjectId id;
  primitives::RandomBytes(id.data(), id.size());
  return id;
}

std::optional<ObjectId> IdFromBytes(std::string_view bytes) {
  if (bytes.size() != kObjectIdSize) return std::nullopt;
  ObjectId id;
  std::memcpy(id.data(), bytes.data(), id.size());
  return id;
}

std::string KeyedHash(const NameKey& key, std::string_view data, std::string_view more) {
  return primitives::HmacSha256(key.bytes().view(), data, more);
}

std::string ToHex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::string ToHex(const ObjectId& id) {
  return ToHex(std::string_view(reinterpret_cast<const char*>(id.data()), id.size()));
}

std::optional<ObjectId> ObjectIdFromHex(std::string_view hex) {
  if (hex.size() != 2 * kObjectIdSize) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  ObjectId id;
  for (std::size_t i = 0; i < kObjectIdSize; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return id;
}

// ---------------------------------------------------------------------------------------------
void Keyring::Add(std::uint32_t epoch, const MasterKey& master) {
  if (epochs_.count(epoch)) throw Error(EEXIST, "key epoch " + std::to_string(epoch) + " twice");
  epochs_.emplace(epoch, DeriveKeys(master));
}

std::uint32_t Keyring::current_epoch() const {
  if (epochs_.empty()) throw Error(EINVAL, "no key loaded");
  return epochs_.rbegin()->first;
}

const DerivedKeys* Keyring::Find(std::uint32_t epoch) const {
  auto it = epochs_.find(epoch);
  return it == epochs_.end() ? nullptr : &it->second;
}

std::string Seal(const Keyring& keys, ObjectKind kind, const ObjectId& id, std::uint32_t epoch,
                 const ObjectVersion& version, std::string_view plaintext,
                 std::size_t padded_size) {
  const DerivedKeys* derived = keys.Find(epoch);
  if (!derived) throw Error(EINVAL, "cannot seal under unknown key epoch " + std::to_string(epoch));
  if (!IsValidKind(static_cast<std::uint32_t>(kind))) throw Error(EINVAL, "invalid object kind");
  const std::size_t framed = std::max(plaintext.size() + 1, padded_size);
  if (framed > kMaxSealedSize - 96) throw Error(EFBIG, "object too large to seal");
  ObjectKeyScope key(*derived, kind, id);
  std::string nonce = primitives::RandomString(kNonceSize);
  std::string aad = MakeAad(kSealFormatVersion, kind, id, epoch, version);
  const std::size_t ciphertext_size = framed + kTagSize;
  Frame f = SealedFrame(kSealFormatVersion, static_cast<std::uint32_t>(kind), epoch, nonce,
                        version, ciphertext_size);
  std::string out = std::move(f.prefix);
  const std::size_t offset = out.size();
  // The framed plaintext is built in the output buffer and encrypted in place.
  out.reserve(offset + ciphertext_size + f.suffix.size());
  out.resize(offset + ciphertext_size, '\0');
  auto* dst = reinterpret_cast<CryptoPP::byte*>(out.data()) + offset;
  if (!plaintext.empty()) std::memcpy(dst, plaintext.data(), plaintext.size());
  dst[plaintext.size()] = kPadMarker;
  CryptoPP::GCM<CryptoPP::AES>::Encryption enc;
  enc.SetKeyWithIV(B(key.view()), kKeySize, B(nonce), kNonceSize);
  enc.EncryptAndAuthenticate(dst, dst + framed, kTagSize, B(nonce), kNonceSize, B(aad),
                             aad.size(), dst, framed);
  out += f.suffix;
  return out;
}

static std::optional<proto::SealedObject> ParseSealed(std::string_view sealed) {
  if (sealed.size() > kMaxSealedSize) return std::nullopt;
  proto::SealedObject msg;
  if (!msg.ParseFromArray(sealed.data(), static_cast<int>(sealed.size()))) return std::nullopt;
  const bool v1 = msg.version() == kSealFormatV1;
  if ((!v1 && msg.version() != kSealFormatVersion) || !IsValidKind(msg.kind()) ||
      msg.nonce().size() != kNonceSize || msg.ciphertext().size() < kTagSize ||
      (v1 && msg.kind() == static_cast<std::uint32_t>(ObjectKind::kTombstone)) ||
      (!v1 && msg.ciphertext().size() < kTagSize + 1)) {
    return std::nullopt;
  }
  // Accept exactly the bytes Seal() writes. Protobuf parsing alone also accepts appended fields
  // (a repeated field: the last one wins; unknown fields), reordered fields and over-long
  // varints, so the same object would have many encodings. Checking the small canonical prefix
  // and suffix and the total size avoids comparing the ciphertext. (A format 1 object with
  // fields 6 or 7 fails here too: its canonical form has neither.)
  Frame f = SealedFrame(msg.version(), msg.kind(), msg.epoch(), msg.nonce(),
                        ObjectVersion{msg.hlc(), msg.box_id()}, msg.ciphertext().size());
  if (sealed.size() != f.prefix.size() + msg.ciphertext().size() + f.suffix.size() ||
      sealed.substr(0, f.prefix.size()) != f.prefix ||
      sealed.substr(sealed.size() - f.suffix.size()) != f.suffix) {
    return std::nullopt;
  }
  return msg;
}

static std::optional<Opened> OpenImpl(const Keyring& keys, const ObjectId& id,
                                      std::string_view sealed, std::optional<ObjectKind> want) {
  std::optional<proto::SealedObject> msg = ParseSealed(sealed);
  if (!msg || (want && msg->kind() != static_cast<std::uint32_t>(*want))) return std::nullopt;
  const DerivedKeys* derived = keys.Find(msg->epoch());
  if (!derived) return std::nullopt;
  const auto kind = static_cast<ObjectKind>(msg->kind());
  const ObjectVersion version{msg->hlc(), msg->box_id()};
  ObjectKeyScope key(*derived, kind, id);
  std::optional<std::string> plain = primitives::GcmDecrypt(
      key.view(), msg->nonce(), MakeAad(msg->version(), kind, id, msg->epoch(), version),
      msg->ciphertext());
  if (!plain) return std::nullopt;
  Opened out;
  out.format = msg->version();
  out.kind = kind;
  out.epoch = msg->epoch();
  if (out.format != kSealFormatV1) {
    // Authenticated already; a bad frame means a sealing bug, not an attack, but is still no
    // object of ours.
    const std::size_t end = plain->find_last_not_of('\0');
    if (end == std::string::npos || static_cast<unsigned char>((*plain)[end]) != kPadMarker)
      return std::nullopt;
    plain->resize(end);
    out.version = version;
  }
  out.plaintext = std::move(*plain);
  return out;
}

std::optional<Opened> OpenObject(const Keyring& keys, const ObjectId& id,
                                 std::string_view sealed) {
  return OpenImpl(keys, id, sealed, std::nullopt);
}

std::optional<std::string> Open(const Keyring& keys, ObjectKind kind, const ObjectId& id,
                                std::string_view sealed) {
  std::optional<Opened> opened = OpenImpl(keys, id, sealed, kind);
  if (!opened) return std::nullopt;
  return std::move(opened->plaintext);
}

std::optional<SealedInfo> Inspect(std::string_view sealed) {
  std::optional<proto::SealedObject> msg = ParseSealed(sealed);
  if (!msg) return std::nullopt;
  SealedInfo info{msg->version(), static_cast<ObjectKind>(msg->kind()), msg->epoch(),
                  msg->ciphertext().size() - kTagSize, std::nullopt};
  if (info.format != kSealFormatV1) info.version = ObjectVersion{msg->hlc(), msg->box_id()};
  return info;
}

// ---------------------------------------------------------------------------------------------
namespace primitives {

void RandomBytes(unsigned char* out, std::size_t size) {
  EnsureSodium();
  randombytes_buf(out, size);  // getrandom(2): the kernel CSPRNG
}

std::string RandomString(std::size_t size) {
  std::string out(size, '\0');
  RandomBytes(reinterpret_cast<unsigned char*>(out.data()), size);
  return out;
}

SecretBytes Hkdf(std::string_view ikm, std::string_view salt, std::string_view info,
                 std::size_t length) {
  CryptoPP::HKDF<CryptoPP::SHA256> hkdf;
  if (length > hkdf.MaxDerivedKeyLength()) throw Error(EINVAL, "HKDF output too long");
  SecretBytes out(length);
  hkdf.DeriveKey(out.data(), out.size(), B(ikm), ikm.size(), B(salt), salt.size(), B(info),
                 info.size());
  return out;
}

SecretBytes Scrypt(std::string_view passphrase, std::string_view salt, std::uint64_t n,
                   std::uint32_t r, std::uint32_t p, std::size_t length) {
  SecretBytes out(length);
  try {
    CryptoPP::Scrypt scrypt;
    scrypt.DeriveKey(out.data(), out.size(), B(passphrase), passphrase.size(), B(salt),
                     salt.size(), static_cast<CryptoPP::word64>(n), r, p);
  } catch (const CryptoPP::Exception& e) {
    throw Error(EINVAL, std::string("scrypt: ") + e.what());
  } catch (const std::bad_alloc&) {
    throw Error(ENOMEM, "scrypt: not enough memory for these parameters");
  }
  return out;
}

std::string Sha256(std::string_view data) {
  std::string out(CryptoPP::SHA256::DIGESTSIZE, '\0');
  CryptoPP::SHA256().CalculateDigest(reinterpret_cast<CryptoPP::byte*>(out.data()), B(data),
                                     data.size());
  return out;
}

std::string HmacSha256(std::string_view key, std::string_view data, std::string_view more) {
  CryptoPP::HMAC<CryptoPP::SHA256> hmac(B(key), key.size());
  std::string out(hmac.DigestSize(), '\0');
  hmac.Update(B(data), data.size());
  hmac.Update(B(more), more.size());
  hmac.Final(reinterpret_cast<CryptoPP::byte*>(out.data()));
  return out;
}

std::string GcmEncrypt(std::string_view key, std::string_view nonce, std::string_view aad,
                       std::string_view plaintext) {
  if (key.size() != kKeySize || nonce.size() != kNonceSize) {
    throw Error(EINVAL, "AES-256-GCM needs a 32-byte key and a 12-byte nonce");
  }
  CryptoPP::GCM<CryptoPP::AES>::Encryption enc;
  enc.SetKeyWithIV(B(key), key.size(), B(nonce), nonce.size());
  std::string out(plaintext.size() + kTagSize, '\0');
  auto* dst = reinterpret_cast<CryptoPP::byte*>(out.data());
  enc.EncryptAndAuthenticate(dst, dst + plaintext.size(), kTagSize, B(nonce), nonce.size(),
                             B(aad), aad.size(), B(plaintext), plaintext.size());
  return out;
}

namespace {
template <class Out>
bool GcmDecryptInto(std::string_view key, std::string_view nonce, std::string_view aad,
                    std::string_view in, Out& out) {
  if (key.size() != kKeySize || nonce.size() != kNonceSize || in.size() < kTagSize) return false;
  CryptoPP::GCM<CryptoPP::AES>::Decryption dec;
  dec.SetKeyWithIV(B(key), key.size(), B(nonce), nonce.size());
  std::size_t n = in.size() - kTagSize;
  return dec.DecryptAndVerify(reinterpret_cast<CryptoPP::byte*>(out.data()), B(in) + n, kTagSize,
                              B(nonce), nonce.size(), B(aad), aad.size(), B(in), n);
}
}  // namespace

std::optional<std::string> GcmDecrypt(std::string_view key, std::string_view nonce,
                                      std::string_view aad,
                                      std::string_view ciphertext_and_tag) {
  if (ciphertext_and_tag.size() < kTagSize) return std::nullopt;
  std::string out(ciphertext_and_tag.size() - kTagSize, '\0');
  if (!GcmDecryptInto(key, nonce, aad, ciphertext_and_tag, out)) return std::nullopt;
  return out;
}

std::optional<SecretBytes> GcmDecryptSecret(std::string_view key, std::string_view nonce,
                                            std::string_view aad,
                                            std::string_view ciphertext_and_tag) {
  if (ciphertext_and_tag.size() < kTagSize) return std::nullopt;
  SecretBytes out(ciphertext_and_tag.size() - kTagSize);
  if (!GcmDecryptInto(key, nonce, aad, ciphertext_and_tag, out)) return std::nullopt;
  return out;
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CryptoPP::VerifyBufsEqual(B(a), B(b), a.size());
}

}  // namespace primitives
}  // namespace coffer::crypto
