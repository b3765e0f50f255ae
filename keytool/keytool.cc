// See keytool.h.
#include "keytool/keytool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <iomanip>
#include <sstream>

#include "common/crypto.h"
#include "common/fd.h"
#include "common/keyfile.h"

namespace coffer::keytool {
namespace {

constexpr mode_t kKeyFileMode = 0600;

std::int64_t Now() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::string FormatTime(std::int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  std::ostringstream s;
  s << std::put_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  return s.str();
}

keyfile::ScryptParams ToParams(const KdfOptions& kdf) {
  if (kdf.scrypt_logn < 10 || kdf.scrypt_logn > 22) {
    throw Error(EINVAL, "--scrypt-logn must be between 10 and 22");
  }
  keyfile::ScryptParams p{std::uint64_t{1} << kdf.scrypt_logn,
                          static_cast<std::uint32_t>(kdf.scrypt_r),
                          static_cast<std::uint32_t>(kdf.scrypt_p)};
  keyfile::CheckScryptParams(p);
  return p;
}

void RefuseExisting(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    throw Error(EEXIST, path + " already exists; refusing to overwrite it");
  }
}

std::string ReadKeyFileBytes(const std::string& path) {
  return ReadFile(path, keyfile::kMaxFileSize);
}

// Reads the passphrase needed to unlock `info`'s file, if it has one.
std::optional<crypto::SecretBytes> UnlockPassphrase(const keyfile::Info& info,
                                                    const PassOptions& pass,
                                                    const std::string& path) {
  if (!info.kdf) return std::nullopt;
  if (pass.none) throw Error(EINVAL, path + " is protected by a passphrase");
  return passphrase::Read(pass.source(), "Passphrase for " + path + ": ", false);
}

keyfile::KeySet UnlockFile(const std::string& path, const std::string& bytes,
                           const keyfile::Info& info, const PassOptions& pass) {
  std::optional<crypto::SecretBytes> p = UnlockPassphrase(info, pass, path);
  try {
    return keyfile::Unlock(bytes, p ? &*p : nullptr);
  } catch (const keyfile::KeyFileError& e) {
    throw keyfile::KeyFileError(e.err(), path + ": " + e.what());
  }
}

keyfile::Info ReadInfoOf(const std::string& path, const std::string& bytes) {
  try {
    return keyfile::ReadInfo(bytes);
  } catch (const keyfile::KeyFileError& e) {
    throw keyfile::KeyFileError(e.err(), path + ": " + e.what());
  }
}

// The passphrase for a file about to be written, or nullopt for --no-passphrase.
std::optional<crypto::SecretBytes> NewPassphrase(const PassOptions& pass,
                                                 const std::string& path) {
  if (pass.none) return std::nullopt;
  return passphrase::Read(pass.source(), "New passphrase for " + path + ": ", true);
}

void WriteKeyFile(const std::string& path, const keyfile::KeySet& keys, keyfile::Purpose purpose,
                  const std::optional<crypto::SecretBytes>& pass,
                  const keyfile::ScryptParams& params, bool exclusive) {
  std::string bytes = keyfile::Encode(keys, purpose, pass ? &*pass : nullptr, params);
  AtomicWriteFile(path, bytes, kKeyFileMode, exclusive);
}

void CheckIsKeyFile(const std::string& path, const keyfile::Info& info) {
  if (info.purpose != keyfile::Purpose::kKeyFile) {
    throw keyfile::KeyFileError(EINVAL, path + " is an export file; use `coffer-keytool import`");
  }
}

void CheckPermissions(const std::string& path, const keyfile::Info& info) {
  if (info.kdf) return;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) ThrowErrno(path);
  if (st.st_mode & 077) {
    std::ostringstream s;
    s << path << ": key file without a passphrase has mode " << std::oct << std::setw(4)
      << std::setfill('0') << (st.st_mode & 07777)
      << "; it must not be readable by group or others (chmod 600)";
    throw keyfile::KeyFileError(EACCES, s.str());
  }
}

}  // namespace

int ExitCodeFor(const Error& e) {
  switch (e.err()) {
    case ENOENT: return kExitNoInput;
    case EEXIST: return kExitCantCreate;
    case EACCES:
    case EPERM: return kExitNoPerm;
    case EBADMSG:
    case EINVAL:
    case EFBIG:
    case ENOKEY: return kExitDataErr;
    case ENXIO: return kExitUsage;
    case EIO:
    case ENOSPC:
    case EROFS:
    case EDQUOT: return kExitIoErr;
    default: return kExitSoftware;
  }
}

