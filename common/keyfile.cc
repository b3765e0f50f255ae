// See keyfile.h.
#include "common/keyfile.h"

#include <sys/stat.h>

#include <fcntl.h>
#include <sodium.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/fd.h"
#include "common/crypto.pb.h"

namespace coffer::keyfile {
namespace {

constexpr std::string_view kMacInfo = "coffer/v1/keyfile-mac";
constexpr std::size_t kSaltSize = 32;

[[noreturn]] void Damaged(const std::string& why) {
  throw KeyFileError(EBADMSG, "damaged key file: " + why);
}

proto::KeyFile ParseOuter(std::string_view bytes) {
  if (bytes.size() > kMaxFileSize) Damaged("larger than any key file");
  proto::KeyFile file;
  if (!file.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    Damaged("not a key file, or truncated");
  }
  if (file.magic() != kMagic) Damaged("not a coffer key file");
  return file;
}

Info DecodeHeader(const std::string& header_bytes, proto::KeyFileHeader* out_header) {
  proto::KeyFileHeader h;
  if (!h.ParseFromString(header_bytes)) Damaged("header does not parse");
  if (h.format_version() != kFormatVersion) {
    throw KeyFileError(EBADMSG, "key file format version " + std::to_string(h.format_version()) +
                                    " is not supported (this coffer reads version " +
                                    std::to_string(kFormatVersion) + ")");
  }
  Info info;
  info.format_version = h.format_version();
  switch (h.purpose()) {
    case proto::KeyFileHeader::KEYFILE: info.purpose = Purpose::kKeyFile; break;
    case proto::KeyFileHeader::EXPORT: info.purpose = Purpose::kExport; break;
    default: Damaged("unknown purpose");
  }
  info.created_unix = h.created_unix();
  if (h.has_kdf()) {
    ScryptParams p{h.kdf().n(), h.kdf().r(), h.kdf().p()};
    CheckScryptParams(p);
    if (h.kdf().salt().size() != kSaltSize) Damaged("bad salt");
    info.kdf = p;
  }
  if (h.epochs_size() < 1 || static_cast<std::uint32_t>(h.epochs_size()) > kMaxEpochs) {
    Damaged("bad number of key epochs");
  }
  std::uint32_t last = 0;
  for (const auto& e : h.epochs()) {
    if (e.epoch() <= last) Damaged("key epochs out of order");
    last = e.epoch();
    info.epochs.push_back(EpochInfo{e.epoch(), e.created_unix(), e.fingerprint()});
  }
  if (h.current_epoch() != last) Damaged("current epoch is not the newest");
  info.current_epoch = h.current_epoch();
  if (out_header) *out_header = std::move(h);
  return info;
}

crypto::SecretBytes MacKey(const crypto::MasterKey& first) {
  return crypto::primitives::Hkdf(first.bytes().view(), {}, kMacInfo, crypto::kKeySize);
}

}  // namespace

const std::string& Info::store_fingerprint() const { return epochs.front().fingerprint; }

ScryptParams DefaultScryptParams() { return ScryptParams{}; }

void CheckScryptParams(const ScryptParams& p) {
  bool ok = p.n >= (1u << 10) && p.n <= (1u << 22) && (p.n & (p.n - 1)) == 0 && p.r >= 1 &&
            p.r <= 32 && p.p >= 1 && p.p <= 16 && 128ull * p.r * p.n <= (1ull << 30);
  if (!ok) {
    throw KeyFileError(EINVAL, "implausible scrypt parameters N=" + std::to_string(p.n) +
                                   " r=" + std::to_string(p.r) + " p=" + std::to_string(p.p) +
                                   " (allowed: N a power of two in [2^10, 2^22], r in [1, 32], "
                                   "p in [1, 16], at most 1 GiB of memory)");
  }
}

KeySet KeySet::Generate(std::int64_t now_unix) {
  KeySet set;
  set.created_unix_ = now_unix;
  crypto::MasterKey key = crypto::GenerateMasterKey();
  set.epochs_.push_back(EpochInfo{1, now_unix, crypto::Fingerprint(key)});
  set.keys_.push_back(std::move(key));
  return set;
}

std::uint32_t KeySet::Rotate(std::int64_t now_unix) {
  if (epochs_.size() >= kMaxEpochs) throw Error(ERANGE, "too many key epochs");
  std::uint32_t epoch = current_epoch() + 1;
  crypto::MasterKey key = crypto::GenerateMasterKey();
  epochs_.push_back(EpochInfo{epoch, now_unix, crypto::Fingerprint(key)});
  keys_.push_back(std::move(key));
  return epoch;
}

crypto::Keyring KeySet::MakeKeyring() const {
  crypto::Keyring ring;
  for (std::size_t i = 0; i < keys_.size(); ++i) ring.Add(epochs_[i].epoch, keys_[i]);
  return ring;
}

Info ReadInfo(std::string_view file_bytes) {
  proto::KeyFile file = ParseOuter(file_bytes);
  return DecodeHeader(file.header(), nullptr);
}

std::string Encode(const KeySet& keys, Purpose purpose, const crypto::SecretBytes* passphrase,
                   const ScryptParams& params) {
  proto::KeyFileHeader h;
  h.set_format_version(kFormatVersion);
  h.set_purpose(purpose == Purpose::kExport ? proto::KeyFileHeader::EXPORT
                                            : proto::KeyFileHeader::KEYFILE);
  h.set_created_unix(keys.created_unix_);
  for (const EpochInfo& e : keys.epochs_) {
    auto* pe = h.add_epochs();
    pe->set_epoch(e.epoch);
    pe->set_created_unix(e.created_unix);
    pe->set_fingerprint(e.fingerprint);
  }
  h.set_current_epoch(keys.current_epoch());
  crypto::SecretBytes plain(keys.keys_.size() * crypto::kKeySize);
  for (std::size_t i = 0; i < keys.keys_.size(); ++i) {
    std::memcpy(plain.data() + i * crypto::kKeySize, keys.keys_[i].bytes().data(),
                crypto::kKeySize);
  }
  proto::KeyFile file;
  file.set_magic(std::string(kMagic));
  if (passphrase) {
    CheckScryptParams(params);
    auto* kdf = h.mutable_kdf();
    kdf->set_n(params.n);
    kdf->set_r(params.r);
    kdf->set_p(params.p);
    kdf->set_salt(crypto::primitives::RandomString(kSaltSize));
    crypto::SecretBytes wrap = crypto::primitives::Scrypt(passphrase->view(), kdf->salt(), params.n,
                                                          params.r, params.p, crypto::kKeySize);
    file.set_header(h.SerializeAsString());
    file.set_nonce(crypto::primitives::RandomString(crypto::kNonceSize));
    file.set_sealed_keys(
        crypto::primitives::GcmEncrypt(wrap.view(), file.nonce(), file.header(), plain.view()));
  } else {
    file.set_header(h.SerializeAsString());
    file.set_plain_keys(std::string(plain.view()));
    crypto::SecretBytes mac_key = MacKey(keys.keys_.front());
    file.set_mac(crypto::primitives::HmacSha256(mac_key.view(), file.header(), plain.view()));
  }
  std::string out = file.SerializeAsString();
  // The plain keys were copied into protobuf's string; wipe it before it is freed.
  if (!passphrase) sodium_memzero(file.mutable_plain_keys()->data(), file.plain_keys().size());
  return out;
}

KeySet Unlock(std::string_view file_bytes, const crypto::SecretBytes* passphrase) {
  proto::KeyFile file = ParseOuter(file_bytes);
  proto::KeyFileHeader h;
  Info info = DecodeHeader(file.header(), &h);
  const std::size_t n_keys = info.epochs.size();
  crypto::SecretBytes plain;
  if (info.kdf) {
    if (!passphrase) throw KeyFileError(ENOKEY, "this key file is protected by a passphrase");
    if (file.nonce().size() != crypto::kNonceSize ||
        file.sealed_keys().size() != n_keys * crypto::kKeySize + crypto::kTagSize) {
      Damaged("wrapped keys have the wrong size");
    }
    crypto::SecretBytes wrap =
        crypto::primitives::Scrypt(passphrase->view(), h.kdf().salt(), info.kdf->n, info.kdf->r,
                                   info.kdf->p, crypto::kKeySize);
    auto opened = crypto::primitives::GcmDecryptSecret(wrap.view(), file.nonce(), file.header(),
                                                       file.sealed_keys());
    if (!opened) throw KeyFileError(EACCES, "wrong passphrase or damaged key file");
    plain = std::move(*opened);
  } else {
    if (file.plain_keys().size() != n_keys * crypto::kKeySize) Damaged("keys have the wrong size");
    plain = crypto::SecretBytes::CopyOf(file.plain_keys());
    sodium_memzero(file.mutable_plain_keys()->data(), file.plain_keys().size());
  }
  KeySet set;
  set.created_unix_ = info.created_unix;
  for (std::size_t i = 0; i < n_keys; ++i) {
    set.keys_.emplace_back(crypto::SecretBytes::CopyOf(
        plain.view().substr(i * crypto::kKeySize, crypto::kKeySize)));
  }
  if (!info.kdf) {
    crypto::SecretBytes mac_key = MacKey(set.keys_.front());
    std::string expect =
        crypto::primitives::HmacSha256(mac_key.view(), file.header(), plain.view());
    if (!crypto::primitives::ConstantTimeEqual(expect, file.mac())) {
      Damaged("authentication failed (the file was modified)");
    }
  }
  for (std::size_t i = 0; i < n_keys; ++i) {
    if (crypto::Fingerprint(set.keys_[i]) != info.epochs[i].fingerprint) {
      Damaged("key fingerprint mismatch");
    }
  }
  set.epochs_ = std::move(info.epochs);
  return set;
}

KeySet Load(const std::string& path, const crypto::SecretBytes* passphrase) {
  UniqueFd fd = OpenFile(path, O_RDONLY);
  struct stat st;
  if (::fstat(fd.Get(), &st) != 0) ThrowErrno("stat " + path);
  if (!S_ISREG(st.st_mode)) throw KeyFileError(EINVAL, path + ": not a regular file");
  std::string bytes = ReadAllFd(fd.Get(), kMaxFileSize, path);
  Info info;
  try {
    info = ReadInfo(bytes);
  } catch (const KeyFileError& e) {
    throw KeyFileError(e.err(), path + ": " + e.what());
  }
  if (!info.kdf && (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw KeyFileError(EACCES, path + ": key file without a passphrase has mode " + mode +
                                   "; it must not be readable by group or others (chmod 600)");
  }
  if (info.purpose != Purpose::kKeyFile) {
    throw KeyFileError(EINVAL, path + ": this is an export file; use `coffer-keytool import`");
  }
  try {
    return Unlock(bytes, passphrase);
  } catch (const KeyFileError& e) {
    throw KeyFileError(e.err(), path + ": " + e.what());
  }
}

bool NeedsPassphrase(const std::string& path) {
  std::string bytes = ReadFile(path, kMaxFileSize);
  try {
    return ReadInfo(bytes).kdf.has_value();
  } catch (const KeyFileError& e) {
    throw KeyFileError(e.err(), path + ": " + e.what());
  }
}

}  // namespace coffer::keyfile