void Init(const std::string& keyfile, const PassOptions& pass, const KdfOptions& kdf,
          std::ostream& out) {
  keyfile::ScryptParams params = ToParams(kdf);
  RefuseExisting(keyfile);
  std::optional<crypto::SecretBytes> p = NewPassphrase(pass, keyfile);
  keyfile::KeySet keys = keyfile::KeySet::Generate(Now());
  WriteKeyFile(keyfile, keys, keyfile::Purpose::kKeyFile, p, params, /*exclusive=*/true);
  out << "created " << keyfile << (p ? " (passphrase-protected)" : " (no passphrase, mode 0600)")
      << "\nfingerprint " << keys.store_fingerprint() << "\n";
}

void Show(const std::string& keyfile, std::ostream& out) {
  std::string bytes = ReadKeyFileBytes(keyfile);
  keyfile::Info info = ReadInfoOf(keyfile, bytes);
  out << "file:           " << keyfile << "\n"
      << "kind:           "
      << (info.purpose == keyfile::Purpose::kExport ? "export file" : "key file") << "\n"
      << "format version: " << info.format_version << "\n"
      << "created:        " << FormatTime(info.created_unix) << "\n";
  if (info.kdf) {
    int logn = 0;
    while ((std::uint64_t{1} << logn) < info.kdf->n) ++logn;
    out << "protection:     passphrase, scrypt N=2^" << logn << " r=" << info.kdf->r
        << " p=" << info.kdf->p << " ("
        << (128 * static_cast<std::uint64_t>(info.kdf->r) * info.kdf->n >> 20) << " MiB)\n";
  } else {
    out << "protection:     none (file must stay mode 0600)\n";
  }
  out << "fingerprint:    " << info.store_fingerprint() << "\n"
      << "current epoch:  " << info.current_epoch << "\n"
      << "epochs:\n";
  for (const auto& e : info.epochs) {
    out << "  " << e.epoch << "  created " << FormatTime(e.created_unix) << "  fingerprint "
        << e.fingerprint << "\n";
  }
  if (info.kdf) out << "(header not yet authenticated: `coffer-keytool verify` checks it)\n";
}

void Verify(const std::string& keyfile, const PassOptions& pass, std::ostream& out) {
  std::string bytes = ReadKeyFileBytes(keyfile);
  keyfile::Info info = ReadInfoOf(keyfile, bytes);
  CheckIsKeyFile(keyfile, info);
  CheckPermissions(keyfile, info);
  keyfile::KeySet keys = UnlockFile(keyfile, bytes, info, pass);
  // Seal and open a probe under every epoch: the keys do what they are for.
  crypto::Keyring ring = keys.MakeKeyring();
  for (const auto& e : keys.epochs()) {
    crypto::ObjectId id = crypto::RandomObjectId();
    std::string sealed =
        crypto::Seal(ring, crypto::ObjectKind::kStoreMeta, id, e.epoch, {1, 1}, "probe");
    if (crypto::Open(ring, crypto::ObjectKind::kStoreMeta, id, sealed) != "probe") {
      throw Error(EIO, keyfile + ": key epoch " + std::to_string(e.epoch) + " does not work");
    }
  }
  out << keyfile << ": OK, " << keys.epochs().size() << " key epoch"
      << (keys.epochs().size() == 1 ? "" : "s") << ", fingerprint " << keys.store_fingerprint()
      << "\n";
}

void Passwd(const std::string& keyfile, const PassOptions& old_pass, const PassOptions& new_pass,
            const KdfOptions& kdf, std::ostream& out) {
  keyfile::ScryptParams params = ToParams(kdf);
  std::string bytes = ReadKeyFileBytes(keyfile);
  keyfile::Info info = ReadInfoOf(keyfile, bytes);
  CheckIsKeyFile(keyfile, info);
  CheckPermissions(keyfile, info);
  keyfile::KeySet keys = UnlockFile(keyfile, bytes, info, old_pass);
  std::optional<crypto::SecretBytes> p = NewPassphrase(new_pass, keyfile);
  WriteKeyFile(keyfile, keys, keyfile::Purpose::kKeyFile, p, params, /*exclusive=*/false);
  out << keyfile << ": " << (p ? "re-wrapped under the new passphrase" : "passphrase removed (mode 0600)")
      << "\n";
}

void Rotate(const std::string& keyfile, const PassOptions& pass, std::ostream& out) {
  std::string bytes = ReadKeyFileBytes(keyfile);
  keyfile::Info info = ReadInfoOf(keyfile, bytes);
  CheckIsKeyFile(keyfile, info);
  CheckPermissions(keyfile, info);
  std::optional<crypto::SecretBytes> p = UnlockPassphrase(info, pass, keyfile);
  keyfile::KeySet keys = keyfile::Unlock(bytes, p ? &*p : nullptr);
  std::uint32_t epoch = keys.Rotate(Now());
  WriteKeyFile(keyfile, keys, keyfile::Purpose::kKeyFile, p,
               info.kdf.value_or(keyfile::DefaultScryptParams()), /*exclusive=*/false);
  out << keyfile << ": new key epoch " << epoch << " (fingerprint " << keys.epochs().back().fingerprint
      << ") for new writes; " << epoch - 1 << " older epoch" << (epoch == 2 ? "" : "s")
      << " stay readable\n";
}

std::string GenerateOneTimePassphrase() {
  static constexpr char kAlphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";  // 32 symbols
  unsigned char raw[30];
  crypto::primitives::RandomBytes(raw, sizeof raw);
  std::string out;
  for (int i = 0; i < 30; ++i) {  // 30 * 5 bits = 150 bits
    if (i && i % 5 == 0) out.push_back('-');
    out.push_back(kAlphabet[raw[i] & 31]);
  }
  return out;
}

void Export(const std::string& keyfile, const PassOptions& pass, const std::string& out_file,
            const PassOptions& export_pass, std::ostream& out) {
  RefuseExisting(out_file);
  std::string bytes = ReadKeyFileBytes(keyfile);
  keyfile::Info info = ReadInfoOf(keyfile, bytes);
  CheckIsKeyFile(keyfile, info);
  CheckPermissions(keyfile, info);
  keyfile::KeySet keys = UnlockFile(keyfile, bytes, info, pass);
  std::optional<crypto::SecretBytes> one_time;
  std::string shown;
  if (export_pass.file || export_pass.fd) {
    one_time = passphrase::Read(export_pass.source(), "", false);
  } else {
    shown = GenerateOneTimePassphrase();
    one_time = crypto::SecretBytes::CopyOf(shown);
  }
  // The one-time passphrase has 150 bits when generated, so a moderate scrypt cost suffices.
  keyfile::ScryptParams params{std::uint64_t{1} << 15, 8, 1};
  WriteKeyFile(out_file, keys, keyfile::Purpose::kExport, one_time, params, /*exclusive=*/true);
  out << "exported " << keys.epochs().size() << " key epoch(s), fingerprint "
      << keys.store_fingerprint() << ", to " << out_file << "\n";
  if (!shown.empty()) {
    out << "one-time passphrase (give it to the other box by a separate channel):\n"
        << shown << "\n";
  }
}

void Import(const std::string& in_file, const PassOptions& export_pass,
            const std::string& keyfile, const PassOptions& new_pass, const KdfOptions& kdf,
            std::ostream& out) {
  keyfile::ScryptParams params = ToParams(kdf);
  RefuseExisting(keyfile);
  std::string bytes = ReadKeyFileBytes(in_file);
  keyfile::Info info = ReadInfoOf(in_file, bytes);
  if (info.purpose != keyfile::Purpose::kExport) {
    throw keyfile::KeyFileError(EINVAL, in_file + " is not an export file");
  }
  std::optional<crypto::SecretBytes> one_time =
      passphrase::Read(export_pass.source(), "One-time passphrase for " + in_file + ": ", false);
  keyfile::KeySet keys;
  try {
    keys = keyfile::Unlock(bytes, &*one_time);
  } catch (const keyfile::KeyFileError& e) {
    throw keyfile::KeyFileError(e.err(), in_file + ": " + e.what());
  }
  std::optional<crypto::SecretBytes> p = NewPassphrase(new_pass, keyfile);
  WriteKeyFile(keyfile, keys, keyfile::Purpose::kKeyFile, p, params, /*exclusive=*/true);
  out << "imported " << keys.epochs().size() << " key epoch(s) into " << keyfile
      << "\nfingerprint " << keys.store_fingerprint() << "\n";
}

void CurveKeygen(const std::string& prefix, std::ostream& out) {
  const std::string secret_path = prefix + ".key_secret";
  const std::string public_path = prefix + ".key";
  RefuseExisting(secret_path);
  RefuseExisting(public_path);
  char public_z85[41];
  crypto::SecretBytes secret_z85(41);
  if (zmq_curve_keypair(public_z85, reinterpret_cast<char*>(secret_z85.data())) != 0) {
    ThrowErrno("zmq_curve_keypair (is libzmq built with CURVE?)");
  }
  crypto::SecretBytes line(41);
  std::memcpy(line.data(), secret_z85.data(), 40);
  line.data()[40] = '\n';
  AtomicWriteFile(secret_path, line.view(), 0600, /*exclusive=*/true);
  AtomicWriteFile(public_path, std::string(public_z85, 40) + "\n", 0644, /*exclusive=*/true);
  out << "wrote " << secret_path << " (secret, mode 0600) and " << public_path
      << " (public)\npublic key " << std::string(public_z85, 40) << "\n";
}

}  // namespace coffer::keytool
